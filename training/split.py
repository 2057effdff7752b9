"""Time-based splits with a purge gap.

A label at ``t`` looks ``horizon`` days ahead, so a training row at ``t`` "knows" the
period up to ``t + horizon``. Rows are kept in an earlier split only if their label
window closes before the next split starts; otherwise test performance would be
measured on outcomes the model has already seen.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from features.contract import EVENT_TIMESTAMP
from features.errors import CustlabError


class SplitSpec(BaseModel):
    """How many weekly as-of dates each split gets."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    test_dates: int = Field(4, ge=1, description="Newest matured as-of dates, for the test.")
    valid_dates: int = Field(4, ge=1, description="As-of dates for early stopping and tuning.")
    train_every: int = Field(
        4, ge=1, description="Keep every n-th older as-of date for training (rows of nearby "
        "weeks are near-duplicates)."
    )


@dataclass(frozen=True)
class TimeSplit:
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame

    def window(self, part: str) -> tuple[pd.Timestamp, pd.Timestamp]:
        """First and last as-of date of ``part`` (train, valid or test)."""
        dates = getattr(self, part)[EVENT_TIMESTAMP]
        return dates.min(), dates.max()


def time_split(frame: pd.DataFrame, horizon_days: int, spec: SplitSpec) -> TimeSplit:
    """Split a labelled frame by as-of date into train, valid and test, with purge gaps.

    Raises:
        CustlabError: Too few as-of dates for the requested splits and gaps; the message
            says how many there are and how many are needed.
    """
    dates = pd.DatetimeIndex(sorted(frame[EVENT_TIMESTAMP].unique()))
    horizon = pd.Timedelta(days=horizon_days)
    test_dates = dates[-spec.test_dates :]
    before_test = dates[dates + horizon <= test_dates[0]]
    valid_dates = before_test[-spec.valid_dates :]
    before_valid = before_test[before_test + horizon <= valid_dates[0]] if len(valid_dates) else []
    train_dates = pd.DatetimeIndex(before_valid)[::-1][:: spec.train_every][::-1]
    if len(valid_dates) < spec.valid_dates or len(train_dates) < 2:
        gap_weeks = -(-horizon_days // 7)
        needed = spec.test_dates + spec.valid_dates + 2 * gap_weeks + 2
        raise CustlabError(
            f"only {len(dates)} labelled as-of dates; a split with {spec.test_dates} test, "
            f"{spec.valid_dates} validation dates and {horizon_days}-day purge gaps needs "
            f"at least {needed}"
        )
    at = frame[EVENT_TIMESTAMP]
    return TimeSplit(
        train=frame[at.isin(train_dates)].reset_index(drop=True),
        valid=frame[at.isin(valid_dates)].reset_index(drop=True),
        test=frame[at.isin(test_dates)].reset_index(drop=True),
    )
