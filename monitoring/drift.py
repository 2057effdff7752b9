"""Evidently data-drift and data-quality reports: a current window of feature rows
against the reference window the champion was trained on, for the reviewer to read. The
verdicts and numbers come from :mod:`monitoring.columns`, on every row; Evidently renders
the reports."""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from monitoring.columns import ColumnDrift, DriftSummary, column_drift
from monitoring.workspace import SNAPSHOT_SUFFIX, save_report

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


def _reportable(frame: pd.DataFrame, columns: list[str]) -> list[str]:
    """The columns holding at least one value Evidently can use (it raises on a column
    with none)."""
    usable = []
    for name in columns:
        values = frame[name]
        if pd.api.types.is_numeric_dtype(values):
            kept = np.isfinite(values.to_numpy(dtype=np.float64, na_value=np.nan)).any()
        else:
            kept = values.notna().any()
        if kept:
            usable.append(name)
    return usable


MISSING_CATEGORY = "(missing)"


def _missing_as_category(frame: pd.DataFrame, categorical: list[str]) -> pd.DataFrame:
    filled = frame.copy()
    for name in categorical:
        values = filled[name].astype("object")
        filled[name] = values.where(values.notna(), MISSING_CATEGORY)
    return filled


def drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numerical: list[str],
    categorical: list[str],
    out_dir: Path,
    drift_share: float = 0.5,
    max_reference_rows: int = 50_000,
    seed: int = 0,
    max_current_rows: int = 200_000,
    max_report_columns: int | None = None,
    first: Sequence[str] = (),
) -> DriftSummary:
    """Drift verdicts of every column on every row (:func:`monitoring.columns.column_drift`,
    written as ``summary.json``), and Evidently's data-drift and data-quality reports for
    the reviewer (``drift`` and ``quality``, each as ``.html``, ``.json`` and
    ``.snapshot.json``: :func:`monitoring.workspace.save_report`).

    Evidently reads a sample: at most ``max_reference_rows`` of the reference and
    ``max_current_rows`` of the current window, and only the columns with a verdict (it
    raises on a column with no finite value). Its figures come from that sample, so a
    verdict whose score sits near its threshold can differ from the summary's, which
    reads every row and is the one that counts. Both reports read the same sample.

    ``max_report_columns`` caps the columns Evidently renders (it takes a second or more a
    column): those in ``first``, then the drifted ones, then the rest, in their order.
    """
    # Evidently takes seconds to import; only this function needs it.
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset, DataSummaryPreset

    summary = column_drift(reference, current, numerical, categorical, drift_share)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "summary.json").write_text(json.dumps(summary.to_dict(), indent=2))

    if len(reference) > max_reference_rows:
        reference = reference.sample(max_reference_rows, random_state=seed)
    if len(current) > max_current_rows:
        current = current.sample(max_current_rows, random_state=seed)
    judged = [name for name in numerical + categorical if summary.columns[name].judged]
    shown = [c for c in _reportable(reference, judged) if c in _reportable(current, judged)]
    if max_report_columns is not None:
        drifted = set(summary.drifted_columns)
        ranked = sorted(shown, key=lambda c: (c not in first, c not in drifted))
        shown = [c for c in shown if c in ranked[:max_report_columns]]
    if not shown:
        logger.warning("drift: no column has values Evidently can read; no report")
        for name in ("drift", "quality"):
            (out_dir / f"{name}.html").write_text(
                f"<!doctype html><title>{name}</title><p>No column held values to compare: "
                f"{html.escape(summary.describe())}.</p>"
            )
            # An earlier run's reports would otherwise be published as this one's.
            for stale in (f"{name}.json", f"{name}{SNAPSHOT_SUFFIX}"):
                (out_dir / stale).unlink(missing_ok=True)
        return summary
    definition = DataDefinition(
        numerical_columns=[c for c in numerical if c in shown],
        categorical_columns=[c for c in categorical if c in shown],
    )
    sides = (
        Dataset.from_pandas(current[shown], data_definition=definition),
        Dataset.from_pandas(reference[shown], data_definition=definition),
    )
    # Two runs rather than one report of both presets: a snapshot renders and saves
    # whole, and the presets share no metric, so one run would save nothing and its
    # snapshot would have to be cut in two by hand.
    save_report(
        Report([DataDriftPreset(drift_share=drift_share)], include_tests=True).run(*sides),
        out_dir,
        "drift",
    )
    # The summary's category counts fail on pandas' NA as a category key (Evidently
    # 0.7.23); there a missing category is counted as one of its own.
    shown_categories = [c for c in categorical if c in shown]
    quality_sides = tuple(
        Dataset.from_pandas(_missing_as_category(frame[shown], shown_categories), definition)
        for frame in (current, reference)
    )
    save_report(
        Report([DataSummaryPreset()], include_tests=True).run(*quality_sides), out_dir, "quality"
    )
    logger.info(
        "drift: %d of %d columns drifted (%.0f%%)%s",
        len(summary.drifted_columns),
        len(summary.columns),
        100 * summary.share_drifted,
        f", no verdict for {len(summary.unjudged_columns)}" if summary.unjudged_columns else "",
    )
    return summary
