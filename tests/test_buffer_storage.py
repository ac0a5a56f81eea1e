import numpy as np
import pytest
import torch

from edge_cl.buffer_storage import StorageCodec


@pytest.mark.parametrize("kind,bytes_", [("float32", 4), ("float16", 2), ("uint8", 1)])
def test_element_bytes(kind, bytes_):
    assert StorageCodec(kind, 0.0, 1.0).element_bytes == bytes_


def test_uint8_roundtrip_error_is_half_a_step_and_clamps():
    codec = StorageCodec("uint8", -2.0, 2.0)
    x = torch.linspace(-2, 2, 1001)
    err = (codec.decode(codec.encode(x)) - x).abs().max()
    assert err <= 4.0 / 255 / 2 + 1e-6
    assert codec.decode(codec.encode(torch.tensor([5.0, -9.0]))).tolist() == [2.0, -2.0]


def test_float16_roundtrip_is_close():
    x = torch.randn(1000)
    torch.testing.assert_close(StorageCodec("float16").decode(StorageCodec("float16").encode(x)), x, atol=2e-3, rtol=1e-3)


def test_bad_codecs():
    with pytest.raises(ValueError, match="storage='int4'"):
        StorageCodec("int4")
    with pytest.raises(ValueError, match="lo < hi"):
        StorageCodec("uint8", 1.0, 1.0)


def test_lossless_uint8_range_recognises_8bit_data_only():
    from edge_cl.buffer_storage import lossless_uint8_range

    rng = np.random.default_rng(0)
    levels = rng.integers(0, 256, (4, 100))
    assert lossless_uint8_range(torch.as_tensor(levels / 255, dtype=torch.float32)) == (0.0, 1.0)
    assert lossless_uint8_range(torch.as_tensor(levels, dtype=torch.float32)) == (0.0, 255.0)
    noisy = torch.as_tensor(levels / 255 + 1e-3, dtype=torch.float32)
    assert lossless_uint8_range(noisy) is None
    assert lossless_uint8_range(torch.as_tensor(rng.random((4, 100)), dtype=torch.float32)) is None
    assert lossless_uint8_range(torch.as_tensor(levels[:2, :100] / 255, dtype=torch.float32)) is None  # < 256 values
    assert lossless_uint8_range(torch.zeros(4, 100)) is None  # one level decides nothing
    assert lossless_uint8_range(torch.as_tensor(levels - 1.0, dtype=torch.float32)) is None  # negative
    assert lossless_uint8_range(torch.as_tensor(levels * 2.0, dtype=torch.float32)) is None  # beyond 255
    with_nan = torch.as_tensor(levels / 255, dtype=torch.float32)
    with_nan[0, 0] = float("nan")
    assert lossless_uint8_range(with_nan) is None
