"""Training on a labelled customer table: stratified k-fold cross-validation where there
is no time axis, with the same Optuna search, evidence, registry and gate as every task.

The estimate is nested, so tuning never sees the rows it is judged on: each outer fold
holds out a fifth of the customers (stratified by the label, a customer's rows together);
its study tunes on the other four fifths, early-stopping on a stratified fifth of them,
and its model, refitted on all four, predicts the held-out fold. Reported: the mean and
spread of the folds' metrics, and every baseline the same way on the same folds. The
registered model is then tuned and fitted the same way on every row; its evidence plots
use the out-of-fold predictions, which are honest where in-sample ones are not.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

import mlflow
import numpy as np
import pandas as pd
from sklearn.compose import make_column_transformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from custlab.settings import Settings
from features.contract import ENTITY_KEY, EVENT_TIMESTAMP
from features.errors import CustlabError
from features.labelled import LabelledTable, labelled_tables
from training.bootstrap import margin_interval
from training.record import ModelRecord, fingerprint
from training.registry import GateFailed, champion_version
from training.split import SplitPlan
from training.tasks.base import TaskSpec, everyone
from training.train import (
    Evaluation,
    SplitFrames,
    TrainOutcome,
    evaluate,
    fit,
    log_evaluation,
    outcome,
    promote,
    register,
    task_run,
    tune,
)
from training.tune import TuneSpec

logger = logging.getLogger(__name__)

FOLDS = 5
# The share of a fold's training customers its study early-stops and tunes on.
INNER_VALID_FOLDS = 5  # one fifth
# Each class needs this many rows per fold for a fold's metrics to mean anything.
MIN_CLASS_ROWS_PER_FOLD = 5


def _feature_columns(frame: pd.DataFrame, task: TaskSpec) -> list[str]:
    return [c for c in frame.columns if c not in (ENTITY_KEY, EVENT_TIMESTAMP, task.label)]


def logistic_all_features(train: pd.DataFrame, test: pd.DataFrame, task: TaskSpec) -> np.ndarray:
    """Logistic regression on every feature: numbers imputed by the median (with a
    missing indicator) and standardized, categories one-hot (unknown ones ignored);
    scikit-learn's defaults otherwise. The plain model a skilled user fits first."""
    columns = _feature_columns(train, task)
    text = [c for c in columns if train[c].dtype == object]
    numbers = [c for c in columns if c not in text]
    prepare = make_column_transformer(
        (
            make_pipeline(
                SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
                StandardScaler(),
            ),
            numbers,
        ),
        (
            make_pipeline(
                SimpleImputer(strategy="constant", fill_value="(unknown)"),
                OneHotEncoder(handle_unknown="ignore"),
            ),
            text,
        ),
    )
    model = make_pipeline(prepare, LogisticRegression(max_iter=2000))

    def typed(frame: pd.DataFrame) -> pd.DataFrame:
        return frame[columns].assign(
            **{c: frame[c].astype(object).where(frame[c].notna(), "(unknown)") for c in text}
        )

    model.fit(typed(train), task.targets(train))
    return model.predict_proba(typed(test))[:, 1]


def require_binary(task: TaskSpec, table: str) -> None:
    """Refuse a labelled table for a task that is not yes/no.

    Raises:
        CustlabError: Naming the table, the task and the tasks it could train.
    """
    if task.objective.name != "binary":
        raise CustlabError(
            f"labelled table {table} names task {task.name}, which is not a yes/no task; "
            "labelled tables train churn or propensity"
        )


def labelled_task(task: TaskSpec, table: LabelledTable) -> TaskSpec:
    """The task as it learns from ``table``: its feature service, everyone in the table
    as its population, the logistic regression on all features as its baseline, and no
    constraints tied to the event features it does not have.

    Raises:
        CustlabError: The task is not binary (a labelled table carries a yes/no label).
    """
    require_binary(task, table.name)
    return replace(
        task,
        feature_service=table.feature_service,
        baselines={"logistic_all_features": logistic_all_features},
        population=everyone,
        population_rule=f"the customers of labelled table {table.name}",
        monotone={},
        oracle=None,
    )


def find_table(settings: Settings, name: str) -> LabelledTable:
    """The labelled table ``name`` of this home.

    Raises:
        CustlabError: The home has no such table; the message lists those it has.
    """
    tables = {table.name: table for table in labelled_tables(settings)}
    if name not in tables:
        known = ", ".join(tables) or "none"
        raise CustlabError(
            f"no labelled table {name!r} in {settings.home} (it has: {known}); "
            "ingest one with custlab ingest-labelled"
        )
    return tables[name]


def fold_numbers(frame: pd.DataFrame, task: TaskSpec, folds: int, seed: int) -> np.ndarray:
    """Each row's fold, stratified by the label with a customer's rows in one fold.

    Raises:
        CustlabError: A class has too few rows to appear in every fold.
    """
    target = task.targets(frame).astype(int)
    counts = np.bincount(target, minlength=2)
    if counts.min() < folds * MIN_CLASS_ROWS_PER_FOLD:
        raise CustlabError(
            f"{task.name}: {counts[1]:,} positive and {counts[0]:,} negative rows; "
            f"{folds}-fold cross-validation needs at least {folds * MIN_CLASS_ROWS_PER_FOLD} "
            "of each"
        )
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    numbers = np.empty(len(frame), dtype=int)
    for number, (_, held_out) in enumerate(splitter.split(frame, target, frame[ENTITY_KEY])):
        numbers[held_out] = number
    return numbers


def _plan(train: pd.DataFrame, valid: pd.DataFrame, test: pd.DataFrame) -> SplitPlan:
    def dates(rows: pd.DataFrame) -> pd.DatetimeIndex:
        return pd.DatetimeIndex(sorted(rows[EVENT_TIMESTAMP].unique()))

    return SplitPlan(train=dates(train), valid=dates(valid), test=dates(test), by_customer=True)


def fold_frames(rows: pd.DataFrame, test: pd.DataFrame, task: TaskSpec, seed: int) -> SplitFrames:
    """``rows`` cut into a study's training and validation parts (a stratified fifth of
    the customers validates), beside the rows it is tested on."""
    inner = fold_numbers(rows, task, INNER_VALID_FOLDS, seed)
    train = rows[inner != 0].reset_index(drop=True)
    valid = rows[inner == 0].reset_index(drop=True)
    return SplitFrames(train, valid, test.reset_index(drop=True), _plan(train, valid, test))


def _mean_and_spread(per_fold: Sequence[dict[str, float]]) -> dict[str, float]:
    """Each metric's mean over the folds, and its standard deviation as ``<name>_std``."""
    names = per_fold[0].keys()
    means = {name: float(np.nanmean([m[name] for m in per_fold])) for name in names}
    spreads = {f"{name}_std": float(np.nanstd([m[name] for m in per_fold])) for name in names}
    return means | spreads


def cross_validate(
    task: TaskSpec,
    frame: pd.DataFrame,
    features: Sequence[str],
    spec: TuneSpec,
    storage: str,
    seed: int,
    folds: int = FOLDS,
) -> Evaluation:
    """Nested k-fold estimate of the tuned model and of every baseline, each fold a
    nested MLflow run (its trials nested below it). The evaluation's metrics are the
    folds' means and spreads; its predictions are out of fold, one per row."""
    numbers = fold_numbers(frame, task, folds, seed)
    prediction = np.full(len(frame), np.nan)
    baseline_predictions = {name: np.full(len(frame), np.nan) for name in task.baselines}
    model_folds, baseline_folds = [], {name: [] for name in task.baselines}
    for number in range(folds):
        held_out = numbers == number
        frames = fold_frames(frame[~held_out], frame[held_out], task, seed)
        with mlflow.start_run(run_name=f"fold-{number + 1}", nested=True):
            mlflow.set_tag("step", "cross-validation fold")
            fitted = fit(task, frames, tune(task, frames, features, spec, storage, seed))
            found = evaluate(task, fitted.booster, fitted.calibration, frames)
            mlflow.log_metrics({f"test_{k}": v for k, v in found.metrics.items()})
        prediction[held_out] = found.prediction
        model_folds.append(found.metrics)
        for name, values in found.baseline_metrics.items():
            baseline_predictions[name][held_out] = found.baseline_predictions[name]
            baseline_folds[name].append(values)
        logger.info(
            "%s fold %d/%d: %s %.4f (%s)",
            task.name,
            number + 1,
            folds,
            task.primary_metric,
            found.metrics[task.primary_metric],
            ", ".join(
                f"{name} {values[task.primary_metric]:.4f}"
                for name, values in found.baseline_metrics.items()
            ),
        )
    metrics = _mean_and_spread(model_folds)
    baseline_metrics = {name: _mean_and_spread(values) for name, values in baseline_folds.items()}
    best = max(baseline_metrics, key=lambda n: baseline_metrics[n][task.primary_metric])
    margin = margin_interval(
        task.objective.metric(task.primary_metric),
        task.targets(frame),
        prediction,
        baseline_predictions[best],
        frame[ENTITY_KEY],
    )
    return Evaluation(
        metrics=metrics,
        baseline_metrics=baseline_metrics,
        prediction=prediction,
        baseline_predictions=baseline_predictions,
        best_baseline=best,
        margin=margin,
    )


def recorded_champion_metric(task: TaskSpec, table: LabelledTable, data: str) -> float | None:
    """The champion's cross-validated metric when it was cross-validated on these very
    rows; None when there is no champion.

    Raises:
        GateFailed: The champion learned from other data, so no number compares it with
            this challenger fairly (it has seen these rows, or others).
    """
    try:
        version = champion_version(task.registered_model)
    except CustlabError:
        return None
    record = ModelRecord.read(task.registered_model, version)
    if record.labelled_table == table.name and record.data_fingerprint == data:
        return record.metrics[task.primary_metric]
    learned_from = (
        f"labelled table {record.labelled_table}" if record.labelled_table else "event data"
    )
    raise GateFailed(
        f"champion v{version} learned from {learned_from}, not these rows of {table.name}; "
        "no score compares the two fairly: promote by hand (custlab promote) to replace it"
    )


def train_labelled(
    task: TaskSpec,
    table: LabelledTable,
    frame: pd.DataFrame,
    features: Sequence[str],
    spec: TuneSpec,
    storage: str,
    seed: int,
    folds: int = FOLDS,
) -> TrainOutcome:
    """Cross-validate, then tune and fit on every row, register and gate, inside one
    MLflow run.

    Args:
        task: The task as it learns from the table (:func:`labelled_task`).
        table: The labelled table's manifest.
        frame: ``customer_id``, ``event_timestamp``, the features and the label column.
        features: Model inputs.
        spec: Optuna budget of each study (one per fold, one for the final model).
        storage: Where the Optuna studies live.
        seed: Seeds the folds, the samplers and LightGBM.
        folds: Outer folds.
    """
    whole = fold_frames(frame, frame, task, seed)
    with task_run(task, whole, "train") as run:
        mlflow.set_tags({"labelled_table": table.name, "validation": f"{folds}-fold nested CV"})
        mlflow.log_params({"folds": folds, "rows": len(frame)})
        evaluation = cross_validate(task, frame, features, spec, storage, seed, folds)
        with mlflow.start_run(run_name="final-fit", nested=True):
            mlflow.set_tag("step", "final fit on every row")
            fitted = fit(task, whole, tune(task, whole, features, spec, storage, seed))
        mlflow.log_params({"n_features": len(fitted.features)})
        log_evaluation(task, fitted.booster, whole, evaluation)
        registered = register(task, fitted, evaluation, whole, labelled_table=table.name)
        data = fingerprint(whole.fit, task.label)
        decision = promote(
            task, registered, evaluation, lambda: recorded_champion_metric(task, table, data)
        )
        return outcome(task, run, registered, evaluation, decision, frame)
