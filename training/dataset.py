"""Training frames: a task's labels joined point in time to Feast features.

One way for every task: the task's label factory labels the eligible customers at the
as-of dates the split uses (or a labelled table brings its own labels), and Feast's
``get_historical_features`` joins the features its feature service names (of the
families the data has) as of each date.
"""

from __future__ import annotations

import logging

import pandas as pd
from feast import FeatureStore

from custlab.settings import Settings
from features.contract import EVENT_TIMESTAMP, read_raw_tables
from features.errors import CustlabError
from features.labelled import LABEL, LabelledTable, read_labels
from features.store import feature_refs, historical_features, published_families, read_snapshots
from training.split import SplitPlan, SplitSpec, plan_split
from training.tasks import TaskSpec

logger = logging.getLogger(__name__)


def training_frame(
    settings: Settings,
    store: FeatureStore,
    task: TaskSpec,
    split: SplitSpec,
    families: list[str] | None = None,
    known_by: pd.Timestamp | None = None,
) -> tuple[pd.DataFrame, list[str], SplitPlan]:
    """Label every eligible customer at the as-of dates the split uses, and fetch their
    features from the offline store as of each date.

    Args:
        settings: Where the raw and offline tables are.
        store: The feature store.
        task: The task spec.
        split: How to split the labelled as-of dates.
        families: Only these feature families (default: every published one).
        known_by: Train as if at this moment: as-of dates up to it and only labels whose
            horizon closed by then (a retrain decided by a past week's monitoring learns
            nothing that came after; default: everything the data holds).

    Returns:
        The labelled frame, the names of the features it carries, and the split plan.

    Raises:
        CustlabError: No as-of date has a matured label.
    """
    published = published_families(settings)
    refs = feature_refs(store, task.feature_service, families or published)
    stamps = read_snapshots(settings, "orders", [EVENT_TIMESTAMP])[EVENT_TIMESTAMP]
    as_of = pd.DatetimeIndex(sorted(stamps.unique()))
    if known_by is not None:
        as_of = as_of[as_of <= known_by]
    labels = task.label_frame(read_raw_tables(settings.raw_dir), as_of, known_by)
    if labels.empty:
        by = f" by {known_by:%Y-%m-%d}" if known_by is not None else ""
        raise CustlabError(
            f"no as-of date has a matured {task.name} label{by}: the history must span "
            f"more than the {task.horizon_days}-day horizon"
        )
    plan = plan_split(
        pd.DatetimeIndex(labels[EVENT_TIMESTAMP].unique()),
        task.horizon_days,
        split,
        by_customer=task.split_by_customer,
    )
    labels = labels[labels[EVENT_TIMESTAMP].isin(plan.dates)]
    frame = historical_features(store, labels, refs)
    features = [ref.split(":", 1)[1] for ref in refs]
    logger.info(
        "training frame: %d rows over %d as-of dates, %d features from %s; label %s",
        len(frame),
        frame[EVENT_TIMESTAMP].nunique(),
        len(features),
        ", ".join(families or published),
        describe_label(frame[task.label]),
    )
    return frame, features, plan


def describe_label(label: pd.Series) -> str:
    """A label's distribution in a few words: the share of each class, or the mean."""
    if label.dtype == object or isinstance(label.dtype, pd.CategoricalDtype):
        shares = label.value_counts(normalize=True)
        return ", ".join(f"{name} {share:.1%}" for name, share in shares.items())
    if set(label.dropna().unique()) <= {0, 1}:
        return f"{label.mean():.1%} positive"
    return f"mean {label.mean():.2f}"


def labelled_frame(
    settings: Settings, store: FeatureStore, task: TaskSpec, table: LabelledTable
) -> tuple[pd.DataFrame, list[str]]:
    """A labelled table's labels joined to its features through Feast, as every task's
    frame is: the label under the task's label column.

    Returns:
        The labelled frame and the names of the features it carries.
    """
    labels = read_labels(settings, table).rename(columns={LABEL: task.label})
    refs = feature_refs(store, table.feature_service)
    frame = historical_features(store, labels, refs)
    features = [ref.split(":", 1)[1] for ref in refs]
    logger.info(
        "training frame: labelled table %s, %d rows, %d features; label %s",
        table.name,
        len(frame),
        len(features),
        describe_label(frame[task.label]),
    )
    return frame, features
