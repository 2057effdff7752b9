"""Metrics and plots for scored test windows."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # plots are written to files; no display on servers or in CI

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score, roc_curve


def lift_at(y_true: np.ndarray, score: np.ndarray, fraction: float = 0.1) -> float:
    """Positive rate among the top ``fraction`` by score, over the overall positive rate."""
    n_top = max(1, int(round(len(score) * fraction)))
    top = np.argsort(-score, kind="stable")[:n_top]
    base = float(np.mean(y_true))
    return float(np.mean(y_true[top]) / base) if base > 0 else float("nan")


def binary_metrics(y_true: np.ndarray, score: np.ndarray) -> dict[str, float]:
    """ROC-AUC, PR-AUC, lift at 10% and, when ``score`` is a probability, the Brier score."""
    y_true = np.asarray(y_true)
    score = np.asarray(score, dtype=float)
    metrics = {
        "roc_auc": float(roc_auc_score(y_true, score)),
        "pr_auc": float(average_precision_score(y_true, score)),
        "lift_at_10pct": lift_at(y_true, score, 0.1),
    }
    if score.min() >= 0.0 and score.max() <= 1.0:
        metrics["brier"] = float(brier_score_loss(y_true, score))
    return metrics


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
