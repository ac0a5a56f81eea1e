"""The budget fit's answer in markdown: FITS / DOES NOT FIT with the reasons, the checks, and the sweep."""

from __future__ import annotations

from typing import Any


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def _checks(doc: dict[str, Any], m: dict[str, Any]) -> list[str]:
    budget, rss_budget = doc["latency_budget_ms"], doc.get("rss_budget_mb")
    return [
        "",
        "| check | measured | budget | ok |", "|---|---|---|---|",
        (f"| learn latency p99, upper end at {m['confidence']:.0%} confidence | {_ms(m['latency_ms_p99_upper'])} ms "
         f"(p99 {_ms(m['latency_ms_p99'])}, p50 {_ms(m['latency_ms_p50'])}; per repeat "
         f"{', '.join(_ms(v) for v in m['latency_ms_p99_per_repeat'])}) | {budget} ms | "
         f"{'yes' if m['latency_ms_p99_upper'] <= budget else 'no'} |"),
        (f"| predict latency (one call per batch, as a client waits) | p50 {_ms(m['predict_ms_p50'])} ms, "
         f"p99 {_ms(m['predict_ms_p99'])} ms | - | - |"),
        (f"| learner state | {m['used_bytes']:,} B (buffer {m['buffer_capacity']} samples) | "
         f"{m['budget_bytes']:,} B | {'yes' if m['used_bytes'] <= m['budget_bytes'] else 'no'} |"),
        (f"| peak RSS (whole process) | {doc['peak_rss_mb']:.0f} MiB | {rss_budget if rss_budget else '-'} MiB | "
         f"{'yes' if not rss_budget or doc['peak_rss_mb'] <= rss_budget else 'no'} |"),
        (f"| throughput | {m['samples_per_s']:,.0f} samples/s on {m['device']} | - | - |"
         if m.get("samples_per_s") else f"| throughput | - on {m['device']} | - | - |"),
    ]


def _sweep(doc: dict[str, Any]) -> list[str]:
    if doc.get("sweep_note"):
        return ["", doc["sweep_note"] + "."]
    lines = ["", ("| replay batch | buffer the bytes hold | largest buffer that fits | learn p99 upper ms | "
                  "predict p99 ms | latency ok |"), "|---|---|---|---|---|---|"]
    for r in doc["sweep"]:
        held = "none" if r["buffer_within_bytes"] is None else r["buffer_within_bytes"]
        best = "none" if r["largest_buffer_that_fits"] is None else r["largest_buffer_that_fits"]
        lines.append(f"| {r['replay_batch']} | {held} | {best} | {_ms(r['latency_ms_p99_upper'])} | "
                     f"{_ms(r['predict_ms_p99'])} | {'yes' if r['latency_fits'] else 'no'} |")
    b = doc.get("best")
    lines += ["", ("Monotone by construction: a setting's latency is the largest upper bound measured at it or at "
                   "any smaller replay batch and buffer, so a larger setting never reads cheaper. Buffer sizes are "
                   f"searched by bisection up to what budget_bytes holds (to within {doc['sweep_tolerance']:.0%})."),
              "", (f"Largest configuration that fits: buffer {b['largest_buffer_that_fits']} samples, replay batch "
                   f"{b['replay_batch']}." if b else "No configuration tried fits both budgets.")]
    return lines


def fit_report_markdown(doc: dict[str, Any]) -> str:
    """A plain answer (FITS / DOES NOT FIT with the reasons) and, after a sweep, the table and the best pair."""
    m = doc.get("measured") or {}
    lines = [(f"**{'FITS' if doc['fits'] else 'DOES NOT FIT'}**: `{doc.get('config')}`, "
              f"method {doc['learner'].get('method')}, replay batch {doc['learner'].get('replay_batch')}, "
              f"batch {doc.get('batch')}, torch threads {doc.get('threads')}, {doc.get('repeats')} repeats, "
              f"verdict at {doc.get('confidence', 0):.0%} confidence.")]
    lines += [f"- {r}" for r in doc.get("reasons", [])]
    if m:
        lines += _checks(doc, m)
    if "sweep" in doc:
        lines += _sweep(doc)
    return "\n".join(lines)
