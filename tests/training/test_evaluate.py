import numpy as np
import pytest

from training.objectives import binary_metrics, lift_at


def test_lift_of_a_perfect_ranking_is_one_over_the_base_rate():
    y = np.array([1] * 10 + [0] * 90)
    assert lift_at(y, -np.arange(100.0), 0.1) == pytest.approx(10.0)
    assert lift_at(y, np.arange(100.0), 0.1) == pytest.approx(0.0)


def test_brier_only_for_probabilities():
    y = np.array([0, 1, 0, 1])
    assert "brier" in binary_metrics(y, np.array([0.1, 0.9, 0.2, 0.8]))
    metrics = binary_metrics(y, np.array([1.0, 30.0, 2.0, 40.0]))
    assert "brier" not in metrics and metrics["roc_auc"] == 1.0
