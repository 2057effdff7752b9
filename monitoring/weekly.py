"""The weekly check of one task: this week's rows against the champion's test window."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from custlab.settings import Settings
from features.contract import ENTITY_KEY, EVENT_TIMESTAMP
from features.store import read_features, read_snapshots
from monitoring.columns import DriftSummary
from monitoring.drift import drift_report
from training.model_input import categorical_features, predict
from training.record import ModelRecord
from training.registry import CHAMPION, load_champion, use_tracking
from training.tasks import TaskSpec

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MonitorReport:
    html: Path
    summary: DriftSummary
    example_customer: str


def monitor_task(settings: Settings, task: TaskSpec) -> MonitorReport:
    """Drift report of the newest as-of week against the champion's test window (the
    newest rows it was judged on, so a stable world stays quiet).

    Both sides hold the customers the task scores (for churn: active ones), with the
    champion's prediction as one more column, so a shift in who is scored and a shift
    in what the model says are both visible.
    """
    use_tracking(settings, task.registered_model)
    booster, version = load_champion(task.registered_model)
    record = ModelRecord.read(task.registered_model, version)
    features = list(booster.feature_name())

    stamps = read_snapshots(settings, "orders", [EVENT_TIMESTAMP])[EVENT_TIMESTAMP].unique()
    latest = stamps.max()
    dates = record.test_window.as_of_dates(pd.DatetimeIndex(stamps)).append(
        pd.DatetimeIndex([latest])
    )
    rows = read_features(settings, features, dates)
    # The same population rule the task trains and serves on.
    rows = rows[task.population(rows)].reset_index(drop=True)
    prediction = predict(booster, rows, record.calibration)
    # One number per row: a multiclass model's is the probability of its top class.
    rows["prediction"] = prediction.max(axis=1) if prediction.ndim == 2 else prediction
    current = rows[rows[EVENT_TIMESTAMP] == latest]
    reference = rows[rows[EVENT_TIMESTAMP] != latest]

    out_dir = settings.reports_dir / task.name / f"{latest:%Y-%m-%d}"
    categorical = categorical_features(features)
    summary = drift_report(
        reference,
        current,
        numerical=[f for f in features if f not in categorical] + ["prediction"],
        categorical=categorical,
        out_dir=out_dir,
        max_reference_rows=20_000,
        seed=settings.seed,
    )
    logger.info(
        "%s@%s v%s: reference %d rows, current %d rows (week of %s)",
        task.registered_model,
        CHAMPION,
        version,
        len(reference),
        len(current),
        f"{latest:%Y-%m-%d}",
    )
    return MonitorReport(
        html=out_dir / "drift.html",
        summary=summary,
        example_customer=str(current[ENTITY_KEY].iloc[0]),
    )
