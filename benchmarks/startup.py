"""Start-up cost of edge_cl beyond torch: ``import edge_cl`` plus building the default learner.

Each measurement is a fresh interpreter (so nothing is cached in the process), interleaved with the baseline
``import torch`` run so that a busy machine slows both alike; the median over ``--repeat`` pairs is reported
with the modules the edge_cl run pulled in that it should not need (scipy, river, onnx, paho, matplotlib).

    python benchmarks/startup.py [--repeat 7] [--write-benchmarks]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

from edge_cl.reporting import machine_line, write_section

BASELINE = "import time; t = time.perf_counter(); import torch; print(time.perf_counter() - t)"
EDGE_CL = """
import json, sys, time
t = time.perf_counter()
import torch
torch_s = time.perf_counter() - t
import edge_cl
from edge_cl import OnlineLearner, models
learner = OnlineLearner(models.mlp(6, [32], 3), budget_bytes=200_000, device="cpu")
total = time.perf_counter() - t
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"scipy", "river", "onnx", "onnxruntime", "paho", "matplotlib",
                                                          "onnxscript", "amqtt", "sklearn", "pandas"})
print(json.dumps({"torch_s": torch_s, "total_s": total, "heavy": heavy, "method": learner.method}))
"""
TARGET_S = 0.5  # issue #28: at most this much beyond `import torch`


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.strip()


def measure(repeat: int) -> dict[str, object]:
    """Median seconds of ``import torch`` alone, and of ``import edge_cl`` + the default learner beyond it."""
    base, beyond, heavy, method = [], [], [], ""
    _run(BASELINE)  # warm the file cache once
    for _ in range(repeat):
        base.append(float(_run(BASELINE)))
        doc = json.loads(_run(EDGE_CL))
        beyond.append(doc["total_s"] - doc["torch_s"])
        heavy, method = doc["heavy"], doc["method"]
    return {"torch_s": statistics.median(base), "beyond_torch_s": statistics.median(beyond),
            "beyond_torch_max_s": max(beyond), "heavy_modules": heavy, "method": method, "repeat": repeat}


def markdown(doc: dict[str, object]) -> str:
    beyond = float(doc["beyond_torch_s"])  # type: ignore[arg-type]
    verdict = "within" if beyond <= TARGET_S else "OVER"
    return "\n".join([
        "### startup", "",
        f"{machine_line()}. Fresh interpreter per run, median of {doc['repeat']} interleaved pairs.", "",
        "| what | seconds |", "|---|---|",
        f"| `import torch` alone | {float(doc['torch_s']):.3f} |",  # type: ignore[arg-type]
        (f"| `import edge_cl` + default learner ({doc['method']}), beyond `import torch` | {beyond:.3f} "
         f"(max {float(doc['beyond_torch_max_s']):.3f}) |"), "",  # type: ignore[arg-type]
        (f"Target: at most {TARGET_S} s beyond `import torch`: **{verdict}**. Heavy modules the run imported: "
         f"{', '.join(doc['heavy_modules']) or 'none'}."),  # type: ignore[arg-type]
    ])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--write-benchmarks", action="store_true", help="write the 'startup' section of BENCHMARKS.md")
    args = ap.parse_args()
    doc = measure(args.repeat)
    text = markdown(doc)
    print(text)
    if args.write_benchmarks:
        write_section("startup", text, f"python benchmarks/startup.py --repeat {args.repeat} --write-benchmarks")


if __name__ == "__main__":
    main()
