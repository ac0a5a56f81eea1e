"""The daemon's fleet channel: authentication, what it reads out, and the merge between two steps."""

from __future__ import annotations

import threading
import urllib.request

import numpy as np
import pytest
import torch

from edge_cl.fleet import FleetChannel, FleetConfig, merge
from edge_cl.fleet.local_client import ChannelError, DaemonChannel
from tests.fleet.helpers import LearningLoop, batches, learner, token_file


@pytest.fixture
def channel(tmp_path):
    tok = token_file(tmp_path)
    ch = FleetChannel.from_config(FleetConfig(enabled=True, port=0, token_file=tok, timeout_s=10))
    assert ch is not None
    yield ch, tok
    ch.close()


def test_refuses_a_wrong_or_missing_token(channel, tmp_path) -> None:
    ch, _ = channel
    wrong = DaemonChannel(ch.address, token_file(tmp_path, "other.token"))
    with pytest.raises(ChannelError, match="401.*bearer token"):
        wrong.local_weights()
    with pytest.raises(ChannelError, match="401"):
        wrong.merge_global({"0.weight": np.zeros((16, 8), np.float32)})
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(ch.address + "/weights", timeout=5)
    assert exc.value.code == 401


def test_binds_loopback_only_and_refuses_remote_addresses(channel, tmp_path) -> None:
    ch, tok = channel
    assert ch._server.server_address[0] == "127.0.0.1"
    with pytest.raises(ValueError, match="127.0.0.1"):
        DaemonChannel("http://10.0.0.5:8471", tok)


def test_disabled_or_tokenless_configs() -> None:
    assert FleetChannel.from_config(FleetConfig()) is None
    with pytest.raises(ValueError, match="token_file"):
        FleetConfig(enabled=True)


def test_returns_weights_and_samples_since_merge(channel) -> None:
    ch, tok = channel
    lrn = learner(0)
    data = batches(0, 5)
    with LearningLoop(lrn, ch, data) as loop:
        assert loop.learned_all.wait(30)
        arrays, samples = DaemonChannel(ch.address, tok).local_weights()
    assert samples == 5 * 8 == lrn.samples_learned
    names = [n for n, _ in lrn.model.named_parameters()]
    assert list(arrays) == names
    for name, p in lrn.model.named_parameters():
        assert arrays[name].dtype == np.float32
        np.testing.assert_array_equal(arrays[name], p.detach().numpy())


def test_a_posted_model_is_merged_between_steps_and_learning_goes_on(channel) -> None:
    ch, tok = channel
    lrn = learner(1, method="er+ewc")
    client = DaemonChannel(ch.address, tok)
    rng = np.random.default_rng(7)
    posted = {n: rng.normal(0, 0.1, p.shape).astype(np.float32) for n, p in lrn.model.named_parameters()}
    flat_before = lrn.flat_param
    for x, y in batches(1, 3):
        lrn.learn(x, y)
    # Nothing is merged until the learning thread serves the channel: the POST waits for it.
    poster = threading.Thread(target=client.merge_global, args=(posted,))
    poster.start()
    while ch._requests.empty():
        pass
    for name, p in lrn.model.named_parameters():
        assert not np.array_equal(p.detach().numpy(), posted[name])
    assert ch.apply_pending(lrn) == 1
    poster.join(10)
    for name, p in lrn.model.named_parameters():
        np.testing.assert_array_equal(p.detach().numpy(), posted[name])
    # In place: the flat buffer the parameters are views of is still theirs.
    assert lrn.flat_param is flat_before and lrn.params[0].data_ptr() == flat_before.data_ptr()
    assert ch.samples_since_merge(lrn) == 0
    with LearningLoop(lrn, ch, batches(2, 4)) as loop:
        assert loop.learned_all.wait(30)
        arrays, samples = client.local_weights()
    assert samples == 4 * 8 and lrn.samples_learned == 7 * 8
    assert any(not np.array_equal(arrays[n], posted[n]) for n in posted), "the learner stopped learning"
    assert all(np.isfinite(a).all() for a in arrays.values())


def test_a_model_of_another_architecture_is_refused_and_nothing_changes(channel) -> None:
    ch, tok = channel
    lrn = learner(2)
    before = {n: p.detach().clone() for n, p in lrn.model.named_parameters()}
    bad = {n: np.zeros(tuple(p.shape)[::-1] if p.ndim == 2 else p.shape, np.float32)
           for n, p in lrn.model.named_parameters()}
    with LearningLoop(lrn, ch, []):
        with pytest.raises(ChannelError, match="422.*same model"):
            DaemonChannel(ch.address, tok).merge_global(bad)
        with pytest.raises(ChannelError, match="422.*NaN"):
            DaemonChannel(ch.address, tok).merge_global(
                {n: np.full(p.shape, np.nan, np.float32) for n, p in lrn.model.named_parameters()})
    for n, p in lrn.model.named_parameters():
        assert torch.equal(p.detach(), before[n])
    assert ch.merges == 0


def test_a_request_the_loop_does_not_serve_times_out_and_is_dropped(tmp_path) -> None:
    tok = token_file(tmp_path)
    with FleetChannel(open(tok).read().strip(), timeout_s=0.3) as ch:
        lrn = learner(3)
        before = {n: p.detach().clone() for n, p in lrn.model.named_parameters()}
        with pytest.raises(ChannelError, match="503"):
            DaemonChannel(ch.address, tok).merge_global(merge.local_weights(learner(4)))
        assert ch.apply_pending(lrn) == 0  # too late: the client was told it failed, so it must not happen
        for n, p in lrn.model.named_parameters():
            assert torch.equal(p.detach(), before[n])


def test_the_daemon_config_has_a_fleet_table(tmp_path) -> None:
    from edge_cl.config import Config

    base = {"input": {"dim": 8, "num_classes": 3}, "model": {"type": "mlp", "input_dim": 8, "num_classes": 3}}
    assert Config.model_validate(base).fleet.enabled is False
    tok = token_file(tmp_path)
    cfg = Config.model_validate({**base, "fleet": {"enabled": True, "port": 0, "token_file": str(tok)}})
    assert cfg.fleet.token_file == tok
    with pytest.raises(ValueError, match="token_file"):
        Config.model_validate({**base, "fleet": {"enabled": True}})


def test_the_merge_blends_with_global_weight(tmp_path) -> None:
    """fleet.global_weight = a: the daemon's weights become a * w_global + (1 - a) * w_local between two steps."""
    tok = token_file(tmp_path)
    with FleetChannel.from_config(FleetConfig(enabled=True, port=0, token_file=tok, global_weight=0.25)) as ch:
        lrn = learner(1, method="er")
        for x, y in batches(1, 3):
            lrn.learn(x, y)
        local = {n: p.detach().numpy().copy() for n, p in lrn.model.named_parameters()}
        posted = {n: np.full(p.shape, 2.0, np.float32) for n, p in local.items()}
        poster = threading.Thread(target=DaemonChannel(ch.address, tok).merge_global, args=(posted,))
        poster.start()
        while ch._requests.empty():
            pass
        assert ch.apply_pending(lrn) == 1
        poster.join(10)
        for name, p in lrn.model.named_parameters():
            np.testing.assert_allclose(p.detach().numpy(), 0.25 * 2.0 + 0.75 * local[name], rtol=1e-6)
    with pytest.raises(ValueError, match="global_weight"):
        FleetConfig(enabled=True, token_file=tok, global_weight=1.5)


def test_below_min_new_samples_the_channel_sends_no_weights_and_counts_it(tmp_path) -> None:
    """fleet.min_new_samples: a device that learned fewer samples since its last merge answers without weights
    (204, the count and the minimum in headers), counted as a skipped round; at the minimum it sends them."""
    tok = token_file(tmp_path)
    ch = FleetChannel.from_config(FleetConfig(enabled=True, port=0, token_file=tok, timeout_s=10,
                                              min_new_samples=30))
    assert ch is not None and ch.min_new_samples == 30
    lrn, data = learner(6), batches(6, 6)
    client = DaemonChannel(ch.address, tok)
    try:
        with LearningLoop(lrn, ch, data[:3]) as loop:  # 24 samples: below 30
            assert loop.learned_all.wait(30)
            update = client.read_update()
            assert update.skipped and update.arrays is None and (update.samples, update.min_new_samples) == (24, 30)
            with pytest.raises(ChannelError, match="24 samples.*min_new_samples=30"):
                client.local_weights()
            s = ch.stats.snapshot()
            assert (s["rounds_skipped"], s["rounds_joined"], s["bytes_sent"]) == (2, 0, 0)
            loop.data += data[3:4]  # 32: at or above the minimum, the weights go
            assert wait_until_learned(lrn, 32)
            arrays, samples = client.local_weights()
            assert samples == 32 and set(arrays) == {n for n, _ in lrn.model.named_parameters()}
            assert ch.stats.snapshot()["rounds_joined"] == 1
            # A merge starts the count again: right after it the device sits out.
            client.merge_global(arrays)
            assert client.read_update() == (None, 0, 30)
    finally:
        ch.close()
    with pytest.raises(ValueError, match="min_new_samples"):
        FleetConfig(enabled=True, token_file=tok, min_new_samples=-1)
    with FleetChannel(tok.read_text().strip(), min_new_samples=0) as always:
        with LearningLoop(learner(7), always, []):  # 0: weights go even with nothing learned
            arrays, samples = DaemonChannel(always.address, tok).local_weights()
        assert samples == 0 and arrays


def wait_until_learned(lrn, n: int, timeout: float = 30) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while lrn.samples_learned < n and time.monotonic() < deadline:
        time.sleep(0.01)
    return lrn.samples_learned >= n
