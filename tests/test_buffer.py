import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from edge_cl.buffer import ReservoirBuffer
from edge_cl.buffer_storage import StorageCodec


def _stream_ids(buffer: ReservoirBuffer, n: int, batch: int) -> None:
    for start in range(0, n, batch):
        ids = torch.arange(start, min(start + batch, n), dtype=torch.float32)
        buffer.add(ids[:, None], torch.zeros(ids.shape[0], dtype=torch.int64))


def _inclusion_counts(n: int, capacity: int, runs: int, batch: int) -> np.ndarray:
    counts = np.zeros(n)
    for seed in range(runs):
        buf = ReservoirBuffer(capacity, 1, generator=torch.Generator().manual_seed(seed))
        _stream_ids(buf, n, batch)
        counts[buf.x[:, 0].long().numpy()] += 1
    return counts


@pytest.mark.parametrize("batch", [1, 7])
def test_reservoir_keeps_every_sample_with_probability_capacity_over_n(batch):
    n, capacity, runs = 40, 8, 800
    counts = _inclusion_counts(n, capacity, runs, batch)
    assert counts.sum() == runs * capacity  # each run ends full
    expected = np.full(n, runs * capacity / n)
    _, p = stats.chisquare(counts, expected)
    assert p > 1e-3, f"inclusion frequencies not uniform (chi-square p={p:.2g})"


def test_chisquare_check_catches_a_biased_buffer():
    """The uniformity check above must be able to fail: keeping the first samples is rejected."""
    n, capacity, runs = 60, 12, 1500
    counts = np.zeros(n)
    counts[:capacity] = runs  # a "buffer" that never replaces
    _, p = stats.chisquare(counts, np.full(n, runs * capacity / n))
    assert p < 1e-6


@settings(max_examples=40, deadline=None)
@given(capacity=st.integers(0, 20), batches=st.lists(st.integers(0, 9), max_size=12))
def test_length_is_min_of_seen_and_capacity(capacity, batches):
    buf = ReservoirBuffer(capacity, 2)
    seen = 0
    for b in batches:
        buf.add(torch.randn(b, 2), torch.zeros(b, dtype=torch.int64))
        seen += b
        assert len(buf) == min(seen, capacity)
        assert buf.seen == seen


@settings(max_examples=25, deadline=None)
@given(capacity=st.integers(1, 12), sizes=st.lists(st.integers(1, 9), min_size=1, max_size=10),
       seed=st.integers(0, 2**16))
def test_adding_a_batch_equals_adding_its_samples_one_by_one(capacity, sizes, seed):
    whole = ReservoirBuffer(capacity, 1, generator=torch.Generator().manual_seed(seed))
    single = ReservoirBuffer(capacity, 1, generator=torch.Generator().manual_seed(seed))
    start = 0
    for b in sizes:
        ids = torch.arange(start, start + b, dtype=torch.float32)[:, None]
        labels = torch.arange(start, start + b)
        whole.add(ids, labels)
        for i in range(b):
            single.add(ids[i:i + 1], labels[i:i + 1])
        start += b
    assert torch.equal(whole.x, single.x) and torch.equal(whole.y, single.y)


def test_sample_returns_copies():
    buf = ReservoirBuffer(4, 2)
    buf.add(torch.ones(2, 2), torch.zeros(2, dtype=torch.int64))
    x, _ = buf.sample(8)
    x.fill_(7.0)
    assert torch.equal(buf.x[:2], torch.ones(2, 2))


def test_stored_pairs_stay_together():
    buf = ReservoirBuffer(8, 3, generator=torch.Generator().manual_seed(1))
    for start in range(0, 100, 5):
        ids = torch.arange(start, start + 5)
        buf.add(ids[:, None].float().repeat(1, 3), ids)
    x, y = buf.sample(50)
    assert torch.equal(x[:, 0].long(), y)
    assert torch.equal(x[:, 0], x[:, 2])


def test_sample_shapes_and_small_buffer_returns_all():
    buf = ReservoirBuffer(10, 4)
    x, y = buf.sample(5)
    assert x.shape == (0, 4) and y.shape == (0,)
    buf.add(torch.randn(3, 4), torch.tensor([0, 1, 2]))
    x, y = buf.sample(5)
    assert x.shape == (3, 4) and sorted(y.tolist()) == [0, 1, 2]
    buf.add(torch.randn(10, 4), torch.zeros(10, dtype=torch.int64))
    x, y = buf.sample(5)
    assert x.shape == (5, 4) and x.dtype == torch.float32 and y.dtype == torch.int64


def test_class_balanced_keeps_rare_classes():
    gen = torch.Generator().manual_seed(0)
    plain = ReservoirBuffer(50, 2, generator=torch.Generator().manual_seed(0))
    balanced = ReservoirBuffer(50, 2, class_balanced=True, generator=gen)
    rng = np.random.default_rng(0)
    for _ in range(300):  # 2% of the stream is class 1
        y = torch.from_numpy((rng.random(10) < 0.02).astype(np.int64))
        x = torch.randn(10, 2)
        plain.add(x, y)
        balanced.add(x, y)
    rare_seen = balanced._class_seen[1]
    hist = balanced.class_histogram()
    assert hist[1] == min(rare_seen, 25)  # rare class keeps everything up to half the buffer
    assert plain.class_histogram().get(1, 0) < hist[1]
    assert len(balanced) == 50


@pytest.mark.parametrize("kind,lo,hi", [("float16", 0.0, 1.0), ("uint8", 0.0, 1.0)])
def test_compact_storage_fits_more_samples_in_the_same_bytes(kind, lo, hi):
    dim, budget = 784, 1_000_000
    f32 = budget // ReservoirBuffer.bytes_per_sample(dim)
    compact = budget // ReservoirBuffer.bytes_per_sample(dim, StorageCodec(kind, lo, hi))
    assert compact > 1.9 * f32 if kind == "float16" else compact > 3.5 * f32
    buf = ReservoirBuffer(compact, dim, codec=StorageCodec(kind, lo, hi))
    assert sum(t.nbytes for t in buf.tensors()) <= budget
    x = torch.rand(4, dim)
    buf.add(x, torch.arange(4))
    got, _ = buf.sample(4)
    assert (got - x).abs().max() < 1 / 255  # decodes back to float32 within a quantisation step


def test_state_roundtrip_restores_contents():
    buf = ReservoirBuffer(5, 2)
    buf.add(torch.randn(9, 2), torch.arange(9) % 3)
    other = ReservoirBuffer(5, 2)
    other.load_state_dict(buf.state_dict())
    assert torch.equal(other.x, buf.x) and torch.equal(other.y, buf.y)
    assert (len(other), other.seen) == (5, 9)
    with pytest.raises(ValueError, match="capacity 3"):
        ReservoirBuffer(3, 2).load_state_dict(buf.state_dict())


def test_a_float16_field_saturates_instead_of_storing_infinity():
    import torch

    from edge_cl.buffer import ReservoirBuffer
    from edge_cl.methods import SampleField

    buf = ReservoirBuffer(4, 2, fields={"logits": SampleField((3,), torch.float16)},
                          generator=torch.Generator().manual_seed(0))
    values = torch.tensor([[1e6, -1e6, 1.5], [70000.0, -3.0, 0.25]])
    buf.add(torch.zeros(2, 2), torch.tensor([0, 1]), {"logits": values})
    stored = buf.values["logits"][:2].float()
    assert torch.equal(stored, torch.tensor([[65504.0, -65504.0, 1.5], [65504.0, -3.0, 0.25]]))


@pytest.mark.parametrize("classes,dtype", [(2, torch.uint8), (256, torch.uint8), (257, torch.int16),
                                           (40_000, torch.int32), (None, torch.int64)])
def test_labels_are_stored_in_the_smallest_type_and_drawn_as_int64(classes, dtype):
    from edge_cl.buffer import label_dtype

    assert label_dtype(classes) == dtype
    buf = ReservoirBuffer(8, 3, num_classes=classes)
    top = (classes or 1 << 40) - 1
    buf.add(torch.zeros(4, 3), torch.tensor([0, 1, top, top], dtype=torch.int64))
    assert buf.y.dtype == dtype and buf.y.element_size() == ReservoirBuffer.field_bytes(3, num_classes=classes)["y"]
    drawn = buf.draw(4)
    assert drawn["y"].dtype == torch.int64 and sorted(drawn["y"].tolist()) == [0, 1, top, top]
    assert buf.draw(2)["y"].dtype == torch.int64


def test_a_state_with_int64_labels_loads_into_compact_labels():
    old = ReservoirBuffer(4, 2)
    old.add(torch.ones(3, 2), torch.tensor([2, 0, 1]))
    new = ReservoirBuffer(4, 2, num_classes=3)
    new.load_state_dict(old.state_dict())
    assert new.y.dtype == torch.uint8 and new.draw(3)["y"].tolist() == [2, 0, 1]


def test_a_loaded_class_balanced_buffer_evicts_as_the_live_one():
    """Ties among the largest classes are broken by the same draw whatever order the class counts were built in:
    first-seen order live, label order after a load (the eviction differed after a resume before)."""
    def fill() -> ReservoirBuffer:
        buf = ReservoirBuffer(4, 2, class_balanced=True, generator=torch.Generator().manual_seed(5), num_classes=4)
        buf.add(torch.arange(8.0).reshape(4, 2), torch.tensor([3, 3, 1, 1]))  # full; classes 3 and 1 tie, 3 first
        return buf

    live, loaded = fill(), ReservoirBuffer(4, 2, class_balanced=True, num_classes=4,
                                           generator=torch.Generator().manual_seed(5))
    loaded.load_state_dict(live.state_dict())
    loaded.generator.set_state(live.generator.get_state())
    assert list(live._class_counts) != list(loaded._class_counts)  # the orders differ
    for step in range(20):
        x, y = torch.full((1, 2), 100.0 + step), torch.tensor([step % 2 * 2])  # classes 0 and 2 push in
        live.add(x, y)
        loaded.add(x, y)
        assert torch.equal(live.x, loaded.x) and torch.equal(live.y, loaded.y), f"after {step + 1} inserts"
