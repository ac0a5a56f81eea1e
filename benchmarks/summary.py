"""One table of methods x bench runs from `edge-cl bench --json` documents: the `methods-by-stream` section.

Each column is one bench run (stream, protocol, storage, prediction); each cell the run's headline figure
for a method (ACC on task streams, prequential accuracy on prequential streams, mean ± std over its seeds)
with the number of samples its buffer fitted. The best method of each column is in bold. A second table pairs
each method with ``er`` seed by seed (same stream, same seed): the mean ± std of the per-seed difference and on
how many seeds the method came out ahead, which is what "beats er" can rest on when the seeds' spread is larger
than the methods' difference.

Usage: python benchmarks/summary.py RESULTS.json [...] [--write-benchmarks] [--section NAME] [--title TEXT]
       [--output BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from edge_cl.reporting import write_section

BASELINES = ("joint", "no-change", "bare-sgd", "bare-er")
PROTOCOL_REPLAY = {"edge": 10, "der": 128}  # replay batch of each protocol (edge_cl.bench.runner.PROTOCOLS)


def _column(doc: dict[str, Any], path: Path) -> str:
    cfg, stream = doc["config"], doc["stream"]
    parts = [stream["name"], f"{cfg.get('protocol')} protocol"]
    if cfg.get("scale", 1.0) != 1.0:
        parts.append(f"scale {cfg['scale']}")
    if stream.get("kind") == "prequential" and cfg.get("batch"):
        parts.append(f"batch {cfg['batch']}")
    if cfg.get("replay_batch") is not None and cfg["replay_batch"] != PROTOCOL_REPLAY.get(cfg.get("protocol")):
        parts.append(f"replay {cfg['replay_batch']}")
    if cfg.get("storage") is None and "storage" in cfg:
        parts.append("the learner's default storage")
    elif cfg.get("storage", "float32") != "float32":
        parts.append(f"{cfg['storage']} storage")
    if cfg.get("predict", "model") != "model":
        parts.append(f"predict {cfg['predict']}")
    if cfg.get("class_balanced"):
        parts.append("class-balanced")
    if cfg.get("method_params"):
        parts.append(" ".join(f"{k}={json.dumps(v)}" for k, v in cfg["method_params"].items()))
    if cfg.get("standardize"):
        parts.append("standardised")
    elif cfg.get("standardize") is None and "standardize" in cfg:
        parts.append("the learner's default standardize rule")
    if cfg.get("max_grad_norm") is not None:
        parts.append(f"max_grad_norm {cfg['max_grad_norm']}")
    if cfg.get("lr") is not None and cfg.get("protocol") == "der" and cfg["lr"] != 0.2:
        parts.append(f"lr {cfg['lr']}")
    seeds = doc["methods"][next(iter(doc["methods"]))].get("seeds") or [cfg.get("seed")]
    parts.append(f"seeds {','.join(str(s) for s in seeds)}")
    return f"{'; '.join(parts)} ({path.stem})"


def _key(doc: dict[str, Any]) -> str:
    """The run's headline figure: ACC on task streams, prequential accuracy on prequential ones."""
    return "acc" if doc["stream"].get("kind") == "tasks" else "prequential_acc"


def _headline(doc: dict[str, Any], r: dict[str, Any]) -> tuple[float | None, float | None]:
    key = _key(doc)
    return r.get(key), r.get(f"{key}_std")


def summarize(paths: list[Path]) -> str:
    """The markdown table (one row per method, one column per result file, transposed for width)."""
    docs = [(p, json.loads(p.read_text())) for p in paths]
    lines = [("Each row is one bench run; each cell a method's ACC (task streams) or prequential accuracy "
              "(prequential streams), % mean ± std over the run's seeds, and the samples its buffer fitted "
              "at that run's bytes. Bold: the best method of the run. '-': not in that run."), ""]
    methods: list[str] = []
    for _, doc in docs:
        for m in doc["methods"]:
            if m not in BASELINES and m not in methods:
                methods.append(m)
    lines.append("| run | " + " | ".join(methods) + " |")
    lines.append("|---|" + "---|" * len(methods))
    for path, doc in docs:
        figures = {m: _headline(doc, r) for m, r in doc["methods"].items() if m in methods}
        best = max((v for v, _ in figures.values() if v is not None), default=None)
        cells = []
        for m in methods:
            r = doc["methods"].get(m)
            value, std = figures.get(m, (None, None))
            if r is None or value is None:
                cells.append("-")
                continue
            text = f"{value * 100:.2f}" + (f" ± {std * 100:.2f}" if std is not None else "")
            if value == best:
                text = f"**{text}**"
            cells.append(f"{text} ({r.get('buffer_capacity', '-')})")
        lines.append(f"| {_column(doc, path)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _per_seed(doc: dict[str, Any], r: dict[str, Any]) -> dict[Any, float]:
    key = _key(doc)
    runs = r.get("runs") or [dict(r, seed=r.get("seed", doc["config"].get("seed")))]  # one seed: no "runs" list
    return {run.get("seed"): run[key] for run in runs if run.get(key) is not None}


def paired(paths: list[Path], base: str = "er") -> str:
    """Per-seed differences to ``base`` (points): mean ± std over the seeds both ran, and wins / seeds."""
    docs = [(p, json.loads(p.read_text())) for p in paths]
    docs = [(p, d) for p, d in docs if base in d["methods"]]
    methods: list[str] = []
    for _, doc in docs:
        for m in doc["methods"]:
            if m not in BASELINES and m != base and m not in methods:
                methods.append(m)
    lines = [(f"Paired with `{base}` seed by seed: each cell is the mean ± std over the run's seeds of (method - "
              f"{base}) in points, and on how many of those seeds the method was ahead. Runs without `{base}` "
              "are left out."), "",
             "| run | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for path, doc in docs:
        reference = _per_seed(doc, doc["methods"][base])
        cells = []
        for m in methods:
            r = doc["methods"].get(m)
            mine = _per_seed(doc, r) if r is not None else {}
            diffs = [100 * (mine[s] - reference[s]) for s in mine if s in reference]
            if not diffs:
                cells.append("-")
                continue
            mean = sum(diffs) / len(diffs)
            std = (sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1)) ** 0.5 if len(diffs) > 1 else None
            wins = sum(d > 0 for d in diffs)
            cells.append(f"{mean:+.2f}" + (f" ± {std:.2f}" if std is not None else "") + f" ({wins}/{len(diffs)})")
        lines.append(f"| {_column(doc, path)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="+", type=Path, help="edge-cl bench --json documents")
    ap.add_argument("--write-benchmarks", action="store_true", help="write the methods-by-stream section")
    ap.add_argument("--output", type=Path, default=Path("BENCHMARKS.md"))
    ap.add_argument("--section", default="methods-by-stream", help="BENCHMARKS.md section to write")
    ap.add_argument("--title", default="Methods x streams (from the bench runs' JSON)", help="the section's heading")
    args = ap.parse_args(argv)
    missing = [str(p) for p in args.results if not p.is_file()]
    if missing:
        print(f"not found: {', '.join(missing)}", file=sys.stderr)
        return 2
    body = summarize(args.results) + "\n\n" + paired(args.results)
    print(body)
    if args.write_benchmarks:
        extra = ([] if args.section == "methods-by-stream" else ["--section", args.section]) + (
            [] if args.title == ap.get_default("title") else ["--title", args.title])
        command = "python benchmarks/summary.py " + " ".join(shlex.quote(str(p)) for p in args.results) + \
                  " --write-benchmarks" + "".join(" " + shlex.quote(a) for a in extra)
        write_section(args.section, f"### {args.title}\n\n" + body, command, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
