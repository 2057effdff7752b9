"""Label factories: what happened to a customer after an as-of date.

Labels look only at orders at or after ``t``; snapshots stamped ``t`` look only before
it. A label exists only once its horizon has fully passed (it has *matured*) before the
end of observation, so the newest weeks never get a made-up "churned".
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.contract import ENTITY_KEY, EVENT_TIMESTAMP


class OrderIndex:
    """Orders sorted by (customer, time), answering window questions for many
    (customer, as-of) pairs at once with binary search instead of joins.

    Times are kept in whole seconds so that ``customer * span + seconds`` fits in int64
    for millions of customers over decades.
    """

    def __init__(self, orders: pd.DataFrame) -> None:
        purchases = orders[~orders["is_return"]] if "is_return" in orders else orders
        self._ids = pd.Index(pd.unique(purchases[ENTITY_KEY]))
        cust = self._ids.get_indexer(purchases[ENTITY_KEY]).astype(np.int64)
        ts = purchases["order_ts"].to_numpy(dtype="datetime64[s]").astype(np.int64)
        order = np.lexsort((ts, cust))
        self._cust, self._ts = cust[order], ts[order]
        # Keys sort by customer first, then time; offsetting by the minimum keeps them
        # non-negative so one searchsorted covers both.
        self._offset = int(self._ts.min()) if self._ts.size else 0
        self._span = int(self._ts.max() - self._offset + 1) if self._ts.size else 1
        self._keys = self._cust * self._span + (self._ts - self._offset)
        self.observation_end = pd.Timestamp(int(self._ts.max()), unit="s", tz="UTC")

    def count_between(
        self, customer_ids: pd.Series, start: pd.Series, end: pd.Series
    ) -> np.ndarray:
        """Orders of each customer with start <= order_ts < end."""
        cust = self._ids.get_indexer(customer_ids).astype(np.int64)
        lo = self._search(cust, start)
        hi = self._search(cust, end)
        return np.where(cust >= 0, hi - lo, 0)

    def _search(self, cust: np.ndarray, when: pd.Series) -> np.ndarray:
        seconds = when.to_numpy(dtype="datetime64[s]").astype(np.int64) - self._offset
        seconds = np.clip(seconds, 0, self._span)
        return np.searchsorted(self._keys, cust * self._span + seconds, side="left")


def active_customers(
    orders: pd.DataFrame, as_of: pd.DatetimeIndex, window_days: int
) -> pd.DataFrame:
    """Customers with an order in ``[t - window, t)``, for each as-of date ``t``.

    Returns:
        ``customer_id`` and ``event_timestamp`` (= t), one row per active customer per date.
    """
    purchases = orders[~orders["is_return"]] if "is_return" in orders else orders
    ts = purchases["order_ts"]
    window = pd.Timedelta(days=window_days)
    frames = [
        pd.DataFrame(
            {
                ENTITY_KEY: pd.unique(purchases.loc[(ts >= t - window) & (ts < t), ENTITY_KEY]),
                EVENT_TIMESTAMP: t,
            }
        )
        for t in as_of
    ]
    if not frames:
        return pd.DataFrame(
            {
                ENTITY_KEY: pd.Series(dtype=str),
                EVENT_TIMESTAMP: pd.Series(dtype="datetime64[ns, UTC]"),
            }
        )
    return pd.concat(frames, ignore_index=True)


def churn_labels(
    orders: pd.DataFrame,
    as_of: pd.DatetimeIndex,
    horizon_days: int = 90,
    active_window_days: int = 365,
    observation_end: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Churn at ``t``: an active customer places no order in ``[t, t + horizon)``.

    Args:
        orders: Contract ``orders``.
        as_of: As-of dates to label.
        horizon_days: Days after ``t`` in which an order means "retained".
        active_window_days: A customer is active at ``t`` with an order in
            ``[t - active_window, t)``; only active customers can churn.
        observation_end: Last moment the data covers; default the last order.

    Returns:
        ``customer_id``, ``event_timestamp`` (= t) and ``churned`` (0/1), for matured
        as-of dates only.
    """
    index = OrderIndex(orders)
    end = observation_end or index.observation_end
    horizon = pd.Timedelta(days=horizon_days)
    matured = pd.DatetimeIndex([t for t in as_of if t + horizon <= end])
    labels = active_customers(orders, matured, active_window_days)
    after = index.count_between(
        labels[ENTITY_KEY], labels[EVENT_TIMESTAMP], labels[EVENT_TIMESTAMP] + horizon
    )
    return labels.assign(churned=(after == 0).astype(np.int8))
