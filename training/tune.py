"""Optuna studies over LightGBM, every trial a nested MLflow run.

A study is seeded multivariate TPE with successive halving: each trial reports its
validation loss every few boosting rounds, and a trial that falls behind the best at a
rung is stopped there. The study lives in a database, so a tuning run that is killed
resumes where it stopped: finished trials are kept and only the missing ones run.

Trials run in parallel threads of one process (``jobs``) and in worker processes
(``workers``) that share the study through its database: this process starts the other
``workers - 1`` (``python -m training.tune_worker``) with the training and validation rows
in a file, and every process stops once the study holds its budget of finished trials.
Processes on other machines join a study the same way: ``custlab tune`` with the same
data and storage (the cluster profile's PostgreSQL) runs trials of the same study.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import mlflow
import numpy as np
import optuna
import pandas as pd
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME
from optuna.study import MaxTrialsCallback
from optuna.trial import TrialState
from pydantic import BaseModel, ConfigDict, Field, field_validator
from tqdm import tqdm

from features.errors import CustlabError

logger = logging.getLogger(__name__)
# custlab logs one line per trial itself; Optuna's own lines would say it twice.
optuna.logging.set_verbosity(optuna.logging.WARNING)

# Trials that count towards a study's budget; a failed or cut-off trial does not.
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# How often a trial reports its validation loss to the pruner, in boosting rounds.
REPORT_EVERY = 10
# Rounds a trial runs before it can first be pruned (then 3x, 9x ...): early losses
# favour high learning rates, so the first rung is not too early.
MIN_ROUNDS = 50
# A running trial writes a heartbeat this often (seconds); one silent for twice as long
# was killed, and the next trial of the study marks it failed.
HEARTBEAT_SECONDS = 5


class TuneSpec(BaseModel):
    """Budget of one study."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_trials: int = Field(
        20, ge=1, le=10_000, description="Finished (complete or pruned) trials the study holds."
    )
    timeout_seconds: float | None = Field(None, gt=0, description="Stop starting trials after.")
    max_rounds: int = Field(1000, ge=10)
    early_stopping_rounds: int = Field(50, ge=1)
    jobs: int = Field(1, ge=1, le=64, description="Trials run in parallel (threads).")
    workers: int = Field(
        1, ge=1, le=64, description="Processes sharing the study, each running jobs trials."
    )
    prune: bool = Field(True, description="Stop trials that fall behind (successive halving).")


@dataclass(frozen=True)
class TuneResult:
    params: dict[str, Any]  # every LightGBM setting of the best trial
    searched: dict[str, Any]  # the ones the study chose
    best_iteration: int
    best_value: float
    n_trials: int  # finished trials in the study, this run's and earlier ones
    n_pruned: int
    # The best trial's booster, fitted on the training rows alone; None when that trial
    # ran in an earlier, resumed run.
    best_booster: lgb.Booster | None = None

    @property
    def pruned_share(self) -> float:
        return self.n_pruned / self.n_trials if self.n_trials else 0.0


def base_params(objective: dict[str, Any], seed: int, threads: int | None = None) -> dict[str, Any]:
    """LightGBM settings every trial shares: the objective's, deterministic, quiet, and
    ``threads`` threads (default: every core)."""
    return objective | {
        "verbosity": -1,
        "seed": seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": threads or os.cpu_count() or 1,
    }


# Training rows from which a study searches the full space, and at or below which it
# searches the small-data one; in between, every bound moves geometrically with the rows.
LARGE_ROWS = 50_000
SMALL_ROWS = 1_000


class SearchSpace(BaseModel):
    """The ranges, ``(low, high)``, of the LightGBM settings a study searches: the knobs
    that matter for tabular customer data.

    Depth is bounded: every served score carries exact SHAP reason codes, whose cost grows
    with leaves times depth squared, and depth beyond 8 buys little on these features.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    learning_rate: tuple[float, float] = (0.02, 0.2)
    max_depth: tuple[int, int] = (3, 8)
    num_leaves: tuple[int, int] = (8, 128)
    min_data_in_leaf: tuple[int, int] = (20, 500)
    feature_fraction: tuple[float, float] = (0.5, 1.0)
    bagging_fraction: tuple[float, float] = (0.5, 1.0)
    lambda_l2: tuple[float, float] = (1e-3, 10.0)

    @field_validator("*")
    @classmethod
    def _ordered(cls, bounds: tuple[float, float]) -> tuple[float, float]:
        if not 0 < bounds[0] <= bounds[1]:
            raise ValueError(f"bounds {bounds} must be positive, low first")
        return bounds

    @classmethod
    def for_rows(cls, rows: int) -> SearchSpace:
        """The space for a study whose trials fit on ``rows`` training rows.

        From :data:`LARGE_ROWS` rows up it is :data:`LARGE_SPACE`; at :data:`SMALL_ROWS`
        rows and below, :data:`SMALL_SPACE` (shallower trees with fewer leaves, at least
        40 rows per leaf, a stronger L2 penalty); in between, each bound is the
        geometric mean of the two, weighted by where ``log(rows)`` falls between
        ``log(SMALL_ROWS)`` and ``log(LARGE_ROWS)``.
        """
        if rows >= LARGE_ROWS:
            return LARGE_SPACE
        weight = max(0.0, np.log(max(rows, 1) / SMALL_ROWS) / np.log(LARGE_ROWS / SMALL_ROWS))

        def between(name: str) -> tuple[float, float]:
            small, large = getattr(SMALL_SPACE, name), getattr(LARGE_SPACE, name)
            bounds = [s ** (1 - weight) * g**weight for s, g in zip(small, large, strict=True)]
            if isinstance(large[0], int):
                return round(bounds[0]), round(bounds[1])
            return float(f"{bounds[0]:.3g}"), float(f"{bounds[1]:.3g}")

        return cls.model_validate({name: between(name) for name in cls.model_fields})

    def params(self) -> dict[str, str]:
        """The ranges as MLflow params, ``space_<setting>``: ``low..high``."""
        return {f"space_{name}": f"{low:g}..{high:g}" for name, (low, high) in self}

    def describe(self) -> str:
        return ", ".join(f"{name} {low:g}..{high:g}" for name, (low, high) in self)


# The full space, for large data, and the one for a thousand rows or fewer. The small
# one's leaves hold 40 to 200 rows: a 500-row leaf would leave 1,000 rows one split.
LARGE_SPACE = SearchSpace()
SMALL_SPACE = SearchSpace(
    max_depth=(2, 4), num_leaves=(4, 16), min_data_in_leaf=(40, 200), lambda_l2=(0.1, 30.0)
)


def suggest_params(trial: optuna.Trial, space: SearchSpace = LARGE_SPACE) -> dict[str, Any]:
    """One trial's LightGBM settings, sampled from ``space``."""
    return {
        "learning_rate": trial.suggest_float("learning_rate", *space.learning_rate, log=True),
        "max_depth": trial.suggest_int("max_depth", *space.max_depth),
        "num_leaves": trial.suggest_int("num_leaves", *space.num_leaves, log=True),
        "min_data_in_leaf": trial.suggest_int(
            "min_data_in_leaf", *space.min_data_in_leaf, log=True
        ),
        "feature_fraction": trial.suggest_float("feature_fraction", *space.feature_fraction),
        "bagging_fraction": trial.suggest_float("bagging_fraction", *space.bagging_fraction),
        "bagging_freq": 1,
        "lambda_l2": trial.suggest_float("lambda_l2", *space.lambda_l2, log=True),
    }


def pruning_callback(trial: optuna.Trial, every: int = REPORT_EVERY) -> Callable[..., None]:
    """A LightGBM callback that reports the first validation metric to ``trial`` every
    ``every`` rounds (negated when lower is better: studies maximize) and stops the
    trial when the pruner says so."""

    def report(env: lgb.callback.CallbackEnv) -> None:
        rounds = env.iteration + 1
        if rounds % every:
            return
        _, _, value, higher_is_better = env.evaluation_result_list[0][:4]
        trial.report(value if higher_is_better else -value, rounds)
        if trial.should_prune():
            raise optuna.TrialPruned(f"behind at round {rounds}")

    return report


class _TrialLog:
    """Each finished trial as a child run of the tuning's MLflow run.

    Trials may run in worker threads, where MLflow's active-run stack is empty, or in
    worker processes, so the child runs are written through a client with the parent's id.
    """

    def __init__(self, parent_id: str, experiment_id: str) -> None:
        self.client = MlflowClient()
        self.parent_id = parent_id
        self.experiment_id = experiment_id

    def write(self, trial: optuna.Trial, state: TrialState, values: dict[str, float]) -> None:
        run = self.client.create_run(
            self.experiment_id,
            tags={
                MLFLOW_PARENT_RUN_ID: self.parent_id,
                MLFLOW_RUN_NAME: f"trial-{trial.number}",
                "trial_state": state.name.lower(),
            },
        )
        now = int(time.time() * 1000)
        params = trial.params | {k: v for k, v in trial.user_attrs.items()}
        self.client.log_batch(
            run.info.run_id,
            metrics=[Metric(f"valid_{k}", v, now, 0) for k, v in values.items()],
            params=[Param(k, str(v)) for k, v in params.items()],
        )
        self.client.set_terminated(run.info.run_id)


class _Progress:
    """Trials done, the best value so far and the time left, on a terminal only."""

    def __init__(self, total: int, timeout: float | None, metric: str) -> None:
        self.bar = tqdm(
            total=total, unit="trial", desc="tuning", disable=not sys.stderr.isatty(), leave=False
        )
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.metric = metric

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.state not in FINISHED:
            return
        postfix = {}
        if any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
            postfix[f"best {self.metric}"] = f"{study.best_value:.4f}"
        if self.deadline is not None:
            postfix["timeout in"] = f"{max(0.0, self.deadline - time.monotonic()):.0f}s"
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def open_study(study_name: str, storage: str, seed: int, spec: TuneSpec) -> optuna.Study:
    """Create the study, or load it to resume.

    The sampler is seeded multivariate TPE; with parallel trials, the constant liar keeps
    concurrent trials from sampling the same point.
    """
    with warnings.catch_warnings():
        # Heartbeats are marked experimental; they are how a killed trial is recognized.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        rdb = optuna.storages.RDBStorage(
            storage, heartbeat_interval=HEARTBEAT_SECONDS, grace_period=2 * HEARTBEAT_SECONDS
        )
    return optuna.create_study(
        study_name=study_name,
        storage=rdb,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(
            seed=seed, multivariate=True, constant_liar=spec.jobs * spec.workers > 1
        ),
        pruner=(
            optuna.pruners.SuccessiveHalvingPruner(min_resource=MIN_ROUNDS, reduction_factor=3)
            if spec.prune
            else optuna.pruners.NopPruner()
        ),
        load_if_exists=True,
    )


@dataclass
class _Job:
    """What a process needs to run trials of a study (pickled for worker processes)."""

    study_name: str
    storage: str
    fixed_params: dict[str, Any]
    train: tuple[pd.DataFrame, np.ndarray]
    valid: tuple[pd.DataFrame, np.ndarray]
    spec: TuneSpec
    seed: int
    metrics: Callable[[np.ndarray, np.ndarray], dict[str, float]]
    primary_metric: str
    space: SearchSpace
    tracking_uri: str
    parent_id: str
    experiment_id: str
    # The best trial this process ran, by number: its value and booster.
    boosters: dict[int, tuple[float, lgb.Booster]] = field(default_factory=dict)

    def run(self, missing: int, progress: Callable[..., None] | None = None) -> None:
        """Run trials until the study holds ``spec.n_trials`` finished ones (``missing``
        at most from this process), or the timeout."""
        study = open_study(self.study_name, self.storage, self.seed, self.spec)
        callbacks = [MaxTrialsCallback(self.spec.n_trials, states=FINISHED)]
        study.optimize(
            self._objective(),
            n_trials=missing,
            timeout=self.spec.timeout_seconds,
            n_jobs=self.spec.jobs,
            callbacks=[*callbacks, *([progress] if progress else [])],
        )

    def _objective(self) -> Callable[[optuna.Trial], float]:
        spec = self.spec
        # Without feature_pre_filter=False, trials with a smaller min_data_in_leaf than
        # the first one would silently reuse the first trial's feature filtering.
        dataset_params = {"feature_pre_filter": False}
        train_set = lgb.Dataset(*self.train, params=dataset_params, free_raw_data=False)
        valid_set = lgb.Dataset(
            *self.valid, reference=train_set, params=dataset_params, free_raw_data=False
        )
        # Construct once here: lazily, parallel trials would race to build the same bins.
        train_set.construct()
        valid_set.construct()
        threads = max(1, (os.cpu_count() or 1) // (spec.jobs * spec.workers))
        trial_log = _TrialLog(self.parent_id, self.experiment_id)
        keeping = threading.Lock()
        primary = self.primary_metric

        def run_trial(trial: optuna.Trial) -> float:
            params = self.fixed_params | {"num_threads": threads}
            params |= suggest_params(trial, self.space)
            trial.set_user_attr("worker", os.getpid())
            callbacks = [lgb.early_stopping(spec.early_stopping_rounds, verbose=False)]
            if spec.prune:
                callbacks.append(pruning_callback(trial))
            try:
                booster = lgb.train(
                    params,
                    train_set,
                    num_boost_round=spec.max_rounds,
                    valid_sets=[valid_set],
                    callbacks=callbacks,
                )
            except optuna.TrialPruned as pruned:
                trial.set_user_attr("pruned", str(pruned))
                trial_log.write(trial, TrialState.PRUNED, {})
                logger.debug("trial %d pruned (%s)", trial.number, pruned)
                raise
            score = booster.predict(self.valid[0], num_iteration=booster.best_iteration)
            values = self.metrics(self.valid[1], np.asarray(score))
            trial.set_user_attr("best_iteration", booster.best_iteration)
            trial_log.write(trial, TrialState.COMPLETE, values)
            with keeping:
                if all(values[primary] > v for v, _ in self.boosters.values()):
                    self.boosters.clear()
                    self.boosters[trial.number] = (values[primary], booster)
            logger.info(
                "trial %d: valid %s %.4f (%d rounds)",
                trial.number,
                primary,
                values[primary],
                booster.best_iteration,
            )
            return values[primary]

        return run_trial


def run_worker(path: Path) -> None:
    """A worker process's part of a study: the job pickled at ``path``."""
    job: _Job = pickle.loads(path.read_bytes())
    mlflow.set_tracking_uri(job.tracking_uri)
    job.run(job.spec.n_trials)


@contextlib.contextmanager
def _workers(job: _Job) -> Iterator[None]:
    """The study's other ``workers - 1`` processes, running while the body runs this
    process's trials; waited for after it (a failed one is reported, its finished trials
    stay in the study), killed if the body fails."""
    others = job.spec.workers - 1
    if others == 0:
        yield
        return
    with tempfile.TemporaryDirectory(prefix="custlab-tune-") as folder:
        path = Path(folder) / "job.pickle"
        path.write_bytes(pickle.dumps(job))
        logs = [Path(folder) / f"worker-{i}.log" for i in range(others)]
        processes = []
        for log in logs:
            with log.open("w") as out:
                command = [sys.executable, "-m", "training.tune_worker", str(path)]
                processes.append(subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT))
        logger.info("%d worker processes share study %s", others, job.study_name)
        try:
            yield
        except BaseException:
            for process in processes:
                process.kill()
            raise
        finally:
            for process, log in zip(processes, logs, strict=True):
                if process.wait() != 0:
                    tail = " | ".join(log.read_text().splitlines()[-5:])
                    logger.warning(
                        "tuning worker %d exited with %s: %s", process.pid, process.returncode, tail
                    )


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
    space: SearchSpace | None = None,
) -> TuneResult:
    """Run (or resume) an Optuna study maximizing ``primary_metric`` of ``metrics`` on the
    validation rows, until it holds ``spec.n_trials`` finished trials.

    Each trial fits LightGBM (``fixed_params`` plus the sampled ones) with early stopping
    on ``valid``, is pruned when its validation loss falls behind, and is logged as a
    child run of the active MLflow run. The trials sample ``space`` (default: the one
    :meth:`SearchSpace.for_rows` gives for the training rows). With ``spec.workers > 1``
    worker processes run trials of the study beside this one.

    Raises:
        CustlabError: No trial completed (every one failed or was pruned), or no MLflow
            run is active.
    """
    parent = mlflow.active_run()
    if parent is None:
        raise CustlabError("tuning logs its trials under an active MLflow run")
    job = _Job(
        study_name, storage, fixed_params, train, valid, spec, seed, metrics, primary_metric,
        space or SearchSpace.for_rows(len(train[1])), mlflow.get_tracking_uri(),
        parent.info.run_id, parent.info.experiment_id,
    )  # fmt: skip
    study = open_study(study_name, storage, seed, spec)
    finished = len(study.get_trials(deepcopy=False, states=FINISHED))
    missing = spec.n_trials - finished
    if finished:
        logger.info(
            "study %s holds %d finished trials; %d to run", study_name, finished, max(missing, 0)
        )
    if missing > 0:
        progress = _Progress(missing, spec.timeout_seconds, primary_metric)
        try:
            with _workers(job):
                job.run(missing, progress)
        finally:
            progress.close()
    done = study.get_trials(deepcopy=False, states=FINISHED)
    if not any(t.state == TrialState.COMPLETE for t in done):
        raise CustlabError(f"study {study_name}: no trial completed; see the log for failures")
    best = study.best_trial
    return TuneResult(
        params=fixed_params | best.params | {"bagging_freq": 1},
        searched=best.params,
        best_iteration=int(best.user_attrs["best_iteration"]),
        best_value=float(best.value),
        n_trials=len(done),
        n_pruned=sum(t.state == TrialState.PRUNED for t in done),
        # None when another process ran the best trial: the caller fits it again.
        best_booster=job.boosters[best.number][1] if best.number in job.boosters else None,
    )
