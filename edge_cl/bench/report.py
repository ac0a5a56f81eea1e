"""Markdown tables of a bench document (stdout and BENCHMARKS.md sections)."""

from __future__ import annotations

import json
from typing import Any

from edge_cl.bench.regimes import regimes_table


def _pct(r: dict[str, Any], key: str, signed: bool = False) -> str:
    v = r.get(key)
    if v is None:
        return "-"
    s = f"{v * 100:+.2f}" if signed else f"{v * 100:.2f}"
    std = r.get(f"{key}_std")
    return f"{s} ± {std * 100:.2f}" if std is not None else s


def _num(r: dict[str, Any], key: str, fmt: str) -> str:
    v = r.get(key)
    if v is None:
        return "-"
    s = format(v, fmt)
    std = r.get(f"{key}_std")
    return f"{s} ± {format(std, fmt)}" if std is not None else s


def _budget(r: dict[str, Any]) -> str:
    b, cap = r.get("budget_bytes"), r.get("buffer_capacity")
    if not b:
        return "-"
    return f"{int(b):,} B / {int(cap or 0)} samples"


def markdown_table(doc: dict[str, Any]) -> str:
    """One row per method and peer: accuracies in %, throughput, latency, budget and RSS."""
    stream = doc.get("stream", {})
    tasks = stream.get("kind") == "tasks"
    head = ["method"]
    if tasks:
        head += ["ACC %", "BWT %", "FWT %", "forgetting %"]
    head += ["prequential %", "samples/s", "vs bare", "learn p50 ms", "learn p99 ms", "budget (bytes / buffer)",
             "used bytes", "peak RSS MB", "consolidations"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    rows = list(doc.get("methods", {}).items()) + [(f"river {k}", v) for k, v in doc.get("peers", {}).items()]
    notes = []
    for name, r in rows:
        cells = [name]
        if tasks:
            cells += [_pct(r, "acc"), _pct(r, "bwt", True), _pct(r, "fwt", True), _pct(r, "forgetting")]
        vs = r.get("vs_bare")
        cells += [_pct(r, "prequential_acc"), _num(r, "samples_per_s", ",.0f"),
                  (f"{vs:.2f}x / p50 {r['vs_bare_p50']:.2f}x {r.get('bare_reference')}"
                   if vs is not None and r.get("vs_bare_p50") is not None else "-"),
                  _num(r, "latency_ms_p50", ".3f"), _num(r, "latency_ms_p99", ".3f"), _budget(r),
                  f"{int(r['used_bytes']):,}" if r.get("used_bytes") else "-", _num(r, "peak_rss_mb", ".0f"),
                  _num(r, "consolidations", ".0f")]
        lines.append("| " + " | ".join(cells) + " |")
        if r.get("note"):
            notes.append(f"- {name}: {r['note']}")
    cfg = doc.get("config", {})
    seeds = cfg.get("repeat", 1)
    images = "" if cfg.get("images", "mnist") == "mnist" or stream.get("kind") != "tasks" else f" of {cfg['images']}"
    intro = (f"Stream `{stream.get('name')}`{images} ({stream.get('setting')}, {stream.get('num_tasks') or 1} task(s), "
             f"{stream.get('samples'):,} training samples, scale {cfg.get('scale')}); protocol `{cfg.get('protocol')}`: "
             f"batch {cfg.get('batch')}, replay batch {cfg.get('replay_batch')}, lr {cfg.get('lr')}, {_opt(cfg)}; "
             f"model {_model_text(doc)}; "
             + _settings_text(cfg)
             + f"{_inputs_text(cfg.get('standardize'), doc)}; "
             f"{seeds} seed(s) from {cfg.get('seed')}"
             + (" (mean ± std)" if seeds > 1 else "") + f". Budget: {doc.get('budget', {}).get('note')}.")
    foot = ("samples/s counts only time inside `learn` (no evaluation); `vs bare` divides it by the hand-written "
            "PyTorch loop with the same model, batches and replay (`p50`: its median step time over ours, robust to "
            "stalls from other processes on a shared CPU). Peak RSS is the process high-water mark "
            "(data sets included), not per method.")
    regimes = regimes_table(doc.get("methods", {}))
    if regimes:  # streams whose regimes come back: accuracy per visit, and how fast a return is recognised
        foot += (" Per-regime table: prequential accuracy of each visit; a return's first samples against the "
                 "last samples of that regime's previous visit (gap < 0: the return starts below what was known).")
    return "\n".join([intro, "", *lines, *(["", regimes] if regimes else []), "", foot,
                      *([""] + notes if notes else [])])


def _inputs_text(standardize: bool | None, doc: dict[str, Any]) -> str:
    """How the inputs were given to the learner methods: set by the bench, or the learner's default and what it
    decided (each learner method's ``standardized``)."""
    if standardize is True:
        return "inputs standardised online (--standardize)"
    if standardize is False:
        return "raw inputs"
    decided = {bool(r["standardized"]) for r in doc.get("methods", {}).values() if r.get("standardized") is not None}
    what = ("standardised online" if decided == {True} else "left raw" if decided == {False} else
            "standardised for some methods" if decided else "not learned")
    return f"inputs: the learner's default standardize rule ({what})"


def _settings_text(cfg: dict[str, Any]) -> str:
    """The --method-param settings of the run ("" when none), so a section says what its command set."""
    params = cfg.get("method_params") or {}
    return f"method settings {', '.join(f'{k}={json.dumps(v)}' for k, v in params.items())}; " if params else ""


def _opt(cfg: dict[str, Any]) -> str:
    if cfg.get("optimizer", "sgd") == "adam":
        return "Adam"
    clip = f", gradient norm clipped at {cfg['max_grad_norm']}" if cfg.get("max_grad_norm") is not None else ""
    return (f"SGD momentum {cfg['momentum']}" if cfg.get("momentum") else "plain SGD") + clip


def _model_text(doc: dict[str, Any]) -> str:
    spec = doc.get("config", {}).get("model")
    if spec is None:
        shape = doc.get("stream", {}).get("input_shape", [])
        return f"MLP {shape[0] if shape else '?'}-100-100-{doc.get('stream', {}).get('num_classes')}"
    return str(spec)
