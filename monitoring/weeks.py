"""ISO weeks, the unit of monitoring: ``2025-W23`` runs from Monday 00:00 UTC for seven
days. A week's current rows are the customers as served during it: the snapshot as of
its Monday, which the online store holds all week."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

import pandas as pd

from features.errors import CustlabError

_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")


@dataclass(frozen=True, order=True)
class IsoWeek:
    year: int
    week: int

    @classmethod
    def parse(cls, text: str) -> IsoWeek:
        """Read ``YYYY-Www`` (e.g. ``2025-W07``).

        Raises:
            CustlabError: Not that form, or no such week in that year.
        """
        found = _WEEK.match(text.strip())
        if not found:
            raise CustlabError(f"week {text!r} is not YYYY-Www, e.g. 2025-W07")
        year, week = int(found[1]), int(found[2])
        try:
            date.fromisocalendar(year, week, 1)
        except ValueError:
            raise CustlabError(f"week {text!r}: {year} has no ISO week {week}") from None
        return cls(year, week)

    @classmethod
    def of(cls, moment: pd.Timestamp | date) -> IsoWeek:
        """The week holding ``moment``."""
        year, week, _ = moment.isocalendar()
        return cls(int(year), int(week))

    @property
    def start(self) -> pd.Timestamp:
        """Its Monday, 00:00 UTC: also the as-of date of the snapshot served during it."""
        return pd.Timestamp(date.fromisocalendar(self.year, self.week, 1), tz="UTC")

    @property
    def end(self) -> pd.Timestamp:
        """The next Monday, 00:00 UTC (exclusive): the moment its weekly run looks back from."""
        return self.start + pd.Timedelta(days=7)

    def shifted(self, weeks: int) -> IsoWeek:
        return IsoWeek.of(self.start + pd.Timedelta(days=7 * weeks))

    def weeks_until(self, other: IsoWeek) -> int:
        """Whole weeks from this one to ``other`` (negative when ``other`` is earlier)."""
        return (other.start - self.start) // timedelta(days=7)

    def __str__(self) -> str:
        return f"{self.year}-W{self.week:02d}"


def weeks_between(first: IsoWeek, last: IsoWeek) -> list[IsoWeek]:
    """``first`` to ``last``, both included, in order."""
    return [first.shifted(i) for i in range(first.weeks_until(last) + 1)]
