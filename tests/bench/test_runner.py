import numpy as np
import pytest

from edge_cl.bench import peers as peer_mod
from edge_cl.bench.baselines import no_change_correct
from edge_cl.bench.runner import BenchConfig, run_bench, run_prequential_stream, run_task_stream
from edge_cl.bench.schema import REQUIRED_KEYS, check_document


def _cfg(**kw):
    base = {"stream": "rotated-mnist", "methods": ["er"], "device": "cpu", "budget_samples": 50}
    base.update(kw)
    return BenchConfig(**base)


@pytest.mark.parametrize("method", ["sgd", "er", "er+mas", "bare-er"])
def test_task_stream_result(tiny_task_stream, method, one_thread):
    r = run_task_stream(_cfg(), tiny_task_stream, method, seed=0)
    t = tiny_task_stream.num_tasks
    assert all(k in r for k in REQUIRED_KEYS)
    m = np.asarray(r["accuracy_matrix"])
    assert m.shape == (t, t) and ((m >= 0) & (m <= 1)).all()
    assert r["acc"] == pytest.approx(m[-1].mean())
    assert r["samples"] == sum(tiny_task_stream.train_size(i) for i in range(t))
    assert r["steps"] == sum(-(-tiny_task_stream.train_size(i) // 10) for i in range(t))
    assert r["used_bytes"] <= r["budget_bytes"]
    assert r["latency_ms_p50"] <= r["latency_ms_p99"]
    assert r["samples_per_s"] > 0
    if method in ("er", "er+mas", "bare-er"):
        # The bytes of 50 float32 samples with int64 labels, stored in the learner's default storage ('auto': the
        # 8-bit pixels as uint8) with ten classes' labels as uint8, so about four times as many fit (the bare loop
        # stores float32).
        dim = tiny_task_stream.input_dim
        per = dim * 4 + 1 if method == "bare-er" else dim + 1
        assert method == "bare-er" or r["storage"] == "uint8"
        assert r["buffer_capacity"] == 50 * (dim * 4 + 8) // per
    else:
        assert r["buffer_capacity"] == 0


def test_task_stream_is_deterministic(tiny_task_stream, one_thread):
    a = run_task_stream(_cfg(), tiny_task_stream, "er", seed=0)
    b = run_task_stream(_cfg(), tiny_task_stream, "er", seed=0)
    assert a["accuracy_matrix"] == b["accuracy_matrix"]
    assert a["prequential_acc"] == b["prequential_acc"]


def test_learner_sgd_matches_bare_sgd(tiny_task_stream, one_thread):
    # Same init, same batches, plain SGD on both sides: edge_cl must compute the same thing as the bare loop (which
    # has no standardiser).
    a = run_task_stream(_cfg(standardize=False), tiny_task_stream, "sgd", seed=0)
    b = run_task_stream(_cfg(), tiny_task_stream, "bare-sgd", seed=0)
    np.testing.assert_allclose(a["accuracy_matrix"], b["accuracy_matrix"], atol=0.01)


def test_joint_and_no_change(tiny_task_stream, one_thread):
    j = run_task_stream(_cfg(joint_epochs=2), tiny_task_stream, "joint", seed=0)
    assert j["accuracy_matrix"] is None and 0.0 <= j["acc"] <= 1.0
    assert len(j["final_accuracies"]) == tiny_task_stream.num_tasks
    n = run_task_stream(_cfg(), tiny_task_stream, "no-change", seed=0)
    ys = np.concatenate([tiny_task_stream.train(t)[1].numpy() for t in range(tiny_task_stream.num_tasks)])
    assert n["prequential_acc"] == pytest.approx(no_change_correct(ys).mean())


def test_prequential_stream(tiny_prequential, one_thread):
    r = run_prequential_stream(_cfg(stream="toy"), tiny_prequential, "er", seed=0)
    assert r["samples"] == 400 and r["accuracy_matrix"] is None and r["acc"] is None
    assert 0.0 <= r["prequential_acc"] <= 1.0
    nc = run_prequential_stream(_cfg(stream="toy"), tiny_prequential, "no-change", seed=0)
    assert nc["prequential_acc"] == pytest.approx(no_change_correct(tiny_prequential.y).mean())
    j = run_prequential_stream(_cfg(stream="toy"), tiny_prequential, "joint", seed=0)
    assert j["note"].startswith("skipped")


def test_conflicting_regimes_result_scores_each_visit(one_thread):
    from edge_cl.bench.streams import conflicting_regimes

    stream = conflicting_regimes(per_regime=300, seed=0)
    r = run_prequential_stream(_cfg(stream="conflicting-regimes"), stream, "sgd", seed=0)
    visits = r["regimes"]["visits"]
    assert [v["regime"] for v in visits] == list("ABCA") and [v["samples"] for v in visits] == [300] * 4
    assert visits[3]["previous_end_acc"] == visits[0]["last_acc"]
    assert r["regimes"]["return_gap"] == pytest.approx(visits[3]["first_acc"] - visits[0]["last_acc"])


def test_run_bench_document_with_peers_and_repeat(one_thread):
    doc = run_bench(_cfg(stream="sea", methods=["er", "no-change"], scale=0.02, repeat=2,
                         peers=["logreg", "hat"]))
    assert check_document(doc) == []
    assert set(doc["methods"]) == {"er", "no-change", "bare-er"}
    er = doc["methods"]["er"]
    assert er["seeds"] == [0, 1] and len(er["runs"]) == 2
    assert er["prequential_acc"] == pytest.approx(np.mean([r["prequential_acc"] for r in er["runs"]]))
    assert "prequential_acc_std" in er and er["vs_bare"] > 0
    assert doc["peers"]["logreg"]["samples"] == 400
    assert 0.0 <= doc["peers"]["hat"]["prequential_acc"] <= 1.0


def test_missing_peer_package_is_reported_not_raised(tiny_prequential, monkeypatch):
    def missing(name):
        raise ImportError("no river", name="river")
    monkeypatch.setattr(peer_mod, "_factory", missing)
    out = peer_mod.run_peers(["arf"], tiny_prequential)
    assert out["arf"]["note"].startswith("skipped: not installed")


def test_peer_subsampling_is_stated(tiny_prequential):
    out = peer_mod.run_peers(["logreg"], tiny_prequential, max_samples=100)
    assert out["logreg"]["samples"] == 100 and "subsampled" in out["logreg"]["note"]


def test_config_checks():
    with pytest.raises(ValueError, match="exactly one"):
        BenchConfig(stream="sea", methods=["er"], budget_samples=None, budget_bytes=None).resolved()
    with pytest.raises(ValueError, match="protocol"):
        BenchConfig(stream="sea", methods=["er"], protocol="fast").resolved()
    der = BenchConfig(stream="sea", methods=["er"], protocol="der").resolved()
    assert (der.batch, der.replay_batch, der.lr) == (128, 128, 0.2)


def test_budget_bytes_is_shared(tiny_task_stream, one_thread):
    r1 = run_task_stream(_cfg(budget_samples=None, budget_bytes=400_000), tiny_task_stream, "er", seed=0)
    r2 = run_task_stream(_cfg(budget_samples=None, budget_bytes=400_000), tiny_task_stream, "er+ewc", seed=0)
    assert r1["budget_bytes"] == r2["budget_bytes"] == 400_000
    # importance state takes bytes from the same budget, so fewer samples fit
    assert r2["buffer_capacity"] < r1["buffer_capacity"]


def test_xavier_init_is_seeded_and_zero_bias():
    from torch import nn

    from edge_cl.bench.runner import build_model

    spec = {"type": "mlp", "input_dim": 20, "hidden": [30], "num_classes": 5}
    a, b = build_model(spec, 3, "xavier"), build_model(spec, 3, "xavier")
    lin = [m for m in a.modules() if isinstance(m, nn.Linear)]
    assert all(float(m.bias.detach().abs().sum()) == 0.0 for m in lin)
    bound = (6 / (20 + 30)) ** 0.5
    assert float(lin[0].weight.detach().abs().max()) <= bound
    assert all((p == q).all() for p, q in zip(a.parameters(), b.parameters()))
    assert not all((p == q).all() for p, q in zip(a.parameters(), build_model(spec, 3).parameters()))
    with pytest.raises(ValueError, match="init"):
        build_model(spec, 0, "he")


def test_max_grad_norm_reaches_every_learner_method_and_the_report():
    from edge_cl.bench.report import markdown_table
    from edge_cl.bench.runner import _make_stepper, default_model_spec
    from edge_cl.learner_config import LearnerConfig

    cfg = BenchConfig(stream="sea", methods=["er", "der++"], max_grad_norm=5.0, bare=False).resolved()
    spec = default_model_spec(3, 2)
    for method in ("er", "der++"):
        stepper = _make_stepper(cfg, method, spec, seed=0)
        assert stepper.learner.config.max_grad_norm == 5.0
    default = _make_stepper(BenchConfig(stream="sea", methods=["er"], bare=False).resolved(), "er", spec, seed=0)
    assert default.learner.config.max_grad_norm == LearnerConfig.model_fields["max_grad_norm"].default  # unset
    doc = {"config": {**cfg.__dict__, "repeat": 1}, "stream": {"name": "sea", "setting": "prequential",
                                                              "samples": 10, "input_shape": [3], "num_classes": 2},
           "methods": {}, "budget": {"note": "-"}}
    assert "gradient norm clipped at 5.0" in markdown_table(doc)
