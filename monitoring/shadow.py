"""The challenger scored in the champion's shadow, against the champion, on the same
customers of the same week: how far apart their scores are and how often they put a
customer in the same tier. Read from the prediction log, where serving writes both."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from features.contract import ENTITY_KEY


@dataclass(frozen=True)
class ShadowComparison:
    champion: str  # versions
    challenger: str
    customers: int  # scored by both in the week
    mean_abs_difference: float
    rank_correlation: float  # Spearman, over the customers scored by both
    same_tier: float  # share of those customers in the same tier

    def describe(self) -> str:
        return (
            f"challenger v{self.challenger} beside champion v{self.champion} on "
            f"{self.customers:,} customers: scores {self.mean_abs_difference:.3g} apart on "
            f"average, rank correlation {self.rank_correlation:.3f}, same tier for "
            f"{100 * self.same_tier:.0f}%"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare_shadow(log: pd.DataFrame) -> ShadowComparison | None:
    """The week's ``online`` answers against its ``shadow`` ones (each customer's latest
    of each); None when the week has no customer scored by both."""
    if log.empty:
        return None
    known = log[~log["unknown"].astype(bool)].sort_values("logged_at")
    latest = {
        source: known[known["source"] == source].drop_duplicates(ENTITY_KEY, keep="last")
        for source in ("online", "shadow")
    }
    both = latest["online"].merge(latest["shadow"], on=ENTITY_KEY, suffixes=("", "_shadow"))
    if both.empty:
        return None
    champion = both["score"].to_numpy(dtype=np.float64)
    challenger = both["score_shadow"].to_numpy(dtype=np.float64)
    correlation = (
        float(stats.spearmanr(champion, challenger).statistic) if len(both) > 2 else float("nan")
    )
    return ShadowComparison(
        champion=str(both["model_version"].iloc[-1]),
        challenger=str(both["model_version_shadow"].iloc[-1]),
        customers=len(both),
        mean_abs_difference=float(np.abs(champion - challenger).mean()),
        rank_correlation=correlation,
        same_tier=float((both["tier"] == both["tier_shadow"]).mean()),
    )
