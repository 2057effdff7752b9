import logging

import pandas as pd
import pytest

from features.errors import CustlabError
from training.split import PARTS, SplitPlan, SplitSpec, customer_part, plan_split
from training.tasks import get_task
from training.train import SplitFrames, split_frames

WEEKS = pd.date_range("2024-01-01", periods=80, freq="7D", tz="UTC")


def labelled_dates(weeks: int, horizon: int) -> pd.DatetimeIndex:
    """The weekly as-of dates of ``weeks`` weeks of history whose label has matured."""
    history = WEEKS[:weeks]
    return history[history + pd.Timedelta(days=horizon) <= history[-1]]


def customer_frame(dates: pd.DatetimeIndex, customers: int = 400) -> pd.DataFrame:
    """Every customer at every date, labelled."""
    frame = pd.DataFrame(
        [(f"c{i}", t) for i in range(customers) for t in dates],
        columns=["customer_id", "event_timestamp"],
    )
    return frame.assign(churned=(frame.index % 3 == 0).astype(int))


@pytest.mark.parametrize("horizon", [30, 90])
def test_label_windows_close_before_the_next_split(horizon: int):
    plan = plan_split(WEEKS, horizon, SplitSpec(validation="time"))
    gap = pd.Timedelta(days=horizon)
    assert plan.train[-1] + gap <= plan.valid[0]
    assert plan.valid[-1] + gap <= plan.test[0]
    assert list(plan.test) == list(WEEKS[-4:])


def test_parts_are_disjoint_and_newest_last():
    plan = plan_split(WEEKS, 90, SplitSpec(train_every=2, validation="time"))
    windows = [plan.window(p) for p in PARTS]
    assert windows[0][1] < windows[1][0] and windows[1][1] < windows[2][0]
    assert len(set(plan.train) & set(plan.valid)) == 0
    assert (pd.Series(plan.train).diff().dropna() == pd.Timedelta(days=14)).all()


def test_a_year_of_weekly_history_validates_by_customer_and_trains_on_most_rows():
    dates = labelled_dates(53, 90)
    plan = plan_split(dates, 90, SplitSpec())
    assert plan.validation == "customers"
    assert "would take 16 of 24 trainable as-of dates, more than 50%" in plan.reason
    frames = SplitFrames.of(customer_frame(dates[dates.isin(plan.dates)]), plan)
    assert len(frames.train) > len(frames.test)
    assert len(frames.train) > 0.5 * (len(frames.train) + len(frames.valid))
    # The test is still the newest dates, a horizon after the newest training date.
    assert list(plan.test) == list(dates[-4:])
    assert plan.train[-1] + pd.Timedelta(days=90) <= plan.test[0]
    # Validating by time instead would train on fewer than half as many rows.
    by_time = plan_split(dates, 90, SplitSpec(validation="time"))
    timed = SplitFrames.of(customer_frame(dates[dates.isin(by_time.dates)]), by_time)
    assert len(timed.train) * 2 < len(frames.train)


def test_validation_by_customer_keeps_train_and_valid_customers_apart():
    dates = labelled_dates(53, 90)
    plan = plan_split(dates, 90, SplitSpec(validation="customers"))
    assert list(plan.valid) == list(plan.train)
    frames = SplitFrames.of(customer_frame(dates), plan)
    train, valid, test = (set(getattr(frames, p)["customer_id"]) for p in PARTS)
    assert train and valid and not train & valid
    # The test holds every customer; about a fifth of them validate.
    assert test == train | valid
    assert 0.12 < len(valid) / len(test) < 0.28


def test_a_long_history_validates_by_time():
    plan = plan_split(WEEKS, 90, SplitSpec())
    assert plan.validation == "time" and plan.kind == "by time"
    assert "take 16 of 64 trainable as-of dates, at most 50%" in plan.reason


@pytest.mark.parametrize(
    ("weeks", "validation"), [(53, "time"), (80, "customers"), (80, "time"), (53, "customers")]
)
def test_an_explicit_validation_is_honoured(weeks: int, validation: str):
    plan = plan_split(labelled_dates(weeks, 90), 90, SplitSpec(validation=validation))
    assert plan.validation == validation
    assert plan.reason == f"validation by {validation} as configured"


@pytest.mark.parametrize(
    ("validation", "needed", "says"),
    [
        ("time", 37, "4 test and 4 validation dates with 90-day purge gaps"),
        ("customers", 21, "4 test dates and a 90-day purge gap"),
        ("auto", 21, "even with validation held out by customer"),
    ],
)
def test_too_short_a_history_says_exactly_how_much_is_needed(
    validation: str, needed: int, says: str
):
    spec = SplitSpec(validation=validation)
    plan_split(WEEKS[:needed], 90, spec)
    with pytest.raises(CustlabError, match=rf"only {needed - 1} labelled as-of dates; ") as error:
        plan_split(WEEKS[: needed - 1], 90, spec)
    assert says in str(error.value) and f"need at least {needed} weekly dates" in str(error.value)


def test_spec_refuses_unknown_and_out_of_range_values():
    with pytest.raises(ValueError):
        SplitSpec(test_dates=0)
    with pytest.raises(ValueError):
        SplitSpec(shuffle=True)
    with pytest.raises(ValueError):
        SplitSpec(validation="random")


def test_a_split_by_customer_keeps_every_customer_in_one_part():
    plan = plan_split(WEEKS[:40], 365, SplitSpec(), by_customer=True)
    assert list(plan.test) == list(WEEKS[36:40]) and plan.valid[-1] < plan.test[0]
    frame = customer_frame(WEEKS[:40])
    parts = {p: set(plan.part(frame, p)["customer_id"]) for p in PARTS}
    assert all(parts.values())
    assert not parts["train"] & parts["test"] and not parts["valid"] & parts["test"]
    assert not parts["train"] & parts["valid"]
    # About a fifth of the customers are held out for the test.
    assert 0.12 < len(parts["test"]) / 400 < 0.28
    # A task split by customer splits the same whatever the validation setting says.
    for validation in ("time", "customers"):
        again = plan_split(WEEKS[:40], 365, SplitSpec(validation=validation), by_customer=True)
        assert all(list(getattr(again, p)) == list(getattr(plan, p)) for p in PARTS)
    with pytest.raises(CustlabError, match=r"365-day purge gap"):
        plan_split(WEEKS[:40], 365, SplitSpec())
    with pytest.raises(CustlabError, match=r"only 12 labelled .* need at least 13"):
        plan_split(WEEKS[:12], 365, SplitSpec(), by_customer=True)


def test_a_plan_built_by_hand_keeps_splitting_customers_in_three():
    dates = WEEKS[:1]
    plan = SplitPlan(train=dates, valid=dates, test=dates, by_customer=True)
    frame = customer_frame(dates)
    parts = {p: plan.part(frame, p) for p in PARTS}
    assert sum(map(len, parts.values())) == len(frame)
    assert (customer_part(parts["valid"]["customer_id"]) == "valid").all()


def test_the_split_is_logged_at_info_with_its_rule(caplog: pytest.LogCaptureFixture):
    dates = labelled_dates(53, 90)
    plan = plan_split(dates, 90, SplitSpec())
    with caplog.at_level(logging.INFO, logger="training.train"):
        split_frames(get_task("churn"), customer_frame(dates[dates.isin(plan.dates)]), plan)
    (line,) = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert line.startswith("churn split: train 2024-01-22..2024-06-10, 6 dates (1,848 rows)")
    assert "valid 2024-01-22..2024-06-10, 6 dates (552 rows)" in line
    assert "test 2024-09-09..2024-09-30, 4 dates (1,600 rows)" in line
    assert "validation holds out 20% of customers at the training dates" in line
    assert "more than 50%" in line
