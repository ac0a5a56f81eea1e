"""Loaders for the local benchmark data (MNIST / Fashion-MNIST IDX files, Elec2 and Occupancy CSV); never downloads."""

from __future__ import annotations

import csv
import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ENV_VAR = "EDGE_CL_DATA"
_IDX_FILES = {
    "train_x": "train-images-idx3-ubyte.gz",
    "train_y": "train-labels-idx1-ubyte.gz",
    "test_x": "t10k-images-idx3-ubyte.gz",
    "test_y": "t10k-labels-idx1-ubyte.gz",
}
IMAGE_SETS = ("mnist", "fashion-mnist")


@dataclass(frozen=True)
class ImageData:
    """An image classification set as uint8 pixels ``[N, H*W]`` and int64 labels."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    shape: tuple[int, int]


# What a data folder holds, for error messages (README.md, "Benchmark data", says where to get each file).
LAYOUT = ("mnist/ and fashion-mnist/ with the four IDX files each (train-images-idx3-ubyte.gz, "
          "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz), "
          "elec2/electricity.csv, occupancy/ with datatest.txt, datatraining.txt and datatest2.txt; see README.md, 'Benchmark data', for the sources")


def _candidates() -> list[Path]:
    repo = Path(__file__).resolve().parents[2]
    cwd = Path.cwd()
    return [repo.parent / "shared" / "data", cwd / "shared" / "data", cwd.parent / "shared" / "data"]


def find_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The data folder: ``data_dir``, else ``$EDGE_CL_DATA``, else ``../shared/data`` next to the repo or cwd."""
    if data_dir is not None:
        path = Path(data_dir)
        if not path.is_dir():
            raise FileNotFoundError(f"--data-dir {str(path)!r} is not a directory; point it at the folder that "
                                    f"holds {LAYOUT}")
        return path
    env = os.environ.get(ENV_VAR)
    if env:
        path = Path(env)
        if not path.is_dir():
            raise FileNotFoundError(f"{ENV_VAR}={env!r} is not a directory; point it at the folder that holds "
                                    f"{LAYOUT}")
        return path
    for path in _candidates():
        if path.is_dir():
            return path
    tried = ", ".join(str(p) for p in _candidates())
    raise FileNotFoundError(f"no benchmark data folder found (tried {tried}); pass --data-dir or set {ENV_VAR} "
                            f"to a folder that holds {LAYOUT}. edge_cl never downloads data.")


def _require(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"benchmark data file {str(path)!r} is missing; copy it there, or pass --data-dir / "
                                f"set {ENV_VAR} to a folder that has it. A data folder holds {LAYOUT} "
                                "(edge_cl never downloads data)")
    return path


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a (gzipped) IDX file of unsigned bytes into an array of its declared shape."""
    p = _require(Path(path))
    opener = gzip.open if p.suffix == ".gz" else open
    with opener(p, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{str(p)!r} is not an IDX file of unsigned bytes (bad magic {raw[:4].hex()})")
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims)) if dims else 0
    if len(raw) - offset != expected:
        raise ValueError(f"{str(p)!r} is truncated: header says {dims} ({expected} bytes), file has "
                         f"{len(raw) - offset}")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims)


def load_images(name: str = "mnist", data_dir: str | os.PathLike[str] | None = None) -> ImageData:
    """Load ``mnist`` or ``fashion-mnist`` from ``<data_dir>/<name>/`` as flat uint8 images."""
    if name not in IMAGE_SETS:
        raise ValueError(f"image data set {name!r} is unknown; use one of {IMAGE_SETS}")
    folder = find_data_dir(data_dir) / name
    arrays = {key: read_idx(folder / fname) for key, fname in _IDX_FILES.items()}
    h, w = arrays["train_x"].shape[1:]
    return ImageData(
        train_x=np.ascontiguousarray(arrays["train_x"].reshape(len(arrays["train_x"]), h * w)),
        train_y=arrays["train_y"].astype(np.int64),
        test_x=np.ascontiguousarray(arrays["test_x"].reshape(len(arrays["test_x"]), h * w)),
        test_y=arrays["test_y"].astype(np.int64),
        shape=(int(h), int(w)),
    )


ELEC2_FEATURES = ("date", "day", "period", "nswprice", "nswdemand", "vicprice", "vicdemand", "transfer")


def load_elec2(data_dir: str | os.PathLike[str] | None = None,
               features: tuple[str, ...] = ELEC2_FEATURES[2:]) -> tuple[np.ndarray, np.ndarray]:
    """Elec2 in time order: float32 ``[45312, len(features)]`` and labels (1 = UP, 0 = DOWN).

    ``date`` and ``day`` are left out by default, as in MOA / scikit-multiflow's ``elec``: ``date`` is a
    time stamp that leaks the position in the stream.
    """
    unknown = [f for f in features if f not in ELEC2_FEATURES]
    if unknown:
        raise ValueError(f"elec2 features {unknown} are unknown; use names from {ELEC2_FEATURES}")
    path = _require(find_data_dir(data_dir) / "elec2" / "electricity.csv")
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
    x = np.array([[float(r[f]) for f in features] for r in rows], dtype=np.float32)
    labels = {"UP": 1, "DOWN": 0}
    try:
        y = np.array([labels[r["class"]] for r in rows], dtype=np.int64)
    except KeyError as exc:
        raise ValueError(f"{str(path)!r} has a class value {exc} that is neither UP nor DOWN") from None
    # day of week is 1..7: scale to [0, 1] like the other columns.
    if "day" in features:
        j = features.index("day")
        x[:, j] = (x[:, j] - 1.0) / 6.0
    return x, y


OCCUPANCY_FILES = ("datatest.txt", "datatraining.txt", "datatest2.txt")  # chronological order of the three files
OCCUPANCY_FEATURES = ("Temperature", "Humidity", "Light", "CO2", "HumidityRatio")


def load_occupancy(data_dir: str | os.PathLike[str] | None = None,
                   features: tuple[str, ...] = OCCUPANCY_FEATURES) -> tuple[np.ndarray, np.ndarray]:
    """The Occupancy Detection sensor stream in time order: float32 ``[20560, len(features)]`` in raw physical
    units (degC, %, lux, ppm, kg/kg) and labels (1 = occupied).

    The three files are read in the order their readings were taken (datatest, datatraining, datatest2). The time
    stamp is left out: like Elec2's ``date`` it gives away the position in the stream.
    """
    unknown = [f for f in features if f not in OCCUPANCY_FEATURES]
    if unknown:
        raise ValueError(f"occupancy features {unknown} are unknown; use names from {OCCUPANCY_FEATURES}")
    folder = find_data_dir(data_dir) / "occupancy"
    xs: list[list[float]] = []
    ys: list[int] = []
    for name in OCCUPANCY_FILES:
        path = _require(folder / name)
        with open(path, newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None or header[-1] != "Occupancy":
                raise ValueError(f"{str(path)!r} does not start with the Occupancy header row (got {header!r})")
            # Each data row has one more field than the header: a leading row id without a header name.
            cols = [header.index(f) + 1 for f in features]
            for line, row in enumerate(reader, start=2):
                if len(row) != len(header) + 1:
                    raise ValueError(f"{str(path)!r} line {line} has {len(row)} fields; expected "
                                     f"{len(header) + 1} (a row id, then {', '.join(header)})")
                xs.append([float(row[c]) for c in cols])
                ys.append(int(float(row[-1])))
    y = np.asarray(ys, dtype=np.int64)
    if len(y) and not np.isin(y, (0, 1)).all():
        raise ValueError(f"{str(folder)!r} has Occupancy values other than 0 and 1: {sorted(set(ys) - {0, 1})}")
    return np.asarray(xs, dtype=np.float32).reshape(len(ys), len(features)), y
