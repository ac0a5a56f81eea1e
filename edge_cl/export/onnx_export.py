"""Torch -> ONNX: a flat ``[batch, D]`` float32 input named ``input``, outputs ``logits`` and
``probabilities``, and edge_cl metadata stored in the model's ``metadata_props``; a network may add inputs with
defaults, outputs and metadata of its own (:mod:`edge_cl.export.graph`)."""

from __future__ import annotations

import copy
import io
import json
import math
import warnings
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import torch
from torch import Tensor, nn

from edge_cl.export.graph import GraphExtras, extras_of

INPUT_NAME = "input"
OUTPUT_NAMES = ("logits", "probabilities")
BATCH_AXIS = "batch"
# Metadata keys written into every snapshot; values are strings (ONNX only stores strings).
META_PREFIX = "edge_cl."


class Exporter(str, Enum):
    """Which torch exporter produces the graph."""

    # TorchScript tracing: ~40 ms for the 784-100-100-10 MLP against ~1-3 s for dynamo, same parity
    # (see BENCHMARKS.md, section onnx-latency), so it is the default while torch still ships it.
    TORCHSCRIPT = "torchscript"
    DYNAMO = "dynamo"


class ExportError(RuntimeError):
    """The torch exporter failed on this model."""


class _WithProbabilities(nn.Module):
    """Adds a softmax output so inference processes get probabilities without their own post-processing."""

    def __init__(self, model: nn.Module, extras: GraphExtras | None = None):
        super().__init__()
        self.model = model
        self.extras = extras

    def forward(self, x: Tensor, *inputs: Tensor) -> tuple[Tensor, ...]:
        if self.extras is None:
            logits = self.model(x)
            return logits, torch.softmax(logits, dim=-1)
        logits, *more = self.model.forward_graph(x, *inputs)  # type: ignore[operator]
        return (logits, torch.softmax(logits, dim=-1), *more)


def model_input_shape(model: nn.Module, input_shape: tuple[int, ...] | None = None) -> tuple[int, ...]:
    """The per-sample input shape: ``input_shape`` if given, else ``model.input_shape`` (spec models), else
    ``(model.input_dim,)``; the exported graph takes flat rows of ``prod(shape)`` features whichever it is."""
    dim = getattr(model, "input_dim", None)
    shape = input_shape if input_shape is not None else getattr(model, "input_shape", None)
    if shape is None and isinstance(dim, int) and not isinstance(dim, bool):
        shape = (dim,)
    if shape is None:
        raise ValueError("input_shape is unknown: the model has neither an `input_shape` nor an `input_dim` "
                         "attribute; pass input_shape=(D,) (or e.g. (3, 20)) for a model that takes flat [B, D] "
                         "rows (edge-cl export --input-shape D; the daemon takes it from its [input] table)")
    try:
        shape = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"input_shape={shape!r} must be a tuple of positive ints, e.g. (6,) or (3, 20)") from None
    if not shape or any(s <= 0 for s in shape):
        raise ValueError(f"input_shape={shape!r} must be a non-empty tuple of positive ints")
    if isinstance(dim, int) and not isinstance(dim, bool) and dim != math.prod(shape):
        raise ValueError(f"input_shape={shape} holds {math.prod(shape)} features but the model's input_dim is "
                         f"{dim}; give a shape whose product is {dim}")
    return shape


def export_onnx(model: nn.Module, *, step: int = 0, prequential_accuracy: float | None = None,
                input_shape: tuple[int, ...] | None = None, exporter: Exporter | str = Exporter.TORCHSCRIPT,
                opset: int | None = None, extra_metadata: dict[str, str] | None = None) -> bytes:
    """Serialized ONNX model of ``model`` (a CPU eval-mode copy is exported; ``model`` is not touched).

    The graph takes ``input`` float32 ``[batch, D]`` (D = prod(input_shape)) and returns ``logits`` and
    ``probabilities``, both ``[batch, num_classes]``.
    """
    import onnx

    from edge_cl import __version__

    exporter = Exporter(exporter)
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step={step!r} must be a non-negative int (the learner step of these weights)")
    shape = model_input_shape(model, input_shape)
    dim = math.prod(shape)
    # A private copy: tracing switches modes and the caller may keep training its model.
    private = copy.deepcopy(model).to("cpu").eval()
    extras = extras_of(private)
    wrapped = _WithProbabilities(private, extras).eval()
    example = torch.zeros(2, dim, dtype=torch.float32)
    defaults = tuple(i.default.detach().to("cpu") for i in extras.inputs) if extras is not None else ()
    try:
        with torch.no_grad():
            logits = wrapped(example, *defaults)[0]
    except Exception as exc:  # a model that cannot run cannot be exported
        raise ExportError(f"model forward on a [2, {dim}] float32 input failed: {type(exc).__name__}: {exc}") from exc
    if logits.dim() != 2 or logits.shape[0] != 2:
        raise ExportError(f"model returns shape {tuple(logits.shape)} for input [2, {dim}]; expected [2, num_classes]")
    num_classes = int(logits.shape[1])
    try:
        raw = _run_exporter(wrapped, (example, *defaults), exporter, opset, extras)
    except Exception as exc:  # any exporter failure means "no snapshot", with the reason
        raise ExportError(f"{exporter.value} export failed: {type(exc).__name__}: {exc}") from exc
    proto = onnx.load_from_string(raw)
    if extras is not None:
        _default_inputs(proto, extras)
    meta: dict[str, str] = {
        "version": __version__,
        "step": str(step),
        "input_shape": json.dumps(list(shape)),
        "input_dim": str(dim),
        "num_classes": str(num_classes),
        "created": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "prequential_accuracy": "" if prequential_accuracy is None else repr(float(prequential_accuracy)),
        "exporter": exporter.value,
        "torch": torch.__version__,
    }
    spec = getattr(model, "spec", None)
    if isinstance(spec, dict):
        meta["spec"] = json.dumps(spec, sort_keys=True, default=str)
    if hasattr(model, "standardizer"):
        meta["standardized"] = "true"  # the graph standardises its raw input itself
    if extras is not None:
        meta["graph_inputs"] = json.dumps({i.name: i.default.tolist() for i in extras.inputs})
        meta.update(extras.metadata)
    meta.update(extra_metadata or {})
    del proto.metadata_props[:]
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = META_PREFIX + key, str(value)
    proto.producer_name = "edge_cl"
    proto.producer_version = __version__
    return proto.SerializeToString()


def _run_exporter(wrapped: nn.Module, args: tuple[Tensor, ...], exporter: Exporter, opset: int | None,
                  extras: GraphExtras | None = None) -> bytes:
    more_in = [i.name for i in extras.inputs] if extras is not None else []
    more_out = list(extras.outputs) if extras is not None else []
    common: dict[str, Any] = {"input_names": [INPUT_NAME, *more_in], "output_names": [*OUTPUT_NAMES, *more_out]}
    if opset is not None:
        common["opset_version"] = opset
    if exporter is Exporter.TORCHSCRIPT:
        buffer = io.BytesIO()
        axes = {name: {0: BATCH_AXIS} for name in (INPUT_NAME, *OUTPUT_NAMES, *more_out)}
        with warnings.catch_warnings():
            # The deprecation notice is known; the exporter was chosen by measured speed and parity.
            warnings.simplefilter("ignore", DeprecationWarning)
            # The TorchScript exporter writes to file objects too (the annotation names paths only).
            torch.onnx.export(wrapped, args, buffer, dynamo=False,  # type: ignore[arg-type]
                              dynamic_axes=axes, **common)
        return buffer.getvalue()
    from edge_cl.extras import require

    require("onnxscript", "dynamo", "the dynamo ONNX exporter (exporter='dynamo')")
    batch = {0: torch.export.Dim(BATCH_AXIS)}
    model: Any = wrapped
    if more_in:
        # torch.onnx turns the tuple of the extra inputs' shapes into a list, which torch.export then refuses for
        # forward's *inputs: export the program first, with the shapes as given.
        model = torch.export.export(wrapped, args, dynamic_shapes={"x": batch, "inputs": tuple(None for _ in more_in)})
    program = torch.onnx.export(model, args, None, dynamo=True, verbose=False,
                                dynamic_shapes=None if more_in else {"x": batch}, **common)
    if program is None:
        raise ExportError("dynamo exporter returned no program")
    return bytes(program.model_proto.SerializeToString())


def _default_inputs(proto: Any, extras: GraphExtras) -> None:
    """Give each extra graph input its default as an initializer of the same name (ONNX IR >= 4): onnxruntime then
    runs the graph without it, and a caller that feeds it overrides the default."""
    from onnx import numpy_helper

    names = {i.name for i in proto.graph.input}
    missing = [i.name for i in extras.inputs if i.name not in names]
    if missing:
        raise ExportError(f"graph inputs {missing} are not in the exported graph (the exporter dropped them: "
                          "forward_graph does not use them)")
    kept = {i.name for i in extras.inputs}
    others = [t for t in proto.graph.initializer if t.name not in kept]
    del proto.graph.initializer[:]
    proto.graph.initializer.extend(others)
    for spec in extras.inputs:
        proto.graph.initializer.append(numpy_helper.from_array(spec.default.detach().cpu().numpy(), spec.name))
    proto.ir_version = max(int(proto.ir_version), 4)


def read_metadata(onnx_bytes: bytes) -> dict[str, str]:
    """The edge_cl metadata of a serialized snapshot, keys without the ``edge_cl.`` prefix."""
    import onnx

    proto = onnx.load_from_string(onnx_bytes)
    return {p.key[len(META_PREFIX):]: p.value for p in proto.metadata_props if p.key.startswith(META_PREFIX)}
