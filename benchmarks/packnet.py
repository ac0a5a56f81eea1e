"""Method 'packnet' (issue #23) against der++ and contexts at equal bytes: the conflicting-regimes stream and split-mnist
as domain-IL (each task's two digits labelled 0 / 1 by parity, one 2-way head), through the bench runner.

Every method gets the same ``budget_bytes``: packnet's fixed state (the largest of the three) plus 500 float32
samples of buffer; der++ and contexts fill the rest with buffer. ``--validate`` runs packnet's kept-fraction grid on
validation seeds (100, 101) only; the reported run uses seeds 0-2 with the settings given by ``--param``.

Usage: python benchmarks/packnet.py [--validate] [--seeds 0,1,2] [--param packnet_keep=0.5] [--mnist-scale 1.0]
                                    [--write-benchmarks SECTION]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from edge_cl.bench.datasets import load_images
from edge_cl.bench.runner import (
    BenchConfig,
    _budget_for,
    default_model_spec,
    run_prequential_stream,
    run_task_stream,
)
from edge_cl.bench.streams import TaskStream, conflicting_regimes, split_mnist
from edge_cl.reporting import write_section

METHODS = ("der++", "contexts", "packnet", "der++ + packnet")
BUFFER_SAMPLES = 500
GRID = [{"packnet_keep": k, "packnet_window": w} for w in (1, 5) for k in (0.25, 0.5, 0.75)]


def split_mnist_domain(scale: float, seed: int) -> TaskStream:
    """Split MNIST as domain-IL: the five two-digit tasks of split-mnist, each labelled by the digit's parity (0, 1)."""
    base = split_mnist(load_images("mnist"), scale, seed)

    def parity(fetch: Any) -> Any:
        def get(t: int) -> tuple[np.ndarray, np.ndarray]:
            x, y = fetch(t)
            return x, (y % 2).astype(np.int64)
        return get

    return TaskStream("split-mnist-domain", "domain-il", 5, base.input_shape, 2, base.task_names,
                      parity(base._train), parity(base._test), {**base.params, "labels": "digit % 2"})


def equal_budget(cfg: BenchConfig, input_dim: int, classes: int) -> int:
    """Packnet's fixed state plus BUFFER_SAMPLES float32 samples: one budget for every method."""
    spec = default_model_spec(input_dim, classes)
    probe = replace(cfg, budget_samples=BUFFER_SAMPLES, budget_bytes=None).resolved()
    return max(_budget_for(probe, spec, m) for m in METHODS)


def run_regimes(cfg: BenchConfig, method: str, seeds: list[int]) -> list[dict[str, Any]]:
    return [run_prequential_stream(cfg, conflicting_regimes(seed=s), method, s) for s in seeds]


def run_domain(cfg: BenchConfig, method: str, seeds: list[int], scale: float) -> list[dict[str, Any]]:
    return [run_task_stream(cfg, split_mnist_domain(scale, s), method, s) for s in seeds]


def _pm(values: list[float], scale: float = 100.0, signed: bool = False) -> str:
    mean, std = float(np.mean(values)) * scale, float(np.std(values)) * scale
    return f"{mean:+.2f} ± {std:.2f}" if signed else f"{mean:.2f} ± {std:.2f}"


def regimes_rows(label: str, runs: list[dict[str, Any]]) -> str:
    visits = [[v["acc"] for v in r["regimes"]["visits"]] for r in runs]
    first = [next(v["first_acc"] for v in r["regimes"]["visits"] if "previous_end_acc" in v) for r in runs]
    prev = [next(v["previous_end_acc"] for v in r["regimes"]["visits"] if "previous_end_acc" in v) for r in runs]
    cells = [_pm([r["prequential_acc"] for r in runs])] + [_pm([v[i] for v in visits]) for i in range(len(visits[0]))]
    cells += [_pm(first), _pm(prev), _pm([a - b for a, b in zip(first, prev, strict=True)], signed=True)]
    r0 = runs[0]
    cells += [f"{r0.get('budget_bytes', 0):,} B / {r0.get('buffer_capacity', 0)}",
              _pm([r["samples_per_s"] for r in runs], scale=1.0)]
    return f"| {label} | " + " | ".join(cells) + " |"


def domain_rows(label: str, runs: list[dict[str, Any]]) -> str:
    final = [r["final_accuracies"] if "final_accuracies" in r else r["accuracy_matrix"][-1] for r in runs]
    cells = [_pm([float(np.mean(f)) for f in final])] + [_pm([f[t] for f in final]) for t in range(len(final[0]))]
    cells += [_pm([r["prequential_acc"] for r in runs])]
    r0 = runs[0]
    cells += [f"{r0.get('budget_bytes', 0):,} B / {r0.get('buffer_capacity', 0)}",
              _pm([r["samples_per_s"] for r in runs], scale=1.0)]
    return f"| {label} | " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--validate", action="store_true", help="packnet's settings grid on seeds 100,101")
    parser.add_argument("--param", action="append", default=[], help="packnet setting KEY=VALUE (JSON value)")
    parser.add_argument("--mnist-scale", type=float, default=1.0)
    parser.add_argument("--skip-mnist", action="store_true")
    parser.add_argument("--json", default=None, help="write every run's results here")
    parser.add_argument("--from-json", default=None, help="render the section from a --json file of an earlier run "
                        "(the same arguments) instead of running")
    parser.add_argument("--note", default="", help="a sentence appended to the section (e.g. the settings chosen)")
    parser.add_argument("--write-benchmarks", default=None, metavar="SECTION")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    seeds = [100, 101] if args.validate else [int(s) for s in args.seeds.split(",")]
    params = {k: json.loads(v) for k, v in (p.split("=", 1) for p in args.param)}
    # (label, method, method params): the grid on validation seeds, the three methods on reported ones.
    if args.validate:
        runs_of = [("packnet (" + " ".join(f"{k}={v}" for k, v in g.items()) + ")", "packnet", {**params, **g})
                   for g in GRID]
    else:
        setting = " ".join(f"{k}={json.dumps(v)}" for k, v in params.items())
        runs_of = [("der++", "der++", {}), ("contexts", "contexts", {}),
                   (f"packnet ({setting})" if setting else "packnet (defaults)", "packnet", params),
                   (f"der++ + packnet ({setting})" if setting else "der++ + packnet", "der++ + packnet", params),
                   ("sgd", "sgd", {})]
    base = BenchConfig(stream="conflicting-regimes", methods=[], device="cpu", trigger=None, bare=False)
    started = time.time()
    saved: dict[str, Any] = {"regimes": {}, "domain": {}}
    if args.from_json:
        with open(args.from_json) as f:
            saved = json.load(f)
    out: dict[str, Any] = {"regimes": {}, "domain": {}}
    reg_lines, dom_lines = [], []
    regimes_budget = equal_budget(replace(base, method_params=params), 6, 3)
    for label, method, mp in runs_of:
        cfg = replace(base, budget_samples=None, budget_bytes=regimes_budget, method_params=mp)
        runs = saved["regimes"][label] if args.from_json else run_regimes(cfg, method, seeds)
        out["regimes"][label] = runs
        reg_lines.append(regimes_rows(label, runs))
        print(reg_lines[-1], flush=True)
    if not args.skip_mnist:
        dbase = replace(base, stream="split-mnist", scale=args.mnist_scale)
        domain_budget = equal_budget(replace(dbase, method_params=params), 784, 2)
        for label, method, mp in runs_of:
            cfg = replace(dbase, budget_samples=None, budget_bytes=domain_budget, method_params=mp)
            runs = saved["domain"][label] if args.from_json else run_domain(cfg, method, seeds, args.mnist_scale)
            out["domain"][label] = runs
            dom_lines.append(domain_rows(label, runs))
            print(dom_lines[-1], flush=True)
    # A saved run without its own record of when it ran (older files) is dated by the file's modification time.
    meta = (saved.get("meta") or {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(os.path.getmtime(
        args.from_json))), "seconds": None}) if args.from_json else {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "seconds": round(time.time() - started)}
    out["meta"] = meta
    if args.json and not args.from_json:
        with open(args.json, "w") as f:
            json.dump(out, f, default=str)
    head_r = ("| method | prequential % | A % | B % | C % | A again % | return: first 200 % | A's previous visit: last "
              "200 % | return gap pts | budget B / buffer samples | samples/s |\n|" + "---|" * 11)
    head_d = ("| method | final acc (mean of 5 tasks) % | task 1 % | task 2 % | task 3 % | task 4 % | task 5 % | "
              "prequential % | budget B / buffer samples | samples/s |\n|" + "---|" * 10)
    which = ("validation seeds 100, 101 (grid of packnet_keep and packnet_window)" if args.validate
             else f"seeds {args.seeds}")
    body = (f"### {args.write_benchmarks or 'packnet'}\n\n"
            f"Measured on: {platform.machine()}, {torch.get_num_threads()} torch thread; Python "
            f"{platform.python_version()}, torch {torch.__version__}; "
            + (f"{meta['date']} ({meta['seconds']} s, " if meta["seconds"] is not None
               else f"{meta['date']} (the saved run's file time; ")
            + "a CPU shared with other jobs: samples/s are indicative only)\n\n"
            "Method `packnet` (task-free PackNet, `edge_cl/methods/packnet.py`)"
            + (" settings" if args.validate else " beside der++ and contexts at equal bytes")
            + f", {which}, mean ± std over seeds. Protocol `edge` (batch 10, replay batch 10, lr 0.1, plain SGD), "
            f"MLP with two hidden layers of 100, learner default standardiser, no consolidation trigger. Every method "
            f"gets one budget: packnet's fixed state plus {BUFFER_SAMPLES} float32 samples (the largest need); "
            f"the others fill it with buffer.\n\n"
            f"**conflicting-regimes** (A, B, C, A; 4,000 samples each, 6 features, 3 classes; per-visit prequential "
            f"accuracy; the return's first 200 samples against A's last 200 of its first visit):\n\n"
            f"{head_r}\n" + "\n".join(reg_lines) + "\n\n")
    if dom_lines:
        body += (f"**split-mnist as domain-IL** (split-mnist's five two-digit tasks in order, label = digit parity, one "
                 f"2-way head; scale {args.mnist_scale}; test accuracy of each task after the last, with the context "
                 f"active at the end):\n\n{head_d}\n" + "\n".join(dom_lines) + "\n")
    if args.note:
        body += f"\n{args.note}\n"
    print(body)
    if args.write_benchmarks:
        given = list(argv or sys.argv[1:])
        command = "python benchmarks/packnet.py " + " ".join(shlex.quote(a) for a in given)
        if args.from_json:
            # The numbers came from an earlier run: name it (the same arguments, writing the JSON) before this one.
            ran = [a for i, a in enumerate(given) if a not in ("--from-json", "--note", "--write-benchmarks")
                   and (i == 0 or given[i - 1] not in ("--from-json", "--note", "--write-benchmarks"))]
            command = ("python benchmarks/packnet.py " + " ".join(shlex.quote(a) for a in ran)
                       + f" --json {shlex.quote(args.from_json)}`, then `{command}")
        write_section(args.write_benchmarks, body, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
