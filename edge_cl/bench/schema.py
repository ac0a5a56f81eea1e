"""The shape of the bench JSON document (documented in benchmarks/README.md) and a checker for it."""

from __future__ import annotations

import math
from typing import Any

SCHEMA = "edge_cl.bench/1"
# Keys every method (and peer) result carries; None means "not measured for this method".
REQUIRED_KEYS = ("acc", "bwt", "fwt", "forgetting", "prequential_acc", "accuracy_matrix", "samples_per_s",
                 "latency_ms_p50", "latency_ms_p99", "peak_rss_mb", "budget_bytes", "used_bytes", "buffer_capacity")
_FRACTIONS = ("acc", "prequential_acc")
_SIGNED = ("bwt", "fwt", "forgetting")
TOP_KEYS = ("schema", "stream", "config", "budget", "methods", "peers")


def empty_result(method: str, **extra: Any) -> dict[str, Any]:
    """A result for ``method`` with every required key present and unmeasured."""
    r: dict[str, Any] = {k: None for k in REQUIRED_KEYS}
    r["method"] = method
    r.update(extra)
    return r


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_result(name: str, r: dict[str, Any]) -> list[str]:
    """Problems with one method result (empty list: fine)."""
    errs = [f"{name}: missing key {k!r}" for k in REQUIRED_KEYS if k not in r]
    for k in _FRACTIONS:
        v = r.get(k)
        if v is not None and not (_num(v) and 0.0 <= v <= 1.0):
            errs.append(f"{name}: {k}={v!r} is not a fraction in [0, 1]")
    for k in _SIGNED:
        v = r.get(k)
        if v is not None and not (_num(v) and -1.0 <= v <= 1.0):
            errs.append(f"{name}: {k}={v!r} is not in [-1, 1]")
    m = r.get("accuracy_matrix")
    if m is not None:
        if not (isinstance(m, list) and all(isinstance(row, list) and len(row) == len(m) for row in m)):
            errs.append(f"{name}: accuracy_matrix is not a square list of lists")
        elif not all(_num(v) and 0.0 <= v <= 1.0 for row in m for v in row):
            errs.append(f"{name}: accuracy_matrix has entries outside [0, 1]")
    for k in ("samples_per_s", "latency_ms_p50", "latency_ms_p99", "peak_rss_mb"):
        v = r.get(k)
        if v is not None and not (_num(v) and v >= 0):
            errs.append(f"{name}: {k}={v!r} is not a non-negative number")
    for k in ("budget_bytes", "used_bytes", "buffer_capacity"):
        v = r.get(k)
        if v is not None and not (_num(v) and v >= 0):
            errs.append(f"{name}: {k}={v!r} is not a non-negative number")
    if _num(r.get("used_bytes")) and _num(r.get("budget_bytes")) and r["budget_bytes"] and \
            r["used_bytes"] > r["budget_bytes"]:
        errs.append(f"{name}: used_bytes {r['used_bytes']} exceeds budget_bytes {r['budget_bytes']}")
    return errs


def check_document(doc: dict[str, Any]) -> list[str]:
    """Problems with a whole bench JSON document (empty list: it follows the schema)."""
    errs = [f"missing top-level key {k!r}" for k in TOP_KEYS if k not in doc]
    if doc.get("schema") != SCHEMA:
        errs.append(f"schema is {doc.get('schema')!r}, expected {SCHEMA!r}")
    for name, r in (doc.get("methods") or {}).items():
        errs += check_result(name, r)
    for name, r in (doc.get("peers") or {}).items():
        errs += check_result(f"peer {name}", r)
    return errs
