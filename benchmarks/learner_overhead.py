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


def bare_loop(xs: np.ndarray, ys: np.ndarray, device: torch.device, capacity: int, seed: int,
              importance: str | None = None, consolidate_at: int = 100) -> list[float]:
    """Reference: reservoir replay written inline, one SGD step per micro-batch. With ``importance``,
    also the method done by hand the plain way: a per-sample loop for the importance every 10 steps
    and the quadratic penalty through autograd, consolidated once at step ``consolidate_at``."""
    torch.manual_seed(seed)
    model = models.mlp(DIM, [100, 100], CLASSES).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    buf_x = torch.zeros((capacity, DIM), device=device)
    buf_y = torch.zeros((capacity,), dtype=torch.int64, device=device)
    rng = np.random.default_rng(seed)
    params = list(model.parameters())
    omega = [torch.zeros_like(p) for p in params]
    running = [torch.zeros_like(p) for p in params]
    anchor = [p.detach().clone() for p in params]
    seen, times, n_est = 0, [], 0
    for step, start in enumerate(range(0, len(xs), BATCH)):
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
        if importance is not None and step > consolidate_at:
            loss = loss + sum((o * (p - a).pow(2)).sum() for o, p, a in zip(omega, params, anchor))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if importance is not None and step % 10 == 9:
            est = [torch.zeros_like(p) for p in params]
            for i in range(x.shape[0]):
                model.zero_grad()
                out = model(x[i:i + 1])
                target = F.cross_entropy(out, y[i:i + 1]) if importance == "ewc" else out.pow(2).sum()
                target.backward()
                for e, p in zip(est, params):
                    e += p.grad.pow(2) if importance == "ewc" else p.grad.abs()
            n_est += 1
            for r, e in zip(running, est):
                r += (e / x.shape[0] - r) / n_est
        if importance is not None and step == consolidate_at:
            for o, r, a, p in zip(omega, running, anchor, params):
                o.copy_(r)
                a.copy_(p.detach())
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
                 capacity: int, seed: int, consolidate_at: int = 100) -> tuple[list[float], OnlineLearner]:
    torch.manual_seed(seed)
    model = models.mlp(DIM, [100, 100], CLASSES)
    budget = OnlineLearner.required_bytes(model, capacity, importance=importance, replay_batch=REPLAY)
    learner = OnlineLearner(model, budget, importance=importance, replay_batch=REPLAY, lr=0.1,
                            device=device, seed=seed, trigger=None)
    times = []
    for step, start in enumerate(range(0, len(xs), BATCH)):
        t0 = time.perf_counter()
        learner.learn(xs[start:start + BATCH], ys[start:start + BATCH])
        if step == consolidate_at:  # as the bare loop: the penalty is on from here
            learner.consolidate()
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
        best: dict[str, dict[str, float]] = {}
        # Alternate the loops so a busy machine slows them alike; keep each one's best round.
        for _ in range(args.rounds):
            runs = {"bare": summarise(bare_loop(xs, ys, device, args.capacity, 0), warmup),
                    "learner": summarise(learner_loop(xs, ys, device, importance, args.capacity, 0)[0], warmup)}
            if importance is not None:
                runs["same"] = summarise(bare_loop(xs, ys, device, args.capacity, 0, importance), warmup)
            for key, result in runs.items():
                if key not in best or result["p50_ms"] < best[key]["p50_ms"]:
                    best[key] = result
        # Medians, not means: other processes on a small machine inflate a few steps, not the typical one.
        overhead = best["learner"]["p50_ms"] / best["bare"]["p50_ms"] - 1
        name = "er" if importance is None else f"er+{importance}"
        rows.append((name, best["learner"], best["bare"], overhead, best.get("same")))
        print(f"{name}: learner {best['learner']['samples_per_s']:.0f}/s, bare er {best['bare']['samples_per_s']:.0f}/s, "
              f"overhead {overhead:+.1%}", file=sys.stderr)
    lines = [f"Learner overhead, MLP 784-100-100-10, micro-batch {BATCH} + replay {REPLAY}, buffer "
             f"{args.capacity} samples, SGD, {args.steps} steps ({warmup} warm-up), device {device}, "
             f"{args.threads} torch thread(s), best of {args.rounds} alternating rounds. "
             "Overhead = learner p50 step time / bare p50 step time - 1.",
             f"Measured on: {machine_line(str(device))}.", "",
             "| method | learner samples/s | learner p50 ms | learner p99 ms | bare ER loop samples/s | "
             "bare ER p50 ms | bare ER p99 ms | overhead vs bare ER (p50) | same method by hand: samples/s | "
             "p50 ms | learner vs it (p50) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, mine, bare, overhead, same in rows:
        hand = (f"{same['samples_per_s']:.0f} | {same['p50_ms']:.3f} | {mine['p50_ms'] / same['p50_ms'] - 1:+.1%}"
                if same else "- | - | -")
        lines.append(f"| {name} | {mine['samples_per_s']:.0f} | {mine['p50_ms']:.3f} | {mine['p99_ms']:.3f} | "
                     f"{bare['samples_per_s']:.0f} | {bare['p50_ms']:.3f} | {bare['p99_ms']:.3f} | "
                     f"{overhead:+.1%} | {hand} |")
    lines += ["", "The bare ER loop does replay sampling, forward, backward and the SGD step and nothing else: for "
              "er+ewc / er+mas its overhead column includes the method's own work (the penalty gradient every "
              "step, an importance estimate on 10 samples every 10 steps). 'Same method by hand' is a "
              "plain PyTorch loop that also does that work the usual way (penalty through autograd, per-sample "
              "backward passes for the importance); both consolidate once at step 100."]
    command = "python benchmarks/learner_overhead.py " + " ".join(argv if argv is not None else sys.argv[1:])
    write_section(f"learner-overhead-{device.type}", "\n".join(lines), command.strip(), args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
