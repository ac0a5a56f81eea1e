"""Nearest-class-mean prediction (iCaRL's classifier, Rebuffi et al. 2017) over the replay buffer.

The network's penultimate features are L2-normalised; each class's mean over the buffered samples of that
class is normalised again, and a sample takes the class whose mean is nearest. New classes cost one mean,
and the linear head's bias towards recent classes (class-incremental streams) does not enter.

:class:`NearestClassMean` is a plain module (features + the means as buffers), so the ONNX snapshot of it
computes the same predictions: its ``logits`` are minus the squared distances (classes without buffered
samples get -1e30), its probabilities their softmax.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_ABSENT = -1e30
_CHUNK = 512


class _SpecFeatures(nn.Module):
    """A spec model's layers up to (not including) its last Linear, sharing its parameters."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        body = model.body
        if not isinstance(body, nn.Sequential):
            raise TypeError("a spec model's body must be nn.Sequential")
        self.layers = nn.Sequential(*list(body)[:-1])
        self.input_shape = tuple(int(s) for s in getattr(model, "input_shape", ()))

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x.reshape((x.shape[0], *self.input_shape))).flatten(1)


def feature_extractor(model: nn.Module) -> nn.Module:
    """The module computing ``model``'s penultimate features: ``model.features`` if it has one, else a
    spec model's body without its last Linear layer."""
    from edge_cl.standardizer import Standardized

    if isinstance(model, Standardized):  # the learner's input standardiser comes first
        return nn.Sequential(model.standardizer, feature_extractor(model.model))
    feats = getattr(model, "features", None)
    if isinstance(feats, nn.Module):
        return feats
    body = getattr(model, "body", None)
    if isinstance(body, nn.Sequential) and len(body) > 1 and isinstance(body[-1], nn.Linear):
        return _SpecFeatures(model)
    raise ValueError("predict='ncm' needs the model's penultimate features: give the model a `features` "
                     "submodule, or use a spec model (mlp, cnn1d, cnn2d) whose last layer is nn.Linear")


class NearestClassMean(nn.Module):
    """``features`` followed by nearest normalised class mean; ``forward`` returns ``-distance^2`` logits."""

    means: Tensor
    offset: Tensor

    def __init__(self, features: nn.Module, means: Tensor, offset: Tensor, input_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.features = features
        self.register_buffer("means", means)
        self.register_buffer("offset", offset)
        self.input_shape = tuple(input_shape)
        self.input_dim = int(torch.tensor(self.input_shape).prod())

    def forward(self, x: Tensor) -> Tensor:
        f = F.normalize(self.features(x).flatten(1), dim=1)
        d = (f.unsqueeze(1) - self.means.unsqueeze(0)).pow(2).sum(-1)
        return self.offset - d


class NCMPredictor:
    """The class means a learner keeps for ``predict='ncm'`` (allocated once, counted in the budget) and
    their refresh from the buffer whenever the model or the buffer changed."""

    def __init__(self, model: nn.Module, num_classes: int, input_dim: int, device: torch.device) -> None:
        self.dim = self.feature_dim(model, input_dim, device)
        self.means = torch.zeros((num_classes, self.dim), device=device)
        self.offset = torch.zeros((num_classes,), device=device)
        self.version: Any = None

    @staticmethod
    def feature_dim(model: nn.Module, input_dim: int, device: torch.device) -> int:
        with torch.no_grad():
            return int(feature_extractor(model)(torch.zeros((1, input_dim), device=device)).flatten(1).shape[1])

    @staticmethod
    def bytes_for(model: nn.Module, num_classes: int, input_dim: int, device: torch.device) -> int:
        """Bytes of the means and the absent-class offsets for this model."""
        return 4 * num_classes * (NCMPredictor.feature_dim(model, input_dim, device) + 1)

    def tensors(self) -> list[Tensor]:
        return [self.means, self.offset]

    @torch.no_grad()
    def refresh(self, net: nn.Module, x_stored: Tensor, y: Tensor, decode: Any, version: Any) -> None:
        """Recompute the means from the buffered ``(x, y)`` with ``net``'s features, unless ``version`` is
        the one they were computed for."""
        if version == self.version:
            return
        feats = feature_extractor(net)
        self.means.zero_()
        counts = torch.zeros_like(self.offset)
        for s in range(0, int(y.shape[0]), _CHUNK):
            f = F.normalize(feats(decode(x_stored[s:s + _CHUNK])).flatten(1), dim=1)
            self.means.index_add_(0, y[s:s + _CHUNK], f)
            counts.index_add_(0, y[s:s + _CHUNK], torch.ones_like(f[:, 0]))
        present = counts > 0
        self.means.copy_(F.normalize(self.means / counts.clamp(min=1).unsqueeze(1), dim=1))
        self.offset.copy_(torch.where(present, 0.0, _ABSENT))
        self.version = version

    def module(self, net: nn.Module, input_shape: tuple[int, ...]) -> NearestClassMean:
        """The NCM classifier over ``net``'s features (sharing its weights and these means)."""
        return NearestClassMean(feature_extractor(net), self.means, self.offset, input_shape)
