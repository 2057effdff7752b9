"""Time-based splits with a purge gap.

A label at ``t`` looks ``horizon`` days ahead, so a training row at ``t`` "knows" the
period up to ``t + horizon``. An as-of date is kept in an earlier split only if its label
window closes before the next split starts; otherwise test performance would be measured
on outcomes the model has already seen.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from features.contract import EVENT_TIMESTAMP
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


@dataclass(frozen=True)
class SplitPlan:
    """The as-of dates of each split."""

    train: pd.DatetimeIndex
    valid: pd.DatetimeIndex
    test: pd.DatetimeIndex

    @property
    def dates(self) -> pd.DatetimeIndex:
        return self.train.append([self.valid, self.test])

    def window(self, part: str) -> tuple[pd.Timestamp, pd.Timestamp]:
        """First and last as-of date of ``part`` (train, valid or test)."""
        dates = getattr(self, part)
        return dates[0], dates[-1]

    def part(self, frame: pd.DataFrame, part: str) -> pd.DataFrame:
        """The rows of ``frame`` whose as-of date belongs to ``part``."""
        return frame[frame[EVENT_TIMESTAMP].isin(getattr(self, part))].reset_index(drop=True)


def plan_split(dates: pd.DatetimeIndex, horizon_days: int, spec: SplitSpec) -> SplitPlan:
    """Choose train, valid and test as-of dates, newest last, with purge gaps between.

    Raises:
        CustlabError: Too few as-of dates for the requested splits and gaps; the message
            says how many there are and how many are needed.
    """
    dates = pd.DatetimeIndex(sorted(set(dates)))
    horizon = pd.Timedelta(days=horizon_days)
    test = dates[-spec.test_dates :]
    before_test = dates[dates + horizon <= test[0]]
    valid = before_test[-spec.valid_dates :]
    before_valid = before_test[before_test + horizon <= valid[0]] if len(valid) else dates[:0]
    train = before_valid[::-1][:: spec.train_every][::-1]
    if len(test) < spec.test_dates or len(valid) < spec.valid_dates or len(train) < 2:
        gap_weeks = -(-horizon_days // 7)
        needed = spec.test_dates + spec.valid_dates + 2 * gap_weeks + 2
        raise CustlabError(
            f"only {len(dates)} labelled as-of dates; {spec.test_dates} test and "
            f"{spec.valid_dates} validation dates with {horizon_days}-day purge gaps need "
            f"at least {needed}"
        )
    return SplitPlan(train=train, valid=valid, test=test)
