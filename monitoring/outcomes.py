"""What the scored customers did in a week, against the reference weeks: the share who
ordered and the typical order value (the geometric mean of order amounts: a price or
basket change scales every order, and on logs a week's few hundred orders measure that
scale far more steadily than a mean dominated by a few large baskets). These move the
week a shock hits, long before the labels that would show a model going stale have
matured, and a change in who the customers are (covariate drift) leaves them nearly
still."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from features.contract import ENTITY_KEY
from monitoring.weeks import IsoWeek


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


def _purchases(orders: pd.DataFrame, week: IsoWeek, customers: pd.Index) -> pd.DataFrame:
    inside = (orders["order_ts"] >= week.start) & (orders["order_ts"] < week.end)
    bought = orders[inside & orders[ENTITY_KEY].isin(customers)]
    if "is_return" in bought:
        bought = bought[~bought["is_return"].astype(bool)]
    return bought


def weekly_outcomes(
    orders: pd.DataFrame,
    week: IsoWeek,
    reference_weeks: Sequence[IsoWeek],
    customers: Mapping[IsoWeek, pd.Index],
) -> tuple[Outcome, ...]:
    """Order rate (share of a week's scored customers who ordered in it; two-proportion
    z-test) and typical order value (returns and non-positive amounts left out; Welch's
    t-test on the logs) of ``week``
    against the pooled ``reference_weeks``. ``customers``: each week's scored customers.
    Empty when a side has no customer or no order."""

    def pooled(weeks: Sequence[IsoWeek]) -> tuple[int, int, np.ndarray]:
        n = buyers = 0
        amounts = []
        for w in weeks:
            bought = _purchases(orders, w, customers[w])
            n += len(customers[w])
            buyers += bought[ENTITY_KEY].nunique()
            amount = bought["amount"].to_numpy(dtype=np.float64)
            amounts.append(np.log(amount[amount > 0]))
        return n, buyers, np.concatenate(amounts) if amounts else np.array([])

    n_ref, buyers_ref, amounts_ref = pooled(reference_weeks)
    n_now, buyers_now, amounts_now = pooled([week])
    if not (n_ref and n_now and buyers_ref and buyers_now):
        return ()
    rate_ref, rate_now = buyers_ref / n_ref, buyers_now / n_now
    both = (buyers_ref + buyers_now) / (n_ref + n_now)
    spread = np.sqrt(both * (1 - both) * (1 / n_ref + 1 / n_now))
    z = (rate_now - rate_ref) / spread if spread > 0 else 0.0
    outcomes = [Outcome("order rate", rate_ref, rate_now, float(2 * stats.norm.sf(abs(z))))]
    if len(amounts_ref) > 1 and len(amounts_now) > 1:
        test = stats.ttest_ind(amounts_now, amounts_ref, equal_var=False)
        outcomes.append(
            Outcome(
                "typical order value",
                float(np.exp(amounts_ref.mean())),
                float(np.exp(amounts_now.mean())),
                float(test.pvalue),
            )
        )
    return tuple(outcomes)
