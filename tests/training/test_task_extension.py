"""The task is the extension point: a fifth task declared here, in the test alone, trains,
registers and is gated through the generic path without touching any custlab module."""

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from custlab.settings import Settings
from features.contract import ENTITY_KEY, EVENT_TIMESTAMP
from features.history import History
from features.labels import known_customers
from features.store import open_store
from training.dataset import training_frame
from training.objectives import OBJECTIVES
from training.record import ModelRecord
from training.registry import use_tracking
from training.split import SplitSpec
from training.tasks.base import ScoreTiers, TaskSpec, Tier
from training.train import train_task
from training.tune import TuneSpec

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def two_orders_labels(tables, as_of, horizon_days=60):
    """A known customer places at least two orders in [t, t + horizon)."""
    orders = tables["orders"]
    horizon = pd.Timedelta(days=horizon_days)
    matured = pd.DatetimeIndex([t for t in as_of if t + horizon <= orders["order_ts"].max()])
    labels = known_customers(tables, matured)
    history = History.of_purchases(orders)
    t = labels[EVENT_TIMESTAMP]
    count = history.count_between(history.codes(labels[ENTITY_KEY]), t, t + horizon)
    return labels.assign(repeat_buyer=(count >= 2).astype(np.int8))


REPEAT = TaskSpec(
    name="repeat_buyer",
    description="Probability of two or more orders in the next 60 days.",
    label="repeat_buyer",
    labels=two_orders_labels,
    horizon_days=60,
    objective=OBJECTIVES["binary"],
    feature_service="propensity_v1",
    primary_metric="roc_auc",
    baselines={"orders_13w": lambda train, test, task: test["orders_13w"].fillna(0).to_numpy()},
    policy=ScoreTiers((Tier("likely", "loyalty offer", 0.2), Tier("unlikely", "no action"))),
)


def test_a_task_declared_in_a_test_trains_registers_and_is_gated(demo_home):
    settings = Settings(home=demo_home)
    frame, features, plan = training_frame(settings, open_store(settings), REPEAT, SplitSpec())
    use_tracking(settings, REPEAT.registered_model)
    outcome = train_task(
        REPEAT,
        frame,
        features,
        plan,
        TuneSpec(n_trials=2, max_rounds=200),
        settings.optuna_storage,
        settings.seed,
    )
    record = ModelRecord.read("custlab-repeat_buyer", outcome.model_version)
    assert record.task == "repeat_buyer" and record.feature_service == "propensity_v1"
    assert set(record.tier_cuts) == {"likely"}
    assert record.metrics["roc_auc"] == pytest.approx(outcome.metrics["roc_auc"])
    assert set(record.baseline_metrics) == {"orders_13w"}
    tags = MlflowClient().get_model_version("custlab-repeat_buyer", outcome.model_version).tags
    assert tags["promotion_decision"] == ("promoted" if outcome.promoted else "kept out")
    assert outcome.reason in tags["promotion_reason"]
