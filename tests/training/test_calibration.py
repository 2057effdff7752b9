import numpy as np
import pytest
from scipy.special import expit
from sklearn.metrics import brier_score_loss

from training.calibration import Calibration, expected_calibration_error


def overconfident(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Margins three times too large for the outcomes they predict."""
    rng = np.random.default_rng(seed)
    true_margin = rng.normal(size=rows)
    outcome = (rng.random(rows) < expit(true_margin)).astype(int)
    return 3.0 * true_margin + 0.5, outcome


def test_platt_scaling_fitted_on_one_window_calibrates_another():
    margin, outcome = overconfident(20_000, 1)
    calibration = Calibration.fit(margin, outcome)
    assert calibration.slope == pytest.approx(1 / 3, rel=0.1)
    test_margin, test_outcome = overconfident(20_000, 2)
    before, after = expit(test_margin), calibration.probability(test_margin)
    assert expected_calibration_error(test_outcome, after) < 0.02
    assert expected_calibration_error(test_outcome, before) > 0.1
    assert brier_score_loss(test_outcome, after) < brier_score_loss(test_outcome, before)
    # Increasing: the ranking, and so ROC-AUC, is the same before and after.
    assert (np.argsort(before, kind="stable") == np.argsort(after, kind="stable")).all()


def test_one_outcome_or_a_reversed_margin_leaves_the_margin_as_it_is():
    margin = np.linspace(-2, 2, 100)
    assert Calibration.fit(margin, np.ones(100)).is_identity
    assert Calibration.fit(margin, (margin < 0).astype(int)).is_identity


def test_a_margin_already_calibrated_is_left_as_it_is():
    rng = np.random.default_rng(3)
    margin = rng.normal(size=20_000)
    outcome = (rng.random(20_000) < expit(margin)).astype(int)
    assert Calibration.fit(margin, outcome).is_identity


def test_calibration_error_of_a_perfect_forecast_is_zero():
    probability = np.repeat([0.1, 0.5, 0.9], 10)
    outcome = np.concatenate([np.eye(10)[0], np.ones(5), np.zeros(5), np.ones(9), [0]])
    assert expected_calibration_error(outcome, probability) == pytest.approx(0.0)
    assert expected_calibration_error(outcome, 1 - probability) == pytest.approx(0.8 * 2 / 3)
