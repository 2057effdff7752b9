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
