"""Baselines every model must beat, scored on the same test window."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

RFM_COLUMNS = ["recency_days", "orders_52w", "spend_52w"]


def recency_rule(frame: pd.DataFrame) -> np.ndarray:
    """Churn score = days since the last order (never ordered ranks as most at risk)."""
    recency = frame["recency_days"].to_numpy(dtype=float)
    return np.where(np.isnan(recency), np.nanmax(recency, initial=0.0) + 1.0, recency)


def rfm_logistic(train: pd.DataFrame, label: str, test: pd.DataFrame) -> np.ndarray:
    """Logistic regression on recency, frequency and monetary value; returns probabilities."""
    model = make_pipeline(
        SimpleImputer(strategy="median", add_indicator=True),
        StandardScaler(),
        LogisticRegression(max_iter=1000),
    )
    model.fit(train[RFM_COLUMNS], train[label])
    return model.predict_proba(test[RFM_COLUMNS])[:, 1]


def churn_baselines(train: pd.DataFrame, label: str, test: pd.DataFrame) -> dict[str, np.ndarray]:
    """Scores of each churn baseline on ``test``."""
    return {
        "recency_rule": recency_rule(test),
        "rfm_logistic": rfm_logistic(train, label, test),
    }
