"""Evidently data-drift reports: a current window of feature rows against the reference
window the champion was trained on."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

logger = logging.getLogger(__name__)

# Evidently's per-column drift metrics store a score; distance methods flag drift when the
# score reaches the threshold, p-value tests when it falls below. The report's own tests
# (include_tests=True) are authoritative where present; this only backs them up.
_DISTANCE_METHODS = {
    "wasserstein",
    "wasserstein distance (normed)",
    "jensenshannon",
    "jensen-shannon distance",
    "psi",
    "hellinger",
    "hellinger distance",
    "kl_div",
    "kullback-leibler divergence",
    "ed",
    "energy-distance",
}


@dataclass(frozen=True)
class ColumnDrift:
    method: str
    score: float
    threshold: float
    drifted: bool


@dataclass(frozen=True)
class DriftSummary:
    """What changed: the share of drifted columns and the verdict per column."""

    share_drifted: float
    dataset_drift: bool
    drift_share_threshold: float
    columns: dict[str, ColumnDrift] = field(default_factory=dict)

    @property
    def drifted_columns(self) -> list[str]:
        return sorted(name for name, c in self.columns.items() if c.drifted)

    def describe(self) -> str:
        drifted = ", ".join(self.drifted_columns) or "none"
        return f"{100 * self.share_drifted:.0f}% of columns drifted ({drifted})"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"drifted_columns": self.drifted_columns}


def summarize_drift(report: dict[str, Any]) -> DriftSummary:
    """Read the drift verdicts out of an Evidently snapshot's ``dict()``."""
    tests = {t["metric_config"]["metric_id"]: t for t in report.get("tests") or []}
    share, threshold = 0.0, 0.5
    columns: dict[str, ColumnDrift] = {}
    for metric in report["metrics"]:
        kind = metric["config"]["type"].rsplit(":", 1)[-1]
        config = metric["config"]
        if kind == "DriftedColumnsCount":
            share = float(metric["value"]["share"])
            threshold = float(config["drift_share"])
        elif kind == "ValueDrift":
            score = float(metric["value"])
            method = str(config["method"])
            if metric["id"] in tests:
                drifted = tests[metric["id"]]["status"] == "FAIL"
            elif method.lower() in _DISTANCE_METHODS:
                drifted = score >= config["threshold"]
            else:
                drifted = score < config["threshold"]
            columns[config["column"]] = ColumnDrift(
                method, score, float(config["threshold"]), bool(drifted)
            )
    return DriftSummary(share, share >= threshold, threshold, columns)


def drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numerical: list[str],
    categorical: list[str],
    out_dir: Path,
    drift_share: float = 0.5,
    max_reference_rows: int = 50_000,
    seed: int = 0,
) -> DriftSummary:
    """Run an Evidently data-drift report and write it as ``drift.html`` and ``drift.json``.

    The reference is sampled down to ``max_reference_rows``: drift tests on tens of
    thousands of rows already resolve small shifts, and the report stays fast.
    """
    # Evidently takes seconds to import; only this function needs it.
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    columns = numerical + categorical
    if len(reference) > max_reference_rows:
        reference = reference.sample(max_reference_rows, random_state=seed)
    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    snapshot = Report([DataDriftPreset(drift_share=drift_share)], include_tests=True).run(
        Dataset.from_pandas(current[columns], data_definition=definition),
        Dataset.from_pandas(reference[columns], data_definition=definition),
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(out_dir / "drift.html"))
    snapshot.save_json(str(out_dir / "drift.json"))
    summary = summarize_drift(snapshot.dict())
    (out_dir / "summary.json").write_text(json.dumps(summary.to_dict(), indent=2))
    logger.info(
        "drift: %d of %d columns drifted (%.0f%%)",
        len(summary.drifted_columns),
        len(summary.columns),
        100 * summary.share_drifted,
    )
    return summary
