"""The business view: every figure of a small hand-built week checked against the number
worked out by hand, absent sources stated as absent, an empty week, bad input refused,
and the simulated world checked against the rules it shares with the rest of custlab."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from features.contract import validate_table
from features.errors import CustlabError
from features.families.engagement import EVENT_TYPES
from features.simulate import World
from features.snapshots import as_of_dates, build_snapshots
from monitoring.business import (
    FUNNEL,
    NO_SEGMENT,
    NOT_KNOWN,
    Absent,
    BusinessView,
    business_view,
    segment_dates,
)
from training.tasks.churn import active

WEEK_START = pd.Timestamp("2025-03-10", tz="UTC")  # a Monday
BEFORE = WEEK_START - pd.Timedelta(days=7)


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


# (order_id, customer, when, amount, is_return). This week is 03-10..03-16, the week
# before 03-03..03-09; "active" at a week's end means a purchase in the 365 days before.
ORDERS = [
    ("o1", "a", "2024-06-01", 10.0, False),  # a bought long ago: a repeat buyer this week
    ("o2", "a", "2025-03-11 10:00", 30.0, False),
    ("o3", "b", "2025-03-12", 50.0, False),  # b's first purchase: not a repeat buyer
    ("o4", "b", "2025-03-13", 20.0, False),  # a second order, the same buyer
    ("o5", "c", "2025-03-04", 40.0, False),  # c's first, the week before
    ("o6", "c", "2025-03-14", 60.0, False),  # c repeats this week
    ("o7", "d", "2024-01-01", 100.0, False),  # more than 365 days before both ends
    ("r1", "a", "2025-03-15", 10.0, True),  # a return this week: not an order
    ("o8", "e", "2025-03-09 23:59:59", 25.0, False),  # the last second of the week before
    ("o9", "e", "2025-03-17 00:00:00", 5.0, False),  # the week's end is exclusive
    ("o10", "f", "2024-03-17 00:00:00", 8.0, False),  # exactly 365 days before 03-17: active
    ("o11", "g", "2024-03-16 23:59:59", 8.0, False),  # one second more: active only before
]
# (customer, when, type).
EVENTS = [
    ("a", "2025-03-11 09:00", "login"),
    ("a", "2025-03-11 09:01", "view"),
    ("a", "2025-03-11 09:02", "add_to_cart"),  # a: every step, and bought: reaches order
    ("b", "2025-03-12", "view"),  # b: visit and view, bought without a cart
    ("c", "2025-03-14", "add_to_cart"),  # c: carted and bought but never viewed: visit only
    ("h", "2025-03-13", "login"),  # h: visits, never buys
    ("e", "2025-03-17 00:00", "view"),  # outside both weeks
    ("c", "2025-03-04", "view"),  # the week before: c takes every step and buys (o5)
    ("c", "2025-03-04", "add_to_cart"),
    ("e", "2025-03-09", "view"),  # e views and buys (o8) without a cart
    ("a", "2025-03-05", "search"),  # a visits only
]
# (customer, as-of Monday, lifecycle stage, RFM segment); 02-24 is not read.
SEGMENTS = [
    ("a", "2025-03-03", "active", "basic"),
    ("c", "2025-03-03", "new", "potential"),
    ("e", "2025-03-03", "at_risk", "at_risk"),
    ("a", "2025-03-10", "growing", "high_value"),
    ("c", "2025-03-10", "new", "potential"),
    ("e", "2025-03-10", "at_risk", "at_risk"),
    ("b", "2025-03-10", "new", None),  # signed up, not bought yet; not known the week before
    ("a", "2025-02-24", "churned", "at_risk"),
]


def orders_table(rows: list[tuple] = ORDERS, returns: bool = True) -> pd.DataFrame:
    frame = pd.DataFrame(
        rows, columns=["order_id", "customer_id", "order_ts", "amount", "is_return"]
    )
    frame["order_ts"] = pd.to_datetime(frame["order_ts"], utc=True, format="ISO8601")
    if not returns:
        frame = frame[~frame["is_return"]].drop(columns="is_return")
    return validate_table("orders", frame)


def events_table(rows: list[tuple] = EVENTS) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["customer_id", "event_ts", "event_type"])
    frame["event_ts"] = pd.to_datetime(frame["event_ts"], utc=True, format="ISO8601")
    return validate_table("events", frame)


def segments_frame(rows: list[tuple] = SEGMENTS) -> pd.DataFrame:
    frame = pd.DataFrame(
        rows, columns=["customer_id", "event_timestamp", "lifecycle_stage", "rfm_segment"]
    )
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True, format="ISO8601")
    return frame.astype({"lifecycle_stage": "string", "rfm_segment": "string"})


TIERS = pd.Series({"a": "high", "b": "low", "c": "medium", "e": "low"})


@pytest.fixture(scope="module")
def view() -> BusinessView:
    tables = {"orders": orders_table(), "events": events_table()}
    return business_view(tables, segments_frame(), WEEK_START, TIERS)


def figures(compared) -> tuple:
    return compared.this_week, compared.week_before, compared.change


def test_order_figures_by_hand(view: BusinessView):
    o = view.orders
    # a, b, c, e, f at 03-17 (g's purchase is a second too old); a, c, e, f, g at 03-10.
    assert figures(o.active_customers) == (5, 5, 0)
    assert figures(o.buyers) == (3, 2, 1)  # {a, b, c}; {c, e}
    assert figures(o.repeat_buyers) == (2, 0, 2)  # a and c had bought before; c, e had not
    assert figures(o.repurchase_rate) == pytest.approx((2 / 3, 0.0, 2 / 3))
    assert figures(o.orders) == (4, 2, 2)  # o2, o3, o4, o6; o5, o8 (the return is none)
    assert o.returns is not None and figures(o.returns) == (1, 0, 1)
    assert figures(o.net_sales) == pytest.approx((150.0, 65.0, 85.0))  # 160 - 10; 40 + 25
    assert figures(o.average_order_value) == pytest.approx((37.5, 32.5, 5.0))
    assert view.definitions["average_order_value"].startswith("net of returns")
    assert not view.empty


def test_funnel_by_hand(view: BusinessView):
    funnel = view.funnel
    assert not isinstance(funnel, Absent)
    assert [step.name for step in funnel.steps] == ["visit", "view", "add_to_cart", "order"]
    visit, viewed, cart, order = funnel.steps
    assert figures(visit.customers) == (4, 3, 1)  # {a, b, c, h}; {a, c, e}
    assert figures(viewed.customers) == (2, 2, 0)  # {a, b}; {c, e}
    assert figures(cart.customers) == (1, 1, 0)  # {a}; {c}
    assert figures(order.customers) == (1, 1, 0)  # {a}; {c}
    assert visit.conversion is None and visit.drop_off is None
    assert figures(viewed.conversion) == pytest.approx((0.5, 2 / 3, 0.5 - 2 / 3))
    assert figures(viewed.drop_off) == pytest.approx((0.5, 1 / 3, 0.5 - 1 / 3))
    assert figures(cart.conversion) == pytest.approx((0.5, 0.5, 0.0))
    assert figures(order.conversion) == pytest.approx((1.0, 1.0, 0.0))
    assert figures(order.drop_off) == pytest.approx((0.0, 0.0, 0.0))
    assert funnel.left_out == {}


def test_funnel_reads_the_event_types_the_engagement_family_reads():
    assert {kind for _, kind in FUNNEL if kind} <= set(EVENT_TYPES)


def test_segment_counts_and_moves_by_hand(view: BusinessView):
    assert segment_dates(WEEK_START) == (BEFORE, WEEK_START)
    lifecycle, rfm = view.lifecycle, view.rfm
    assert not isinstance(lifecycle, Absent) and not isinstance(rfm, Absent)
    counts = {name: figures(c) for name, c in lifecycle.counts.items()}
    assert counts == {
        "new": (2, 1, 1),  # b, c; c
        "active": (0, 1, -1),
        "growing": (1, 0, 1),
        "at_risk": (1, 1, 0),
        "churned": (0, 0, 0),  # a's churned row is of 02-24, not read
        "reactivated": (0, 0, 0),
    }
    moved = {(a, b): n for a, row in lifecycle.transitions.items() for b, n in row.items() if n}
    assert moved == {
        ("active", "growing"): 1,
        ("new", "new"): 1,
        ("at_risk", "at_risk"): 1,
        (NOT_KNOWN, "new"): 1,
    }
    # Every pair is there, zeros included: a matrix the reader can scan.
    assert list(lifecycle.transitions) == [*lifecycle.counts, NOT_KNOWN]
    assert all(list(row) == list(lifecycle.transitions) for row in lifecycle.transitions.values())
    assert {name: figures(c) for name, c in rfm.counts.items()} == {
        "high_value": (1, 0, 1),
        "potential": (1, 1, 0),
        "basic": (0, 1, -1),
        "at_risk": (1, 1, 0),
        NO_SEGMENT: (1, 0, 1),  # b has not bought
    }
    moved = {(a, b): n for a, row in rfm.transitions.items() for b, n in row.items() if n}
    assert moved == {
        ("basic", "high_value"): 1,
        ("potential", "potential"): 1,
        ("at_risk", "at_risk"): 1,
        (NOT_KNOWN, NO_SEGMENT): 1,
    }


def test_tier_counts_in_the_policy_order(view: BusinessView):
    assert not isinstance(view.tiers, Absent)
    assert list(view.tiers.counts.items()) == [("high", 1), ("medium", 1), ("low", 2)]
    assert view.tiers.customers == 4


def test_to_dict_is_json_and_holds_the_figures(view: BusinessView):
    saved = json.loads(json.dumps(view.to_dict()))
    assert saved["week_start"] == "2025-03-10T00:00:00+00:00"
    assert saved["week_end"] == "2025-03-17T00:00:00+00:00"
    assert saved["orders"]["buyers"] == {"this_week": 3, "week_before": 2, "change": 1}
    assert saved["funnel"]["steps"]["view"]["customers"]["this_week"] == 2
    assert saved["lifecycle"]["transitions"]["active"]["growing"] == 1
    assert saved["tiers"] == {"counts": {"high": 1, "medium": 1, "low": 2}, "customers": 4}


def test_html_is_self_contained_and_shows_the_figures(view: BusinessView):
    page = view.html()
    assert page.startswith('<section class="custlab-business">')
    lowered = page.lower()
    for external in ("<script", "<link", "src=", "href=", "@import", "url(", "http"):
        assert external not in lowered
    for shown in ("66.7%", "+66.7 pp", "37.50", "Moves since the week before", "from \\ to"):
        assert shown in page


def test_orders_only_source_states_its_absent_sections():
    view = business_view({"orders": orders_table(returns=False)}, None, WEEK_START)
    assert view.funnel == Absent("no events table: the source records no behaviour")
    assert isinstance(view.lifecycle, Absent) and isinstance(view.rfm, Absent)
    assert view.tiers == Absent("no churn-risk tiers given")
    assert view.orders.returns is None
    # Without the return flag the amounts count as recorded: 30 + 50 + 20 + 60.
    assert figures(view.orders.net_sales) == pytest.approx((160.0, 65.0, 95.0))
    assert figures(view.orders.average_order_value) == pytest.approx((40.0, 32.5, 7.5))
    assert "as recorded" in view.definitions["average_order_value"]
    saved = json.loads(json.dumps(view.to_dict()))
    assert saved["funnel"] == {"absent": "no events table: the source records no behaviour"}
    assert saved["orders"]["returns"] == {
        "absent": "the source flags no returns (no is_return column)"
    }
    page = view.html()
    assert "Behaviour funnel: absent (no events table" in page
    assert "Returns</td><td>absent" in page


def test_an_empty_week_is_stated_empty_and_undefined_rates_stay_undefined():
    week = pd.Timestamp("2025-06-02", tz="UTC")  # nothing recorded in it or the week before
    view = business_view(
        {"orders": orders_table(), "events": events_table()}, segments_frame(), week
    )
    assert view.empty
    o = view.orders
    assert figures(o.buyers) == (0, 0, 0) and figures(o.orders) == (0, 0, 0)
    assert figures(o.repurchase_rate) == (None, None, None)
    assert figures(o.average_order_value) == (None, None, None)
    # A purchase in the 365 days before 06-09 and before 06-02: a, b, c, e both times.
    assert figures(o.active_customers) == (4, 4, 0)
    assert view.lifecycle == Absent("no segments snapshot as of 2025-06-02")
    assert all(figures(step.customers) == (0, 0, 0) for step in view.funnel.steps)
    assert all(figures(s.conversion) == (None, None, None) for s in view.funnel.steps[1:])
    json.dumps(view.to_dict())
    assert "Empty week" in view.html()


def test_the_week_before_without_a_snapshot_has_counts_and_no_moves():
    only_this = [row for row in SEGMENTS if row[1] == "2025-03-10"]
    view = business_view({"orders": orders_table()}, segments_frame(only_this), WEEK_START)
    assert figures(view.lifecycle.counts["new"]) == (2, None, None)
    assert view.lifecycle.transitions == Absent("no segments snapshot as of 2025-03-03")


def test_an_event_type_the_source_never_logs_leaves_its_step_out_escaped_in_html():
    rows = [(c, t, "<b>tap</b>" if kind == "view" else kind) for c, t, kind in EVENTS]
    view = business_view({"orders": orders_table(), "events": events_table(rows)}, None, WEEK_START)
    assert [step.name for step in view.funnel.steps] == ["visit", "add_to_cart", "order"]
    assert "view" in view.funnel.left_out
    # a and c carted this week: both; both bought: both.
    assert [step.customers.this_week for step in view.funnel.steps] == [4, 2, 2]
    page = view.html()
    assert "<b>tap</b>" not in page and "&lt;b&gt;tap&lt;/b&gt;" in page


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"week_start": pd.Timestamp("2025-03-11", tz="UTC")}, "is not a Monday 00:00 UTC"),
        (
            {"week_start": pd.Timestamp("2025-03-10 06:00", tz="UTC")},
            "the week holding it starts 2025-03-10",
        ),
        ({"week_start": pd.Timestamp("2025-03-10")}, "has no time zone"),
        ({"tables": {"events": events_table()}}, "no 'orders' table"),
        ({"tables": {"orders": orders_table().drop(columns="amount")}}, "lacks column(s) amount"),
        (
            {
                "tables": {
                    "orders": orders_table().assign(
                        order_ts=lambda f: f["order_ts"].dt.tz_localize(None)
                    )
                }
            },
            "column 'order_ts' must hold UTC timestamps",
        ),
        (
            {
                "tables": {
                    "orders": orders_table(),
                    "events": events_table().assign(customer_id=None),
                }
            },
            "table 'events': 11 row(s) have no customer_id",
        ),
        (
            {"segments": segments_frame().drop(columns="rfm_segment")},
            "segments lack column(s) rfm_segment",
        ),
        (
            {"segments": segments_frame([("a", "2025-03-10", "dormant", "basic")])},
            "unknown lifecycle_stage value(s) dormant",
        ),
        (
            {"segments": segments_frame([("a", "2025-03-10", None, "basic")])},
            "1 customer(s) have no lifecycle_stage",
        ),
        (
            {"segments": segments_frame([*SEGMENTS, ("a", "2025-03-10", "new", "basic")])},
            "appear twice, e.g. a",
        ),
        ({"tiers": {"a": "high"}}, "tiers must be a pandas Series"),
        ({"tiers": pd.Series({"a": "urgent"})}, "unknown tier(s) urgent"),
        ({"tiers": pd.Series({"a": None, "b": "low"})}, "1 customer(s) have no tier"),
        ({"tiers": pd.Series(["low", "high"], index=["a", "a"])}, "appear twice, e.g. a"),
    ],
)
def test_bad_input_is_refused_naming_what_is_wrong(change: dict, message: str):
    arguments = {
        "tables": {"orders": orders_table(), "events": events_table()},
        "segments": segments_frame(),
        "week_start": WEEK_START,
        "tiers": TIERS,
        **change,
    }
    with pytest.raises(CustlabError, match=re.escape(message)):
        business_view(**arguments)


@pytest.fixture(scope="module")
def world_week(small_world: World) -> tuple[dict, pd.Timestamp, BusinessView]:
    tables = small_world.tables()
    week = as_of_dates(tables["orders"])[-3]  # a whole week, with one more after it
    dates = [*segment_dates(week), week + pd.Timedelta(days=7)]
    snapshots = build_snapshots(tables, as_of=dates, families=["orders", "segments"])
    return snapshots, week, business_view(tables, snapshots["segments"], week)


def test_simulated_world_agrees_with_the_rules_it_shares(small_world: World, world_week):
    snapshots, week, view = world_week
    tables = small_world.tables()
    end = week + pd.Timedelta(days=7)
    # Active customers are churn's population at the snapshot after each week.
    orders = snapshots["orders"]
    for side, as_of in (("this_week", end), ("week_before", week)):
        rows = orders[orders["event_timestamp"] == as_of]
        assert getattr(view.orders.active_customers, side) == int(active(rows).sum())
    inside = tables["orders"][
        (tables["orders"]["order_ts"] >= week) & (tables["orders"]["order_ts"] < end)
    ]
    assert view.orders.buyers.this_week == inside["customer_id"].nunique()
    assert view.orders.orders.this_week == len(inside)  # the simulator files no returns
    assert view.orders.average_order_value.this_week == pytest.approx(inside["amount"].mean())
    # The segment counts are the snapshots' own; the moves add up to them.
    segments = snapshots["segments"]
    this = segments[segments["event_timestamp"] == week]
    lifecycle = view.lifecycle
    assert {k: c.this_week for k, c in lifecycle.counts.items() if c.this_week} == (
        this["lifecycle_stage"].value_counts().to_dict()
    )
    matrix = pd.DataFrame(lifecycle.transitions).T  # rows: from, columns: to
    for stage, compared in lifecycle.counts.items():
        assert matrix[stage].sum() == compared.this_week
        assert matrix.loc[stage].sum() == compared.week_before
    assert matrix.loc[NOT_KNOWN].sum() == len(this) - int(
        segments["event_timestamp"].eq(week - pd.Timedelta(days=7)).sum()
    )
    # The funnel narrows, and its first step is everyone with an event in the week.
    events = tables["events"]
    in_week = events[(events["event_ts"] >= week) & (events["event_ts"] < end)]
    steps = [step.customers.this_week for step in view.funnel.steps]
    assert steps[0] == in_week["customer_id"].nunique() > 0
    assert steps == sorted(steps, reverse=True)
    assert steps[-1] <= view.orders.buyers.this_week
    shares = [s.conversion.this_week for s in view.funnel.steps[1:]]
    assert all(0.0 <= share <= 1.0 for share in shares)
    assert not view.empty
    json.dumps(view.to_dict())
