"""Overhead of OnlineLearner.learn over a bare hand-written PyTorch replay loop.

MLP 784-100-100-10, micro-batch 10 + replay batch 10, plain SGD. For each importance setting
(none / ewc / mas, replay on) it times ``learn`` and a bare loop that does the same
sample-replay / forward / backward / step / reservoir-insert work with no edge_cl code, and writes
samples/s and per-step latency p50/p99 into BENCHMARKS.md.

    python benchmarks/learner_overhead.py [--device cpu|cuda] [--steps 3000] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from edge_cl import OnlineLearner, models
from edge_cl.reporting import machine_line, write_section

BATCH, REPLAY, DIM, CLASSES = 10, 10, 784, 10


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bare_loop(xs: np.ndarray, ys: np.ndarray, device: torch.device, capacity: int, seed: int) -> list[float]:
    """Reference: reservoir replay written inline, one SGD step per micro-batch."""
    torch.manual_seed(seed)
    model = models.mlp(DIM, [100, 100], CLASSES).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    buf_x = torch.zeros((capacity, DIM), device=device)
    buf_y = torch.zeros((capacity,), dtype=torch.int64, device=device)
    rng = np.random.default_rng(seed)
    seen, times = 0, []
    for start in range(0, len(xs), BATCH):
        t0 = time.perf_counter()
        x = torch.from_numpy(xs[start:start + BATCH]).to(device)
        y = torch.from_numpy(ys[start:start + BATCH]).to(device)
        size = min(seen, capacity)
        if size:
            idx = torch.from_numpy(rng.integers(0, size, REPLAY)).to(device)
            xb, yb = torch.cat([x, buf_x[idx]]), torch.cat([y, buf_y[idx]])
        else:
            xb, yb = x, y
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss_value = loss.item()  # the learner reads its loss every step too
        for i in range(x.shape[0]):
            seen += 1
            j = seen - 1 if seen <= capacity else int(rng.integers(0, seen))
            if j < capacity:
                buf_x[j], buf_y[j] = x[i], y[i]
        del loss_value
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times


def learner_loop(xs: np.ndarray, ys: np.ndarray, device: torch.device, importance: str | None,
                 capacity: int, seed: int) -> tuple[list[float], OnlineLearner]:
    torch.manual_seed(seed)
    model = models.mlp(DIM, [100, 100], CLASSES)
    budget = OnlineLearner.required_bytes(model, capacity, importance=importance, replay_batch=REPLAY)
    learner = OnlineLearner(model, budget, importance=importance, replay_batch=REPLAY, lr=0.1,
                            device=device, seed=seed)
    times = []
    for start in range(0, len(xs), BATCH):
        t0 = time.perf_counter()
        learner.learn(xs[start:start + BATCH], ys[start:start + BATCH])
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times, learner


def summarise(times: list[float], warmup: int) -> dict[str, float]:
    t = np.array(times[warmup:])
    return {"samples_per_s": BATCH / t.mean(), "p50_ms": float(np.percentile(t, 50) * 1e3),
            "p99_ms": float(np.percentile(t, 99) * 1e3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (CPU)")
    parser.add_argument("--capacity", type=int, default=500, help="replay buffer samples")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; the best round is kept")
    parser.add_argument("--output", default="BENCHMARKS.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rng = np.random.default_rng(0)
    xs = rng.random((args.steps * BATCH, DIM), dtype=np.float32)
    ys = rng.integers(0, CLASSES, args.steps * BATCH)
    warmup = min(200, args.steps // 5)
    rows = []
    for importance in (None, "ewc", "mas"):
        best_bare, best_learner = None, None
        # Alternate the two loops so a busy machine slows both alike; keep each one's best round.
        for _ in range(args.rounds):
            bare = summarise(bare_loop(xs, ys, device, args.capacity, 0), warmup)
            times, learner = learner_loop(xs, ys, device, importance, args.capacity, 0)
            mine = summarise(times, warmup)
            if best_bare is None or bare["p50_ms"] < best_bare["p50_ms"]:
                best_bare = bare
            if best_learner is None or mine["p50_ms"] < best_learner["p50_ms"]:
                best_learner = mine
        # Medians, not means: other processes on a small machine inflate a few steps, not the typical one.
        overhead = best_learner["p50_ms"] / best_bare["p50_ms"] - 1
        name = "er" if importance is None else f"er+{importance}"
        rows.append((name, best_learner, best_bare, overhead))
        print(f"{name}: learner {best_learner['samples_per_s']:.0f}/s, bare {best_bare['samples_per_s']:.0f}/s, "
              f"overhead {overhead:+.1%}", file=sys.stderr)
    lines = [f"Learner overhead, MLP 784-100-100-10, micro-batch {BATCH} + replay {REPLAY}, buffer "
             f"{args.capacity} samples, SGD, {args.steps} steps ({warmup} warm-up), device {device}, "
             f"{args.threads} torch thread(s), best of {args.rounds} alternating rounds. "
             "Overhead = learner p50 step time / bare p50 step time - 1.",
             f"Measured on: {machine_line(str(device))}.", "",
             "| method | learner samples/s | learner p50 ms | learner p99 ms | bare loop samples/s | "
             "bare p50 ms | bare p99 ms | overhead (p50) |",
             "|---|---|---|---|---|---|---|---|"]
    for name, mine, bare, overhead in rows:
        lines.append(f"| {name} | {mine['samples_per_s']:.0f} | {mine['p50_ms']:.3f} | {mine['p99_ms']:.3f} | "
                     f"{bare['samples_per_s']:.0f} | {bare['p50_ms']:.3f} | {bare['p99_ms']:.3f} | "
                     f"{overhead:+.1%} |")
    lines += ["", "The bare loop does replay sampling, forward, backward and the SGD step, but no importance "
              "estimate or penalty: for er+ewc / er+mas the overhead includes that extra work (per-sample "
              "gradients of 10 samples every 10 steps, the penalty gradient every step)."]
    command = "python benchmarks/learner_overhead.py " + " ".join(argv if argv is not None else sys.argv[1:])
    write_section(f"learner-overhead-{device.type}", "\n".join(lines), command.strip(), args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
