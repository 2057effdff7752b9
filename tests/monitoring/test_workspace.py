"""The Evidently workspace: weeks published from real drift and performance reports land
in the task's project as one snapshot each, stamped at the week's Monday, with the
dashboard's panels; a week published again replaces its snapshot; ``evidently ui``
serves the workspace, telemetry off."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from benchmarks.servers import Server, free_port, start, stop, wait_ready
from custlab.settings import Settings
from monitoring.drift import drift_report
from monitoring.performance import performance_report
from monitoring.weeks import IsoWeek
from monitoring.workspace import (
    DRIFT_PANEL,
    MISSING_PANEL,
    PERFORMANCE_PANEL,
    project_name,
    publish_week,
    ui_command,
    workspace_path,
)
from training.tasks import get_task

WEEKS = (IsoWeek(2025, 23), IsoWeek(2025, 24))


def _week_folder(root: Path, week: IsoWeek, shift: float, performance: bool) -> Path:
    """A week's folder as the weekly run writes it: drift and quality of a generated
    week (``shift`` moves two of its three columns), and performance when asked."""
    rng = np.random.default_rng(week.week)
    reference = pd.DataFrame(
        {
            "recency": rng.normal(0, 1, 1500),
            "prediction": rng.uniform(0, 1, 1500),
            "channel": rng.choice(["web", "app"], 1500),
        }
    )
    current = pd.DataFrame(
        {
            "recency": rng.normal(shift, 1, 500),
            "prediction": rng.uniform(0, 1, 500),
            "channel": rng.choice(["web", "app"], 500, p=[0.5 - shift / 4, 0.5 + shift / 4]),
        }
    )
    folder = root / str(week) / "churn"
    drift_report(reference, current, ["recency", "prediction"], ["channel"], folder)
    if performance:
        churned = rng.integers(0, 2, 500).astype(bool)
        matured = pd.DataFrame({"churned": churned, "prediction": current["prediction"]})
        performance_report(matured, get_task("churn"), ["prediction"], folder)
    return folder


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[IsoWeek, Path]]:
    root = tmp_path_factory.mktemp("home")
    workspace = workspace_path(Settings(home=root))
    folders = {
        WEEKS[0]: _week_folder(root / "reports", WEEKS[0], 0.0, performance=False),
        WEEKS[1]: _week_folder(root / "reports", WEEKS[1], 1.5, performance=True),
    }
    # The later week first: the dashboard orders weeks by their stamp, not by publishing.
    for week in reversed(WEEKS):
        publish_week(workspace, "churn", week.start, folders[week])
    return workspace, folders


def _runs(workspace_dir: Path) -> tuple[object, list]:
    """The churn project of a freshly opened workspace, and its snapshots by time."""
    from evidently.ui.workspace import Workspace

    workspace = Workspace(str(workspace_dir))
    (project,) = workspace.search_project(project_name("churn"))
    runs = [workspace.get_run(project.id, run) for run in workspace.list_runs(project.id)]
    return project, sorted(runs, key=lambda run: run.timestamp)


def _copy(workspace: Path, tmp_path: Path) -> Path:
    """The published workspace for a test that changes it (the others read it as is)."""
    return Path(shutil.copytree(workspace, tmp_path / "evidently"))


def _types(run) -> set[str]:
    return {
        r.metric_value_location.metric.params["type"].rsplit(":", 1)[-1]
        for r in run.metric_results.values()
    }


def test_each_week_is_one_snapshot_stamped_at_its_monday(published):
    workspace, _ = published
    assert workspace == Settings(home=workspace.parent).home / "evidently"
    _, runs = _runs(workspace)
    assert [run.timestamp for run in runs] == [week.start.tz_localize(None) for week in WEEKS]
    assert [run.metadata["week"] for run in runs] == [str(week) for week in WEEKS]
    # Drift, quality and (the second week's) performance merged into one snapshot.
    assert {"DriftedColumnsCount", "DatasetMissingValueCount"} <= _types(runs[0])
    assert "RocAuc" not in _types(runs[0])
    assert {"DriftedColumnsCount", "RowCount", "RocAuc", "CustlabMetric"} <= _types(runs[1])


def test_the_dashboard_plots_drift_missing_values_and_the_task_metric(published):
    workspace, _ = published
    project, _ = _runs(workspace)
    panels = {panel.title: panel for panel in project.dashboard.model().panels}
    assert set(panels) == {DRIFT_PANEL, MISSING_PANEL, PERFORMANCE_PANEL.format("roc_auc")}
    drift = panels[DRIFT_PANEL].values[0]
    assert drift.metric == "evidently:metric_v2:DriftedColumnsCount"
    assert drift.metric_labels == {"value_type": "share"}
    performance = panels[PERFORMANCE_PANEL.format("roc_auc")].values[0]
    assert performance.metric_labels == {"metric": "roc_auc"}


def test_publishing_a_week_again_replaces_it(published, tmp_path: Path):
    workspace, folders = _copy(published[0], tmp_path), published[1]
    # The first week again, now with its matured performance.
    again = _week_folder(tmp_path / "reports", WEEKS[0], 0.0, performance=True)
    publish_week(workspace, "churn", WEEKS[0].start, again)
    project, runs = _runs(workspace)
    assert len(runs) == 2
    assert "CustlabMetric" in _types(runs[0])
    assert len(project.dashboard.model().panels) == 3  # no panel twice

    publish_week(workspace, "churn", WEEKS[0].start, folders[WEEKS[0]])  # as it was
    _, runs = _runs(workspace)
    assert len(runs) == 2 and "CustlabMetric" not in _types(runs[0])


def test_a_folder_without_reports_takes_its_week_out(published, tmp_path: Path):
    workspace, folders = _copy(published[0], tmp_path), published[1]
    week = IsoWeek(2025, 25)
    publish_week(workspace, "churn", week.start, folders[WEEKS[1]])
    assert len(_runs(workspace)[1]) == 3
    empty = tmp_path / "empty"
    empty.mkdir()
    publish_week(workspace, "churn", week.start, empty)  # nothing Evidently could read
    assert [run.metadata["week"] for run in _runs(workspace)[1]] == [str(w) for w in WEEKS]


@pytest.mark.slow
def test_evidently_ui_serves_the_workspace_with_telemetry_off(published, tmp_path: Path):
    workspace, _ = published
    port = free_port()
    command = ui_command(workspace, "127.0.0.1", port)
    server = Server("evidently", "evidently ui", command, port, "", ready_path="/api/version")
    environment = {k: v for k, v in os.environ.items() if k != "DO_NOT_TRACK"}
    process = start(server, environment, tmp_path / "ui.log", cwd=tmp_path)
    try:
        wait_ready(server, process, deadline_s=180)
        # `env` replaced itself with Evidently's process: telemetry is off in there.
        process_environment = Path(f"/proc/{process.pid}/environ").read_bytes().split(b"\0")
        assert b"DO_NOT_TRACK=1" in process_environment

        projects = httpx.get(server.url("/api/projects"), timeout=10).json()
        (project,) = [p for p in projects if p["name"] == project_name("churn")]
        series = httpx.post(
            server.url(f"/api/v2/snapshots/{project['id']}/data_series_batch"),
            json={
                "series_filter": [
                    {
                        "tags": [],
                        "metadata": {},
                        "metric": "evidently:metric_v2:DriftedColumnsCount",
                        "metric_labels": {"value_type": "share"},
                    }
                ]
            },
            timeout=30,
        ).json()
        dashboard = httpx.get(server.url(f"/api/v2/dashboards/{project['id']}"), timeout=10).json()
    finally:
        stop(process)
    # The drift panel's points: one per week, at its Monday, the shifted week drifted.
    stamps = [pd.Timestamp(source["timestamp"]) for source in series["sources"]]
    assert stamps == [week.start.tz_localize(None) for week in WEEKS]
    (share,) = [s for s in series["series"] if s["params"].get("value_type") == "share"]
    assert share["values"][0] < share["values"][1]
    assert {panel["title"] for panel in dashboard["panels"]} >= {DRIFT_PANEL, MISSING_PANEL}
