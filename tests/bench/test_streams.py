import os

import numpy as np
import pytest
import torch

from edge_cl.bench import streams
from edge_cl.bench.datasets import ImageData


@pytest.fixture(scope="module")
def data():
    # Synthetic stand-in for MNIST with the same layout: no data files needed, labels cycle 0..9.
    rng = np.random.default_rng(0)
    return ImageData(train_x=rng.integers(0, 256, (1000, 64), dtype=np.uint8), train_y=np.arange(1000) % 10,
                     test_x=rng.integers(0, 256, (600, 64), dtype=np.uint8), test_y=np.arange(600) % 10,
                     shape=(8, 8))


def _same(a, b):
    return all(torch.equal(u, v) for u, v in zip(a, b))


@pytest.mark.parametrize("build", [streams.rotated_mnist, streams.permuted_mnist])
def test_domain_il_shapes_counts_and_determinism(data, build):
    s = build(data, num_tasks=4, scale=0.1, seed=3)
    assert s.num_tasks == 4 and s.num_classes == 10 and s.input_shape == (64,)
    x, y = s.train(2)
    assert x.shape == (100, 64) and x.dtype == torch.float32 and y.shape == (100,)
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    xt, _yt = s.test(1)
    assert xt.shape == (500, 64)
    again = build(data, num_tasks=4, scale=0.1, seed=3)
    assert _same(s.train(2), again.train(2)) and _same(s.test(3), again.test(3))
    other = build(data, num_tasks=4, scale=0.1, seed=4)
    assert not torch.equal(s.train(2)[0], other.train(2)[0])
    # tasks differ from each other (different angle / permutation)
    assert not torch.equal(s.test(0)[0], s.test(1)[0])
    # the same images under each task's transform: labels agree across tasks
    assert torch.equal(s.test(0)[1], s.test(3)[1])


def test_rotated_angles_in_range(data):
    s = streams.rotated_mnist(data, num_tasks=20, scale=0.05, seed=0)
    assert all(0.0 <= a < 180.0 for a in s.params["angles"])
    assert len(set(s.params["angles"])) == 20


def test_rotation_by_zero_is_identity_and_by_90_moves_pixels():
    img = np.zeros((1, 16), dtype=np.uint8)
    img[0, 1] = 255  # row 0, col 1 of a 4x4 image
    assert np.array_equal(streams.rotate_uint8(img, (4, 4), 0.0), img)
    out = streams.rotate_uint8(img, (4, 4), 90.0).reshape(4, 4)
    assert out.sum() == 255 and out[0, 1] == 0
    # 360 degrees is the identity again
    assert np.array_equal(streams.rotate_uint8(img, (4, 4), 360.0), img)


def test_permuted_is_a_permutation_of_pixels(data):
    s = streams.permuted_mnist(data, num_tasks=2, scale=1.0, seed=0)
    x0, _ = s.train_raw(0)
    assert x0.shape == (1000, 64)
    assert sorted(x0.sum(1).tolist()) == sorted(data.train_x.astype(int).sum(1).tolist())


def test_split_mnist_is_class_incremental(data):
    s = streams.split_mnist(data, scale=1.0, seed=0)
    assert s.num_tasks == 5 and s.setting == "class-il"
    for t in range(5):
        _, y = s.train(t)
        assert set(y.tolist()) == {2 * t, 2 * t + 1}
        assert len(y) == 200
        _, yt = s.test(t)
        assert set(yt.tolist()) == {2 * t, 2 * t + 1}


def test_gradual_rotation_covers_the_stream_once(data):
    s = streams.gradual_rotation(data, segments=10, scale=1.0, seed=0)
    assert s.num_tasks == 10 and s.setting == "task-free"
    assert sum(len(s.train(t)[1]) for t in range(10)) == 1000
    assert s.params["eval_angles"] == pytest.approx([9.0 + 18.0 * j for j in range(10)])


def test_scale_is_checked(data):
    with pytest.raises(ValueError, match="scale"):
        streams.rotated_mnist(data, scale=0.0)
    with pytest.raises(ValueError, match="out of range"):
        streams.rotated_mnist(data, num_tasks=2, scale=0.1).train(2)


@pytest.mark.parametrize("name,dim", [("sea", 3), ("agrawal", 9), ("rbf", 10)])
def test_river_streams(name, dim):
    s = streams.river_synth(name, n=400, seed=1)
    assert s.x.shape == (400, dim) and s.x.dtype == np.float32 and s.y.shape == (400,)
    assert set(np.unique(s.y)) <= {0, 1}
    again = streams.river_synth(name, n=400, seed=1)
    np.testing.assert_array_equal(s.x, again.x)
    assert float(np.abs(s.x).max()) < 5.0  # inputs scaled to order 1


def test_unknown_stream():
    with pytest.raises(ValueError, match="unknown"):
        streams.make_stream("cifar-100")


def test_real_mnist_stream_when_present():
    try:
        s = streams.make_stream("rotated-mnist", scale=0.01, seed=0)
    except FileNotFoundError as exc:
        if os.environ.get("EDGE_CL_REQUIRE_DATA") == "1":
            raise
        pytest.skip(f"MNIST files not present: {exc}")
    x, _y = s.train(0)
    assert x.shape == (600, 784) and s.num_tasks == 20
    e = streams.make_stream("elec2")
    assert len(e) == 45312 and e.input_dim == 6
    o = streams.make_stream("occupancy")
    # The data README's counts: 20,560 rows, 4,414 of them occupied, in time order (datatest first).
    assert len(o) == 20560 and o.input_dim == 5 and int(o.y.sum()) == 972 + 1729 + 2049
    assert o.x[0, 0] == np.float32(23.7) and o.feature_names[2] == "Light"


def test_conflicting_regimes_same_inputs_new_labels_and_returns():
    s = streams.make_stream("conflicting-regimes", seed=3, scale=0.5)
    n, b = s.params["per_regime"], s.params["bounds"]
    assert s.x.shape == (4 * n, 6) and s.num_classes == 3 and s.params["regimes"] == list("ABCA")
    assert set(np.unique(s.y)) == {0, 1, 2}
    # Inputs keep their distribution: every regime's feature means agree closely.
    means = [s.x[b[i]:b[i + 1]].mean(axis=0) for i in range(4)]
    assert max(np.abs(m - means[0]).max() for m in means) < 0.1
    # The labelling rule moves: a rule fitted on A's samples disagrees with B's labels; A's return uses A's rule.
    rules = {c: np.random.default_rng([3, ord(c)]).standard_normal((6, 3)) for c in "ABC"}
    for i, c in enumerate("ABCA"):
        seg = slice(b[i], b[i + 1])
        assert (np.argmax(s.x[seg] @ rules[c], axis=1) == s.y[seg]).all()
    disagree = (np.argmax(s.x @ rules["A"], axis=1) != np.argmax(s.x @ rules["B"], axis=1)).mean()
    assert disagree > 0.3
    again = streams.make_stream("conflicting-regimes", seed=3, scale=0.5)
    assert (again.x == s.x).all() and (again.y == s.y).all()
    assert not (streams.make_stream("conflicting-regimes", seed=4, scale=0.5).y == s.y).all()


def test_recurring_mnist_concepts_are_fixed_permutations_that_come_back(data):
    s = streams.recurring_mnist(data, per_visit=100, visits="ABCAB", seed=2)
    b = s.params["bounds"]
    assert s.x.shape == (500, 64) and s.num_classes == 10 and s.params["regimes"] == list("ABCAB")
    assert b == [0, 100, 200, 300, 400, 500] and 0.0 <= s.x.min() and s.x.max() <= 1.0
    # No image is seen twice: 500 distinct training indices. A visit of A shows images unpermuted.
    flat = {bytes(row) for row in (s.x * 255).round().astype(np.uint8)}
    assert len(flat) == 500
    a0 = {bytes(r) for r in data.train_x}
    assert all(bytes(r) in a0 for r in (s.x[b[3]:b[4]] * 255).round().astype(np.uint8))
    # B's permutation is the same on both visits, and differs from C's: sorted pixel values are kept per image,
    # and a B image un-permuted with B's permutation is a training image.
    perm = np.random.default_rng([2, ord("B")]).permutation(64)
    for lo, hi in ((b[1], b[2]), (b[4], b[5])):
        back = np.empty_like(s.x[lo:hi])
        back[:, perm] = s.x[lo:hi]
        assert all(bytes(r) in a0 for r in (back * 255).round().astype(np.uint8))
    assert np.array_equal(streams.recurring_mnist(data, per_visit=100, visits="ABCAB", seed=2).x, s.x)
    with pytest.raises(ValueError, match="needs 1100 images"):
        streams.recurring_mnist(data, per_visit=220, visits="ABCAB")
