"""Time-based splits with a purge gap, validation held out by time or by customer, or,
for horizons too long for the history, splits by customer.

A label at ``t`` looks ``horizon`` days ahead, so a training row at ``t`` "knows" the
period up to ``t + horizon``. An as-of date is kept in an earlier split only if its label
window closes before the next split starts; otherwise test performance would be measured
on outcomes the model has already seen.

The test is always the newest as-of dates, every customer, and the dates before its purge
gap are the *trainable* ones. Validation (early stopping, tuning, calibration) is held out
one of two ways:

- by time: the newest trainable dates, behind a purge gap of their own. The window and
  its gap cost ``valid_dates`` plus about a horizon of dates, and the final refit on
  training plus validation rows never gets the gap's dates back.
- by customer: a stable hash share of the customers (:data:`VALID_CUSTOMER_SHARES`) at
  the training dates themselves. No purge is needed between training and validation,
  as they are different customers; what the two share is the calendar.

``validation="auto"`` (the default) chooses time only when its window and purge gap (the
trainable dates whose label window does not close by the first validation date) take at
most half (:data:`MAX_TIME_VALIDATION_COST`) of the trainable dates and still leave two
training dates; customers otherwise. A year of weekly history with a 90-day horizon has
about 24 trainable dates, of which time validation (4 dates and a 12-date gap) would take
16: it validates by customer. Two years have about 75, of which it takes the same 16.

A year-long horizon (customer value) over two years of history leaves no room even for
the test's gap. Such a task splits its customers instead: every customer belongs to one
part alone (by a hash of the id), so no customer's future is both learned and tested;
the test rows are still the newest as-of dates. What the parts share is the calendar:
a shock that hits everyone in the test period is partly seen in training, which makes
the test a little kinder than a purged one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from features.contract import ENTITY_KEY, EVENT_TIMESTAMP
from features.errors import CustlabError

PARTS = ("train", "valid", "test")

# Shares of customers in the test and validation parts of a split by customer.
CUSTOMER_SHARES = {"test": 0.2, "valid": 0.15}
# Share of customers held out for validation within the training window.
VALID_CUSTOMER_SHARES = {"valid": 0.2}
# "auto" validates by time only if the validation window plus its purge gap take at most
# this share of the trainable as-of dates.
MAX_TIME_VALIDATION_COST = 0.5


class SplitSpec(BaseModel):
    """How many weekly as-of dates each split gets, and how validation is held out."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    test_dates: int = Field(4, ge=1, description="Newest matured as-of dates, for the test.")
    valid_dates: int = Field(
        4, ge=1, description="As-of dates for early stopping and tuning, validating by time."
    )
    train_every: int = Field(
        4,
        ge=1,
        description="Keep every n-th older as-of date for training (rows of nearby weeks "
        "are near-duplicates).",
    )
    validation: Literal["auto", "time", "customers"] = Field(
        "auto",
        description="time: the newest trainable dates, purged; customers: a fifth of the "
        "customers at the training dates; auto: time only if its window and purge gap "
        "take at most half of the trainable dates. A task split by customer ignores it.",
    )


def customer_part(
    customer_ids: pd.Series, shares: Mapping[str, float] = CUSTOMER_SHARES
) -> np.ndarray:
    """Each customer's part, from a stable hash of the id: the hash's first ``shares``
    fractions go to the parts named, in order, and the rest to ``train``."""
    unit = pd.util.hash_pandas_object(customer_ids.astype(str), index=False).to_numpy()
    position = (unit % 10_000) / 10_000
    edges = np.cumsum(list(shares.values()))
    return np.select([position < edge for edge in edges], list(shares), default="train").astype(str)


@dataclass(frozen=True)
class SplitPlan:
    """The as-of dates of each split, and whether customers are split too.

    ``by_customer``: every part holds its own customers (a hash share each).
    ``validation`` (time splits only): ``"time"``, validation has dates of its own;
    ``"customers"``, it shares the training dates and holds its own customers. ``reason``
    says why the split was made so.
    """

    train: pd.DatetimeIndex
    valid: pd.DatetimeIndex
    test: pd.DatetimeIndex
    by_customer: bool = False
    validation: Literal["time", "customers"] = "time"
    reason: str = ""

    @property
    def dates(self) -> pd.DatetimeIndex:
        return self.train.append([self.valid, self.test]).unique()

    @property
    def kind(self) -> str:
        """The split in three words: by customer, by time, or by time with validation
        held out by customer."""
        if self.by_customer:
            return "by customer"
        if self.validation == "customers":
            return "by time, validation by customer"
        return "by time"

    def window(self, part: str) -> tuple[pd.Timestamp, pd.Timestamp]:
        """First and last as-of date of ``part`` (train, valid or test)."""
        dates = getattr(self, part)
        return dates[0], dates[-1]

    def part(self, frame: pd.DataFrame, part: str) -> pd.DataFrame:
        """The rows of ``frame`` whose as-of date (and, where customers are split, whose
        customer) belongs to ``part``."""
        rows = frame[EVENT_TIMESTAMP].isin(getattr(self, part)).to_numpy()
        if self.by_customer:
            rows &= customer_part(frame[ENTITY_KEY]) == part
        elif self.validation == "customers" and part != "test":
            rows &= customer_part(frame[ENTITY_KEY], VALID_CUSTOMER_SHARES) == part
        return frame[rows].reset_index(drop=True)

    def describe(self) -> str:
        """How the split was made and why, for the logs and the run."""
        if self.by_customer:
            made = (
                "by customer (test {test:.0%}, validation {valid:.0%} of customers), "
                "newest dates for test".format(**CUSTOMER_SHARES)
            )
        elif self.validation == "customers":
            made = (
                "by time for the test (newest dates, purge gap of one horizon); validation "
                f"holds out {VALID_CUSTOMER_SHARES['valid']:.0%} of customers at the "
                "training dates"
            )
        else:
            made = "by time, purge gaps of one horizon"
        return f"{made} ({self.reason})" if self.reason else made


def _before(dates: pd.DatetimeIndex, start: pd.Timestamp, gap: pd.Timedelta) -> pd.DatetimeIndex:
    """The dates whose label window (``gap`` long) closes by ``start``."""
    return dates[(dates + gap <= start) & (dates < start)]


def _thin(dates: pd.DatetimeIndex, every: int) -> pd.DatetimeIndex:
    """Every ``every``-th date, counted back from the newest."""
    return dates[::-1][::every][::-1]


def _needed(spec: SplitSpec, windows: int, purge_gaps: int, horizon_days: int) -> int:
    """Weekly as-of dates needed for the test, ``windows`` validation windows,
    ``purge_gaps`` purge gaps and two training dates at the spec's thinning."""
    gap_dates = (horizon_days - 1) // 7 if purge_gaps else 0
    return (
        spec.test_dates + windows * spec.valid_dates + purge_gaps * gap_dates + spec.train_every + 1
    )


def plan_split(
    dates: pd.DatetimeIndex, horizon_days: int, spec: SplitSpec, by_customer: bool = False
) -> SplitPlan:
    """Choose train, valid and test as-of dates, newest last: the test the newest
    ``test_dates``, behind a purge gap of one horizon, and validation held out by time or
    by customer (``spec.validation``; see the module docstring for the "auto" rule).
    When ``by_customer`` there are no purge gaps: the customers are kept apart instead.

    Raises:
        CustlabError: Too few as-of dates for the requested splits and gaps; the message
            says how many there are and how many are needed.
    """
    dates = pd.DatetimeIndex(sorted(set(dates)))
    if by_customer:
        return _plan_by_customer(dates, spec)
    gap = pd.Timedelta(days=horizon_days)
    test = dates[-spec.test_dates :]
    trainable = _before(dates, test[0], gap)
    valid = trainable[-spec.valid_dates :]
    before_valid = _before(dates, valid[0], gap) if len(valid) else dates[:0]
    time_fits = (
        len(test) == spec.test_dates
        and len(valid) == spec.valid_dates
        and len(_thin(before_valid, spec.train_every)) >= 2
    )
    if spec.validation == "auto":
        validation, reason = _choose_validation(
            len(trainable), len(valid), len(trainable) - len(before_valid), time_fits
        )
    else:
        validation, reason = spec.validation, f"validation by {spec.validation} as configured"
    if validation == "time":
        if not time_fits:
            raise CustlabError(
                f"only {len(dates)} labelled as-of dates; {spec.test_dates} test and "
                f"{spec.valid_dates} validation dates with {horizon_days}-day purge gaps "
                f"need at least {_needed(spec, 1, 2, horizon_days)} weekly dates"
            )
        train = _thin(before_valid, spec.train_every)
        return SplitPlan(train=train, valid=valid, test=test, validation="time", reason=reason)
    train = _thin(trainable, spec.train_every)
    if len(test) < spec.test_dates or len(train) < 2:
        raise CustlabError(
            f"only {len(dates)} labelled as-of dates; {spec.test_dates} test dates and a "
            f"{horizon_days}-day purge gap need at least {_needed(spec, 0, 1, horizon_days)} "
            "weekly dates, even with validation held out by customer"
        )
    return SplitPlan(train=train, valid=train, test=test, validation="customers", reason=reason)


def _choose_validation(
    trainable: int, valid: int, cost: int, time_fits: bool
) -> tuple[Literal["time", "customers"], str]:
    """The "auto" rule: validate by time if that fits and its window plus purge gap
    (``cost`` of the ``trainable`` dates) take at most :data:`MAX_TIME_VALIDATION_COST`
    of them; by customer otherwise."""
    window = f"a time validation window ({valid} dates) and its purge gap ({cost - valid} dates)"
    share = f"{cost} of {trainable} trainable as-of dates"
    if not time_fits:
        return "customers", f"{window} would leave too few of {trainable} trainable dates"
    if cost <= MAX_TIME_VALIDATION_COST * trainable:
        return "time", f"{window} take {share}, at most {MAX_TIME_VALIDATION_COST:.0%}"
    return "customers", f"{window} would take {share}, more than {MAX_TIME_VALIDATION_COST:.0%}"


def _plan_by_customer(dates: pd.DatetimeIndex, spec: SplitSpec) -> SplitPlan:
    """Test, validation and training dates without purge gaps, newest last, for a split
    that keeps every customer in one part."""
    test = dates[-spec.test_dates :]
    valid = dates[dates < test[0]][-spec.valid_dates :]
    train = _thin(dates[dates < valid[0]] if len(valid) else dates[:0], spec.train_every)
    if len(test) < spec.test_dates or len(valid) < spec.valid_dates or len(train) < 2:
        raise CustlabError(
            f"only {len(dates)} labelled as-of dates; {spec.test_dates} test and "
            f"{spec.valid_dates} validation dates need at least {_needed(spec, 1, 0, 0)}"
        )
    return SplitPlan(
        train=train,
        valid=valid,
        test=test,
        by_customer=True,
        reason="the task keeps customers apart: its horizon is too long for purge gaps",
    )
