"""What every feature family shares: its declaration, the snapshot grid it fills, and
windowed sums over records binned by week.

The point-in-time rule is stated once, here: a snapshot stamped ``t`` (a Monday, 00:00
UTC) sees only records strictly before ``t``. Records are binned by week counted from a
Monday origin, so "before t" is "in a week before t's week", and every window of whole
weeks is a difference of cumulative sums over those bins, for all as-of dates at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from features.arrow import lookup
from features.contract import ENTITY_KEY, EVENT_TIMESTAMP

WEEK = pd.Timedelta(days=7)
_DAY_NS = 86_400 * 10**9
_WEEK_NS = 7 * _DAY_NS
# The longest look-back any family takes, in weeks (the lifecycle rule's 13 + 52, with
# room): older records still count in totals and "last seen", binned together.
LOOKBACK_WEEKS = 70
# Outcome fields of a record (a ticket's resolution and satisfaction, a message's open,
# click and conversion) are filled in after the record's own time. Rates over them read
# only records at least this many weeks old, so an as-of date never sees an outcome that
# had not happened yet.
SETTLE_WEEKS = 1

Kind = Literal["number", "category"]
Tables = Mapping[str, pd.DataFrame]


@dataclass(frozen=True)
class Feature:
    """One feature: its name, what it means, and whether it is a number or a category."""

    name: str
    description: str
    kind: Kind = "number"


@dataclass(frozen=True)
class FeatureFamily:
    """A family of features computed from one raw table (and possibly others beside it).

    Attributes:
        name: The family, e.g. ``"engagement"``; its Feast view and offline table carry it.
        source: The raw table the family needs; without it the family is left out.
        features: What the family computes, in order.
        compute: Fills the family's columns for every row of a snapshot grid.
        description: One line on what the family captures.
        reads: Other raw tables it uses when present (their absence leaves features empty).
        finish: For a feature that compares a customer with everyone at the same as-of
            date (a quantile of the base): turns the extra columns ``compute`` returned
            into the remaining features, given every row of the grid at once as a frame
            (keys and those columns). ``compute`` may then run on shards of customers
            (:mod:`features.sharded`) and ``finish`` once on their rows put together.
    """

    name: str
    source: str
    features: tuple[Feature, ...]
    compute: Callable[[SnapshotGrid, Tables], dict[str, np.ndarray]]
    description: str
    reads: tuple[str, ...] = ()
    finish: Callable[[pd.DataFrame], dict[str, np.ndarray]] | None = None

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def table_file(self) -> str:
        """The family's offline table, a parquet file in the offline folder."""
        return f"{self.name}.parquet"

    def available(self, tables: Tables) -> bool:
        return self.source in tables


def week_floor(ts: pd.Timestamp) -> pd.Timestamp:
    """The Monday 00:00 UTC at or before ``ts``."""
    day = ts.tz_convert("UTC").normalize()
    return day - pd.Timedelta(days=day.dayofweek)


# Set bits of every byte value: distinct days from a week's weekday bits.
POPCOUNT = np.array([bin(v).count("1") for v in range(256)], dtype=np.uint8)


def ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``numerator / denominator``, NaN where the denominator is zero: no data, no rate."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / denominator, np.nan)


def trend(recent: np.ndarray, earlier: np.ndarray) -> np.ndarray:
    """``(recent - earlier) / (|recent| + |earlier|)``: +1 all recent, -1 all earlier, 0
    flat; NaN when both are zero. Bounded, unlike a plain ratio of small counts."""
    return ratio(recent - earlier, np.abs(recent) + np.abs(earlier))


@dataclass(frozen=True)
class Records:
    """Records of one raw table placed on the grid: customer, days and week since origin."""

    customer: np.ndarray  # int64 position in the grid's customers
    day: np.ndarray  # float64 days since the origin (negative before it)
    week: np.ndarray  # int32 weeks since the origin
    keep: np.ndarray | None = None  # bool, which rows of the source table these are

    @property
    def size(self) -> int:
        return int(self.customer.size)

    def rows(self, table: pd.DataFrame) -> pd.DataFrame:
        """The rows of the source ``table`` these records are, in order (the table
        itself, not a copy, when every row is one)."""
        return table if self.keep is None or self.keep.all() else table[self.keep]


class SnapshotGrid:
    """Who gets a snapshot row at which as-of date, and the time axis records are binned on.

    A customer gets a row at ``t`` once known before ``t``: signed up, or first
    purchased, strictly before it. The origin lies :data:`LOOKBACK_WEEKS` before the first
    as-of date; records older than that are binned together in one "before" bin.

    Args:
        ids: Every customer id.
        known_from: Per customer, nanoseconds since the epoch from which it is known.
        dates: The as-of dates, Mondays 00:00 UTC.

    Raises:
        ValueError: An as-of date is not a Monday 00:00 UTC.
    """

    def __init__(self, ids: pa.Array, known_from: np.ndarray, dates: pd.DatetimeIndex) -> None:
        if dates.tz is None:
            dates = dates.tz_localize("UTC")
        dates = pd.DatetimeIndex(sorted(dates.unique()))
        if any(d != week_floor(d) for d in dates):
            raise ValueError("as-of dates must fall on Mondays 00:00 UTC")
        self.ids = ids
        self.dates = dates
        self._codes: dict[int, tuple[object, np.ndarray]] = {}
        self.origin_ns = int((dates[0] - LOOKBACK_WEEKS * WEEK).value)
        self.date_week = ((dates.asi8 - self.origin_ns) // _WEEK_NS).astype(np.int64)
        self.last_week = int(self.date_week[-1])
        date_ns = dates.asi8
        # Rows date by date, customers in id order within a date.
        known_at = known_from[None, :] < date_ns[:, None]
        self.row_date, self.row_customer = (a.astype(np.int64) for a in np.nonzero(known_at))

    @property
    def customers(self) -> int:
        return len(self.ids)

    @property
    def rows(self) -> int:
        return int(self.row_customer.size)

    @property
    def row_week(self) -> np.ndarray:
        """Week index of each row's as-of date."""
        return self.date_week[self.row_date]

    @property
    def row_day(self) -> np.ndarray:
        """Days since the origin of each row's as-of date."""
        return (self.row_week * 7).astype(np.float64)

    @property
    def row_as_of(self) -> pd.DatetimeIndex:
        return self.dates[self.row_date]

    def keys(self) -> pd.DataFrame:
        """``customer_id`` and ``event_timestamp`` of every row."""
        return pd.DataFrame(
            {
                ENTITY_KEY: pd.Series(
                    pd.arrays.ArrowStringArray(self.ids.take(pa.array(self.row_customer))),
                    copy=False,
                ),
                EVENT_TIMESTAMP: self.row_as_of,
            }
        )

    def customer_codes(self, customer_ids: pd.Series) -> np.ndarray:
        """Position of each id among the grid's customers; -1 for one not known.

        Remembered per column: several families read the same table (a hash lookup of
        tens of millions of ids is worth doing once).
        """
        array = customer_ids.array
        # The cache holds the array itself, so its id cannot be reused by another one.
        if id(array) not in self._codes:
            self._codes[id(array)] = (array, lookup(customer_ids, self.ids))
        return self._codes[id(array)][1]

    def remember_codes(self, customer_ids: pd.Series, codes: np.ndarray) -> None:
        """Keep the positions of an id column already looked up (while laying the grid).

        Only columns backed by one array object (string and categorical dtypes) are
        found again; others are looked up anew, never answered wrongly.
        """
        array = customer_ids.array  # one object: the key must be the array that is held
        self._codes[id(array)] = (array, codes)

    def days(self, ts: pd.Series) -> np.ndarray:
        """Days since the origin, float64."""
        ns = ts.to_numpy(dtype="datetime64[ns]").astype(np.int64)
        return (ns - self.origin_ns) / _DAY_NS

    def records(self, table: pd.DataFrame, ts_column: str) -> Records:
        """The rows of ``table`` that can feed a snapshot: a known customer, a time before
        the last as-of date (anything later feeds no snapshot)."""
        customer = self.customer_codes(table[ENTITY_KEY])
        ns = table[ts_column].to_numpy(dtype="datetime64[ns]").view(np.int64) - self.origin_ns
        week = np.empty(ns.size, dtype=np.int32)  # no int64 weeks on the way
        np.floor_divide(ns, _WEEK_NS, out=week, casting="unsafe")
        keep = (customer >= 0) & (week < self.last_week)
        if keep.all():  # the usual case for the newest snapshot: no copies
            return Records(customer, ns / _DAY_NS, week, keep)
        return Records(customer[keep], ns[keep] / _DAY_NS, week[keep], keep)

    def bins(self, records: Records) -> WeekBins:
        return WeekBins(self, records)


class WeekBins:
    """Records binned by (customer, week), answering window questions for every grid row.

    Bin 0 holds everything before the origin; bin ``j >= 1`` holds week ``j - 1``; a row
    at week ``k`` sees bins ``< k + 1``. Only the bin boundaries some window of some as-of
    date needs are kept ("cuts"): records are summed per customer between consecutive
    cuts and accumulated over those, so one as-of date costs a few columns per customer,
    not one per week of history.
    """

    def __init__(self, grid: SnapshotGrid, records: Records) -> None:
        self.grid = grid
        self.width = grid.last_week + 1
        # Bins fit in 32 bits (half the memory of tens of millions of events).
        self.column = np.maximum(records.week + 1, 0).astype(np.int32)
        self.records = records
        self._row_column = grid.row_week + 1
        self._date_column = grid.date_week + 1
        self._cell_cache: dict[bytes, np.ndarray] = {}

    def _cuts(self, offsets: set[int]) -> np.ndarray:
        """The bin boundaries ``k + 1 - offset`` of every as-of date, sorted."""
        return np.unique(np.concatenate([self._date_column - o for o in offsets]))

    def _segment(self, cuts: np.ndarray) -> np.ndarray:
        """Each record's segment between ``cuts`` (``cuts.size``: no window reads it)."""
        return np.searchsorted(cuts.astype(np.int32), self.column, side="right")

    def _cell(self, cuts: np.ndarray) -> np.ndarray:
        """Each record's (customer, segment) cell, ``customer * (m + 1) + segment`` for
        ``m`` cuts: segment ``m`` is a spare one no window reads.

        The last set of cuts is remembered: a family asks several windows over the same
        cuts in a row, and one pass over tens of millions of events is worth doing once.
        """
        key = cuts.tobytes()
        if key not in self._cell_cache:
            self._cell_cache = {}  # let the previous cells go before making new ones
            cell = self.records.customer * (cuts.size + 1)
            cell += self._segment(cuts)
            self._cell_cache = {key: cell}
        return self._cell_cache[key]

    def reads_back(self, weeks: int) -> np.ndarray:
        """Which records a window of at most ``weeks`` weeks before some as-of date can
        read: the others lie before every such window."""
        return self.column >= self._date_column[0] - weeks

    def _segments(
        self,
        cuts: np.ndarray,
        weights: np.ndarray | None,
        per_bin: np.ndarray | None,
        customer: np.ndarray | None = None,
        column: np.ndarray | None = None,
    ) -> np.ndarray:
        """Per customer, the running sum over bins below each cut: ``[:, i]`` sums the
        bins ``< cuts[i]``."""
        n, m = self.grid.customers, cuts.size
        if per_bin is not None:
            # Slice by slice, so bytes are summed without a wide copy of every bin.
            bounds = np.concatenate([[0], np.minimum(cuts, per_bin.shape[1])])
            sums = np.zeros((n, m))
            for i in range(m):
                if bounds[i + 1] > bounds[i]:
                    sums[:, i] = per_bin[:, bounds[i] : bounds[i + 1]].sum(axis=1, dtype=np.int64)
        elif customer is None:
            # Beyond the last cut (segment m) no window reads a record: one spare column
            # takes them and is dropped, cheaper than selecting the others.
            sums = np.bincount(
                self._cell(cuts),
                weights=None if weights is None else weights.astype(np.float64, copy=False),
                minlength=n * (m + 1),
            ).reshape(n, m + 1)[:, :m]
        else:
            segment = np.searchsorted(cuts, column, side="right")
            read = segment < m
            sums = np.bincount(
                customer[read] * m + segment[read],
                weights=None if weights is None else weights[read].astype(np.float64),
                minlength=n * m,
            ).reshape(n, m)
        return np.cumsum(sums, axis=1)

    def _plan(self, spans: Sequence[tuple[int | None, int]]) -> np.ndarray:
        """The cuts the ``spans`` read, once they are checked against the look-back."""
        for start, _ in spans:
            if start is not None and start > LOOKBACK_WEEKS:
                raise ValueError(f"a window of {start} weeks exceeds the look-back")
        offsets = {end for _, end in spans} | {start for start, _ in spans if start is not None}
        return self._cuts(offsets)

    def _read(
        self, cum: np.ndarray, cuts: np.ndarray, spans: Sequence[tuple[int | None, int]]
    ) -> list[np.ndarray]:
        """Each span's sum per row from running sums ``cum`` (customers x cuts)."""
        rows = self.grid.row_customer

        def below(offset: int) -> np.ndarray:
            return cum[rows, np.searchsorted(cuts, self._row_column - offset)]

        return [below(end) if start is None else below(end) - below(start) for start, end in spans]

    def windows(
        self,
        spans: Sequence[tuple[int | None, int]],
        weights: np.ndarray | None = None,
        per_bin: np.ndarray | None = None,
        at: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> list[np.ndarray]:
        """Sums (counts without ``weights``) per row over weeks ``[t - start, t - end)``
        for each ``(start, end)`` in ``spans``; ``start`` None means all history.

        ``per_bin`` sums values already aggregated per (customer, bin), shape
        (customers, width), for quantities that are not a sum over records (distinct
        days); ``at`` gives other (customer, bin) points than the records' own.
        """
        cuts = self._plan(spans)
        customer, column = at if at is not None else (None, None)
        return self._read(self._segments(cuts, weights, per_bin, customer, column), cuts, spans)

    def grouped_windows(
        self, spans: Sequence[tuple[int | None, int]], group: np.ndarray, groups: int
    ) -> list[list[np.ndarray]]:
        """Record counts per row over each span (as :meth:`windows`) for each of
        ``groups`` groups at once; ``group`` is a record's group code (-1: in none).

        One pass over the records instead of one per group: ``[g][i]`` is group ``g``'s
        count over ``spans[i]``.
        """
        cuts = self._plan(spans)
        n, m = self.grid.customers, cuts.size
        # Records in no group, or read by no window, fall into one spare slot per customer.
        width = m * groups + 1
        self._cell_cache = {}  # cells of other windows: let them go before this pass
        slot = self._segment(cuts)
        unread = (group < 0) | (slot >= m)
        slot *= groups
        slot += group
        slot[unread] = m * groups
        del unread
        slot += self.records.customer * width
        counts = np.bincount(slot, minlength=n * width)
        del slot
        cum = np.cumsum(counts.reshape(n, width)[:, :-1].reshape(n, m, groups), axis=1)
        return [self._read(cum[:, :, g], cuts, spans) for g in range(groups)]

    def named_windows(
        self,
        prefix: str,
        weeks: Sequence[int],
        weights: np.ndarray | None = None,
        per_bin: np.ndarray | None = None,
        at: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> dict[str, np.ndarray]:
        """``{prefix}_{w}w``: the sum over the ``w`` weeks before t, for each ``w``."""
        values = self.windows([(w, 0) for w in weeks], weights, per_bin, at)
        return {f"{prefix}_{w}w": value for w, value in zip(weeks, values, strict=True)}

    def day_marks(self, mask: np.ndarray | None = None, weeks: int | None = None) -> np.ndarray:
        """Per (customer, bin), a bit per weekday with a record (among ``mask``): the
        distinct days of a week, kept apart from how many records fell on each.

        ``weeks``: the longest window that will read the marks; older bins stay unmarked.
        """
        keep = np.ones(self.records.size, dtype=bool) if mask is None else mask
        if weeks is not None:
            keep = keep & self.reads_back(weeks)
        weekday = np.floor(self.records.day[keep]).astype(np.int64) % 7
        marks = np.zeros(self.grid.customers * self.width, dtype=np.uint8)
        cell = self.records.customer[keep] * self.width + self.column[keep]
        np.bitwise_or.at(marks, cell, (1 << weekday).astype(np.uint8))
        return marks.reshape(self.grid.customers, self.width)

    def window(
        self, weeks: int | None, weights: np.ndarray | None = None, end: int = 0
    ) -> np.ndarray:
        """One window: the ``weeks`` weeks before ``t - end`` (all history when None)."""
        return self.windows([(weeks, end)], weights)[0]

    def last_day(self, mask: np.ndarray | None = None, end: int = 0) -> np.ndarray:
        """Per row, the day (since origin) of the last record before ``t - end`` weeks
        (among ``mask``); NaN if none."""
        cuts = self._cuts({end})
        n, m = self.grid.customers, cuts.size
        day = self.records.day if mask is None else np.where(mask, self.records.day, -np.inf)
        # Segment m (after the last cut) is a spare column no row reads.
        latest = np.full(n * (m + 1), -np.inf)
        np.maximum.at(latest, self._cell(cuts), day)
        running = np.maximum.accumulate(latest.reshape(n, m + 1)[:, :m], axis=1)
        value = running[self.grid.row_customer, np.searchsorted(cuts, self._row_column - end)]
        return np.where(np.isfinite(value), value, np.nan)

    def days_since_last(self, mask: np.ndarray | None = None, end: int = 0) -> np.ndarray:
        """Days from the last record (among ``mask``) to each row's as-of date; NaN if none."""
        return self.grid.row_day - self.last_day(mask, end)
