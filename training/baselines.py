"""Baselines a model must beat, each fitted on the training rows and scored on the same
test rows as the model, in the model's own output shape.

Every baseline has one signature, ``(train, test, task) -> prediction``; task modules
pick theirs by name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

if TYPE_CHECKING:
    from training.tasks.base import TaskSpec

RFM_COLUMNS = ["recency_days", "orders_52w", "spend_52w"]


def _numbers(frame: pd.DataFrame, column: str) -> np.ndarray:
    return pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)


def recency_rule(train: pd.DataFrame, test: pd.DataFrame, task: TaskSpec) -> np.ndarray:
    """Risk = days since the last order (never ordered ranks as most at risk)."""
    recency = _numbers(test, "recency_days")
    return np.where(np.isnan(recency), np.nanmax(recency, initial=0.0) + 1.0, recency)


def frequency_rule(train: pd.DataFrame, test: pd.DataFrame, task: TaskSpec) -> np.ndarray:
    """Propensity = orders in the last 13 weeks (none known counts as none)."""
    return np.nan_to_num(_numbers(test, "orders_13w"), nan=0.0)


def rfm_logistic(train: pd.DataFrame, test: pd.DataFrame, task: TaskSpec) -> np.ndarray:
    """Logistic regression on recency, frequency and monetary value; probabilities."""
    model = make_pipeline(
        SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
        StandardScaler(),
        LogisticRegression(max_iter=1000),
    )
    model.fit(train[RFM_COLUMNS].astype(float), task.targets(train))
    return model.predict_proba(test[RFM_COLUMNS].astype(float))[:, 1]


def last_year_spend(train: pd.DataFrame, test: pd.DataFrame, task: TaskSpec) -> np.ndarray:
    """Future spend = the net spend of the past 52 weeks, as if the year repeated."""
    return np.clip(np.nan_to_num(_numbers(test, "spend_52w"), nan=0.0), 0.0, None)


def persistence(train: pd.DataFrame, test: pd.DataFrame, task: TaskSpec) -> np.ndarray:
    """The stage stays: all probability on today's ``lifecycle_stage`` (an unknown stage
    spreads it evenly)."""
    codes = pd.Categorical(test["lifecycle_stage"], categories=list(task.classes)).codes
    probability = np.full((len(test), len(task.classes)), 1.0 / len(task.classes))
    known = codes >= 0
    probability[known] = 0.0
    probability[np.flatnonzero(known), codes[known]] = 1.0
    return probability
