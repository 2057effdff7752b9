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
