"""ONNX snapshot benchmark: onnxruntime vs torch eager inference latency, export + verify time per
exporter, and the learner's update latency with and without snapshot exports running beside it.

    python benchmarks/onnx_latency.py            # full run, writes the onnx-latency section of BENCHMARKS.md
    python benchmarks/onnx_latency.py --quick --no-write

Threads: the host has 2 cores shared with other work, so torch runs 1 intra-op thread and each
onnxruntime session 1 intra-op thread (no spinning); the learner and the exporter then each have a core.
"""

from __future__ import annotations

import argparse
import copy
import multiprocessing as mp
import queue
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console

from edge_cl import OnlineLearner, models
from edge_cl.export import Exporter, publish_snapshot, publish_state
from edge_cl.reporting import machine_line, write_section
from edge_cl.runtime import make_session

console = Console()

MODELS: dict[str, Callable[[], models.SpecModel]] = {
    "mlp 784-100-100-10": lambda: models.mlp(input_dim=784, hidden=[100, 100], num_classes=10),
    "cnn1d 3x128 -> 5": lambda: models.cnn1d(channels=3, length=128, num_classes=5),
}


def _us(samples: list[float]) -> tuple[float, float]:
    arr = np.asarray(samples) * 1e6
    return float(np.percentile(arr, 50)), float(np.percentile(arr, 99))


def _time_calls(fn: Callable[[], Any], iterations: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(iterations):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def inference_latency(iterations: int) -> tuple[str, list[dict[str, Any]]]:
    """p50/p99 of one inference call, torch eager (logits + softmax) vs onnxruntime (same outputs)."""
    rows: list[dict[str, Any]] = []
    for name, make in MODELS.items():
        torch.manual_seed(0)
        model = make().eval()
        from edge_cl.export import export_onnx

        session = make_session(export_onnx(model, step=0), threads=1)
        for batch in (1, 64):
            x = torch.randn(batch, model.input_dim, generator=torch.Generator().manual_seed(batch))
            xn = x.numpy()
            n = iterations if batch == 1 else max(50, iterations // 4)

            def eager(model: torch.nn.Module = model, x: torch.Tensor = x) -> Any:
                with torch.inference_mode():
                    return torch.softmax(model(x), dim=-1)

            def ort(session: Any = session, xn: np.ndarray = xn) -> Any:
                return session.run(None, {"input": xn})

            t50, t99 = _us(_time_calls(eager, n, warmup=max(20, n // 10)))
            o50, o99 = _us(_time_calls(ort, n, warmup=max(20, n // 10)))
            rows.append({"model": name, "batch": batch, "torch_p50": t50, "torch_p99": t99, "ort_p50": o50,
                         "ort_p99": o99, "speedup_p50": t50 / o50, "iterations": n})
            console.print(f"{name} b={batch}: torch {t50:.1f}/{t99:.1f} us, ort {o50:.1f}/{o99:.1f} us")
    lines = [("| model | batch | torch eager p50 (us) | torch eager p99 (us) | onnxruntime p50 (us) | "
              "onnxruntime p99 (us) | speed-up p50 |"), "|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['model']} | {r['batch']} | {r['torch_p50']:.1f} | {r['torch_p99']:.1f} | {r['ort_p50']:.1f} | "
              f"{r['ort_p99']:.1f} | {r['speedup_p50']:.2f}x |" for r in rows]
    return "\n".join(lines), rows


def export_cost(repeats: int, dynamo_repeats: int) -> tuple[str, list[dict[str, Any]]]:
    """Time to export + verify (parity gate) + publish one snapshot, per exporter."""
    rows: list[dict[str, Any]] = []
    for name, make in MODELS.items():
        torch.manual_seed(0)
        model = make().eval()
        sample = torch.randn(32, model.input_dim, generator=torch.Generator().manual_seed(0))
        for exporter, n in ((Exporter.TORCHSCRIPT, repeats), (Exporter.DYNAMO, dynamo_repeats)):
            with tempfile.TemporaryDirectory() as tmp:
                # First call separately: it pays one-off imports and exporter warm-up.
                results = [publish_snapshot(model, Path(tmp), step=i, sample_inputs=sample, exporter=exporter)
                           for i in range(n + 1)]
            if not all(r.published for r in results):
                raise SystemExit(f"{name} {exporter.value}: not published: {[r.reason for r in results]}")
            steady = results[1:]
            rows.append({
                "model": name, "exporter": exporter.value, "first_s": results[0].export_seconds,
                "export_s": statistics.median(r.export_seconds for r in steady),
                "verify_s": statistics.median(r.verify_seconds for r in steady),
                "max_abs_diff": max(r.max_abs_diff or 0.0 for r in results), "repeats": n,
            })
            console.print(f"{name} {exporter.value}: export {rows[-1]['export_s'] * 1e3:.1f} ms, "
                          f"verify {rows[-1]['verify_s'] * 1e3:.1f} ms")
    lines = [("| model | exporter | first export (ms) | export (ms, median) | verify (ms, median) | "
              "max abs diff of probabilities | runs |"), "|---|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['model']} | {r['exporter']} | {r['first_s'] * 1e3:.0f} | {r['export_s'] * 1e3:.1f} | "
              f"{r['verify_s'] * 1e3:.1f} | {r['max_abs_diff']:.2g} | {r['repeats']} |" for r in rows]
    return "\n".join(lines), rows


def _subprocess_exporter(jobs: Any, done: Any) -> None:
    torch.set_num_threads(1)
    while True:
        job = jobs.get()
        if job is None:
            return
        spec, state, step, sample, directory = job
        result = publish_state(spec, {k: torch.from_numpy(v) for k, v in state.items()}, Path(directory),
                               step=step, sample_inputs=torch.from_numpy(sample))
        done.put(bool(result.published))


class _ThreadExporter:
    """Exports back to back in a thread: a new model copy is handed over as soon as the last one is done."""

    def __init__(self, directory: Path, exporter: Exporter):
        self.directory, self.exporter = directory, exporter
        self.jobs: queue.Queue[Any] = queue.Queue(maxsize=1)
        self.idle = threading.Event()
        self.idle.set()
        self.published = 0
        self.failed = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def wants_job(self) -> bool:
        return self.idle.is_set()

    def offer(self, learner: OnlineLearner) -> None:
        self.idle.clear()
        model = copy.deepcopy(learner.model).to("cpu").eval()
        self.jobs.put((model, learner.step, learner.buffer.sample(32)[0].cpu()))

    def _run(self) -> None:
        while (job := self.jobs.get()) is not None:
            model, step, sample = job
            try:
                self.published += publish_snapshot(model, self.directory, step=step, sample_inputs=sample,
                                                   exporter=self.exporter).published
            except Exception as exc:  # noqa: BLE001 - counted and shown; the learner loop goes on
                self.failed += 1
                console.print(f"[red]export in thread failed: {type(exc).__name__}: {exc}[/red]")
            self.idle.set()

    def close(self) -> None:
        self.jobs.put(None)
        self.thread.join()


class _ProcessExporter:
    """Same, in a spawned process: the learner hands over spec + state_dict (numpy) + samples."""

    def __init__(self, directory: Path):
        ctx = mp.get_context("spawn")
        self.directory = directory
        self.jobs, self.done = ctx.Queue(), ctx.Queue()
        self.proc = ctx.Process(target=_subprocess_exporter, args=(self.jobs, self.done), daemon=True)
        self.proc.start()
        self.busy = False
        self.published = 0
        self.failed = 0

    def wants_job(self) -> bool:
        if not self.proc.is_alive():
            raise SystemExit(f"the spawned exporter died (exit code {self.proc.exitcode})")
        if self.busy:
            try:
                self.published += self.done.get_nowait()
                self.busy = False
            except queue.Empty:
                return False
        return True

    def offer(self, learner: OnlineLearner) -> None:
        self.busy = True
        state = {k: v.detach().cpu().numpy().copy() for k, v in learner.model.state_dict().items()}
        self.jobs.put((models.spec_of(learner.model), state, learner.step,
                       learner.buffer.sample(32)[0].cpu().numpy(), str(self.directory)))

    def close(self) -> None:
        if self.busy:
            self.published += self.done.get(timeout=60)
        self.jobs.put(None)
        self.proc.join(timeout=30)


UPDATE_MODES = ("no exports", "thread, torchscript", "thread, dynamo", "spawned process, torchscript")


def update_latency(steps: int, every: int, modes: tuple[str, ...] = UPDATE_MODES) -> tuple[str, list[dict[str, Any]]]:
    """Learner update latency (the learn() call only) without exports, and with a snapshot offered
    every ``every`` steps (skipped while the previous export still runs, as the daemon does)."""
    spec: dict[str, Any] = {"input_dim": 784, "hidden": [100, 100], "num_classes": 10}
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(steps + 200, 10, 784)).astype(np.float32)
    ys = rng.integers(0, 10, size=(steps + 200, 10))
    rows: list[dict[str, Any]] = []
    for mode in modes:
        torch.manual_seed(0)
        budget = OnlineLearner.required_bytes(models.mlp(**spec), buffer_samples=500, importance="mas")
        learner = OnlineLearner(models.mlp(**spec), budget, importance="mas", replay_batch=10, device="cpu", seed=0)
        for i in range(200):  # fill the buffer and warm up
            learner.learn(xs[i], ys[i])
        with tempfile.TemporaryDirectory() as tmp:
            worker: _ThreadExporter | _ProcessExporter | None = None
            if mode.startswith("thread"):
                worker = _ThreadExporter(Path(tmp), Exporter.DYNAMO if "dynamo" in mode else Exporter.TORCHSCRIPT)
            elif mode.startswith("spawned"):
                worker = _ProcessExporter(Path(tmp))
            if worker is not None:  # one untimed export: imports and exporter warm-up
                worker.offer(learner)
                while not worker.wants_job():
                    time.sleep(0.05)
                worker.published = 0
            learn_s, during_s, handoff_s = [], [], []
            start = time.perf_counter()
            for k, i in enumerate(range(200, steps + 200)):
                if worker is not None and k % every == 0 and worker.wants_job():
                    t = time.perf_counter()
                    worker.offer(learner)
                    handoff_s.append(time.perf_counter() - t)
                busy = worker is not None and not worker.wants_job()
                t = time.perf_counter()
                learner.learn(xs[i], ys[i])
                learn_s.append(time.perf_counter() - t)
                if busy:
                    during_s.append(learn_s[-1])
            wall = time.perf_counter() - start
            if worker is not None:
                worker.close()
        p50, p99 = _us(learn_s)
        d50, d99 = _us(during_s) if during_s else (float("nan"), float("nan"))
        h50, h99 = _us(handoff_s) if handoff_s else (0.0, 0.0)
        rows.append({"mode": mode, "p50": p50, "p99": p99, "during_p50": d50, "during_p99": d99,
                     "during_share": len(during_s) / steps, "max": max(learn_s) * 1e6, "steps": steps,
                     "snapshots": worker.published if worker else 0, "failed": worker.failed if worker else 0,
                     "handoff_p50": h50, "handoff_p99": h99,
                     "steps_per_s": steps / wall})
        console.print(f"{mode}: learn p50 {p50:.0f} us, p99 {p99:.0f} us, during export p99 {d99:.0f} us, "
                      f"snapshots {rows[-1]['snapshots']}")
    base = rows[0]["p99"]
    lines = [("| exports beside the learner | learn p50 (us) | learn p99 (us) | p99 vs none | "
              "steps during an export | their p50 / p99 (us) | learn max (us) | steps/s | snapshots (failed) | "
              "hand-off p50 / p99 (us) |"), "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        during = f"{r['during_p50']:.0f} / {r['during_p99']:.0f}" if r["snapshots"] else "-"
        handoff = f"{r['handoff_p50']:.0f} / {r['handoff_p99']:.0f}" if r["snapshots"] else "-"
        lines.append(f"| {r['mode']} | {r['p50']:.0f} | {r['p99']:.0f} | {r['p99'] / base:.2f}x | "
                     f"{r['during_share']:.0%} | {during} | {r['max']:.0f} | {r['steps_per_s']:.0f} | "
                     f"{r['snapshots']} ({r['failed']}) | {handoff} |")
    return "\n".join(lines), rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="few iterations (for development)")
    parser.add_argument("--no-write", action="store_true", help="do not write BENCHMARKS.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    iterations, repeats, dynamo_repeats, steps = (300, 2, 1, 400) if args.quick else (3000, 5, 2, 3000)
    every = 100
    console.rule("inference latency")
    infer_md, _ = inference_latency(iterations)
    console.rule("export + verify")
    export_md, _ = export_cost(repeats, dynamo_repeats)
    console.rule("update latency with exports")
    update_md, _ = update_latency(steps, every)
    body = "\n\n".join([
        "## ONNX snapshots: inference latency, export cost, update latency under exports",
        (f"Measured on: {machine_line('cpu')}. torch 1 intra-op thread; onnxruntime CPU provider, "
         "1 intra-op thread, no spinning (2 cores shared, so the learner and the exporter each get one)."),
        ("### Inference, one call (torch eager: logits + softmax under inference_mode; onnxruntime: same two "
         f"outputs); {iterations} calls at batch 1, {max(50, iterations // 4)} at batch 64"),
        infer_md,
        ("### One snapshot: export, parity gate (onnxruntime vs torch on 32 inputs at batch 1 and 32), "
         "atomic publish"),
        export_md,
        (f"### Learner update latency (784-100-100-10 MLP, MAS, batch 10 + replay 10, {steps} steps), with a "
         f"snapshot offered every {every} steps (skipped while one is running, as the daemon does). The hand-off "
         "(CPU copy of the model + 32 buffer samples) runs on the learner thread between steps and is not in the "
         "learn time; 'steps during an export' are those that started while an export was running"),
        update_md,
    ])
    if not args.no_write:
        path = write_section("onnx-latency", body, "python benchmarks/onnx_latency.py")
        console.print(f"wrote section onnx-latency of {path}")
    else:
        console.print(body)


if __name__ == "__main__":
    main(sys.argv[1:])
