"""The lifecycle and RFM rules, one hand-made customer per branch."""

import numpy as np
import pandas as pd
import pytest

from features.families.segments import RfmRules, StageRules, lifecycle_stage, rfm_segment
from features.history import History
from features.labels import clv_labels, lifecycle_labels, propensity_labels
from tests.factories import orders_frame

T = pd.Timestamp("2024-03-04", tz="UTC")
STAGE_CASES = {
    "new": ["2024-02-20"],
    "churned": ["2022-12-01"],
    "reactivated": ["2022-06-01", "2024-02-10"],
    "at_risk": ["2023-09-01", "2023-09-11", "2023-09-21", "2023-10-01", "2023-11-01"],
    "growing": ["2023-06-01", "2024-01-10", "2024-02-01", "2024-02-20"],
    "active": ["2023-03-01", "2023-09-01", "2024-01-15"],
}


def _orders(cases: dict[str, list[str]], amount: float = 10.0) -> pd.DataFrame:
    return orders_frame([(c, day, amount) for c, days in cases.items() for day in days])


@pytest.mark.parametrize("stage", list(STAGE_CASES))
def test_each_lifecycle_rule(stage):
    history = History.of_purchases(_orders(STAGE_CASES))
    cust = history.codes(pd.Series([stage]))
    when = np.array([T.tz_localize(None)], dtype="datetime64[s]")
    assert lifecycle_stage(history, cust, when).tolist() == [stage]


def test_customers_who_never_bought_are_new_or_churned_by_sign_up():
    history = History(
        History.vocabulary_of(pd.Series(["fresh", "old"])),
        pd.Series([], dtype=str),
        pd.Series([], dtype="datetime64[ns, UTC]"),
    )
    signed_up = pd.to_datetime(["2024-02-01", "2023-01-01"], utc=True)
    when = np.array([T.tz_localize(None)] * 2, dtype="datetime64[s]")
    stage = lifecycle_stage(
        history,
        np.array([0, 1]),
        when,
        signed_up.as_unit("s").asi8.astype(float),
    )
    assert stage.tolist() == ["new", "churned"]


def test_thresholds_are_parameters():
    history = History.of_purchases(_orders({"a": ["2024-01-10"]}))
    when = np.array([T.tz_localize(None)], dtype="datetime64[s]")
    cust = history.codes(pd.Series(["a"]))
    assert lifecycle_stage(history, cust, when).tolist() == ["new"]
    assert lifecycle_stage(history, cust, when, rules=StageRules(new_days=30)).tolist() == [
        "active"
    ]


def test_rfm_segments_by_value_quantiles_among_recent_buyers():
    spends = {"top": 500.0, "mid": 100.0, "mid2": 90.0, "low1": 10.0, "low2": 11.0, "low3": 12.0}
    orders = orders_frame(
        [(c, "2023-06-01", v) for c, v in spends.items()]
        + [(c, "2024-02-15", v) for c, v in spends.items()]
        + [("lapsed", "2023-06-01", 900.0)]
    )
    ids = pd.Series([*spends, "lapsed", "nobody"])
    purchases = History.of_purchases(orders, History.vocabulary_of(ids))
    spend = History.of_net_spend(orders, purchases.vocabulary)
    when = np.array([T.tz_localize(None)] * len(ids), dtype="datetime64[s]")
    # Net spend over 365 days: 1000, 200, 180, 20, 22, 24; the 0.9 quantile is 600, the
    # median 102.
    rules = RfmRules(high_value_quantile=0.9, potential_quantile=0.5)
    segments = rfm_segment(purchases, spend, purchases.codes(ids), when, rules)
    assert dict(zip(ids, segments, strict=True)) == {
        "top": "high_value",
        "mid": "potential",
        "mid2": "potential",
        "low1": "basic",
        "low2": "basic",
        "low3": "basic",
        "lapsed": "at_risk",
        "nobody": None,
    }


def test_propensity_label_in_a_target_category():
    orders = orders_frame(
        [
            ("a", "2024-02-01", 5),
            ("a", "2024-03-10", 5),
            ("b", "2024-02-01", 5),
            ("b", "2024-03-11", 5),
            ("z", "2024-06-01", 1),
        ]
    )
    orders["category"] = ["books", "books", "books", "toys", "books"]
    tables = {"orders": orders}
    any_order = propensity_labels(tables, pd.DatetimeIndex([T]), horizon_days=30)
    books = propensity_labels(tables, pd.DatetimeIndex([T]), horizon_days=30, category="books")
    assert dict(zip(any_order["customer_id"], any_order["purchased"], strict=True)) == {
        "a": 1,
        "b": 1,
    }
    assert dict(zip(books["customer_id"], books["purchased"], strict=True)) == {"a": 1, "b": 0}


def test_clv_label_is_net_spend_in_the_horizon():
    orders = orders_frame(
        [
            ("a", "2024-02-01", 50),
            ("a", "2024-04-01", 80),
            ("a", "2024-05-01", 30),
            ("a", "2025-06-01", 99),
            ("z", "2025-12-01", 1),
        ]
    )
    orders["is_return"] = [False, False, True, False, False]
    labels = clv_labels({"orders": orders}, pd.DatetimeIndex([T]), horizon_days=365)
    assert labels.set_index("customer_id").loc["a", "future_spend"] == pytest.approx(50.0)


def test_lifecycle_label_is_the_stage_a_horizon_later():
    orders = orders_frame([("a", "2024-02-01", 5), ("z", "2025-06-01", 1)])
    labels = lifecycle_labels({"orders": orders}, pd.DatetimeIndex([T]), horizon_days=90)
    # Bought once, 123 days before t + 90 days: past the 90-day "new" window, gone quiet.
    assert labels.set_index("customer_id").loc["a", "future_stage"] == "at_risk"
