import pandas as pd

from features.history import History
from features.labels import active_customers, churn_labels
from tests.factories import orders_frame

T = pd.Timestamp("2024-03-04", tz="UTC")


def test_churn_label_looks_only_after_t_and_only_at_active_customers():
    orders = orders_frame(
        [
            ("stays", "2024-02-01", 10),
            ("stays", "2024-04-01", 10),
            ("leaves", "2024-02-01", 10),
            ("old", "2022-01-01", 10),  # inactive at t: not labelled
            ("new", "2024-03-10", 10),  # first order after t: not labelled
            ("end", "2024-12-31", 1),  # marks the end of observation
        ]
    )
    labels = churn_labels(
        {"orders": orders}, pd.DatetimeIndex([T]), horizon_days=90, active_window_days=365
    )
    assert dict(zip(labels["customer_id"], labels["churned"], strict=True)) == {
        "stays": 0,
        "leaves": 1,
    }


def test_an_order_exactly_at_the_horizon_end_does_not_count():
    orders = orders_frame(
        [("a", "2024-02-01", 10), ("a", str(T + pd.Timedelta(days=90)), 10), ("z", "2025-01-01", 1)]
    )
    labels = churn_labels({"orders": orders}, pd.DatetimeIndex([T]), horizon_days=90)
    assert labels.set_index("customer_id").loc["a", "churned"] == 1


def test_immature_dates_get_no_label():
    orders = orders_frame([("a", "2024-02-01", 10), ("a", "2024-04-01", 10)])
    late = pd.DatetimeIndex([T, T + pd.Timedelta(days=14)])
    labels = churn_labels({"orders": orders}, late, horizon_days=90)
    assert labels.empty


def test_history_counts_half_open_windows():
    orders = orders_frame([("a", "2024-01-01", 1), ("a", "2024-01-05", 1), ("b", "2024-01-03", 1)])
    index = History.of_purchases(orders)
    ids = pd.Series(["a", "a", "b", "ghost"])
    start = pd.Series(
        pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-01", "2024-01-01"], utc=True)
    )
    end = start + pd.Timedelta(days=4)
    assert index.count_between(index.codes(ids), start, end).tolist() == [1, 1, 1, 0]


def test_active_customers_per_date():
    orders = orders_frame([("a", "2024-01-01", 1), ("b", "2023-01-01", 1)])
    active = active_customers(orders, pd.DatetimeIndex([T]), window_days=365)
    assert active["customer_id"].tolist() == ["a"]
