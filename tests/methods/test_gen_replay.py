"""Generative replay (edge_cl.methods.gen_replay): what its generator learns, what it keeps, what it retains.

The contract suite (tests/methods/test_contract.py) covers save / load / resume, the budget, seeding and skips."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from edge_cl import OnlineLearner, models
from tests.methods import test_contract as contract
from tests.oracles import assert_resumes_bit_identically

DIM, CLASSES = 16, 4


def _blobs(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per class a mean and one long axis (std 3 along it, 0.3 across)."""
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((CLASSES, DIM)).astype(np.float32) * 3
    axes = rng.standard_normal((CLASSES, DIM)).astype(np.float32)
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    return means, axes


def _draw(rng: np.random.Generator, means: np.ndarray, axes: np.ndarray, classes: list[int], n: int
          ) -> tuple[np.ndarray, np.ndarray]:
    y = rng.choice(classes, n)
    x = means[y] + 3 * rng.standard_normal((n, 1)).astype(np.float32) * axes[y]
    x += 0.3 * rng.standard_normal((n, DIM)).astype(np.float32)
    return x.astype(np.float32), y


def _learner(method: str, **kw: object) -> OnlineLearner:
    torch.manual_seed(0)
    return OnlineLearner(models.mlp(DIM, [32], CLASSES), 400_000, method=method, device="cpu", seed=0,
                         standardize=False, lr=0.05, **kw)


def test_the_generator_learns_each_class_mean_and_its_long_axis():
    means, axes = _blobs(0)
    learner = _learner("gen-replay", gen_rank=4)
    rng = np.random.default_rng(1)
    for _ in range(300):
        learner.learn(*_draw(rng, means, axes, list(range(CLASSES)), 10))
    gen = learner.methods[0]
    assert torch.allclose(gen.means, torch.from_numpy(means), atol=0.5)
    x, y = gen.sample(4000)
    for c in range(CLASSES):
        rows = x[y == c].numpy()
        assert np.abs(rows.mean(0) - means[c]).max() < 0.6
        # The generated spread follows the class's long axis: its top principal direction is that axis.
        top = np.linalg.svd(rows - rows.mean(0), full_matrices=False)[2][0]
        assert abs(float(top @ axes[c])) > 0.9
        assert 1.5 < float(((rows - rows.mean(0)) @ axes[c]).std()) < 3.5


def test_it_keeps_no_samples_and_counts_its_bytes():
    learner = _learner("gen-replay", gen_rank=3)
    report = learner.memory_report()
    assert report["buffer_capacity"] == 0
    # mean and a 2 x rank-row sketch per class (float32), counts and rows filled (int64), the range seen (2 x dim)
    expected = CLASSES * DIM * (2 * 3 + 1) * 4 + 2 * CLASSES * 8 + 2 * DIM * 4
    assert report["parts"]["gen-replay"] == expected


def old_classes_kept(make: Callable[[str], OnlineLearner], method: str) -> tuple[float, float]:
    """Accuracy on classes 0-1 and on 2-3 after learning 0-1, then 2-3 only, each next to one of the first two."""
    means, axes = _blobs(2)
    shift = np.random.default_rng(7).standard_normal(DIM).astype(np.float32)
    means[2:] = means[:2] + 2.5 * shift / np.linalg.norm(shift)
    learner = make(method)
    rng = np.random.default_rng(3)
    for classes in ([0, 1], [2, 3]):
        for _ in range(150):
            learner.learn(*_draw(rng, means, axes, classes, 10))
    old = _draw(np.random.default_rng(4), means, axes, [0, 1], 400)
    new = _draw(np.random.default_rng(5), means, axes, [2, 3], 400)
    return float((learner.predict(old[0]) == old[1]).mean()), float((learner.predict(new[0]) == new[1]).mean())


def test_generated_replay_retains_classes_no_longer_seen():
    """Generated replay keeps classes 0-1 where fine-tuning hands their region to 2-3."""
    (sgd_old, _), (gen_old, gen_new) = old_classes_kept(_learner, "sgd"), old_classes_kept(_learner, "gen-replay")
    assert sgd_old < 0.3 and gen_old > 0.85 and gen_new > 0.85, (sgd_old, gen_old, gen_new)


def test_rank_zero_replays_class_means():
    means, axes = _blobs(5)
    learner = _learner("gen-replay", gen_rank=0)
    rng = np.random.default_rng(6)
    for _ in range(50):
        learner.learn(*_draw(rng, means, axes, [0, 2], 10))
    x, y = learner.methods[0].sample(100)
    assert set(y.tolist()) == {0, 2}
    for c in (0, 2):
        assert torch.allclose(x[y == c], learner.methods[0].means[c].expand_as(x[y == c]))


# --- a class that drifts: components in time, spare rows, int8 rows -----------------------------------------------
MIXTURE = {"gen_components": 3, "gen_span": 100, "gen_rank": 2, "gen_spare": 1, "gen_storage": "int8"}


def _phases(learner: OnlineLearner, centres: list[np.ndarray], steps: int = 30) -> None:
    """Class 0 only, around each centre in turn (the same label, its inputs moved: a drifting concept)."""
    rng = np.random.default_rng(8)
    for centre in centres:
        for _ in range(steps):
            learner.learn((centre + 0.3 * rng.standard_normal((10, DIM))).astype(np.float32), np.zeros(10, int))


def test_components_keep_each_phase_of_a_drifting_class_where_one_gaussian_blurs_them():
    centres = [np.full(DIM, -4.0, np.float32), np.full(DIM, 4.0, np.float32)]
    one, two = _learner("gen-replay", gen_rank=2), _learner("gen-replay", **MIXTURE)
    for learner in (one, two):
        _phases(learner, centres)
    x1, _ = one.methods[0].sample(2000)
    x2, y2 = two.methods[0].sample(2000)
    assert set(y2.tolist()) == {0}
    # One Gaussian replays the average and its spread, never the phases themselves (the middle of the two is the
    # densest); the mixture replays each phase, half of its rows near each centre.
    near = [(np.abs(x2.numpy() - c).max(1) < 2.0).mean() for c in centres]
    assert min(near) > 0.4 and sum(near) > 0.95, near
    assert max((np.abs(x1.numpy() - c).max(1) < 2.0).mean() for c in centres) < 0.4


def test_full_components_merge_the_two_closest_with_their_pooled_spread():
    """Four phases in three components: the first two phases (close) are merged when the fourth opens, and the
    merged Gaussian spreads along the line between them (the between-means term of the pooled scatter)."""
    a, b = np.zeros(DIM, np.float32), np.full(DIM, 1.0, np.float32)
    far, farther = np.full(DIM, 9.0, np.float32), np.full(DIM, -9.0, np.float32)
    learner = _learner("gen-replay", **(MIXTURE | {"gen_storage": "float32"}))
    _phases(learner, [a, b, far, farther], steps=10)  # 100 samples per phase: one span each
    gen = learner.methods[0]
    means, counts = gen.means[:3], gen.counts[:3].tolist()
    assert sorted(counts) == [100, 100, 200], counts
    merged = int(np.argmax(counts))
    assert torch.allclose(means[merged], torch.full((DIM,), 0.5), atol=0.1)
    others = sorted(float(means[i].mean()) for i in range(3) if i != merged)
    assert abs(others[0] + 9) < 0.1 and abs(others[1] - 9) < 0.1, others
    x, _ = gen.sample(3000)
    rows = x.numpy()[np.abs(x.numpy() - 0.5).max(1) < 3]
    along = (rows - 0.5) @ (np.ones(DIM) / DIM ** 0.5)
    # a to b is sqrt(DIM) = 4 apart: half-and-half points have std 2 along it, 0.3 across
    assert 1.5 < float(along.std()) < 2.5, float(along.std())


def test_int8_rows_keep_the_spread_in_a_quarter_of_the_bytes():
    means, axes = _blobs(0)
    learners = {s: _learner("gen-replay", gen_rank=4, gen_spare=2, gen_storage=s) for s in ("float32", "int8")}
    seen = []
    for learner in learners.values():
        rng = np.random.default_rng(1)
        for _ in range(300):
            seen.append(_draw(rng, means, axes, list(range(CLASSES)), 10))
            learner.learn(*seen[-1])
    f32, q8 = (learners[s].methods[0] for s in ("float32", "int8"))
    assert q8.sketch.dtype == torch.int8 and q8.sketch.nbytes * 4 == f32.sketch.nbytes
    x_all, y_all = np.concatenate([x for x, _ in seen[:300]]), np.concatenate([y for _, y in seen[:300]])
    for c in range(CLASSES):
        rows = torch.from_numpy(x_all[y_all == c]).double()
        centred = rows - rows.mean(0)
        truth = centred.T @ centred
        # Frequent Directions' guarantee: the sketch's scatter is off the true one by at most |A|_F^2 / (rank + 1)
        # in any direction. float32 rows keep it; int8 rows, stored again at each shrink, stay within it too.
        bound = float(centred.square().sum()) / (4 + 1)
        for gen in (f32, q8):
            dense = gen.sketch[c].double() * (gen.scales[c].double()[:, None] if gen.quantised else 1)
            assert float(torch.linalg.matrix_norm(truth - dense.T @ dense, ord=2)) <= bound
    x, y = q8.sample(4000)
    for c in range(CLASSES):
        rows = x[y == c].numpy()
        top = np.linalg.svd(rows - rows.mean(0), full_matrices=False)[2][0]
        assert abs(float(top @ axes[c])) > 0.9


def test_mixture_state_is_counted_and_resumes_bit_identically(tmp_path):
    # merges before the save and after it; logit targets kept
    learner = _learner("gen-replay", **(MIXTURE | {"gen_span": 20, "gen_alpha": 0.5}))
    rows = MIXTURE["gen_rank"] + MIXTURE["gen_spare"]
    slots = CLASSES * MIXTURE["gen_components"]
    # means and logit targets (float32), int8 sketch rows and their float32 scales per slot; counts, rows filled per
    # slot and the component taking new samples per class (int64); the range seen (2 x dim)
    expected = slots * (DIM + CLASSES) * 4 + slots * rows * (DIM + 4) + 2 * slots * 8 + CLASSES * 8 + 2 * DIM * 4
    assert learner.memory_report()["parts"]["gen-replay"] == expected
    means, axes = _blobs(3)
    data = [_draw(np.random.default_rng(i), means, axes, list(range(CLASSES)), 10) for i in range(120)]
    for x, y in data[:80]:
        learner.learn(x, y)
    counts = learner.methods[0].counts
    assert int(counts.min()) > 0 and int(counts.sum()) == 800  # every component in use, every sample in one
    assert_resumes_bit_identically(learner, models.mlp(DIM, [32], CLASSES), data[80:], tmp_path)


def test_logit_targets_are_each_components_mean_logits_and_the_term_pulls_towards_them():
    """gen_alpha keeps, per component, the mean of the logits the model gave its samples in the step each arrived
    (before that step's update), and adds alpha x MSE between the model's logits on generated rows and them."""
    means, axes = _blobs(4)
    learner = _learner("gen-replay", gen_alpha=0.5, gen_weight=0.0, gen_rank=2, gen_components=3, gen_span=50)
    gen = learner.methods[0]
    rng = np.random.default_rng(9)
    given: dict[int, list[torch.Tensor]] = {}  # slot -> the logits of the samples it took
    for _ in range(25):  # 250 samples: no class fills 3 spans of 50, so no merge mixes the bookkeeping below
        x, y = _draw(rng, means, axes, [0, 1], 10)
        with torch.no_grad():
            out = learner.model(torch.from_numpy(x))
        before = gen.counts.clone()
        learner.learn(x, y)
        for slot in torch.nonzero(gen.counts != before).flatten().tolist():
            given.setdefault(slot, []).extend(out[torch.from_numpy(y) == slot // 3])
    assert len(given) >= 4  # both classes opened a second component
    for slot, rows in given.items():
        assert int(gen.counts[slot]) == len(rows)
        assert torch.allclose(gen.logits[slot], torch.stack(rows).mean(0), atol=1e-5), slot
    assert not gen.logits[2 * 3:].any()  # classes never seen keep no targets
    # The term: with gen_weight 0, alpha x MSE to the drawn rows' component targets, nothing else.
    state = gen.ctx.generator.get_state()
    x, _, slot = gen._generate(gen.batch)
    gen.ctx.generator.set_state(state)
    term = gen.loss(None)  # type: ignore[arg-type]  # loss reads no field of the step
    with torch.no_grad():
        expected = 0.5 * torch.nn.functional.mse_loss(gen.ctx.model(x), gen.logits.index_select(0, slot))
    assert term is not None and torch.allclose(term.detach(), expected)


ALL_OPTIONS = {"gen_components": 3, "gen_span": 5, "gen_rank": 2, "gen_spare": 1, "gen_storage": "int8",
               "gen_alpha": 0.5}


def test_every_option_keeps_the_contract_on_wild_inputs():
    """The contract suite runs the defaults; with every option on, the same checks: a non-finite batch is skipped
    changing nothing, inputs up to float32's largest leave the parameters finite and learning goes on."""
    learner = contract.make("gen-replay", **ALL_OPTIONS)
    for x, y in contract.stream(5, 80):
        learner.learn(x, y)
    bad, y = next(contract.stream(6, 1))
    bad[:, 2] = np.nan
    assert contract.learn_and_check_skip(learner, bad, y)
    rng = np.random.default_rng(0)
    for _ in range(150):
        scale = 10.0 ** rng.uniform(-3, 38, size=(contract.BATCH, 1))
        wild = (rng.standard_normal((contract.BATCH, contract.DIM)) * scale).clip(-3.4e38, 3.4e38).astype(np.float32)
        learner.learn(wild, rng.integers(0, contract.CLASSES, contract.BATCH))
        assert all(torch.isfinite(p).all() for p in learner.model.parameters())
    gen = learner.methods[0]
    assert all(torch.isfinite(t.float()).all() for t in gen.tensors() if t is not gen.low and t is not gen.high)
    taken = [not learner.learn(x, y).skipped for x, y in contract.stream(9, 100)]
    assert sum(taken) >= 80 and all(taken[-20:]), f"{sum(taken)} of 100 normal steps taken"
