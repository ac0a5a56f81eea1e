"""Tests of edge_cl.config: validation errors name key, value and what is allowed; secrets stay out."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_cl.config import Config, ConfigError, load_config, parse_config

MIN = {"input": {"dim": 8, "num_classes": 3},
       "model": {"type": "mlp", "input_dim": 8, "hidden": [4], "num_classes": 3}}


def with_(**sections: dict) -> dict:
    data = {k: dict(v) for k, v in MIN.items()}
    for k, v in sections.items():
        data[k] = {**data.get(k, {}), **v}
    return data


def test_minimal_config_gets_defaults() -> None:
    cfg = parse_config(with_())
    assert cfg.broker.protocol.value == "5"
    assert cfg.broker.session_expiry_s > 0
    assert cfg.input.flat_dim == 8
    assert cfg.topics.qos == 1


def test_error_names_key_value_and_limit() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(with_(broker={"port": 70000}))
    msg = str(exc.value)
    assert "broker.port" in msg and "70000" in msg and "65535" in msg


def test_unknown_key_is_named() -> None:
    with pytest.raises(ConfigError, match=r"learner\.lrate: unknown key"):
        parse_config(with_(learner={"lrate": 0.1}))


def test_every_problem_is_listed() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(with_(broker={"port": 0}, learner={"lr": -1}))
    assert "broker.port" in str(exc.value) and "learner.lr" in str(exc.value)


def test_password_in_toml_is_refused() -> None:
    with pytest.raises(ConfigError, match="password_file"):
        parse_config(with_(broker={"username": "u", "password": "hunter2"}))


def test_password_from_file_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pw").write_text("s3cret\n")
    cfg = parse_config(with_(broker={"username": "u", "password_file": "pw"}), tmp_path)
    assert cfg.broker.password() == "s3cret"
    assert "s3cret" not in str(cfg.masked())
    monkeypatch.setenv("EDGE_PW", "envsecret")
    cfg = parse_config(with_(broker={"username": "u", "password_env": "EDGE_PW"}))
    assert cfg.broker.password() == "envsecret"
    assert "envsecret" not in str(cfg.masked())
    monkeypatch.delenv("EDGE_PW")
    with pytest.raises(ConfigError, match="EDGE_PW"):
        cfg.broker.password()


def test_password_needs_username() -> None:
    with pytest.raises(ConfigError, match="username"):
        parse_config(with_(broker={"password_env": "X"}))


def test_model_must_match_input() -> None:
    with pytest.raises(ConfigError, match=r"\n  model.input_dim=8 but input.dim=9 gives 9 features"):
        parse_config(with_(input={"dim": 9}))
    with pytest.raises(ConfigError, match="num_classes"):
        parse_config(with_(input={"num_classes": 4}))


def test_shape_and_dim_must_agree() -> None:
    cfg = parse_config(with_(input={"dim": None, "shape": [2, 4]}))
    assert cfg.input.flat_dim == 8
    with pytest.raises(ConfigError, match="disagrees"):
        parse_config(with_(input={"dim": 9, "shape": [2, 4]}))


def test_bad_model_spec_is_reported() -> None:
    with pytest.raises(ConfigError, match="model"):
        parse_config(with_(model={"type": "nosuch"}))


def test_relative_paths_follow_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[input]\ndim = 8\nnum_classes = 3\n[model]\ntype = "mlp"\ninput_dim = 8\nnum_classes = 3\n'
                    '[spool]\npath = "s/spool.db"\n')
    cfg = load_config(path)
    assert cfg.spool.path == tmp_path / "s" / "spool.db"
    assert cfg.checkpoint.dir == tmp_path / "checkpoints"


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[broker\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot be read"):
        load_config(tmp_path / "missing.toml")


def test_example_config_is_valid() -> None:
    example = Path(__file__).resolve().parents[1] / "deploy" / "config" / "example.toml"
    cfg = load_config(example)
    assert isinstance(cfg, Config)


def test_example_documents_every_key() -> None:
    example = (Path(__file__).resolve().parents[1] / "deploy" / "config" / "example.toml").read_text()
    for section_name, field in Config.model_fields.items():
        assert f"[{section_name}]" in example, section_name
        sub = getattr(field.annotation, "model_fields", None)
        for key in sub or {}:
            assert f"\n{key} =" in example or f"\n# {key} =" in example, f"{section_name}.{key}"


def test_example_file_is_the_generated_one() -> None:
    from edge_cl.config import render_example

    example = Path(__file__).resolve().parents[1] / "deploy" / "config" / "example.toml"
    assert example.read_text().strip() == render_example().strip(), (
        "deploy/config/example.toml is stale: regenerate it with "
        "python -c 'from edge_cl.config import render_example; print(render_example())' > deploy/config/example.toml")


def test_bench_table_for_budget_fit_is_part_of_the_schema() -> None:
    cfg = parse_config(with_(bench={"latency_budget_ms": 5.0, "batch": 10}))
    assert cfg.bench.latency_budget_ms == 5.0 and cfg.bench.rss_budget_mb is None
    with pytest.raises(ConfigError, match="bench.latency_budget_ms"):
        parse_config(with_(bench={"latency_budget_ms": -1}))


def test_the_daemon_learner_reports_each_batch_its_own_step() -> None:
    """The daemon books a batch's skip and hits to that batch: its learner never takes the lagged stats of the
    CUDA-graph step, whatever the table says."""
    for table in ({}, {"exact_stats": False}, {"exact_stats": True}):
        cfg = parse_config(with_(learner=table))
        assert cfg.learner.learner_config(cfg.vector_input).exact_stats is True


def test_model_mismatch_is_reported_beside_a_typo_elsewhere() -> None:
    data = with_(metrics={"prot": 9464}, model={"num_classes": 4})
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    msg = str(err.value)
    assert "metrics.prot: unknown key" in msg
    assert "model.num_classes=4 but input.num_classes=3" in msg


def test_every_model_problem_is_listed() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(with_(model={"input_dim": 9, "num_classes": 4}))
    msg = str(err.value)
    assert "model.input_dim=9" in msg and "model.num_classes=4" in msg


def test_a_huge_model_is_one_line_and_allocates_nothing() -> None:
    # Run where the process may not map more than 6 GiB: building the 40 GB model for real would fail there
    # with a RuntimeError traceback (or be killed) instead of a configuration error.
    import resource
    import subprocess
    import sys

    code = ("from edge_cl.config import parse_config, ConfigError\n"
            "try:\n"
            "    parse_config({'input': {'dim': 8, 'num_classes': 3}, 'model': {'type': 'mlp', 'input_dim': 8,"
            " 'hidden': [100000, 100000], 'num_classes': 3}})\n"
            "except ConfigError as exc:\n"
            "    print(exc)\n")

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))

    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=300,
                          preexec_fn=limit, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
    import re

    found = re.search(r"its ([\d,]+) parameters alone take ([\d,]+) bytes", done.stdout)
    assert found is not None and "learner.budget_bytes=2,000,000" in done.stdout, done.stdout
    params, nbytes = (int(g.replace(",", "")) for g in found.groups())
    assert params > 100_000 * 100_000 and nbytes == 4 * params


def test_a_builder_error_is_a_config_error_naming_the_model() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(with_(model={"hidden": "abc"}))
    assert "model.type = 'mlp'" in str(err.value)


def test_the_daemon_standardises_by_the_learners_own_rule() -> None:
    """Issue #28 item 5: one standardise rule. The daemon leaves ``standardize`` unset for vector inputs, so the
    learner's first batch decides there as in the library (sparse values in [-1, 1] stay raw, raw units are
    standardised); inputs of another shape are not standardised."""
    import numpy as np

    from edge_cl.learner import OnlineLearner

    vector = parse_config(with_())
    assert vector.learner_config().standardize is None
    image = parse_config(with_(input={"dim": None, "shape": [2, 4]}))
    assert image.learner_config().standardize is False
    assert parse_config(with_(learner={"standardize": True})).learner_config().standardize is True

    def decided(x: np.ndarray) -> bool:
        learner = OnlineLearner.from_config(vector.build_model(), vector.learner_config())
        learner.learn(x, np.arange(len(x)) % 3)
        return learner.standardizer is not None

    rng = np.random.default_rng(0)
    raw_units = (rng.normal(1000.0, 10.0, (16, 8))).astype(np.float32)
    sparse = (rng.random((16, 8)) * (rng.random((16, 8)) < 0.3)).astype(np.float32)
    assert decided(raw_units) and not decided(sparse)
