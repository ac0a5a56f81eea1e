"""Models: declarative specs (``mlp``, ``cnn1d``, ``cnn2d``) and the contract a model of your own must keep.

The model contract (every model the learner, the daemon and the exporter take):

* **Input**: one float32 tensor ``[B, input_dim]``, one flat row per sample. A model that needs a shape (a
  sensor window ``[C, T]``, an image ``[C, H, W]``) reshapes inside ``forward``, as the spec models do with
  ``x.reshape((x.shape[0], *self.input_shape))``. Rows arrive flat from the wire, the replay buffer and the
  ONNX graph's ``input`` alike.
* **Output**: logits ``[B, num_classes]`` (no softmax; the learner takes the loss of logits and the ONNX
  snapshot adds a ``probabilities`` output).
* ``input_dim`` (optional attribute): features per sample, ``prod(input_shape)``. Without it the learner takes
  ``input_dim=`` (``OnlineLearner``), the daemon ``[input] dim`` / ``shape``.
* ``input_shape`` (optional attribute): the per-sample shape, recorded in snapshots' metadata and manifest.
  It never changes the graph, which always takes flat rows. Without it: ``(input_dim,)`` in Python, the
  ``[input]`` table's ``shape`` (or ``[dim]``) in the daemon, ``--input-shape`` for ``edge-cl export``.
* ``num_classes`` (optional attribute): checked against ``[input] num_classes`` when present; otherwise read
  from the output width (the daemon runs a model without these attributes once at config load to check it).
* ``spec`` (set by :func:`build`): the dict the model was built from, saved in checkpoints so a learner state
  rebuilds its model with :func:`build` (``edge-cl export`` does so).

A factory of your own is named ``"package.module:function"`` (``model.type`` in the daemon's config, or
``build({"type": ...})``) and is called with the spec's other keys as keyword arguments; it returns an
``nn.Module`` keeping the contract. The module is imported by name: installed, on ``PYTHONPATH``, or, for the
daemon and every ``edge-cl`` command that reads a config, a ``.py`` file beside the config file (that
directory is appended to the import path; see :mod:`edge_cl.user_code`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import Tensor, nn

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "silu": nn.SiLU,
}


class SpecModel(nn.Module):
    """A network built from a spec: flat ``[B, input_dim]`` in, logits out."""

    def __init__(self, body: nn.Module, input_shape: tuple[int, ...], num_classes: int, spec: dict[str, Any]):
        super().__init__()
        self.body = body
        self.input_shape = tuple(int(s) for s in input_shape)
        self.input_dim = math.prod(self.input_shape)
        self.num_classes = int(num_classes)
        self.spec = dict(spec)

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x.reshape((x.shape[0], *self.input_shape)))


def _positive(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _activation(name: str) -> Callable[[], nn.Module]:
    try:
        return _ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"activation {name!r} is not supported; use one of {sorted(_ACTIVATIONS)}") from None


def mlp(input_dim: int, hidden: Sequence[int] = (100, 100), num_classes: int = 10,
        activation: str = "relu") -> SpecModel:
    """Fully connected network ``input_dim -> hidden... -> num_classes`` (DER's MNIST MLP by default)."""
    _positive("input_dim", input_dim)
    _positive("num_classes", num_classes)
    act = _activation(activation)
    layers: list[nn.Module] = []
    width = input_dim
    for i, h in enumerate(hidden):
        layers += [nn.Linear(width, _positive(f"hidden[{i}]", h)), act()]
        width = h
    layers.append(nn.Linear(width, num_classes))
    spec = {"type": "mlp", "input_dim": input_dim, "hidden": list(hidden), "num_classes": num_classes,
            "activation": activation}
    return SpecModel(nn.Sequential(*layers), (input_dim,), num_classes, spec)


def cnn1d(channels: int, length: int, num_classes: int, conv: Sequence[int] = (16, 32),
          kernel_size: int = 5, hidden: int = 64, activation: str = "relu") -> SpecModel:
    """1-D CNN for multichannel sensor windows ``[B, channels, length]`` (also accepted flat)."""
    _positive("channels", channels)
    _positive("length", length)
    _positive("num_classes", num_classes)
    _positive("kernel_size", kernel_size)
    _positive("hidden", hidden)
    act = _activation(activation)
    layers: list[nn.Module] = []
    width = channels
    for i, c in enumerate(conv):
        layers += [nn.Conv1d(width, _positive(f"conv[{i}]", c), kernel_size, padding=kernel_size // 2), act()]
        width = c
    # Global average pooling keeps the head independent of the window length.
    layers += [nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(width, hidden), act(), nn.Linear(hidden, num_classes)]
    spec = {"type": "cnn1d", "channels": channels, "length": length, "num_classes": num_classes,
            "conv": list(conv), "kernel_size": kernel_size, "hidden": hidden, "activation": activation}
    return SpecModel(nn.Sequential(*layers), (channels, length), num_classes, spec)


def cnn2d(height: int, width: int, num_classes: int, channels: int = 1, conv: Sequence[int] = (16, 32),
          hidden: int = 64, activation: str = "relu") -> SpecModel:
    """Small 2-D CNN for images ``[B, channels, height, width]`` (also accepted flat)."""
    for name, v in (("height", height), ("width", width), ("channels", channels), ("num_classes", num_classes),
                    ("hidden", hidden)):
        _positive(name, v)
    act = _activation(activation)
    layers: list[nn.Module] = []
    c_in = channels
    for i, c in enumerate(conv):
        layers += [nn.Conv2d(c_in, _positive(f"conv[{i}]", c), 3, padding=1), act(), nn.MaxPool2d(2, ceil_mode=True)]
        c_in = c
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, hidden), act(), nn.Linear(hidden, num_classes)]
    spec = {"type": "cnn2d", "height": height, "width": width, "channels": channels, "num_classes": num_classes,
            "conv": list(conv), "hidden": hidden, "activation": activation}
    return SpecModel(nn.Sequential(*layers), (channels, height, width), num_classes, spec)


BUILDERS: dict[str, Callable[..., SpecModel]] = {"mlp": mlp, "cnn1d": cnn1d, "cnn2d": cnn2d}


def build(spec: Mapping[str, Any]) -> nn.Module:
    """Build a model from a plain dict: ``{"type": "mlp", "input_dim": 784, ...}``.

    ``type`` is a builder name (``mlp``, ``cnn1d``, ``cnn2d``) or a user factory
    ``"package.module:function"`` called with the remaining keys.
    """
    if not isinstance(spec, Mapping) or "type" not in spec:
        raise ValueError(f"model spec must be a mapping with a 'type' key, got {spec!r}")
    kwargs = {k: v for k, v in spec.items() if k != "type"}
    kind = str(spec["type"])
    if kind in BUILDERS:
        try:
            return BUILDERS[kind](**kwargs)
        except TypeError as exc:
            raise ValueError(f"model spec for {kind!r} has bad keys: {exc}") from None
    if ":" in kind:
        from edge_cl import user_code

        factory = user_code.load_factory(kind)
        model = user_code.call_factory(kind, factory, kwargs)
        if not isinstance(model, nn.Module):
            raise ValueError(f"model factory {kind!r} returned {type(model).__name__}, not a torch.nn.Module")
        model.spec = dict(spec)  # type: ignore[assignment]  # lets a saved learner rebuild it
        return model
    raise ValueError(f"model type {kind!r} is unknown; use one of {sorted(BUILDERS)} or 'package.module:function'")


def spec_of(model: nn.Module) -> dict[str, Any] | None:
    """The spec a model was built from, or None for a hand-made module."""
    spec = getattr(model, "spec", None)
    return dict(spec) if isinstance(spec, Mapping) else None
