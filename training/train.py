"""The training stage: split, tune, fit, evaluate against baselines, register, gate."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.models import infer_signature

from custlab.settings import Settings
from features.contract import EVENT_TIMESTAMP
from features.errors import CustlabError
from training.baselines import churn_baselines
from training.evaluate import binary_metrics, calibration_figure, roc_figure
from training.model_input import model_frame, predict
from training.registry import (
    CHALLENGER,
    CHAMPION,
    GateFailed,
    check_gate,
    load_champion,
    set_alias,
    use_tracking,
)
from training.split import PARTS, SplitPlan
from training.tasks import TaskSpec
from training.tune import TuneSpec, base_params, tune_task

logger = logging.getLogger(__name__)

# Decision tiers cut the test window's score distribution: the top 10% are high risk,
# the next 20% medium. Stored on the model version so serving uses the same cut.
TIER_QUANTILES = {"high": 0.9, "medium": 0.7}


@dataclass(frozen=True)
class TrainOutcome:
    task: str
    run_id: str
    model_version: str
    metrics: dict[str, float]
    baseline_metrics: dict[str, dict[str, float]]
    promoted: bool
    reason: str


def _champion_metric(task: TaskSpec, test: pd.DataFrame) -> float | None:
    """The champion's primary metric on ``test``, or None when there is no champion."""
    try:
        booster, version = load_champion(task.registered_model)
    except CustlabError:
        return None
    missing = sorted(set(booster.feature_name()) - set(test.columns))
    if missing:
        raise GateFailed(f"champion v{version} needs features absent here: {', '.join(missing)}")
    score = predict(booster, test)
    return binary_metrics(test[task.label].to_numpy(), score)[task.primary_metric]


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


def train_task(
    task: TaskSpec,
    frame: pd.DataFrame,
    feature_names: Sequence[str],
    settings: Settings,
    tune: TuneSpec,
    plan: SplitPlan,
) -> TrainOutcome:
    """Train one task on a labelled, point-in-time feature frame and register the result.

    The new version gets alias ``challenger``; it becomes ``champion`` only if it passes
    :func:`training.registry.check_gate` on the same test window. Either way the
    decision and its reason are recorded on the run and on the model version.

    Args:
        task: The task spec.
        frame: ``customer_id``, ``event_timestamp``, the features and the label column.
        feature_names: Model inputs, in the order serving must supply them.
        settings: Where MLflow and Optuna keep their state.
        tune: Optuna budget.
        plan: The as-of dates of each split.
    """
    missing = sorted(set([*feature_names, task.label, EVENT_TIMESTAMP]) - set(frame.columns))
    if missing:
        raise CustlabError(f"training frame lacks column(s) {', '.join(missing)}")
    train, valid, test = (plan.part(frame, part) for part in PARTS)
    features = usable_features(train, feature_names)
    fit = pd.concat([train, valid], ignore_index=True)
    windows = {part: plan.window(part) for part in PARTS}
    use_tracking(settings, task.registered_model)

    with mlflow.start_run(run_name=f"{task.name}-{windows['test'][1]:%Y-%m-%d}") as run:
        mlflow.log_params(
            {
                "task": task.name,
                "feature_service": task.feature_service,
                "horizon_days": task.horizon_days,
                "n_features": len(features),
                **{
                    f"rows_{p}": len(rows)
                    for p, rows in zip(PARTS, (train, valid, test), strict=True)
                },
                **{f"{p}_window": f"{a:%Y-%m-%d}..{b:%Y-%m-%d}" for p, (a, b) in windows.items()},
            }
        )
        study = tune_task(
            study_name=f"{task.registered_model}-{windows['test'][1]:%Y%m%d}",
            storage=settings.optuna_storage,
            fixed_params=base_params(task.objective, settings.seed)
            | {"monotone_constraints": [task.monotone.get(f, 0) for f in features]},
            train=(model_frame(train, features), train[task.label]),
            valid=(model_frame(valid, features), valid[task.label]),
            spec=tune,
            seed=settings.seed,
        )
        mlflow.log_params({f"best_{k}": v for k, v in study.params.items()})
        mlflow.log_metric("best_valid_roc_auc", study.best_value)
        booster = lgb.train(
            study.params,
            lgb.Dataset(model_frame(fit, features), fit[task.label]),
            num_boost_round=max(study.best_iteration, 1),
        )

        y_test = test[task.label].to_numpy()
        score = predict(booster, test)
        metrics = binary_metrics(y_test, score)
        baselines = churn_baselines(fit, task.label, test)
        baseline_metrics = {name: binary_metrics(y_test, s) for name, s in baselines.items()}
        mlflow.log_metrics({f"test_{k}": v for k, v in metrics.items()})
        for name, values in baseline_metrics.items():
            mlflow.log_metrics({f"baseline_{name}_{k}": v for k, v in values.items()})
        mlflow.log_figure(roc_figure(y_test, {"lightgbm": score, **baselines}), "plots/roc.png")
        mlflow.log_figure(calibration_figure(y_test, score), "plots/calibration.png")
        mlflow.log_dict(
            dict(zip(features, booster.feature_importance("gain").tolist(), strict=True)),
            "feature_importance_gain.json",
        )

        example = test[features].head(5)
        info = mlflow.lightgbm.log_model(
            booster,
            name="model",
            # Stating the requirement spares MLflow seconds of probing the environment.
            pip_requirements=[f"lightgbm=={lgb.__version__}"],
            signature=infer_signature(example, predict(booster, example)),
            input_example=example,
            registered_model_name=task.registered_model,
        )
        version = str(info.registered_model_version)
        client = MlflowClient()
        tiers = {f"tier_{t}": f"{np.quantile(score, q):.6f}" for t, q in TIER_QUANTILES.items()}
        tags = {
            "feature_service": task.feature_service,
            "train_window": f"{windows['train'][0]:%Y-%m-%d}..{windows['valid'][1]:%Y-%m-%d}",
            "test_window": f"{windows['test'][0]:%Y-%m-%d}..{windows['test'][1]:%Y-%m-%d}",
            f"test_{task.primary_metric}": f"{metrics[task.primary_metric]:.6f}",
            **tiers,
        }
        for key, value in tags.items():
            client.set_model_version_tag(task.registered_model, version, key, value)
        set_alias(task.registered_model, CHALLENGER, version)

        try:
            champion_value = _champion_metric(task, test)
            reason = check_gate(
                task.primary_metric,
                metrics[task.primary_metric],
                champion_value,
                {n: m[task.primary_metric] for n, m in baseline_metrics.items()},
                task.promotion_margin,
            )
            promoted = True
            set_alias(task.registered_model, CHAMPION, version)
        except GateFailed as failure:
            promoted, reason = False, str(failure)
        decision = "promoted" if promoted else "kept champion"
        logger.info("%s v%s: %s (%s)", task.registered_model, version, decision, reason)
        for key, value in {"promotion_decision": decision, "promotion_reason": reason}.items():
            client.set_model_version_tag(task.registered_model, version, key, value)
            mlflow.set_tag(key, value)
        return TrainOutcome(
            task=task.name,
            run_id=run.info.run_id,
            model_version=version,
            metrics=metrics,
            baseline_metrics=baseline_metrics,
            promoted=promoted,
            reason=reason,
        )
