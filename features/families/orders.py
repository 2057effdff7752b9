"""Order behaviour: recency, frequency and spend over several windows, the rhythm of
orders, discounts, returns, and breadth across categories and channels.

Returns (``is_return``) count as negative spend and as returns, never as orders. A
feature whose optional column the source lacks (``discount``, ``is_return``,
``category``, ``channel``) is empty, not zero: unknown is not "never".
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.families.base import (
    Feature,
    FeatureFamily,
    Records,
    SnapshotGrid,
    Tables,
    WeekBins,
    ratio,
    trend,
)

WINDOWS_WEEKS: tuple[int, ...] = (4, 13, 26, 52)

FEATURES = (
    Feature("recency_days", "Days since the last order before the as-of date; empty if none."),
    Feature("days_since_first_order", "Days since the first order; empty if none yet."),
    *(
        Feature(f"orders_{w}w", f"Orders in the {w} weeks before the as-of date.")
        for w in WINDOWS_WEEKS
    ),
    Feature("orders_total", "Orders before the as-of date."),
    *(
        Feature(
            f"spend_{w}w", f"Net spend (returns deducted) in the {w} weeks before the as-of date."
        )
        for w in WINDOWS_WEEKS
    ),
    Feature("spend_total", "Net spend before the as-of date."),
    Feature("avg_order_value", "Net spend per order before the as-of date; empty without orders."),
    Feature(
        "order_trend_13w",
        "Orders in the last 13 weeks minus orders in the 13 weeks before those.",
    ),
    Feature(
        "spend_trend_13w",
        "Spend in the last 13 weeks against the 13 before: (recent - earlier) / "
        "(|recent| + |earlier|), from -1 to +1; empty when both are zero.",
    ),
    Feature("mean_days_between_orders", "Mean gap between orders; empty with fewer than two."),
    Feature(
        "std_days_between_orders",
        "Standard deviation of the gaps between orders; empty with fewer than three orders.",
    ),
    Feature(
        "discount_share_52w",
        "Share of the orders in the last 52 weeks that carried a discount.",
    ),
    Feature("returns_52w", "Returns in the last 52 weeks."),
    Feature("return_rate_52w", "Returns per order in the last 52 weeks."),
    Feature("categories_total", "Distinct product categories ever bought."),
    Feature(
        "main_channel_share_52w",
        "Share of the last 52 weeks' orders placed through the customer's most used channel.",
    ),
)


def _gaps(customer: np.ndarray, day: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Days since the same customer's previous order, for every order that has one.

    Returns:
        The positions (into the inputs) of orders with a predecessor, and their gaps.
    """
    order = np.lexsort((day, customer))
    same = customer[order][1:] == customer[order][:-1]
    gap = np.diff(day[order])[same]
    return order[1:][same], gap


def compute(grid: SnapshotGrid, tables: Tables) -> dict[str, np.ndarray]:
    orders = tables["orders"]
    records = grid.records(orders, "order_ts")
    bins = grid.bins(records)
    rows = records.rows(orders)
    is_return = (
        rows["is_return"].to_numpy(dtype=bool)
        if "is_return" in rows
        else np.zeros(records.size, dtype=bool)
    )
    bought = (~is_return).astype(np.float64)
    net = rows["amount"].to_numpy(dtype=np.float64) * np.where(is_return, -1.0, 1.0)
    empty = np.full(grid.rows, np.nan)

    counts = bins.windows([(w, 0) for w in (*WINDOWS_WEEKS, None)] + [(26, 13)], bought)
    *order_windows, orders_total, orders_prior_13w = counts
    spends = bins.windows([(w, 0) for w in (*WINDOWS_WEEKS, None)] + [(26, 13)], net)
    *spend_windows, spend_total, spend_prior_13w = spends
    out: dict[str, np.ndarray] = {
        "recency_days": bins.days_since_last(~is_return),
    }
    # The first purchase: the smallest day per customer, known at t if before t.
    first = np.full(grid.customers, np.inf)
    np.minimum.at(first, records.customer[~is_return], records.day[~is_return])
    first_day = first[grid.row_customer]
    out["days_since_first_order"] = np.where(
        first_day < grid.row_day, grid.row_day - first_day, np.nan
    )
    for w, value in zip(WINDOWS_WEEKS, order_windows, strict=True):
        out[f"orders_{w}w"] = value
    out["orders_total"] = orders_total
    for w, value in zip(WINDOWS_WEEKS, spend_windows, strict=True):
        out[f"spend_{w}w"] = value
    out["spend_total"] = spend_total
    out["avg_order_value"] = ratio(spend_total, orders_total)
    out["order_trend_13w"] = out["orders_13w"] - orders_prior_13w
    out["spend_trend_13w"] = trend(out["spend_13w"], spend_prior_13w)

    purchase = np.flatnonzero(~is_return)
    later, gap = _gaps(records.customer[purchase], records.day[purchase])
    gap_weights = np.zeros(records.size)
    gap_squares = np.zeros(records.size)
    has_gap = np.zeros(records.size)
    gap_weights[purchase[later]] = gap
    gap_squares[purchase[later]] = gap * gap
    has_gap[purchase[later]] = 1.0
    n_gaps, gap_sum, gap_square_sum = (
        bins.window(None, weights) for weights in (has_gap, gap_weights, gap_squares)
    )
    mean_gap = ratio(gap_sum, n_gaps)
    out["mean_days_between_orders"] = mean_gap
    with np.errstate(invalid="ignore"):
        variance = np.maximum(ratio(gap_square_sum, n_gaps) - mean_gap**2, 0.0)
        out["std_days_between_orders"] = np.where(n_gaps >= 2, np.sqrt(variance), np.nan)

    orders_52w = out["orders_52w"]
    if "discount" in rows:
        discount = rows["discount"].to_numpy(dtype=np.float64, na_value=np.nan)
        discounted = ((discount > 0) & ~is_return).astype(np.float64)
        out["discount_share_52w"] = ratio(bins.window(52, discounted), orders_52w)
    else:
        out["discount_share_52w"] = empty
    if "is_return" in rows:
        returns = bins.window(52, is_return.astype(np.float64))
        out["returns_52w"] = returns
        out["return_rate_52w"] = ratio(returns, orders_52w)
    else:
        out["returns_52w"] = out["return_rate_52w"] = empty
    out["categories_total"] = (
        _distinct_categories(bins, rows["category"], ~is_return) if "category" in rows else empty
    )
    out["main_channel_share_52w"] = (
        _main_channel_share(bins, rows["channel"], ~is_return, orders_52w)
        if "channel" in rows
        else empty
    )
    return out


def _distinct_categories(bins: WeekBins, category: pd.Series, bought: np.ndarray) -> np.ndarray:
    """Distinct categories bought before t: each (customer, category) pair counts once,
    in the week of its first purchase."""
    known = np.flatnonzero(category.notna().to_numpy() & bought)
    records = bins.records
    codes = pd.factorize(category.iloc[known])[0].astype(np.int64)
    pair = records.customer[known] * (codes.max(initial=0) + 1) + codes
    first = known[pd.Series(records.day[known]).groupby(pair).idxmin().to_numpy()]
    firsts = Records(records.customer[first], records.day[first], records.week[first])
    return bins.grid.bins(firsts).window(None)


def _main_channel_share(
    bins: WeekBins, channel: pd.Series, bought: np.ndarray, orders_52w: np.ndarray
) -> np.ndarray:
    """Share of the last 52 weeks' orders through the customer's most used channel.

    Every channel is counted on its own (the most used one may be any of them); orders
    of unknown channel count in the denominator only; empty when none is known.
    """
    known = channel.notna().to_numpy() & bought
    codes, channels = pd.factorize(channel[known])
    most = np.zeros(bins.grid.rows)
    for code in range(len(channels)):
        through = np.zeros(bought.size)
        through[np.flatnonzero(known)[codes == code]] = 1.0
        most = np.maximum(most, bins.window(52, through))
    return np.where(most > 0, ratio(most, orders_52w), np.nan)


FAMILY = FeatureFamily(
    name="orders",
    source="orders",
    features=FEATURES,
    compute=compute,
    description="Recency, frequency, spend, rhythm, discounts, returns, breadth of orders.",
)
