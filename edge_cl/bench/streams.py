"""Benchmark streams: task sequences (rotated / permuted / split / gradual-rotation MNIST) evaluated with an
accuracy matrix, and prequential streams (Elec2, the Occupancy sensor stream, river's synthetic drift streams,
conflicting regimes).

Every stream is deterministic for a given seed. Images stay uint8 until a task is asked for, so 20 tasks of
MNIST cost 20 x 47 MB at most (only the test sets are cached).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from edge_cl.bench.datasets import OCCUPANCY_FEATURES, ImageData, load_elec2, load_images, load_occupancy

TASK_STREAMS = ("rotated-mnist", "permuted-mnist", "split-mnist", "gradual-rotation")
PREQUENTIAL_STREAMS = ("elec2", "occupancy", "sea", "agrawal", "rbf", "conflicting-regimes", "recurring-mnist")
STREAMS = TASK_STREAMS + PREQUENTIAL_STREAMS

Tensors = tuple[torch.Tensor, torch.Tensor]


def _check_scale(scale: float) -> float:
    if not (isinstance(scale, (int, float)) and 0.0 < float(scale) <= 1.0):
        raise ValueError(f"scale={scale!r} must be in (0, 1]: the fraction of each task's samples to use")
    return float(scale)


def _scaled(n: int, scale: float, floor: int = 1) -> int:
    return min(n, max(floor, round(n * scale)))


def rotate_uint8(images: np.ndarray, shape: tuple[int, int], degrees: np.ndarray | float,
                 chunk: int = 8192) -> np.ndarray:
    """Rotate flat uint8 images about their centre (nearest pixel, zero fill, like torchvision's ``rotate``).

    ``degrees`` is one angle or one per image; positive is counter-clockwise. Returns flat uint8 images.
    """
    n = len(images)
    angles = np.broadcast_to(np.asarray(degrees, dtype=np.float64), (n,))
    h, w = shape
    out = np.empty_like(images)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        x = torch.from_numpy(images[start:stop]).reshape(stop - start, 1, h, w).float()
        rad = torch.from_numpy(np.deg2rad(angles[start:stop])).float()
        cos, sin = torch.cos(rad), torch.sin(rad)
        # affine_grid maps output coords to input coords, so the inverse rotation gives a CCW turn.
        theta = torch.zeros(stop - start, 2, 3)
        theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = cos, -sin, sin, cos
        grid = F.affine_grid(theta, [stop - start, 1, h, w], align_corners=False)
        y = F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)
        out[start:stop] = y.reshape(stop - start, h * w).round().clamp(0, 255).to(torch.uint8).numpy()
    return out


def _to_float(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x).float().div_(255.0)


@dataclass
class TaskStream:
    """A sequence of tasks: ``train(t)`` is what the learner sees (in order), ``test(t)`` what it is scored on.

    Tasks only shape the evaluation; learners are never told where one ends.
    """

    name: str
    setting: str  # "domain-il", "class-il" or "task-free"
    num_tasks: int
    input_shape: tuple[int, ...]
    num_classes: int
    task_names: list[str]
    _train: Callable[[int], tuple[np.ndarray, np.ndarray]]
    _test: Callable[[int], tuple[np.ndarray, np.ndarray]]
    params: dict[str, object] = field(default_factory=dict)
    _test_cache: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)

    @property
    def input_dim(self) -> int:
        return math.prod(self.input_shape)

    def _check(self, t: int) -> None:
        if not 0 <= t < self.num_tasks:
            raise ValueError(f"task index {t} is out of range; {self.name} has {self.num_tasks} tasks")

    def train(self, t: int) -> Tensors:
        """Training samples of task ``t`` in stream order: float32 ``[N, D]`` in [0, 1], int64 ``[N]``."""
        self._check(t)
        x, y = self._train(t)
        return _to_float(x), torch.from_numpy(y)

    def train_raw(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """Training samples of task ``t`` as stored: uint8 ``[N, D]`` pixels and int64 labels."""
        self._check(t)
        return self._train(t)

    def test(self, t: int) -> Tensors:
        """Test samples of task ``t``: float32 ``[N, D]``, int64 ``[N]`` (uint8 copy cached)."""
        self._check(t)
        if t not in self._test_cache:
            self._test_cache[t] = self._test(t)
        x, y = self._test_cache[t]
        return _to_float(x), torch.from_numpy(y)

    def train_size(self, t: int) -> int:
        """Number of training samples of task ``t`` (computes the task)."""
        return len(self._train(t)[1])


@dataclass
class PrequentialStream:
    """A labelled stream scored test-then-train: float32 ``x [N, D]``, int64 ``y [N]`` in time order."""

    name: str
    x: np.ndarray
    y: np.ndarray
    num_classes: int
    params: dict[str, object] = field(default_factory=dict)
    feature_names: tuple[str, ...] = ()

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (int(self.x.shape[1]),)

    @property
    def input_dim(self) -> int:
        return int(self.x.shape[1])

    def __len__(self) -> int:
        return len(self.y)


def _shuffled(rng: np.random.Generator, n: int, keep: int) -> np.ndarray:
    return rng.permutation(n)[:keep]


def rotated_mnist(data: ImageData, num_tasks: int = 20, scale: float = 1.0, seed: int = 0) -> TaskStream:
    """Domain-IL: each task rotates all images by a seeded random angle in [0, 180) (DER / mammoth protocol)."""
    scale = _check_scale(scale)
    rng = np.random.default_rng(seed)
    angles = rng.uniform(0.0, 180.0, size=num_tasks)
    n_tr, n_te = _scaled(len(data.train_y), scale), _scaled(len(data.test_y), scale, floor=500)
    orders = [_shuffled(rng, len(data.train_y), n_tr) for _ in range(num_tasks)]
    test_idx = np.random.default_rng(seed + 1).permutation(len(data.test_y))[:n_te]

    def train(t: int) -> tuple[np.ndarray, np.ndarray]:
        idx = orders[t]
        return rotate_uint8(data.train_x[idx], data.shape, angles[t]), data.train_y[idx]

    def test(t: int) -> tuple[np.ndarray, np.ndarray]:
        return rotate_uint8(data.test_x[test_idx], data.shape, angles[t]), data.test_y[test_idx]

    return TaskStream("rotated-mnist", "domain-il", num_tasks, (data.shape[0] * data.shape[1],), 10,
                      [f"rot {a:.1f}" for a in angles], train, test,
                      {"angles": [float(a) for a in angles], "train_per_task": n_tr, "test_per_task": n_te,
                       "seed": seed, "scale": scale})


def permuted_mnist(data: ImageData, num_tasks: int = 20, scale: float = 1.0, seed: int = 0) -> TaskStream:
    """Domain-IL: each task applies its own seeded fixed pixel permutation to every image."""
    scale = _check_scale(scale)
    rng = np.random.default_rng(seed)
    d = data.train_x.shape[1]
    perms = [rng.permutation(d) for _ in range(num_tasks)]
    n_tr, n_te = _scaled(len(data.train_y), scale), _scaled(len(data.test_y), scale, floor=500)
    orders = [_shuffled(rng, len(data.train_y), n_tr) for _ in range(num_tasks)]
    test_idx = np.random.default_rng(seed + 1).permutation(len(data.test_y))[:n_te]

    def train(t: int) -> tuple[np.ndarray, np.ndarray]:
        idx = orders[t]
        return np.ascontiguousarray(data.train_x[idx][:, perms[t]]), data.train_y[idx]

    def test(t: int) -> tuple[np.ndarray, np.ndarray]:
        return np.ascontiguousarray(data.test_x[test_idx][:, perms[t]]), data.test_y[test_idx]

    return TaskStream("permuted-mnist", "domain-il", num_tasks, (d,), 10, [f"perm {t}" for t in range(num_tasks)],
                      train, test, {"train_per_task": n_tr, "test_per_task": n_te, "seed": seed, "scale": scale})


def split_mnist(data: ImageData, scale: float = 1.0, seed: int = 0) -> TaskStream:
    """Class-IL: 5 tasks of two digits each (0/1, 2/3, ...), scored over all 10 classes, no task id given."""
    scale = _check_scale(scale)
    rng = np.random.default_rng(seed)
    orders, tests = [], []
    for t in range(5):
        tr = np.flatnonzero(np.isin(data.train_y, (2 * t, 2 * t + 1)))
        te = np.flatnonzero(np.isin(data.test_y, (2 * t, 2 * t + 1)))
        orders.append(rng.permutation(tr)[:_scaled(len(tr), scale)])
        tests.append(te[:_scaled(len(te), scale, floor=200)])

    def train(t: int) -> tuple[np.ndarray, np.ndarray]:
        return data.train_x[orders[t]], data.train_y[orders[t]]

    def test(t: int) -> tuple[np.ndarray, np.ndarray]:
        return data.test_x[tests[t]], data.test_y[tests[t]]

    return TaskStream("split-mnist", "class-il", 5, (data.train_x.shape[1],), 10,
                      [f"digits {2 * t},{2 * t + 1}" for t in range(5)], train, test,
                      {"train_per_task": [len(o) for o in orders], "seed": seed, "scale": scale})


def gradual_rotation(data: ImageData, segments: int = 10, max_degrees: float = 180.0, scale: float = 1.0,
                     seed: int = 0) -> TaskStream:
    """Task-free: one pass over the training set while the angle moves continuously from 0 to ``max_degrees``.

    The stream is cut into ``segments`` equal parts only to evaluate: after each part the model is scored on
    the test set at each part's middle angle, so row i of the matrix is "during" and the last row "after".
    """
    scale = _check_scale(scale)
    rng = np.random.default_rng(seed)
    n = _scaled(len(data.train_y), scale, floor=segments)
    order = rng.permutation(len(data.train_y))[:n]
    angles = np.linspace(0.0, max_degrees, n, endpoint=False)
    bounds = np.linspace(0, n, segments + 1).astype(int)
    width = max_degrees / segments
    eval_angles = [width * (j + 0.5) for j in range(segments)]
    n_te = _scaled(len(data.test_y), scale, floor=500)
    test_idx = np.random.default_rng(seed + 1).permutation(len(data.test_y))[:n_te]

    def train(t: int) -> tuple[np.ndarray, np.ndarray]:
        sl = slice(bounds[t], bounds[t + 1])
        return rotate_uint8(data.train_x[order[sl]], data.shape, angles[sl]), data.train_y[order[sl]]

    def test(t: int) -> tuple[np.ndarray, np.ndarray]:
        return rotate_uint8(data.test_x[test_idx], data.shape, eval_angles[t]), data.test_y[test_idx]

    return TaskStream("gradual-rotation", "task-free", segments, (data.train_x.shape[1],), 10,
                      [f"rot {a:.0f}" for a in eval_angles], train, test,
                      {"eval_angles": eval_angles, "samples": n, "max_degrees": max_degrees, "seed": seed,
                       "scale": scale})


def elec2(data_dir: str | os.PathLike[str] | None = None, scale: float = 1.0) -> PrequentialStream:
    """Elec2 in time order (6 features, no date/day), prequential; ``scale`` keeps the first fraction."""
    scale = _check_scale(scale)
    x, y = load_elec2(data_dir)
    n = _scaled(len(y), scale)
    return PrequentialStream("elec2", x[:n], y[:n], 2, {"samples": n, "scale": scale},
                             ("period", "nswprice", "nswdemand", "vicprice", "vicdemand", "transfer"))


def occupancy(data_dir: str | os.PathLike[str] | None = None, scale: float = 1.0) -> PrequentialStream:
    """The Occupancy Detection office-room sensors in time order, prequential, in raw physical units (the
    learner's standardiser sees degC, %, lux, ppm as they come); ``scale`` keeps the first fraction."""
    scale = _check_scale(scale)
    x, y = load_occupancy(data_dir)
    n = _scaled(len(y), scale)
    return PrequentialStream("occupancy", x[:n], y[:n], 2, {"samples": n, "scale": scale, "units": "raw"},
                             OCCUPANCY_FEATURES)


# Known feature ranges (river's generators) so the MLP sees inputs of order 1, without peeking at the stream.
_AGRAWAL_SCALE = np.array([150_000, 75_000, 80, 4, 20, 8, 1_350_000, 30, 500_000], dtype=np.float32)


def river_synth(name: str, n: int = 20_000, seed: int = 0, scale: float = 1.0) -> PrequentialStream:
    """river's synthetic streams with abrupt drift at the middle (``ConceptDriftStream``): sea, agrawal, rbf."""
    from edge_cl.extras import require

    synth = require("river.datasets.synth", "bench", f"the {name!r} bench stream")

    scale = _check_scale(scale)
    n = _scaled(n, scale, floor=10)
    pos, width = n // 2, max(1, n // 50)
    base: Any
    if name == "sea":
        base = synth.ConceptDriftStream(synth.SEA(variant=0, seed=seed), synth.SEA(variant=2, seed=seed + 1),
                                        position=pos, width=width, seed=seed)
        div = np.full(3, 10.0, dtype=np.float32)
    elif name == "agrawal":
        base = synth.ConceptDriftStream(synth.Agrawal(classification_function=0, seed=seed),
                                        synth.Agrawal(classification_function=2, seed=seed + 1),
                                        position=pos, width=width, seed=seed)
        div = _AGRAWAL_SCALE
    elif name == "rbf":
        base = synth.RandomRBFDrift(seed_model=seed, seed_sample=seed + 1, n_classes=2, n_features=10,
                                    n_centroids=50, change_speed=1e-4, n_drift_centroids=50)
        div = np.ones(10, dtype=np.float32)
    else:
        raise ValueError(f"river stream {name!r} is unknown; use 'sea', 'agrawal' or 'rbf'")
    xs, ys = [], []
    for xd, yv in base.take(n):
        xs.append(list(xd.values()))
        ys.append(int(yv))
    x = (np.asarray(xs, dtype=np.float32) / div).astype(np.float32)
    return PrequentialStream(name, x, np.asarray(ys, dtype=np.int64), 2,
                             {"samples": n, "drift_position": pos if name != "rbf" else None,
                              "drift_width": width if name != "rbf" else None, "seed": seed, "scale": scale})


def conflicting_regimes(per_regime: int = 4000, regimes: str = "ABCA", features: int = 6, classes: int = 3,
                        seed: int = 0, scale: float = 1.0) -> PrequentialStream:
    """Sensor stream whose labels change for the same inputs: regimes ``A, B, C, A`` by default.

    Inputs are i.i.d. standard normal in every regime (``features`` of them, seeded); only the labelling rule
    moves. Each distinct regime letter draws its own rule ``y = argmax(x @ W + b)`` (``W`` standard normal,
    ``b`` zero, seeded by ``seed`` and the letter), so two regimes disagree on about two thirds of the inputs
    and a returning letter uses exactly the rule of its earlier visit. ``params`` holds the regime
    boundaries (``bounds``) and names for :func:`edge_cl.bench.regimes.regime_report`.
    """
    scale = _check_scale(scale)
    if not regimes or not regimes.isalpha():
        raise ValueError(f"regimes={regimes!r} must be letters, one per visit (e.g. 'ABCA')")
    n = _scaled(per_regime, scale, floor=10)
    rules = {c: np.random.default_rng([seed, ord(c)]).standard_normal((features, classes)) for c in set(regimes)}
    x = np.random.default_rng([seed, 0]).standard_normal((n * len(regimes), features)).astype(np.float32)
    y = np.concatenate([np.argmax(x[i * n:(i + 1) * n] @ rules[c], axis=1) for i, c in enumerate(regimes)])
    return PrequentialStream("conflicting-regimes", x, y.astype(np.int64), classes,
                             {"samples": len(y), "per_regime": n, "regimes": list(regimes),
                              "bounds": [i * n for i in range(len(regimes) + 1)], "seed": seed, "scale": scale},
                             tuple(f"s{i}" for i in range(features)))


def recurring_mnist(data: ImageData, per_visit: int = 3000, visits: str = "ABCDABCD", scale: float = 1.0,
                    seed: int = 0) -> PrequentialStream:
    """Image concepts that come back, prequential: each concept letter is a seeded fixed pixel permutation (``A``
    the identity), visited in the order of ``visits`` (four concepts twice by default), ``per_visit`` distinct
    training images each (no image is seen twice). ``params`` holds the visit boundaries for
    :func:`edge_cl.bench.regimes.regime_report`: how fast a returning concept is recognised against what was kept.
    """
    scale = _check_scale(scale)
    if not visits or not visits.isalpha():
        raise ValueError(f"visits={visits!r} must be letters, one per visit (e.g. 'ABCDABCD')")
    n = _scaled(per_visit, scale, floor=10)
    if n * len(visits) > len(data.train_y):
        raise ValueError(f"per_visit={n} x {len(visits)} visits needs {n * len(visits)} images; the training set "
                         f"has {len(data.train_y)}: lower per_visit or --scale")
    d = data.train_x.shape[1]
    perms = {c: np.arange(d) if c == "A" else np.random.default_rng([seed, ord(c)]).permutation(d)
             for c in set(visits)}
    order = np.random.default_rng([seed, 1]).permutation(len(data.train_y))[:n * len(visits)]
    x = np.empty((len(order), d), dtype=np.float32)
    for i, c in enumerate(visits):
        idx = order[i * n:(i + 1) * n]
        x[i * n:(i + 1) * n] = data.train_x[idx][:, perms[c]].astype(np.float32) / 255.0
    return PrequentialStream("recurring-mnist", x, data.train_y[order].astype(np.int64), 10,
                             {"samples": len(order), "per_regime": n, "regimes": list(visits),
                              "bounds": [i * n for i in range(len(visits) + 1)], "seed": seed, "scale": scale})


def make_stream(name: str, scale: float = 1.0, seed: int = 0, data_dir: str | os.PathLike[str] | None = None,
                num_tasks: int = 20, images: str = "mnist") -> TaskStream | PrequentialStream:
    """Build a stream by name (one of :data:`STREAMS`); ``images`` swaps MNIST for ``fashion-mnist``."""
    if name in ("rotated-mnist", "permuted-mnist", "split-mnist", "gradual-rotation"):
        data = load_images(images, data_dir)
        if name == "rotated-mnist":
            return rotated_mnist(data, num_tasks, scale, seed)
        if name == "permuted-mnist":
            return permuted_mnist(data, num_tasks, scale, seed)
        if name == "split-mnist":
            return split_mnist(data, scale, seed)
        return gradual_rotation(data, scale=scale, seed=seed)
    if name == "elec2":
        return elec2(data_dir, scale)
    if name == "occupancy":
        return occupancy(data_dir, scale)
    if name in ("sea", "agrawal", "rbf"):
        return river_synth(name, seed=seed, scale=scale)
    if name == "conflicting-regimes":
        return conflicting_regimes(seed=seed, scale=scale)
    if name == "recurring-mnist":
        return recurring_mnist(load_images(images, data_dir), scale=scale, seed=seed)
    raise ValueError(f"stream {name!r} is unknown; use one of {', '.join(STREAMS)}")
