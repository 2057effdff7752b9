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
from monitoring.audit import AUDIT_FILE, append_record, read_records
from monitoring.columns import DriftSummary
from monitoring.decision import Evidence, Performance, Verdict, decide, stale_reasons
from monitoring.drift import drift_report
from monitoring.index import write_week_page
from monitoring.mix import TENURE, MixShift, mix_shifts
from monitoring.outcomes import OWN_AVERAGE, weekly_outcomes
from monitoring.performance import performance_report
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
PREDICTION = "prediction"
PREDICTIONS_FILE = "predictions.parquet"
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


def week_folder(settings: Settings, task: str, week: IsoWeek) -> Path:
    return settings.reports_dir / str(week) / task


def audit_path(settings: Settings) -> Path:
    return settings.reports_dir / AUDIT_FILE


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


def _matured_weeks(settings: Settings, task: TaskSpec, week: IsoWeek) -> list[IsoWeek]:
    """Earlier decided weeks whose labels have matured by the end of ``week`` and whose
    predictions were kept, oldest first."""
    horizon = pd.Timedelta(days=task.horizon_days)
    decided = {
        IsoWeek.parse(r["week"])
        for r in read_records(audit_path(settings), "decision")
        if r["task"] == task.name
    }
    return sorted(
        w
        for w in decided
        if w < week
        and w.start + horizon <= week.end
        and (week_folder(settings, task.name, w) / PREDICTIONS_FILE).exists()
    )


def _performance(
    settings: Settings,
    task: TaskSpec,
    tables: dict[str, pd.DataFrame],
    past: IsoWeek,
    now: IsoWeek,
    report: bool = False,
) -> Performance | None:
    """What was predicted in ``past``, scored on its labels as known at the end of ``now``
    (with ``report``, also Evidently's performance report in the past week's folder, and
    that week republished to the workspace: the point lands on the week it judges)."""
    predicted = pd.read_parquet(week_folder(settings, task.name, past) / PREDICTIONS_FILE)
    labels = task.label_frame(tables, pd.DatetimeIndex([past.start]), now.end)
    frame = predicted.merge(labels, on=ENTITY_KEY, how="inner")
    if frame.empty:
        return None
    columns = [c for c in predicted.columns if c.startswith("p_")] or [PREDICTION]
    prediction = frame[columns].to_numpy()
    prediction = prediction[:, 0] if prediction.shape[1] == 1 else prediction
    version = str(predicted["model_version"].iloc[0])
    record = ModelRecord.read(task.registered_model, version)
    metric = task.primary_metric
    if report:
        folder = week_folder(settings, task.name, past)
        performance_report(frame, task, columns, folder, seed=settings.seed)
        publish_week(workspace_path(settings), task.name, past.start.to_pydatetime(), folder)
    return Performance(
        past,
        version,
        metric,
        float(task.metrics(frame, prediction)[metric]),
        float(record.metrics[metric]),
        len(frame),
    )


def _review(
    records: list[dict[str, Any]], task: TaskSpec, policy: MonitorPolicy, performance: Performance
) -> dict[str, Any] | None:
    """Whether the decision of a matured week was right. A verdict that the model no
    longer held was right if performance did fall or the retrain it led to was promoted
    (judged once that retrain has run, while one waits for its labels); one that it held
    (nothing, or covariate drift alone) was right if performance held; a data-quality
    alert is about the data and is not judged by performance. None: not yet."""
    week = str(performance.week)
    mine = [r for r in records if r["kind"] == "decision" and r["task"] == task.name]
    decision = [r for r in mine if r["week"] == week][-1]
    basis = decision["verdict"].get("basis")
    fell = performance.drop >= policy.performance_drop
    later = [r for r in mine if r["week"] >= week]
    retrains = [r for r in later if r.get("retrained")]
    if basis == "stale" and not fell and not retrains and later[-1].get("retrain_due"):
        return None  # the retrain it decided has not run yet
    promoted = bool(retrains) and retrains[0]["retrained"]["promoted"]
    if basis == "quality":
        right, why = None, "a data-quality alert, not judged by performance"
    elif basis == "stale":
        right = fell or promoted
        if fell:
            why = "performance fell"
        elif promoted:
            why = f"the retrain it led to (v{retrains[0]['retrained']['version']}) was promoted"
        else:
            why = "performance held and no retrain it led to was promoted"
    elif basis in ("quiet", "covariate"):
        right, why = not fell, "performance fell" if fell else "performance held"
    elif basis == "few rows":
        right, why = None, "too few rows to have decided"
    else:
        right, why = None, "the decision records no basis to judge it by"
    verdict = {True: "right", False: "wrong", None: "not judged"}[right]
    return {
        "kind": "review",
        "task": task.name,
        "reviewed_week": week,
        "action": decision["verdict"]["action"],
        "performance": performance.to_dict(),
        "performance_fell": fell,
        "right": right,
        "note": f"{decision['verdict']['action']} in {week}: {verdict}, {why} "
        f"({performance.describe()})",
    }


def _reviews_and_newest(
    settings: Settings,
    task: TaskSpec,
    policy: MonitorPolicy,
    tables: dict[str, pd.DataFrame],
    week: IsoWeek,
) -> tuple[list[dict[str, Any]], Performance | None]:
    """Reviews of every matured week not yet reviewed, and the newest matured week's
    performance (the week's evidence)."""
    records = read_records(audit_path(settings))
    reviewed = {
        r["reviewed_week"] for r in records if r["kind"] == "review" and r["task"] == task.name
    }
    matured = _matured_weeks(settings, task, week)
    measured = {
        w: _performance(settings, task, tables, w, week, report=w == matured[-1])
        for w in matured
        if str(w) not in reviewed or w == matured[-1]
    }
    reviews = []
    for past in matured:
        performance = measured.get(past)
        if str(past) in reviewed or performance is None:
            continue
        if (review := _review(records, task, policy, performance)) is not None:
            reviews.append(review)
    newest = next((measured[w] for w in reversed(matured) if measured.get(w)), None)
    return reviews, newest


# A change stays one change across this many quiet weeks in between: a week's evidence
# can dip below significance while the world stays changed.
STREAK_GAP_WEEKS = 2


def _change_began(settings: Settings, task: str, week: IsoWeek) -> IsoWeek:
    """The first week of the run of stale weeks that ends with ``week``, bridging gaps of
    up to :data:`STREAK_GAP_WEEKS` quiet weeks."""
    stale = {
        IsoWeek.parse(r["week"])
        for r in read_records(audit_path(settings), "decision")
        if r["task"] == task and r.get("stale")
    }
    began = week
    while True:
        earlier = [began.shifted(-k) for k in range(1, STREAK_GAP_WEEKS + 2)]
        found = [w for w in earlier if w in stale]
        if not found:
            return began
        began = min(found)


def _pending_retrain(settings: Settings, task: str) -> tuple[IsoWeek, pd.Timestamp] | None:
    """A retrain decided but waiting for labels, with its due date, unless a retrain has
    run since it was decided."""
    pending = None
    for record in read_records(audit_path(settings), "decision"):
        if record["task"] != task:
            continue
        if record.get("retrained"):
            pending = None
        elif record.get("retrain_due") and pending is None:
            pending = (IsoWeek.parse(record["week"]), pd.Timestamp(record["retrain_due"]))
    return pending


def _last_retrain(settings: Settings, task: str) -> IsoWeek | None:
    weeks = [
        IsoWeek.parse(r["week"])
        for r in read_records(audit_path(settings), "decision")
        if r["task"] == task and r.get("retrained")
    ]
    return max(weeks) if weeks else None


def monitor_week(
    settings: Settings, task: TaskSpec, week: IsoWeek, retrain: Retrain | None = None
) -> WeekResult:
    """Evidence, verdict and (when the verdict is retrain and ``retrain`` is given) the
    retrain of one task for one week, recorded in MLflow, the audit trail and the
    week's folder.

    Raises:
        CustlabError: No champion, no snapshot as of the week's Monday, or a champion
            that learned from a labelled table.
    """
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
    tables = read_raw_tables(settings.raw_dir)
    reviews, newest = _reviews_and_newest(settings, task, policy, tables, week)
    reference_weeks = [IsoWeek.of(d) for d in reference_dates]
    own_average = _own_averages(settings, reference, current, week)
    evidence = Evidence(
        week=week,
        version=version,
        source=source,
        rows=len(current),
        drift=_features_only(summary, record.features, policy.drift_share),
        prediction=summary.columns[PREDICTION],
        quality=Quality(
            missing_rises(
                _week_before(settings, task, record, week, stamps, reference),
                current,
                record.features,
                policy.missing_share_rise,
            ),
            feed_volumes(
                tables, week, reference_weeks, {w: len(c) for w, c in own_average.items()}
            ),
        ),
        outcomes=weekly_outcomes(tables["orders"], week, reference_weeks, own_average),
        performance=newest,
        key_features=policy.key_features,
        mix=_mix(settings, policy, reference, current),
        shadow=compare_shadow(log),
    )
    stale = bool(stale_reasons(policy, evidence))
    labels_due = None
    if stale and retrain is not None:
        began = _change_began(settings, task.name, week)
        labels_due = (
            began.start
            + pd.Timedelta(weeks=retrain.test_dates - 1)
            + pd.Timedelta(days=task.horizon_days)
        )
    verdict = decide(
        policy,
        evidence,
        _last_retrain(settings, task.name),
        labels_due,
        _pending_retrain(settings, task.name) if retrain is not None else None,
    )
    kept = current[[ENTITY_KEY, PREDICTION, *(c for c in current if c.startswith("p_"))]]
    kept.assign(model_version=version).to_parquet(folder / PREDICTIONS_FILE, index=False)

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
    _record(settings, result, reviews, policy, stale)
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
