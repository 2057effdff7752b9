"""Data quality of a week: features whose missing share rose, and raw feeds whose weekly
volume fell. Either means the data broke, not the customers: the verdict is an alert,
never a retrain on broken data."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from monitoring.weeks import IsoWeek

# The raw feeds that arrive every week, with their time column. Campaigns go out in
# waves, so their weekly volume says nothing about a broken feed.
FEEDS = {"orders": "order_ts", "events": "event_ts", "tickets": "ticket_ts"}
# Below this many rows a week in the reference, a feed's volume is too small to judge.
MIN_FEED_ROWS = 50


@dataclass(frozen=True)
class MissingRise:
    feature: str
    reference_share: float
    current_share: float

    def describe(self) -> str:
        return (
            f"{self.feature} missing in {100 * self.current_share:.0f}% of rows "
            f"(reference {100 * self.reference_share:.0f}%)"
        )


@dataclass(frozen=True)
class FeedVolume:
    """A feed's rows in the week per active customer, against the reference weeks'."""

    table: str
    reference_rate: float
    current_rate: float

    @property
    def change(self) -> float:
        return self.current_rate / self.reference_rate - 1.0

    def describe(self) -> str:
        return (
            f"{self.table}: {self.current_rate:.3g} rows a customer this week, "
            f"{100 * self.change:+.0f}% against the reference weeks' {self.reference_rate:.3g}"
        )


@dataclass(frozen=True)
class Quality:
    missing: tuple[MissingRise, ...]
    volumes: tuple[FeedVolume, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "missing": [asdict(m) for m in self.missing],
            "volumes": [asdict(v) | {"change": v.change} for v in self.volumes],
        }


def missing_shares(frame: pd.DataFrame, features: Sequence[str]) -> dict[str, float]:
    """Each feature's share of rows with no value (NaN, None or an infinity)."""
    shares = {}
    for name in features:
        values = frame[name]
        if pd.api.types.is_numeric_dtype(values):
            numbers = values.to_numpy(dtype=np.float64, na_value=np.nan)
            missing = ~np.isfinite(numbers)
        else:
            missing = values.isna().to_numpy()
        shares[name] = float(missing.mean()) if len(missing) else 0.0
    return shares


def missing_rises(
    reference: pd.DataFrame, current: pd.DataFrame, features: Sequence[str], rise: float
) -> tuple[MissingRise, ...]:
    """The features whose missing share in ``current`` exceeds the reference's by ``rise``."""
    before, now = missing_shares(reference, features), missing_shares(current, features)
    return tuple(
        MissingRise(name, before[name], now[name])
        for name in features
        if now[name] - before[name] >= rise
    )


def feed_volumes(
    tables: Mapping[str, pd.DataFrame],
    week: IsoWeek,
    reference_weeks: Sequence[IsoWeek],
    customers: Mapping[IsoWeek, int],
) -> tuple[FeedVolume, ...]:
    """Rows a customer of each weekly feed the data has, in ``week`` and on average in
    the ``reference_weeks`` (``customers``: the scored customers of each week)."""
    volumes = []
    for table, column in FEEDS.items():
        if table not in tables:
            continue
        stamps = tables[table][column]
        counts = {
            w: int(((stamps >= w.start) & (stamps < w.end)).sum()) for w in (*reference_weeks, week)
        }
        reference = [counts[w] / customers[w] for w in reference_weeks if customers.get(w)]
        if not reference or not customers.get(week):
            continue
        if np.mean([counts[w] for w in reference_weeks]) < MIN_FEED_ROWS:
            continue
        volumes.append(FeedVolume(table, float(np.mean(reference)), counts[week] / customers[week]))
    return tuple(volumes)
