"""The channel's body format: named float32 arrays in an ``.npz`` (numpy's own container, read without pickle,
so a body can carry numbers only, never code or objects)."""

from __future__ import annotations

import io
import zipfile

import numpy as np

CONTENT_TYPE = "application/x-npz"
SAMPLES_HEADER = "X-Edge-CL-Samples-Since-Merge"
# Sent with a 204 (no weights): the daemon's fleet.min_new_samples, which the samples since the merge are below.
MIN_SAMPLES_HEADER = "X-Edge-CL-Min-New-Samples"


def encode(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **{name: np.ascontiguousarray(a, dtype=np.float32) for name, a in arrays.items()})
    return buf.getvalue()


def decode(body: bytes) -> dict[str, np.ndarray]:
    """The arrays of an :func:`encode` body, in its order; ValueError says what is wrong with a bad one."""
    try:
        with np.load(io.BytesIO(body), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise ValueError(f"the body is not an .npz of numeric arrays ({exc})") from None
    for name, a in arrays.items():
        if a.dtype.kind not in "fiu":
            raise ValueError(f"array {name!r} has dtype {a.dtype}; only numbers are accepted")
    return arrays
