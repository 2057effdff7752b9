"""Probabilities that mean what they say: Platt scaling of a binary model's margins.

The booster is tuned and early-stopped on the validation window, then refitted on
training plus validation rows. Its probabilities are calibrated on the validation window
by a logistic curve over the raw margin, fitted on the margins of the tuned model trained
without those rows, when such a curve beats the booster's own probabilities there. The
curve is increasing, so rankings, ROC-AUC and the reason codes (contributions to the
margin) are unchanged; only the probabilities move.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict
from scipy.special import expit
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss


class Calibration(BaseModel):
    """``probability = expit(slope * margin + intercept)``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    slope: float
    intercept: float

    @classmethod
    def identity(cls) -> Calibration:
        return cls(slope=1.0, intercept=0.0)

    @classmethod
    def fit(cls, margin: np.ndarray, y_true: np.ndarray, seed: int = 0) -> Calibration:
        """The logistic curve that best maps ``margin`` to the outcomes ``y_true``, if it
        earns its place.

        A booster's own probabilities are often calibrated already; a curve fitted on
        one half of the rows is kept only if it lowers the log loss of the other half,
        both ways round. Otherwise, and when both outcomes are not present or the fit
        would reverse the ranking, the margin stays as it is (the identity).
        """
        margin = np.asarray(margin, dtype=float)
        y_true = np.asarray(y_true)
        if len(np.unique(y_true)) < 2:
            return cls.identity()
        half = np.random.default_rng(seed).random(len(margin)) < 0.5
        for fit_on in (half, ~half):
            curve = cls._logistic(margin[fit_on], y_true[fit_on])
            held = ~fit_on
            if curve is None or log_loss(
                y_true[held], curve.probability(margin[held]), labels=[0, 1]
            ) >= log_loss(y_true[held], expit(margin[held]), labels=[0, 1]):
                return cls.identity()
        return cls._logistic(margin, y_true) or cls.identity()

    @classmethod
    def _logistic(cls, margin: np.ndarray, y_true: np.ndarray) -> Calibration | None:
        """Platt's fit, or None when it reverses the ranking or lacks an outcome."""
        if len(np.unique(y_true)) < 2:
            return None
        model = LogisticRegression(C=1e6, max_iter=1000)
        model.fit(margin.reshape(-1, 1), y_true)
        slope = float(model.coef_[0, 0])
        if slope <= 0:
            return None
        return cls(slope=slope, intercept=float(model.intercept_[0]))

    @property
    def is_identity(self) -> bool:
        return self.slope == 1.0 and self.intercept == 0.0

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
