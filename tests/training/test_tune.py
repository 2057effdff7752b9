"""Studies prune, run trials in parallel under one parent run, and survive a kill."""

from __future__ import annotations

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
from training.tune import FINISHED, TuneSpec, base_params, tune_task

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
