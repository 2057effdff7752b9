"""A labelled table through the whole path: Feast, nested cross-validation, the registry,
the gate and serving, on a table custlab did not simulate."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from custlab import pipeline
from custlab.settings import Settings
from features.errors import CustlabError
from features.labelled import labelled_folder
from serving.models import load_champion_model
from serving.predictions import PredictionLog, read_predictions
from serving.scorers import UNKNOWN_CUSTOMER, Scoring
from training.labelled import FOLDS
from training.record import ModelRecord
from training.registry import GateFailed, use_tracking
from training.tasks import get_task
from training.tune import TuneSpec

TUNING = TuneSpec(n_trials=2, max_rounds=120)
MAPPING = """\
name: accounts
task: churn
source: {separator: ";"}
entity: account
label: {column: left, positive: ["true"]}
drop: [left_reason]
"""


def accounts_export(rows: int = 900, seed: int = 3) -> str:
    """A subscription export with a churn flag that depends on the plan, the monthly fee
    and the tenure (a tenth of the fees blank), and a column that leaks the label."""
    rng = np.random.default_rng(seed)
    plan = rng.choice(["monthly", "yearly", "two-year"], rows, p=[0.5, 0.3, 0.2])
    fee = rng.gamma(4.0, 15.0, rows)
    tenure = rng.integers(0, 72, rows)
    logit = -1.0 + 1.6 * (plan == "monthly") + 0.02 * (fee - 60) - 0.04 * tenure
    left = rng.random(rows) < 1 / (1 + np.exp(-logit))
    fees = [f"{v:.2f}" if rng.random() > 0.1 else "" for v in fee]
    lines = ["account;plan;fee;tenure;left;left_reason"]
    lines += [
        f"A{i:05d};{p};{f};{t};{'TRUE' if y else 'false'};{'moved' if y else ''}"
        for i, (p, f, t, y) in enumerate(zip(plan, fees, tenure, left, strict=True))
    ]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def labelled_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("labelled-home")
    source = home.parent / "accounts.csv"
    source.write_text(accounts_export())
    mapping = home.parent / "accounts.yaml"
    mapping.write_text(MAPPING)
    with pytest.MonkeyPatch.context() as environment:
        # The service reads its settings from the environment.
        environment.setenv("CUSTLAB_HOME", str(home))
        pipeline.quiet_libraries()
        pipeline.ingest_labelled(Settings(), source, mapping)
        yield home


@pytest.fixture(scope="module")
def trained(labelled_home: Path) -> pipeline.TrainOutcome:
    return pipeline.train(Settings(), "churn", TUNING)


def test_cross_validation_reports_folds_and_beats_chance(trained) -> None:
    assert trained.metrics["roc_auc"] > 0.75
    assert 0 < trained.metrics["roc_auc_std"] < 0.1
    assert set(trained.baseline_metrics) == {"logistic_all_features"}
    assert trained.baseline_metrics["logistic_all_features"]["roc_auc"] > 0.75
    # One out-of-fold prediction per row, none missing.
    assert len(trained.prediction) == len(trained.test) == 900
    assert not np.isnan(trained.prediction).any()
    # The gate judged the margin over the baseline, whatever the verdict.
    assert "logistic_all_features" in trained.reason


def test_every_fold_is_a_nested_run_and_the_record_names_the_table(trained) -> None:
    settings = Settings()
    use_tracking(settings, "custlab-churn")
    children = mlflow.search_runs(
        filter_string=f"tags.mlflow.parentRunId = '{trained.run_id}'", output_format="list"
    )
    names = sorted(run.info.run_name for run in children)
    assert names == sorted([*(f"fold-{k}" for k in range(1, FOLDS + 1)), "final-fit"])
    record = ModelRecord.read("custlab-churn", trained.model_version)
    assert record.labelled_table == "accounts"
    assert record.feature_service == "churn_accounts_v1"
    assert set(record.features) == {"plan", "fee", "tenure"}  # left_reason dropped


def test_serving_scores_the_table_customers_by_the_ids_the_export_gave(
    labelled_home: Path, trained
) -> None:
    settings = Settings()
    if not trained.promoted:
        pipeline.promote(settings, "churn", trained.model_version, "serving test")
    model = load_champion_model(settings, get_task("churn"))
    assert model.task.population_rule == "the customers of labelled table accounts"
    scoring = Scoring(settings, PredictionLog(labelled_home / "log"))
    (scorer,), _ = scoring.served(["churn"])
    # The application sends the export's own id; the store holds its pseudonym.
    stored = set(
        pd.read_parquet(labelled_folder(settings, "accounts") / "features.parquet")["customer_id"]
    )
    assert "A00001" not in stored
    first, second = scoring.answers([scorer], ["A00001", "not-a-customer"])["churn"]
    assert 0 < first["score"] < 1 and first["tier"] in {"high", "medium", "low"}
    assert first["warnings"] == []  # inside the population: everyone in the table
    assert {r["feature"] for r in first["reasons"]} <= {"plan", "fee", "tenure"}
    assert second["warnings"] == [UNKNOWN_CUSTOMER]
    scoring.close()
    logged = read_predictions(labelled_home / "log", "churn")
    assert set(logged["customer_id"]) <= stored | {
        scorer.source.door.store_ids(["not-a-customer"])[0]
    }
    assert "A00001" not in set(logged["customer_id"])


def test_batch_scores_every_customer_of_the_table(labelled_home: Path, trained) -> None:
    """A home with a labelled table and no event features: the batch scores the table's
    customers with its champion, as of the table's own newest date."""
    from serving.batch import score_batch

    settings = Settings()
    if not trained.promoted:
        pipeline.promote(settings, "churn", trained.model_version, "batch test")
    batch = score_batch(settings)
    assert set(batch.tasks) == {"churn"}
    features = pd.read_parquet(labelled_folder(settings, "accounts") / "features.parquet")
    scored = pd.read_parquet(batch.tasks["churn"].path)
    assert sorted(scored["customer_id"]) == sorted(features["customer_id"].unique())
    assert scored["score"].between(0, 1).all() and scored["in_population"].all()
    assert batch.as_of == features["event_timestamp"].max()


def test_a_champion_from_other_data_is_not_compared_by_a_number(trained) -> None:
    from features.labelled import labelled_tables
    from training.labelled import labelled_task, recorded_champion_metric

    settings = Settings()
    use_tracking(settings, "custlab-churn")
    pipeline.promote(settings, "churn", trained.model_version, "gate test")
    (table,) = labelled_tables(settings)
    task = labelled_task(get_task("churn"), table)
    record = ModelRecord.read("custlab-churn", trained.model_version)
    assert recorded_champion_metric(task, table, record.data_fingerprint) == pytest.approx(
        trained.metrics["roc_auc"]
    )
    with pytest.raises(GateFailed, match="no score compares the two fairly"):
        recorded_champion_metric(task, table, "other rows")


def test_the_table_to_train_on_is_never_guessed(labelled_home: Path, small_world) -> None:
    from features.tables import replace_folder

    settings = Settings()
    assert pipeline.choose_table(settings, "churn", None).name == "accounts"
    assert pipeline.choose_table(settings, "churn", "events") is None
    with pytest.raises(CustlabError, match="labelled for churn, not propensity"):
        pipeline.choose_table(settings, "propensity", "accounts")
    with pytest.raises(CustlabError, match="no labelled table 'other'"):
        pipeline.choose_table(settings, "churn", "other")
    # With event features beside the table, the user says which.
    replace_folder(settings.raw_dir, small_world.tables())
    pipeline.build_features(settings)
    with pytest.raises(CustlabError, match="pass --table accounts or --table events"):
        pipeline.choose_table(settings, "churn", None)
    # Publishing the event features kept the table's rows online.
    from features.store import open_store

    store = open_store(settings)
    assert "labelled_accounts" in {view.name for view in store.list_feature_views()}


def test_a_labelled_table_for_a_task_that_is_not_yes_no_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "accounts.csv"
    source.write_text(accounts_export(rows=50))
    mapping = tmp_path / "accounts.yaml"
    mapping.write_text(MAPPING.replace("task: churn", "task: clv"))
    settings = Settings(home=tmp_path / "home")
    with pytest.raises(CustlabError, match="clv, which is not a yes/no task"):
        pipeline.ingest_labelled(settings, source, mapping)
    assert not (settings.home / "labelled").exists()
