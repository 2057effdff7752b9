"""The training stage as steps with typed inputs and outputs: fit, evaluate, register,
promote. Each step takes frames and a task spec; :func:`train_task` runs them in order
inside one MLflow run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd
import scipy
from mlflow.models import ModelSignature
from mlflow.models.model import ModelInfo
from mlflow.types import ColSpec, Schema

from features.contract import ENTITY_KEY, EVENT_TIMESTAMP
from features.errors import CustlabError
from training import pyfunc_model
from training.bootstrap import Interval, margin_interval
from training.calibration import Calibration
from training.dask_fit import DaskFit, fit_on_dask
from training.evaluate import log_evidence
from training.model_input import booster_categories, model_frame, predict
from training.pyfunc_model import BOOSTER, SCORING, scoring_spec
from training.record import ModelRecord, Window, fingerprint
from training.registry import (
    BOOSTER_FILE,
    CHALLENGER,
    CHAMPION,
    GateFailed,
    check_gate,
    load_champion,
    record_decision,
    set_alias,
)
from training.split import PARTS, SplitPlan
from training.tasks import TaskSpec
from training.tune import SearchSpace, TuneResult, TuneSpec, base_params, tune_task

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SplitFrames:
    """A labelled frame cut by a split plan: the same test rows for every model."""

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    plan: SplitPlan

    @classmethod
    def of(cls, frame: pd.DataFrame, plan: SplitPlan) -> SplitFrames:
        return cls(*(plan.part(frame, part) for part in PARTS), plan=plan)

    @property
    def fit(self) -> pd.DataFrame:
        """Training and validation rows: what the final model is fitted on."""
        return pd.concat([self.train, self.valid], ignore_index=True)

    def describe(self) -> str:
        """Each part's as-of dates and rows, the training share, and how the split was
        made and why."""
        parts = "; ".join(
            f"{part} {Window.of(getattr(self.plan, part))}, {len(getattr(self.plan, part))} "
            f"dates ({len(getattr(self, part)):,} rows)"
            for part in PARTS
        )
        rows = sum(len(getattr(self, part)) for part in PARTS)
        share = len(self.train) / rows if rows else 0.0
        return f"{parts}; {share:.0%} of rows train; {self.plan.describe()}"


@dataclass(frozen=True)
class Tuned:
    features: list[str]
    result: TuneResult


@dataclass(frozen=True)
class Fitted:
    booster: lgb.Booster
    features: list[str]
    tuning: TuneResult
    calibration: Calibration | None  # binary tasks: probabilities calibrated on valid


@dataclass(frozen=True)
class Evaluation:
    """The model and every baseline on the test window."""

    metrics: dict[str, float]
    baseline_metrics: dict[str, dict[str, float]]
    prediction: np.ndarray
    baseline_predictions: dict[str, np.ndarray]
    best_baseline: str | None = None
    margin: Interval | None = None  # the deciding metric over the best baseline

    def describe_margin(self, metric: str) -> str:
        if self.margin is None:
            return "no baseline"
        return f"{metric} over {self.best_baseline} {self.margin}: a {self.margin.verdict}"


@dataclass(frozen=True)
class Registered:
    version: str
    record: ModelRecord


@dataclass(frozen=True)
class Decision:
    promoted: bool
    reason: str


@dataclass(frozen=True)
class TrainOutcome:
    task: str
    run_id: str
    model_version: str
    metrics: dict[str, float]
    baseline_metrics: dict[str, dict[str, float]]
    promoted: bool
    reason: str
    test: pd.DataFrame  # the test rows' keys and label
    prediction: np.ndarray  # the model's, for those rows


def usable_features(train: pd.DataFrame, feature_names: Sequence[str]) -> list[str]:
    """The features with at least one value in the training rows.

    A feature the source never fills (an optional column it lacks) carries nothing to
    learn from; it is left out of the model, with a log line, rather than fed as a
    column of blanks that serving would then have to send.
    """
    usable = [name for name in feature_names if train[name].notna().any()]
    empty = [name for name in feature_names if name not in usable]
    if empty:
        logger.info("left out %d features without values: %s", len(empty), ", ".join(empty))
    if not usable:
        raise CustlabError("no feature has a value in the training rows")
    return usable


def tune(
    task: TaskSpec,
    frames: SplitFrames,
    feature_names: Sequence[str],
    spec: TuneSpec,
    storage: str,
    seed: int,
) -> Tuned:
    """Tune LightGBM on the validation rows (trials fitted on the training rows), over the
    search space for the number of training rows (:meth:`SearchSpace.for_rows`)."""
    features = usable_features(frames.train, feature_names)
    fixed = base_params(task.objective.params(task.classes), seed) | {
        "monotone_constraints": task.monotone_constraints(features)
    }
    space = SearchSpace.for_rows(len(frames.train))
    logger.info(
        "%s search space for %s training rows: %s",
        task.name,
        f"{len(frames.train):,}",
        space.describe(),
    )
    mlflow.log_params(space.params())
    # One study per task, data and space: a rerun on the same rows, features and split
    # resumes it, anything new starts a new one (a study never mixes two spaces).
    test_end = frames.plan.window("test")[1]
    data = hashlib.sha256(
        ",".join([fingerprint(frames.fit, task.label), *features, space.model_dump_json()]).encode()
    ).hexdigest()[:12]
    result = tune_task(
        study_name=f"{task.registered_model}-{test_end:%Y%m%d}-{data}",
        storage=storage,
        fixed_params=fixed,
        train=(model_frame(frames.train, features), task.targets(frames.train)),
        valid=(model_frame(frames.valid, features), task.targets(frames.valid)),
        spec=spec,
        seed=seed,
        metrics=task.objective.metrics,
        primary_metric=task.primary_metric,
        space=space,
    )
    mlflow.log_params({f"best_{k}": v for k, v in result.params.items()})
    mlflow.log_metrics(
        {
            f"best_valid_{task.primary_metric}": result.best_value,
            "trials_finished": result.n_trials,
            "trials_pruned": result.n_pruned,
        }
    )
    return Tuned(features, result)


def fit(
    task: TaskSpec, frames: SplitFrames, tuned: Tuned, dask_fit: DaskFit | None = None
) -> Fitted:
    """Calibrate a binary model on the validation window, then refit on training plus
    validation rows for the best trial's number of rounds: on Dask when ``dask_fit``
    wants that many rows there, else here (the run's ``final_fit`` says which)."""
    features, tuning = tuned.features, tuned.result
    calibration = None
    if task.objective.name == "binary":
        calibration = calibrate(
            tuning,
            (model_frame(frames.train, features), task.targets(frames.train)),
            (model_frame(frames.valid, features), task.targets(frames.valid)),
        )
    rows = frames.fit
    inputs, targets = model_frame(rows, features), task.targets(rows)
    rounds = max(tuning.best_iteration, 1)
    if dask_fit is not None and dask_fit.wanted(len(rows)):
        with dask_fit.client() as client:
            booster = fit_on_dask(client, tuning.params, inputs, targets, rounds)
            mlflow.log_param("final_fit", f"lightgbm.dask, {len(client.nthreads())} workers")
    else:
        booster = lgb.train(tuning.params, lgb.Dataset(inputs, targets), num_boost_round=rounds)
        mlflow.log_param("final_fit", "one process")
    return Fitted(booster, features, tuning, calibration)


def calibrate(
    tuning: TuneResult,
    train: tuple[pd.DataFrame, np.ndarray],
    valid: tuple[pd.DataFrame, np.ndarray],
) -> Calibration:
    """Platt scaling fitted on the validation window's margins of the tuned model
    trained without those rows (the best trial's own booster when this run has it)."""
    rounds = max(tuning.best_iteration, 1)
    booster = tuning.best_booster or lgb.train(
        tuning.params, lgb.Dataset(*train), num_boost_round=rounds
    )
    margin = booster.predict(valid[0], raw_score=True, num_iteration=rounds)
    return Calibration.fit(np.asarray(margin), valid[1])


def evaluate(
    task: TaskSpec, booster: lgb.Booster, calibration: Calibration | None, frames: SplitFrames
) -> Evaluation:
    """The model and the task's baselines (fitted on the fit rows) on the test window;
    a calibrated model also reports its Brier score and calibration error before
    calibration."""
    prediction = predict(booster, frames.test, calibration)
    metrics = task.metrics(frames.test, prediction)
    if calibration is not None:
        raw = task.metrics(frames.test, predict(booster, frames.test))
        metrics |= {f"{name}_uncalibrated": raw[name] for name in ("brier", "ece")}
    baselines = {
        name: baseline(frames.fit, frames.test, task) for name, baseline in task.baselines.items()
    }
    baseline_metrics = {name: task.metrics(frames.test, p) for name, p in baselines.items()}
    best = max(
        baseline_metrics,
        key=lambda name: np.nan_to_num(baseline_metrics[name][task.primary_metric], nan=-np.inf),
        default=None,
    )
    margin = None
    if best is not None:
        margin = margin_interval(
            task.objective.metric(task.primary_metric),
            task.targets(frames.test),
            prediction,
            baselines[best],
            frames.test[ENTITY_KEY],
        )
    return Evaluation(
        metrics=metrics,
        baseline_metrics=baseline_metrics,
        prediction=prediction,
        baseline_predictions=baselines,
        best_baseline=best,
        margin=margin,
    )


def pyfunc_signature(task: TaskSpec, booster: lgb.Booster) -> ModelSignature:
    """Every feature optional (unknown is a value custlab scores), a category as its
    name; out, a probability or amount, or one probability per class."""
    categories = booster_categories(booster)
    inputs = Schema(
        [
            ColSpec("string" if name in categories else "double", name, required=False)
            for name in booster.feature_name()
        ]
    )
    if task.objective.name == "multiclass":
        outputs = Schema([ColSpec("double", name) for name in task.classes])
    else:
        outputs = Schema([ColSpec("double", task.label)])
    return ModelSignature(inputs=inputs, outputs=outputs)


def plain_rows(rows: pd.DataFrame, booster: lgb.Booster) -> pd.DataFrame:
    """Feature rows as JSON carries them: floats, and category names or None."""
    categories = booster_categories(booster)
    return pd.DataFrame(
        {
            name: (
                rows[name].astype(object).where(rows[name].notna(), None)
                if name in categories
                else pd.to_numeric(rows[name], errors="coerce").astype(np.float64)
            )
            for name in booster.feature_name()
        }
    )


def log_pyfunc(task: TaskSpec, fitted: Fitted, example: pd.DataFrame) -> ModelInfo:
    """Log the model as MLflow's generic pyfunc (:mod:`training.pyfunc_model`): the
    booster file and its scoring spec as artifacts, so any MLflow client scores rows of
    plain values, category names included, as custlab does."""
    calibration = fitted.calibration
    spec = scoring_spec(
        fitted.booster,
        booster_categories(fitted.booster),
        task.objective.name,
        task.classes,
        None if calibration is None else (calibration.slope, calibration.intercept),
    )
    with tempfile.TemporaryDirectory() as folder:
        booster_file = Path(folder, BOOSTER_FILE)
        fitted.booster.save_model(booster_file)
        spec_file = Path(folder, "scoring.json")
        spec_file.write_text(json.dumps(spec), encoding="utf-8")
        artifacts = {BOOSTER: str(booster_file), SCORING: str(spec_file)}
        return mlflow.pyfunc.log_model(
            name="model",
            python_model=Path(pyfunc_model.__file__),
            artifacts=artifacts,
            # Stating the requirements spares MLflow seconds of probing the environment.
            pip_requirements=[
                f"lightgbm=={lgb.__version__}",
                f"pandas=={pd.__version__}",
                f"scipy=={scipy.__version__}",
            ],
            signature=pyfunc_signature(task, fitted.booster),
            input_example=plain_rows(example, fitted.booster),
            registered_model_name=task.registered_model,
        )


def register(
    task: TaskSpec,
    fitted: Fitted,
    evaluation: Evaluation,
    frames: SplitFrames,
    labelled_table: str | None = None,
) -> Registered:
    """Log the booster under the active run, register it as ``custlab-<task>`` with its
    record (naming the labelled table it learned from, if any), and give it the
    ``challenger`` alias."""
    features = fitted.features
    example = frames.test[features].head(5)
    info = log_pyfunc(task, fitted, example)
    version = str(info.registered_model_version)
    record = ModelRecord(
        task=task.name,
        objective=task.objective.name,
        feature_service=task.feature_service,
        features=list(fitted.booster.feature_name()),
        classes=list(task.classes),
        train_window=Window.of(frames.plan.train),
        valid_window=Window.of(frames.plan.valid),
        test_window=Window.of(frames.plan.test),
        metrics=evaluation.metrics,
        baseline_metrics=evaluation.baseline_metrics,
        tier_cuts=task.policy.cuts(evaluation.prediction),
        calibration=fitted.calibration,
        data_fingerprint=fingerprint(frames.fit, task.label),
        labelled_table=labelled_table,
    )
    record.write(task.registered_model, version)
    # The same facts on the run, for finding runs by them in the MLflow UI.
    mlflow.set_tags(
        {
            "feature_service": record.feature_service,
            "train_window": str(record.train_window),
            "test_window": str(record.test_window),
            "data_fingerprint": record.data_fingerprint,
        }
    )
    set_alias(task.registered_model, CHALLENGER, version)
    return Registered(version, record)


def _champion_metric(task: TaskSpec, test: pd.DataFrame) -> float | None:
    """The champion's deciding metric on ``test``, or None when there is no champion."""
    try:
        booster, version = load_champion(task.registered_model)
    except CustlabError:
        return None
    missing = sorted(set(booster.feature_name()) - set(test.columns))
    if missing:
        raise GateFailed(f"champion v{version} needs features absent here: {', '.join(missing)}")
    calibration = ModelRecord.read(task.registered_model, version).calibration
    return task.metrics(test, predict(booster, test, calibration))[task.primary_metric]


def promote(
    task: TaskSpec,
    registered: Registered,
    evaluation: Evaluation,
    champion: Callable[[], float | None],
) -> Decision:
    """The gate: the challenger becomes ``champion`` only if it beats every baseline, the
    best one beyond its bootstrap interval (a margin whose interval holds zero is a tie,
    not a win), and the champion by the task's margin. ``champion`` gives the champion's
    metric on the challenger's own test rows (None: no champion), or raises
    :class:`GateFailed` when there is no fair number. The decision and its reason are
    recorded on the version either way."""
    metric = task.primary_metric
    try:
        reason = check_gate(
            metric,
            evaluation.metrics[metric],
            champion(),
            {name: values[metric] for name, values in evaluation.baseline_metrics.items()},
            task.promotion_margin,
        )
        if evaluation.margin is not None and evaluation.margin.verdict != "win":
            raise GateFailed(
                f"{metric} {evaluation.metrics[metric]:.4f} ties baseline "
                f"{evaluation.best_baseline}: the margin's interval holds zero"
            )
        set_alias(task.registered_model, CHAMPION, registered.version)
        decision = Decision(True, reason)
    except GateFailed as failure:
        decision = Decision(False, str(failure))
    decision = Decision(
        decision.promoted,
        f"{decision.reason}; {evaluation.describe_margin(metric)}",
    )
    record_decision(task.registered_model, registered.version, decision.promoted, decision.reason)
    logger.info(
        "%s v%s: %s (%s)",
        task.registered_model,
        registered.version,
        "promoted" if decision.promoted else "not promoted",
        decision.reason,
    )
    return decision


def log_evaluation(
    task: TaskSpec, booster: lgb.Booster, frames: SplitFrames, evaluation: Evaluation
) -> None:
    """The evaluation's metrics, margin and evidence, into the active MLflow run."""
    mlflow.log_metrics({f"test_{k}": v for k, v in evaluation.metrics.items()})
    for name, values in evaluation.baseline_metrics.items():
        mlflow.log_metrics({f"baseline_{name}_{k}": v for k, v in values.items()})
    if evaluation.margin is not None:
        mlflow.set_tag("best_baseline", evaluation.best_baseline)
        mlflow.log_metrics(
            {
                "margin_over_best_baseline": evaluation.margin.estimate,
                "margin_over_best_baseline_ci_low": evaluation.margin.low,
                "margin_over_best_baseline_ci_high": evaluation.margin.high,
            }
        )
    log_evidence(task, booster, frames.test, evaluation.prediction, evaluation.baseline_predictions)


def split_frames(task: TaskSpec, frame: pd.DataFrame, plan: SplitPlan) -> SplitFrames:
    """The labelled frame cut by ``plan``, the split logged.

    Raises:
        CustlabError: The frame lacks the label or the as-of dates.
    """
    missing = sorted({task.label, EVENT_TIMESTAMP} - set(frame.columns))
    if missing:
        raise CustlabError(f"training frame lacks column(s) {', '.join(missing)}")
    frames = SplitFrames.of(frame, plan)
    logger.info("%s split: %s", task.name, frames.describe())
    return frames


def outcome(
    task: TaskSpec,
    run: mlflow.ActiveRun,
    registered: Registered,
    evaluation: Evaluation,
    decision: Decision,
    test: pd.DataFrame,
) -> TrainOutcome:
    """What a training run ends with: the gate's decision tagged on the run, and the
    outcome (``test``: the rows ``evaluation`` predicted)."""
    mlflow.set_tags(
        {
            "promotion_decision": "promoted" if decision.promoted else "kept champion",
            "promotion_reason": decision.reason,
        }
    )
    return TrainOutcome(
        task=task.name,
        run_id=run.info.run_id,
        model_version=registered.version,
        metrics=evaluation.metrics,
        baseline_metrics=evaluation.baseline_metrics,
        promoted=decision.promoted,
        reason=decision.reason,
        test=test[[ENTITY_KEY, EVENT_TIMESTAMP, task.label]],
        prediction=evaluation.prediction,
    )


@contextmanager
def task_run(task: TaskSpec, frames: SplitFrames, kind: str) -> Iterator[mlflow.ActiveRun]:
    """An MLflow run for one step of one task, carrying the task and its split."""
    name = f"{task.name}-{kind}-{frames.plan.window('test')[1]:%Y-%m-%d}"
    with mlflow.start_run(run_name=name) as run:
        mlflow.set_tag("step", kind)
        mlflow.log_params(
            {
                "task": task.name,
                "objective": task.objective.name,
                "feature_service": task.feature_service,
                "horizon_days": task.horizon_days,
                "split": frames.plan.kind,
                "split_reason": frames.plan.reason,
                **{f"rows_{p}": len(getattr(frames, p)) for p in PARTS},
                **{f"{p}_window": str(Window.of(getattr(frames.plan, p))) for p in PARTS},
            }
        )
        yield run


def train_task(
    task: TaskSpec,
    frame: pd.DataFrame,
    feature_names: Sequence[str],
    plan: SplitPlan,
    spec: TuneSpec,
    storage: str,
    seed: int,
    dask_fit: DaskFit | None = None,
) -> TrainOutcome:
    """Tune, fit, evaluate, register and promote one task inside one MLflow run (the
    tracking store and experiment must already be selected).

    Args:
        task: The task spec.
        frame: ``customer_id``, ``event_timestamp``, the features and the label column.
        feature_names: Model inputs, in the order serving must supply them.
        plan: The as-of dates of each split.
        spec: Optuna budget.
        storage: Where the Optuna study lives.
        seed: Seeds the sampler and LightGBM.
        dask_fit: Where the final fit runs on Dask, from what size (none: here).
    """
    missing = sorted(set(feature_names) - set(frame.columns))
    if missing:
        raise CustlabError(f"training frame lacks column(s) {', '.join(missing)}")
    frames = split_frames(task, frame, plan)
    with task_run(task, frames, "train") as run:
        tuned = tune(task, frames, feature_names, spec, storage, seed)
        fitted = fit(task, frames, tuned, dask_fit)
        mlflow.log_params({"n_features": len(fitted.features)})
        evaluation = evaluate(task, fitted.booster, fitted.calibration, frames)
        log_evaluation(task, fitted.booster, frames, evaluation)

        registered = register(task, fitted, evaluation, frames)
        decision = promote(
            task, registered, evaluation, lambda: _champion_metric(task, frames.test)
        )
        return outcome(task, run, registered, evaluation, decision, frames.test)
