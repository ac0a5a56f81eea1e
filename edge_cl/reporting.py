"""Writes benchmark results into BENCHMARKS.md, one named section per benchmark, so numbers there
always come from a run of the tool and never from hand edits."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: concurrent writers are not serialised
    fcntl = None  # type: ignore[assignment]

HEADER = ("# Benchmarks\n\nEvery section below is written by a benchmark command (named in the section); "
          "do not edit numbers by hand. Re-run the command to refresh a section.\n")


def machine_line(device: str = "cpu") -> str:
    """One line naming where a result was measured (host CPU count, Python, torch, device)."""
    import torch

    cpu = platform.processor() or platform.machine()
    gpu = ""
    if device.startswith("cuda") and torch.cuda.is_available():
        gpu = f", GPU {torch.cuda.get_device_name(0)}"
    return (f"{cpu}, {os.cpu_count()} logical CPUs{gpu}; Python {platform.python_version()}, "
            f"torch {torch.__version__}; {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}")


@contextlib.contextmanager
def _exclusive(target: Path) -> Iterator[None]:
    """Hold an exclusive lock beside ``target`` while it is read, changed and replaced: benchmarks run in
    parallel each rewrite the whole file, and without the lock one could write back a copy that lacks the
    section another had just written."""
    if fcntl is None:
        yield
        return
    with open(target.parent / f".{target.name}.lock", "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def write_section(name: str, body: str, command: str, path: str | os.PathLike[str] = "BENCHMARKS.md") -> Path:
    """Replace (or append) the section ``name`` of ``path`` with ``body``, atomically.

    ``command`` is the exact command that produced the numbers; it is printed in the section.
    """
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"section name {name!r} must be letters, digits, '.', '_' or '-'")
    target = Path(path)
    with _exclusive(target):
        text = target.read_text() if target.exists() else HEADER
        begin, end = f"<!-- edge-cl:begin {name} -->", f"<!-- edge-cl:end {name} -->"
        section = f"{begin}\n{body.rstrip()}\n\nProduced by: `{command}`\n{end}"
        pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
        text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section + "\n"
        text = render_index(text)
        fd, tmp = tempfile.mkstemp(dir=target.parent or ".", prefix=".BENCHMARKS.", suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    return target


# ------------------------------------------------------------------------------------ the index at the top
INDEX_BEGIN, INDEX_END = "<!-- edge-cl:index-begin -->", "<!-- edge-cl:index-end -->"
_SECTION = re.compile(r"^<!-- edge-cl:begin ([A-Za-z0-9_.-]+) -->\n(.*?)^<!-- edge-cl:end \1 -->", re.DOTALL | re.MULTILINE)
_WHEN = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC")


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _headings(text: str) -> list[tuple[int, str]]:
    """(offset, heading text) of every Markdown heading outside code fences."""
    out, fenced, pos = [], False, 0
    for line in text.splitlines(keepends=True):
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,6} ", line):
            out.append((pos, line.lstrip("#").strip()))
        pos += len(line)
    return out


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def render_index(text: str) -> str:
    """``text`` (BENCHMARKS.md) with its generated index rewritten: a summary line and one row per section
    (its name linked to its first heading, what it measures, when, by which command). Inserted before the
    first section when absent; everything outside the index markers is left as it is."""
    text = re.sub(re.escape(INDEX_BEGIN) + r".*?" + re.escape(INDEX_END) + r"\n*", "", text, flags=re.DOTALL)
    sections = list(_SECTION.finditer(text))
    rows, dates = [], []
    for m in sections:
        name, body = m.group(1), m.group(2)
        heads = [h for off, h in _headings(body)]
        lines = [ln for ln in body.splitlines() if ln.strip()]
        what = heads[0] if heads and heads[0] != name else (heads[0] if heads else "")
        if not heads or heads[0] == name:
            what = next((ln for ln in lines if not ln.startswith(("#", "|", "Measured on", "Machine:", "Produced by:"))), what)
            what = what.split(". ")[0]
        what = what[:140] + ("..." if len(what) > 140 else "")
        when = _WHEN.search(body)
        dates.append(when.group(0) if when else "")
        cmd = re.search(r"^Produced by: `([^`]*)`", body, re.MULTILINE)
        prog = " ".join(cmd.group(1).split()[:2]) if cmd else ""
        rows.append((name, heads[0] if heads else None, what, when.group(0)[:10] if when else "-", prog))
    known = sorted(d for d in dates if d)
    index = [INDEX_BEGIN, "## Contents (generated)", "",
             (f"{len(sections)} sections, measured from {known[0] if known else '-'} to {known[-1] if known else '-'}. "
             "This index is rewritten by every `write_section` (edge_cl/reporting.py); "
             "`python -m edge_cl.reporting --check` fails when it is stale."), "",
             "| section | what it measures | measured | produced by |", "|---|---|---|---|"]
    placeholder = len(text)
    body_rows = rows
    # Anchors: GitHub numbers repeated headings (-1, -2 ...) in document order, the index's own heading first.
    start = sections[0].start() if sections else placeholder
    draft_index = "\n".join(index) + "\n"
    anchors: dict[str, int] = {}
    first_anchor: dict[int, str] = {}
    doc = text[:start] + draft_index + text[start:]
    shift = len(draft_index)
    section_starts = {m.start() + shift: m for m in sections}
    ordered = sorted(section_starts)
    for off, head in _headings(doc):
        slug = _slug(head)
        n = anchors.get(slug, 0)
        anchors[slug] = n + 1
        anchor = slug if n == 0 else f"{slug}-{n}"
        for s in ordered:
            m = section_starts[s]
            if s <= off < s + (m.end() - m.start()) and id(m) not in first_anchor:
                first_anchor[id(m)] = anchor
    for m, (name, head, what, when, prog) in zip(sections, body_rows, strict=True):
        label = f"[{name}](#{first_anchor[id(m)]})" if id(m) in first_anchor else f"`{name}`"
        index.append(f"| {label} | {_cell(what)} | {when} | `{_cell(prog)}` |")
    index += ["", INDEX_END, "", ""]
    block = "\n".join(index)
    if sections:
        return text[:start] + block + text[start:]
    return text.rstrip() + "\n\n" + block


def main(argv: list[str] | None = None) -> int:
    """``python -m edge_cl.reporting [--check] [PATH]``: rewrite BENCHMARKS.md's index, or (--check) exit 1
    when it is stale."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m edge_cl.reporting", description=main.__doc__)
    parser.add_argument("path", nargs="?", default="BENCHMARKS.md")
    parser.add_argument("--check", action="store_true", help="exit 1 if the index is stale; change nothing")
    args = parser.parse_args(argv)
    target = Path(args.path)
    with _exclusive(target):
        text = target.read_text()
        new = render_index(text)
        if args.check:
            if new != text:
                print(f"{target}: the index is stale; run python -m edge_cl.reporting {target}")
                return 1
            return 0
        if new != text:
            fd, tmp = tempfile.mkstemp(dir=target.parent or ".", prefix=".BENCHMARKS.", suffix=".tmp")
            with os.fdopen(fd, "w") as fh:
                fh.write(new)
            os.replace(tmp, target)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
