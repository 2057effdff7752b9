"""The weekly run of one task: the week's scored customers against the champion's own
test window, the evidence, the verdict from the task's policy, the retrain it may call
for, and the record of all of it (MLflow, the audit trail, the week's folder).

The reference is the champion's test window (its version record says which as-of dates):
the newest rows it was judged on, so a stable world stays quiet. The current rows are
the customers of the week's snapshot (the one the online store served all week): those
the prediction log shows were served, or every customer when nothing was served (what
the batch scores). Both sides hold the task's population only and carry the champion's
prediction as one more column.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from custlab.settings import Settings
from features.contract import ENTITY_KEY, EVENT_TIMESTAMP, read_raw_tables
from features.errors import CustlabError
from features.store import published_families, read_features, read_snapshots
from monitoring.audit import append_record
from monitoring.columns import DriftSummary
from monitoring.decision import Evidence, Performance, Verdict, decide, stale_reasons
from monitoring.drift import drift_report
from monitoring.history import change_began, last_retrain, pending_retrain, reviews_and_newest
from monitoring.index import write_week_page
from monitoring.layout import PREDICTION, PREDICTIONS_FILE, audit_path, week_folder
from monitoring.mix import TENURE, MixShift, mix_shifts
from monitoring.outcomes import OWN_AVERAGE, weekly_outcomes
from monitoring.policy import MonitorPolicy, load_policy
from monitoring.quality import Quality, feed_volumes, missing_rises
from monitoring.shadow import compare_shadow
from monitoring.weeks import IsoWeek
from monitoring.workspace import publish_week, workspace_path
from serving.predictions import read_predictions
from training.model_input import categorical_features, predict
from training.record import ModelRecord
from training.registry import champion_version, load_version, use_tracking
from training.tasks import TaskSpec

logger = logging.getLogger(__name__)

MONITOR_EXPERIMENT = "custlab-monitoring"
# Columns Evidently renders a week (the verdicts cover every column): the prediction,
# the key features, then the drifted ones. Each costs Evidently a second or more.
REPORT_COLUMNS = 12


@dataclass(frozen=True)
class Retrained:
    """What a retrain decided by monitoring made: the version and the gate's verdict."""

    run_id: str
    version: str
    promoted: bool
    reason: str


@dataclass(frozen=True)
class Retrain:
    """Trains a task as if at the given moment (only labels matured by then); its split
    tests on the newest ``test_dates`` matured as-of dates."""

    train: Callable[[TaskSpec, pd.Timestamp], Retrained]
    test_dates: int


@dataclass(frozen=True)
class WeekResult:
    task: str
    week: IsoWeek
    evidence: Evidence
    verdict: Verdict
    retrained: Retrained | None
    folder: Path
    example_customer: str

    def describe(self) -> str:
        line = f"{self.task} {self.week}: {self.verdict.describe()}"
        if self.retrained:
            moved = "promoted" if self.retrained.promoted else "not promoted"
            line += f" -> v{self.retrained.version} {moved} ({self.retrained.reason})"
        return line


def _champion(task: TaskSpec) -> tuple[str, ModelRecord]:
    version = champion_version(task.registered_model)
    record = ModelRecord.read(task.registered_model, version)
    if record.labelled_table is not None:
        raise CustlabError(
            f"{task.registered_model} v{version} learned from labelled table "
            f"{record.labelled_table}, which has no weeks to monitor"
        )
    return version, record


def _scored(
    settings: Settings, task: TaskSpec, version: str, record: ModelRecord, dates: pd.DatetimeIndex
) -> pd.DataFrame:
    """The population's snapshot rows at ``dates`` with the champion's prediction (one
    number a row: a multiclass model's is the probability of its top class)."""
    booster = load_version(task.registered_model, version)
    rows = read_features(settings, record.features, dates)
    rows = rows[task.population(rows)].reset_index(drop=True)
    prediction = predict(booster, rows, record.calibration)
    if prediction.ndim == 2:
        for i, name in enumerate(record.classes):
            rows[f"p_{name}"] = prediction[:, i]
        rows[PREDICTION] = prediction.max(axis=1)
    else:
        rows[PREDICTION] = prediction
    return rows


def _week_log(settings: Settings, task: TaskSpec, week: IsoWeek) -> pd.DataFrame:
    """The prediction log's records of ``week``."""
    log = read_predictions(settings.prediction_log_dir, task.name)
    if log.empty:
        return log
    return log[(log["logged_at"] >= week.start) & (log["logged_at"] < week.end)]


def _served(log: pd.DataFrame) -> pd.Index:
    """The known customers a week's log shows the service scored online (pseudonyms)."""
    if log.empty:
        return pd.Index([])
    online = log[(log["source"] == "online") & ~log["unknown"].astype(bool)]
    return pd.Index(online[ENTITY_KEY].unique())


def _week_before(
    settings: Settings,
    task: TaskSpec,
    record: ModelRecord,
    week: IsoWeek,
    stamps: pd.DatetimeIndex,
    reference: pd.DataFrame,
) -> pd.DataFrame:
    """The population's rows of the week before, which a feature's missing share is
    held against: a feed that breaks moves it from one week to the next, while a
    share that grows as the customer base ages (a window with no order leaves a
    ratio undefined) drifts slowly away from an old reference. The reference where
    there is no week before."""
    before = week.shifted(-1).start
    if before not in stamps:
        return reference
    rows = read_features(settings, record.features, [before])
    return rows[task.population(rows)]


def _snapshot_columns(
    settings: Settings, family: str, columns: list[str], rows: pd.DataFrame
) -> pd.DataFrame:
    """``columns`` of a feature family's snapshot for each of ``rows`` (by customer and
    as-of date), whether or not the model reads them; empty where the family was not
    published."""
    keys = [ENTITY_KEY, EVENT_TIMESTAMP]
    if family not in published_families(settings):
        return rows[keys].assign(**{c: np.nan for c in columns})
    dates = pd.DatetimeIndex(rows[EVENT_TIMESTAMP].unique())
    values = read_snapshots(settings, family, keys + columns, dates)
    return rows[keys].merge(values, on=keys, how="left")


def _own_averages(
    settings: Settings, reference: pd.DataFrame, current: pd.DataFrame, week: IsoWeek
) -> dict[IsoWeek, pd.Series]:
    """Per week, its scored customers' own average order value as of the week's start."""
    averages = {}
    for rows, key in ((reference, None), (current, week)):
        scored = _snapshot_columns(settings, "orders", [OWN_AVERAGE], rows)
        for date, group in scored.groupby(EVENT_TIMESTAMP):
            averages[key or IsoWeek.of(date)] = group.set_index(ENTITY_KEY)[OWN_AVERAGE]
    averages.setdefault(week, pd.Series(dtype=np.float64))
    return averages


def _mix(
    settings: Settings, policy: MonitorPolicy, reference: pd.DataFrame, current: pd.DataFrame
) -> tuple[MixShift, ...]:
    """The newest customers' mix, read from the profile snapshot."""
    columns = [TENURE, *policy.mix_features]
    try:
        sides = [
            _snapshot_columns(settings, "profile", columns, rows) for rows in (reference, current)
        ]
    except CustlabError:
        return ()
    return mix_shifts(*sides, policy.mix_features, policy.mix_p_value)


def _features_only(summary: DriftSummary, features: list[str], share: float) -> DriftSummary:
    columns = {name: summary.columns[name] for name in features}
    drifted = sum(c.drifted for c in columns.values())
    fraction = drifted / len(columns) if columns else 0.0
    return DriftSummary(fraction, bool(columns) and fraction >= share, share, columns)


@dataclass(frozen=True)
class _WeekRows:
    """One task's compared rows of a week, and what they were read against."""

    version: str
    record: ModelRecord
    policy: MonitorPolicy
    stamps: pd.DatetimeIndex  # every snapshot date
    reference_dates: pd.DatetimeIndex
    reference: pd.DataFrame
    current: pd.DataFrame
    log: pd.DataFrame  # the prediction log's records of the week
    source: str


def _week_rows(settings: Settings, task: TaskSpec, week: IsoWeek) -> _WeekRows:
    """The champion's test window and the week's served (or every) customer, scored by
    the champion; the policy checked against the champion's inputs."""
    use_tracking(settings, task.registered_model)
    version, record = _champion(task)
    policy = load_policy(settings, task.name)
    unknown = sorted(set(policy.key_features) - set(record.features))
    if unknown:
        raise CustlabError(
            f"policy of {task.name}: key feature(s) {', '.join(unknown)} are not inputs of "
            f"{task.registered_model} v{version}"
        )
    stamps = pd.DatetimeIndex(
        read_snapshots(settings, "orders", [EVENT_TIMESTAMP])[EVENT_TIMESTAMP].unique()
    ).sort_values()
    if week.start not in stamps:
        raise CustlabError(
            f"no snapshot as of {week.start:%Y-%m-%d} (the Monday of {week}); snapshots cover "
            f"{stamps[0]:%Y-%m-%d} .. {stamps[-1]:%Y-%m-%d}"
        )
    reference_dates = record.test_window.as_of_dates(stamps)
    reference = _scored(settings, task, version, record, reference_dates)
    current = _scored(settings, task, version, record, pd.DatetimeIndex([week.start]))
    log = _week_log(settings, task, week)
    served = _served(log)
    source = "snapshot (nothing served online this week)"
    if len(served):
        current = current[current[ENTITY_KEY].isin(served)].reset_index(drop=True)
        source = f"prediction log ({len(served):,} customers served)"
    elif (settings.scores_dir / f"{week.start:%Y-%m-%d}" / f"{task.name}.parquet").exists():
        source = "batch scores"
    return _WeekRows(
        version, record, policy, stamps, reference_dates, reference, current, log, source
    )


def _evidence(
    settings: Settings,
    task: TaskSpec,
    week: IsoWeek,
    rows: _WeekRows,
    tables: dict[str, pd.DataFrame],
    performance: Performance | None,
) -> Evidence:
    """Everything the verdict reads; Evidently's reports written to the week's folder
    and published to the workspace on the way."""
    policy, record = rows.policy, rows.record
    reference, current = rows.reference, rows.current
    folder = week_folder(settings, task.name, week)
    categorical = categorical_features(record.features)
    numerical = [f for f in record.features if f not in categorical]
    summary = drift_report(
        reference,
        current,
        numerical=numerical + [PREDICTION],
        categorical=categorical,
        out_dir=folder,
        drift_share=policy.drift_share,
        max_reference_rows=20_000,
        seed=settings.seed,
        max_report_columns=REPORT_COLUMNS,
        first=[PREDICTION, *policy.key_features],
    )
    publish_week(workspace_path(settings), task.name, week.start.to_pydatetime(), folder)
    reference_weeks = [IsoWeek.of(d) for d in rows.reference_dates]
    own_average = _own_averages(settings, reference, current, week)
    scored = {w: len(c) for w, c in own_average.items()}
    before = _week_before(settings, task, record, week, rows.stamps, reference)
    return Evidence(
        week=week,
        version=rows.version,
        source=rows.source,
        rows=len(current),
        drift=_features_only(summary, record.features, policy.drift_share),
        prediction=summary.columns[PREDICTION],
        quality=Quality(
            missing_rises(before, current, record.features, policy.missing_share_rise),
            feed_volumes(tables, week, reference_weeks, scored),
        ),
        outcomes=weekly_outcomes(tables["orders"], week, reference_weeks, own_average),
        performance=performance,
        key_features=policy.key_features,
        mix=_mix(settings, policy, reference, current),
        shadow=compare_shadow(rows.log),
    )


def _verdict(
    settings: Settings,
    task: TaskSpec,
    policy: MonitorPolicy,
    evidence: Evidence,
    retrain: Retrain | None,
) -> tuple[Verdict, bool]:
    """The week's verdict, and whether its evidence said the model no longer holds. A
    retrain waits for labels from after the change began, enough for its test window."""
    stale = bool(stale_reasons(policy, evidence))
    labels_due = None
    if stale and retrain is not None:
        began = change_began(settings, task.name, evidence.week)
        labels_due = (
            began.start
            + pd.Timedelta(weeks=retrain.test_dates - 1)
            + pd.Timedelta(days=task.horizon_days)
        )
    verdict = decide(
        policy,
        evidence,
        last_retrain(settings, task.name),
        labels_due,
        pending_retrain(settings, task.name) if retrain is not None else None,
    )
    return verdict, stale


def monitor_week(
    settings: Settings, task: TaskSpec, week: IsoWeek, retrain: Retrain | None = None
) -> WeekResult:
    """Evidence, verdict and (when the verdict is retrain and ``retrain`` is given) the
    retrain of one task for one week, recorded in MLflow, the audit trail and the
    week's folder.

    Raises:
        CustlabError: No champion, no snapshot as of the week's Monday, a champion that
            learned from a labelled table, or a policy naming a feature it lacks.
    """
    rows = _week_rows(settings, task, week)
    tables = read_raw_tables(settings.raw_dir)
    reviews, newest = reviews_and_newest(settings, task, rows.policy, tables, week)
    evidence = _evidence(settings, task, week, rows, tables, newest)
    verdict, stale = _verdict(settings, task, rows.policy, evidence, retrain)
    folder = week_folder(settings, task.name, week)
    current = rows.current
    kept = current[[ENTITY_KEY, PREDICTION, *(c for c in current if c.startswith("p_"))]]
    kept.assign(model_version=rows.version).to_parquet(folder / PREDICTIONS_FILE, index=False)

    retrained = None
    if verdict.action == "retrain" and retrain is not None:
        logger.info("%s %s: retraining as of %s", task.name, week, f"{week.end:%Y-%m-%d}")
        retrained = retrain.train(task, week.end)
    result = WeekResult(
        task.name,
        week,
        evidence,
        verdict,
        retrained,
        folder,
        str(current[ENTITY_KEY].iloc[0]) if len(current) else "",
    )
    _record(settings, result, reviews, rows.policy, stale)
    logger.info("%s", result.describe())
    return result


def _record(
    settings: Settings,
    result: WeekResult,
    reviews: list[dict[str, Any]],
    policy: MonitorPolicy,
    stale: bool,
) -> None:
    """The week in MLflow (a run of ``custlab-monitoring``), in the audit trail and as
    ``evidence.json`` in its folder."""
    import mlflow

    decision = {
        "kind": "decision",
        "task": result.task,
        "week": str(result.week),
        "champion": f"{result.evidence.version}",
        "policy": policy.model_dump(mode="json"),
        "evidence": result.evidence.to_dict(),
        "verdict": {
            "action": result.verdict.action,
            "reasons": list(result.verdict.reasons),
            "basis": result.verdict.basis,
        },
        "stale": stale,
        "retrain_due": result.verdict.retrain_due.isoformat()
        if result.verdict.retrain_due is not None
        else None,
        "retrained": None,
        "report": str(result.folder.relative_to(settings.reports_dir)),
    }
    use_tracking(settings, MONITOR_EXPERIMENT)
    with mlflow.start_run(run_name=f"{result.task} {result.week}") as run:
        mlflow.set_tags(
            {
                "task": result.task,
                "week": str(result.week),
                "champion_version": result.evidence.version,
                "verdict": result.verdict.action,
                "source": result.evidence.source,
            }
        )
        metrics = {
            "rows": result.evidence.rows,
            "drift_share": result.evidence.drift.share_drifted,
            "prediction_drift_score": result.evidence.prediction.score,
        }
        for outcome in result.evidence.outcomes:
            metrics[outcome.name.replace(" ", "_") + "_change"] = outcome.change
        if result.evidence.performance:
            metrics["matured_" + result.evidence.performance.metric] = (
                result.evidence.performance.value
            )
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if np.isfinite(v)})
        if result.retrained:
            decision["retrained"] = {
                "run_id": result.retrained.run_id,
                "version": result.retrained.version,
                "promoted": result.retrained.promoted,
                "gate": result.retrained.reason,
            }
            mlflow.set_tags(
                {
                    "retrain_run_id": result.retrained.run_id,
                    "retrain_version": result.retrained.version,
                    "retrain_promoted": str(result.retrained.promoted),
                }
            )
        decision["mlflow_run_id"] = run.info.run_id
        (result.folder / "evidence.json").write_text(json.dumps(decision, indent=2, default=str))
        write_week_page(result.folder, decision)
        mlflow.log_artifacts(str(result.folder), "week")
    for review in reviews:
        append_record(audit_path(settings), review)
    append_record(audit_path(settings), decision)
    use_tracking(settings, f"custlab-{result.task}")


def latest_week(settings: Settings) -> IsoWeek:
    """The newest complete week: the one before the newest snapshot's. The newest
    snapshot is taken as the data ends, so nothing has happened yet in its own week."""
    stamps = read_snapshots(settings, "orders", [EVENT_TIMESTAMP])[EVENT_TIMESTAMP]
    return IsoWeek.of(stamps.max()).shifted(-1)


def write_business_week(settings: Settings, week: IsoWeek) -> Path:
    """The week's business view (``reports/<week>/business.html`` and ``.json``), with
    churn's risk tiers from the week's churn predictions where churn was monitored."""
    from monitoring.business import business_view, segment_dates
    from monitoring.index import page
    from training.tasks import get_task

    tables = read_raw_tables(settings.raw_dir)
    try:
        segments = read_snapshots(settings, "segments", dates=list(segment_dates(week.start)))
    except CustlabError:
        segments = None  # a source whose segments were never published
    tiers = None
    churn = week_folder(settings, "churn", week) / PREDICTIONS_FILE
    if churn.exists():
        predicted = pd.read_parquet(churn)
        task = get_task("churn")
        version = str(predicted["model_version"].iloc[0]) if len(predicted) else None
        if version is not None:
            cuts = ModelRecord.read(task.registered_model, version).tier_cuts
            chosen = task.policy.decide_all(predicted[PREDICTION].to_numpy(), cuts)
            names = np.array([tier.name for tier in task.policy.tiers])
            tiers = pd.Series(names[chosen], index=predicted[ENTITY_KEY])
    view = business_view(tables, segments, week.start, tiers)
    folder = settings.reports_dir / str(week)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "business.json").write_text(json.dumps(view.to_dict(), indent=2))
    path = folder / "business.html"
    path.write_text(page(f"custlab business view · week {week}", view.html()))
    return path
