"""The daemon's configuration: one TOML file, validated whole by pydantic before any I/O.

Secrets never live in the TOML: the broker password comes from ``password_file`` or the environment
variable named by ``password_env``. Errors name the key, the bad value and what is allowed.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from enum import Enum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edge_cl.fleet.settings import FleetConfig
from edge_cl.learner_config import LearnerConfig

MASK = "***"


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message lists every problem found."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BrokerProtocol(str, Enum):
    """MQTT protocol version spoken to the broker."""

    V5 = "5"
    V311 = "3.1.1"


class BrokerConfig(_Section):
    """Where the MQTT broker is and how to authenticate to it."""

    host: str = Field("127.0.0.1", description="Broker host name or address.")
    port: int = Field(1883, ge=1, le=65535, description="Broker TCP port (8883 is the usual TLS port).")
    client_id: str = Field("edge-cl", min_length=1, max_length=128,
                           description="MQTT client id; must be stable, the persistent session is keyed by it. "
                                       "With topics.labels set, labels come in a second session, client id "
                                       "'<client_id>-labels' (a broker ACL must allow both).")
    keepalive: int = Field(30, ge=5, le=3600, description="MQTT keepalive in seconds.")
    protocol: BrokerProtocol = Field(BrokerProtocol.V5, description="'5' (default) or '3.1.1' (e.g. amqtt).")
    session_expiry_s: int = Field(
        7 * 24 * 3600, ge=1, le=4294967295,
        description="MQTT v5 SessionExpiryInterval: how long the broker keeps the session (and queues "
                    "QoS 1 messages) while the daemon is away. Must be > 0, or the session ends at disconnect.")
    clean_start: bool = Field(
        False,
        description="MQTT v5: clean-start the very first connection of a new spool, discarding any session "
                    "the broker holds for this client_id. Off (default): never clean-start; the broker creates "
                    "the session when it has none. Mosquitto does not persist a session begun with clean start "
                    "across its own restart until the client reconnects, so turning this on can lose messages "
                    "queued while the daemon is away in its first session.")
    ca_file: Path | None = Field(None, description="CA certificate (PEM) to verify the broker; enables TLS.")
    cert_file: Path | None = Field(None, description="Client certificate (PEM) for mutual TLS.")
    key_file: Path | None = Field(None, description="Client private key (PEM) for mutual TLS; a secret, keep 0600.")
    tls_insecure: bool = Field(False, description="Skip host name verification (testing only).")
    username: str | None = Field(None, description="User name for password authentication.")
    password_file: Path | None = Field(None, description="File whose first line is the password.")
    password_env: str | None = Field(None, description="Environment variable holding the password.")
    reconnect_min_s: float = Field(0.5, gt=0, le=60, description="First reconnect delay; doubles up to the max.")
    reconnect_max_s: float = Field(30.0, gt=0, le=3600, description="Largest reconnect delay (with jitter).")
    connect_timeout_s: float = Field(
        10.0, gt=0, le=600,
        description="How long start-up waits for the first connection; then the daemon starts anyway, logs a "
                    "warning and keeps retrying in the background (it never gives up on the broker).")

    @model_validator(mode="before")
    @classmethod
    def _no_inline_password(cls, data: Any) -> Any:
        if isinstance(data, dict) and "password" in data:
            raise ValueError("broker.password must not be written in the TOML; put it in a file named by "
                             "broker.password_file or an environment variable named by broker.password_env")
        return data

    @model_validator(mode="after")
    def _coherent(self) -> BrokerConfig:
        if self.password_file is not None and self.password_env is not None:
            raise ValueError("set only one of broker.password_file and broker.password_env")
        if (self.password_file or self.password_env) and not self.username:
            raise ValueError("broker.username is required when a password source is given")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("broker.cert_file and broker.key_file must be given together")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError(f"broker.reconnect_max_s={self.reconnect_max_s} is below "
                             f"broker.reconnect_min_s={self.reconnect_min_s}")
        return self

    @property
    def tls(self) -> bool:
        """True when a CA file is set (TLS on)."""
        return self.ca_file is not None

    def password(self) -> str | None:
        """Read the password from its file or environment variable (at connect time, not at load)."""
        import os

        if self.password_file is not None:
            try:
                return self.password_file.read_text().splitlines()[0] if self.password_file.stat().st_size else ""
            except OSError as exc:
                raise ConfigError(f"broker.password_file={str(self.password_file)!r} cannot be read: {exc}") from None
        if self.password_env is not None:
            value = os.environ.get(self.password_env)
            if value is None:
                raise ConfigError(f"broker.password_env={self.password_env!r}: the environment variable is not set")
            return value
        return None


class TopicsConfig(_Section):
    """MQTT topics read and written by the daemon."""

    samples: str = Field("edge-cl/samples", min_length=1, description="Sensor samples in (wildcards allowed).")
    labels: str | None = Field("edge-cl/labels", description="Delayed labels in: {\"id\", \"y\"}; empty to disable.")
    predictions: str = Field("edge-cl/predictions", min_length=1, description="Predictions out.")
    dead_letter: str = Field("edge-cl/dead-letter", min_length=1, description="Rejected inputs out, with the reason.")
    status: str | None = Field("edge-cl/status", description="Retained online/offline status (and last will).")
    qos: Literal[1] = Field(1, description="Subscription QoS; 1 (at-least-once) is what the spool relies on.")
    predictions_qos: Literal[0, 1] = Field(1, description="QoS of published predictions and dead letters.")

    @field_validator("predictions", "dead_letter", "status")
    @classmethod
    def _no_wildcards(cls, v: str | None) -> str | None:
        if v is not None and ("+" in v or "#" in v):
            raise ValueError(f"publish topic {v!r} must not contain MQTT wildcards '+' or '#'")
        return v


class InputFormat(str, Enum):
    """Wire format of sample messages."""

    JSON = "json"
    BINARY = "binary"


class InputConfig(_Section):
    """What a sample looks like on the wire."""

    format: InputFormat = Field(InputFormat.JSON, description="'json' or 'binary' (see deploy/README.md).")
    dim: int | None = Field(None, ge=1, description="Flat feature count; give dim or shape.")
    shape: list[int] | None = Field(None, description="Feature shape, e.g. [channels, window]; flattened on input.")
    num_classes: int = Field(..., ge=2, description="Labels must lie in [0, num_classes).")
    max_payload_bytes: int = Field(1 << 20, ge=16, le=256 << 20, description="Larger messages are rejected.")

    @model_validator(mode="after")
    def _dim_or_shape(self) -> InputConfig:
        if self.dim is None and self.shape is None:
            raise ValueError("input needs 'dim' (flat feature count) or 'shape' (e.g. [3, 32])")
        if self.shape is not None:
            if not self.shape or any(s < 1 for s in self.shape):
                raise ValueError(f"input.shape={self.shape} must be a non-empty list of positive integers")
            if self.dim is not None and self.dim != math.prod(self.shape):
                raise ValueError(f"input.dim={self.dim} disagrees with input.shape={self.shape} "
                                 f"(product {math.prod(self.shape)}); give one of them")
        return self

    @property
    def flat_dim(self) -> int:
        """Number of float features per sample."""
        return self.dim if self.dim is not None else math.prod(self.shape or [])

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """The shape of one sample: ``shape``, or ``(dim,)`` for flat feature vectors."""
        return tuple(self.shape) if self.shape is not None else (self.flat_dim,)


class DaemonLearnerConfig(LearnerConfig):
    """The learner (edge_cl.learner_config.LearnerConfig, one schema everywhere) plus the daemon's threads and
    micro-batching. Any other key is a setting of the chosen method(s), e.g. importance_lambda."""

    budget_bytes: int = Field(2_000_000, ge=1024, description="Byte budget for all learner state; the buffer "
                                                              "gets what the fixed part leaves.")
    threads: int = Field(1, ge=0, le=256,
                         description="torch intra-op threads for the daemon process (0: torch's default). One "
                                     "thread is far faster for small models on a busy CPU.")
    max_batch: int = Field(16, ge=1, le=4096,
                           description="Most new samples per step while the daemon keeps up; steps grow toward it "
                                       "as messages arrive together.")
    backlog_max_batch: int | None = Field(
        None, ge=1, le=4096,
        description="Most new samples per step under a backlog (unset: max_batch, fixed batches): each step that "
                    "finds its batch full doubles the next, up to this bound, while the latency target allows; a "
                    "step that finds the spool drained goes back to max_batch. Replay grows in proportion "
                    "(replay_batch x batch / max_batch). Fewer, larger steps learn less from each sample at the "
                    "same lr (an MNIST backlog: prequential 0.81 with fixed steps of 16, 0.62 with up to 64, 0.34 "
                    "up to 256), so a larger bound trades accuracy during a backlog for a faster drain; off unless "
                    "set, since the default learner keeps its accuracy.")
    latency_target_ms: float = Field(
        50.0, gt=0, le=60_000,
        description="Time one step's chunk may take, from reading it to its predictions queued (decode, predict, "
                    "learn, publish): a batch doubles only while twice its chunk's time stays under it, and halves "
                    "when a chunk takes longer. It bounds the wait of a message that arrives as a backlog drains.")

    @model_validator(mode="after")
    def _backlog_at_least_max_batch(self) -> DaemonLearnerConfig:
        if self.backlog_max_batch is not None and self.backlog_max_batch < self.max_batch:
            raise ValueError(f"learner.backlog_max_batch={self.backlog_max_batch} is below learner.max_batch="
                             f"{self.max_batch}: set it to max_batch or more, or leave it unset (fixed batches)")
        return self

    @property
    def backlog_bound(self) -> int:
        """The largest step under a backlog: ``backlog_max_batch``, or ``max_batch`` (fixed batches) when unset."""
        return self.backlog_max_batch if self.backlog_max_batch is not None else self.max_batch

    def learner_config(self, vector_input: bool = False) -> LearnerConfig:
        """The learner's part alone (what OnlineLearner and its saved state hold). ``standardize`` unset is the
        learner's own rule for vector inputs (the first batch decides: sparse values in [-1, 1] stay raw) and off
        for other inputs, whatever the model says of its input shape: [input] is what the daemon feeds."""
        data = {k: getattr(self, k) for k in LearnerConfig.model_fields}
        if self.standardize is None and not vector_input:
            data["standardize"] = False
        # The daemon books each batch's skip and hits to that batch (exactly-once accounting), so it takes every
        # step's own values, never the previous step's (LearnStats.lag 0 on the CUDA-graph step too).
        data["exact_stats"] = True
        return LearnerConfig.model_validate(data)


class LabelsConfig(_Section):
    """The delayed-label join."""

    window_samples: int = Field(10_000, ge=1, le=10_000_000, description="Most unlabeled samples waiting.")
    window_s: float = Field(300.0, gt=0, description="How long an unlabeled sample waits for its label.")
    early_labels: int = Field(10_000, ge=0, description="Labels kept that arrived before their sample.")


class CheckpointConfig(_Section):
    """Where and how often the learner's whole state is saved."""

    dir: Path = Field(Path("checkpoints"), description="Directory of checkpoints.")
    every_steps: int = Field(500, ge=1, description="Checkpoint after this many learn steps ...")
    every_s: float = Field(60.0, gt=0, description="... or this many seconds, whichever comes first.")
    keep: int = Field(3, ge=1, le=1000, description="How many checkpoints are kept.")
    file_mode: int = Field(0o640, ge=0, le=0o777,
                           description="Permissions of checkpoint files (TOML octal; 0o640: group can read).")


class SnapshotConfig(_Section):
    """ONNX snapshots for inference processes (edge_cl.export)."""

    enabled: bool = Field(True, description="Export ONNX snapshots.")
    dir: Path = Field(Path("snapshots"), description="Directory of snapshots and their manifest.")
    every_steps: int = Field(2000, ge=1, description="Export after this many learn steps ...")
    every_s: float = Field(300.0, gt=0, description="... or this many seconds, whichever comes first.")
    keep: int = Field(5, ge=1, le=1000, description="How many snapshots are kept.")
    file_mode: int = Field(0o640, ge=0, le=0o777,
                           description="Permissions of snapshots and manifest (TOML octal, 0o640: group can read, "
                                       "so inference processes of the daemon's group can load them).")


class OverflowPolicy(str, Enum):
    """What the spool drops when it is full."""

    DROP_OLDEST_UNLABELED = "drop-oldest-unlabeled"
    DROP_OLDEST = "drop-oldest"


class SpoolConfig(_Section):
    """The durable queue between the network and the learner."""

    path: Path = Field(Path("spool.sqlite"), description="SQLite file (WAL mode).")
    max_bytes: int = Field(256 << 20, ge=4096, description="Payload bytes kept before the overflow policy drops.")
    overflow: OverflowPolicy = Field(OverflowPolicy.DROP_OLDEST_UNLABELED,
                                     description="'drop-oldest-unlabeled' or 'drop-oldest' (not yet learned).")
    dedupe_window: int = Field(100_000, ge=1, description="Message ids remembered after learning, for dedupe.")
    dedupe_window_s: float | None = Field(
        None, gt=0,
        description="Unset (default): a message id is a duplicate for as long as the spool remembers it. Set: an id "
                    "first seen more than this many seconds ago is a new message, for devices whose message "
                    "counter restarts on reboot and cannot put a boot id in their ids. Make it longer than the "
                    "daemon can be down: the broker redelivers unacknowledged messages after an outage.")
    lag_high_water: int = Field(10_000, ge=1, description="Samples waiting in the spool (labels not counted) above "
                                                          "which only a subsample is learned.")
    catchup_learn_fraction: float = Field(0.25, gt=0, le=1,
                                          description="Fraction of labeled samples learned while over the high water.")


class MetricsConfig(_Section):
    """Prometheus endpoint."""

    enabled: bool = Field(True, description="Serve Prometheus metrics over HTTP.")
    host: str = Field("127.0.0.1", description="Listen address.")
    port: int = Field(9464, ge=0, le=65535, description="Listen port (0: any free port).")
    status_page: bool | None = Field(
        None, description="Serve the read-only status page at / (JSON at /status.json) beside /metrics; "
                          "unset: on only when host is a loopback address.")

    @property
    def page_enabled(self) -> bool:
        """Whether the status page is served (an explicit setting wins; else loopback hosts only)."""
        from edge_cl.daemon.status_page import is_loopback

        return self.status_page if self.status_page is not None else is_loopback(self.host)


class LoggingConfig(_Section):
    """Log output."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")
    format: Literal["plain", "json"] = Field("plain", description="'plain' or 'json' (one JSON object a line).")
    warn_interval_s: float = Field(10.0, ge=0, description="Repeated warnings of one kind at most this often.")


class BenchBudgetsConfig(_Section):
    """Device budgets checked by `edge-cl bench --config` (the daemon itself ignores them)."""

    latency_budget_ms: float | None = Field(None, gt=0, description="Update latency p99 the device allows (ms).")
    rss_budget_mb: float | None = Field(None, gt=0, description="Process RSS the device allows (MiB).")
    batch: int | None = Field(None, ge=1, description="New samples per learn step in the fit run "
                                                      "(default: learner.max_batch).")


# Models whose float32 parameters exceed this are not built for real to be checked when no budget bounds them.
_REAL_BUILD_CAP = 1 << 30


def model_problems(spec: dict[str, Any], inp: InputConfig, learner_input_dim: int | None,
                   budget_bytes: int | None) -> list[str]:
    """What is wrong with the model ``spec`` against ``[input]`` and the byte budget, each naming its keys.

    The model is first built on torch's ``meta`` device (shapes, no memory), so a mistyped ``hidden`` of
    billions of units is a line here, not a 40 GB allocation. Only a model that fits the budget is built for
    real, and only when it does not declare its sizes (a user's factory: one forward on a flat batch tells).
    """
    kind = spec.get("type")
    model, bad = _build_on_meta(spec)
    if model is None:
        return [bad]
    found: list[str] = []
    in_dim = getattr(model, "input_dim", None)
    n_cls = getattr(model, "num_classes", None)
    if in_dim is not None and in_dim != inp.flat_dim:
        given = f"input.dim={inp.dim}" if inp.dim is not None else f"input.shape={inp.shape}"
        found.append(f"model.input_dim={in_dim} but {given} gives {inp.flat_dim} features per sample; "
                     "make them agree")
    if n_cls is not None and n_cls != inp.num_classes:
        found.append(f"model.num_classes={n_cls} but input.num_classes={inp.num_classes}; make them agree")
    if learner_input_dim is not None and learner_input_dim != inp.flat_dim:
        found.append(f"learner.input_dim={learner_input_dim} but [input] gives {inp.flat_dim} features per sample; "
                     "drop learner.input_dim (the daemon takes it from [input])")
    count = sum(p.numel() for p in model.parameters())
    nbytes = sum(p.numel() * p.element_size() for p in model.parameters())
    if budget_bytes is not None and nbytes > budget_bytes:
        found.append(f"model.type = {kind!r}: its {count:,} parameters alone take {nbytes:,} bytes, more than "
                     f"learner.budget_bytes={budget_bytes:,} (which also holds their gradients, the optimizer, the "
                     "methods' state and the replay buffer); shrink the model (e.g. model.hidden) or raise "
                     "learner.budget_bytes")
        return found
    if (in_dim is None or n_cls is None) and nbytes <= (budget_bytes or _REAL_BUILD_CAP):
        try:
            real = _build(spec)
        except Exception as exc:  # noqa: BLE001 - the user's factory: report it in one line
            return [*found, f"model.type = {kind!r}: building the model failed: {type(exc).__name__}: {exc}"]
        found += _forward_problems(real, kind, inp)
    return found


def _build(spec: dict[str, Any]) -> Any:
    from edge_cl import models

    return models.build(spec)


def _build_on_meta(spec: dict[str, Any]) -> tuple[Any, str]:
    """(the model built on the meta device, "") or (None, the reason it cannot be built)."""
    import torch

    kind = spec.get("type")
    try:
        with torch.device("meta"):
            return _build(spec), ""
    except ValueError as exc:  # models.build's own messages name the spec
        return None, f"model.type = {kind!r}: {exc}"
    except Exception as exc:  # noqa: BLE001 - a builder's TypeError, a factory's own error: one line, no traceback
        failure: Exception = exc
    if ":" in str(kind):  # a factory may do what meta tensors cannot (load weights ...): build it for real
        try:
            return _build(spec), ""
        except Exception as exc:  # noqa: BLE001
            failure = exc
    return None, f"model.type = {kind!r}: the model cannot be built: {type(failure).__name__}: {failure}"


def _forward_problems(model: Any, kind: Any, inp: InputConfig) -> list[str]:
    """A model that does not declare its sizes runs once on a flat batch, so a contract broken (a reshape to
    the wrong size, too many outputs) is a config error naming the keys."""
    import torch

    dim = inp.flat_dim
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros((2, dim)))
    except Exception as exc:  # noqa: BLE001 - the user's forward: report it in one line
        return [(f"model.type = {kind!r}: forward on a flat [2, {dim}] float32 batch ([input] gives {dim} "
                 f"features per sample) failed: {type(exc).__name__}: {exc}. A model takes flat rows and reshapes "
                 "inside (README, 'Your own model')")]
    shape = tuple(getattr(out, "shape", ()))
    if shape != (2, inp.num_classes):
        return [(f"model.type = {kind!r} returns shape {shape} for a [2, {dim}] batch; expected logits "
                 f"[2, {inp.num_classes}] (input.num_classes={inp.num_classes})")]
    return []


class Config(_Section):
    """The whole daemon configuration."""

    broker: BrokerConfig = Field(default_factory=BrokerConfig)
    topics: TopicsConfig = Field(default_factory=TopicsConfig)
    input: InputConfig
    model: dict[str, Any] = Field(..., description="A spec for edge_cl.models.build: {type = 'mlp', ...}.")
    learner: DaemonLearnerConfig = Field(default_factory=DaemonLearnerConfig)
    labels: LabelsConfig = Field(default_factory=LabelsConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    snapshot: SnapshotConfig = Field(default_factory=SnapshotConfig)
    spool: SpoolConfig = Field(default_factory=SpoolConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    bench: BenchBudgetsConfig = Field(default_factory=BenchBudgetsConfig)
    fleet: FleetConfig = Field(default_factory=FleetConfig)

    @field_validator("model")
    @classmethod
    def _model_type(cls, v: dict[str, Any]) -> dict[str, Any]:
        if "type" not in v:
            raise ValueError("model needs a 'type': 'mlp', 'cnn1d', 'cnn2d' or 'package.module:function'")
        return v

    @model_validator(mode="after")
    def _model_matches_input(self) -> Config:
        found = model_problems(self.model, self.input, self.learner.input_dim, self.learner.budget_bytes)
        if found:
            raise ValueError("\n  ".join(found))
        return self

    def learner_config(self) -> LearnerConfig:
        """The learner's configuration; ``input_dim`` from ``[input]``, so a model without an ``input_dim``
        attribute (a user's factory) needs none."""
        narrow = self.learner.learner_config(self.vector_input)
        return narrow.model_copy(update={"input_dim": self.input.flat_dim})

    @property
    def vector_input(self) -> bool:
        """True when samples are flat feature vectors (sensor readings), not images or multi-channel windows."""
        return self.input.shape is None or len(self.input.shape) == 1

    def build_model(self) -> Any:
        """Build the torch module of ``model`` (raises ValueError naming the bad spec)."""
        from edge_cl import models

        return models.build(self.model)

    def state_paths(self) -> dict[str, Path]:
        """The directories the daemon writes, by the key that names them (the spool's is its file's parent)."""
        found = {"spool.path": self.spool.path.parent, "checkpoint.dir": self.checkpoint.dir}
        if self.snapshot.enabled:
            found["snapshot.dir"] = self.snapshot.dir
        return found

    def masked(self) -> dict[str, Any]:
        """The resolved config as plain data with secrets masked, for printing."""
        data = self.model_dump(mode="json")
        broker = data["broker"]
        for key in ("key_file", "password_file"):
            if broker.get(key):
                broker[key] = f"{broker[key]} (secret file)"
        if broker.get("password_env"):
            broker["password_env"] = f"{broker['password_env']} (value {MASK})"
        for section in ("checkpoint", "snapshot"):  # permissions read as octal, the way they are written
            data[section]["file_mode"] = f"{data[section]['file_mode']:#o}"
        return data

    def resolve_paths(self, base: Path, state_base: Path | None = None) -> Config:
        """A copy with relative paths made absolute: files the daemon reads (TLS, password) against ``base``
        (the config file's directory), what it writes (spool, checkpoints, snapshots) against ``state_base``
        (default ``base``; see :func:`state_base`)."""

        def rel(section: BaseModel, root: Path, *names: str) -> dict[str, Any]:
            out = {}
            for n in names:
                p = getattr(section, n)
                out[n] = p if p is None or p.is_absolute() else root / p
            return out

        state = state_base if state_base is not None else base
        return self.model_copy(update={
            "broker": self.broker.model_copy(update=rel(self.broker, base, "ca_file", "cert_file", "key_file",
                                                        "password_file")),
            "checkpoint": self.checkpoint.model_copy(update=rel(self.checkpoint, state, "dir")),
            "snapshot": self.snapshot.model_copy(update=rel(self.snapshot, state, "dir")),
            "spool": self.spool.model_copy(update=rel(self.spool, state, "path")),
        })


STATE_DIRECTORY_ENV = "STATE_DIRECTORY"


def state_base(config_dir: Path) -> tuple[Path, str]:
    """Where relative state paths (spool, checkpoints, snapshots) resolve, and why, in words.

    ``$STATE_DIRECTORY`` when set: systemd sets it from ``StateDirectory=`` to the one directory the shipped unit
    lets the daemon write (``/var/lib/edge-cl``), while the config sits in read-only ``/etc/edge-cl``. Otherwise
    the config file's directory, so a config and its state stay together in a development or demo directory.
    """
    value = os.environ.get(STATE_DIRECTORY_ENV, "")
    first = value.split(":")[0]  # systemd joins several StateDirectory= entries with ':'
    if first:
        return Path(first), f"${STATE_DIRECTORY_ENV}={first}"
    return config_dir, "the config file's directory"


def _describe(err: Any) -> str:
    msg = str(err["msg"]).removeprefix("Value error, ")
    if not err["loc"]:  # a check across sections: its message names the keys, the whole input says nothing
        return msg
    loc = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        return f"{loc}: unknown key; check the spelling against deploy/config/example.toml"
    if err["type"] == "missing":
        return f"{loc}: required key is missing"
    if re.match(r"^[\w, ]+: unknown keys?;", msg):
        return f"{loc}.{msg}"  # an unknown key found by a section's own validator: name it, not the section
    value = err.get("input")
    shown = repr(value) if not isinstance(value, dict) else "{...}"
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return f"{loc} = {shown}: {msg}"


def parse_config(data: dict[str, Any], base: Path | None = None, state: Path | None = None) -> Config:
    """Validate a parsed TOML document; raise ConfigError listing every problem. Relative paths resolve
    against ``base`` (state paths against ``state`` when given)."""
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        lines = [_describe(e) for e in exc.errors()]
        lines += _cross_section_problems(data, exc)
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None
    return cfg.resolve_paths(base, state) if base is not None else cfg


def _cross_section_problems(data: dict[str, Any], exc: ValidationError) -> list[str]:
    """The model-against-[input] checks, which pydantic runs only once every field is valid: run here on the
    sections that are valid by themselves, so a mismatch is not hidden behind a typo elsewhere."""
    if any(not e["loc"] for e in exc.errors()):
        return []  # they did run (their message is among the errors)
    try:
        inp = InputConfig.model_validate(data.get("input"))
    except ValidationError:
        return []  # that section's own errors are already listed
    model = data.get("model")
    if not isinstance(model, dict) or "type" not in model:
        return []
    learner = data.get("learner") if isinstance(data.get("learner"), dict) else {}
    in_dim = learner.get("input_dim") if isinstance(learner.get("input_dim"), int) else None
    budget = learner.get("budget_bytes", DaemonLearnerConfig.model_fields["budget_bytes"].default)
    return model_problems(model, inp, in_dim, budget if isinstance(budget, int) and budget > 0 else None)


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML config; relative paths in it are relative to the file's directory."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"config file {str(p)!r} cannot be read: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(p)!r} is not valid TOML: {exc}") from None
    base = p.resolve().parent
    _find_user_modules(data, base)
    return parse_config(data, base, state_base(base)[0])


def _find_user_modules(data: dict[str, Any], base: Path) -> None:
    """Make modules beside the config importable when it names any (``model.type = "mod:fn"``,
    ``learner.plugins``), and import the plugins here so a missing one is reported with where it was looked for."""
    from edge_cl import user_code

    model = data.get("model")
    kind = model.get("type") if isinstance(model, dict) else None
    learner = data.get("learner")
    plugins = learner.get("plugins") if isinstance(learner, dict) else None
    plugins = [p for p in plugins if isinstance(p, str)] if isinstance(plugins, list) else []
    if not plugins and not (isinstance(kind, str) and ":" in kind):
        return
    user_code.add_search_dir(base)
    try:
        for name in plugins:
            user_code.import_module(name, "learner.plugins")
    except ValueError as exc:
        raise ConfigError(f"invalid configuration:\n  {exc}") from None


_EXAMPLE_VALUES: dict[str, dict[str, Any]] = {
    "broker": {"ca_file": "/etc/edge-cl/tls/ca.crt", "cert_file": "/etc/edge-cl/tls/client.crt",
               "key_file": "/etc/edge-cl/tls/client.key", "username": "edge-cl",
               "password_file": "/etc/edge-cl/mqtt-password", "password_env": "EDGE_CL_MQTT_PASSWORD"},
    "input": {"dim": 24, "shape": [3, 8], "num_classes": 4},
    "learner": {"input_range": [0.0, 1.0], "trigger_params": {"window": 25}, "plugins": ["my_package.my_methods"],
                "input_dim": 24, "max_buffer_samples": 5000, "standardize": True, "backlog_max_batch": 64},
    "metrics": {"status_page": True},
    "spool": {"dedupe_window_s": 86400.0},
    "bench": {"latency_budget_ms": 5.0, "rss_budget_mb": 512.0, "batch": 10},
    "fleet": {"token_file": "/etc/edge-cl/fleet.token"},
}
_EXAMPLE_MODEL = {"type": "cnn1d", "channels": 3, "length": 8, "num_classes": 4, "conv": [16, 32], "kernel_size": 3,
                  "hidden": 32}
_COMMENTED = {("broker", "ca_file"), ("broker", "cert_file"), ("broker", "key_file"), ("broker", "username"),
              ("broker", "password_file"), ("broker", "password_env"), ("input", "dim"),
              ("learner", "input_range"), ("learner", "trigger_params"), ("learner", "plugins"),
              ("learner", "input_dim"), ("learner", "max_buffer_samples"), ("learner", "standardize"),
              ("learner", "backlog_max_batch"),
              ("metrics", "status_page"), ("spool", "dedupe_window_s"),
              ("bench", "latency_budget_ms"), ("bench", "rss_budget_mb"), ("bench", "batch")}


def _method_settings_lines() -> list[str]:
    """Every registered method's settings, as commented example keys of [learner]."""
    from edge_cl import methods

    out = ["# Method settings: any other key of [learner] is a setting of the chosen method(s), given to every",
           "# method of the combination that declares it. Registered methods and their settings (defaults):"]
    for name in methods.available():
        fields = methods.get(name).Settings.model_fields
        settings = ", ".join(f"{k} = {_toml_value(f.default)}" for k, f in fields.items()) or "no settings"
        out.append(f"#   {name}: {settings}")
    out.append("# importance_lambda = 1.0")
    out.append("# The same settings may be grouped instead: method_params = {importance_lambda = 1.0}")
    out.append("# method_params = {}")
    return out


def _toml_value(v: Any) -> str:
    import json

    if isinstance(v, Enum):
        v = v.value
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, Path):
        v = str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot render {v!r} as TOML")


def render_example() -> str:
    """The documented example config (deploy/config/example.toml) generated from the field descriptions."""
    out = ["# edge-cl daemon configuration: every key, its default and what it means.",
           "# Generated by edge_cl.config.render_example(). Relative paths: files read (TLS, password) are relative",
           "# to this file; state written (spool, checkpoints, snapshots) to $STATE_DIRECTORY when set (systemd's",
           "# StateDirectory=), else to this file's directory.",
           "# Secrets never go here: the MQTT password comes from broker.password_file or broker.password_env.", ""]
    for name, field in Config.model_fields.items():
        out.append(f"[{name}]")
        if name == "model":
            out.append("# A spec for edge_cl.models.build: type = 'mlp' | 'cnn1d' | 'cnn2d' | 'package.module:function';")
            out.append("# the other keys are the builder's arguments. Its input size and classes must match [input].")
            out.append("# A factory's module may be a .py file beside this config file (its directory is appended to")
            out.append("# the import path); the model takes flat [B, features] rows (see 'Your own model', README.md).")
            out += [f"{k} = {_toml_value(v)}" for k, v in _EXAMPLE_MODEL.items()]
            out.append("")
            continue
        section = field.annotation
        if section is None or not hasattr(section, "model_fields"):
            raise TypeError(f"section {name} is not a model")
        doc = " ".join((section.__doc__ or "").split())
        if doc:
            out.append(f"# {doc}")
        for key, f in section.model_fields.items():
            if (name, key) == ("learner", "method_params"):
                out += _method_settings_lines()
                continue
            out.append(f"# {f.description or ''}".rstrip())
            value = _EXAMPLE_VALUES.get(name, {}).get(key, f.get_default(call_default_factory=True))
            if value is None:
                continue
            line = f"{key} = {value:#o}" if key == "file_mode" else f"{key} = {_toml_value(value)}"
            out.append(f"# {line}" if (name, key) in _COMMENTED else line)
        out.append("")
    return "\n".join(out)
