"""Point-in-time customer feature snapshots at weekly as-of dates.

A snapshot stamped ``t`` (a Monday, 00:00 UTC) uses only orders placed strictly before
``t``; that is what makes it safe to join to a label that looks after ``t``. Orders are
binned into a dense customer-by-week grid once, and every window is a difference of
cumulative sums over that grid, so all weeks are computed together.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from features.contract import ENTITY_KEY, EVENT_TIMESTAMP

logger = logging.getLogger(__name__)

WEEK = pd.Timedelta(days=7)
# Order-count and spend windows, in weeks before the as-of date.
WINDOWS_WEEKS: tuple[int, ...] = (4, 13, 26, 52)

FEATURE_DESCRIPTIONS: dict[str, str] = {
    "tenure_days": "Days from sign-up (or first order when sign-up is unknown) to the as-of date.",
    "recency_days": "Days since the last order before the as-of date; empty if none yet.",
    **{f"orders_{w}w": f"Orders in the {w} weeks before the as-of date." for w in WINDOWS_WEEKS},
    "orders_total": "Orders before the as-of date.",
    **{f"spend_{w}w": f"Net spend in the {w} weeks before the as-of date." for w in WINDOWS_WEEKS},
    "spend_total": "Net spend before the as-of date.",
    "avg_order_value": "Mean net spend per order before the as-of date.",
    "order_trend_13w": "Orders in the last 13 weeks minus orders in the 13 weeks before those.",
    "mean_days_between_orders": "Mean gap between orders; empty with fewer than two orders.",
}
FEATURE_NAMES: tuple[str, ...] = tuple(FEATURE_DESCRIPTIONS)


def week_floor(ts: pd.Timestamp) -> pd.Timestamp:
    """The Monday 00:00 UTC at or before ``ts``."""
    day = ts.tz_convert("UTC").normalize()
    return day - pd.Timedelta(days=day.dayofweek)


def as_of_dates(orders: pd.DataFrame) -> pd.DatetimeIndex:
    """Weekly as-of dates from the first week boundary after the first order to the one
    after the last order (that last snapshot is "now": what online serving sees)."""
    first = week_floor(orders["order_ts"].min()) + WEEK
    last = week_floor(orders["order_ts"].max()) + WEEK
    return pd.date_range(first, last, freq="7D")


def build_snapshots(
    orders: pd.DataFrame,
    customers: pd.DataFrame | None = None,
    as_of: Sequence[pd.Timestamp] | pd.DatetimeIndex | None = None,
) -> pd.DataFrame:
    """Compute one feature row per known customer per as-of date.

    Args:
        orders: Contract ``orders`` (customer_id, order_ts, amount; ``is_return`` rows
            count as negative spend and not as orders).
        customers: Optional contract ``customers``; ``signup_ts`` sets tenure. Without
            it a customer is known from the first order.
        as_of: Week-aligned as-of dates; default :func:`as_of_dates`.

    Returns:
        A frame with ``customer_id``, ``event_timestamp`` (the as-of date) and the
        float32 features of :data:`FEATURE_NAMES`, one row for each customer known
        before each as-of date.
    """
    dates = pd.DatetimeIndex(as_of if as_of is not None else as_of_dates(orders))
    if dates.tz is None:
        dates = dates.tz_localize("UTC")
    origin = week_floor(min(orders["order_ts"].min(), dates[0] - WEEK))
    week_of_date = ((dates - origin) // WEEK).to_numpy()
    if np.any(dates != origin + week_of_date * WEEK):
        raise ValueError("as-of dates must fall on Mondays 00:00 UTC")

    ids = pd.Index(pd.unique(orders[ENTITY_KEY]))
    if customers is not None:
        ids = ids.union(pd.Index(customers[ENTITY_KEY]))
    n, n_weeks = len(ids), int(week_of_date.max())
    cust = ids.get_indexer(orders[ENTITY_KEY])
    days = ((orders["order_ts"] - origin) / pd.Timedelta(days=1)).to_numpy()
    week = (days // 7).astype(np.int64)
    keep = week < n_weeks  # orders at or after the last as-of date feed no snapshot
    cust, days, week = cust[keep], days[keep], week[keep]
    amount = orders["amount"].to_numpy(dtype=np.float64)[keep]
    is_return = (
        orders["is_return"].to_numpy(dtype=bool)[keep]
        if "is_return" in orders
        else np.zeros(cust.size, dtype=bool)
    )
    spend_sign = np.where(is_return, -1.0, 1.0)

    flat = cust * n_weeks + week
    size = n * n_weeks
    count = np.bincount(flat, weights=~is_return, minlength=size).reshape(n, n_weeks)
    spend = np.bincount(flat, weights=amount * spend_sign, minlength=size).reshape(n, n_weeks)
    last_day = np.full(size, -np.inf)
    np.maximum.at(last_day, flat[~is_return], days[~is_return])
    last_day = last_day.reshape(n, n_weeks)

    # cum[:, k] = total over weeks < k, so a window of w weeks before k is cum[k] - cum[k-w].
    cum_count = np.concatenate([np.zeros((n, 1)), np.cumsum(count, axis=1)], axis=1)
    cum_spend = np.concatenate([np.zeros((n, 1)), np.cumsum(spend, axis=1)], axis=1)
    last_before = np.concatenate(
        [np.full((n, 1), -np.inf), np.maximum.accumulate(last_day, axis=1)], axis=1
    )
    first_day = np.full(n, np.inf)
    np.minimum.at(first_day, cust[~is_return], days[~is_return])
    if customers is not None:
        signup = np.full(n, np.inf)
        signup_idx = ids.get_indexer(customers[ENTITY_KEY])
        signup[signup_idx] = ((customers["signup_ts"] - origin) / pd.Timedelta(days=1)).to_numpy()
        known_from = np.fmin(signup, first_day)
    else:
        known_from = first_day

    frames = []
    for date, k in zip(dates, week_of_date, strict=True):
        t = k * 7.0
        rows = np.flatnonzero(known_from < t)
        if rows.size == 0:
            continue

        def window(cum: np.ndarray, weeks: int, rows: np.ndarray = rows, k: int = k) -> np.ndarray:
            return cum[rows, k] - cum[rows, max(k - weeks, 0)]

        orders_total = cum_count[rows, k]
        last = last_before[rows, k]
        first = first_day[rows]
        with np.errstate(invalid="ignore", divide="ignore"):
            columns = {
                "tenure_days": t - known_from[rows],
                "recency_days": np.where(np.isfinite(last), t - last, np.nan),
                **{f"orders_{w}w": window(cum_count, w) for w in WINDOWS_WEEKS},
                "orders_total": orders_total,
                **{f"spend_{w}w": window(cum_spend, w) for w in WINDOWS_WEEKS},
                "spend_total": cum_spend[rows, k],
                "avg_order_value": np.where(
                    orders_total > 0, cum_spend[rows, k] / orders_total, np.nan
                ),
                "order_trend_13w": window(cum_count, 13)
                - (cum_count[rows, max(k - 13, 0)] - cum_count[rows, max(k - 26, 0)]),
                "mean_days_between_orders": np.where(
                    orders_total >= 2, (last - first) / (orders_total - 1), np.nan
                ),
            }
        frame = pd.DataFrame({name: columns[name].astype(np.float32) for name in FEATURE_NAMES})
        frame.insert(0, EVENT_TIMESTAMP, date)
        frame.insert(0, ENTITY_KEY, ids.to_numpy()[rows])
        frames.append(frame)
    snapshots = pd.concat(frames, ignore_index=True)
    logger.info("built %d snapshot rows over %d as-of dates", len(snapshots), len(dates))
    return snapshots
