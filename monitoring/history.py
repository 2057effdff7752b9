"""What the audit trail says about a task's past weeks: which have matured labels, how
their predictions did, whether each decision was right, and when a change began, a
retrain is pending or last ran."""

from __future__ import annotations

from typing import Any

import pandas as pd

from custlab.settings import Settings
from features.contract import ENTITY_KEY
from monitoring.audit import read_records
from monitoring.decision import Performance
from monitoring.layout import PREDICTION, PREDICTIONS_FILE, audit_path, week_folder
from monitoring.performance import performance_report
from monitoring.policy import MonitorPolicy
from monitoring.weeks import IsoWeek
from monitoring.workspace import publish_week, workspace_path
from training.record import ModelRecord
from training.tasks import TaskSpec


def matured_weeks(settings: Settings, task: TaskSpec, week: IsoWeek) -> list[IsoWeek]:
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


def performance_of(
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


def judge(
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


def reviews_and_newest(
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
    matured = matured_weeks(settings, task, week)
    measured = {
        w: performance_of(settings, task, tables, w, week, report=w == matured[-1])
        for w in matured
        if str(w) not in reviewed or w == matured[-1]
    }
    reviews = []
    for past in matured:
        performance = measured.get(past)
        if str(past) in reviewed or performance is None:
            continue
        if (judged := judge(records, task, policy, performance)) is not None:
            reviews.append(judged)
    newest = next((measured[w] for w in reversed(matured) if measured.get(w)), None)
    return reviews, newest


# A change stays one change across this many quiet weeks in between: a week's evidence
# can dip below significance while the world stays changed.
STREAK_GAP_WEEKS = 2


def change_began(settings: Settings, task: str, week: IsoWeek) -> IsoWeek:
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


def pending_retrain(settings: Settings, task: str) -> tuple[IsoWeek, pd.Timestamp] | None:
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


def last_retrain(settings: Settings, task: str) -> IsoWeek | None:
    weeks = [
        IsoWeek.parse(r["week"])
        for r in read_records(audit_path(settings), "decision")
        if r["task"] == task and r.get("retrained")
    ]
    return max(weeks) if weeks else None
