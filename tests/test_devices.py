import pytest
import torch

from edge_cl.devices import resolve_device


def test_auto_and_explicit_cpu():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised on a machine without CUDA")
def test_cuda_without_a_gpu_is_a_clear_error():
    with pytest.raises(ValueError, match="torch.cuda.is_available\\(\\) is False"):
        resolve_device("cuda")


@pytest.mark.parametrize("bad", ["gpu0", "mps"])
def test_unknown_devices(bad):
    with pytest.raises(ValueError, match="device"):
        resolve_device(bad)
