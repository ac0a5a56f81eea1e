"""Installed size of edge-cl's base and of each extra: the distributions each one pulls in, measured on this
machine's installed files (importlib.metadata's RECORD sizes), so a device owner sees what `pip install edge-cl`
puts on the disk before adding an extra.

    python benchmarks/install_size.py [--write-benchmarks]
"""

from __future__ import annotations

import argparse
import re
from importlib import metadata

from packaging.markers import default_environment
from packaging.requirements import Requirement

from edge_cl.reporting import machine_line, write_section

EXTRAS = ("river", "dynamo", "demo", "bench", "fleet")


def _name(requirement: str) -> Requirement:
    return Requirement(requirement)


def _applies(req: Requirement, extras: set[str]) -> bool:
    if req.marker is None:
        return True
    return any(req.marker.evaluate({**default_environment(), "extra": e}) for e in (extras or {""}))


def closure(root: str, extras: set[str]) -> set[str]:
    """Normalised names of ``root`` with ``extras`` and everything they require, as installed here."""
    seen: set[str] = set()
    todo = [(root, extras)]
    while todo:
        name, wanted = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if (key, frozenset(wanted)) in seen:
            continue
        seen.add((key, frozenset(wanted)))  # type: ignore[arg-type]
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        for raw in dist.requires or []:
            req = _name(raw)
            if _applies(req, wanted):
                todo.append((req.name, set(req.extras)))
    return {k for k, _ in seen}  # type: ignore[misc]


def size_mb(name: str) -> float:
    """Bytes of the distribution's installed files (its RECORD), in MB."""
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return 0.0
    total = 0
    for f in dist.files or []:
        if f.size is not None:
            total += f.size
        else:
            try:
                total += dist.locate_file(f).stat().st_size
            except OSError:
                pass
    return total / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write-benchmarks", action="store_true")
    args = parser.parse_args()
    base = closure("edge-cl", set()) - {"edge-cl"}
    sizes = {n: size_mb(n) for n in base}
    rows = [f"| {n} | {metadata.version(n)} | {sizes[n]:,.1f} |" for n in sorted(base, key=lambda n: -sizes[n])]
    total = sum(sizes.values())
    extra_rows = []
    for extra in EXTRAS:
        more = closure("edge-cl", {extra}) - base - {"edge-cl"}
        installed = [n for n in more if size_mb(n) > 0]
        extra_rows.append(f"| {extra} | {sum(size_mb(n) for n in installed):,.1f} | "
                          f"{', '.join(sorted(installed)) or '-'} |")
    body = "\n".join([
        "### install-size", "",
        f"Measured on: {machine_line()}", "",
        ("What `pip install edge-cl` (the base: learner, daemon, ONNX export, onnxruntime) puts on the disk, by "
         "distribution, from the installed files' sizes on this machine (torch is the CPU build; a CUDA build is "
         "larger), and what each extra adds on top. Start-up time of the base: the `startup` section."), "",
        (f"Base total: **{total:,.0f} MB**, of which torch {sizes.get('torch', 0):,.0f} MB; without torch "
         f"{total - sizes.get('torch', 0):,.0f} MB."), "",
        "| distribution | version | MB |", "|---|---|---:|", *rows, "",
        "| extra | adds MB | distributions |", "|---|---:|---|", *extra_rows,
    ])
    print(body)
    if args.write_benchmarks:
        write_section("install-size", body, "python benchmarks/install_size.py --write-benchmarks")


if __name__ == "__main__":
    main()
