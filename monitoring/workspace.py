"""The Evidently workspace of the weekly monitoring, for ``evidently ui``: a project per
task, a snapshot per monitored week, and a dashboard of the weeks.

A week's folder holds each of its Evidently reports three ways (:func:`save_report`):
``<name>.html`` to read, ``<name>.json`` (Evidently's ``save_json``: the metrics and test
results alone, which Evidently 0.7 cannot load back as a snapshot) and
``<name>.snapshot.json``, the whole snapshot, which :func:`publish_week` loads. The names
are ``drift`` and ``quality`` (:func:`monitoring.drift.drift_report`) and ``performance``
(:func:`monitoring.performance.performance_report`).

The workspace (:func:`workspace_path`, ``<home>/evidently``) holds, per task, the project
``custlab <task>``. Its runs are the weeks: one snapshot per week, the week's reports
merged, stamped at the week's Monday so that the dashboard's time axis is the monitored
week, not the day the run happened. Its dashboard plots the share of drifted columns,
the share of missing values and, once a performance report was published, the task's
own metric on matured labels. Publishing a week again replaces its snapshot.
"""

from __future__ import annotations

import logging
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from custlab.settings import Settings
from monitoring.weeks import IsoWeek

if TYPE_CHECKING:
    from evidently.core.report import Snapshot
    from evidently.core.serialization import SnapshotModel
    from evidently.ui.workspace import Project, Workspace

logger = logging.getLogger(__name__)

# The reports a week's folder may hold, in the order the week's snapshot shows them.
REPORTS = ("drift", "quality", "performance")
SNAPSHOT_SUFFIX = ".snapshot.json"
# Evidently names its metrics this way; a dashboard panel names the metric it plots.
METRIC_TYPE = "evidently:metric_v2:{}"
# The metric of a performance report that holds the task's own metric
# (:mod:`monitoring.performance`), which the dashboard plots.
TASK_METRIC = "CustlabMetric"
DRIFT_PANEL = "Share of drifted columns"
MISSING_PANEL = "Share of missing values"
PERFORMANCE_PANEL = "{} on matured labels"


def workspace_path(settings: Settings) -> Path:
    """Where the home keeps its Evidently workspace."""
    return settings.home / "evidently"


def project_name(task: str) -> str:
    return f"custlab {task}"


def save_report(snapshot: Snapshot, out_dir: Path, name: str) -> None:
    """Write ``snapshot`` as ``<name>.html``, ``<name>.json`` and ``<name>.snapshot.json``.

    The snapshot file leaves out the copy of each widget that Evidently keeps beside
    every metric result as well as in the report: nothing renders it (the HTML and the
    UI render the report's widgets), and it is half to three quarters of the file.
    """
    from evidently.core.report import Snapshot

    snapshot.save_html(str(out_dir / f"{name}.html"))
    snapshot.save_json(str(out_dir / f"{name}.json"))
    model = snapshot.to_snapshot_model()
    model.metric_results = {
        metric_id: result.copy(update={"widget": None})
        for metric_id, result in model.metric_results.items()
    }
    (out_dir / f"{name}{SNAPSHOT_SUFFIX}").write_text(Snapshot.load_model(model).dumps())


def _utc_naive(moment: datetime) -> datetime:
    """``moment`` in UTC as a plain datetime without a zone (a pandas Timestamp too):
    Evidently stamps its own runs with naive datetimes, and its dashboard compares them
    with the ones it is given."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return datetime.combine(moment.date(), moment.time())


def _merged(
    parts: list[SnapshotModel], name: str, week: IsoWeek, stamp: datetime, task: str
) -> SnapshotModel:
    """One snapshot of the week's reports, in their order.

    Raises:
        ValueError: Two reports hold one metric (same fingerprint) with different results.
    """
    from evidently.core.serialization import ReportModel, SnapshotModel

    results: dict = {}
    for part in parts:
        for metric_id, result in part.metric_results.items():
            if metric_id in results and results[metric_id] != result:
                # Equal fingerprints, different numbers: two reports measured one metric
                # on different rows, and the dashboard could not tell which is which.
                raise ValueError(f"{name}: metric {metric_id} has two different results")
            results[metric_id] = result
    top_level = list(dict.fromkeys(m for part in parts for m in part.top_level_metrics))
    return SnapshotModel(
        report=ReportModel(items=[]),
        name=name,
        timestamp=stamp,
        metadata={"task": task, "week": str(week)},
        tags=["custlab", task],
        metric_results=results,
        top_level_metrics=top_level,
        widgets=[w for part in parts for w in part.widgets],
        tests_widgets=[w for part in parts for w in part.tests_widgets],
    )


def _project(workspace: Workspace, task: str) -> Project:
    """The task's project, created on first use."""
    found = workspace.search_project(project_name(task))
    if found:
        if len(found) > 1:
            logger.warning("workspace: %d projects named %r; using the first", len(found), task)
        return found[0]
    project = workspace.create_project(
        project_name(task), description=f"custlab weekly monitoring of {task}"
    )
    logger.info("workspace: created project %r", project.name)
    return project


def _task_metric(model: SnapshotModel) -> str | None:
    """The task's own metric a performance report computed, if it did."""
    for result in model.metric_results.values():
        params = result.metric_value_location.metric.params
        if params["type"] == METRIC_TYPE.format(TASK_METRIC):
            return str(params["metric"])
    return None


def _ensure_panels(project: Project, task_metric: str | None) -> None:
    """Add the dashboard's panels it lacks (by title), the performance one once the
    task's metric is known."""
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import line_plot_panel

    def share(metric: str) -> list[PanelMetric]:
        return [PanelMetric(legend="share", metric=metric, metric_labels={"value_type": "share"})]

    wanted = [
        line_plot_panel(DRIFT_PANEL, share("DriftedColumnsCount"), size="half"),
        line_plot_panel(MISSING_PANEL, share("DatasetMissingValueCount"), size="half"),
    ]
    if task_metric is not None:
        values = [
            PanelMetric(
                legend=task_metric, metric=TASK_METRIC, metric_labels={"metric": task_metric}
            )
        ]
        wanted.append(line_plot_panel(PERFORMANCE_PANEL.format(task_metric), values))
    present = {panel.title for panel in project.dashboard.model().panels}
    for panel in wanted:
        if panel.title not in present:
            project.dashboard.add_panel(panel)


def week_snapshot_id(project_id: uuid.UUID, week: IsoWeek) -> uuid.UUID:
    """The id of a week's snapshot in a project: the same every time it is published."""
    return uuid.uuid5(uuid.UUID(str(project_id)), f"week {week}")


def publish_week(workspace_dir: Path, task: str, week_start: datetime, folder: Path) -> None:
    """Add the week's reports saved in ``folder`` to the task's project as one snapshot
    stamped at ``week_start``, replacing the week's snapshot if it was published before.

    The snapshot merges ``drift``, ``quality`` and ``performance`` (those present, see
    :func:`save_report`). Performance is plotted at the week the folder is published
    as: to plot a matured week's performance at the week whose predictions it judges,
    write it into that week's folder and publish that week again.

    A folder with none of them (a week with no column Evidently could read) publishes
    nothing, and takes the week's earlier snapshot out, so the workspace says what the
    folder says.

    Args:
        workspace_dir: The workspace (:func:`workspace_path`); created if missing.
        task: The task, whose project is ``custlab <task>``.
        week_start: The monitored week's Monday (any zone; stored as naive UTC).
        folder: The week's folder, as :func:`monitoring.drift.drift_report` and
            :func:`monitoring.performance.performance_report` wrote it.
    """
    from evidently.core.report import Snapshot
    from evidently.ui.workspace import Workspace

    stamp = _utc_naive(week_start)
    week = IsoWeek.of(stamp)
    found = [name for name in REPORTS if (folder / f"{name}{SNAPSHOT_SUFFIX}").exists()]
    parts = [
        Snapshot.load(str(folder / f"{name}{SNAPSHOT_SUFFIX}")).to_snapshot_model()
        for name in found
    ]
    workspace_dir.mkdir(parents=True, exist_ok=True)
    workspace = Workspace(str(workspace_dir))
    project = _project(workspace, task)
    snapshot_id = week_snapshot_id(project.id, week)
    if not parts:
        logger.warning("workspace: %s %s: no Evidently report in %s", task, week, folder)
        if snapshot_id in workspace.list_runs(project.id):
            workspace.delete_run(project.id, snapshot_id)
        return
    model = _merged(parts, f"{task} {week}", week, stamp, task)
    # Evidently's add_run draws a new id each time, so a week published twice would be
    # two runs; the week's own id, written through the state add_run writes to,
    # replaces it instead.
    workspace.state.write_snapshot(project.id, snapshot_id, model)
    _ensure_panels(project, next(filter(None, map(_task_metric, parts)), None))
    logger.info("workspace: %s %s published (%s)", task, week, ", ".join(found))


# Evidently's telemetry is on unless DO_NOT_TRACK is set; nothing leaves the machine.
TELEMETRY_OFF = "DO_NOT_TRACK=1"


def ui_command(workspace_dir: Path, host: str, port: int) -> list[str]:
    """The command that serves ``workspace_dir`` with ``evidently ui`` (this Python's
    Evidently) on ``host``:``port``, telemetry off.

    Telemetry is switched off in the command itself (through ``env``), so that whoever
    runs it, nothing leaves the machine.
    """
    return [
        "env",
        TELEMETRY_OFF,
        sys.executable,
        "-m",
        "evidently.cli",
        "ui",
        "--workspace",
        str(workspace_dir),
        "--host",
        host,
        "--port",
        str(port),
    ]
