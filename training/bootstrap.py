"""How sure a margin is: bootstrap confidence intervals over customers.

A test window holds several as-of dates per customer, and one customer's rows are not
independent, so the resampling unit is the customer: each resample draws customers with
replacement and keeps all their rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from training.objectives import WeightedMetric


@dataclass(frozen=True)
class Interval:
    """A point estimate and its two-sided bootstrap percentile interval."""

    estimate: float
    low: float
    high: float
    level: float = 0.95

    @property
    def verdict(self) -> str:
        """``win`` or ``loss`` when the interval excludes zero, ``tie`` when it holds it."""
        if self.low > 0:
            return "win"
        if self.high < 0:
            return "loss"
        return "tie"

    def __str__(self) -> str:
        return f"{self.estimate:+.4f} ({self.level:.0%} CI {self.low:+.4f}..{self.high:+.4f})"


def customer_weights(customers: pd.Series, n: int, seed: int) -> Iterator[np.ndarray]:
    """``n`` resamples as row weights: each customer drawn with replacement as often as
    the draw says, all of its rows with it."""
    codes, uniques = pd.factorize(customers)
    rng = np.random.default_rng(seed)
    for _ in range(n):
        draws = np.bincount(
            rng.integers(0, len(uniques), size=len(uniques)), minlength=len(uniques)
        )
        yield draws[codes].astype(float)


def margin_interval(
    metric: WeightedMetric,
    y_true: np.ndarray,
    model: np.ndarray,
    baseline: np.ndarray,
    customers: pd.Series,
    resamples: int = 200,
    seed: int = 0,
    level: float = 0.95,
) -> Interval:
    """The model's metric minus the baseline's, with a bootstrap interval from the same
    customer resamples for both (paired, so their shared noise cancels)."""
    # Each side's rows presorted by its score: the metrics' own sorts then meet sorted
    # input, which costs one pass per resample instead of a full sort.
    sides = [(_presorted(score), score) for score in (model, baseline)]
    sides = [(order, y_true[order], score[order]) for order, score in sides]

    def margin(weight: np.ndarray) -> float:
        (order_m, y_m, model_m), (order_b, y_b, baseline_b) = sides
        return metric(y_m, model_m, weight[order_m]) - metric(y_b, baseline_b, weight[order_b])

    estimate = margin(np.ones(len(y_true)))
    margins = [margin(w) for w in customer_weights(customers, resamples, seed)]
    tail = (1 - level) / 2 * 100
    low, high = np.nanpercentile(margins, [tail, 100 - tail])
    return Interval(float(estimate), float(low), float(high), level)


def _presorted(score: np.ndarray) -> np.ndarray:
    """Row order by score (one score per row), or as is (a probability per class)."""
    if score.ndim != 1:
        return np.arange(len(score))
    return np.argsort(score, kind="stable")
