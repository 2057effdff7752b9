"""The weekly loop on simulated worlds with and without drift, at a small scale: a
champion trained weeks before, then week after week of monitoring with retraining on.

Each world has 4,000 customers over 80 weeks; the scenario (if any) starts in week 60;
propensity (a 30-day horizon, so post-change labels mature within the weeks watched) is
trained as known at week 56 and monitored from week 57.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from custlab import pipeline
from custlab.settings import Settings
from features.contract import read_raw_tables
from features.simulate import WorldSpec, parse_scenario
from features.store import read_features
from monitoring.audit import read_records
from monitoring.browser import check_page
from monitoring.retrain import retrainer
from monitoring.weekly import WeekResult
from monitoring.weeks import IsoWeek
from training.model_input import predict
from training.record import ModelRecord
from training.registry import load_version, use_tracking
from training.split import SplitSpec
from training.tasks import get_task
from training.tune import TuneSpec

pytestmark = [pytest.mark.integration, pytest.mark.slow]

START = pd.Timestamp("2024-01-01", tz="UTC")
CHANGE_WEEK = 60
TRAINED_WEEK = 56
TUNE = TuneSpec(n_trials=2, max_rounds=300)
SPLIT = SplitSpec(test_dates=2, valid_dates=2, train_every=8)
TASK = "propensity"


def week(index: int) -> IsoWeek:
    return IsoWeek.of(START + pd.Timedelta(weeks=index))


def monitored(home: Path, scenario: str | None, first: int, last: int) -> list[WeekResult]:
    settings = Settings(home=home)
    when = f"{week(CHANGE_WEEK).start:%Y-%m-%d}"
    scenarios = (parse_scenario(f"{scenario}@{when}"),) if scenario else ()
    pipeline.quiet_libraries()
    pipeline.simulate(settings, WorldSpec(customers=4_000, weeks=80, seed=11, scenarios=scenarios))
    pipeline.build_features(settings)
    first_champion = retrainer(settings, TUNE, SPLIT).train(
        get_task(TASK), week(TRAINED_WEEK).start
    )
    assert first_champion.promoted
    return pipeline.monitor(
        settings, [TASK], week=str(week(last)), since=str(week(first)), tune=TUNE, split=SPLIT
    )


def retrained(results: list[WeekResult]) -> list[WeekResult]:
    return [r for r in results if r.retrained is not None]


def test_a_stable_world_stays_quiet_and_its_decisions_hold(tmp_path: Path) -> None:
    results = monitored(tmp_path, None, TRAINED_WEEK + 1, TRAINED_WEEK + 12)
    assert len(results) == 12
    # Quiet: not a retrain, not even an alert.
    assert {r.verdict.action for r in results} == {"nothing"}
    reviews = read_records(tmp_path / "reports" / "audit.jsonl", "review")
    # Weeks whose 30-day labels matured within the run were checked, and held.
    assert len(reviews) >= 5 and all(r["right"] for r in reviews)


def test_a_price_shock_is_flagged_then_retrained_on_post_shock_labels(tmp_path: Path) -> None:
    results = monitored(tmp_path, "price_shock", TRAINED_WEEK + 1, TRAINED_WEEK + 12)
    flagged = [r for r in results if any("outcome shifted" in x for x in r.verdict.reasons)]
    assert flagged and flagged[0].week <= week(CHANGE_WEEK + 2)
    assert all(r.week >= week(CHANGE_WEEK) for r in flagged)
    (first, *_) = retrained(results)
    # The retrain waited until labels from after the shock had matured, so the gate
    # judged the challenger on post-shock weeks.
    assert first.week.end >= week(CHANGE_WEEK).start + pd.Timedelta(days=30 + 7)
    settings = Settings(home=tmp_path)
    use_tracking(settings, "custlab-propensity")
    record = ModelRecord.read("custlab-propensity", first.retrained.version)
    assert pd.Timestamp(record.test_window.first, tz="UTC") >= week(CHANGE_WEEK).start

    # The chain is on record: evidence, decision, new version, gate result.
    (audited,) = [
        d
        for d in read_records(tmp_path / "reports" / "audit.jsonl", "decision")
        if d["week"] == str(first.week)
    ]
    assert audited["verdict"]["action"] == "retrain"
    assert audited["retrained"]["version"] == first.retrained.version
    assert audited["retrained"]["gate"] == first.retrained.reason
    run = MlflowClient().get_run(audited["mlflow_run_id"])
    assert run.data.tags["retrain_version"] == first.retrained.version
    assert run.data.tags["verdict"] == "retrain"

    # On post-shock weeks neither trained on nor tested by the gate, the version
    # monitoring made scores at least as well as the champion it was compared with.
    task = get_task(TASK)
    later = pd.DatetimeIndex([week(i).start for i in range(TRAINED_WEEK + 13, 74)])
    rows = read_features(settings, record.features, later)
    labels = task.label_frame(read_raw_tables(settings.raw_dir), later)
    frame = rows.merge(labels, on=["customer_id", "event_timestamp"])

    def score(version: str) -> float:
        model = ModelRecord.read("custlab-propensity", version)
        prediction = predict(load_version("custlab-propensity", version), frame, model.calibration)
        return task.metrics(frame, prediction)["brier"]

    old, new = score("1"), score(first.retrained.version)
    assert np.isfinite(old) and new <= old

    # Once labelled, the weeks that said the model no longer held are judged right: the
    # retrain they led to was promoted.
    reviews = {
        r["reviewed_week"]: r for r in read_records(tmp_path / "reports" / "audit.jsonl", "review")
    }
    judged = [reviews[str(r.week)] for r in flagged if str(r.week) in reviews]
    assert judged and all(r["right"] for r in judged) == first.retrained.promoted

    index = tmp_path / "reports" / "index.html"
    assert first.retrained.version in index.read_text()
    seen = check_page(index)
    assert seen.ok, (seen.console_errors, seen.page_errors, seen.external_urls)


def test_a_tracking_outage_is_a_data_quality_alert_not_a_retrain(tmp_path: Path) -> None:
    results = monitored(tmp_path, "tracking_outage", CHANGE_WEEK - 1, CHANGE_WEEK + 2)
    assert retrained(results) == []
    before, *after = results
    assert before.verdict.action != "alert" or "data quality" not in before.verdict.reasons[0]
    alerts = [r for r in after if r.verdict.action == "alert"]
    assert alerts and all("data quality" in r.verdict.reasons[0] for r in alerts)
    assert any("events" in r.verdict.reasons[0] for r in alerts)


def test_a_channel_mix_is_reported_and_retrains_only_on_a_performance_drop(
    tmp_path: Path,
) -> None:
    results = monitored(tmp_path, "channel_mix", CHANGE_WEEK - 1, CHANGE_WEEK + 5)
    before, *after = results
    assert not any(m.shifted for m in before.evidence.mix)
    reported = [
        r for r in after if any("acquisition_channel of the newest" in x for x in r.verdict.reasons)
    ]
    assert reported and reported[0].week <= week(CHANGE_WEEK + 3)
    for result in retrained(results):
        assert any("performance fell" in reason for reason in result.verdict.reasons)
