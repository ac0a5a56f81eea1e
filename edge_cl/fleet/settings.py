"""The daemon's ``[fleet]`` table."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

DEFAULT_PORT = 8471
# What a merge refreshes (edge_cl.fleet.refresh), chosen by benchmarks/fleet.py --compare-refresh (BENCHMARKS.md
# fleet-refresh-k20 and -k1): with der++ + EWC, moving the anchors beat no refresh on every validation seed at both
# round periods and costs a copy; refreshing logits did not beat it consistently (der++ included) and costs a forward
# over the buffer. Without an importance method "anchors" changes nothing.
DEFAULT_REFRESH = "anchors"
# A device that learned nothing since its last merge sends nothing: its weight in the average would be 0 anyway.
DEFAULT_MIN_NEW_SAMPLES = 1


class FleetConfig(BaseModel):
    """Fleet learning through Flower: the loopback channel a ``flower-supernode``'s ClientApp reaches this
    daemon by (always bound to 127.0.0.1: the only traffic leaving the device is Flower's own)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(False, description="Serve the fleet channel (weights out, the global model in).")
    port: int = Field(DEFAULT_PORT, ge=0, le=65535, description="Loopback port of the channel (0: any free port).")
    token_file: Path | None = Field(None, description="File whose first line is the bearer token the ClientApp "
                                                      "must present; a secret, keep it 0600.")
    timeout_s: float = Field(30.0, gt=0, le=3600, description="How long a request waits for the learning loop "
                                                              "to serve it (it is served between two steps).")
    max_body_bytes: int = Field(256 << 20, ge=1024, description="Largest global model accepted (bytes).")
    global_weight: float = Field(1.0, ge=0, le=1, description="a in w = a * w_global + (1 - a) * w_local, the merge "
                                                              "between two steps (1: take the global model; chosen "
                                                              "on validation seeds among 0.5 / 0.8 / 1, BENCHMARKS.md "
                                                              "fleet).")
    min_new_samples: int = Field(DEFAULT_MIN_NEW_SAMPLES, ge=0, le=1_000_000_000,
                                 description="Samples learned since the last merge a device needs to send its weights "
                                             "in a round; below it the device answers the round without weights "
                                             "(the server leaves it out of the average, and logs why) and still "
                                             "merges the round's global model. 0: always send.")
    refresh_after_merge: Literal["none", "logits", "anchors", "both"] = Field(
        DEFAULT_REFRESH, description="What a merge refreshes: DER's stored logits (recomputed by the merged model: a "
                                     "forward over the buffer), importance anchors (EWC, MAS ...: moved to the merged "
                                     "weights, omega kept; nothing without an importance method), both, or none. "
                                     "Default chosen on validation seeds, BENCHMARKS.md fleet-refresh-k20 / -k1.")

    @model_validator(mode="after")
    def _token_when_enabled(self) -> FleetConfig:
        if self.enabled and self.token_file is None:
            raise ValueError("fleet.enabled = true needs fleet.token_file: a file holding a random token "
                             "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))' > fleet.token`), "
                             "the same file the SuperNode's node config names")
        return self
