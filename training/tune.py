"""Optuna studies over LightGBM, every trial a nested MLflow run."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import mlflow
import numpy as np
import optuna
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

logger = logging.getLogger(__name__)


class TuneSpec(BaseModel):
    """Budget of one study."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_trials: int = Field(20, ge=1, le=10_000)
    timeout_seconds: float | None = Field(None, gt=0)
    max_rounds: int = Field(1000, ge=10)
    early_stopping_rounds: int = Field(50, ge=1)


@dataclass(frozen=True)
class TuneResult:
    params: dict[str, Any]
    best_iteration: int
    best_value: float
    n_trials: int


def base_params(objective: dict[str, Any], seed: int) -> dict[str, Any]:
    """LightGBM settings every trial shares: the objective's, deterministic, quiet, two
    threads."""
    return objective | {
        "verbosity": -1,
        "seed": seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": 2,
    }


def suggest_params(trial: optuna.Trial) -> dict[str, Any]:
    """The search space, kept to the knobs that matter for tabular customer data.

    Depth is bounded: every served score carries exact SHAP reason codes, whose cost grows
    with leaves times depth squared, and depth beyond 8 buys little on these features.
    """
    return {
        "learning_rate": trial.suggest_float("learning_rate", 0.02, 0.2, log=True),
        "max_depth": trial.suggest_int("max_depth", 3, 8),
        "num_leaves": trial.suggest_int("num_leaves", 8, 128, log=True),
        "min_data_in_leaf": trial.suggest_int("min_data_in_leaf", 20, 500, log=True),
        "feature_fraction": trial.suggest_float("feature_fraction", 0.5, 1.0),
        "bagging_fraction": trial.suggest_float("bagging_fraction", 0.5, 1.0),
        "bagging_freq": 1,
        "lambda_l2": trial.suggest_float("lambda_l2", 1e-3, 10.0, log=True),
    }


def tune_task(
    study_name: str,
    storage: str,
    fixed_params: dict[str, Any],
    train: tuple[pd.DataFrame, np.ndarray],
    valid: tuple[pd.DataFrame, np.ndarray],
    spec: TuneSpec,
    seed: int,
    metrics: Callable[[np.ndarray, np.ndarray], dict[str, float]],
    primary_metric: str,
) -> TuneResult:
    """Run (or resume) an Optuna study maximizing ``primary_metric`` of ``metrics`` on the
    validation rows.

    Each trial fits LightGBM (``fixed_params`` plus the sampled ones) with early stopping
    on ``valid`` and is logged as a nested MLflow run under the active run. The study
    lives in ``storage``, so a second call with the same name continues it instead of
    starting over.
    """
    # Without feature_pre_filter=False, trials with a smaller min_data_in_leaf than the
    # first one would silently reuse the first trial's feature filtering.
    dataset_params = {"feature_pre_filter": False}
    train_set = lgb.Dataset(*train, params=dataset_params, free_raw_data=False)
    valid_set = lgb.Dataset(*valid, reference=train_set, params=dataset_params, free_raw_data=False)
    y_valid = valid[1]

    def run_trial(trial: optuna.Trial) -> float:
        params = fixed_params | suggest_params(trial)
        booster = lgb.train(
            params,
            train_set,
            num_boost_round=spec.max_rounds,
            valid_sets=[valid_set],
            callbacks=[lgb.early_stopping(spec.early_stopping_rounds, verbose=False)],
        )
        score = booster.predict(valid[0], num_iteration=booster.best_iteration)
        values = metrics(y_valid, np.asarray(score))
        trial.set_user_attr("best_iteration", booster.best_iteration)
        with mlflow.start_run(run_name=f"trial-{trial.number}", nested=True):
            mlflow.log_params(trial.params | {"best_iteration": booster.best_iteration})
            mlflow.log_metrics({f"valid_{k}": v for k, v in values.items()})
        logger.info(
            "trial %d: valid %s %.4f (%d rounds)",
            trial.number,
            primary_metric,
            values[primary_metric],
            booster.best_iteration,
        )
        return values[primary_metric]

    study = optuna.create_study(
        study_name=study_name,
        storage=storage,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        load_if_exists=True,
    )
    study.optimize(run_trial, n_trials=spec.n_trials, timeout=spec.timeout_seconds)
    best = study.best_trial
    return TuneResult(
        params=fixed_params | best.params | {"bagging_freq": 1},
        best_iteration=int(best.user_attrs["best_iteration"]),
        best_value=float(best.value),
        n_trials=len(study.trials),
    )
