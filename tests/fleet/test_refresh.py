"""What a merge refreshes: DER's stored logits, importance anchors, both or nothing (edge_cl.fleet.refresh)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from edge_cl.fleet import FleetChannel, FleetConfig, merge
from edge_cl.fleet.local_client import DaemonChannel
from edge_cl.fleet.refresh import refresh_after_merge
from edge_cl.methods.importance import ImportanceMethod
from tests.fleet.helpers import batches, learner, token_file


def trained(method: str, seed: int = 0):
    lrn = learner(seed, method=method)
    for x, y in batches(seed, 12):  # importance is estimated every 10 steps
        lrn.learn(x, y)
    lrn.consolidate()  # an anchor and an omega to refresh (the trigger may not have fired on 48 samples)
    return lrn


def other_weights(lrn, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {n: rng.normal(0, 0.3, p.shape).astype(np.float32) for n, p in merge.trainable(lrn)}


def model_logits(lrn) -> torch.Tensor:
    n = len(lrn.buffer)
    lrn.model.eval()
    try:
        with torch.no_grad():
            return lrn.model(lrn.buffer.codec.decode(lrn.buffer.x[:n]))
    finally:
        lrn.model.train()


def test_logits_are_recomputed_by_the_merged_model() -> None:
    lrn = trained("der++")
    merge.merge_global(lrn, other_weights(lrn))
    n, stored = len(lrn.buffer), lrn.buffer.values["logits"]
    expected = model_logits(lrn).to(stored.dtype)
    assert not torch.equal(stored[:n], expected), "the stored logits are already the merged model's"
    assert refresh_after_merge(lrn, "anchors") == {"anchors": 0}  # no importance method: nothing to move
    assert refresh_after_merge(lrn, "logits") == {"logits": n}
    assert torch.equal(stored[:n], expected)


def test_anchors_move_to_the_merged_weights_and_omega_stays() -> None:
    lrn = trained("der+++ewc")
    imp = next(m for m in lrn.methods if isinstance(m, ImportanceMethod))
    omega = [o.clone() for o in imp.omega]
    assert any(o.abs().sum() > 0 for o in omega), "nothing consolidated: the test would show nothing"
    logits = lrn.buffer.values["logits"].clone()
    merge.merge_global(lrn, other_weights(lrn))
    assert not all(torch.equal(a, p) for a, p in zip(imp.anchor, imp.params, strict=True))
    assert refresh_after_merge(lrn, "anchors") == {"anchors": 1}
    assert all(torch.equal(a, p.detach()) for a, p in zip(imp.anchor, imp.params, strict=True))
    assert all(torch.equal(o, k) for o, k in zip(imp.omega, omega, strict=True))
    assert torch.equal(lrn.buffer.values["logits"], logits), "anchors alone must leave DER's logits"
    assert imp.penalty_value() == 0  # the merged model is where the penalty now holds the weights


def test_none_changes_nothing_and_an_unknown_value_is_refused() -> None:
    lrn = trained("der+++ewc")
    merge.merge_global(lrn, other_weights(lrn))
    before = {k: v.clone() for k, v in lrn.buffer.values.items()}
    anchors = [a.clone() for a in next(m for m in lrn.methods if isinstance(m, ImportanceMethod)).anchor]
    assert refresh_after_merge(lrn, "none") == {}
    assert all(torch.equal(lrn.buffer.values[k], v) for k, v in before.items())
    imp = next(m for m in lrn.methods if isinstance(m, ImportanceMethod))
    assert all(torch.equal(a, b) for a, b in zip(imp.anchor, anchors, strict=True))
    with pytest.raises(ValueError, match="refresh_after_merge='logit'.*none, logits, anchors, both"):
        refresh_after_merge(lrn, "logit")
    with pytest.raises(ValueError, match="refresh_after_merge"):
        FleetConfig(refresh_after_merge="logit")


def test_the_daemon_merge_refreshes_what_fleet_refresh_after_merge_names(tmp_path) -> None:
    tok = token_file(tmp_path)
    lrn = trained("der+++ewc")
    imp = next(m for m in lrn.methods if isinstance(m, ImportanceMethod))
    ch = FleetChannel.from_config(FleetConfig(enabled=True, port=0, token_file=tok, refresh_after_merge="both"))
    assert ch is not None
    try:
        poster = threading.Thread(target=DaemonChannel(ch.address, tok).merge_global, args=(other_weights(lrn),))
        poster.start()
        while ch._requests.empty():
            pass
        assert ch.apply_pending(lrn) == 1
        poster.join(10)
    finally:
        ch.close()
    n, stored = len(lrn.buffer), lrn.buffer.values["logits"]
    assert torch.equal(stored[:n], model_logits(lrn).to(stored.dtype))
    assert all(torch.equal(a, p.detach()) for a, p in zip(imp.anchor, imp.params, strict=True))


def test_the_default_moves_anchors_only(tmp_path) -> None:
    """The measured default (BENCHMARKS.md fleet-refresh-k20 / -k1): anchors move, DER's logits stay."""
    assert FleetConfig().refresh_after_merge == "anchors"
    tok = token_file(tmp_path)
    lrn = trained("der+++ewc")
    imp = next(m for m in lrn.methods if isinstance(m, ImportanceMethod))
    logits = lrn.buffer.values["logits"].clone()
    with FleetChannel(tok.read_text().strip()) as ch:
        assert ch.refresh == "anchors"
        poster = threading.Thread(target=DaemonChannel(ch.address, tok).merge_global, args=(other_weights(lrn),))
        poster.start()
        while ch._requests.empty():
            pass
        assert ch.apply_pending(lrn) == 1
        poster.join(10)
    assert all(torch.equal(a, p.detach()) for a, p in zip(imp.anchor, imp.params, strict=True))
    assert torch.equal(lrn.buffer.values["logits"], logits)
