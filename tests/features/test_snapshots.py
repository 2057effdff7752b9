import numpy as np
import pandas as pd
import pytest

from features.families import FAMILIES
from features.simulate import World
from features.snapshots import as_of_dates, build_snapshots
from tests.factories import orders_frame

MONDAY = pd.Timestamp("2024-03-04", tz="UTC")


def _orders(orders: pd.DataFrame, customers: pd.DataFrame | None = None, **kwargs) -> pd.DataFrame:
    """The orders family joined to the profile family, as one frame per row."""
    tables = {"orders": orders} | ({"customers": customers} if customers is not None else {})
    snapshots = build_snapshots(tables, **kwargs)
    frame = snapshots["orders"]
    if "profile" in snapshots:
        frame = frame.merge(snapshots["profile"], on=["customer_id", "event_timestamp"])
    return frame


def _row(snapshots: pd.DataFrame, customer: str, at: pd.Timestamp) -> pd.Series:
    match = snapshots[(snapshots["customer_id"] == customer) & (snapshots["event_timestamp"] == at)]
    assert len(match) == 1
    return match.iloc[0]


def test_windows_count_only_orders_before_the_as_of_date():
    orders = orders_frame(
        [
            ("a", "2024-01-10 12:00", 10),  # 8 weeks before
            ("a", "2024-02-26 09:00", 20),  # within the last 4 weeks
            ("a", "2024-03-04 00:00", 99),  # exactly at t: belongs to the future
            ("b", "2024-02-28 18:00", 5),
        ]
    )
    snapshots = _orders(orders, as_of=[MONDAY])
    a = _row(snapshots, "a", MONDAY)
    assert a["orders_4w"] == 1 and a["orders_13w"] == 2 and a["orders_total"] == 2
    assert a["spend_4w"] == pytest.approx(20) and a["spend_total"] == pytest.approx(30)
    assert a["recency_days"] == pytest.approx(
        (MONDAY - pd.Timestamp("2024-02-26 09:00", tz="UTC")).total_seconds() / 86400
    )
    assert a["avg_order_value"] == pytest.approx(15)
    assert a["mean_days_between_orders"] == pytest.approx(
        (pd.Timestamp("2024-02-26 09:00") - pd.Timestamp("2024-01-10 12:00")).total_seconds()
        / 86400
    )
    b = _row(snapshots, "b", MONDAY)
    assert b["orders_total"] == 1 and np.isnan(b["mean_days_between_orders"])


def test_returns_reduce_spend_but_are_not_orders():
    orders = orders_frame([("a", "2024-02-20", 50), ("a", "2024-02-22", 20)])
    orders["is_return"] = [False, True]
    a = _row(_orders(orders, as_of=[MONDAY]), "a", MONDAY)
    assert a["orders_total"] == 1 and a["spend_total"] == pytest.approx(30)


def test_customers_unknown_before_t_get_no_row():
    orders = orders_frame([("a", "2024-02-20", 50), ("late", "2024-03-05", 20)])
    snapshots = _orders(orders, as_of=[MONDAY])
    assert set(snapshots["customer_id"]) == {"a"}


def test_signup_without_orders_yields_a_row_with_tenure():
    orders = orders_frame([("a", "2024-02-20", 50)])
    customers = pd.DataFrame(
        {"customer_id": ["quiet"], "signup_ts": pd.to_datetime(["2024-02-19"], utc=True)}
    )
    quiet = _row(_orders(orders, customers, as_of=[MONDAY]), "quiet", MONDAY)
    assert quiet["tenure_days"] == pytest.approx(14) and quiet["orders_total"] == 0
    assert np.isnan(quiet["recency_days"])


def test_as_of_dates_must_be_week_boundaries():
    orders = orders_frame([("a", "2024-02-20", 50)])
    with pytest.raises(ValueError, match="Mondays"):
        build_snapshots({"orders": orders}, as_of=[MONDAY + pd.Timedelta(hours=1)])


def test_future_records_never_change_past_snapshots(small_world: World):
    """Point-in-time correctness: cutting every table at t leaves snapshots at t unchanged."""
    tables = small_world.tables()
    dates = as_of_dates(tables["orders"])
    cut = dates[len(dates) // 2]
    stamps = {
        "orders": "order_ts",
        "events": "event_ts",
        "tickets": "ticket_ts",
        "campaigns": "sent_ts",
    }
    past = {
        name: frame[frame[stamps[name]] < cut] if name in stamps else frame
        for name, frame in tables.items()
    }
    as_of = dates[: len(dates) // 2 + 1]
    full, past_only = build_snapshots(tables, as_of=as_of), build_snapshots(past, as_of=as_of)
    assert set(full) == set(FAMILIES)
    for name, frame in full.items():
        pd.testing.assert_frame_equal(frame, past_only[name], obj=name)
