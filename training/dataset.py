"""Training frames: labels from raw orders joined point in time to Feast features."""

from __future__ import annotations

import logging

import pandas as pd
from feast import FeatureStore

from custlab.settings import Settings
from features.contract import EVENT_TIMESTAMP, read_raw_tables
from features.errors import CustlabError
from features.labels import churn_labels
from features.store import historical_features, read_snapshots, service_features
from training.split import SplitPlan, SplitSpec, plan_split
from training.tasks import TaskSpec

logger = logging.getLogger(__name__)


def training_frame(
    settings: Settings, store: FeatureStore, task: TaskSpec, split: SplitSpec
) -> tuple[pd.DataFrame, list[str], SplitPlan]:
    """Label every eligible customer at the as-of dates the split uses, and fetch their
    features from the offline store as of each date.

    Returns:
        The labelled frame, the feature names of the task's feature service, and the
        split plan.

    Raises:
        CustlabError: No as-of date has a matured label.
    """
    stamps = read_snapshots(settings, [EVENT_TIMESTAMP])[EVENT_TIMESTAMP]
    as_of = pd.DatetimeIndex(sorted(stamps.unique()))
    orders = read_raw_tables(settings.raw_dir)["orders"]
    labels = churn_labels(orders, as_of, task.horizon_days, task.active_window_days)
    if labels.empty:
        raise CustlabError(
            f"no as-of date has a matured {task.name} label: the history must span more "
            f"than the {task.horizon_days}-day horizon"
        )
    plan = plan_split(pd.DatetimeIndex(labels[EVENT_TIMESTAMP].unique()), task.horizon_days, split)
    labels = labels[labels[EVENT_TIMESTAMP].isin(plan.dates)]
    frame = historical_features(store, labels, task.feature_service)
    features = service_features(store.get_feature_service(task.feature_service))
    logger.info(
        "training frame: %d rows over %d as-of dates, %.1f%% positive",
        len(frame),
        frame[EVENT_TIMESTAMP].nunique(),
        100 * frame[task.label].mean(),
    )
    return frame, features, plan
