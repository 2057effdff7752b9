"""Scoring as plain functions: a loaded model plus feature rows in, actionable answers out.

The BentoML service only validates, fetches features and calls these; tests call them
directly without HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import pandas as pd

from training.model_input import model_matrix

# What to do at each churn risk tier, most urgent first.
CHURN_ACTIONS: dict[str, str] = {
    "high": "retention offer with personal outreach",
    "medium": "engagement campaign",
    "low": "no action",
}


@dataclass(frozen=True)
class LoadedModel:
    """A champion as serving holds it: the booster, where it came from, its tier cuts."""

    name: str
    version: str
    booster: lgb.Booster
    tier_thresholds: dict[str, float]  # tier -> lowest score in that tier, e.g. {"high": 0.8}
    feature_service: str

    @property
    def feature_names(self) -> list[str]:
        return list(self.booster.feature_name())


@dataclass(frozen=True)
class Reason:
    feature: str
    value: float | str | None
    contribution: float


@dataclass(frozen=True)
class Score:
    score: float
    tier: str
    action: str
    reasons: list[Reason]


def tier_of(score: float, thresholds: dict[str, float]) -> str:
    """The highest tier whose threshold ``score`` reaches; ``low`` below all of them."""
    for tier in ("high", "medium"):
        if tier in thresholds and score >= thresholds[tier]:
            return tier
    return "low"


def _plain(value: object) -> float | str:
    """A feature value as an answer shows it: a number as a float, a category by name."""
    return value if isinstance(value, str) else float(value)  # type: ignore[arg-type]


def score_rows(model: LoadedModel, rows: pd.DataFrame, top_reasons: int = 3) -> list[Score]:
    """Score feature rows and explain each score.

    Reason codes are the features with the largest positive contributions to the score
    (LightGBM's per-row SHAP values, ``pred_contrib``), i.e. what raises the risk most;
    each carries the feature's value as given (a category by its name).

    Args:
        model: The loaded champion.
        rows: One row per customer with at least the model's features (NaN = unknown).
        top_reasons: How many reason codes per answer.
    """
    values = model_matrix(model.booster, rows)
    given = rows[model.feature_names].to_numpy(dtype=object)
    contributions = np.asarray(model.booster.predict(values, pred_contrib=True))
    # Contributions and the bias (last column) add up to the raw log-odds, so one pass
    # through the trees gives both the explanation and the probability.
    probability = 1.0 / (1.0 + np.exp(-contributions.sum(axis=1)))
    contributions = contributions[:, :-1]
    scores = []
    for i, p in enumerate(probability):
        order = np.argsort(-contributions[i], kind="stable")[:top_reasons]
        reasons = [
            Reason(
                feature=model.feature_names[j],
                value=_plain(given[i, j]) if not np.isnan(values[i, j]) else None,
                contribution=round(float(contributions[i, j]), 4),
            )
            for j in order
            if contributions[i, j] > 0
        ]
        tier = tier_of(float(p), model.tier_thresholds)
        scores.append(Score(float(p), tier, CHURN_ACTIONS[tier], reasons))
    return scores
