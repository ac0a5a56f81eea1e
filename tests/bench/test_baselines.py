import numpy as np
import pytest
import torch

from edge_cl import models
from edge_cl.bench.baselines import BareLoop, no_change_correct, train_joint
from edge_cl.bench.runner import build_model


def test_no_change_predicts_previous_label():
    np.testing.assert_array_equal(no_change_correct([1, 1, 0, 0, 0, 1]), [False, True, False, True, True, False])
    assert no_change_correct([]).shape == (0,)


def test_bare_reservoir_fills_to_capacity_and_counts_seen():
    bare = BareLoop(models.mlp(4, [8], 2), lr=0.1, replay_batch=3, buffer_capacity=5, seed=0)
    x, y = torch.rand(40, 4), torch.randint(2, (40,))
    for s in range(0, 40, 4):
        bare.learn(x[s:s + 4], y[s:s + 4])
    assert bare.size == 5 and bare.seen == 40
    # every stored row is one of the stream's samples
    for row in bare.buf_x:
        assert any(torch.equal(row, xi) for xi in x)


def test_bare_sgd_has_no_buffer():
    bare = BareLoop(models.mlp(4, [8], 2), lr=0.1, replay_batch=0, buffer_capacity=5)
    bare.learn(torch.rand(4, 4), torch.tensor([0, 1, 0, 1]))
    assert bare.capacity == 0 and bare.size == 0


def test_bare_loop_learns_a_separable_problem():
    torch.manual_seed(0)
    x = torch.rand(2000, 4)
    y = (x[:, 0] > 0.5).long()
    bare = BareLoop(models.mlp(4, [16], 2), lr=0.5, replay_batch=5, buffer_capacity=50)
    correct = sum(bare.learn(x[s:s + 10], y[s:s + 10]) for s in range(0, 2000, 10))
    assert correct / 2000 > 0.7
    assert (bare.predict(x[:500]) == y[:500].numpy()).mean() > 0.85


def test_joint_trains_on_uint8_tasks():
    rng = np.random.default_rng(0)
    xs = [rng.integers(0, 256, (200, 4)).astype(np.uint8) for _ in range(2)]
    ys = [(x[:, 0] > 127).astype(np.int64) for x in xs]
    model = train_joint(build_model({"type": "mlp", "input_dim": 4, "hidden": [16], "num_classes": 2}, 0),
                        xs, ys, epochs=20, batch=20, lr=0.5)
    with torch.no_grad():
        pred = model(torch.from_numpy(np.concatenate(xs)).float() / 255).argmax(1).numpy()
    assert (pred == np.concatenate(ys)).mean() > 0.85
    with pytest.raises(ValueError, match="epochs"):
        train_joint(model, xs, ys, epochs=0, batch=1, lr=0.1)
