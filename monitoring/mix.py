"""Who the newest customers are: the mix of sign-ups of the last four weeks (their
acquisition channel, region, age band) against the sign-ups of the reference dates.

A change of acquisition mix reaches the whole customer base slowly (after six weeks of
a new channel mix, the base's channel distribution had moved 0.02 in Jensen-Shannon
distance on the simulated world, a fifth of the drift threshold), while among the
newest customers it is plain at once: this is where covariate drift of that kind is
reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from features.contract import ENTITY_KEY

# Customers who signed up within this many days of the as-of date are the newest.
NEWCOMER_DAYS = 28
# Fewer newest customers than this on either side: no verdict on their mix.
MIN_NEWCOMERS = 50
TENURE = "tenure_days"


@dataclass(frozen=True)
class MixShift:
    feature: str
    reference: dict[str, float]  # share of the newest customers per category
    current: dict[str, float]
    p_value: float  # chi-square test of the two windows' counts
    shifted: bool

    def describe(self) -> str:
        moved = sorted(
            self.current,
            key=lambda k: abs(self.current[k] - self.reference.get(k, 0)),
            reverse=True,
        )[:3]
        parts = ", ".join(
            f"{k} {100 * self.reference.get(k, 0):.0f}% -> {100 * self.current[k]:.0f}%"
            for k in moved
        )
        return f"{self.feature} of the newest customers: {parts} (p={self.p_value:.2g})"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def newest(rows: pd.DataFrame) -> pd.DataFrame:
    """The customers who signed up within :data:`NEWCOMER_DAYS` of an as-of date, each
    once: a window of several weekly dates holds most of them at two or more, and
    counting them again would make the test far surer than its customers allow."""
    tenure = pd.to_numeric(rows[TENURE], errors="coerce")
    found = rows[tenure <= NEWCOMER_DAYS]
    if ENTITY_KEY in found:
        found = found.drop_duplicates(ENTITY_KEY, keep="last")
    return found


def mix_shifts(
    reference: pd.DataFrame, current: pd.DataFrame, features: Sequence[str], p_value: float
) -> tuple[MixShift, ...]:
    """Each of ``features`` the rows hold, compared between the newest customers of the
    two windows (missing values are a category of their own)."""
    before, now = newest(reference), newest(current)
    if min(len(before), len(now)) < MIN_NEWCOMERS:
        return ()
    shifts = []
    for name in features:
        if name not in reference or name not in current:
            continue
        a = before[name].astype("object").fillna("(missing)").astype(str)
        b = now[name].astype("object").fillna("(missing)").astype(str)
        table = pd.crosstab(
            np.r_[np.zeros(len(a), int), np.ones(len(b), int)], np.r_[a.to_numpy(), b.to_numpy()]
        )
        if table.shape[1] < 2:
            continue
        p = float(stats.chi2_contingency(table.to_numpy()).pvalue)
        shares = table.div(table.sum(axis=1), axis=0)
        shifts.append(
            MixShift(
                name,
                {str(k): float(v) for k, v in shares.iloc[0].items()},
                {str(k): float(v) for k, v in shares.iloc[1].items()},
                p,
                p < p_value,
            )
        )
    return tuple(shifts)
