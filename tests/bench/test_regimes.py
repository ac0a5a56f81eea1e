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


def test_regimes_table_means_over_seeds_and_skips_methods_without_regimes():
    from edge_cl.bench.regimes import regimes_table

    def run(first):
        return {"regimes": regime_report([1, 1, 0, 0, first, first], [0, 2, 4, 6], ["A", "B", "A"], head=2)}

    table = regimes_table({"m": {"runs": [run(True), run(False)]}, "other": {"prequential_acc": 0.5}})
    lines = table.splitlines()
    assert len(lines) == 3 and lines[2].startswith("| m |")
    # first 2 of the return: 100% and 0% -> 50 ± 50; gap vs the previous end (100%): 0 and -100 -> -50 ± 50.
    assert "50.00 ± 50.00" in lines[2] and "-50.00 ± 50.00" in lines[2]
    assert regimes_table({"other": {"prequential_acc": 0.5}}) == ""
