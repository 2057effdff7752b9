"""Plots of scored test windows (the metrics are each objective's, in
:mod:`training.objectives`)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # plots are written to files; no display on servers or in CI

from typing import TYPE_CHECKING

import lightgbm as lgb
import matplotlib.pyplot as plt
import mlflow
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve
from sklearn.metrics import roc_auc_score, roc_curve

if TYPE_CHECKING:
    from training.tasks import TaskSpec


def roc_figure(y_true: np.ndarray, scores: dict[str, np.ndarray]) -> Figure:
    """ROC curves of the model and its baselines on one test window."""
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, score in scores.items():
        fpr, tpr, _ = roc_curve(y_true, score)
        ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(y_true, score):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC, test window")
    ax.legend(loc="lower right")
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


def decile_figure(actual: np.ndarray, predicted: np.ndarray) -> Figure:
    """Mean predicted against mean actual value per decile of the prediction."""
    order = np.argsort(predicted, kind="stable")
    deciles = np.array_split(order, 10)
    fig, ax = plt.subplots(figsize=(6, 4))
    x = np.arange(1, len(deciles) + 1)
    ax.bar(x - 0.2, [actual[d].mean() for d in deciles], width=0.4, label="actual")
    ax.bar(x + 0.2, [predicted[d].mean() for d in deciles], width=0.4, label="predicted")
    ax.set(xlabel="decile of the prediction", ylabel="mean value", title="By decile, test window")
    ax.legend()
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


def evidence_figures(
    task: TaskSpec,
    test: pd.DataFrame,
    prediction: np.ndarray,
    baselines: dict[str, np.ndarray],
) -> dict[str, Figure]:
    """The plots a task's run carries, by artifact path, for its objective."""
    target = task.targets(test)
    if task.objective.name == "binary":
        return {
            "plots/roc.png": roc_figure(target, {"lightgbm": prediction, **baselines}),
            "plots/calibration.png": calibration_figure(target, prediction),
        }
    if task.objective.name == "multiclass":
        predicted = prediction.argmax(axis=1)
        return {
            "plots/confusion.png": confusion_figure(
                target.astype(int), predicted, list(task.classes)
            )
        }
    return {"plots/deciles.png": decile_figure(target, prediction)}


def log_evidence(
    task: TaskSpec,
    booster: lgb.Booster,
    test: pd.DataFrame,
    prediction: np.ndarray,
    baselines: dict[str, np.ndarray],
) -> None:
    """Log the test window's evidence to the active MLflow run: the plots (PNG) and the
    feature importance (JSON)."""
    for path, figure in evidence_figures(task, test, prediction, baselines).items():
        mlflow.log_figure(figure, path)
        plt.close(figure)
    importance = booster.feature_importance("gain").tolist()
    mlflow.log_dict(
        dict(zip(booster.feature_name(), importance, strict=True)), "feature_importance_gain.json"
    )
