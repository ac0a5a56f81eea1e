import importlib.util
import json

import pytest
from typer.testing import CliRunner

from edge_cl.bench.schema import REQUIRED_KEYS, check_document
from edge_cl.cli.main import app
from tests.data_files import mnist_present


@pytest.mark.integration
@pytest.mark.skipif(not mnist_present(), reason="MNIST files not found (set EDGE_CL_DATA)")
def test_rotated_mnist_end_to_end(tmp_path, one_thread):
    out, plots, bm = tmp_path / "out.json", tmp_path / "plots", tmp_path / "BENCHMARKS.md"
    with_plots = importlib.util.find_spec("matplotlib") is not None  # the [bench] extra
    res = CliRunner().invoke(app, ["bench", "--stream", "rotated-mnist", "--scale", "0.01",
                                   "--methods", "sgd,er,er+mas,joint,no-change", "--bare", "--budget-samples", "500",
                                   "--json", str(out), "--write-benchmarks", "ci-quick", "--benchmarks-file", str(bm),
                                   *(["--plots", str(plots)] if with_plots else [])])
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert check_document(doc) == []
    assert set(doc["methods"]) == {"sgd", "er", "er+mas", "joint", "no-change", "bare-sgd", "bare-er"}
    for name, r in doc["methods"].items():
        assert all(k in r for k in REQUIRED_KEYS), name
    er = doc["methods"]["er"]
    # The bytes of 500 float32 samples with int64 labels; the learner's default storage='auto' keeps MNIST's 8-bit
    # pixels as uint8 and labels as uint8, so 2002 fit; the pixels (mostly 0, in [0, 1]) are not standardised.
    assert len(er["accuracy_matrix"]) == 20 and er["buffer_capacity"] == 500 * (784 * 4 + 8) // (784 + 1)
    assert er["storage"] == "uint8" and er["standardized"] is False
    assert doc["methods"]["bare-er"]["buffer_capacity"] == 500 * (784 * 4 + 8) // (784 * 4 + 1)
    assert doc["stream"]["samples"] == 20 * 600
    assert "| er |" in res.output
    if with_plots:
        assert (plots / "matrix_er.png").is_file() and (plots / "latency_hist.png").is_file()
    text = bm.read_text()
    assert "<!-- edge-cl:begin ci-quick -->" in text and "Produced by: `edge-cl bench --stream rotated-mnist" in text


def test_missing_data_dir_is_named(tmp_path):
    res = CliRunner().invoke(app, ["bench", "--stream", "rotated-mnist", "--scale", "0.01",
                                   "--data-dir", str(tmp_path / "absent"), "--threads", "0"])
    assert res.exit_code == 2
    assert "absent" in res.output


def test_missing_file_is_named(tmp_path):
    (tmp_path / "elec2").mkdir()
    res = CliRunner().invoke(app, ["bench", "--stream", "elec2", "--data-dir", str(tmp_path), "--threads", "0"])
    assert res.exit_code == 2
    assert "electricity.csv" in res.output


def test_bad_method_is_named():
    res = CliRunner().invoke(app, ["bench", "--methods", "er,gem", "--threads", "0"])
    assert res.exit_code == 2 and "gem" in res.output


def test_budget_fit_exit_codes(tmp_path, one_thread):
    cfg = tmp_path / "d.toml"
    cfg.write_text('[input]\ndim = 4\nnum_classes = 2\n[model]\ntype = "mlp"\ninput_dim = 4\nhidden = [8]\n'
                   'num_classes = 2\n[learner]\nbudget_bytes = 50000\ndevice = "cpu"\n[bench]\nlatency_budget_ms = 5000\n')
    ok = CliRunner().invoke(app, ["bench", "--config", str(cfg), "--fit-steps", "10"])
    assert ok.exit_code == 0 and "FITS" in ok.output
    bad = CliRunner().invoke(app, ["bench", "--config", str(cfg), "--fit-steps", "10", "--latency-budget-ms", "1e-7"])
    assert bad.exit_code == 1 and "DOES NOT FIT" in bad.output


def _device(tmp_path):
    cfg = tmp_path / "d.toml"
    cfg.write_text('[input]\ndim = 4\nnum_classes = 2\n[model]\ntype = "mlp"\ninput_dim = 4\nhidden = [8]\n'
                   'num_classes = 2\n[learner]\nbudget_bytes = 50000\ndevice = "cpu"\n[bench]\n'
                   'latency_budget_ms = 5000\n')
    return str(cfg)


def test_budget_fit_flags_repeats_rss_and_batch(tmp_path, one_thread):
    out = tmp_path / "fit.json"
    res = CliRunner().invoke(app, ["bench", "--config", _device(tmp_path), "--fit-steps", "5", "--repeats", "2",
                                   "--confidence", "0.9", "--batch", "3", "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "2 repeats, verdict at 90% confidence" in res.output and "predict latency" in res.output
    doc = json.loads(out.read_text())
    assert doc["repeats"] == 2 and doc["batch"] == 3 and doc["measured"]["steps_timed"] == 10
    rss = CliRunner().invoke(app, ["bench", "--config", _device(tmp_path), "--fit-steps", "5", "--repeats", "1",
                                   "--rss-budget-mb", "1"])
    assert rss.exit_code == 1 and "rss: peak RSS" in rss.output
    bad = CliRunner().invoke(app, ["bench", "--config", _device(tmp_path), "--repeats", "0"])
    assert bad.exit_code == 2 and "--repeats 0" in bad.output


def test_options_a_mode_would_ignore_are_refused(tmp_path):
    stream = CliRunner().invoke(app, ["bench", "--config", _device(tmp_path), "--stream", "sea", "--scale", "0.1"])
    assert stream.exit_code == 2 and "--stream, --scale do not apply" in stream.output
    fit_only = CliRunner().invoke(app, ["bench", "--stream", "sea", "--latency-budget-ms", "5", "--sweep"])
    assert fit_only.exit_code == 2 and "--latency-budget-ms, --sweep apply only to the budget fit" in fit_only.output


def test_produced_by_repeats_a_repeatable_option_once_per_value(tmp_path, one_thread):
    """The command written into BENCHMARKS.md must run again as it was typed: one --method-param per value."""
    import shlex
    from itertools import pairwise

    bm, out = tmp_path / "BENCHMARKS.md", tmp_path / "out.json"
    args = ["bench", "--stream", "sea", "--scale", "0.02", "--methods", "der++", "--no-bare", "--method-param",
            "der_alpha=0.3", "--method-param", "der_beta=2", "--json", str(out), "--write-benchmarks", "s",
            "--benchmarks-file", str(bm)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    line = next(x for x in bm.read_text().splitlines() if x.startswith("Produced by:"))
    command = line.removeprefix("Produced by: `").removesuffix("`")
    assert "--method-param der_alpha=0.3 --method-param der_beta=2" in command
    tokens = shlex.split(command)
    pairs = {(a, b) for a, b in pairwise(tokens) if a.startswith("--")}
    typed = {(a, b) for a, b in pairwise(args) if a.startswith("--") and not b.startswith("--")}
    assert typed <= pairs and "--no-bare" in tokens  # every option as typed, values unmangled
    assert json.loads(out.read_text())["config"]["method_params"] == {"der_alpha": 0.3, "der_beta": 2}


def test_bench_fit_subcommand_and_the_old_spelling_agree(tmp_path, one_thread):
    """`bench fit` holds only the fit's options; `bench --config` (README, docs, benchmarks/*.sh) keeps working."""
    new_json, old_json, bm = tmp_path / "new.json", tmp_path / "old.json", tmp_path / "BENCHMARKS.md"
    new = CliRunner().invoke(app, ["bench", "fit", "--config", _device(tmp_path), "--fit-steps", "5", "--repeats",
                                   "2", "--json", str(new_json), "--write-benchmarks", "fit",
                                   "--benchmarks-file", str(bm)])
    assert new.exit_code == 0 and "FITS" in new.output, new.output
    assert "Produced by: `edge-cl bench fit --config" in bm.read_text()
    old = CliRunner().invoke(app, ["bench", "--config", _device(tmp_path), "--fit-steps", "5", "--repeats", "2",
                                   "--json", str(old_json)])
    assert old.exit_code == 0 and "FITS" in old.output
    a, b = json.loads(new_json.read_text()), json.loads(old_json.read_text())
    assert a["learner"] == b["learner"] and a["repeats"] == b["repeats"] == 2
    misplaced = CliRunner().invoke(app, ["bench", "--threads", "2", "fit", "--config", _device(tmp_path)])
    assert misplaced.exit_code == 2 and "--threads before `fit`" in misplaced.output
    assert CliRunner().invoke(app, ["bench", "fit", "--stream", "sea"]).exit_code == 2  # not a fit option
    helps = CliRunner().invoke(app, ["bench", "fit", "--help"]).output
    assert "--rss-budget-mb" in helps and "--methods" not in helps
