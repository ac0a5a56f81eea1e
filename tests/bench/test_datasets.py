import gzip

import numpy as np
import pytest

from edge_cl.bench import datasets


def _write_idx(path, arr):
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + arr.astype(np.uint8).tobytes())


@pytest.fixture
def tiny_mnist(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "mnist"
    folder.mkdir()
    _write_idx(folder / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (12, 4, 4)))
    _write_idx(folder / "train-labels-idx1-ubyte.gz", np.arange(12) % 10)
    _write_idx(folder / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (5, 4, 4)))
    _write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.arange(5))
    return tmp_path


def test_load_images_from_data_dir(tiny_mnist):
    d = datasets.load_images("mnist", tiny_mnist)
    assert d.train_x.shape == (12, 16) and d.train_x.dtype == np.uint8
    assert d.test_x.shape == (5, 16)
    assert d.shape == (4, 4)
    np.testing.assert_array_equal(d.train_y, np.arange(12) % 10)


def test_env_var_is_used(tiny_mnist, monkeypatch):
    monkeypatch.setenv(datasets.ENV_VAR, str(tiny_mnist))
    assert datasets.find_data_dir() == tiny_mnist


def test_missing_file_is_named(tiny_mnist):
    (tiny_mnist / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte.gz"):
        datasets.load_images("mnist", tiny_mnist)


def test_missing_data_dir_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        datasets.find_data_dir(tmp_path / "nowhere")


def test_truncated_idx_is_rejected(tmp_path):
    path = tmp_path / "x.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(bytes([0, 0, 8, 1]) + (10).to_bytes(4, "big") + b"\x00" * 3)
    with pytest.raises(ValueError, match="truncated"):
        datasets.read_idx(path)


def test_unknown_set_is_rejected(tiny_mnist):
    with pytest.raises(ValueError, match="cifar"):
        datasets.load_images("cifar", tiny_mnist)


def test_elec2_csv(tmp_path):
    (tmp_path / "elec2").mkdir()
    (tmp_path / "elec2" / "electricity.csv").write_text(
        "date,day,period,nswprice,nswdemand,vicprice,vicdemand,transfer,class\n"
        "0,2,0,0.1,0.2,0.3,0.4,0.5,UP\n0,2,0.5,0.2,0.2,0.3,0.4,0.5,DOWN\n")
    x, y = datasets.load_elec2(tmp_path)
    assert x.shape == (2, 6) and x.dtype == np.float32
    np.testing.assert_array_equal(y, [1, 0])
    x2, _ = datasets.load_elec2(tmp_path, features=("day", "period"))
    np.testing.assert_allclose(x2[0], [1 / 6, 0.0])


def _occupancy_folder(tmp_path, rows_per_file=2, bad=None):
    folder = tmp_path / "occupancy"
    folder.mkdir(parents=True)
    header = '"date","Temperature","Humidity","Light","CO2","HumidityRatio","Occupancy"\n'
    for k, name in enumerate(datasets.OCCUPANCY_FILES):
        # datatest2.txt leaves the date unquoted, the other two quote it: both must read the same.
        date = "2015-02-11 14:48:00" if name == "datatest2.txt" else '"2015-02-02 14:19:00"'
        lines = [f'"{i + 1}",{date},{20 + k},{30 + i},{400 * k},{700 + i},0.005,{(i + k) % 2}\n'
                 for i in range(rows_per_file)]
        if bad == name:
            lines.append('"9",2015-02-11 14:48:00,21,30,0,700,0.005\n')
        (folder / name).write_text(header + "".join(lines))
    return tmp_path


def test_occupancy_reads_the_three_files_in_time_order(tmp_path):
    x, y = datasets.load_occupancy(_occupancy_folder(tmp_path))
    assert x.shape == (6, 5) and x.dtype == np.float32
    # datatest (k=0), then datatraining (k=1), then datatest2 (k=2): Temperature is 20 + k.
    np.testing.assert_array_equal(x[:, 0], [20, 20, 21, 21, 22, 22])
    np.testing.assert_array_equal(x[:, 2], [0, 0, 400, 400, 800, 800])  # raw lux, unscaled
    np.testing.assert_array_equal(y, [0, 1, 1, 0, 0, 1])
    x2, _ = datasets.load_occupancy(tmp_path, features=("CO2",))
    np.testing.assert_array_equal(x2[:, 0], [700, 701] * 3)


def test_occupancy_short_row_and_missing_file_name_the_file(tmp_path):
    with pytest.raises(ValueError, match=r"datatraining.txt.*line 4 has 7 fields"):
        datasets.load_occupancy(_occupancy_folder(tmp_path / "bad", bad="datatraining.txt"))
    good = _occupancy_folder(tmp_path / "good")
    (good / "occupancy" / "datatest2.txt").unlink()
    with pytest.raises(FileNotFoundError, match="datatest2.txt"):
        datasets.load_occupancy(good)
    with pytest.raises(ValueError, match="Pressure"):
        datasets.load_occupancy(good, features=("Pressure",))
