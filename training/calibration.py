"""Probabilities that mean what they say: Platt scaling of a binary model's margins.

The booster is tuned and early-stopped on the validation window, then refitted on
training plus validation rows. Its probabilities are calibrated on the validation window
by a logistic curve over the raw margin, fitted on the margins of the tuned model trained
without those rows. The curve is increasing, so rankings, ROC-AUC and the reason codes
(contributions to the margin) are unchanged; only the probabilities move.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict
from scipy.special import expit
from sklearn.linear_model import LogisticRegression


class Calibration(BaseModel):
    """``probability = expit(slope * margin + intercept)``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    slope: float
    intercept: float

    @classmethod
    def fit(cls, margin: np.ndarray, y_true: np.ndarray) -> Calibration:
        """The logistic curve that best maps ``margin`` to the outcomes ``y_true``.

        Falls back to the identity when both outcomes are not present, or when the fit
        would reverse the ranking (a margin unrelated to the outcome).
        """
        y_true = np.asarray(y_true)
        if len(np.unique(y_true)) < 2:
            return cls(slope=1.0, intercept=0.0)
        model = LogisticRegression(C=1e6, max_iter=1000)
        model.fit(np.asarray(margin, dtype=float).reshape(-1, 1), y_true)
        slope = float(model.coef_[0, 0])
        if slope <= 0:
            return cls(slope=1.0, intercept=0.0)
        return cls(slope=slope, intercept=float(model.intercept_[0]))

    def probability(self, margin: np.ndarray) -> np.ndarray:
        return expit(self.slope * np.asarray(margin, dtype=float) + self.intercept)


def expected_calibration_error(
    y_true: np.ndarray, probability: np.ndarray, bins: int = 10
) -> float:
    """Mean gap between predicted probability and observed rate over ``bins`` equal-width
    probability bins, weighted by the rows in each."""
    y_true = np.asarray(y_true, dtype=float)
    probability = np.asarray(probability, dtype=float)
    which = np.minimum((probability * bins).astype(int), bins - 1)
    rows = np.bincount(which, minlength=bins)
    gap = np.abs(
        np.bincount(which, probability, minlength=bins) - np.bincount(which, y_true, minlength=bins)
    )
    return float(gap.sum() / rows.sum()) if rows.sum() else float("nan")
