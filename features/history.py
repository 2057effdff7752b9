"""Per-customer histories that answer window questions at any moments, for many
customers at once, by binary search instead of joins.

Labels ask them about the time after an as-of date, lifecycle rules about the time before
it; both get exact answers at any timestamp, not only at week boundaries.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.contract import ENTITY_KEY


def purchases(orders: pd.DataFrame) -> pd.DataFrame:
    """Orders that are purchases: returns (``is_return``) are not orders of their own."""
    return orders[~orders["is_return"].to_numpy(dtype=bool)] if "is_return" in orders else orders


def epoch_seconds(when: pd.Series | pd.DatetimeIndex | np.ndarray) -> np.ndarray:
    """Whole seconds since the epoch, int64."""
    if isinstance(when, pd.Series):
        when = when.to_numpy(dtype="datetime64[s]")
    elif isinstance(when, pd.DatetimeIndex):
        when = when.tz_convert("UTC").tz_localize(None).to_numpy(dtype="datetime64[s]")
    return np.asarray(when, dtype="datetime64[s]").astype(np.int64)


class History:
    """Records of one kind sorted by (customer, time), with running totals of a value.

    Times are kept in whole seconds so that ``customer * span + seconds`` fits in int64
    for millions of customers over decades.

    Args:
        customer_ids: The customer of each record.
        ts: The time of each record.
        values: Optional amount per record (e.g. net spend) for :meth:`sum_between`.
    """

    def __init__(
        self, customer_ids: pd.Series, ts: pd.Series, values: np.ndarray | None = None
    ) -> None:
        self._ids = pd.Index(pd.unique(customer_ids))
        cust = self._ids.get_indexer(customer_ids).astype(np.int64)
        seconds = epoch_seconds(ts)
        order = np.lexsort((seconds, cust))
        self._cust, self._ts = cust[order], seconds[order]
        # Keys sort by customer first, then time; offsetting by the minimum keeps them
        # non-negative so one searchsorted covers both.
        self._offset = int(self._ts.min()) if self._ts.size else 0
        self._span = int(self._ts.max() - self._offset + 1) if self._ts.size else 1
        self._keys = self._cust * self._span + (self._ts - self._offset)
        weights = np.ones(order.size) if values is None else np.asarray(values)[order]
        self._running = np.concatenate([[0.0], np.cumsum(weights, dtype=np.float64)])
        last = int(self._ts.max()) if self._ts.size else 0
        self.observation_end = pd.Timestamp(last, unit="s", tz="UTC")

    @classmethod
    def of_purchases(cls, orders: pd.DataFrame) -> History:
        """Purchase times of each customer (returns left out)."""
        bought = purchases(orders)
        return cls(bought[ENTITY_KEY], bought["order_ts"])

    @classmethod
    def of_net_spend(cls, orders: pd.DataFrame) -> History:
        """Orders with their net amounts: a return counts as negative spend."""
        sign = np.where(orders["is_return"].to_numpy(dtype=bool), -1.0, 1.0) if (
            "is_return" in orders
        ) else 1.0
        amount = orders["amount"].to_numpy(dtype=np.float64) * sign
        return cls(orders[ENTITY_KEY], orders["order_ts"], amount)

    def _codes(self, customer_ids: pd.Series | np.ndarray) -> np.ndarray:
        return self._ids.get_indexer(customer_ids).astype(np.int64)

    def _search(self, cust: np.ndarray, when: pd.Series | np.ndarray) -> np.ndarray:
        """Position of the first record of ``cust`` at or after ``when``."""
        seconds = epoch_seconds(when) - self._offset
        seconds = np.clip(seconds, 0, self._span)
        return np.searchsorted(self._keys, np.maximum(cust, 0) * self._span + seconds)

    def count_between(
        self, customer_ids: pd.Series, start: pd.Series, end: pd.Series
    ) -> np.ndarray:
        """Records of each customer with ``start <= ts < end``."""
        cust = self._codes(customer_ids)
        counts = self._search(cust, end) - self._search(cust, start)
        return np.where(cust >= 0, counts, 0)

    def sum_between(self, customer_ids: pd.Series, start: pd.Series, end: pd.Series) -> np.ndarray:
        """Total value of each customer's records with ``start <= ts < end``."""
        cust = self._codes(customer_ids)
        total = self._running[self._search(cust, end)] - self._running[self._search(cust, start)]
        return np.where(cust >= 0, total, 0.0)

    def last_before(self, customer_ids: pd.Series, when: pd.Series) -> np.ndarray:
        """Epoch seconds of each customer's last record before ``when``; NaN if none."""
        cust = self._codes(customer_ids)
        prev = self._search(cust, when) - 1
        found = (cust >= 0) & (prev >= 0)
        found[found] = self._cust[prev[found]] == cust[found]
        return np.where(found, self._ts[np.maximum(prev, 0)], np.nan)

    def first_at_or_after(self, customer_ids: pd.Series, when: pd.Series) -> np.ndarray:
        """Epoch seconds of each customer's first record at or after ``when``; NaN if none."""
        cust = self._codes(customer_ids)
        nxt = self._search(cust, when)
        found = (cust >= 0) & (nxt < self._ts.size)
        found[found] = self._cust[nxt[found]] == cust[found]
        return np.where(found, self._ts[np.minimum(nxt, self._ts.size - 1)], np.nan)

    def first(self, customer_ids: pd.Series) -> np.ndarray:
        """Epoch seconds of each customer's first record; NaN if none."""
        cust = self._codes(customer_ids)
        start = np.searchsorted(self._keys, np.maximum(cust, 0) * self._span)
        found = (cust >= 0) & (start < self._ts.size)
        found[found] = self._cust[start[found]] == cust[found]
        return np.where(found, self._ts[np.minimum(start, self._ts.size - 1)], np.nan)
