"""The model axis of issue #28: what one learn() step costs, per method, on each kind of model users bring, and
whether every method runs a seeded drifting stream on every model without an exception.

For each model of ``tests/model_zoo.py`` (user models, defined outside the package: MLP, the package's cnn1d,
Conv1d + BatchNorm1d, GRU, LSTM, LayerNorm + Dropout, a two-branch hand-written forward) and each method, it runs
``--steps`` steps (10 new + 10 replayed samples, plain SGD, one torch thread) of a seeded, gradually drifting
stream of 2-channel sensor windows, times every learn() call after ``--warmup`` steps, and checks that no step
raised and the weights stayed finite. It writes both tables (mean ms per learn(), and "N steps ok" per cell) and
which per-sample engine the importance estimate took on each model into BENCHMARKS.md (section model-axis-cost).

    python benchmarks/model_axis_cost.py [--steps 2000] [--warmup 200] [--methods er,der++,...|all] [--models ...]
                                         [--dim 64] [--classes 6] [--no-write]
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the zoo lives in tests/, outside the package

from edge_cl import OnlineLearner, methods
from edge_cl.bench.baselines import BareLoop
from edge_cl.methods import ImportanceMethod
from edge_cl.reporting import machine_line, write_section
from tests.model_zoo import ZOO, build

TIMED = ["er", "der++", "er+ewc", "er+mas", "er+si", "er+rwalk", "er+scp"]
BATCH = REPLAY = 10


def drifting(seed: int, steps: int, dim: int, classes: int):
    """Class prototypes that move a little every step (about one prototype norm over the whole stream)."""
    rng = np.random.default_rng(seed)
    protos = rng.standard_normal((classes, dim)).astype(np.float32)
    velocity = rng.standard_normal((classes, dim)).astype(np.float32) / max(steps, 1)
    for i in range(steps):
        y = rng.integers(0, classes, BATCH)
        x = protos[y] + i * velocity[y] + 0.5 * rng.standard_normal((BATCH, dim)).astype(np.float32)
        yield x.astype(np.float32), y.astype(np.int64)


def engine(learner: OnlineLearner) -> str:
    """How the importance methods of ``learner`` take per-sample gradients on its model (after the run)."""
    found = []
    for m in learner.methods:
        if not isinstance(m, ImportanceMethod) or not m.estimates_in_step and m.name != "scp":
            continue
        if m.name == "scp":
            found.append("scp: batched backward" if m._vmap_failed is None else "scp: loop over directions")
        elif m._linear_only():
            found.append(f"{m.name}: linear outer products")
        else:
            found.append(f"{m.name}: " + ("vmap" if m._vmap_failed is None else "per-sample loop"))
    return ", ".join(found)


def run_cell(model_name: str, method: str, args: argparse.Namespace) -> tuple[float | None, str, str]:
    """(mean ms per learn() after warm-up, outcome, engine) of one method on one model."""
    net = build(model_name, args.dim, args.classes, seed=0)
    try:
        budget = OnlineLearner.required_bytes(net, buffer_samples=500, method=method, replay_batch=REPLAY)
        learner = OnlineLearner(net, budget_bytes=budget, method=method, replay_batch=REPLAY, seed=0, device="cpu")
        times: list[float] = []
        for i, (x, y) in enumerate(drifting(1, args.steps, args.dim, args.classes)):
            started = time.perf_counter()
            learner.learn(x, y)
            if i >= args.warmup:
                times.append(time.perf_counter() - started)
        if not all(torch.isfinite(p).all() for p in learner.model.parameters()):
            return None, "non-finite weights", engine(learner)
        return 1e3 * float(np.mean(times)) if times else None, f"{args.steps} steps ok", engine(learner)
    except Exception as exc:  # noqa: BLE001 - any failure is a result: the table names it, stderr has the trace
        traceback.print_exc()
        return None, f"{type(exc).__name__}: {str(exc).splitlines()[0][:80]}", ""


def run_bare(model_name: str, args: argparse.Namespace) -> float:
    """Mean ms per step of a bare eager PyTorch replay loop (edge_cl.bench.baselines.BareLoop: the same model,
    the same 10 + 10 and SGD step, a reservoir of 500, no edge_cl code) on the same stream: what ER costs when
    written by hand on that model."""
    net = build(model_name, args.dim, args.classes, seed=0)
    bare = BareLoop(net, lr=0.1, replay_batch=REPLAY, buffer_capacity=500, seed=0)
    times: list[float] = []
    for i, (x, y) in enumerate(drifting(1, args.steps, args.dim, args.classes)):
        started = time.perf_counter()
        bare.learn(torch.from_numpy(x), torch.from_numpy(y))
        if i >= args.warmup:
            times.append(time.perf_counter() - started)
    return 1e3 * float(np.mean(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--methods", default=",".join(TIMED),
                    help="comma-separated, or 'all' (every registered method and these combinations)")
    ap.add_argument("--models", default=",".join(ZOO))
    ap.add_argument("--dim", type=int, default=64, help="flat features per sample (2 channels x dim/2 time steps)")
    ap.add_argument("--classes", type=int, default=6)
    ap.add_argument("--no-write", action="store_true", help="print the section instead of writing BENCHMARKS.md")
    args = ap.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message="There is a performance drop")  # functorch's LSTM fallback note
    names = [*methods.available(), *TIMED] if args.methods == "all" else args.methods.split(",")
    method_list = list(dict.fromkeys(names))
    model_list = args.models.split(",")
    cells: dict[tuple[str, str], tuple[float | None, str, str]] = {}
    engines: dict[str, set[str]] = {m: set() for m in model_list}
    bare: dict[str, float] = {}
    for model_name in model_list:
        bare[model_name] = run_bare(model_name, args)
        print(f"{model_name:18s} {'bare-er':10s} {round(bare[model_name], 3)} ms", flush=True)
        for method in method_list:
            cells[model_name, method] = cell = run_cell(model_name, method, args)
            if cell[2]:
                engines[model_name].update(cell[2].split(", "))
            print(f"{model_name:18s} {method:10s} {cell[0] if cell[0] is None else round(cell[0], 3)} ms  {cell[1]}",
                  flush=True)

    head = "| model | " + " | ".join(method_list) + " |"
    timing = ["| model | bare eager loop (er by hand) | " + " | ".join(method_list) + " |",
              "|---|---:|" + "---:|" * len(method_list)] + [
        f"| {mo} | {bare[mo]:.2f} | " + " | ".join("failed" if cells[mo, me][0] is None else f"{cells[mo, me][0]:.2f}"
                                                   for me in method_list) + " |" for mo in model_list]
    outcome = [head, "|---|" + "---|" * len(method_list)] + [
        f"| {mo} | " + " | ".join(cells[mo, me][1] for me in method_list) + " |" for mo in model_list]
    how = ["| model | parameters | per-sample importance engine |", "|---|---:|---|"] + [
        f"| {mo} | {sum(p.numel() for p in build(mo, args.dim, args.classes).parameters())} | "
        f"{', '.join(sorted(engines[mo])) or '-'} |" for mo in model_list]
    body = "\n".join([
        "## The model axis: step cost per method on each kind of user model (issue #28)", "",
        (f"Measured on: {machine_line()}. torch 1 intra-op thread; models from tests/model_zoo.py at "
         f"{args.dim} features (2 channels x {args.dim // 2} time steps), {args.classes} classes; {BATCH} new + "
         f"{REPLAY} replayed samples per step, plain SGD, budget for 500 buffered samples; seeded gradually "
         f"drifting stream of {args.steps} steps."), "",
        f"### Mean ms per learn() (steps {args.warmup}..{args.steps}, after warm-up)", "", *timing, "",
        f"### {args.steps} steps of the drifting stream: no exception, weights finite", "", *outcome, "",
        "### How importance takes per-sample gradients on each model", "",
        ("Every estimate runs in eval mode (BatchNorm reads its running statistics, Dropout is off); vmap where "
         "torch.func can batch the model, else one autograd backward per sample (chosen at the first failure, "
         "logged once)."), "", *how,
    ])
    command = "python benchmarks/model_axis_cost.py" + "".join(
        f" --{k} {v}" for k, v in (("steps", args.steps), ("warmup", args.warmup), ("methods", args.methods))
        if str(v) != str(ap.get_default(k)))
    if args.no_write:
        print(body)
    else:
        print(write_section("model-axis-cost", body, command))


if __name__ == "__main__":
    main()
