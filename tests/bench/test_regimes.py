import numpy as np
import pytest

from edge_cl.bench.regimes import regime_report


def test_return_gap_compares_first_samples_with_end_of_previous_visit():
    # A: ends at 100% (last 2), B: 0%, A again starts at 50% on its first 2.
    correct = [0, 0, 1, 1] + [0, 0, 0, 0] + [1, 0, 1, 1]
    rep = regime_report(np.array(correct, dtype=bool), [0, 4, 8, 12], ["A", "B", "A"], head=2)
    a2 = rep["visits"][2]
    assert a2["previous_end_acc"] == 1.0 and a2["first_acc"] == 0.5 and a2["return_gap"] == -0.5
    assert "return_gap" not in rep["visits"][1]
    assert rep["new_regime_acc"] == 0.0  # B is the only new regime after the first
    assert rep["return_gap"] == -0.5


def test_bad_bounds_and_head_are_refused():
    with pytest.raises(ValueError, match="bounds"):
        regime_report([True] * 4, [0, 4], ["A", "B"])
    with pytest.raises(ValueError, match="head"):
        regime_report([True] * 4, [0, 4], ["A"], head=0)
