"""Small models of the kinds users bring (issue #28, the model axis), for suites and benchmarks that run every
method on every model. Defined outside ``edge_cl`` on purpose: these are *user* models, so nothing in the
package may special-case them.

Every builder takes ``(input_dim, num_classes)`` and returns an ``nn.Module`` with an ``input_dim`` attribute
that maps flat ``[B, input_dim]`` float32 rows to logits ``[B, num_classes]``; window models read the row as
``CHANNELS`` sensor channels over ``input_dim // CHANNELS`` time steps and reshape it themselves.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from edge_cl import models

CHANNELS = 2  # sensor channels of the window models; input_dim must be a multiple of it


def _window(input_dim: int) -> int:
    if input_dim % CHANNELS:
        raise ValueError(f"window models read {CHANNELS} channels: input_dim {input_dim} is not a multiple of it")
    return input_dim // CHANNELS


def mlp(input_dim: int, num_classes: int) -> nn.Module:
    """DER's MLP shape (Linear / ReLU chain), small."""
    return models.mlp(input_dim, [16], num_classes)


def cnn1d(input_dim: int, num_classes: int) -> nn.Module:
    """The package's declarative 1-D CNN over a ``[channels, window]`` sensor window."""
    return models.cnn1d(CHANNELS, _window(input_dim), num_classes, conv=[8], kernel_size=3, hidden=16)


class ConvBN(nn.Module):
    """Conv1d + BatchNorm1d over the window, then Linear + BatchNorm1d on flat features: both BN layouts
    ([B, C, L] and [B, C]), whose running statistics are buffers updated in place by every train-mode forward."""

    def __init__(self, input_dim: int, num_classes: int) -> None:
        super().__init__()
        self.input_dim, self.length = input_dim, _window(input_dim)
        self.conv = nn.Conv1d(CHANNELS, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm1d(8)
        self.fc = nn.Linear(8 * self.length, 16)
        self.bn2 = nn.BatchNorm1d(16)
        self.head = nn.Linear(16, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.bn1(self.conv(x.reshape(x.shape[0], CHANNELS, self.length))))
        return self.head(torch.relu(self.bn2(self.fc(h.flatten(1)))))


class Recurrent(nn.Module):
    """A GRU or LSTM over the window's time steps (batch_first); the last hidden state feeds a Linear head."""

    def __init__(self, input_dim: int, num_classes: int, cell: type[nn.RNNBase]) -> None:
        super().__init__()
        self.input_dim, self.length = input_dim, _window(input_dim)
        self.rnn = cell(CHANNELS, 16, batch_first=True)
        self.head = nn.Linear(16, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        seq = x.reshape(x.shape[0], CHANNELS, self.length).transpose(1, 2)  # [B, time, channels]
        out, _ = self.rnn(seq)
        return self.head(out[:, -1])


def gru(input_dim: int, num_classes: int) -> nn.Module:
    return Recurrent(input_dim, num_classes, nn.GRU)


def lstm(input_dim: int, num_classes: int) -> nn.Module:
    return Recurrent(input_dim, num_classes, nn.LSTM)


class NormDropout(nn.Module):
    """Linear -> LayerNorm -> GELU -> Dropout -> Linear: a normalisation without buffers and a random layer."""

    def __init__(self, input_dim: int, num_classes: int) -> None:
        super().__init__()
        self.input_dim = input_dim
        self.net = nn.Sequential(nn.Linear(input_dim, 16), nn.LayerNorm(16), nn.GELU(), nn.Dropout(0.1),
                                 nn.Linear(16, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class TwoBranch(nn.Module):
    """A hand-written forward (not an nn.Sequential): two branches added, then a head; one Linear is used on
    the path only through the sum, so no layer-by-layer shortcut sees the whole computation."""

    def __init__(self, input_dim: int, num_classes: int) -> None:
        super().__init__()
        self.input_dim = input_dim
        self.a = nn.Linear(input_dim, 16)
        self.b = nn.Linear(input_dim, 16)
        self.head = nn.Linear(16, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(torch.relu(self.a(x)) + torch.tanh(self.b(x)))


ZOO: dict[str, Callable[[int, int], nn.Module]] = {
    "mlp": mlp,
    "cnn1d": cnn1d,
    "conv_bn": ConvBN,
    "gru": gru,
    "lstm": lstm,
    "layernorm_dropout": NormDropout,
    "two_branch": TwoBranch,
}


def build(name: str, input_dim: int, num_classes: int, seed: int = 0) -> nn.Module:
    """The zoo's model ``name`` with weights drawn from ``seed`` (the global RNG is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ZOO[name](input_dim, num_classes)
