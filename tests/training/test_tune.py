"""Studies prune, run trials in parallel under one parent run, and survive a kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import mlflow
import numpy as np
import optuna
import pandas as pd
import pytest
from mlflow import MlflowClient

from custlab.settings import Settings
from training.objectives import binary_metrics
from training.registry import use_tracking
from training.split import SplitPlan
from training.tasks import get_task
from training.train import SplitFrames
from training.train import tune as tune_task_on_frames
from training.tune import (
    FINISHED,
    LARGE_ROWS,
    SearchSpace,
    TuneSpec,
    base_params,
    suggest_params,
    tune_task,
)

ROOT = Path(__file__).resolve().parents[2]


def synthetic(rows: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(size=(rows, 6)), columns=[f"f{i}" for i in range(6)])
    margin = x["f0"] - 0.5 * x["f1"] + 0.3 * x["f2"] * x["f3"]
    return x, (rng.random(rows) < 1 / (1 + np.exp(-margin))).astype(float)


def tune(settings: Settings, name: str, spec: TuneSpec):
    return tune_task(
        study_name=name,
        storage=settings.optuna_storage,
        fixed_params=base_params({"objective": "binary"}, seed=3),
        train=synthetic(4000, 1),
        valid=synthetic(2000, 2),
        spec=spec,
        seed=3,
        metrics=binary_metrics,
        primary_metric="roc_auc",
    )


def child_runs(parent_id: str) -> list:
    return MlflowClient().search_runs(
        [mlflow.get_run(parent_id).info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent_id}'",
    )


def test_parallel_trials_are_each_a_child_of_one_parent_and_some_are_pruned(tmp_path):
    settings = Settings(home=tmp_path)
    tmp_path.mkdir(exist_ok=True)
    use_tracking(settings, "custlab-toy")
    spec = TuneSpec(n_trials=12, max_rounds=400, early_stopping_rounds=400, jobs=2)
    with mlflow.start_run() as parent:
        result = tune(settings, "toy-parallel", spec)
    assert result.n_trials == 12
    # Without early stopping every trial runs 400 rounds unless pruned; successive
    # halving stops the ones behind at a rung.
    assert 0 < result.n_pruned < 12
    runs = child_runs(parent.info.run_id)
    assert len(runs) == 12
    states = [run.data.tags["trial_state"] for run in runs]
    assert states.count("pruned") == result.n_pruned
    completed = [run for run in runs if run.data.tags["trial_state"] == "complete"]
    assert max(run.data.metrics["valid_roc_auc"] for run in completed) == pytest.approx(
        result.best_value
    )
    assert result.best_booster is not None


KILLED_RUN = textwrap.dedent(
    """
    import sys, mlflow
    sys.path.insert(0, {root!r})
    from custlab.settings import Settings
    from training.registry import use_tracking
    from training.tune import TuneSpec
    from tests.training.test_tune import tune

    settings = Settings(home={home!r})
    use_tracking(settings, "custlab-toy")
    with mlflow.start_run():
        tune(settings, "toy-killed", TuneSpec(n_trials=200, max_rounds=300, prune=False))
    """
)


def test_worker_processes_share_the_study_and_log_under_one_parent(tmp_path):
    settings = Settings(home=tmp_path)
    use_tracking(settings, "custlab-toy")
    spec = TuneSpec(n_trials=10, max_rounds=200, workers=2, prune=False)
    with mlflow.start_run() as parent:
        result = tune(settings, "toy-workers", spec)
    study = optuna.load_study(study_name="toy-workers", storage=settings.optuna_storage)
    finished = [t for t in study.trials if t.state in FINISHED]
    # Every process stops once the study holds its budget: at most the trials in flight
    # then (one a process) run past it.
    assert 10 <= len(finished) <= 11 and result.n_trials == len(finished)
    workers = {t.user_attrs["worker"] for t in finished}
    assert len(workers) == 2 and os.getpid() in workers
    runs = child_runs(parent.info.run_id)
    assert len(runs) == len(finished)  # the worker's trials are children of the parent too
    assert {r.data.params["worker"] for r in runs} == {str(w) for w in workers}


def test_a_killed_study_resumes_with_its_finished_trials(tmp_path):
    settings = Settings(home=tmp_path)
    tmp_path.mkdir(exist_ok=True)
    script = KILLED_RUN.format(root=str(ROOT), home=str(tmp_path))
    process = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)
    storage = settings.optuna_storage
    deadline = time.monotonic() + 120
    finished: list[optuna.trial.FrozenTrial] = []
    while time.monotonic() < deadline and len(finished) < 3:
        time.sleep(0.5)
        assert process.poll() is None, "the tuning run ended before it was killed"
        try:
            study = optuna.load_study(study_name="toy-killed", storage=storage)
        except KeyError:
            continue
        finished = study.get_trials(states=FINISHED)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert len(finished) >= 3, "no trials finished before the deadline"

    before = {
        t.number: t.value
        for t in optuna.load_study(study_name="toy-killed", storage=storage).get_trials(
            states=FINISHED
        )
    }
    use_tracking(settings, "custlab-toy")
    with mlflow.start_run() as parent:
        result = tune(settings, "toy-killed", TuneSpec(n_trials=len(before) + 2, max_rounds=300))
    study = optuna.load_study(study_name="toy-killed", storage=storage)
    after = {t.number: t.value for t in study.get_trials(states=FINISHED)}
    # Every trial finished before the kill is still there, and only the missing ones ran.
    assert {n: after[n] for n in before} == before
    assert result.n_trials == len(after) == len(before) + 2
    assert len(child_runs(parent.info.run_id)) == 2
    assert result.best_value == max(after.values())


# The space every study searched before it adapted to the rows.
FULL_SPACE = {
    "learning_rate": (0.02, 0.2),
    "max_depth": (3, 8),
    "num_leaves": (8, 128),
    "min_data_in_leaf": (20, 500),
    "feature_fraction": (0.5, 1.0),
    "bagging_fraction": (0.5, 1.0),
    "lambda_l2": (1e-3, 10.0),
}


@pytest.mark.parametrize("rows", [LARGE_ROWS, 2_000_000])
def test_large_data_searches_the_full_space(rows: int):
    assert SearchSpace.for_rows(rows).model_dump() == FULL_SPACE


def test_fewer_rows_search_smaller_trees_more_regularized():
    spaces = [SearchSpace.for_rows(rows) for rows in (LARGE_ROWS, 20_000, 5_000, 2_000, 500)]
    for larger, smaller in zip(spaces, spaces[1:], strict=False):
        assert smaller.num_leaves[1] <= larger.num_leaves[1]
        assert smaller.max_depth[1] <= larger.max_depth[1]
        assert smaller.min_data_in_leaf[0] >= larger.min_data_in_leaf[0]
        assert smaller.lambda_l2[0] >= larger.lambda_l2[0]
    small = spaces[-1]
    assert small.num_leaves[1] < 128 / 4 and small.max_depth[1] < 8
    assert small.min_data_in_leaf[0] > 20 and small.lambda_l2[0] > 1e-3
    # Every space is a valid one: positive bounds, low first.
    assert all(0 < low <= high for space in spaces for _, (low, high) in space)


def test_a_space_refuses_bounds_out_of_order():
    with pytest.raises(ValueError):
        SearchSpace(num_leaves=(64, 8))


def test_trials_sample_inside_the_space():
    space = SearchSpace.for_rows(2_000)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(30):
        params = suggest_params(study.ask(), space)
        for name, (low, high) in space:
            assert low <= params[name] <= high


def churn_frames(rows: int) -> SplitFrames:
    """Synthetic churn rows at one as-of date, cut in three by hand."""
    x, y = synthetic(rows, 5)
    frame = x.assign(
        customer_id=[f"c{i}" for i in range(rows)],
        event_timestamp=pd.Timestamp("2024-06-03", tz="UTC"),
        churned=y,
    )
    third = rows // 3
    parts = [frame[:third], frame[third : 2 * third], frame[2 * third :]]
    dates = pd.DatetimeIndex([frame["event_timestamp"][0]])
    plan = SplitPlan(train=dates, valid=dates, test=dates, by_customer=True)
    return SplitFrames(*(part.reset_index(drop=True) for part in parts), plan=plan)


def test_tuning_logs_the_space_for_its_training_rows_and_a_study_keeps_one_space(
    tmp_path, caplog, monkeypatch
):
    settings = Settings(home=tmp_path)
    use_tracking(settings, "custlab-toy")
    frames = churn_frames(3000)
    space = SearchSpace.for_rows(len(frames.train))

    def tune_once() -> str:
        with mlflow.start_run() as run:
            tune_task_on_frames(
                get_task("churn"),
                frames,
                [f"f{i}" for i in range(6)],
                TuneSpec(n_trials=1, max_rounds=20),
                settings.optuna_storage,
                seed=3,
            )
        return run.info.run_id

    with caplog.at_level("INFO", logger="training.train"):
        run_id = tune_once()
    params = mlflow.get_run(run_id).data.params
    assert params["space_num_leaves"] == "{}..{}".format(*space.num_leaves)
    assert params["space_num_leaves"] != "8..128"
    assert f"churn search space for 1,000 training rows: {space.describe()}" in caplog.text
    # The same rows searched over another space start a study of their own.
    tune_once()
    assert len(optuna.get_all_study_names(settings.optuna_storage)) == 1
    monkeypatch.setattr(SearchSpace, "for_rows", classmethod(lambda cls, rows: cls()))
    tune_once()
    assert len(optuna.get_all_study_names(settings.optuna_storage)) == 2
