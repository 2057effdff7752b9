"""Retraining called for by a weekly verdict: the task's own training and promotion gate,
as if run at the end of the week (only labels matured by then), so a backfill over past
weeks learns nothing those weeks could not have known."""

from __future__ import annotations

import pandas as pd

from custlab.settings import Settings
from features.store import open_store
from monitoring.weekly import Retrain, Retrained
from training.dask_fit import DaskFit
from training.dataset import training_frame
from training.registry import use_tracking
from training.split import SplitSpec
from training.tasks import TaskSpec
from training.train import train_task
from training.tune import TuneSpec


def retrainer(settings: Settings, tune: TuneSpec, split: SplitSpec) -> Retrain:
    """A retrain with this Optuna budget and split."""

    def retrain(task: TaskSpec, known_by: pd.Timestamp) -> Retrained:
        frame, features, plan = training_frame(
            settings, open_store(settings), task, split, known_by=known_by
        )
        use_tracking(settings, task.registered_model)
        outcome = train_task(
            task,
            frame,
            features,
            plan,
            tune,
            settings.optuna_storage,
            settings.seed,
            DaskFit.of(settings),
        )
        return Retrained(outcome.run_id, outcome.model_version, outcome.promoted, outcome.reason)

    return Retrain(retrain, split.test_dates)
