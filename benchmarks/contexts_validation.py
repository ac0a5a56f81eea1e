"""The validation of method 'contexts' settings (issue #23): per-regime tables of `edge-cl bench --json` runs of the
conflicting-regimes stream on validation seeds, one row per run (its method settings named), written as one section.

Usage: python benchmarks/contexts_validation.py RESULTS.json [...] [--write-benchmarks] [--section NAME]
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from edge_cl.bench.regimes import regimes_table
from edge_cl.reporting import write_section


def _label(method: str, params: dict[str, Any]) -> str:
    settings = " ".join(f"{k}={json.dumps(v, separators=(',', ':'))}" for k, v in params.items())
    return f"{method} ({settings})" if settings and method == "contexts" else f"{method} (defaults)" \
        if method == "contexts" else method


def rows(paths: list[Path]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Each run's methods by label (settings spelled out), and what the runs have in common (stream, seeds)."""
    out: dict[str, dict[str, Any]] = {}
    seeds: set[str] = set()
    for path in paths:
        doc = json.loads(path.read_text())
        params = doc["config"].get("method_params") or {}
        stream = doc["stream"]["name"]
        where = "" if stream == "conflicting-regimes" else f"{stream} batch {doc['config'].get('batch')}: "
        for method, result in doc["methods"].items():
            out[f"{where}{_label(method, params)} [{path.stem}]"] = result
            seeds.update(str(s) for s in result.get("seeds") or [doc["config"].get("seed")])
    return out, sorted(seeds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path)
    parser.add_argument("--write-benchmarks", action="store_true")
    parser.add_argument("--section", default="conflicting-regimes-contexts-validation")
    args = parser.parse_args(argv)
    results, seeds = rows(args.results)
    preq = "\n".join(["| run | prequential % | buffer samples |", "|---|---|---|"] + [
        f"| {k} | {r['prequential_acc'] * 100:.2f} ± {(r.get('prequential_acc_std') or 0) * 100:.2f} | "
        f"{r.get('buffer_capacity')} |" for k, r in results.items()])
    body = (f"### {args.section}\n\nMethod `contexts` settings on validation seeds {', '.join(seeds)} of the "
            "`conflicting-regimes` stream (never the reported seeds 0-2), each row naming the settings it gave; the "
            "others were context_window=2, context_beta=1.0 and ADWIN with clock 1, delta 0.5. The defaults were "
            "then set to the best balance of prequential accuracy and return gap: context_window=1, "
            "context_beta=0.75 (ADWIN clock 1, delta 0.5). The runs named final-* came after two changes to the "
            "method (a context keeps its last good head; the router stays while the active context fits its data "
            "about as well as ever): the defaults then, and the first of those changes turned off. Rows named elec2 "
            "ran Elec2 at batch 1 on validation seed 100 with the final code: there the kept good head cost more "
            "than it gained on conflicting-regimes (compare the rows), so context_keep_good defaults to false. sgd and "
            "der++ beside for reference. Same protocol as `conflicting-regimes-contexts` otherwise.\n\n"
            f"{preq}\n\n{regimes_table(results)}\n")
    print(body)
    if args.write_benchmarks:
        command = "python benchmarks/contexts_validation.py " + " ".join(shlex.quote(str(p)) for p in args.results)
        write_section(args.section, body, command + " --write-benchmarks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
