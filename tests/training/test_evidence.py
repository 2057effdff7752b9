"""The evidence a run carries: every objective's artifacts land in a real MLflow run, the
tables add up, groups are sliced honestly, and contributions rank what the model uses."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import lightgbm as lgb
import matplotlib.pyplot as plt
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from custlab.settings import Settings
from training.evaluate import (
    MISSING_GROUP,
    decile_table,
    gain_curve,
    group_metrics,
    log_evidence,
    segment_evidence,
    shap_rows,
)
from training.model_input import model_frame, predict
from training.registry import use_tracking
from training.tasks import TASKS
from training.tasks.base import TaskSpec

FEATURES = ["signal", "noise", "weak"]
STAGES = ["new", "active", "growing", "at_risk", "churned", "reactivated"]
COMMON = {
    "feature_importance_gain.json",
    "evidence/shap.json",
    "evidence/metrics_by_group.json",
    "plots/feature_importance_gain.png",
    "plots/shap_importance.png",
    "plots/shap_beeswarm.png",
    "plots/metrics_by_group.png",
}
EXPECTED = {
    "churn": COMMON
    | {
        "plots/roc.png",
        "plots/pr.png",
        "plots/calibration.png",
        "plots/gain.png",
        "plots/deciles.png",
        "evidence/deciles.json",
        "evidence/gain.json",
    },
    "clv": COMMON
    | {"plots/deciles.png", "plots/gain.png", "evidence/deciles.json", "evidence/gain.json"},
    "lifecycle": COMMON | {"plots/confusion.png", "evidence/class_report.json"},
}


def toy_window(n: int = 2500, seed: int = 3) -> pd.DataFrame:
    """A test window where ``signal`` drives every label, ``weak`` a little, ``noise`` not."""
    rng = np.random.default_rng(seed)
    signal, weak = rng.normal(size=n), rng.normal(size=n)
    margin = 2.0 * signal + 0.3 * weak
    return pd.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(n)],
            "event_timestamp": pd.Timestamp("2025-09-01", tz="UTC"),
            "signal": signal,
            "noise": rng.normal(size=n),
            "weak": weak,
            "lifecycle_stage": rng.choice(STAGES[:4], n),
            "acquisition_channel": rng.choice(["paid", "organic", "rare"], n, p=[0.5, 0.48, 0.02]),
            "churned": (rng.random(n) < 1 / (1 + np.exp(-margin))).astype(np.int8),
            "future_spend": np.where(
                rng.random(n) < 0.5, np.exp(3 + 0.8 * signal + rng.normal(0, 0.3, n)), 0.0
            ),
            "future_stage": np.asarray(STAGES)[np.digitize(margin, [-2, -1, 0, 1, 2])],
        }
    )


def toy_booster(task: TaskSpec, frame: pd.DataFrame) -> lgb.Booster:
    params = {"verbosity": -1, "num_leaves": 8, "seed": 0, **task.objective.params(task.classes)}
    return lgb.train(params, lgb.Dataset(model_frame(frame, FEATURES), task.targets(frame)), 40)


def toy_baselines(task: TaskSpec, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """One weak baseline in the model's output shape."""
    if task.objective.name == "multiclass":
        return {"persistence": task.baselines["persistence"](frame, frame, task)}
    return {"weak_rule": np.clip(frame["weak"].to_numpy() + 3.0, 0.0, None)}


@dataclass
class Logged:
    run_id: str
    tracking_uri: str
    frame: pd.DataFrame

    def paths(self) -> set[str]:
        client = MlflowClient(tracking_uri=self.tracking_uri)
        found, folders = set(), [None]
        while folders:
            for item in client.list_artifacts(self.run_id, folders.pop()):
                (folders.append(item.path) if item.is_dir else found.add(item.path))
        return found

    def table(self, path: str) -> dict:
        run = MlflowClient(tracking_uri=self.tracking_uri).get_run(self.run_id)
        return mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/{path}")


LogRun = Callable[..., Logged]


@pytest.fixture(scope="module")
def log_run(tmp_path_factory: pytest.TempPathFactory) -> LogRun:
    """Trains a toy booster for a task and logs its evidence in an MLflow run, once per
    task and window variant (one tracking store for the module keeps it quick)."""
    settings = Settings(home=tmp_path_factory.mktemp("evidence"))
    logged: dict[tuple[str, tuple[str, ...]], Logged] = {}

    def run(task_name: str, drop: tuple[str, ...] = ()) -> Logged:
        if (task_name, drop) not in logged:
            use_tracking(settings, "custlab-evidence")
            task, frame = TASKS[task_name], toy_window().drop(columns=list(drop))
            booster = toy_booster(task, frame)
            with mlflow.start_run() as active:
                log_evidence(
                    task, booster, frame, predict(booster, frame), toy_baselines(task, frame)
                )
            logged[task_name, drop] = Logged(
                active.info.run_id, settings.mlflow_tracking_uri, frame
            )
        return logged[task_name, drop]

    return run


@pytest.mark.parametrize("task_name", list(EXPECTED))
def test_each_objective_logs_its_evidence_and_closes_its_figures(log_run: LogRun, task_name):
    open_before = set(plt.get_fignums())
    logged = log_run(task_name)
    assert logged.paths() == EXPECTED[task_name]
    assert set(plt.get_fignums()) == open_before


@pytest.mark.parametrize(("task_name", "total"), [("churn", "positives"), ("clv", "actual_total")])
def test_the_decile_table_adds_up(log_run: LogRun, task_name, total):
    logged = log_run(task_name)
    table = logged.table("evidence/deciles.json")
    deciles = table["deciles"]
    actual = logged.frame[TASKS[task_name].label].to_numpy(dtype=float)
    assert [d["decile"] for d in deciles] == list(range(1, 11))
    assert sum(d["rows"] for d in deciles) == table["rows"] == len(logged.frame)
    assert sum(d[total] for d in deciles) == pytest.approx(actual.sum())
    shares = [d[f"cumulative_share_of_{total}"] for d in deciles]
    assert shares == sorted(shares) and shares[-1] == pytest.approx(1.0)
    # The signal ranks: the top decile holds more than its tenth, the bottom less.
    assert deciles[0]["lift"] > 1.5 > 0.5 > deciles[-1]["lift"]


def test_decile_lift_and_gain_of_a_perfect_ranking():
    y = np.array([1] * 10 + [0] * 90)
    table = decile_table(y, -np.arange(100.0))
    assert table["deciles"][0]["lift"] == pytest.approx(10.0)
    assert table["deciles"][0]["cumulative_share_of_positives"] == pytest.approx(1.0)
    assert [d["positives"] for d in table["deciles"][1:]] == [0.0] * 9
    share, captured = gain_curve(y, -np.arange(100.0), points=10)
    assert share[1] == pytest.approx(0.1) and captured[1] == pytest.approx(1.0)
    assert captured[0] == 0.0 and captured[-1] == pytest.approx(1.0)


def test_groups_without_a_column_are_left_out(log_run: LogRun):
    by_group = log_run("churn", ("acquisition_channel",)).table("evidence/metrics_by_group.json")
    assert set(by_group) == {"lifecycle_stage"}
    stages = {g["group"] for g in by_group["lifecycle_stage"]["groups"]}
    assert stages == set(STAGES[:4])


def test_an_empty_group_column_is_left_out_and_no_column_gives_no_group_evidence():
    frame = toy_window().assign(acquisition_channel=None)
    task, scores = TASKS["churn"], {"lightgbm": frame["signal"].to_numpy()}
    assert group_metrics(task, frame, scores, "acquisition_channel") is None
    assert group_metrics(task, frame, scores, "lifecycle_stage") is not None
    found = segment_evidence(task, frame.drop(columns="lifecycle_stage"), scores)
    assert not found.tables and not found.figures


def test_small_single_class_and_missing_groups_are_said_so():
    frame = toy_window()
    frame.loc[frame.index[:300], "lifecycle_stage"] = "reactivated"
    frame.loc[frame.index[:300], "churned"] = 1
    frame.loc[frame.index[300:320], "lifecycle_stage"] = None
    table = group_metrics(
        TASKS["churn"], frame, {"lightgbm": frame["signal"].to_numpy()}, "lifecycle_stage"
    )
    groups = {g["group"]: g for g in table["groups"]}
    assert groups["reactivated"]["metrics"] is None
    assert groups["reactivated"]["reason"] == "one class only"
    assert groups[MISSING_GROUP]["rows"] == 20 and groups[MISSING_GROUP]["metrics"] is None
    assert "fewer than" in groups[MISSING_GROUP]["reason"]
    active = groups["active"]
    assert active["reason"] is None and active["metrics"]["lightgbm"]["roc_auc"] > 0.7
    assert sum(g["rows"] for g in table["groups"]) == len(frame)


@pytest.mark.parametrize("task_name", ["churn", "lifecycle"])
def test_contributions_rank_the_signal_above_noise(log_run: LogRun, task_name):
    shap = log_run(task_name).table("evidence/shap.json")
    ranked = list(shap["mean_abs_contribution"])
    assert ranked[0] == "signal"
    assert ranked.index("weak") < ranked.index("noise")
    assert shap["of_rows"] == len(toy_window()) and 500 <= shap["rows"] <= shap["of_rows"]


def test_a_large_booster_explains_fewer_rows_but_never_too_few():
    frame = toy_window(n=20_000)
    target = TASKS["churn"].targets(frame)
    params = {"objective": "binary", "verbosity": -1, "num_leaves": 64, "min_data_in_leaf": 5}
    small = lgb.train({**params, "num_leaves": 4}, lgb.Dataset(frame[FEATURES], target), 10)
    large = lgb.train(params, lgb.Dataset(frame[FEATURES], target), 200)
    assert shap_rows(small, len(frame)) == 5_000
    assert 500 <= shap_rows(large, len(frame)) < 5_000
    assert shap_rows(large, 120) == 120
