"""The `defaults-validation` section: der++ on validation seeds with raw or standardised inputs and float32 /
float16 / uint8 buffer storage at one byte budget per stream (benchmarks/validate_defaults.sh), one row per stream,
and what the learner's default rules (LearnerConfig.standardize=None, storage='auto') pick on it.

Usage: python benchmarks/defaults_table.py [benchmarks/results/val-defaults] [--write-benchmarks]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from edge_cl.reporting import write_section

VARIANTS = ("f32-raw", "f32-std", "f16-raw", "f16-std", "u8-raw")
STREAMS = {"rotated": "rotated-mnist", "permuted": "permuted-mnist", "split": "split-mnist",
           "split-fashion": "split-mnist (Fashion-MNIST)", "gradual": "gradual-rotation", "sea": "sea",
           "agrawal": "agrawal", "rbf": "rbf", "elec2": "elec2"}


def _rule_picks(doc: dict[str, Any], data_dir: str | None) -> tuple[bool, bool]:
    """What standardize=None (edge_cl.learner._leave_raw) and storage='auto' (lossless_uint8_range) decide on this
    stream's first batch of the bench: (standardise, uint8)."""
    import torch

    from edge_cl.bench.streams import make_stream
    from edge_cl.buffer_storage import lossless_uint8_range
    from edge_cl.learner import _leave_raw

    cfg = doc["config"]
    stream = make_stream(cfg["stream"], scale=cfg["scale"], seed=cfg["seed"], data_dir=data_dir,
                         num_tasks=cfg.get("num_tasks", 20), images=cfg.get("images", "mnist"))
    x = stream.train(0)[0] if hasattr(stream, "train") else torch.as_tensor(stream.x)
    first = torch.as_tensor(np.asarray(x[: cfg["batch"]]), dtype=torch.float32)
    return not _leave_raw(first, float(first.abs().max())), lossless_uint8_range(first) is not None


def _cell(r: dict[str, Any], key: str) -> str:
    std = r.get(f"{key}_std")
    return f"{r[key] * 100:.2f}" + ("" if std is None else f" ± {std * 100:.2f}") + f" ({r['buffer_capacity']})"


def main(argv: list[str]) -> None:
    args = [a for a in argv[1:] if not a.startswith("--")]
    folder = Path(args[0] if args else "benchmarks/results/val-defaults")
    rows = []
    for stem, label in STREAMS.items():
        docs = {v: json.loads((folder / f"{stem}-{v}.json").read_text()) for v in VARIANTS
                if (folder / f"{stem}-{v}.json").is_file()}
        if not docs:
            continue
        any_doc = next(iter(docs.values()))
        key = "acc" if any_doc["stream"].get("kind") == "tasks" else "prequential_acc"
        res = {v: d["methods"]["der++"] for v, d in docs.items()}
        std_on, u8 = _rule_picks(any_doc, None)
        storage = "u8" if u8 else "f16"
        pick = f"{storage}-{'std' if std_on else 'raw'}"
        best = max(res, key=lambda v: res[v][key])
        delta = (f"{(res[pick][key] - res[best][key]) * 100:+.2f}" if pick in res else "-")
        c = any_doc["config"]
        setup = f"{c['protocol']}, batch {c['batch']}, scale {c['scale']}"
        rows.append(f"| {label} ({setup}) | " + " | ".join(_cell(res[v], key) if v in res else "-" for v in VARIANTS)
                    + f" | {'standardised' if std_on else 'raw'}, {'uint8' if u8 else 'float16'} | {best} | {delta} |")
    seeds = next(iter(res.values())).get("seeds")
    body = "\n".join([
        "### defaults-validation", "",
        (f"How the learner's input defaults were chosen (issue #28 item 5): der++ (the default method) on validation "
        f"seeds {','.join(map(str, seeds or []))} (never the reported 0-2), raw (`--no-standardize`) or standardised "
        "(`--standardize`) inputs x float32 / float16 / uint8 buffer storage (uint8 over [0, 1]), all at one byte "
        "budget per stream (`--budget-bytes`: what der++ gets for 500 float32 samples with raw inputs, so the "
        "standardiser's statistics come out of the buffer). Cells: ACC % on task streams, prequential % otherwise "
        "(mean ± std over the seeds), buffer samples in brackets. `default picks`: what standardize=None decides on "
        "the stream's first batch (edge_cl.learner._leave_raw: sparse inputs in [-1, 1] stay raw) and the storage "
        "storage='auto' picks there (uint8 for 8-bit data, float16 otherwise); `vs best`: that cell minus the best cell of the row."), "",
        "| stream | f32 raw | f32 standardised | f16 raw | f16 standardised | uint8 raw | default picks | best | vs best |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
    ])
    if "--write-benchmarks" in argv:
        write_section("defaults-validation", body, f"python benchmarks/defaults_table.py {folder} --write-benchmarks")
    print(body)


if __name__ == "__main__":
    main(sys.argv)
