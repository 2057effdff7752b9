"""The evidence a scored test window leaves in its MLflow run: tables (JSON) and plots (PNG).

Tables are plain functions of labels and predictions; each plot draws one table or one
curve; :func:`evidence` picks them per objective and :func:`log_evidence` writes them.
Metrics are each objective's, from :mod:`training.objectives`; this module only slices
and draws them.

Deciles count from the top: decile 1 holds the highest predictions, as a campaign would
pick them. Contributions are LightGBM's TreeSHAP values (``pred_contrib``) on the raw
margin: log-odds for binary, log of the amount for tweedie, per class for multiclass.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # plots are written to files; no display on servers or in CI

import math
import re
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import lightgbm as lgb
import matplotlib.pyplot as plt
import mlflow
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import precision_recall_curve, precision_recall_fscore_support, roc_curve

from training.model_input import booster_categories, contributions, model_matrix

if TYPE_CHECKING:
    from training.tasks import TaskSpec

MODEL = "lightgbm"
GROUP_COLUMNS = ("lifecycle_stage", "acquisition_channel")
MIN_GROUP_ROWS = 100  # below this a group's metrics are noise
MISSING_GROUP = "(missing)"
TOP_FEATURES = 20
SHAP_MAX_ROWS = 5_000
SHAP_MIN_ROWS = 500
# TreeSHAP costs about rows x leaves (times depth squared); this many row-leaves take a
# second or two on one core, so a large booster explains fewer rows than a small one.
SHAP_ROW_LEAVES = 3_000_000
SHAP_SEED = 0

Table = dict[str, Any]


def _finite(value: float) -> float | None:
    """A metric as JSON holds it: NaN and infinity become null."""
    return float(value) if math.isfinite(value) else None


def _finite_all(metrics: dict[str, float]) -> dict[str, float | None]:
    return {name: _finite(value) for name, value in metrics.items()}


# Tables ---------------------------------------------------------------------------------


def decile_table(
    actual: np.ndarray,
    predicted: np.ndarray,
    total: str = "positives",
    mean: str = "rate",
    score: str = "mean_score",
) -> Table:
    """Rows, actual total and mean, mean prediction, cumulative share of the actual total
    and lift (the decile's mean over the overall mean) per decile of the prediction.

    Deciles have equal row counts (ties broken by row order); the column names say what
    the actual value is (positives and rate for a binary label, spend for an amount).
    """
    actual = np.asarray(actual, dtype=float)
    predicted = np.asarray(predicted, dtype=float)
    order = np.argsort(-predicted, kind="stable")
    grand_total, overall = float(actual.sum()), float(actual.mean())
    rows, cumulative = [], 0.0
    for k, part in enumerate(np.array_split(order, 10), start=1):
        part_total = float(actual[part].sum())
        cumulative += part_total
        rows.append(
            {
                "decile": k,
                "rows": len(part),
                total: part_total,
                mean: float(actual[part].mean()),
                score: float(predicted[part].mean()),
                f"cumulative_share_of_{total}": _finite(cumulative / grand_total)
                if grand_total
                else None,
                "lift": _finite(actual[part].mean() / overall) if overall else None,
            }
        )
    return {"rows": len(actual), total: grand_total, mean: overall, "deciles": rows}


def gain_curve(actual: np.ndarray, score: np.ndarray, points: int = 100) -> tuple[np.ndarray, ...]:
    """Share of rows targeted (highest score first) against the share of the actual total
    they hold, at ``points`` evenly spaced shares plus the origin."""
    ordered = np.asarray(actual, dtype=float)[np.argsort(-np.asarray(score), kind="stable")]
    captured = np.concatenate([[0.0], np.cumsum(ordered)]) / max(ordered.sum(), 1e-300)
    share = np.linspace(0.0, 1.0, points + 1)
    return share, captured[np.round(share * ordered.size).astype(int)]


def gain_table(actual: np.ndarray, scores: dict[str, np.ndarray], headline: Table) -> Table:
    """The gain curve at every tenth of the rows, and the headline metric, per score."""
    table = {}
    for name, score in scores.items():
        share, captured = gain_curve(actual, score, points=10)
        table[name] = {
            **_finite_all(headline[name]),
            "share_of_rows": [round(float(s), 2) for s in share],
            "share_captured": [float(c) for c in captured],
        }
    return table


def class_report(actual: np.ndarray, predicted: np.ndarray, classes: list[str]) -> Table:
    """Precision, recall, F1 and support (actual rows) per class."""
    precision, recall, f1, support = precision_recall_fscore_support(
        actual, predicted, labels=np.arange(len(classes)), zero_division=0
    )
    return {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(classes)
    }


def _group_refusal(task: TaskSpec, target: np.ndarray) -> str | None:
    """Why a group's metrics would not mean anything, or None when they would."""
    if target.size < MIN_GROUP_ROWS:
        return f"{target.size} rows, fewer than {MIN_GROUP_ROWS}"
    if task.objective.name == "tweedie":
        return None if target.sum() > 0 else "no actual value in the group"
    if np.unique(target).size < 2:
        return "one class only"
    return None


def group_metrics(
    task: TaskSpec, test: pd.DataFrame, scores: dict[str, np.ndarray], column: str
) -> Table | None:
    """The task's metric set of every score per value of ``column`` (a missing value is
    its own group), or None when the column is absent or holds no value at all.

    A group too small or with one class only gets null metrics and the reason.
    """
    if column not in test.columns or test[column].isna().all():
        return None
    target = task.targets(test)
    codes, values = pd.factorize(test[column].astype(object), sort=True)
    names = [str(v) for v in values] + [MISSING_GROUP]
    groups = []
    for code in [*range(len(values)), -1]:
        rows = np.flatnonzero(codes == code)
        if code == -1 and rows.size == 0:
            continue
        reason = _group_refusal(task, target[rows])
        entry: dict[str, Any] = {"group": names[code], "rows": int(rows.size)}
        if reason is not None:
            groups.append({**entry, "metrics": None, "reason": reason})
            continue
        with warnings.catch_warnings():
            # A group lacks some classes by construction; macro scores count them as 0.
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            entry["metrics"] = {
                name: _finite_all(task.metrics(test.iloc[rows], score[rows]))
                for name, score in scores.items()
            }
        groups.append({**entry, "reason": None})
    return {"primary_metric": task.primary_metric, "min_rows": MIN_GROUP_ROWS, "groups": groups}


def shap_rows(booster: lgb.Booster, available: int) -> int:
    """How many rows to explain: at most :data:`SHAP_MAX_ROWS`, fewer for a large booster
    (by :data:`SHAP_ROW_LEAVES`), never fewer than :data:`SHAP_MIN_ROWS` (or all rows)."""
    leaves = sum(map(int, re.findall(r"^num_leaves=(\d+)$", booster.model_to_string(), re.M)))
    affordable = SHAP_ROW_LEAVES // max(leaves, 1)
    return min(available, max(SHAP_MIN_ROWS, min(SHAP_MAX_ROWS, affordable)))


def sampled_contributions(
    booster: lgb.Booster, rows: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray]:
    """A seeded sample of ``rows`` as the booster's matrix, and each feature's contribution
    to each row's margin, shaped (rows, classes, features); one class unless multiclass.

    Returns:
        The sampled matrix (rows, features) and the contributions (bias dropped).
    """
    n = shap_rows(booster, len(rows))
    sample = np.sort(np.random.default_rng(SHAP_SEED).choice(len(rows), n, replace=False))
    matrix = model_matrix(booster, rows.iloc[sample])
    return matrix, contributions(booster, matrix)[:, :, :-1]


def _ranked(values: dict[str, float]) -> dict[str, float]:
    return dict(sorted(values.items(), key=lambda item: -item[1]))


# Figures --------------------------------------------------------------------------------


def roc_figure(y_true: np.ndarray, scores: dict[str, np.ndarray]) -> Figure:
    """ROC curves of the model and its baselines; keys are the legend labels."""
    fig, ax = plt.subplots(figsize=(5, 5))
    for label, score in scores.items():
        fpr, tpr, _ = roc_curve(y_true, score)
        ax.plot(fpr, tpr, label=label)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="random")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC, test window")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def pr_figure(y_true: np.ndarray, scores: dict[str, np.ndarray]) -> Figure:
    """Precision-recall curves of the model and its baselines; keys are the legend labels."""
    fig, ax = plt.subplots(figsize=(5, 5))
    for label, score in scores.items():
        precision, recall, _ = precision_recall_curve(y_true, score)
        ax.plot(recall, precision, label=label)
    base = float(np.mean(y_true))
    ax.axhline(base, color="grey", linestyle=":", linewidth=1, label=f"random ({base:.3f})")
    ax.set(
        xlabel="recall",
        ylabel="precision",
        title="Precision-recall, test window",
        xlim=(0, 1),
        ylim=(0, 1.02),
    )
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return fig


def calibration_figure(y_true: np.ndarray, probability: np.ndarray, bins: int = 10) -> Figure:
    """Reliability diagram: mean predicted probability against observed rate per decile."""
    observed, predicted = calibration_curve(y_true, probability, n_bins=bins, strategy="quantile")
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.plot(predicted, observed, marker="o")
    ax.set(
        xlabel="mean predicted probability",
        ylabel="observed rate",
        title="Calibration, test window (deciles)",
    )
    fig.tight_layout()
    return fig


def gain_figure(actual: np.ndarray, scores: dict[str, np.ndarray], captured: str) -> Figure:
    """Cumulative gain: the share of ``captured`` (e.g. positives) the highest-ranked
    share of rows holds, per score (keys are the legend labels), against a random and a
    perfect ranking."""
    fig, ax = plt.subplots(figsize=(5, 5))
    for label, score in scores.items():
        ax.plot(*gain_curve(actual, score), label=label)
    ax.plot(*gain_curve(actual, actual), color="black", linewidth=1, label="perfect ranking")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="random")
    ax.axvline(0.1, color="grey", linewidth=0.8, linestyle="--")
    ax.set(
        xlabel="share of rows targeted (highest score first)",
        ylabel=f"share of {captured} captured",
        title="Cumulative gain, test window",
        xlim=(0, 1),
        ylim=(0, 1.02),
    )
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def decile_figure(table: Table, actual: str, predicted: str) -> Figure:
    """The actual mean (column ``actual``) against the mean prediction (``predicted``) per
    decile of a :func:`decile_table`, with the overall actual mean."""
    deciles = table["deciles"]
    x = np.array([d["decile"] for d in deciles])
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.bar(x - 0.2, [d[actual] for d in deciles], width=0.4, label=f"actual ({actual})")
    ax.bar(x + 0.2, [d[predicted] for d in deciles], width=0.4, label=f"predicted ({predicted})")
    ax.axhline(table[actual], color="grey", linestyle=":", linewidth=1, label="overall actual")
    ax.set_xticks(x)
    ax.set(
        xlabel="decile of the prediction (1 = highest)",
        ylabel="mean per row",
        title="By decile, test window",
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def confusion_figure(actual: np.ndarray, predicted: np.ndarray, classes: list[str]) -> Figure:
    """Counts of actual (rows) against predicted (columns) classes."""
    k = len(classes)
    counts = np.bincount(actual * k + predicted, minlength=k * k).reshape(k, k)
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.imshow(counts, cmap="Blues")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{counts[i, j]:,}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(k), classes, rotation=45, ha="right")
    ax.set_yticks(range(k), classes)
    ax.set(xlabel="predicted", ylabel="actual", title="Confusion matrix, test window")
    fig.tight_layout()
    return fig


def ranking_figure(values: dict[str, float], xlabel: str, title: str) -> Figure:
    """Horizontal bars of the :data:`TOP_FEATURES` largest ``values``, largest on top."""
    top = list(_ranked(values).items())[:TOP_FEATURES]
    fig, ax = plt.subplots(figsize=(6, 0.25 * len(top) + 1.2))
    ax.barh([name for name, _ in top][::-1], [value for _, value in top][::-1])
    ax.set(xlabel=xlabel, title=title)
    ax.tick_params(axis="y", labelsize=8)
    fig.tight_layout()
    return fig


def _value_colours(column: np.ndarray) -> np.ndarray:
    """Each value's rank within its column, 0 (lowest) to 1 (highest); NaN stays NaN."""
    ranks = pd.Series(column).rank(pct=True).to_numpy()
    return np.where(np.isnan(column), np.nan, ranks)


def beeswarm_figure(
    matrix: np.ndarray, effect: np.ndarray, names: list[str], categorical: set[str], xlabel: str
) -> Figure:
    """One row of dots per feature (the :data:`TOP_FEATURES` of largest mean |effect|):
    each dot a customer at its contribution, spread vertically by how many share it,
    coloured by the customer's value of the feature (grey: missing or a category)."""
    top = np.argsort(-np.abs(effect).mean(axis=0), kind="stable")[:TOP_FEATURES]
    rng = np.random.default_rng(SHAP_SEED)
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(top) + 1.5))
    for row, j in enumerate(top[::-1]):
        x = effect[:, j]
        counts, edges = np.histogram(x, bins=40)
        density = counts[np.clip(np.searchsorted(edges, x, side="right") - 1, 0, 39)]
        y = row + rng.uniform(-0.4, 0.4, x.size) * density / max(counts.max(), 1)
        colour = (
            np.full(x.size, np.nan) if names[j] in categorical else _value_colours(matrix[:, j])
        )
        known = ~np.isnan(colour)
        ax.scatter(x[~known], y[~known], s=2, color="lightgrey")
        ax.scatter(x[known], y[known], s=2, c=colour[known], cmap="coolwarm", vmin=0, vmax=1)
    ax.axvline(0, color="grey", linewidth=0.8)
    ax.set_yticks(range(len(top)), [names[j] for j in top[::-1]], fontsize=8)
    ax.set(xlabel=xlabel, title=f"Contributions, {len(matrix):,} sampled test rows")
    scale = plt.cm.ScalarMappable(cmap="coolwarm", norm=plt.Normalize(0, 1))
    bar = fig.colorbar(scale, ax=ax, ticks=[0, 1], pad=0.01)
    bar.ax.set_yticklabels(["low", "high"])
    bar.set_label("feature value (rank)")
    fig.tight_layout()
    return fig


def group_figure(by_group: dict[str, Table], metric: str) -> Figure:
    """Bars of ``metric`` per group of each grouping column, one bar per score; a group
    without metrics shows its row count and no bar."""
    fig, axes = plt.subplots(len(by_group), 1, figsize=(8, 3.2 * len(by_group)), squeeze=False)
    for ax, (column, table) in zip(axes[:, 0], by_group.items(), strict=True):
        groups = table["groups"]
        names = next((list(g["metrics"]) for g in groups if g["metrics"]), [MODEL])
        width = 0.8 / len(names)
        x = np.arange(len(groups))
        for i, name in enumerate(names):
            values = [g["metrics"][name][metric] if g["metrics"] else None for g in groups]
            heights = [np.nan if v is None else v for v in values]
            ax.bar(x + (i - (len(names) - 1) / 2) * width, heights, width=width, label=name)
        labels = [
            f"{g['group']}\n{g['rows']:,} rows" + ("" if g["metrics"] else "\n(skipped)")
            for g in groups
        ]
        ax.set_xticks(x, labels, fontsize=7)
        ax.set(ylabel=metric, title=f"{metric} by {column}, test window")
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    return fig


# Assembly -------------------------------------------------------------------------------


@dataclass
class Evidence:
    """What a run carries, by artifact path: JSON tables and figures."""

    tables: dict[str, Table] = field(default_factory=dict)
    figures: dict[str, Figure] = field(default_factory=dict)

    def add(self, other: Evidence) -> Evidence:
        self.tables.update(other.tables)
        self.figures.update(other.figures)
        return self


def _labelled(scores: dict[str, np.ndarray], headline: Table, key: str, fmt: str) -> dict:
    """Scores keyed by their legend label: the name and its ``key`` metric."""
    return {f"{name} ({fmt.format(headline[name][key])})": s for name, s in scores.items()}


def binary_evidence(target: np.ndarray, scores: dict[str, np.ndarray], metrics: Table) -> Evidence:
    """ROC, precision-recall, calibration, gain with lift at 10%, deciles."""
    deciles = decile_table(target, scores[MODEL])
    lift = {name: {"lift_at_10pct": m["lift_at_10pct"]} for name, m in metrics.items()}
    return Evidence(
        tables={
            "evidence/deciles.json": deciles,
            "evidence/gain.json": gain_table(target, scores, lift),
        },
        figures={
            "plots/roc.png": roc_figure(
                target, _labelled(scores, metrics, "roc_auc", "AUC {:.3f}")
            ),
            "plots/pr.png": pr_figure(target, _labelled(scores, metrics, "pr_auc", "AP {:.3f}")),
            "plots/calibration.png": calibration_figure(target, scores[MODEL]),
            "plots/gain.png": gain_figure(
                target,
                _labelled(scores, metrics, "lift_at_10pct", "lift@10% {:.2f}"),
                "positives",
            ),
            "plots/deciles.png": decile_figure(deciles, "rate", "mean_score"),
        },
    )


def value_evidence(target: np.ndarray, scores: dict[str, np.ndarray], metrics: Table) -> Evidence:
    """Predicted against actual value by decile, gain of the actual value captured."""
    deciles = decile_table(target, scores[MODEL], "actual_total", "actual_mean", "mean_prediction")
    top = {name: {"top_10pct_share": m["top_10pct_share"]} for name, m in metrics.items()}
    return Evidence(
        tables={
            "evidence/deciles.json": deciles,
            "evidence/gain.json": gain_table(target, scores, top),
        },
        figures={
            "plots/deciles.png": decile_figure(deciles, "actual_mean", "mean_prediction"),
            "plots/gain.png": gain_figure(
                target,
                _labelled(scores, metrics, "top_10pct_share", "top 10% hold {:.1%}"),
                "actual value",
            ),
        },
    )


def class_evidence(
    target: np.ndarray, scores: dict[str, np.ndarray], classes: list[str]
) -> Evidence:
    """Confusion matrix of the model; precision, recall and F1 per class of every score."""
    predicted = {name: score.argmax(axis=1) for name, score in scores.items()}
    return Evidence(
        tables={
            "evidence/class_report.json": {
                name: class_report(target, p, classes) for name, p in predicted.items()
            }
        },
        figures={"plots/confusion.png": confusion_figure(target, predicted[MODEL], classes)},
    )


def model_evidence(booster: lgb.Booster, test: pd.DataFrame, multiclass: bool) -> Evidence:
    """Gain importance and contributions (mean |contribution| and their spread)."""
    names = booster.feature_name()
    gain = dict(zip(names, booster.feature_importance("gain").tolist(), strict=True))
    matrix, contrib = sampled_contributions(booster, test)
    magnitude = np.abs(contrib).sum(axis=1)  # a multiclass feature's pull on any class
    mean_abs = _ranked(dict(zip(names, magnitude.mean(axis=0).tolist(), strict=True)))
    # A multiclass contribution has a sign per class; its spread is shown as magnitude.
    effect = magnitude if multiclass else contrib[:, 0, :]
    unit = "|contribution| summed over classes" if multiclass else "contribution to the margin"
    return Evidence(
        tables={
            "feature_importance_gain.json": gain,
            "evidence/shap.json": {
                "rows": len(matrix),
                "of_rows": len(test),
                "seed": SHAP_SEED,
                "mean_abs_contribution": mean_abs,
            },
        },
        figures={
            "plots/feature_importance_gain.png": ranking_figure(
                gain, "total gain of its splits", "Feature importance (gain)"
            ),
            "plots/shap_importance.png": ranking_figure(
                mean_abs,
                f"mean {unit}" if multiclass else "mean |contribution| to the margin",
                f"Feature contributions (SHAP), {len(matrix):,} of {len(test):,} test rows",
            ),
            "plots/shap_beeswarm.png": beeswarm_figure(
                matrix, effect, names, set(booster_categories(booster)), unit
            ),
        },
    )


def segment_evidence(task: TaskSpec, test: pd.DataFrame, scores: dict[str, np.ndarray]) -> Evidence:
    """The metric set per lifecycle stage and per acquisition channel, where present."""
    by_group = {
        column: table
        for column in GROUP_COLUMNS
        if (table := group_metrics(task, test, scores, column)) is not None
    }
    if not by_group:
        return Evidence()
    return Evidence(
        tables={"evidence/metrics_by_group.json": by_group},
        figures={"plots/metrics_by_group.png": group_figure(by_group, task.primary_metric)},
    )


def evidence(
    task: TaskSpec,
    booster: lgb.Booster,
    test: pd.DataFrame,
    prediction: np.ndarray,
    baselines: dict[str, np.ndarray],
) -> Evidence:
    """Every table and plot a task's run carries, for its objective."""
    target = task.targets(test)
    scores = {MODEL: np.asarray(prediction), **{k: np.asarray(v) for k, v in baselines.items()}}
    multiclass = task.objective.name == "multiclass"
    metrics = {} if multiclass else {name: task.metrics(test, s) for name, s in scores.items()}
    if multiclass:
        found = class_evidence(target.astype(int), scores, list(task.classes))
    elif task.objective.name == "binary":
        found = binary_evidence(target, scores, metrics)
    else:
        found = value_evidence(target, scores, metrics)
    found.add(model_evidence(booster, test, multiclass))
    return found.add(segment_evidence(task, test, scores))


def log_evidence(
    task: TaskSpec,
    booster: lgb.Booster,
    test: pd.DataFrame,
    prediction: np.ndarray,
    baselines: dict[str, np.ndarray],
) -> None:
    """Log the test window's evidence to the active MLflow run: tables as JSON, plots as
    PNG (each figure closed once written)."""
    found = evidence(task, booster, test, prediction, baselines)
    try:
        for path, table in found.tables.items():
            mlflow.log_dict(table, path)
        for path, figure in found.figures.items():
            mlflow.log_figure(figure, path)
    finally:
        for figure in found.figures.values():
            plt.close(figure)
