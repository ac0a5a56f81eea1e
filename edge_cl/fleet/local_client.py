"""The ClientApp's end of the channel: reads the daemon's weights and hands it the global model (loopback only)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

import numpy as np

from edge_cl.fleet import wire
from edge_cl.fleet.token import read_token

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class ChannelError(RuntimeError):
    """The daemon's channel refused or could not be reached; the message says which and why."""


class LocalUpdate(NamedTuple):
    """What the daemon answers a round: its weights (None when it sits the round out), the samples it learned
    since its last merge, and its ``fleet.min_new_samples`` (0 when it sent weights: the minimum is met)."""

    arrays: dict[str, np.ndarray] | None
    samples: int
    min_new_samples: int = 0

    @property
    def skipped(self) -> bool:
        return self.arrays is None


class DaemonChannel:
    """``address`` (http://127.0.0.1:PORT) and the token file the daemon's ``[fleet]`` table names."""

    def __init__(self, address: str, token_file: str | Path, timeout_s: float = 60.0) -> None:
        host = urlsplit(address).hostname
        if urlsplit(address).scheme != "http" or host not in LOOPBACK:
            # The weights must not leave the device except through Flower.
            raise ValueError(f"fleet channel address {address!r} must be http://127.0.0.1:PORT (the daemon on this "
                             "device)")
        self.address = address.rstrip("/")
        self._token = read_token(Path(token_file))
        self.timeout_s = timeout_s

    def _call(self, method: str, path: str, body: bytes | None = None) -> tuple[bytes, dict[str, str]]:
        headers = {"Authorization": f"Bearer {self._token}"}
        if body is not None:
            headers["Content-Type"] = wire.CONTENT_TYPE
        req = urllib.request.Request(self.address + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                return resp.read(), dict(resp.headers.items())
        except urllib.error.HTTPError as exc:
            try:
                reason = json.loads(exc.read()).get("error", "")
            except ValueError:
                reason = ""
            raise ChannelError(f"the daemon at {self.address} answered {method} {path} with {exc.code}: "
                               f"{reason or exc.reason}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise ChannelError(f"cannot reach the daemon's fleet channel at {self.address} ({exc}); is the daemon "
                               "running with [fleet] enabled = true on that port?") from None

    def read_update(self) -> LocalUpdate:
        """The daemon's answer to a round: its weights and sample count, or (below its ``fleet.min_new_samples``)
        the count and the minimum without weights."""
        body, headers = self._call("GET", "/weights")
        lower = {k.lower(): v for k, v in headers.items()}
        samples = lower.get(wire.SAMPLES_HEADER.lower())
        if samples is None:
            raise ChannelError(f"the daemon at {self.address} sent no {wire.SAMPLES_HEADER} header")
        minimum = lower.get(wire.MIN_SAMPLES_HEADER.lower())
        if minimum is not None:  # a 204: the daemon withheld its weights
            return LocalUpdate(None, int(samples), int(minimum))
        return LocalUpdate(wire.decode(body), int(samples))

    def local_weights(self) -> tuple[dict[str, np.ndarray], int]:
        """The daemon's weights and the samples it learned since the last merge; ChannelError when it withheld
        them (fewer new samples than its ``fleet.min_new_samples``)."""
        update = self.read_update()
        if update.arrays is None:
            raise ChannelError(f"the daemon at {self.address} learned {update.samples} samples since its last merge, "
                               f"below its fleet.min_new_samples={update.min_new_samples}; it sends no weights")
        return update.arrays, update.samples

    def merge_global(self, arrays: dict[str, np.ndarray]) -> None:
        """Hand the global model to the daemon; returns once its learning thread merged it."""
        self._call("POST", "/global", wire.encode(arrays))
