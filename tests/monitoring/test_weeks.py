import pandas as pd
import pytest

from features.errors import CustlabError
from monitoring.weeks import IsoWeek, weeks_between


def test_a_week_starts_on_its_monday_and_round_trips() -> None:
    week = IsoWeek.parse("2025-W09")
    assert week.start == pd.Timestamp("2025-02-24", tz="UTC")
    assert week.end == pd.Timestamp("2025-03-03", tz="UTC")
    assert str(week) == "2025-W09"
    assert IsoWeek.of(pd.Timestamp("2025-03-02 23:59", tz="UTC")) == week


def test_weeks_cross_a_year_boundary() -> None:
    # 2020 has 53 ISO weeks.
    last = IsoWeek.parse("2020-W53")
    assert last.shifted(1) == IsoWeek.parse("2021-W01")
    assert last.weeks_until(IsoWeek.parse("2021-W02")) == 2
    assert [
        str(w) for w in weeks_between(IsoWeek.parse("2020-W52"), IsoWeek.parse("2021-W01"))
    ] == [
        "2020-W52",
        "2020-W53",
        "2021-W01",
    ]


@pytest.mark.parametrize(
    ("text", "says"),
    [("2025-9", "YYYY-Www"), ("2025-W54", "no ISO week 54"), ("2021-W53", "no ISO week 53")],
)
def test_bad_weeks_are_refused_by_name(text: str, says: str) -> None:
    with pytest.raises(CustlabError, match=says):
        IsoWeek.parse(text)
