"""When the learn step's own forward on its new rows is the prediction :meth:`OnlineLearner.predict` would give.

Test-then-train predicts each labelled row and then learns it. When the step's forward (train mode, the new
rows batched with replayed ones, before the update) computes what the inference forward (eval mode, the new rows
alone) computes, one forward serves both, and a labelled row costs one forward instead of two. It does not when:

- a module behaves differently in train mode: Dropout (random in train mode), BatchNorm and InstanceNorm with
  running statistics (batch statistics in train mode, and those depend on the replayed rows), RReLU, an RNN
  with dropout between layers;
- the learner updates the input standardiser on the new rows before the step's forward;
- predictions come from another network (a method's predictor, e.g. CLS-ER's stable copy, or predict='ncm');
- the first batch still decides the standardiser or the buffer storage;
- the fixed-shape step runs (it keeps its logits on the device, inside its captured graph).

Anything else (Linear, Conv, LayerNorm, activations, pooling, GRU/LSTM without dropout, a user's own module made of
those) computes the same function in both modes. The two forwards see different row counts, so their values may
differ in the last bits (BLAS blocking); the classes and probabilities agree to float32 rounding.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

if TYPE_CHECKING:
    from edge_cl.learner import OnlineLearner

_NORMS = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)


def mode_dependent_module(model: nn.Module) -> str | None:
    """The first module of ``model`` whose output depends on train / eval mode, described (None: there is none)."""
    for name, module in model.named_modules():
        where = f"{type(module).__name__} ({name or 'the model'})"
        if isinstance(module, nn.modules.dropout._DropoutNd) and module.p > 0:
            return f"{where} drops units in train mode"
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            return f"{where} normalises by the step batch's statistics in train mode"
        if isinstance(module, _NORMS) and module.track_running_stats:
            return f"{where} normalises by the step batch's statistics in train mode"
        if isinstance(module, nn.RReLU):
            return f"{where} draws random slopes in train mode"
        if isinstance(module, nn.RNNBase) and module.dropout > 0 and module.num_layers > 1:
            return f"{where} drops units between layers in train mode"
    return None


def why_step_logits_differ(learner: OnlineLearner) -> str | None:
    """Why ``learner``'s next learn step's logits on its new rows would not be its prediction (None: they would)."""
    if learner.config.predict == "ncm":
        return "predict='ncm' predicts from the class means, not the logits"
    for m in learner.methods:
        if m.predictor() is not None:
            return f"method {m.name!r} predicts with a network of its own"
    if not learner.inputs_decided:
        return "the first batch learned still decides the input standardiser or the buffer storage"
    if learner.standardizer is not None:
        return "the input standardiser is updated on the new rows before the step's forward"
    if learner.step_path != "eager":
        return "the fixed-shape step keeps its logits on the device"
    return mode_dependent_module(learner.model)
