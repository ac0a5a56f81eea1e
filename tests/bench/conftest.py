import numpy as np
import pytest
import torch

from edge_cl.bench.datasets import ImageData
from edge_cl.bench.streams import PrequentialStream, rotated_mnist


@pytest.fixture(scope="session")
def tiny_images():
    """A learnable stand-in for MNIST (8x8, 10 classes): each class lights its own block of pixels."""
    rng = np.random.default_rng(0)

    def make(n):
        y = rng.integers(0, 10, n)
        x = rng.integers(0, 40, (n, 64))
        for i, c in enumerate(y):
            x[i, c * 6: c * 6 + 6] = 255
        return x.astype(np.uint8), y.astype(np.int64)

    trx, tr_y = make(600)
    tex, te_y = make(500)
    return ImageData(trx, tr_y, tex, te_y, (8, 8))


@pytest.fixture
def tiny_task_stream(tiny_images):
    return rotated_mnist(tiny_images, num_tasks=3, scale=0.5, seed=0)


@pytest.fixture
def tiny_prequential():
    rng = np.random.default_rng(1)
    x = rng.random((400, 4)).astype(np.float32)
    y = (x[:, 0] > 0.5).astype(np.int64)
    y[200:] = 1 - y[200:]  # abrupt concept drift in the middle
    return PrequentialStream("toy", x, y, 2, {"samples": 400})


@pytest.fixture
def one_thread():
    """Benchmarks pin torch to one thread; restore the count afterwards so other tests are unaffected."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)
