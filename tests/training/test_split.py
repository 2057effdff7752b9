import pandas as pd
import pytest

from features.errors import CustlabError
from training.split import PARTS, SplitSpec, plan_split

WEEKS = pd.date_range("2024-01-01", periods=80, freq="7D", tz="UTC")


@pytest.mark.parametrize("horizon", [30, 90])
def test_label_windows_close_before_the_next_split(horizon: int):
    plan = plan_split(WEEKS, horizon, SplitSpec())
    gap = pd.Timedelta(days=horizon)
    assert plan.train[-1] + gap <= plan.valid[0]
    assert plan.valid[-1] + gap <= plan.test[0]
    assert list(plan.test) == list(WEEKS[-4:])


def test_parts_are_disjoint_and_newest_last():
    plan = plan_split(WEEKS, 90, SplitSpec(train_every=2))
    windows = [plan.window(p) for p in PARTS]
    assert windows[0][1] < windows[1][0] and windows[1][1] < windows[2][0]
    assert len(set(plan.train) & set(plan.valid)) == 0
    assert (pd.Series(plan.train).diff().dropna() == pd.Timedelta(days=14)).all()


def test_too_short_a_history_says_how_much_is_needed():
    with pytest.raises(CustlabError, match=r"only 20 labelled as-of dates; .* need at least 36"):
        plan_split(WEEKS[:20], 90, SplitSpec())


def test_spec_refuses_unknown_and_out_of_range_values():
    with pytest.raises(ValueError):
        SplitSpec(test_dates=0)
    with pytest.raises(ValueError):
        SplitSpec(shuffle=True)


def test_a_split_by_customer_keeps_every_customer_in_one_part():
    plan = plan_split(WEEKS[:40], 365, SplitSpec(), by_customer=True)
    assert list(plan.test) == list(WEEKS[36:40]) and plan.valid[-1] < plan.test[0]
    frame = pd.DataFrame(
        [(f"c{i}", t) for i in range(400) for t in WEEKS[:40]],
        columns=["customer_id", "event_timestamp"],
    )
    parts = {p: set(plan.part(frame, p)["customer_id"]) for p in PARTS}
    assert all(parts.values())
    assert not parts["train"] & parts["test"] and not parts["valid"] & parts["test"]
    assert not parts["train"] & parts["valid"]
    # About a fifth of the customers are held out for the test.
    assert 0.12 < len(parts["test"]) / 400 < 0.28
    with pytest.raises(CustlabError, match=r"365-day purge gaps"):
        plan_split(WEEKS[:40], 365, SplitSpec())
