"""predict='ncm': equal to brute-force nearest normalised class mean, through predict and through ONNX."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edge_cl import models
from edge_cl.learner import OnlineLearner
from tests.methods.retention import two_tasks

# The learner's input defaults (standardize=None, float16 storage) are not what these tests are about.
INPUTS = {"standardize": False, "storage": "float32"}


def _trained(method="er", **kw):
    torch.manual_seed(0)
    model = models.mlp(6, [12, 8], 4)
    learner = OnlineLearner(model, budget_bytes=60_000, method=method, replay_batch=5, seed=0, trigger=None, **INPUTS,
                            device="cpu", predict="ncm", max_buffer_samples=40, **kw)
    gen = torch.Generator().manual_seed(0)
    protos = torch.randn(4, 6, generator=gen) * 2
    for _ in range(30):
        y = torch.randint(0, 3, (5,), generator=gen)  # class 3 never arrives: it has no mean
        learner.learn(protos[y] + torch.randn(5, 6, generator=gen), y)
    return learner, protos


def _brute_force(learner, net, x):
    feats = lambda v: F.normalize(torch.nn.Sequential(*list(net.body)[:-1])(v), dim=1)
    n = len(learner.buffer)
    with torch.no_grad():
        fb, yb, fx = feats(learner.buffer.x[:n]), learner.buffer.y[:n], feats(x)
        classes = sorted(set(yb.tolist()))
        means = torch.stack([F.normalize(fb[yb == c].mean(0), dim=0) for c in classes])
        best = []
        for row in fx:
            d = [float(((row - m) ** 2).sum()) for m in means]
            best.append(classes[int(np.argmin(d))])
    return np.array(best)


@pytest.mark.parametrize("method", ["er", "cls-er"])
def test_predict_is_brute_force_nearest_mean(method):
    learner, protos = _trained(method)
    x = torch.randn(50, 6, generator=torch.Generator().manual_seed(5)) * 2
    net = learner.get_method("cls-er").stable if method == "cls-er" else learner.model
    got = learner.predict(x)
    assert (got == _brute_force(learner, net, x)).all()
    assert 3 not in set(got.tolist())
    assert learner.memory_report()["parts"]["ncm"] == 4 * 4 * (8 + 1)
    # The means follow the model: after a step they are recomputed.
    learner.learn(protos[[0, 1]], torch.tensor([0, 1]))
    assert (learner.predict(x) == _brute_force(learner, net, x)).all()


def test_onnx_snapshot_gives_the_same_predictions():
    ort = pytest.importorskip("onnxruntime")
    from edge_cl.export.onnx_export import export_onnx

    learner, _ = _trained()
    x = torch.randn(64, 6, generator=torch.Generator().manual_seed(7)) * 2
    data = export_onnx(learner.inference_model(), step=learner.step)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    logits, probs = session.run(None, {"input": x.numpy()})
    assert (logits.argmax(1) == learner.predict(x)).all()
    assert (logits.argmax(1) == _brute_force(learner, learner.model, x)).all()
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)


def test_ncm_needs_a_buffer_and_features():
    with pytest.raises(ValueError, match="ncm"):
        OnlineLearner(models.mlp(6, [8], 3), budget_bytes=60_000, method="sgd", predict="ncm", device="cpu")


def test_ncm_retains_old_classes():
    sgd0, _, _ = two_tasks("sgd", class_il=True)
    old, new, _ = two_tasks("er", class_il=True, predict="ncm")
    assert old >= sgd0 + 0.4 and new >= 0.8


def test_state_round_trip_predicts_the_same(tmp_path):
    learner, _ = _trained()
    x = torch.randn(20, 6)
    before = learner.predict(x)
    learner.save(tmp_path / "s.pt")
    again = OnlineLearner.load(tmp_path / "s.pt", device="cpu")
    assert (again.predict(x) == before).all()
