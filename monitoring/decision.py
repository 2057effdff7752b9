"""The weekly verdict of a task, from its evidence and its policy: retrain, alert or
nothing, with every reason that led there.

In order: too few rows decide nothing; broken data (a feature's missing share rising, a
feed's volume falling) is an alert and never a retrain; a model that no longer holds
(its matured performance fell, the customers' outcomes shifted, a key feature drifted)
is retrained unless one was retrained within the cooldown; covariate drift alone is an
alert, since the model may well hold for the new mix of customers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd

from monitoring.columns import ColumnDrift, DriftSummary
from monitoring.mix import MixShift
from monitoring.outcomes import Outcome
from monitoring.policy import MonitorPolicy
from monitoring.quality import Quality
from monitoring.shadow import ShadowComparison
from monitoring.weeks import IsoWeek

Action = Literal["retrain", "alert", "nothing"]
# What the verdict rests on, for reviewing it once labels mature: "stale" (the model no
# longer holds, whether retrained now, later or not in the cooldown), "quality" (broken
# data), "covariate" (the customers changed, the model may hold), "quiet", "few rows".
Basis = Literal["stale", "quality", "covariate", "quiet", "few rows"]


@dataclass(frozen=True)
class Performance:
    """The champion of a past week, on that week's labels once they matured."""

    week: IsoWeek
    version: str
    metric: str
    value: float
    champion_test: float  # its own test score, from its version record
    rows: int

    @property
    def drop(self) -> float:
        return self.champion_test - self.value

    def describe(self) -> str:
        return (
            f"{self.metric} {self.value:.4f} on week {self.week} (labels matured, "
            f"{self.rows:,} rows) against v{self.version}'s test {self.champion_test:.4f}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "week": str(self.week),
            "version": self.version,
            "metric": self.metric,
            "value": self.value,
            "champion_test": self.champion_test,
            "drop": self.drop,
            "rows": self.rows,
        }


@dataclass(frozen=True)
class Evidence:
    week: IsoWeek
    version: str
    source: str  # where the week's rows came from
    rows: int
    drift: DriftSummary  # the features
    prediction: ColumnDrift
    quality: Quality
    outcomes: tuple[Outcome, ...] = ()
    performance: Performance | None = None
    key_features: tuple[str, ...] = field(default=())
    mix: tuple[MixShift, ...] = ()
    shadow: ShadowComparison | None = None  # reported, not decided on

    @property
    def key_drifted(self) -> list[str]:
        return [name for name in self.key_features if self.drift.columns[name].drifted]

    def to_dict(self) -> dict[str, Any]:
        return {
            "week": str(self.week),
            "version": self.version,
            "source": self.source,
            "rows": self.rows,
            "drift_share": self.drift.share_drifted,
            "drifted_features": self.drift.drifted_columns,
            "unjudged_features": self.drift.unjudged_columns,
            "key_features_drifted": self.key_drifted,
            "prediction_drift": {
                "method": self.prediction.method,
                "score": self.prediction.score,
                "drifted": self.prediction.drifted,
            },
            "quality": self.quality.to_dict(),
            "outcomes": [o.to_dict() for o in self.outcomes],
            "performance": self.performance.to_dict() if self.performance else None,
            "mix": [m.to_dict() for m in self.mix],
            "shadow": self.shadow.to_dict() if self.shadow else None,
        }


@dataclass(frozen=True)
class Verdict:
    action: Action
    reasons: tuple[str, ...]
    basis: Basis
    retrain_due: pd.Timestamp | None = None  # a retrain decided, waiting for labels

    def describe(self) -> str:
        return f"{self.action}: " + "; ".join(self.reasons)


def stale_reasons(policy: MonitorPolicy, evidence: Evidence) -> list[str]:
    """The signs that the model no longer holds: its matured performance fell, the
    customers' outcomes shifted, a key feature drifted."""
    stale = []
    if evidence.performance and evidence.performance.drop >= policy.performance_drop:
        stale.append(f"performance fell: {evidence.performance.describe()}")
    stale += [
        f"outcome shifted: {o.describe()}"
        for o in evidence.outcomes
        if o.shifted(policy.outcome_change, policy.outcome_p_value)
    ]
    if drifted := evidence.key_drifted:
        stale.append("key features drifted: " + ", ".join(drifted))
    return stale


def decide(
    policy: MonitorPolicy,
    evidence: Evidence,
    last_retrain: IsoWeek | None = None,
    labels_due: pd.Timestamp | None = None,
    pending: tuple[IsoWeek, pd.Timestamp] | None = None,
) -> Verdict:
    """The verdict of one week.

    Args:
        policy: The task's thresholds.
        evidence: The week's.
        last_retrain: The week of the task's last retrain, for the cooldown.
        labels_due: When labels from after the change began will have matured enough
            for a retrain to be tested on them. Until then a retrain would learn and be
            judged on the world before the change only, so it waits (an alert); a fall
            in matured performance retrains at once.
        pending: A retrain decided in an earlier week and when its labels are due: it
            goes ahead once they are, whatever this week shows (short of broken data).
    """
    if evidence.rows < policy.min_sample:
        return Verdict(
            "nothing",
            (f"{evidence.rows} scored rows, fewer than the policy's {policy.min_sample}",),
            "few rows",
        )
    broken = [m.describe() for m in evidence.quality.missing] + [
        v.describe() for v in evidence.quality.volumes if v.change <= -policy.volume_drop
    ]
    if broken:
        return Verdict("alert", ("data quality: " + "; ".join(broken),), "quality")

    if stale := stale_reasons(policy, evidence):
        fell = evidence.performance and evidence.performance.drop >= policy.performance_drop
        if not fell and labels_due is not None and evidence.week.end < labels_due:
            wait = f"retrain waits for post-change labels (matured by {labels_due:%Y-%m-%d})"
            return Verdict("alert", (*stale, wait), "stale", retrain_due=labels_due)
        if last_retrain is not None and 0 <= last_retrain.weeks_until(evidence.week) < (
            policy.cooldown_weeks
        ):
            cooldown = f"cooldown: retrained in week {last_retrain}"
            return Verdict("alert", (*stale, cooldown), "stale")
        return Verdict("retrain", tuple(stale), "stale")
    if pending is not None:
        decided, due = pending
        if evidence.week.end >= due:
            return Verdict(
                "retrain",
                (f"retrain decided in week {decided}: labels from after the change have matured",),
                "stale",
            )
        wait = f"retrain decided in week {decided} waits for labels (matured by {due:%Y-%m-%d})"
        return Verdict("alert", (wait,), "stale", retrain_due=due)

    covariate = []
    if evidence.drift.dataset_drift:
        covariate.append(f"covariate drift: {evidence.drift.describe()}")
    covariate += [f"covariate drift: {m.describe()}" for m in evidence.mix if m.shifted]
    if evidence.prediction.drifted:
        covariate.append(
            f"prediction drift ({evidence.prediction.method} {evidence.prediction.score:.3g})"
        )
    if covariate:
        return Verdict(
            "alert", (*covariate, "no sign yet that the model no longer holds"), "covariate"
        )
    held = [f"{100 * evidence.drift.share_drifted:.0f}% of features drifted"]
    if evidence.performance:
        held.append(evidence.performance.describe())
    return Verdict("nothing", tuple(held), "quiet")
