"""Snapshots, checkpoints and exports are observers: a learner that took them every few steps ends bit-identical
to one that never did (parameters, optimizer, buffer, its random generator and torch's global one)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from edge_cl.config import parse_config
from edge_cl.daemon.codec import encode_json
from edge_cl.daemon.service import Daemon
from edge_cl.daemon.snapshots import export_one, find_publisher, make_job
from edge_cl.daemon.spool import SAMPLE, Incoming, Spool
from edge_cl.export import export_onnx

DIM, CLASSES, STEPS, EVERY = 6, 3, 40, 7

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("one_thread")]  # tests/daemon/conftest.py


def _daemon(workdir: Path) -> tuple[Daemon, Spool]:
    cfg = parse_config({
        "input": {"dim": DIM, "num_classes": CLASSES},
        "model": {"type": "mlp", "input_dim": DIM, "hidden": [16], "num_classes": CLASSES},
        # A buffer far larger than the 32 parity samples: a random pick of them would draw from the generator.
        "learner": {"budget_bytes": 200_000, "replay_batch": 8, "device": "cpu", "max_batch": 8, "seed": 5},
        "checkpoint": {"dir": str(workdir / "ckpt")},
        "spool": {"path": str(workdir / "spool.db")},
        "snapshot": {"dir": str(workdir / "snapshots")}, "metrics": {"enabled": False},
    })
    torch.manual_seed(0)  # the model's initial weights
    d = Daemon(cfg)
    spool = Spool(cfg.spool.path)
    d._restore(spool)
    rng = np.random.default_rng(1)
    rows = []
    for i in range(STEPS * cfg.learner.max_batch):
        x = rng.normal(size=DIM)
        rows.append(Incoming(SAMPLE, f"s{i}", True, encode_json(f"s{i}", x, int(x[0] > 0) + int(x[1] > 0))))
    spool.put_many(rows)
    return d, spool


def _run(workdir: Path, observe: bool) -> tuple[Daemon, list[torch.Tensor]]:
    d, spool = _daemon(workdir)
    publish = find_publisher()
    global_states = []
    while rows := spool.read_after(d.progress.position, d.cfg.learner.max_batch):
        d._process(rows)
        if observe and d.learner.step % EVERY == 0:
            before = torch.random.get_rng_state()
            result = export_one(publish, make_job(d.learner, d.snapshot_input_shape()), d.cfg.snapshot.dir, 2)
            assert result.published, result.reason
            d._checkpoint(spool)
            export_onnx(d.learner.inference_model(), input_shape=(DIM,))
            assert torch.equal(before, torch.random.get_rng_state()), "torch's global random state changed"
        global_states.append(torch.random.get_rng_state())
    assert d.learner.step == STEPS
    return d, global_states


def _flat(state: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(state, dict):
        out: dict[str, Any] = {}
        for k, v in state.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    if isinstance(state, (list, tuple)):
        return _flat(dict(enumerate(state)), prefix)
    return {prefix: state}


def test_snapshots_checkpoints_and_exports_leave_the_learner_bit_identical(tmp_path: Path) -> None:
    plain, plain_global = _run(tmp_path / "plain", observe=False)
    watched, watched_global = _run(tmp_path / "watched", observe=True)
    assert len(list((tmp_path / "watched" / "snapshots").glob("*.onnx"))) == 2  # the exports did happen
    assert list((tmp_path / "watched" / "ckpt").glob("ckpt-*.pt"))
    # "extra" is the checkpoint's spool bookkeeping, written by _checkpoint: not learner state.
    a = {k: v for k, v in _flat(plain.learner.state_dict()).items() if not k.startswith("extra")}
    b = {k: v for k, v in _flat(watched.learner.state_dict()).items() if not k.startswith("extra")}
    assert a.keys() == b.keys()
    differ = [k for k in a if not (torch.equal(a[k], b[k]) if isinstance(a[k], torch.Tensor) else a[k] == b[k])]
    assert not differ, f"state differs after snapshots/checkpoints/exports: {differ[:8]}"
    for p, q in zip(plain.learner.model.parameters(), watched.learner.model.parameters(), strict=True):
        assert torch.equal(p, q)
    assert all(torch.equal(x, y) for x, y in zip(plain_global, watched_global, strict=True))
