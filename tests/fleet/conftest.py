"""Flower reports usage to telemetry.flower.ai unless told not to; these tests send nothing beyond 127.0.0.1."""

import os

os.environ["FLWR_TELEMETRY_ENABLED"] = "0"  # read by flwr at import and inherited by the processes it starts

from tests.daemon.conftest import broker, mosquitto_bin  # noqa: F401 - the daemon tests' real Mosquitto
