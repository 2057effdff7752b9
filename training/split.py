"""Time-based splits with a purge gap, or, for horizons too long for the history, splits
by customer.

A label at ``t`` looks ``horizon`` days ahead, so a training row at ``t`` "knows" the
period up to ``t + horizon``. An as-of date is kept in an earlier split only if its label
window closes before the next split starts; otherwise test performance would be measured
on outcomes the model has already seen.

A year-long horizon (customer value) over two years of history leaves no room for two
year-long gaps. Such a task splits its customers instead: every customer belongs to one
part alone (by a hash of the id), so no customer's future is both learned and tested;
the test rows are still the newest as-of dates. What the parts share is the calendar:
a shock that hits everyone in the test period is partly seen in training, which makes
the test a little kinder than a purged one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from features.contract import ENTITY_KEY, EVENT_TIMESTAMP
from features.errors import CustlabError

PARTS = ("train", "valid", "test")


class SplitSpec(BaseModel):
    """How many weekly as-of dates each split gets."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    test_dates: int = Field(4, ge=1, description="Newest matured as-of dates, for the test.")
    valid_dates: int = Field(4, ge=1, description="As-of dates for early stopping and tuning.")
    train_every: int = Field(
        4,
        ge=1,
        description="Keep every n-th older as-of date for training (rows of nearby weeks "
        "are near-duplicates).",
    )


# Shares of customers in the test and validation parts of a split by customer.
CUSTOMER_SHARES = {"test": 0.2, "valid": 0.15}


def customer_part(customer_ids: pd.Series) -> np.ndarray:
    """Each customer's part in a split by customer, from a stable hash of the id."""
    unit = pd.util.hash_pandas_object(customer_ids.astype(str), index=False).to_numpy()
    position = (unit % 10_000) / 10_000
    test, valid = CUSTOMER_SHARES["test"], CUSTOMER_SHARES["valid"]
    return np.where(position < test, "test", np.where(position < test + valid, "valid", "train"))


@dataclass(frozen=True)
class SplitPlan:
    """The as-of dates of each split, and whether customers are split too."""

    train: pd.DatetimeIndex
    valid: pd.DatetimeIndex
    test: pd.DatetimeIndex
    by_customer: bool = False

    @property
    def dates(self) -> pd.DatetimeIndex:
        return self.train.append([self.valid, self.test])

    def window(self, part: str) -> tuple[pd.Timestamp, pd.Timestamp]:
        """First and last as-of date of ``part`` (train, valid or test)."""
        dates = getattr(self, part)
        return dates[0], dates[-1]

    def part(self, frame: pd.DataFrame, part: str) -> pd.DataFrame:
        """The rows of ``frame`` whose as-of date (and, split by customer, whose
        customer) belongs to ``part``."""
        rows = frame[EVENT_TIMESTAMP].isin(getattr(self, part)).to_numpy()
        if self.by_customer:
            rows &= customer_part(frame[ENTITY_KEY]) == part
        return frame[rows].reset_index(drop=True)

    def describe(self) -> str:
        """How the split was made, for the logs and the run."""
        if self.by_customer:
            return (
                "by customer (test {test:.0%}, validation {valid:.0%} of customers), "
                "newest dates for test".format(**CUSTOMER_SHARES)
            )
        return "by time, purge gaps of one horizon"


def plan_split(
    dates: pd.DatetimeIndex, horizon_days: int, spec: SplitSpec, by_customer: bool = False
) -> SplitPlan:
    """Choose train, valid and test as-of dates, newest last, with purge gaps between
    (without, when ``by_customer``: the customers are kept apart instead).

    Raises:
        CustlabError: Too few as-of dates for the requested splits and gaps; the message
            says how many there are and how many are needed.
    """
    dates = pd.DatetimeIndex(sorted(set(dates)))
    gap = pd.Timedelta(days=0 if by_customer else horizon_days)

    def before(start: pd.Timestamp) -> pd.DatetimeIndex:
        """Dates whose label window (or, split by customer, the date itself) ends by
        ``start``."""
        return dates[(dates + gap <= start) & (dates < start)]

    test = dates[-spec.test_dates :]
    valid = before(test[0])[-spec.valid_dates :]
    before_valid = before(valid[0]) if len(valid) else dates[:0]
    train = before_valid[::-1][:: spec.train_every][::-1]
    if len(test) < spec.test_dates or len(valid) < spec.valid_dates or len(train) < 2:
        gap_weeks = 0 if by_customer else -(-horizon_days // 7)
        needed = spec.test_dates + spec.valid_dates + 2 * gap_weeks + 2
        gaps = "" if by_customer else f" with {horizon_days}-day purge gaps"
        raise CustlabError(
            f"only {len(dates)} labelled as-of dates; {spec.test_dates} test and "
            f"{spec.valid_dates} validation dates{gaps} need at least {needed}"
        )
    return SplitPlan(train=train, valid=valid, test=test, by_customer=by_customer)
