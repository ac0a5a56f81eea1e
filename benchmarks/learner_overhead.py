"""Overhead of OnlineLearner.learn over a bare hand-written PyTorch replay loop.

MLP 784-100-100-10, micro-batch 10 + replay batch 10 (``--batch`` / ``--replay``), plain SGD. For each method
(default er, er+ewc, er+mas) it runs, interleaved in chunks of steps so that a busy machine slows them alike: a bare loop that
does the same sample-replay / forward / backward / step / reservoir-insert work with no edge_cl code, the
learner with plain ``er``, the learner with the method, and for er+ewc / er+mas the same method written by
hand. Each ratio is taken between neighbouring chunks and the median over chunks is reported, with
samples/s and per-step latency p50/p99, into BENCHMARKS.md. On CUDA it also runs the reference of issue #11:
the bare ER step captured once as one CUDA graph (replay draw and reservoir insert on the device), replayed with
only the new micro-batch copied in; the learner's step there is its CUDA-graph step (``step_mode`` auto).

    python benchmarks/learner_overhead.py [--device cpu|cuda] [--steps 3000] [--threads 1] [--methods er,er+ewc]
                                          [--batch 10] [--replay 10] [--step-mode auto|eager|fixed]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from edge_cl import OnlineLearner, models
from edge_cl.reporting import machine_line, write_section

DIM, CLASSES = 784, 10
BY_HAND = {"er+ewc": "ewc", "er+mas": "mas"}  # methods the bare loop can also do the plain way


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bare_steps(xs: np.ndarray, ys: np.ndarray, device: torch.device, capacity: int, seed: int, batch: int,
               replay: int, importance: str | None = None, consolidate_at: int = 100) -> Iterator[float]:
    """Reference, yielding each step's seconds: reservoir replay written inline, one SGD step per micro-batch.
    With ``importance``, also the method done by hand the plain way: a per-sample loop for the importance
    every 10 steps and the quadratic penalty through autograd, consolidated once at step ``consolidate_at``."""
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
    seen, n_est = 0, 0
    for step, start in enumerate(range(0, len(xs), batch)):
        t0 = time.perf_counter()
        x = torch.from_numpy(xs[start:start + batch]).to(device)
        y = torch.from_numpy(ys[start:start + batch]).to(device)
        size = min(seen, capacity)
        if size:
            idx = torch.from_numpy(rng.integers(0, size, replay)).to(device)
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
        yield time.perf_counter() - t0


def learner_steps(xs: np.ndarray, ys: np.ndarray, device: torch.device, method: str, capacity: int, seed: int,
                  batch: int, replay: int, step_mode: str = "auto", consolidate_at: int = 100,
                  autograd: bool = False, **settings: object) -> Iterator[float]:
    """The learner running ``method`` on the same stream, yielding each ``learn`` call's seconds; ``autograd``
    turns its Linear/ReLU chain step off (the step every other model takes); ``settings`` are the method's."""
    torch.manual_seed(seed)
    model = models.mlp(DIM, [100, 100], CLASSES)
    # The bare loop's work: raw float32 inputs, a float32 buffer (the defaults standardise dense inputs and store
    # float16, work the bare loop does not do; their cost is the standardiser's, not the step's).
    settings = {"standardize": False, "storage": "float32", **settings}
    budget = OnlineLearner.required_bytes(model, capacity, method=method, replay_batch=replay, **settings)
    learner = OnlineLearner(model, budget, method=method, replay_batch=replay, lr=0.1, device=device, seed=seed,
                            trigger=None, step_mode=step_mode, **settings)
    if autograd:
        learner._use_chain(False)
    for step, start in enumerate(range(0, len(xs), batch)):
        t0 = time.perf_counter()
        learner.learn(xs[start:start + batch], ys[start:start + batch])
        if step == consolidate_at:  # as the bare loop: the penalty is on from here
            learner.consolidate()
        _sync(device)
        yield time.perf_counter() - t0


def graph_reference_steps(xs: np.ndarray, ys: np.ndarray, device: torch.device, capacity: int, seed: int,
                          batch: int, replay: int) -> Iterator[float]:
    """Issue #11's reference: the bare ER step -- replay draw on the device, forward, backward, SGD step,
    reservoir insert on the device -- captured once as one CUDA graph and replayed, copying only the new
    micro-batch in per step. No clip, no skip, no statistics: the floor a learner step can approach."""
    torch.manual_seed(seed)
    model = models.mlp(DIM, [100, 100], CLASSES).to(device)
    params = list(model.parameters())
    for p in params:
        p.grad = torch.zeros_like(p)
    grads = [p.grad for p in params]
    buf_x = torch.zeros((capacity + 1, DIM), device=device)  # row `capacity` takes the rejected rows' writes
    buf_y = torch.zeros((capacity + 1,), dtype=torch.int64, device=device)
    seen = torch.zeros((), dtype=torch.int64, device=device)
    x_in = torch.zeros((batch, DIM), device=device)
    y_in = torch.zeros((batch,), dtype=torch.int64, device=device)
    gen = torch.Generator(device=device).manual_seed(seed)
    ones = torch.ones(batch, device=device)
    counts = torch.arange(1, batch + 1, device=device)

    def step() -> None:
        size = seen.clamp_max(capacity)
        u = torch.rand(replay, generator=gen, device=device)
        idx = torch.minimum((u * size).long(), (size - 1).clamp_min(0))
        weight = torch.cat([ones, (size > 0).float().expand(replay)])
        ce = F.cross_entropy(model(torch.cat([x_in, buf_x[idx]])), torch.cat([y_in, buf_y[idx]]), reduction="none")
        loss = (ce * weight).sum() / weight.sum()
        torch._foreach_zero_(grads)
        loss.backward()
        with torch.no_grad():
            torch._foreach_add_(params, grads, alpha=-0.1)
            n = seen + counts
            v = torch.rand(batch, generator=gen, device=device, dtype=torch.float64)
            slot = torch.where(n <= capacity, n - 1, (v * n).long()).clamp_max(capacity)
            buf_x.index_copy_(0, slot, x_in)
            buf_y.index_copy_(0, slot, y_in)
            seen.add_(batch)

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    graph.register_generator_state(gen)
    with torch.cuda.graph(graph):
        step()
    for start in range(0, len(xs), batch):
        t0 = time.perf_counter()
        x_in.copy_(torch.from_numpy(xs[start:start + batch]), non_blocking=True)
        y_in.copy_(torch.from_numpy(ys[start:start + batch]), non_blocking=True)
        graph.replay()
        _sync(device)
        yield time.perf_counter() - t0


def interleave(loops: dict[str, Iterator[float]], chunk: int) -> dict[str, list[np.ndarray]]:
    """Run the loops round-robin, ``chunk`` steps of each in turn; each loop's step times by chunk."""
    out: dict[str, list[np.ndarray]] = {name: [] for name in loops}
    live = dict(loops)
    while live:
        for name, loop in list(live.items()):
            times = [t for _, t in zip(range(chunk), loop)]
            if times:
                out[name].append(np.array(times))
            if len(times) < chunk:
                del live[name]
    return out


def chunk_ratio(a: list[np.ndarray], b: list[np.ndarray], stat: str) -> float:
    """Median over neighbouring chunks of ``stat(a) / stat(b) - 1`` (stat: 'median' or 'mean')."""
    f = np.median if stat == "median" else np.mean
    return float(np.median([f(x) / f(y) for x, y in zip(a, b, strict=False)]) - 1)


def summarise(chunks: list[np.ndarray], batch: int) -> dict[str, float]:
    t = np.concatenate(chunks)
    return {"samples_per_s": batch / t.mean(), "p50_ms": float(np.percentile(t, 50) * 1e3),
            "p99_ms": float(np.percentile(t, 99) * 1e3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (CPU)")
    parser.add_argument("--capacity", type=int, default=500, help="replay buffer samples")
    parser.add_argument("--chunk", type=int, default=50, help="steps of one loop before the next one runs")
    parser.add_argument("--methods", default="er,er+ewc,er+mas", help="comma list of learner methods")
    parser.add_argument("--batch", type=int, default=10, help="new samples per step")
    parser.add_argument("--replay", type=int, default=10, help="replayed samples per step")
    parser.add_argument("--autograd", action="store_true",
                        help="the learner's autograd step, as for models that are not a Linear/ReLU chain")
    parser.add_argument("--step-mode", default="auto", choices=["auto", "eager", "fixed"],
                        help="the learner's step_mode (auto: the CUDA-graph step on CUDA, eager on the CPU)")
    parser.add_argument("--state-dtype", default=None, choices=["float32", "bfloat16", "float16"],
                        help="the importance methods' state_dtype (default: each method's own)")
    parser.add_argument("--output", default="BENCHMARKS.md")
    args = parser.parse_args(argv)
    settings = {"state_dtype": args.state_dtype} if args.state_dtype else {}
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rng = np.random.default_rng(0)
    batch, replay = args.batch, args.replay
    xs = rng.random((args.steps * batch, DIM), dtype=np.float32)
    ys = rng.integers(0, CLASSES, args.steps * batch)
    sizes = (args.capacity, 0, batch, replay)
    warmup = max(1, min(200, args.steps // 5) // args.chunk)  # chunks dropped at the start
    rows = []
    for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
        loops = {"bare": bare_steps(xs, ys, device, *sizes),
                 "er": learner_steps(xs, ys, device, "er", *sizes, step_mode=args.step_mode, autograd=args.autograd)}
        if method != "er":
            loops[method] = learner_steps(xs, ys, device, method, *sizes, step_mode=args.step_mode,
                                          autograd=args.autograd, **settings)
        if method in BY_HAND:
            loops["hand"] = bare_steps(xs, ys, device, *sizes, importance=BY_HAND[method])
        if device.type == "cuda":
            loops["graph"] = graph_reference_steps(xs, ys, device, *sizes)
        chunks = {name: c[warmup:] for name, c in interleave(loops, args.chunk).items()}
        row = {"method": method, "learner": summarise(chunks[method], batch), "bare": summarise(chunks["bare"], batch),
               "graph": summarise(chunks["graph"], batch) if "graph" in chunks else None,
               "p50": chunk_ratio(chunks[method], chunks["bare"], "median"),
               "mean": chunk_ratio(chunks[method], chunks["bare"], "mean"),
               "vs_er": chunk_ratio(chunks[method], chunks["er"], "mean") if method != "er" else None,
               "hand": summarise(chunks["hand"], batch) if "hand" in chunks else None,
               "vs_hand": chunk_ratio(chunks[method], chunks["hand"], "median") if "hand" in chunks else None}
        rows.append(row)
        print(f"{method}: learner {row['learner']['samples_per_s']:.0f}/s, bare er {row['bare']['samples_per_s']:.0f}/s, "
              f"overhead p50 {row['p50']:+.1%}, mean {row['mean']:+.1%}", file=sys.stderr)
    lines = [(f"Learner overhead, MLP 784-100-100-10, micro-batch {batch} + replay {replay}, buffer "
              f"{args.capacity} samples, SGD lr 0.1, {args.steps} steps, device {device}, step_mode "
              f"{args.step_mode}{', autograd step (no Linear/ReLU chain)' if args.autograd else ''}"
              f"{f', importance state {args.state_dtype}' if args.state_dtype else ''}, {args.threads} torch "
              f"thread(s). The loops run interleaved, {args.chunk} steps of each in turn ({warmup} chunk(s) of "
              "warm-up dropped); every ratio is the median over neighbouring chunks, so a busy machine slows both "
              "sides alike."),
             f"Measured on: {machine_line(str(device))}.", "",
             ("| method | learner samples/s | learner p50 ms | learner p99 ms | bare ER samples/s | bare ER p50 ms | "
              "overhead vs bare ER (p50) | overhead vs bare ER (mean) | method's cost over learner er (mean) | "
              "same method by hand: samples/s | learner vs it (p50) |"),
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        mine, bare = r["learner"], r["bare"]
        cost = f"{r['vs_er']:+.1%}" if r["vs_er"] is not None else "-"
        hand = f"{r['hand']['samples_per_s']:.0f} | {r['vs_hand']:+.1%}" if r["hand"] else "- | -"
        lines.append(f"| {r['method']} | {mine['samples_per_s']:.0f} | {mine['p50_ms']:.3f} | {mine['p99_ms']:.3f} | "
                     f"{bare['samples_per_s']:.0f} | {bare['p50_ms']:.3f} | {r['p50']:+.1%} | {r['mean']:+.1%} | "
                     f"{cost} | {hand} |")
    if any(r["graph"] for r in rows):
        lines += ["", "Against issue #11's reference, the bare ER step captured as one CUDA graph (same run):", "",
                  ("| method | learner samples/s | CUDA-graph reference samples/s | learner / reference | "
                   "learner p50 ms | learner p99 ms | p99 / p50 |"), "|---|---|---|---|---|---|---|"]
        for r in rows:
            mine, ref = r["learner"], r["graph"]
            lines.append(f"| {r['method']} | {mine['samples_per_s']:.0f} | {ref['samples_per_s']:.0f} | "
                         f"{mine['samples_per_s'] / ref['samples_per_s']:.2f}x | {mine['p50_ms']:.3f} | "
                         f"{mine['p99_ms']:.3f} | {mine['p99_ms'] / mine['p50_ms']:.2f} |")
    lines += ["", ("The bare ER loop does replay sampling, forward, backward and the SGD step and nothing else: for "
              "er+ewc / er+mas the overhead columns include the method's own work (the penalty every step, an "
              "importance estimate on 10 samples every 10 steps; both consolidate once at step 100). The mean "
              "columns count the estimate steps, the p50 ones the typical step. 'Method's cost over learner er' "
              "is what the method adds to the learner's own er step (importance estimation plus penalty for "
              "er+ewc / er+mas). 'Same method by hand' is a plain PyTorch loop that also does the method's work "
              "the usual way (penalty through autograd, per-sample backward passes for the importance). The "
              "learner steps this Linear/ReLU model without the autograd engine (edge_cl/relu_chain.py, the same "
              "gradients to the bit), which is why it can run faster than the bare eager loop; other models take "
              "the autograd step.")]
    command = "python benchmarks/learner_overhead.py " + " ".join(argv if argv is not None else sys.argv[1:])
    name = f"learner-overhead-{device.type}" + (f"-{batch}" if batch != 10 or replay != 10 else "")
    if args.step_mode != "auto":
        name += f"-{args.step_mode}"
    if args.autograd:
        name += "-autograd"
    if args.state_dtype:
        name += f"-{args.state_dtype}"
    write_section(name, "\n".join(lines), command.strip(), args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
