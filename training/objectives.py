"""What differs between a binary, a regression and a multiclass model, said once.

An objective names LightGBM's objective, turns labels into the targets LightGBM fits and
a booster's raw margins into predictions, and scores predictions with its metric set.
Every room predicts through :func:`training.model_input.predict` (training, serving,
monitoring), so a score means the same thing wherever it is read.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy.special import expit, softmax
from scipy.stats import spearmanr
from sklearn.metrics import (
    average_precision_score,
    balanced_accuracy_score,
    brier_score_loss,
    log_loss,
    mean_absolute_error,
    roc_auc_score,
)

from training.calibration import expected_calibration_error

ObjectiveName = Literal["binary", "tweedie", "multiclass"]
# A metric of labels and predictions with one weight per row (how often a resample drew it).
WeightedMetric = Callable[[np.ndarray, np.ndarray, np.ndarray], float]


def lift_at(y_true: np.ndarray, score: np.ndarray, fraction: float = 0.1) -> float:
    """Positive rate among the top ``fraction`` by score, over the overall positive rate."""
    n_top = max(1, int(round(len(score) * fraction)))
    top = np.argsort(-score, kind="stable")[:n_top]
    base = float(np.mean(y_true))
    return float(np.mean(y_true[top]) / base) if base > 0 else float("nan")


def binary_metrics(y_true: np.ndarray, score: np.ndarray) -> dict[str, float]:
    """ROC-AUC, PR-AUC, lift at 10% and, when ``score`` is a probability, the Brier score
    and the expected calibration error."""
    y_true = np.asarray(y_true)
    score = np.asarray(score, dtype=float)
    metrics = {
        "roc_auc": float(roc_auc_score(y_true, score)),
        "pr_auc": float(average_precision_score(y_true, score)),
        "lift_at_10pct": lift_at(y_true, score, 0.1),
    }
    if score.min() >= 0.0 and score.max() <= 1.0:
        metrics["brier"] = float(brier_score_loss(y_true, score))
        metrics["ece"] = expected_calibration_error(y_true, score)
    return metrics


def _weights(n: int, weight: np.ndarray | None) -> np.ndarray:
    return np.ones(n) if weight is None else np.asarray(weight, dtype=float)


def gini(y_true: np.ndarray, score: np.ndarray, weight: np.ndarray | None = None) -> float:
    """Gini of ``y_true`` ordered by ``score``: the share of the value a ranking gathers
    early, against a random order (0) and the best possible one. ``weight`` counts each
    row that many times (a bootstrap resample)."""
    order = np.argsort(-np.asarray(score, dtype=float), kind="stable")
    w = _weights(len(order), weight)[order]
    value = np.asarray(y_true, dtype=float)[order] * w
    total, rows = value.sum(), w.sum()
    if total == 0:
        return float("nan")
    return float(np.sum(w * (np.cumsum(value) / total - np.cumsum(w) / rows)) / rows)


def normalized_gini(
    y_true: np.ndarray, score: np.ndarray, weight: np.ndarray | None = None
) -> float:
    """The Gini of the ranking over the Gini of the perfect ranking (1 is perfect)."""
    best = gini(y_true, y_true, weight)
    return gini(y_true, score, weight) / best if best else float("nan")


def rank_auc(y_true: np.ndarray, score: np.ndarray, weight: np.ndarray | None = None) -> float:
    """ROC-AUC (ties count half), as scikit-learn's, in one sort and with row weights:
    fast enough for the many resamples of a bootstrap."""
    order = np.argsort(np.asarray(score, dtype=float), kind="stable")
    sorted_score = np.asarray(score, dtype=float)[order]
    positive = np.asarray(y_true)[order] == 1
    w = _weights(len(order), weight)[order]
    ties = np.flatnonzero(np.r_[True, sorted_score[1:] != sorted_score[:-1]])
    w_pos = np.add.reduceat(w * positive, ties)
    w_neg = np.add.reduceat(w * ~positive, ties)
    pairs = w_pos.sum() * w_neg.sum()
    if pairs == 0:
        return float("nan")
    below = np.cumsum(w_neg) - w_neg
    return float(np.sum(w_pos * (below + 0.5 * w_neg)) / pairs)


def macro_f1(
    y_true: np.ndarray, probability: np.ndarray, weight: np.ndarray | None = None
) -> float:
    """Macro-F1 of the most probable class over every class (a class never predicted
    nor present scores 0), from one weighted confusion count."""
    k = probability.shape[1]
    cells = np.asarray(y_true) * k + probability.argmax(axis=1)
    w = _weights(len(cells), weight)
    counts = np.bincount(cells, weights=w, minlength=k * k).reshape(k, k)
    hits = np.diag(counts)
    denominator = counts.sum(axis=0) + counts.sum(axis=1)
    return float(np.mean(np.where(denominator > 0, 2 * hits / np.maximum(denominator, 1), 0.0)))


def regression_metrics(y_true: np.ndarray, prediction: np.ndarray) -> dict[str, float]:
    """Normalized Gini (the ranking against a perfect one), MAE, Spearman, and the share
    of the actual value held by the predicted top 10%."""
    y_true = np.asarray(y_true, dtype=float)
    prediction = np.asarray(prediction, dtype=float)
    n_top = max(1, int(round(len(prediction) * 0.1)))
    top = np.argsort(-prediction, kind="stable")[:n_top]
    total = y_true.sum()
    return {
        "normalized_gini": normalized_gini(y_true, prediction),
        "mae": float(mean_absolute_error(y_true, prediction)),
        "spearman": float(spearmanr(y_true, prediction).statistic),
        "top_10pct_share": float(y_true[top].sum() / total) if total else float("nan"),
    }


def multiclass_metrics(y_true: np.ndarray, probability: np.ndarray) -> dict[str, float]:
    """Macro-F1 and balanced accuracy of the most probable class, and the log loss.

    ``y_true`` holds class codes; ``probability`` one column per class.
    """
    y_true = np.asarray(y_true, dtype=int)
    probability = np.asarray(probability, dtype=float)
    predicted = probability.argmax(axis=1)
    classes = np.arange(probability.shape[1])
    return {
        "macro_f1": macro_f1(y_true, probability),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, predicted)),
        "log_loss": _log_loss(y_true, probability, classes),
    }


def _log_loss(y_true: np.ndarray, probability: np.ndarray, classes: np.ndarray) -> float:
    with warnings.catch_warnings():
        # Rows of one segment often lack a class; the loss over every class is still right.
        warnings.filterwarnings("ignore", "y_pred contains classes not in y_true")
        return float(log_loss(y_true, np.clip(probability, 1e-15, 1), labels=classes))


@dataclass(frozen=True)
class Objective:
    """One kind of model output.

    Attributes:
        name: ``binary`` (a probability), ``tweedie`` (an expected non-negative amount)
            or ``multiclass`` (a probability per class).
        metrics: Scores predictions against labels (class codes for multiclass).
        from_margin: Raw margins (what ``pred_contrib`` adds up to) to predictions.
    """

    name: ObjectiveName
    metrics: Callable[[np.ndarray, np.ndarray], dict[str, float]]
    from_margin: Callable[[np.ndarray], np.ndarray]

    def metric(self, name: str) -> WeightedMetric:
        """One metric of the set alone, taking row weights (a bootstrap resample); fast
        for the metrics a task decides by."""
        if name in SINGLE_METRICS:
            return SINGLE_METRICS[name]

        def from_set(y_true: np.ndarray, prediction: np.ndarray, weight: np.ndarray) -> float:
            rows = np.repeat(np.arange(len(y_true)), np.asarray(weight, dtype=int))
            return self.metrics(y_true[rows], prediction[rows])[name]

        return from_set

    def params(self, classes: Sequence[str] = ()) -> dict[str, Any]:
        """LightGBM's objective settings."""
        if self.name == "multiclass":
            return {"objective": "multiclass", "num_class": len(classes)}
        if self.name == "tweedie":
            # Spend: many zeros and a long tail; 1.5 sits between Poisson and gamma.
            return {"objective": "tweedie", "tweedie_variance_power": 1.5}
        return {"objective": "binary"}

    def targets(self, labels: pd.Series, classes: Sequence[str] = ()) -> np.ndarray:
        """Labels as LightGBM fits them: class codes in ``classes`` order for multiclass.

        Raises:
            ValueError: A label is missing, or not one of ``classes``.
        """
        if self.name == "multiclass":
            codes = pd.Categorical(labels, categories=list(classes)).codes
            if (codes < 0).any():
                unknown = sorted(set(labels[codes < 0].astype(str)))
                raise ValueError(f"labels outside the task's classes: {', '.join(unknown)}")
            return codes.astype(np.int64)
        values = pd.to_numeric(labels, errors="raise").to_numpy(dtype=np.float64)
        if np.isnan(values).any():
            raise ValueError("missing labels")
        return values


# The metrics a task may decide by, each computable alone (bootstrap resamples).
SINGLE_METRICS: dict[str, WeightedMetric] = {
    "roc_auc": rank_auc,
    "normalized_gini": normalized_gini,
    "macro_f1": macro_f1,
}


def _multiclass_margin(margin: np.ndarray) -> np.ndarray:
    return softmax(margin, axis=1)


OBJECTIVES: dict[str, Objective] = {
    "binary": Objective("binary", binary_metrics, expit),
    "tweedie": Objective("tweedie", regression_metrics, np.exp),
    "multiclass": Objective("multiclass", multiclass_metrics, _multiclass_margin),
}
