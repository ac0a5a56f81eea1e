import numpy as np
import pytest

from edge_cl.bench import metrics

# R[i][j]: accuracy on task j after learning tasks 0..i (hand-made, 3 tasks).
R = [[0.9, 0.2, 0.1],
     [0.6, 0.8, 0.3],
     [0.5, 0.7, 0.9]]
B = [0.1, 0.1, 0.1]


def test_acc_is_mean_of_last_row():
    assert metrics.acc(R) == pytest.approx((0.5 + 0.7 + 0.9) / 3)


def test_bwt_by_hand():
    # (0.5 - 0.9) + (0.7 - 0.8) over 2 tasks
    assert metrics.bwt(R) == pytest.approx((-0.4 - 0.1) / 2)


def test_fwt_by_hand():
    # R[0][1] - b1 = 0.1, R[1][2] - b2 = 0.2
    assert metrics.fwt(R, B) == pytest.approx((0.1 + 0.2) / 2)


def test_forgetting_uses_best_earlier_accuracy():
    # task 0: max(0.9, 0.6) - 0.5 = 0.4; task 1: max(0.2, 0.8) - 0.7 = 0.1
    assert metrics.forgetting(R) == pytest.approx(0.25)


def test_forgetting_differs_from_minus_bwt_when_peak_is_not_diagonal():
    r = [[0.5, 0.0], [0.9, 0.6]]
    r3 = [[0.5, 0.0, 0.0], [0.9, 0.6, 0.0], [0.4, 0.6, 0.7]]
    assert metrics.forgetting(r) == pytest.approx(0.5 - 0.9)  # improved since: negative forgetting
    assert metrics.forgetting(r3) == pytest.approx(((0.9 - 0.4) + 0.0) / 2)
    assert metrics.bwt(r3) == pytest.approx(((0.4 - 0.5) + (0.6 - 0.6)) / 2)


def test_single_task_has_no_transfer():
    assert metrics.bwt([[0.7]]) is None
    assert metrics.fwt([[0.7]], [0.1]) is None
    assert metrics.forgetting([[0.7]]) is None
    assert metrics.acc([[0.7]]) == pytest.approx(0.7)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="square"):
        metrics.acc([[0.1, 0.2]])
    with pytest.raises(ValueError, match="one entry per task"):
        metrics.fwt(R, [0.1])


def test_prequential_and_windows():
    c = np.array([1, 0, 1, 1, 0], dtype=bool)
    assert metrics.prequential_accuracy(c) == pytest.approx(0.6)
    assert metrics.prequential_accuracy([]) is None
    np.testing.assert_allclose(metrics.windowed_accuracy(c, 2), [0.5, 1.0, 0.0])
    with pytest.raises(ValueError, match="window"):
        metrics.windowed_accuracy(c, 0)


def test_latency_summary_in_ms():
    s = metrics.latency_summary(np.arange(1, 101) / 1000.0)
    assert s["latency_ms_p50"] == pytest.approx(50.5)
    assert s["latency_ms_p99"] == pytest.approx(99.01)
    assert metrics.latency_summary([])["latency_ms_p50"] is None


def test_mean_std_ignores_none():
    assert metrics.mean_std([0.5, None, 0.7]) == (pytest.approx(0.6), pytest.approx(0.1))
    assert metrics.mean_std([None]) == (None, None)
