"""One task's weekly run on a copy of the demo's home: what it compares and what it
refuses."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from custlab.settings import Settings
from features.errors import CustlabError
from features.store import latest_as_of, read_features
from monitoring.weekly import latest_week, monitor_week
from serving.predictions import PREDICTIONS
from training.tasks import get_task

pytestmark = [pytest.mark.slow]


@pytest.fixture
def home(demo_home: Path, tmp_path: Path) -> Settings:
    copy = tmp_path / "home"
    shutil.copytree(demo_home, copy, ignore=shutil.ignore_patterns("reports", "predictions"))
    return Settings(home=copy)


def log_week(settings: Settings, task: str, rows: list[dict]) -> None:
    when = latest_week(settings).start + pd.Timedelta(days=2)
    folder = settings.prediction_log_dir / task / f"date={when:%Y-%m-%d}"
    folder.mkdir(parents=True)
    base = {"caller": "app", "feature_timestamp": "", "unknown": False, "features": None}
    table = pa.Table.from_pylist(
        [base | {"logged_at": when.to_pydatetime()} | row for row in rows], schema=PREDICTIONS
    )
    pq.write_table(table, folder / "part-0.parquet")


def test_a_served_week_compares_the_served_customers_and_the_shadow(home: Settings) -> None:
    rows = read_features(home, ["recency_days"], [latest_as_of(home)])
    served = rows[rows["recency_days"] <= 365]["customer_id"].head(400).tolist()
    log_week(
        home,
        "churn",
        [
            {"customer_id": c, "source": source, "model_version": v, "score": s, "tier": "low"}
            for c in served
            for source, v, s in (("online", "1", 0.2), ("shadow", "9", 0.25))
        ],
    )
    result = monitor_week(home, get_task("churn"), latest_week(home))
    assert result.evidence.source == "prediction log (400 customers served)"
    assert result.evidence.rows == 400
    shadow = result.evidence.shadow
    assert shadow is not None and (shadow.customers, shadow.challenger) == (400, "9")
    assert shadow.mean_abs_difference == pytest.approx(0.05)
    assert "shadow challenger" in (result.folder / "index.html").read_text()


def test_an_empty_week_is_no_verdict_not_a_crash(home: Settings) -> None:
    # Customers served that the week's snapshot does not hold leave no row to judge.
    log_week(
        home,
        "churn",
        [{"customer_id": "ghost", "source": "online", "model_version": "1", "score": 0.5}],
    )
    result = monitor_week(home, get_task("churn"), latest_week(home))
    assert result.evidence.rows == 0
    assert result.verdict.action == "nothing" and "0 scored rows" in result.verdict.reasons[0]
    assert all(not c.judged for c in result.evidence.drift.columns.values())


def test_the_default_week_is_the_newest_complete_one(home: Settings) -> None:
    # The newest snapshot is taken as the data ends: its own week has no data yet.
    assert latest_week(home).end == latest_as_of(home)


def test_a_week_without_a_snapshot_is_refused_naming_what_there_is(home: Settings) -> None:
    with pytest.raises(CustlabError, match=r"no snapshot as of .* snapshots cover"):
        monitor_week(home, get_task("churn"), latest_week(home).shifted(5))


def test_a_policy_naming_a_feature_the_champion_lacks_is_refused(home: Settings) -> None:
    (home.home / "policies").mkdir()
    (home.home / "policies" / "churn.yaml").write_text("key_features: [shoe_size]\n")
    with pytest.raises(CustlabError, match="shoe_size"):
        monitor_week(home, get_task("churn"), latest_week(home))
