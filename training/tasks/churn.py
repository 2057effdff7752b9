"""Churn: will an active customer stop buying within 90 days?"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.labels import churn_labels
from training import baselines
from training.objectives import OBJECTIVES
from training.tasks.base import ScoreTiers, TaskSpec, Tier

ACTIVE_WINDOW_DAYS = 365


def active(rows: pd.DataFrame) -> np.ndarray:
    """Customers with an order in the active window (never ordered: not active)."""
    recency = pd.to_numeric(rows["recency_days"], errors="coerce").to_numpy()
    return recency <= ACTIVE_WINDOW_DAYS


TASK = TaskSpec(
    name="churn",
    description="Probability that the customer places no order in the next 90 days.",
    label="churned",
    labels=churn_labels,
    label_params={"active_window_days": ACTIVE_WINDOW_DAYS},
    horizon_days=90,
    objective=OBJECTIVES["binary"],
    oracle="churn",
    feature_service="churn_v1",
    primary_metric="roc_auc",
    baselines={
        "recency_rule": baselines.recency_rule,
        "rfm_logistic": baselines.rfm_logistic,
    },
    policy=ScoreTiers(
        (
            Tier("high", "retention offer with personal outreach", share=0.1),
            Tier("medium", "engagement campaign", share=0.2),
            Tier("low", "no action"),
        )
    ),
    population=active,
    population_rule=f"customers with an order in the last {ACTIVE_WINDOW_DAYS} days",
    # Longer since the last order never lowers churn risk.
    monotone={"recency_days": 1},
)
