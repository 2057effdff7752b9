"""The synthetic customer world the embedded default runs on.

Customers move week by week through latent lifecycle states (new, active, growing,
at risk, churned, with rare reactivation); how often they order and how much they spend
depends on that state and on persistent customer traits (a purchase rate, a spend level,
a frailty that scales churn transitions). The latent state of every customer in every
week is written beside the observable tables as ground truth, so a model can be scored
against what really happened inside the world.

Everything is vectorized over customers: one loop over weeks, no loop over people.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

logger = logging.getLogger(__name__)

STATES = ("new", "active", "growing", "at_risk", "churned")
NEW, ACTIVE, GROWING, AT_RISK, CHURNED = range(len(STATES))

# Weekly transition probabilities between latent states for a customer of frailty 1.
# Rows: from-state; the churn-ward entries are scaled by the customer's frailty.
_TRANSITIONS: dict[int, dict[int, float]] = {
    NEW: {ACTIVE: 0.20, AT_RISK: 0.03, CHURNED: 0.03},
    ACTIVE: {GROWING: 0.02, AT_RISK: 0.018},
    GROWING: {ACTIVE: 0.03, AT_RISK: 0.008},
    AT_RISK: {ACTIVE: 0.08, CHURNED: 0.11},
    CHURNED: {ACTIVE: 0.003},
}
_CHURNWARD = {AT_RISK, CHURNED}
# How a state scales the customer's base weekly order rate and basket size.
_ORDER_RATE = np.array([1.3, 1.0, 1.8, 0.35, 0.0])
_BASKET = np.array([0.9, 1.0, 1.25, 0.85, 1.0])

_CHANNELS = np.array(["organic", "paid_search", "social", "referral", "affiliate"])
_CHANNEL_SHARE = np.array([0.35, 0.25, 0.2, 0.1, 0.1])
_CHANNEL_FRAILTY = np.array([0.9, 1.1, 1.35, 0.7, 1.2])
_REGIONS = np.array(["north", "south", "east", "west"])
_REGION_SHARE = np.array([0.3, 0.25, 0.25, 0.2])
_CATEGORIES = np.array(["books", "electronics", "fashion", "home", "beauty", "sports"])
_ORDER_CHANNELS = np.array(["web", "app", "store"])


class WorldSpec(BaseModel):
    """Size, time span and seed of a simulated world."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    customers: int = Field(30_000, ge=10, le=5_000_000)
    weeks: int = Field(104, ge=30, le=520)
    start: datetime = Field(datetime(2024, 1, 1, tzinfo=UTC), description="A Monday, UTC.")
    seed: int = Field(7, ge=0)


@dataclass(frozen=True)
class World:
    """The observable tables and the ground truth behind them."""

    customers: pd.DataFrame
    orders: pd.DataFrame
    latent_states: pd.DataFrame  # customer_id, week_start, state: the ground truth

    def tables(self) -> dict[str, pd.DataFrame]:
        """The observable raw tables, by contract name."""
        return {"customers": self.customers, "orders": self.orders}


def _step_states(state: np.ndarray, frailty: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One week of latent-state transitions for every customer at once."""
    nxt = state.copy()
    u = rng.random(state.shape[0])
    for origin, targets in _TRANSITIONS.items():
        idx = np.flatnonzero(state == origin)
        if idx.size == 0:
            continue
        low = np.zeros(idx.size)
        for target, prob in targets.items():
            p = prob * frailty[idx] if target in _CHURNWARD else np.full(idx.size, prob)
            high = low + p
            hit = (u[idx] >= low) & (u[idx] < high)
            nxt[idx[hit]] = target
            low = high
    return nxt


def simulate_world(spec: WorldSpec) -> World:
    """Simulate customers and their orders over ``spec.weeks`` weeks.

    Customers sign up throughout the span (the base grows), start in state ``new`` and
    then follow the weekly transition rates above; orders are Poisson per week with a
    rate that depends on the state, and basket values are gamma distributed around a
    customer-specific spend level.

    Args:
        spec: Size, span and seed.

    Returns:
        The world: customers, orders and the latent state of each customer each week.
    """
    rng = np.random.default_rng(spec.seed)
    n, weeks = spec.customers, spec.weeks
    start = pd.Timestamp(spec.start).tz_convert("UTC")

    channel = rng.choice(len(_CHANNELS), size=n, p=_CHANNEL_SHARE)
    region = rng.choice(len(_REGIONS), size=n, p=_REGION_SHARE)
    frailty = rng.gamma(2.0, 0.5, size=n) * _CHANNEL_FRAILTY[channel]
    base_rate = rng.gamma(1.5, 0.16 / 1.5, size=n)
    spend_level = rng.gamma(3.0, 45.0 / 3.0, size=n)
    favourite = rng.choice(len(_CATEGORIES), size=n)
    signup_week = rng.integers(0, weeks, size=n)
    signup_offset = rng.random(n) * 7.0

    ids = np.char.add("C", np.char.zfill(np.arange(n).astype(str), 7))
    state = np.full(n, NEW, dtype=np.int8)
    states = np.full((n, weeks), -1, dtype=np.int8)
    order_cust: list[np.ndarray] = []
    order_week: list[np.ndarray] = []

    for week in range(weeks):
        joined = signup_week <= week
        moving = signup_week < week
        state = np.where(moving, _step_states(state, frailty, rng), state).astype(np.int8)
        states[joined, week] = state[joined]
        rate = np.where(joined, base_rate * _ORDER_RATE[state], 0.0)
        # The sign-up week carries a first purchase for most new customers.
        first = (signup_week == week) & (rng.random(n) < 0.8)
        count = rng.poisson(rate) + first
        buyers = np.flatnonzero(count)
        order_cust.append(np.repeat(buyers, count[buyers]))
        order_week.append(np.full(int(count[buyers].sum()), week, dtype=np.int32))
        if week % 26 == 25:
            logger.info("simulated week %d of %d", week + 1, weeks)

    cust = np.concatenate(order_cust)
    week_of = np.concatenate(order_week)
    day = rng.random(cust.size) * 7.0
    # A first order cannot precede sign-up within the sign-up week.
    same_week = week_of == signup_week[cust]
    day[same_week] = np.maximum(day[same_week], signup_offset[cust[same_week]])
    order_state = states[cust, week_of]
    basket = rng.gamma(4.0, spend_level[cust] * _BASKET[order_state] / 4.0)
    order_ts = start + pd.to_timedelta(week_of * 7.0 + day, unit="D")
    order_ts = order_ts.floor("s")
    category = np.where(
        rng.random(cust.size) < 0.6, favourite[cust], rng.integers(0, len(_CATEGORIES), cust.size)
    )
    orders = pd.DataFrame(
        {
            "order_id": np.char.add("O", np.arange(cust.size).astype(str)),
            "customer_id": ids[cust],
            "order_ts": order_ts,
            "amount": np.round(basket, 2),
            "quantity": 1 + rng.poisson(0.8, cust.size),
            "category": _CATEGORIES[category],
            "channel": _ORDER_CHANNELS[rng.choice(3, size=cust.size, p=[0.5, 0.35, 0.15])],
            "discount": np.round(np.where(rng.random(cust.size) < 0.2, basket * 0.1, 0.0), 2),
            "is_return": np.zeros(cust.size, dtype=bool),
        }
    ).sort_values("order_ts", kind="stable", ignore_index=True)

    signup_ts = start + pd.to_timedelta(signup_week * 7.0 + signup_offset, unit="D")
    customers = pd.DataFrame(
        {
            "customer_id": ids,
            "signup_ts": signup_ts.floor("s"),
            "acquisition_channel": _CHANNELS[channel],
            "region": _REGIONS[region],
        }
    )
    joined_rows, joined_weeks = np.nonzero(states >= 0)
    latent = pd.DataFrame(
        {
            "customer_id": ids[joined_rows],
            "week_start": start + pd.to_timedelta(joined_weeks * 7, unit="D"),
            "state": pd.Categorical.from_codes(states[joined_rows, joined_weeks], STATES),
        }
    )
    logger.info("simulated %d customers, %d orders", n, len(orders))
    return World(customers=customers, orders=orders, latent_states=latent)
