"""Customer lifetime value: a buyer's net spend over the next 365 days."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.labels import clv_labels
from training import baselines, btyd
from training.objectives import OBJECTIVES
from training.tasks.base import ScoreTiers, TaskSpec, Tier


def has_bought(rows: pd.DataFrame) -> np.ndarray:
    """Customers with a first purchase: value is forecast for buyers only."""
    return pd.to_numeric(rows["recency_days"], errors="coerce").notna().to_numpy()


TASK = TaskSpec(
    name="clv",
    description="Expected net spend of the customer over the next 365 days.",
    label="future_spend",
    labels=clv_labels,
    horizon_days=365,
    objective=OBJECTIVES["tweedie"],
    oracle="spend",
    feature_service="clv_v1",
    primary_metric="normalized_gini",
    baselines={
        "last_year_spend": baselines.last_year_spend,
        "bgnbd_gamma_gamma": btyd.bgnbd_gamma_gamma,
    },
    policy=ScoreTiers(
        (
            Tier("top", "protect: service level and loyalty benefits", share=0.1),
            Tier("high", "grow: cross-sell", share=0.2),
            Tier("standard", "standard treatment"),
        )
    ),
    population=has_bought,
    population_rule="customers with at least one purchase",
    # Two 365-day purge gaps do not fit in two years of history.
    split_by_customer=True,
)
