"""Outcome and data-quality evidence on small hand-made tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monitoring.outcomes import weekly_outcomes
from monitoring.quality import FeedVolume, feed_volumes, missing_rises, missing_shares
from monitoring.weeks import IsoWeek

REFERENCE = [IsoWeek.parse("2025-W01"), IsoWeek.parse("2025-W02")]
WEEK = IsoWeek.parse("2025-W10")


def orders(rows: list[tuple[str, IsoWeek, float]], returns: int = 0) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "customer_id": [r[0] for r in rows],
            "order_ts": [r[1].start + pd.Timedelta(days=2) for r in rows],
            "amount": [r[2] for r in rows],
            "is_return": [False] * len(rows),
        }
    )
    frame.loc[frame.index[:returns], "is_return"] = True
    return frame


def averages(ids: list[str], value: float = 20.0) -> pd.Series:
    return pd.Series(value, index=pd.Index(ids, name="customer_id"))


def test_order_rate_and_basket_against_own_average_by_hand() -> None:
    ids = [f"c{i}" for i in range(4)]
    own = {w: averages(ids) for w in [*REFERENCE, WEEK]}
    own[WEEK] = pd.Series([10.0, 40.0, 10.0, np.nan], index=pd.Index(ids, name="customer_id"))
    rows = [("c0", REFERENCE[0], 10.0), ("c1", REFERENCE[1], 40.0)]
    rows += [("c0", WEEK, 5.0), ("c1", WEEK, 20.0), ("c2", WEEK, 10.0)]
    # An order by someone outside the scored customers counts for nothing; nor does a
    # buyer without an average of their own in the basket figure.
    rows += [("stranger", WEEK, 1e6), ("c3", WEEK, 99.0)]
    rate, basket = weekly_outcomes(orders(rows), WEEK, REFERENCE, own)
    assert rate.reference == pytest.approx(2 / 8) and rate.current == pytest.approx(4 / 4)
    # Reference ratios 10/20 and 40/20: geometric mean 1; this week 5/10, 20/40, 10/10.
    assert basket.reference == pytest.approx(1.0)
    assert basket.current == pytest.approx((0.5 * 0.5 * 1.0) ** (1 / 3))


def test_returns_are_not_orders() -> None:
    own = {w: averages(["c0", "c1"]) for w in [*REFERENCE, WEEK]}
    rows = [("c0", REFERENCE[0], 10.0), ("c1", REFERENCE[0], 10.0), ("c0", WEEK, 10.0)]
    rate = weekly_outcomes(orders(rows, returns=1), WEEK, REFERENCE, own)[0]
    assert rate.reference == pytest.approx(1 / 4)


def test_a_scaled_basket_is_significant_and_noise_is_not() -> None:
    # A week's orders at the scale of a few thousand customers: spend levels differ
    # tenfold between customers, baskets vary around each one's own level.
    rng = np.random.default_rng(3)
    ids = [f"c{i}" for i in range(3_000)]
    level = pd.Series(rng.lognormal(3.5, 1.0, len(ids)), index=pd.Index(ids, name="customer_id"))
    own = {w: level for w in [*REFERENCE, WEEK]}

    def week_orders(week: IsoWeek, scale: float) -> list[tuple[str, IsoWeek, float]]:
        buyers = rng.choice(len(ids), 350, replace=False)
        amounts = level.iloc[buyers].to_numpy() * rng.gamma(4.0, 0.25, len(buyers)) * scale
        return [(ids[b], week, a) for b, a in zip(buyers, amounts, strict=True)]

    base = week_orders(REFERENCE[0], 1.0) + week_orders(REFERENCE[1], 1.0)
    _, shocked = weekly_outcomes(orders(base + week_orders(WEEK, 0.85)), WEEK, REFERENCE, own)
    _, steady = weekly_outcomes(orders(base + week_orders(WEEK, 1.0)), WEEK, REFERENCE, own)
    assert shocked.shifted(0.1, 0.001)
    assert not steady.shifted(0.1, 0.001)


def test_no_order_on_a_side_gives_no_outcome() -> None:
    own = {w: averages(["c0"]) for w in [*REFERENCE, WEEK]}
    assert weekly_outcomes(orders([("c0", WEEK, 5.0)]), WEEK, REFERENCE, own) == ()


def test_missing_shares_count_nan_none_and_infinity() -> None:
    frame = pd.DataFrame(
        {"x": [1.0, np.nan, np.inf, 2.0], "c": pd.Series(["a", None, "b", "b"], dtype="category")}
    )
    assert missing_shares(frame, ["x", "c"]) == {"x": 0.5, "c": 0.25}
    reference = pd.DataFrame({"x": [1.0] * 4, "c": frame["c"]})
    rises = missing_rises(reference, frame, ["x", "c"], rise=0.1)
    assert [r.feature for r in rises] == ["x"]


def test_feed_volume_per_customer_and_feeds_too_small_to_judge() -> None:
    def stamps(counts: dict[IsoWeek, int]) -> pd.Series:
        return pd.Series(
            [w.start + pd.Timedelta(hours=1) for w, n in counts.items() for _ in range(n)]
        )

    tables = {
        "events": pd.DataFrame(
            {"event_ts": stamps({REFERENCE[0]: 400, REFERENCE[1]: 600, WEEK: 100})}
        ),
        "tickets": pd.DataFrame({"ticket_ts": stamps({REFERENCE[0]: 3, WEEK: 0})}),
    }
    customers = {REFERENCE[0]: 100, REFERENCE[1]: 100, WEEK: 50}
    (events,) = feed_volumes(tables, WEEK, REFERENCE, customers)
    assert events == FeedVolume("events", 5.0, 2.0)
    assert events.change == pytest.approx(-0.6)


def test_the_newest_customers_mix_is_compared_and_older_customers_are_left_out() -> None:
    from monitoring.mix import mix_shifts

    def rows(channels: list[str], tenure: float) -> pd.DataFrame:
        return pd.DataFrame({"tenure_days": tenure, "acquisition_channel": channels})

    steady = ["search"] * 60 + ["social"] * 40
    reference = pd.concat([rows(steady * 2, 10.0), rows(["search"] * 500, 400.0)])
    # Old customers, whatever their channel, are not the newest customers.
    old = rows(["social"] * 500, 400.0)
    (same,) = mix_shifts(
        reference, pd.concat([rows(steady, 7.0), old]), ["acquisition_channel"], 1e-3
    )
    assert not same.shifted and same.current == {"search": 0.6, "social": 0.4}
    moved = rows(["search"] * 20 + ["social"] * 80, 7.0)
    (shift,) = mix_shifts(reference, moved, ["acquisition_channel", "absent"], 1e-3)
    assert shift.shifted and shift.current["social"] == pytest.approx(0.8)
    assert "social 40% -> 80%" in shift.describe()
    # A customer seen at several dates of a window counts once.
    twice = pd.concat([rows(steady, 7.0)] * 3).assign(customer_id=[f"c{i}" for i in range(100)] * 3)
    (once,) = mix_shifts(twice, moved, ["acquisition_channel"], 1e-3)
    assert once.p_value > shift.p_value
    # Too few of the newest customers on a side: no verdict.
    assert mix_shifts(reference, rows(["social"] * 10, 7.0), ["acquisition_channel"], 1e-3) == ()
