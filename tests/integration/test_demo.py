"""The whole main job at a tiny scale, and what a user of each surface sees."""

import json
import re
import subprocess
import sys
from pathlib import Path

import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from custlab.settings import Settings
from features.store import latest_as_of, read_features
from tests.factories import DEMO_TUNING
from training.model_input import model_frame
from training.record import ModelRecord
from training.registry import load_champion

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_served_score_equals_the_offline_score_of_the_same_row(client, demo_home):
    settings = Settings(home=demo_home)
    latest = read_features(settings, dates=[latest_as_of(settings)])
    # Rows with categories, some of them missing: the trip of a category is under test.
    rows = latest[latest["orders_52w"] > 0].sort_values("age_band", na_position="first").head(5)
    served = client.post("/v1/churn", json={"customer_ids": rows["customer_id"].tolist()}).json()

    booster, version = load_champion("custlab-churn")
    assert isinstance(booster, lgb.Booster) and booster.pandas_categorical
    calibration = ModelRecord.read("custlab-churn", version).calibration
    assert calibration is not None
    # LightGBM's own handling of pandas categories is the reference for serving's codes.
    margin = booster.predict(model_frame(rows, booster.feature_name()), raw_score=True)
    served_scores = [p["score"] for p in served["predictions"]]
    np.testing.assert_allclose(served_scores, calibration.probability(margin), rtol=0, atol=1e-6)
    # Any MLflow client scores the same rows, categories as plain strings, as custlab does.
    features = booster.feature_name()
    plain = rows[features].astype(object).where(rows[features].notna(), None)
    model = mlflow.pyfunc.load_model("models:/custlab-churn@champion")
    batch = model.predict(plain)
    np.testing.assert_allclose(served_scores, batch, rtol=0, atol=1e-6)
    # One row alone scores as it does inside the batch.
    for i in range(len(plain)):
        assert model.predict(plain.iloc[[i]])[0] == pytest.approx(batch[i], abs=1e-12)


def test_registry_holds_a_documented_champion(demo_home):
    client = MlflowClient(tracking_uri=Settings(home=demo_home).mlflow_tracking_uri)
    version = client.get_model_version_by_alias("custlab-churn", "champion")
    for tag in ("feature_service", "train_window", "test_window", "promotion_decision"):
        assert version.tags[tag]
    run = client.get_run(version.run_id)
    for metric in (
        "test_roc_auc",
        "test_pr_auc",
        "test_brier",
        "test_ece",
        "test_brier_uncalibrated",
        "baseline_recency_rule_roc_auc",
        "margin_over_best_baseline_ci_low",
        "ratio_to_oracle",
        "trials_pruned",
    ):
        assert metric in run.data.metrics
    for tag in ("feature_service", "train_window", "data_fingerprint", "best_baseline"):
        assert run.data.tags[tag]
    low = run.data.metrics["margin_over_best_baseline_ci_low"]
    high = run.data.metrics["margin_over_best_baseline_ci_high"]
    assert low <= run.data.metrics["margin_over_best_baseline"] <= high
    artifacts = {a.path for a in client.list_artifacts(version.run_id, "plots")}
    assert {"plots/roc.png", "plots/calibration.png"} <= artifacts
    trials = client.search_runs(
        [run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'"
    )
    assert len(trials) == DEMO_TUNING.n_trials


def test_weekly_run_records_each_task_and_renders_for_a_reviewer(demo_home):
    from monitoring.audit import read_records
    from monitoring.browser import check_page
    from training.tasks import TASKS

    reports = demo_home / "reports"
    decisions = read_records(reports / "audit.jsonl", "decision")
    assert sorted(d["task"] for d in decisions) == sorted(TASKS)
    (week,) = {d["week"] for d in decisions}
    for decision in decisions:
        folder = reports / decision["report"]
        summary = json.loads((folder / "summary.json").read_text())
        assert "prediction" in summary["columns"] and 0 <= summary["share_drifted"] <= 1
        assert (folder / "drift.html").stat().st_size > 10_000
        assert json.loads((folder / "drift.json").read_text())["metrics"]
        assert decision["verdict"]["action"] in {"retrain", "alert", "nothing"}
        assert decision["verdict"]["reasons"] and decision["mlflow_run_id"]
        # The demo world is stable and its newest complete week has all its data.
        assert decision["verdict"]["action"] != "retrain"
        assert not any("data quality" in reason for reason in decision["verdict"]["reasons"])
    client = MlflowClient(tracking_uri=Settings(home=demo_home).mlflow_tracking_uri)
    experiment = client.get_experiment_by_name("custlab-monitoring")
    runs = client.search_runs([experiment.experiment_id])
    assert {r.data.tags["task"] for r in runs} == set(TASKS)
    assert {r.data.tags["week"] for r in runs} == {week}
    business = json.loads((reports / week / "business.json").read_text())
    assert business["orders"]["active_customers"]["this_week"] > 0
    for page in (
        reports / "index.html",
        reports / week / "churn" / "index.html",
        reports / week / "business.html",
    ):
        seen = check_page(page)
        assert seen.ok, (page, seen.console_errors, seen.page_errors, seen.external_urls)
        assert seen.text_length > 200


def _custlab(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "custlab", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={"CUSTLAB_HOME": str(home), "PATH": ""},
    )


@pytest.mark.parametrize(
    ("make_input", "message"),
    [
        (lambda raw: None, "raw data folder .* does not exist"),
        (lambda raw: raw.mkdir(), "required table 'orders' not found"),
        (
            lambda raw: (
                raw.mkdir(),
                pd.DataFrame({"customer_id": ["a"]}).to_parquet(raw / "orders.parquet"),
            ),
            "table 'orders' lacks required column",
        ),
        (
            lambda raw: (
                raw.mkdir(),
                pd.DataFrame({"order_id": pd.Series(dtype=str)}).to_parquet(raw / "orders.parquet"),
            ),
            "table 'orders' is empty",
        ),
    ],
)
def test_bad_input_gets_one_line_and_writes_nothing(tmp_path, make_input, message):
    raw = tmp_path / "raw"
    make_input(raw)
    home = tmp_path / "home"
    result = _custlab(home, "features", "--raw", str(raw))
    assert result.returncode == 2
    error_lines = [line for line in result.stderr.splitlines() if "custlab: error" in line]
    assert len(error_lines) == 1
    assert pd.Series(error_lines).str.contains(message, regex=True).all()
    assert not (home / "offline").exists() and not (home / "feast").exists()


def test_training_without_features_says_what_to_run(tmp_path):
    result = _custlab(tmp_path, "train", "--task", "churn")
    assert result.returncode == 2
    assert [line for line in result.stderr.splitlines() if "error" in line] == [
        f"custlab: error: no feature snapshots in {tmp_path}/offline; run 'custlab features' first"
    ]


MAPPINGS = Path(__file__).resolve().parents[2] / "features" / "mappings"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def test_ingest_says_what_happened_in_one_line(tmp_path):
    result = _custlab(
        tmp_path,
        "ingest",
        "--source", str(FIXTURES / "online_retail_lines.csv"),
        "--mapping", str(MAPPINGS / "online_retail.yaml"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines() == [
        "orders: 21 rows in = 14 kept + 7 quarantined (bad_timestamp 1; bad_unit_price 1; "
        "duplicate_row 1; excluded_non_product 1; missing_customer_id 1; "
        "non_positive_amount 1; timestamp_out_of_range 1); 11 rows written; "
        "1 flagged extreme (kept)"
    ]
    assert (tmp_path / "raw" / "orders.parquet").exists()


@pytest.mark.parametrize(
    ("source_text", "message"),
    [
        (None, "source file .* not found"),
        ("", "cannot read .*"),
        ("InvoiceNo,CustomerID\n1,2\n", "lacks column\\(s\\) InvoiceDate, Quantity"),
    ],
)
def test_ingest_bad_source_gets_one_line_and_writes_nothing(tmp_path, source_text, message):
    source = tmp_path / "export.csv"
    if source_text is not None:
        source.write_text(source_text)
    home = tmp_path / "home"
    result = _custlab(
        home, "ingest", "--source", str(source), "--mapping", str(MAPPINGS / "online_retail.yaml")
    )
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if "custlab: error" in line]
    assert len(errors) == 1 and re.search(message, errors[0])
    assert not home.exists()
