"""Runs methods over a stream and collects every number the bench reports (one dict per method and seed)."""

from __future__ import annotations

import copy
import resource
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from edge_cl import models
from edge_cl.bench import metrics
from edge_cl.bench.baselines import BareLoop, no_change_correct, train_joint
from edge_cl.bench.methods import MethodSpec, is_learner_method, method_spec
from edge_cl.bench.regimes import regime_report
from edge_cl.bench.schema import SCHEMA, empty_result
from edge_cl.bench.streams import PrequentialStream, TaskStream, make_stream

# DER protocol (Buzzega et al. 2020, mammoth best args for ER / buffer 500 on MNIST domain-IL).
PROTOCOLS: dict[str, dict[str, Any]] = {
    "edge": {"batch": 10, "replay_batch": 10, "lr": 0.1, "init": "torch"},
    # mammoth's MNISTMLP applies Xavier-uniform weights and zero biases.
    "der": {"batch": 128, "replay_batch": 128, "lr": 0.2, "init": "xavier"},
}
EVAL_CHUNK = 10_000
INITS = ("torch", "xavier")

Progress = Callable[[int], None]


@dataclass
class BenchConfig:
    """Everything one bench run needs; ``budget_samples`` (N float32 samples of buffer) or ``budget_bytes``."""

    stream: str
    methods: list[str]
    scale: float = 1.0
    seed: int = 0
    repeat: int = 1
    protocol: str = "edge"
    batch: int | None = None
    replay_batch: int | None = None
    lr: float | None = None
    init: str | None = None
    optimizer: str = "sgd"
    momentum: float = 0.0
    max_grad_norm: float | None = None   # None: the learner's default (LearnerConfig.max_grad_norm)
    budget_samples: int | None = 500
    budget_bytes: int | None = None
    storage: str | None = None          # None: the learner's default (LearnerConfig.storage)
    predict: str = "model"
    class_balanced: bool = False
    trigger: str | None = "plateau"
    importance_lambda: float | None = None
    method_params: dict[str, Any] = field(default_factory=dict)
    plugins: list[str] = field(default_factory=list)
    device: str = "auto"
    joint_epochs: int = 1
    bare: bool = True
    peers: list[str] = field(default_factory=list)
    peer_max_samples: int | None = None
    model: dict[str, Any] | None = None
    data_dir: str | None = None
    num_tasks: int = 20
    images: str = "mnist"
    window: int | None = None
    # Online input standardiser in front of every learner method's model (LearnerConfig.standardize): True / False
    # always / never; None (default) the learner's own rule. Its running statistics are charged to each method's
    # fixed state.
    standardize: bool | None = None

    def resolved(self) -> BenchConfig:
        """A copy with protocol defaults filled in and every value checked."""
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol={self.protocol!r} is unknown; use one of {sorted(PROTOCOLS)}")
        p = PROTOCOLS[self.protocol]
        out = copy.deepcopy(self)
        out.batch = self.batch if self.batch is not None else p["batch"]
        out.replay_batch = self.replay_batch if self.replay_batch is not None else p["replay_batch"]
        out.lr = self.lr if self.lr is not None else p["lr"]
        out.init = self.init if self.init is not None else p["init"]
        if out.init not in INITS:
            raise ValueError(f"init={out.init!r} is unknown; use one of {INITS}")
        for name in ("batch", "repeat", "joint_epochs", "num_tasks"):
            v = getattr(out, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}={v!r} must be a positive integer")
        if out.replay_batch is None or out.replay_batch < 0:
            raise ValueError(f"replay_batch={out.replay_batch!r} must be >= 0")
        if (self.budget_samples is None) == (self.budget_bytes is None):
            raise ValueError("give exactly one of budget_samples (--budget-samples N) and budget_bytes "
                             f"(--budget-bytes B); got {self.budget_samples!r} and {self.budget_bytes!r}")
        if self.budget_samples is not None and self.budget_samples < 0:
            raise ValueError(f"budget_samples={self.budget_samples} must be >= 0")
        if self.budget_bytes is not None and self.budget_bytes <= 0:
            raise ValueError(f"budget_bytes={self.budget_bytes} must be positive")
        return out


class Evaluator(Protocol):
    def predict(self, x: Tensor) -> np.ndarray: ...


def default_model_spec(input_dim: int, num_classes: int) -> dict[str, Any]:
    """The benchmarks' model: DER's MLP (two hidden layers of 100) for any input size."""
    return {"type": "mlp", "input_dim": input_dim, "hidden": [100, 100], "num_classes": num_classes}


def build_model(spec: dict[str, Any], seed: int, init: str = "torch") -> nn.Module:
    """Build ``spec`` with initial weights fixed by ``seed`` (the global RNG state is restored afterwards).

    ``init="xavier"`` re-initialises every Linear layer Xavier-uniform with zero bias, as mammoth's MNISTMLP.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = models.build(spec)
        if init == "xavier":
            with torch.no_grad():
                for m in model.modules():
                    if isinstance(m, nn.Linear):
                        nn.init.xavier_uniform_(m.weight)
                        if m.bias is not None:
                            m.bias.zero_()
        elif init != "torch":
            raise ValueError(f"init={init!r} is unknown; use one of {INITS}")
        return model


def peak_rss_mb() -> float:
    """High-water mark of this process's resident memory, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _batches(n: int, size: int) -> range:
    return range(0, n, size)


def evaluate(model: Evaluator, x: Tensor, y: Tensor) -> float:
    """Accuracy of ``model.predict`` on ``(x, y)``, in large chunks."""
    correct = 0
    for s in range(0, len(y), EVAL_CHUNK):
        correct += int((model.predict(x[s:s + EVAL_CHUNK]) == y[s:s + EVAL_CHUNK].numpy()).sum())
    return correct / max(1, len(y))


class _ModelEval:
    def __init__(self, model: nn.Module, device: torch.device) -> None:
        self.model, self.device = model.to(device), device

    @torch.inference_mode()
    def predict(self, x: Tensor) -> np.ndarray:
        was = self.model.training
        self.model.eval()
        try:
            return self.model(x.to(self.device)).argmax(1).cpu().numpy()
        finally:
            self.model.train(was)


@dataclass
class _Trace:
    """What one online pass records: per-sample correctness, per-step latency, consolidation points."""

    correct: list[np.ndarray] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    consolidations: list[int] = field(default_factory=list)
    samples: int = 0

    def correct_array(self) -> np.ndarray:
        return np.concatenate(self.correct) if self.correct else np.zeros(0, dtype=bool)


class _Stepper(Protocol):
    def step(self, x: Tensor, y: Tensor) -> tuple[int, bool]: ...
    def predict(self, x: Tensor) -> np.ndarray: ...
    def budget(self) -> dict[str, Any]: ...


class _LearnerStepper:
    def __init__(self, learner: Any) -> None:
        self.learner = learner

    def step(self, x: Tensor, y: Tensor) -> tuple[int, bool]:
        st = self.learner.learn(x, y)
        return st.new_correct, st.consolidated

    def predict(self, x: Tensor) -> np.ndarray:
        return self.learner.predict(x)

    def budget(self) -> dict[str, Any]:
        rep = self.learner.memory_report()
        return {"budget_bytes": rep["budget_bytes"], "used_bytes": rep["used_bytes"],
                "buffer_capacity": rep["buffer_capacity"], "buffer_size": rep.get("buffer_size"),
                "bytes_per_sample": rep.get("bytes_per_sample"), "memory_report": _jsonable(rep),
                "skipped_steps": int(getattr(self.learner, "skipped_steps", 0)),
                # What the learner ran with, whether the bench set it or the learner's defaults chose it.
                "storage": self.learner.buffer.codec.kind,  # storage="auto": what the first batch chose
                "standardized": getattr(self.learner, "standardizer", None) is not None}


class _BareStepper:
    def __init__(self, bare: BareLoop, budget_bytes: int, note: str | None = None) -> None:
        self.bare, self.budget_bytes, self.note = bare, budget_bytes, note

    def step(self, x: Tensor, y: Tensor) -> tuple[int, bool]:
        return self.bare.learn(x, y), False

    def predict(self, x: Tensor) -> np.ndarray:
        return self.bare.predict(x)

    def budget(self) -> dict[str, Any]:
        return {"budget_bytes": self.budget_bytes, "used_bytes": self.bare.state_bytes(),
                "buffer_capacity": self.bare.capacity, "buffer_size": self.bare.size,
                "bytes_per_sample": self.bare.buf_x.shape[1] * 4 + self.bare.buf_y.element_size(), "memory_report": None,
                **({"note": self.note} if self.note else {})}


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, (int, float, str, bool)) or obj is None:
        return obj
    return str(obj)


def _online_pass(stepper: _Stepper, x: Tensor, y: Tensor, batch: int, trace: _Trace,
                 progress: Progress | None) -> None:
    n = len(y)
    clock = time.perf_counter
    for s in _batches(n, batch):
        xb, yb = x[s:s + batch], y[s:s + batch]
        t0 = clock()
        c, consolidated = stepper.step(xb, yb)
        trace.latencies.append(clock() - t0)
        ok = np.zeros(len(yb), dtype=bool)
        ok[:c] = True  # only the count is known per step; prequential accuracy needs no more
        trace.correct.append(ok)
        if consolidated:
            trace.consolidations.append(trace.samples + len(yb))
        trace.samples += len(yb)
        if progress is not None:
            progress(len(yb))


def _budget_for(cfg: BenchConfig, spec: dict[str, Any], method: str) -> int:
    """Bytes given to ``method``: ``budget_bytes``, or its fixed state plus the bytes of N float32 samples
    (input + label), which hold everything it stores per sample (inputs in any storage, labels, logits ...)."""
    if cfg.budget_bytes is not None:
        return int(cfg.budget_bytes)
    from edge_cl.buffer import ReservoirBuffer
    from edge_cl.learner import OnlineLearner

    ms = method_spec(method if is_learner_method(method) else "er")
    model = build_model(spec, 0)
    fixed = OnlineLearner.required_bytes(model, buffer_samples=0, method=ms.name, replay_batch=1,
                                         **_learner_options(cfg, ms))
    # N float32 samples of buffer even for methods that replay nothing, so every method is charged alike.
    input_dim = int(getattr(model, "input_dim"))  # noqa: B009 - models built from specs carry it
    return int(fixed + int(cfg.budget_samples or 0) * ReservoirBuffer.bytes_per_sample(input_dim))


def _learner_options(cfg: BenchConfig, ms: MethodSpec) -> dict[str, Any]:
    """The OnlineLearner options a bench run gives method ``ms`` (the same for its budget and its learner)."""
    opts: dict[str, Any] = {"optimizer": cfg.optimizer, "momentum": cfg.momentum,
                            "predict": cfg.predict if ms.replay else "model", "class_balanced": cfg.class_balanced,
                            **_method_params(cfg, ms.name)}
    # Unset (None): the learner's defaults apply, as for a user who sets nothing.
    if cfg.storage is not None:
        opts["storage"] = cfg.storage
    if cfg.standardize is not None:
        opts["standardize"] = cfg.standardize
    if cfg.max_grad_norm is not None:
        opts["max_grad_norm"] = cfg.max_grad_norm
    if cfg.storage == "uint8":
        opts["input_range"] = (0.0, 1.0)
    return opts


def _method_params(cfg: BenchConfig, method: str) -> dict[str, Any]:
    """The bench's method settings that the methods of ``method`` declare (others are not theirs)."""
    declared = method_spec(method).declared_settings()
    params = dict(cfg.method_params)
    if cfg.importance_lambda is not None:
        params.setdefault("importance_lambda", cfg.importance_lambda)
    return {k: v for k, v in params.items() if k in declared}


def _make_stepper(cfg: BenchConfig, method: str, spec: dict[str, Any], seed: int) -> _Stepper:
    from edge_cl.learner import OnlineLearner

    model = build_model(spec, seed, str(cfg.init))
    budget = _budget_for(cfg, spec, method)
    if method in ("bare-sgd", "bare-er"):
        if cfg.optimizer != "sgd" or cfg.momentum:
            raise ValueError(f"the bare loops use plain SGD; run them with --optimizer sgd --momentum 0 or pass "
                             f"--no-bare (got optimizer={cfg.optimizer!r}, momentum={cfg.momentum})")
        # The bare loop gets the buffer the learner would get for ER under the same budget.
        probe = OnlineLearner(build_model(spec, seed), budget_bytes=budget, importance=None,
                              replay_batch=max(1, int(cfg.replay_batch or 1)), device=cfg.device, seed=seed,
                              trigger=None, storage="float32")
        cap = probe.memory_report()["buffer_capacity"] if method == "bare-er" else 0
        bare = BareLoop(model, lr=float(cfg.lr or 0.1), replay_batch=int(cfg.replay_batch or 0) if cap else 0,
                        buffer_capacity=cap, device=probe.device, seed=seed, num_classes=probe.num_classes)
        return _BareStepper(bare, budget, "raw inputs: the bare loop has no standardiser (an overhead reference)"
                            if cfg.standardize else None)
    ms = method_spec(method)
    kw = ms.learner_kwargs(int(cfg.replay_batch or 0), cfg.trigger)
    learner = OnlineLearner(model, budget_bytes=budget, lr=float(cfg.lr or 0.1), device=cfg.device, seed=seed,
                            **kw, **_learner_options(cfg, ms))
    return _LearnerStepper(learner)


def _finish(result: dict[str, Any], trace: _Trace, stepper: _Stepper | None, window: int) -> dict[str, Any]:
    correct = trace.correct_array()
    learn_s = float(sum(trace.latencies))
    result.update(metrics.latency_summary(trace.latencies))
    result.update({
        "prequential_acc": metrics.prequential_accuracy(correct),
        "samples": trace.samples,
        "steps": len(trace.latencies),
        "learn_seconds": learn_s,
        "samples_per_s": trace.samples / learn_s if learn_s > 0 else None,
        "consolidation_at": trace.consolidations,
        "consolidations": len(trace.consolidations),
        "stream_accuracy": {"window": window, "values": metrics.windowed_accuracy(correct, window).tolist()
                            if len(correct) else []},
        "latencies_ms": [round(v * 1e3, 4) for v in trace.latencies[:: max(1, len(trace.latencies) // 5000)]],
        "peak_rss_mb": peak_rss_mb(),
    })
    if stepper is not None:
        result.update(stepper.budget())
    if result.get("skipped_steps"):
        result["note"] = (f"{result['skipped_steps']} of {result['steps']} steps skipped on a non-finite loss: "
                          "the run diverged (try a smaller --lr or --importance-lambda)")
    return result


def baseline_accuracies(cfg: BenchConfig, stream: TaskStream, seed: int) -> list[float]:
    """Accuracy of the untrained model (the seed's initial weights) on every task: ``b`` of FWT."""
    spec = cfg.model or default_model_spec(stream.input_dim, stream.num_classes)
    base_eval = _ModelEval(build_model(spec, seed, str(cfg.init)), torch.device("cpu"))
    return [evaluate(base_eval, *stream.test(j)) for j in range(stream.num_tasks)]


def run_task_stream(cfg: BenchConfig, stream: TaskStream, method: str, seed: int,
                    progress: Progress | None = None, baseline: list[float] | None = None) -> dict[str, Any]:
    """One method, one seed over a task stream: accuracy matrix (T x T) plus the online trace."""
    cfg = cfg.resolved()
    spec = cfg.model or default_model_spec(stream.input_dim, stream.num_classes)
    t_count = stream.num_tasks
    res = empty_result(method, seed=seed)
    started = time.perf_counter()
    b = baseline if baseline is not None else baseline_accuracies(cfg, stream, seed)
    res["baseline_acc"] = b
    window = cfg.window or max(1, stream.train_size(0) // 10)

    if method == "joint":
        xs, ys = zip(*(stream.train_raw(t) for t in range(t_count)))
        model = build_model(spec, seed, str(cfg.init))
        dev = torch.device("cuda" if cfg.device != "cpu" and torch.cuda.is_available() else "cpu")
        t0 = time.perf_counter()
        train_joint(model, xs, ys, epochs=cfg.joint_epochs, batch=int(cfg.batch or 10), lr=float(cfg.lr or 0.1),
                    device=dev, seed=seed)
        train_s = time.perf_counter() - t0
        if progress is not None:
            progress(sum(len(y) for y in ys))
        ev = _ModelEval(model, dev)
        row = [evaluate(ev, *stream.test(j)) for j in range(t_count)]
        n = sum(len(y) for y in ys) * cfg.joint_epochs
        res.update({"acc": float(np.mean(row)), "final_accuracies": row, "epochs": cfg.joint_epochs,
                    "samples_per_s": n / train_s, "learn_seconds": train_s, "peak_rss_mb": peak_rss_mb(),
                    "note": "offline multi-epoch training on all tasks at once (upper bound); no matrix"})
        res["wall_seconds"] = time.perf_counter() - started
        return res

    if method == "no-change":
        return _no_change(res, np.concatenate([stream.train(t)[1].numpy() for t in range(t_count)]), window,
                          progress)

    stepper = _make_stepper(cfg, method, spec, seed)
    trace = _Trace()
    matrix: list[list[float]] = []
    task_ends: list[int] = []
    for t in range(t_count):
        x, y = stream.train(t)
        _online_pass(stepper, x, y, int(cfg.batch or 10), trace, progress)
        task_ends.append(trace.samples)
        matrix.append([evaluate(stepper, *stream.test(j)) for j in range(t_count)])
    res.update(metrics.summarize_matrix(matrix, b))
    res["accuracy_matrix"] = matrix
    res["task_ends"] = task_ends
    res["seen_task_acc"] = [float(np.mean(matrix[i][: i + 1])) for i in range(t_count)]
    _finish(res, trace, stepper, window)
    res["wall_seconds"] = time.perf_counter() - started
    return res


def _no_change(res: dict[str, Any], labels: np.ndarray, window: int, progress: Progress | None) -> dict[str, Any]:
    """The no-change baseline (predict the previous label) over a label sequence, prequentially."""
    correct = no_change_correct(labels)
    res.update({"prequential_acc": metrics.prequential_accuracy(correct), "samples": len(correct),
                "peak_rss_mb": peak_rss_mb(), "budget_bytes": 0, "used_bytes": 0, "buffer_capacity": 0,
                "stream_accuracy": {"window": window, "values": metrics.windowed_accuracy(correct, window).tolist()}})
    if progress is not None:
        progress(len(correct))
    return res


def run_prequential_stream(cfg: BenchConfig, stream: PrequentialStream, method: str, seed: int,
                           progress: Progress | None = None) -> dict[str, Any]:
    """One method, one seed over a prequential stream (test-then-train on every micro-batch)."""
    cfg = cfg.resolved()
    spec = cfg.model or default_model_spec(stream.input_dim, stream.num_classes)
    res = empty_result(method, seed=seed)
    window = cfg.window or max(1, len(stream) // 50)
    started = time.perf_counter()
    if method == "joint":
        res["note"] = "skipped: joint needs a held-out test set; prequential streams have none"
        return res
    if method == "no-change":
        return _no_change(res, stream.y, window, progress)
    stepper = _make_stepper(cfg, method, spec, seed)
    trace = _Trace()
    _online_pass(stepper, torch.from_numpy(stream.x), torch.from_numpy(stream.y), int(cfg.batch or 10), trace,
                 progress)
    _finish(res, trace, stepper, window)
    if "bounds" in stream.params:  # a stream whose regimes come back: score each visit
        res["regimes"] = regime_report(trace.correct_array(), stream.params["bounds"], stream.params["regimes"])
    res["wall_seconds"] = time.perf_counter() - started
    return res


def _aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean over seeds for numbers (``<key>_std`` beside them), elementwise mean for the matrix."""
    first = runs[0]
    out: dict[str, Any] = {}
    for key, val in first.items():
        vals = [r.get(key) for r in runs]
        if all(v == val for v in vals) and not isinstance(val, float):
            out[key] = val  # identical across seeds (budgets, counts): keep the exact value
        elif isinstance(val, (int, float)) and not isinstance(val, bool) and key != "seed":
            mean, std = metrics.mean_std(vals)
            out[key] = mean
            if len(runs) > 1:
                out[f"{key}_std"] = std
        elif key == "accuracy_matrix" and val is not None:
            out[key] = np.mean(np.asarray(vals, dtype=np.float64), axis=0).tolist()
        elif val is None and len(runs) > 1:
            mean, std = metrics.mean_std(vals)
            out[key] = mean
            if mean is not None:
                out[f"{key}_std"] = std
        else:
            out[key] = val
    out["seeds"] = [r["seed"] for r in runs]
    out["runs"] = runs if len(runs) > 1 else []
    return out


def run_bench(cfg: BenchConfig, progress: Progress | None = None,
              on_total: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Run every method (and the bare loops, and the peers) for ``repeat`` seeds; returns the JSON document."""
    from edge_cl.bench import peers as peer_mod

    cfg = cfg.resolved()
    from edge_cl.methods import import_plugins

    import_plugins(cfg.plugins)
    methods = list(cfg.methods)
    if cfg.bare:
        for m in list(methods):
            if is_learner_method(m):
                bare = method_spec(m).bare_equivalent
                if bare not in methods:
                    methods.append(bare)
    seeds = [cfg.seed + k for k in range(cfg.repeat)]
    per_method: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    stream_info: dict[str, Any] = {}
    peer_results: dict[str, Any] = {}
    for i, seed in enumerate(seeds):
        stream = make_stream(cfg.stream, scale=cfg.scale, seed=seed, data_dir=cfg.data_dir, num_tasks=cfg.num_tasks,
                             images=cfg.images)
        if i == 0:
            stream_info = _stream_info(stream)
            if on_total is not None:
                total = stream_info["samples"] * len(methods) * len(seeds)
                on_total(total)
        b = baseline_accuracies(cfg, stream, seed) if isinstance(stream, TaskStream) else None
        for m in methods:
            if isinstance(stream, TaskStream):
                per_method[m].append(run_task_stream(cfg, stream, m, seed, progress, b))
            else:
                per_method[m].append(run_prequential_stream(cfg, stream, m, seed, progress))
        if i == 0 and cfg.peers:
            peer_results = peer_mod.run_peers(cfg.peers, stream, seed=seed, max_samples=cfg.peer_max_samples)
    results = {m: _aggregate(r) for m, r in per_method.items()}
    for m, r in results.items():
        if is_learner_method(m) and cfg.bare:
            ref_result: dict[str, Any] = results.get(method_spec(m).bare_equivalent, {})
            ours, ref = r.get("samples_per_s"), ref_result.get("samples_per_s")
            r["bare_reference"] = method_spec(m).bare_equivalent
            r["vs_bare"] = ours / ref if ours and ref else None
            # Medians shrug off the stalls other processes cause on a shared CPU; the ratio of totals does not.
            p50, ref_p50 = r.get("latency_ms_p50"), ref_result.get("latency_ms_p50")
            r["vs_bare_p50"] = ref_p50 / p50 if p50 and ref_p50 else None
    return {
        "schema": SCHEMA,
        "device": str(_device_of(cfg)),
        "torch_threads": torch.get_num_threads(),
        "stream": stream_info,
        "config": _jsonable(asdict(cfg)),
        "budget": _budget_summary(cfg, results),
        "methods": results,
        "peers": peer_results,
    }


def _device_of(cfg: BenchConfig) -> torch.device:
    from edge_cl.devices import resolve_device

    return resolve_device(cfg.device)


def _stream_info(stream: TaskStream | PrequentialStream) -> dict[str, Any]:
    if isinstance(stream, TaskStream):
        samples = sum(stream.train_size(t) for t in range(stream.num_tasks))
        return {"name": stream.name, "kind": "tasks", "setting": stream.setting, "num_tasks": stream.num_tasks,
                "task_names": stream.task_names, "input_shape": list(stream.input_shape),
                "num_classes": stream.num_classes, "samples": samples, "params": _jsonable(stream.params)}
    return {"name": stream.name, "kind": "prequential", "setting": "task-free", "num_tasks": None,
            "input_shape": list(stream.input_shape), "num_classes": stream.num_classes, "samples": len(stream),
            "params": _jsonable(stream.params)}


def _default_storage() -> str:
    """The learner's default buffer storage (what an unset ``storage`` runs)."""
    from edge_cl.learner_config import LearnerConfig

    return str(LearnerConfig.model_fields["storage"].default)


def _budget_summary(cfg: BenchConfig, results: dict[str, Any]) -> dict[str, Any]:
    return {
        "mode": "bytes" if cfg.budget_bytes is not None else "samples",
        "budget_samples_float32": cfg.budget_samples,
        "budget_bytes": cfg.budget_bytes,
        "storage": cfg.storage if cfg.storage is not None else _default_storage(),
        "predict": cfg.predict,
        "class_balanced": cfg.class_balanced,
        "note": ("one byte budget for every method" if cfg.budget_bytes is not None else
                 f"each method gets its own fixed state plus the bytes of {cfg.budget_samples} float32 samples; "
                 f"buffer_capacity says how many "
                 f"{cfg.storage if cfg.storage is not None else _default_storage() + ' (the learner default)'} "
                 "samples fitted"),
        "per_method": {m: {"budget_bytes": r.get("budget_bytes"), "buffer_capacity": r.get("buffer_capacity"),
                           "used_bytes": r.get("used_bytes")} for m, r in results.items()},
    }

