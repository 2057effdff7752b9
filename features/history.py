"""Per-customer histories that answer window questions at any moments, for many
customers at once, by binary search instead of joins.

Labels ask them about the time after an as-of date, lifecycle rules about the time before
it; both get exact answers at any timestamp, not only at week boundaries.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.arrow import lookup, to_arrow_strings
from features.contract import ENTITY_KEY

Moments = pd.Series | pd.DatetimeIndex | np.ndarray
_UNIT = 1_000_000


def purchase_mask(orders: pd.DataFrame) -> np.ndarray:
    """Which orders are purchases (not returns)."""
    if "is_return" not in orders:
        return np.ones(len(orders), dtype=bool)
    return ~orders["is_return"].to_numpy(dtype=bool)


def purchases(orders: pd.DataFrame) -> pd.DataFrame:
    """Orders that are purchases: returns (``is_return``) are not orders of their own."""
    return orders[purchase_mask(orders)] if "is_return" in orders else orders


def epoch_seconds(when: Moments) -> np.ndarray:
    """Whole seconds since the epoch, int64."""
    if isinstance(when, pd.Series):
        when = when.to_numpy(dtype="datetime64[s]")
    elif isinstance(when, pd.DatetimeIndex):
        when = when.tz_convert("UTC").tz_localize(None).to_numpy(dtype="datetime64[s]")
    return np.asarray(when, dtype="datetime64[s]").astype(np.int64)


class History:
    """Records of one kind sorted by (customer, time), with running totals of a value.

    Customers are integer codes into a vocabulary of ids (Arrow hash lookups turn ids
    into codes, so no query pays for string comparisons). Times are kept in whole
    seconds so that ``customer * span + seconds`` fits in int64 for millions of
    customers over decades.

    Args:
        vocabulary: Customer ids; records and queries refer to positions in it.
        customer_ids: The customer of each record.
        ts: The time of each record.
        values: Optional amount per record (e.g. net spend) for :meth:`sum_between`.
    """

    def __init__(
        self,
        vocabulary: pa.Array,
        customer_ids: pd.Series,
        ts: pd.Series,
        values: np.ndarray | None = None,
        codes: np.ndarray | None = None,
    ) -> None:
        self.vocabulary = vocabulary
        cust = lookup(customer_ids, vocabulary) if codes is None else codes
        known = cust >= 0
        seconds = epoch_seconds(ts)[known]
        cust = cust[known]
        # Keys sort by customer first, then time; offsetting by the minimum keeps them
        # non-negative so one searchsorted covers both.
        self._offset = int(seconds.min()) if seconds.size else 0
        self._span = int(seconds.max() - self._offset + 1) if seconds.size else 1
        keys = cust * self._span + (seconds - self._offset)
        order = np.argsort(keys, kind="stable")
        self._keys, self._cust, self._ts = keys[order], cust[order], seconds[order]
        # Running totals in whole millionths: integer sums are exact, so two customers
        # with equal spend get equal window sums, whatever was summed before them.
        weights = (
            np.full(order.size, _UNIT, dtype=np.int64)
            if values is None
            else np.round(np.asarray(values, dtype=np.float64)[known][order] * _UNIT).astype(
                np.int64
            )
        )
        self._running = np.concatenate([[0], np.cumsum(weights)])
        last = int(self._ts.max()) if self._ts.size else 0
        self.observation_end = pd.Timestamp(last, unit="s", tz="UTC")

    @staticmethod
    def vocabulary_of(*columns: pd.Series) -> pa.Array:
        """The distinct ids of some id columns."""
        arrays = [to_arrow_strings(column) for column in columns]
        return pc.unique(pa.chunked_array(arrays, type=pa.large_string()))

    @classmethod
    def of_purchases(
        cls,
        orders: pd.DataFrame,
        vocabulary: pa.Array | None = None,
        codes: np.ndarray | None = None,
    ) -> History:
        """Purchase times of each customer (returns left out). ``codes``: the orders'
        customer positions in ``vocabulary``, when already known."""
        bought = purchase_mask(orders)
        ids = orders[ENTITY_KEY][bought]
        vocabulary = vocabulary if vocabulary is not None else cls.vocabulary_of(ids)
        return cls(
            vocabulary,
            ids,
            orders["order_ts"][bought],
            codes=None if codes is None else codes[bought],
        )

    @classmethod
    def of_net_spend(
        cls,
        orders: pd.DataFrame,
        vocabulary: pa.Array | None = None,
        codes: np.ndarray | None = None,
    ) -> History:
        """Orders with their net amounts: a return counts as negative spend."""
        sign = np.where(purchase_mask(orders), 1.0, -1.0)
        amount = orders["amount"].to_numpy(dtype=np.float64) * sign
        vocabulary = vocabulary if vocabulary is not None else cls.vocabulary_of(orders[ENTITY_KEY])
        return cls(vocabulary, orders[ENTITY_KEY], orders["order_ts"], amount, codes=codes)

    def codes(self, customer_ids: pd.Series) -> np.ndarray:
        """Positions of ids in the vocabulary (-1 for an id not in it), for the queries."""
        return lookup(customer_ids, self.vocabulary)

    def _search(self, cust: np.ndarray, when: Moments) -> np.ndarray:
        """Position of the first record of ``cust`` at or after ``when``."""
        seconds = epoch_seconds(when) - self._offset
        seconds = np.clip(seconds, 0, self._span)
        return np.searchsorted(self._keys, np.maximum(cust, 0) * self._span + seconds)

    def count_between(self, cust: np.ndarray, start: Moments, end: Moments) -> np.ndarray:
        """Records of each customer with ``start <= ts < end``."""
        counts = self._search(cust, end) - self._search(cust, start)
        return np.where(cust >= 0, counts, 0)

    def sum_between(self, cust: np.ndarray, start: Moments, end: Moments) -> np.ndarray:
        """Total value of each customer's records with ``start <= ts < end``."""
        total = self._running[self._search(cust, end)] - self._running[self._search(cust, start)]
        return np.where(cust >= 0, total / _UNIT, 0.0)

    def _found(self, cust: np.ndarray, position: np.ndarray) -> np.ndarray:
        """Epoch seconds at ``position`` where that record is ``cust``'s; NaN elsewhere."""
        inside = (cust >= 0) & (position >= 0) & (position < self._ts.size)
        at = np.clip(position, 0, max(self._ts.size - 1, 0))
        if self._ts.size == 0:
            return np.full(cust.size, np.nan)
        found = inside & (self._cust[at] == cust)
        return np.where(found, self._ts[at], np.nan)

    def last_before(self, cust: np.ndarray, when: Moments) -> np.ndarray:
        """Epoch seconds of each customer's last record before ``when``; NaN if none."""
        return self._found(cust, self._search(cust, when) - 1)

    def first_at_or_after(self, cust: np.ndarray, when: Moments) -> np.ndarray:
        """Epoch seconds of each customer's first record at or after ``when``; NaN if none."""
        return self._found(cust, self._search(cust, when))

    def first(self, cust: np.ndarray) -> np.ndarray:
        """Epoch seconds of each customer's first record; NaN if none."""
        return self._found(cust, np.searchsorted(self._keys, np.maximum(cust, 0) * self._span))
