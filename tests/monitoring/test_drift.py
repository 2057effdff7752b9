"""Drift reports: a shifted column is called drifted, a stable one is not; Evidently's
report is written beside the summary."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from monitoring.drift import drift_report


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory):
    rng = np.random.default_rng(0)
    reference = pd.DataFrame(
        {
            "stable": rng.normal(0, 1, 5000),
            "shifted": rng.normal(0, 1, 5000),
            "channel": rng.choice(["web", "app"], 5000),
        }
    )
    current = pd.DataFrame(
        {
            "stable": rng.normal(0, 1, 2000),
            "shifted": rng.normal(1.5, 1, 2000),
            "channel": rng.choice(["web", "app"], 2000, p=[0.1, 0.9]),
        }
    )
    out = tmp_path_factory.mktemp("report")
    summary = drift_report(reference, current, ["stable", "shifted"], ["channel"], out, 0.5)
    return out, summary


def test_shifted_columns_drift_and_stable_ones_do_not(report):
    _, summary = report
    assert summary.drifted_columns == ["channel", "shifted"]
    assert summary.share_drifted == pytest.approx(2 / 3)
    assert summary.dataset_drift  # 2/3 of columns reach the 0.5 share
    assert summary.describe() == "67% of columns drifted (channel, shifted)"


def test_report_written_as_html_json_and_summary(report):
    out, summary = report
    assert (out / "drift.html").stat().st_size > 10_000
    assert json.loads((out / "drift.json").read_text())["metrics"]
    saved = json.loads((out / "summary.json").read_text())
    assert saved["drifted_columns"] == summary.drifted_columns


def test_report_reads_a_sample_and_the_summary_every_row(tmp_path: Path):
    rng = np.random.default_rng(1)
    reference = pd.DataFrame({"x": rng.normal(0, 1, 3000)})
    current = pd.DataFrame({"x": rng.normal(0, 1, 500)})
    summary = drift_report(reference, current, ["x"], [], tmp_path, max_reference_rows=1000)
    assert summary.drifted_columns == []
    # 3,000 reference rows: a distance; the report's 1,000: Evidently's small-sample test.
    assert summary.columns["x"].method == "Wasserstein distance (normed)"
    report = json.loads((tmp_path / "drift.json").read_text())
    methods = [m["config"].get("method") for m in report["metrics"]]
    assert "K-S p_value" in methods


def test_quality_report_of_the_same_sample_beside_the_drift_report(report):
    out, _ = report
    page = (out / "quality.html").read_text()
    assert "channel" in page and "shifted" in page
    quality = json.loads((out / "quality.json").read_text())
    kinds = {m["config"]["type"].rsplit(":", 1)[-1] for m in quality["metrics"]}
    assert {"RowCount", "DatasetMissingValueCount", "MeanValue"} <= kinds
    assert "DriftedColumnsCount" not in kinds  # each report is its own preset's
    rows = [m for m in quality["metrics"] if m["config"]["type"].endswith(":RowCount")]
    assert rows[0]["value"] == 2000  # the current window, as Evidently read it


def test_snapshot_files_load_back_as_the_reports_they_saved(report):
    from evidently.core.report import Snapshot

    def figures(report: dict) -> list:
        # metric_name is a repr, which spells an enum differently once reloaded
        return [(m["id"], m["config"], m["value"]) for m in report["metrics"]], report["tests"]

    out, _ = report
    for name in ("drift", "quality"):
        loaded = Snapshot.load(str(out / f"{name}.snapshot.json"))
        assert figures(loaded.dict()) == figures(json.loads((out / f"{name}.json").read_text()))


def test_a_sample_with_no_readable_column_writes_both_placeholders(tmp_path: Path):
    rng = np.random.default_rng(2)
    readable = pd.DataFrame({"x": rng.normal(0, 1, 50)})
    drift_report(readable, readable.copy(), ["x"], [], tmp_path)
    assert (tmp_path / "quality.snapshot.json").exists()

    unreadable = pd.DataFrame({"x": [np.nan] * 50})
    drift_report(unreadable, unreadable.copy(), ["x"], [], tmp_path)  # the same folder again
    for name in ("drift", "quality"):
        assert "No column held values" in (tmp_path / f"{name}.html").read_text()
        # nothing of the earlier run is left to be taken for this one's
        assert not (tmp_path / f"{name}.json").exists()
        assert not (tmp_path / f"{name}.snapshot.json").exists()


def test_quality_report_renders_and_loads_nothing_from_the_network(report):
    from monitoring.browser import check_page

    out, _ = report
    check = check_page(out / "quality.html")
    assert check.external_requests == []
    assert check.console_errors == [] and check.page_errors == []
    assert check.text_length > 100
