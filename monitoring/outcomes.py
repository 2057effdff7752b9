"""What the scored customers did in a week, against the reference weeks: the share who
ordered, and their baskets against their own average order value before the week.

These move the week a shock hits, long before the labels that would show a model going
stale have matured, and a change in who the customers are (covariate drift) leaves them
nearly still. Each basket is measured against the customer's own average (on logs), so
the spread between big and small spenders, most of the variance of raw order values,
drops out: a week's few hundred orders then show a 15% change of basket size at once,
where the mean of raw amounts moves 10% from one quiet week to the next.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from features.contract import ENTITY_KEY
from monitoring.weeks import IsoWeek

# The orders feature the baskets are measured against: net spend per order before the
# as-of date.
OWN_AVERAGE = "avg_order_value"


@dataclass(frozen=True)
class Outcome:
    name: str
    reference: float
    current: float
    p_value: float

    @property
    def change(self) -> float:
        return self.current / self.reference - 1.0 if self.reference else float("nan")

    def shifted(self, change: float, p_value: float) -> bool:
        return abs(self.change) >= change and self.p_value < p_value

    def describe(self) -> str:
        return (
            f"{self.name} {self.current:.4g} against {self.reference:.4g} "
            f"({100 * self.change:+.1f}%, p={self.p_value:.2g})"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"change": self.change}


def _week(
    orders: pd.DataFrame, week: IsoWeek, own_average: pd.Series
) -> tuple[int, int, np.ndarray]:
    """Customers, buyers, and each purchase's log ratio to its buyer's own average."""
    inside = (orders["order_ts"] >= week.start) & (orders["order_ts"] < week.end)
    bought = orders[inside & orders[ENTITY_KEY].isin(own_average.index)]
    if "is_return" in bought:
        bought = bought[~bought["is_return"].astype(bool)]
    average = own_average.reindex(bought[ENTITY_KEY]).to_numpy(dtype=np.float64)
    amount = bought["amount"].to_numpy(dtype=np.float64)
    known = (average > 0) & (amount > 0)
    ratios = np.log(amount[known] / average[known])
    return len(own_average), int(bought[ENTITY_KEY].nunique()), ratios


def weekly_outcomes(
    orders: pd.DataFrame,
    week: IsoWeek,
    reference_weeks: Sequence[IsoWeek],
    own_average: Mapping[IsoWeek, pd.Series],
) -> tuple[Outcome, ...]:
    """Order rate (share of a week's scored customers who ordered in it; two-proportion
    z-test) and basket size (the geometric mean of purchases over their buyer's own
    average order value before the week; returns and customers without one left out;
    Welch's t-test on the logs) of ``week`` against the pooled ``reference_weeks``.

    ``own_average``: per week, its scored customers' average order value as of the
    week's start, indexed by customer. Empty when a side has no customer or no order.
    """
    nobody = pd.Series(dtype=np.float64)
    reference = [_week(orders, w, own_average.get(w, nobody)) for w in reference_weeks]
    n_ref = sum(r[0] for r in reference)
    buyers_ref = sum(r[1] for r in reference)
    ratios_ref = np.concatenate([r[2] for r in reference]) if reference else np.array([])
    n_now, buyers_now, ratios_now = _week(orders, week, own_average.get(week, nobody))
    if not (n_ref and n_now and buyers_ref and buyers_now):
        return ()
    rate_ref, rate_now = buyers_ref / n_ref, buyers_now / n_now
    both = (buyers_ref + buyers_now) / (n_ref + n_now)
    spread = np.sqrt(both * (1 - both) * (1 / n_ref + 1 / n_now))
    z = (rate_now - rate_ref) / spread if spread > 0 else 0.0
    outcomes = [Outcome("order rate", rate_ref, rate_now, float(2 * stats.norm.sf(abs(z))))]
    if len(ratios_ref) > 1 and len(ratios_now) > 1:
        test = stats.ttest_ind(ratios_now, ratios_ref, equal_var=False)
        outcomes.append(
            Outcome(
                "basket against own average",
                float(np.exp(ratios_ref.mean())),
                float(np.exp(ratios_now.mean())),
                float(test.pvalue),
            )
        )
    return tuple(outcomes)
