"""Step time of this tree's learner against another commit's, in one interleaved run.

The other commit is unpacked with ``git archive`` into a temporary directory; each round runs one fresh
interpreter per (tree, method) -- alternating which tree goes first -- that times ``--steps`` learn() calls
after a warm-up, DER MLP 784-100-100-10, micro-batch ``--batch`` + replay ``--replay``, one torch thread, the
same seeded inputs. The ratio head / base is taken within each round (so a busy machine slows both alike) and
the median over rounds is reported.

    python benchmarks/versus_commit.py --base d41ae51 [--methods er,der++] [--rounds 9] [--steps 400]
                                       [--write-benchmarks]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from edge_cl.reporting import machine_line, write_section

ROOT = Path(__file__).resolve().parents[1]
TIMER = """
import json, sys, time
import numpy as np, torch
torch.set_num_threads(1)
from edge_cl import OnlineLearner, models
method, steps, batch, replay = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.manual_seed(0)
model = models.mlp(784, [100, 100], 10)
# The same work on both trees: raw float32 inputs and buffer (the base's defaults; later defaults standardise dense
# inputs and store float16, which is other work, not a slower step).
learner = OnlineLearner(model, budget_bytes=3_000_000, method=method, replay_batch=replay, device="cpu", seed=0,
                        standardize=False, storage="float32")
rng = np.random.default_rng(0)
xs = rng.random((steps + 200, batch, 784), dtype=np.float32)
ys = rng.integers(0, 10, (steps + 200, batch))
for i in range(200):
    learner.learn(xs[i], ys[i])
t = time.perf_counter()
for i in range(200, steps + 200):
    learner.learn(xs[i], ys[i])
print(json.dumps({"us": (time.perf_counter() - t) / steps * 1e6}))
"""


def _unpack(rev: str, into: Path) -> Path:
    archive = into / "base.tar"
    subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", "-o", str(archive), rev, "edge_cl"],
                   check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into


def _time(tree: Path, method: str, steps: int, batch: int, replay: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", TIMER, method, str(steps), str(batch), str(replay)], env=env,
                         cwd=tree, capture_output=True, text=True, check=True).stdout
    return float(json.loads(out.strip().splitlines()[-1])["us"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="the commit to compare with (e.g. the one an issue starts from)")
    ap.add_argument("--methods", default="er,der++")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--replay", type=int, default=10)
    ap.add_argument("--write-benchmarks", action="store_true")
    args = ap.parse_args()
    base_rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", args.base], check=True,
                              capture_output=True, text=True).stdout.strip()
    head_rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], check=True,
                              capture_output=True, text=True).stdout.strip()
    methods = args.methods.split(",")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = _unpack(args.base, Path(tmp))
        for method in methods:
            ratios, heads, bases = [], [], []
            for r in range(args.rounds):
                order = [("head", ROOT), ("base", base)] if r % 2 == 0 else [("base", base), ("head", ROOT)]
                got = {name: _time(tree, method, args.steps, args.batch, args.replay) for name, tree in order}
                heads.append(got["head"])
                bases.append(got["base"])
                ratios.append(got["head"] / got["base"])
                print(f"{method} round {r}: head {got['head']:.0f} us, base {got['base']:.0f} us", flush=True)
            rows.append((method, statistics.median(bases), statistics.median(heads), statistics.median(ratios)))
    lines = ["### versus-base-cpu", "",
             (f"{machine_line()}. DER MLP 784-100-100-10, {args.batch} + {args.replay}, one thread, {args.steps} "
              f"timed steps after 200, fresh interpreter per run, {args.rounds} interleaved rounds, raw float32 "
              f"inputs and buffer on both (the same work); head "
              f"{head_rev} (uncommitted changes included) against base {base_rev}."), "",
             "| method | base us/step (median) | head us/step (median) | head / base (median of rounds) |",
             "|---|---|---|---|"]
    lines += [f"| {m} | {b:.0f} | {h:.0f} | {r:.3f} |" for m, b, h, r in rows]
    text = "\n".join(lines)
    print(text)
    if args.write_benchmarks:
        write_section("versus-base-cpu", text, "python benchmarks/versus_commit.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
