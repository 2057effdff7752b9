"""The weekly verdict, rule by rule, on hand-made evidence."""

from __future__ import annotations

import pandas as pd

from monitoring.columns import ColumnDrift, DriftSummary
from monitoring.decision import Evidence, Performance, decide
from monitoring.outcomes import Outcome
from monitoring.policy import MonitorPolicy
from monitoring.quality import FeedVolume, MissingRise, Quality
from monitoring.weeks import IsoWeek

WEEK = IsoWeek.parse("2025-W20")
CLEAN = Quality((), ())
POLICY = MonitorPolicy(key_features=("spend_13w",), min_sample=100, cooldown_weeks=4)


def column(drifted: bool) -> ColumnDrift:
    return ColumnDrift("Wasserstein distance (normed)", 0.3 if drifted else 0.01, 0.1, drifted)


def evidence(
    drifted: tuple[str, ...] = (),
    rows: int = 1_000,
    quality: Quality = CLEAN,
    outcomes: tuple[Outcome, ...] = (),
    performance: Performance | None = None,
    prediction: bool = False,
) -> Evidence:
    names = ["spend_13w", "tenure_days", "region"]
    columns = {name: column(name in drifted) for name in names}
    share = len(drifted) / len(names)
    return Evidence(
        week=WEEK,
        version="3",
        source="snapshot",
        rows=rows,
        drift=DriftSummary(share, share >= POLICY.drift_share, POLICY.drift_share, columns),
        prediction=column(prediction),
        quality=quality,
        outcomes=outcomes,
        performance=performance,
        key_features=POLICY.key_features,
    )


def test_a_quiet_week_is_nothing() -> None:
    assert decide(POLICY, evidence(drifted=("tenure_days",))).action == "nothing"


def test_too_few_rows_decide_nothing_whatever_else() -> None:
    verdict = decide(POLICY, evidence(drifted=("spend_13w",), rows=99))
    assert verdict.action == "nothing" and "99 scored rows" in verdict.reasons[0]


def test_broken_data_is_an_alert_never_a_retrain() -> None:
    broken = Quality((MissingRise("days_since_last_event", 0.02, 0.6),), ())
    verdict = decide(POLICY, evidence(drifted=("spend_13w",), quality=broken))
    assert verdict.action == "alert"
    assert "data quality" in verdict.reasons[0] and "days_since_last_event" in verdict.reasons[0]
    feed_fell = Quality((), (FeedVolume("events", 4.0, 1.5),))
    assert decide(POLICY, evidence(quality=feed_fell)).action == "alert"
    # A small dip of a feed is no alert.
    assert decide(
        POLICY, evidence(quality=Quality((), (FeedVolume("events", 4.0, 3.5),)))
    ).action == ("nothing")


def test_covariate_drift_alone_is_an_alert() -> None:
    verdict = decide(POLICY, evidence(drifted=("tenure_days", "region")))
    assert verdict.action == "alert" and "covariate drift" in verdict.reasons[0]
    assert decide(POLICY, evidence(prediction=True)).action == "alert"


def test_signs_the_model_no_longer_holds_retrain() -> None:
    assert decide(POLICY, evidence(drifted=("spend_13w",))).action == "retrain"
    shifted = Outcome("typical order value", 50.0, 42.0, 1e-6)
    assert decide(POLICY, evidence(outcomes=(shifted,))).action == "retrain"
    fell = Performance(WEEK.shifted(-13), "3", "roc_auc", 0.80, 0.85, 2_000)
    verdict = decide(POLICY, evidence(performance=fell))
    assert verdict.action == "retrain" and "performance fell" in verdict.reasons[0]


def test_a_shift_too_small_or_too_uncertain_is_not_a_sign() -> None:
    small = Outcome("order rate", 0.10, 0.095, 1e-9)
    noisy = Outcome("typical order value", 50.0, 40.0, 0.01)
    assert decide(POLICY, evidence(outcomes=(small, noisy))).action == "nothing"


def test_the_cooldown_turns_a_retrain_into_an_alert() -> None:
    stale = evidence(drifted=("spend_13w",))
    verdict = decide(POLICY, stale, last_retrain=WEEK.shifted(-3))
    assert verdict.action == "alert" and "cooldown" in verdict.reasons[-1]
    assert decide(POLICY, stale, last_retrain=WEEK.shifted(-4)).action == "retrain"


def test_a_retrain_waits_for_labels_from_after_the_change() -> None:
    shifted = Outcome("typical order value", 50.0, 42.0, 1e-6)
    later = WEEK.end + pd.Timedelta(days=20)
    verdict = decide(POLICY, evidence(outcomes=(shifted,)), labels_due=later)
    assert verdict.action == "alert" and "waits for post-change labels" in verdict.reasons[-1]
    assert decide(POLICY, evidence(outcomes=(shifted,)), labels_due=WEEK.end).action == "retrain"
    # Matured labels showing the fall need no wait.
    fell = Performance(WEEK.shifted(-13), "3", "roc_auc", 0.80, 0.85, 2_000)
    assert decide(POLICY, evidence(performance=fell), labels_due=later).action == "retrain"


def test_a_waiting_retrain_goes_ahead_once_due_even_on_a_quiet_week() -> None:
    decided = WEEK.shifted(-4)
    due = WEEK.end - pd.Timedelta(days=1)
    verdict = decide(POLICY, evidence(), pending=(decided, due))
    assert verdict.action == "retrain" and str(decided) in verdict.reasons[0]
    early = decide(POLICY, evidence(), pending=(decided, WEEK.end + pd.Timedelta(days=3)))
    assert early.action == "alert" and early.retrain_due is not None
    # Broken data still comes first.
    broken = Quality((MissingRise("days_since_last_event", 0.02, 0.6),), ())
    assert decide(POLICY, evidence(quality=broken), pending=(decided, due)).action == "alert"
