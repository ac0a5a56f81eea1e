"""Whether the benchmark data tests need are present (../shared/data, or EDGE_CL_DATA)."""

from __future__ import annotations

import os


def mnist_present() -> bool:
    """True when the MNIST files are found; CI sets EDGE_CL_REQUIRE_DATA=1, so that missing data fails the tests
    that need it instead of skipping them."""
    from edge_cl.bench.datasets import find_data_dir

    if os.environ.get("EDGE_CL_REQUIRE_DATA") == "1":
        return True
    try:
        return (find_data_dir() / "mnist" / "train-images-idx3-ubyte.gz").is_file()
    except FileNotFoundError:
        return False
