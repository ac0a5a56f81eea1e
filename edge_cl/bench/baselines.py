"""Reference points that do not use OnlineLearner: a bare hand-written PyTorch loop (plain SGD or
experience replay with a reservoir) that measures edge_cl's overhead, the offline ``joint`` upper bound,
and the ``no-change`` classifier (predict the last label seen).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edge_cl.buffer import label_dtype


class BareLoop:
    """The plainest online loop: one SGD step on the new micro-batch plus (for ER) a reservoir replay batch.

    Same model, same optimizer and same batches as the learner; nothing else (no budget accounting, no
    input checks, no importance), so its samples/s is the ceiling edge_cl is compared with.
    """

    def __init__(self, model: nn.Module, *, lr: float, replay_batch: int = 0, buffer_capacity: int = 0,
                 device: torch.device | str = "cpu", seed: int = 0, num_classes: int | None = None) -> None:
        if replay_batch < 0 or buffer_capacity < 0:
            raise ValueError(f"replay_batch={replay_batch} and buffer_capacity={buffer_capacity} must be >= 0")
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=lr)
        self.replay_batch = int(replay_batch) if buffer_capacity > 0 else 0
        self.capacity = int(buffer_capacity) if replay_batch > 0 else 0
        dim = int(model.input_dim)  # type: ignore[arg-type]
        self.buf_x = torch.zeros((self.capacity, dim), device=self.device)
        # Labels as compact as the learner's (edge_cl.buffer.label_dtype), so the same budget holds the same buffer.
        self.buf_y = torch.zeros((self.capacity,), dtype=label_dtype(num_classes), device=self.device)
        self.size = 0
        self.seen = 0
        self.rng = np.random.default_rng(seed)
        self.gen = torch.Generator(device=self.device).manual_seed(seed)

    def learn(self, x: Tensor, y: Tensor) -> int:
        """One step; returns how many of ``x`` were predicted right before the update."""
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        b = x.shape[0]
        if self.replay_batch and self.size:
            idx = torch.randint(self.size, (min(self.replay_batch, self.size),), generator=self.gen,
                                device=self.device)
            xin, yin = torch.cat([x, self.buf_x[idx]]), torch.cat([y, self.buf_y[idx].long()])
        else:
            xin, yin = x, y
        logits = self.model(xin)
        loss = F.cross_entropy(logits, yin)
        # Keep gradient tensors alive between steps: freeing and re-allocating them each step is
        # many times slower on CPU (large blocks go back to the OS), and the learner keeps them too.
        self.opt.zero_grad(set_to_none=False)
        loss.backward()
        self.opt.step()
        correct = int((logits[:b].detach().argmax(1) == y).sum())
        if self.capacity:
            self._reservoir(x, y)
        return correct

    def _reservoir(self, x: Tensor, y: Tensor) -> None:
        for i in range(x.shape[0]):
            self.seen += 1
            if self.size < self.capacity:
                slot = self.size
                self.size += 1
            else:
                slot = int(self.rng.integers(self.seen))
                if slot >= self.capacity:
                    continue
            self.buf_x[slot] = x[i]
            self.buf_y[slot] = y[i]

    @torch.inference_mode()
    def predict(self, x: Tensor) -> np.ndarray:
        """Class ids for ``x``."""
        return self.model(x.to(self.device)).argmax(1).cpu().numpy()

    def state_bytes(self) -> int:
        """Bytes of parameters, gradients and buffer (SGD without momentum keeps no state)."""
        params = sum(p.nbytes for p in self.model.parameters())
        return 2 * params + self.buf_x.nbytes + self.buf_y.nbytes


def train_joint(model: nn.Module, xs: Sequence[np.ndarray], ys: Sequence[np.ndarray], *, epochs: int, batch: int,
                lr: float, device: torch.device | str = "cpu", seed: int = 0, pixel_scale: float = 255.0) -> nn.Module:
    """Offline multi-epoch SGD on all tasks at once (the upper bound); ``xs`` may be uint8 to save memory."""
    if epochs < 1 or batch < 1:
        raise ValueError(f"joint needs epochs >= 1 and batch >= 1, got epochs={epochs}, batch={batch}")
    dev = torch.device(device)
    model = model.to(dev)
    x_all = torch.from_numpy(np.concatenate(list(xs)))
    y_all = torch.from_numpy(np.concatenate(list(ys)))
    scale = pixel_scale if x_all.dtype == torch.uint8 else 1.0
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(y_all), generator=gen)
        for start in range(0, len(order), batch):
            idx = order[start:start + batch]
            xb = x_all[idx].to(dev).float() / scale
            loss = F.cross_entropy(model(xb), y_all[idx].to(dev))
            opt.zero_grad(set_to_none=False)
            loss.backward()
            opt.step()
    return model


def no_change_correct(y: np.ndarray | Sequence[int]) -> np.ndarray:
    """Per-sample correctness of predicting the previous label (the first sample counts as wrong)."""
    labels = np.asarray(y)
    out = np.zeros(len(labels), dtype=bool)
    if len(labels) > 1:
        out[1:] = labels[1:] == labels[:-1]
    return out
