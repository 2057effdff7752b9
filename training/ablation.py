"""What each feature family adds: the task's model refit with the families added one at a
time, every step judged on the same test window.

No step is tuned (that would confound a family's information with a search's luck): each
fits the same LightGBM settings with early stopping on the validation window, then refits
on training plus validation for that many rounds, as the tuned model is fitted.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import lightgbm as lgb
import mlflow
import pandas as pd

from features.families import FAMILIES
from training.model_input import model_frame, predict
from training.split import SplitPlan
from training.tasks import TaskSpec
from training.train import SplitFrames, usable_features
from training.tune import base_params

logger = logging.getLogger(__name__)

# Middle-of-the-road settings for tabular customer data, fixed for every step.
ABLATION_PARAMS = {
    "learning_rate": 0.05,
    "num_leaves": 31,
    "max_depth": 8,
    "min_data_in_leaf": 100,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
}


@dataclass(frozen=True)
class AblationStep:
    families: tuple[str, ...]
    n_features: int
    rounds: int
    metrics: dict[str, float]


def ablate_families(
    task: TaskSpec,
    frame: pd.DataFrame,
    feature_names: Sequence[str],
    plan: SplitPlan,
    seed: int,
    max_rounds: int = 2000,
) -> list[AblationStep]:
    """Fit the task on the first family, then on each next family added, in turn.

    Each step is a nested MLflow run under the active run.

    Args:
        task: The task spec (label, objective, monotone constraints).
        frame: The labelled training frame with every family's features.
        feature_names: The features the frame carries.
        plan: The split; every step is scored on its test window.
        seed: LightGBM's seed.
        max_rounds: Bound on boosting rounds (early stopping decides within it).
    """
    frames = SplitFrames.of(frame, plan)
    fit = frames.fit
    present = usable_features(frames.train, feature_names)
    steps: list[AblationStep] = []
    families: list[str] = []
    columns: list[str] = []
    for name, family in FAMILIES.items():
        added = [f for f in family.feature_names if f in present]
        if not added:
            continue
        families.append(name)
        columns = columns + added
        params = (
            base_params(task.objective.params(task.classes), seed)
            | ABLATION_PARAMS
            | {"monotone_constraints": task.monotone_constraints(columns)}
        )
        probe = lgb.train(
            params,
            lgb.Dataset(model_frame(frames.train, columns), task.targets(frames.train)),
            num_boost_round=max_rounds,
            valid_sets=[
                lgb.Dataset(model_frame(frames.valid, columns), task.targets(frames.valid))
            ],
            callbacks=[lgb.early_stopping(50, verbose=False)],
        )
        rounds = max(probe.best_iteration, 1)
        booster = lgb.train(
            params,
            lgb.Dataset(model_frame(fit, columns), task.targets(fit)),
            num_boost_round=rounds,
        )
        metrics = task.metrics(frames.test, predict(booster, frames.test))
        step = AblationStep(tuple(families), len(columns), rounds, metrics)
        steps.append(step)
        with mlflow.start_run(run_name=f"+{name}", nested=True):
            mlflow.log_params(
                {"families": ",".join(families), "n_features": len(columns), "rounds": rounds}
            )
            mlflow.log_metrics({f"test_{k}": v for k, v in metrics.items()})
        logger.info(
            "%s: test %s %.4f with %d features",
            " + ".join(families),
            task.primary_metric,
            metrics[task.primary_metric],
            len(columns),
        )
    return steps


def ablation_table(steps: Sequence[AblationStep], metric: str) -> str:
    """The steps as a Markdown table: families, features, the metric and its gain."""
    lines = [f"| families | features | test {metric} | gain |", "|---|---|---|---|"]
    previous = None
    for step in steps:
        value = step.metrics[metric]
        gain = "–" if previous is None else f"{value - previous:+.4f}"
        label = step.families[0] if len(step.families) == 1 else f"+ {step.families[-1]}"
        lines.append(f"| {label} | {step.n_features} | {value:.4f} | {gain} |")
        previous = value
    return "\n".join(lines)
