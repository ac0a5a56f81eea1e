"""Helper process for the kill test: publishes snapshots of a tiny, changing model until killed.

Usage: python _publish_loop.py DIRECTORY FIRST_STEP. Prints "ready" after its first publish.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from edge_cl import models
from edge_cl.export import publish_snapshot


def main() -> None:
    torch.set_num_threads(1)
    directory, step = Path(sys.argv[1]), int(sys.argv[2])
    generator = torch.Generator().manual_seed(step)
    model = models.mlp(input_dim=16, hidden=[32], num_classes=3).eval()
    inputs = torch.randn(8, 16, generator=generator)
    while True:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.01 * torch.randn(p.shape, generator=generator))
        result = publish_snapshot(model, directory, step=step, sample_inputs=inputs, keep=3)
        if not result.published:
            raise SystemExit(f"unexpected rejection: {result.reason}")
        if step == int(sys.argv[2]):
            print("ready", flush=True)
        step += 1


if __name__ == "__main__":
    main()
