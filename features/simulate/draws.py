"""The random draws of the world: customers' traits at sign-up, observable records each week.

This module owns the per-state rates and the category shares behind everything a customer
does, the persistent traits (:class:`_Traits`, drawn once from the traits stream) and the
weekly draws of orders, sessions and events, tickets and campaign messages, which append
column chunks to a :class:`_Parts` per table. A :class:`_Week` carries one week's random
stream and who is present; the state itself comes from :mod:`features.simulate.dynamics`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from features.simulate.spec import _DAY_SECONDS, _TRAITS_STREAM, Effects, WorldSpec

# Per-state multipliers, indexed by state code.
_ORDER_RATE = np.array([1.3, 1.0, 1.8, 0.35, 0.0], dtype=np.float32)
_BASKET = np.array([0.9, 1.0, 1.25, 0.85, 1.0], dtype=np.float32)
_SESSION_RATE = np.array([0.9, 0.75, 1.0, 0.25, 0.01], dtype=np.float32)
_CART_SHARE = np.array([0.15, 0.15, 0.22, 0.08, 0.05], dtype=np.float32)
_COMPLAINT_RATE = np.array([0.004, 0.003, 0.003, 0.02, 0.001], dtype=np.float32)
_INQUIRY_RATE = np.array([0.012, 0.006, 0.008, 0.006, 0.001], dtype=np.float32)
_OPEN_RATE = np.array([0.45, 0.4, 0.5, 0.25, 0.1], dtype=np.float32)
_FIRST_ORDER_SHARE = 0.8
_EXTRA_EVENTS_PER_SESSION = 0.8
_EVENT_GAP_SECONDS = 90.0
_SEARCH_SHARE = 0.25
_LOGIN_SHARE = 0.35
# Campaigns leave between 00:00 and 02:00 on the Monday of their week.
_SEND_WINDOW_DAYS = 2.0 / 24.0
_COMPLAINT_CAP = 0.5

_CHANNELS = np.array(["organic", "paid_search", "social", "referral", "affiliate"])
_CHANNEL_SHARE = np.array([0.35, 0.25, 0.2, 0.1, 0.1])
# After a ``channel_mix`` scenario, sign-ups come mostly through social and affiliates.
_CHANNEL_SHARE_SHIFTED = np.array([0.15, 0.15, 0.35, 0.05, 0.3])
_CHANNEL_FRAILTY = np.array([0.9, 1.1, 1.35, 0.7, 1.2], dtype=np.float32)
_CHANNEL_SPEND = np.array([1.0, 1.1, 0.8, 1.15, 0.9], dtype=np.float32)
_CHANNEL_CONSENT = np.array([0.6, 0.5, 0.7, 0.65, 0.45])
_REGIONS = np.array(["north", "south", "east", "west"])
_REGION_SHARE = np.array([0.3, 0.25, 0.25, 0.2])
_REGION_FRAILTY = np.array([1.0, 1.15, 0.9, 1.0], dtype=np.float32)
_REGION_SPEND = np.array([1.0, 0.85, 1.1, 1.2], dtype=np.float32)
_CATEGORIES = np.array(["books", "electronics", "fashion", "home", "beauty", "sports"])
_ORDER_CHANNELS = np.array(["web", "app", "store"])
WEB, APP, STORE = range(len(_ORDER_CHANNELS))
_EVENT_TYPES = np.array(["view", "search", "add_to_cart", "login"])
VIEW, SEARCH, ADD_TO_CART, LOGIN = range(len(_EVENT_TYPES))
_CAMPAIGN_CHANNELS = np.array(["email", "sms", "push"])
_CAMPAIGN_CHANNEL_SHARE = np.array([0.6, 0.15, 0.25])
_SATISFACTION_CDF = {
    "complaint": np.cumsum([0.35, 0.3, 0.2, 0.1, 0.05]),
    "inquiry": np.cumsum([0.05, 0.1, 0.2, 0.35, 0.3]),
}


@dataclass(frozen=True)
class _Traits:
    """Persistent per-customer traits, indexed by customer code (sign-up order)."""

    signup_week: np.ndarray  # int32
    signup_day: np.ndarray  # float64, day within the sign-up week
    channel: np.ndarray  # int8, acquisition channel
    region: np.ndarray  # int8
    frailty: np.ndarray  # float32, scales churn-ward transitions
    base_rate: np.ndarray  # float32, weekly order rate when active
    spend_level: np.ndarray  # float32, mean basket when active
    engagement: np.ndarray  # float32, scales the weekly session rate
    complaint_propensity: np.ndarray  # float32, scales the weekly complaint rate
    prefers_app: np.ndarray  # bool
    consent: np.ndarray  # bool, marketing consent
    favourite: np.ndarray  # int8, favourite category
    birth_year: np.ndarray  # float64 with NaN for unknown


def _pick(u: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """Category codes from uniforms by inverse CDF (int8)."""
    cdf = np.cumsum(shares)
    return np.minimum(np.searchsorted(cdf / cdf[-1], u, side="right"), len(shares) - 1).astype(
        np.int8
    )


def _draw_traits(spec: WorldSpec) -> _Traits:
    """Draw every customer's sign-up time and persistent traits, in sign-up order."""
    rng = np.random.default_rng([spec.seed, _TRAITS_STREAM])
    n = spec.customers
    signup = np.sort(rng.random(n) * spec.weeks * 7.0)
    signup_week = (signup // 7.0).astype(np.int32)
    signup_week = np.minimum(signup_week, spec.weeks - 1)
    signup_day = signup - signup_week * 7.0

    # Every trait takes a fixed-size draw, so a channel-mix shift changes only the
    # channel-driven traits of the customers who sign up after it.
    shifted = np.zeros(n, dtype=bool)
    for week in spec.scenario_weeks("channel_mix"):
        shifted |= signup_week >= week
    u_channel = rng.random(n)
    channel = np.where(
        shifted, _pick(u_channel, _CHANNEL_SHARE_SHIFTED), _pick(u_channel, _CHANNEL_SHARE)
    ).astype(np.int8)
    region = _pick(rng.random(n), _REGION_SHARE)
    frailty = rng.gamma(2.0, 0.5, size=n).astype(np.float32)
    frailty *= _CHANNEL_FRAILTY[channel] * _REGION_FRAILTY[region]
    base_rate = rng.gamma(1.5, 0.16 / 1.5, size=n).astype(np.float32)
    spend_level = rng.gamma(3.0, 45.0 / 3.0, size=n).astype(np.float32)
    spend_level *= _CHANNEL_SPEND[channel] * _REGION_SPEND[region]
    engagement = rng.gamma(2.0, 0.5, size=n).astype(np.float32)
    complaint_propensity = rng.gamma(1.0, 1.0, size=n).astype(np.float32)
    prefers_app = rng.random(n) < 0.5
    consent = rng.random(n) < _CHANNEL_CONSENT[channel]
    favourite = rng.integers(0, len(_CATEGORIES), size=n, dtype=np.int8)
    birth_year = np.round(np.clip(rng.normal(1984.0, 13.0, size=n), 1935.0, 2007.0))
    birth_year[rng.random(n) < 0.15] = np.nan
    return _Traits(
        signup_week=signup_week,
        signup_day=signup_day,
        channel=channel,
        region=region,
        frailty=frailty,
        base_rate=base_rate,
        spend_level=spend_level,
        engagement=engagement,
        complaint_propensity=complaint_propensity,
        prefers_app=prefers_app,
        consent=consent,
        favourite=favourite,
        birth_year=birth_year,
    )


class _Parts:
    """Per-week column chunks of one table, concatenated once at the end."""

    def __init__(self) -> None:
        self.chunks: dict[str, list[np.ndarray]] = {}

    def add(self, **columns: np.ndarray) -> None:
        for name, values in columns.items():
            self.chunks.setdefault(name, []).append(values)

    def pop(self, name: str, dtype: type | np.dtype) -> np.ndarray:
        chunks = self.chunks.pop(name, [])
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=dtype)


def _day_after(floor: np.ndarray, u: np.ndarray) -> np.ndarray:
    """A uniform day within the week, after ``floor`` (days since the week start)."""
    return floor + u * (7.0 - floor)


@dataclass(frozen=True)
class _Week:
    """One simulated week: its index, its random stream and the customers present."""

    index: int
    rng: np.random.Generator
    moved: int  # customers present last week too; those after them signed up this week
    state: np.ndarray  # latent state of the customers present
    treated: np.ndarray  # bool, reached by this week's campaign
    signup_floor: np.ndarray  # day of the week from which a customer can act
    order_floor: np.ndarray  # the same for orders, which also follow a campaign

    def seconds(self, day: np.ndarray) -> np.ndarray:
        """Seconds since the world's start of ``day`` (days into this week)."""
        return ((self.index * 7.0 + day) * _DAY_SECONDS).astype(np.uint32)


def _open_week(
    index: int,
    rng: np.random.Generator,
    state: np.ndarray,
    moved: int,
    traits: _Traits,
    spec: WorldSpec,
) -> _Week:
    """Send the week's campaign wave, if one is due, and set when activity may start.

    The wave is randomized among consenting customers present when it leaves, which is
    what makes its uplift identifiable from the observable tables.
    """
    present = state.size
    treated = np.zeros(present, dtype=bool)
    signup_floor = np.zeros(present)
    signup_floor[moved:] = traits.signup_day[moved:present]
    order_floor = signup_floor.copy()
    if spec.is_campaign_week(index) and moved:
        reach = rng.random(moved) < spec.effects.campaign_share
        treated[:moved] = traits.consent[:moved] & reach
        sent_day = rng.random(moved) * _SEND_WINDOW_DAYS
        order_floor[:moved] = np.where(treated[:moved], sent_day, 0.0)
    return _Week(index, rng, moved, state, treated, signup_floor, order_floor)


def _draw_orders(
    week: _Week, traits: _Traits, effects: Effects, basket_shock: float, parts: _Parts
) -> np.ndarray:
    """Draw the week's orders into ``parts``; returns the order count per customer."""
    rng, s = week.rng, week.state
    rate = traits.base_rate[: s.size] * _ORDER_RATE[s]
    rate = np.where(week.treated, rate * (1.0 + effects.campaign_order_uplift), rate)
    count = rng.poisson(rate)
    count[week.moved :] += rng.random(s.size - week.moved) < _FIRST_ORDER_SHARE
    buyers = np.flatnonzero(count)
    cust = np.repeat(buyers, count[buyers]).astype(np.int32)
    day = _day_after(week.order_floor[cust], rng.random(cust.size))
    basket = rng.gamma(4.0, traits.spend_level[cust] * _BASKET[s[cust]] * basket_shock / 4.0)
    app_share = np.where(traits.prefers_app[cust], 0.55, 0.2)
    u_channel = rng.random(cust.size)
    channel = np.where(
        u_channel < 0.15, STORE, np.where(u_channel < 0.15 + 0.85 * app_share, APP, WEB)
    )
    category = np.where(
        rng.random(cust.size) < 0.6,
        traits.favourite[cust],
        rng.integers(0, len(_CATEGORIES), cust.size),
    )
    discounted = rng.random(cust.size) < np.where(week.treated[cust], 0.6, 0.2)
    quantity = 1 + rng.poisson(0.8, cust.size)
    seconds = week.seconds(day)
    order = np.argsort(seconds, kind="stable")
    parts.add(
        customer=cust[order],
        seconds=seconds[order],
        amount=np.round(basket, 2)[order],
        quantity=quantity[order],
        category=category.astype(np.int8)[order],
        channel=channel.astype(np.int8)[order],
        discount=np.round(np.where(discounted, basket * 0.1, 0.0), 2)[order],
    )
    return count


def _record_campaign(week: _Week, order_count: np.ndarray, parts: _Parts) -> None:
    """The messages of the week's wave; a conversion is an order before the next Monday."""
    if not week.treated.any():
        return
    rng = week.rng
    reached = np.flatnonzero(week.treated).astype(np.int32)
    converted = order_count[reached] > 0
    opened = rng.random(reached.size) < _OPEN_RATE[week.state[reached]]
    parts.add(
        customer=reached,
        week=np.full(reached.size, week.index, dtype=np.int32),
        seconds=week.seconds(week.order_floor[reached]),
        channel=_pick(rng.random(reached.size), _CAMPAIGN_CHANNEL_SHARE),
        opened=opened,
        clicked=opened & (rng.random(reached.size) < np.where(converted, 0.6, 0.08)),
        converted=converted,
    )


def _draw_events(
    week: _Week,
    traits: _Traits,
    outage_from: int | None,
    outage_loss: np.ndarray,
    first_session: int,
    parts: _Parts,
) -> int:
    """Draw the week's sessions (one or more events, seconds to minutes apart) into
    ``parts``; returns the number of sessions, recorded or lost."""
    rng, s = week.rng, week.state
    n_sessions = rng.poisson(traits.engagement[: s.size] * _SESSION_RATE[s])
    visitors = np.flatnonzero(n_sessions)
    session_cust = np.repeat(visitors, n_sessions[visitors]).astype(np.int32)
    session_day = _day_after(week.signup_floor[session_cust], rng.random(session_cust.size))
    session_app = rng.random(session_cust.size) < np.where(
        traits.prefers_app[session_cust], 0.8, 0.25
    )
    per_session = 1 + rng.poisson(_EXTRA_EVENTS_PER_SESSION, session_cust.size)
    session = np.repeat(np.arange(session_cust.size), per_session)
    first = np.zeros(session.size, dtype=bool)
    first[np.cumsum(per_session) - per_session] = True
    gaps = rng.exponential(_EVENT_GAP_SECONDS, session.size)
    gaps[first] = 0.0
    offset = np.cumsum(gaps)
    offset -= offset[first][session]
    seconds = ((week.index * 7.0 + session_day[session]) * _DAY_SECONDS + offset).astype(np.int64)
    cust = session_cust[session]
    cart = _CART_SHARE[s[cust]]
    u_type = rng.random(session.size, dtype=np.float32)
    event_type = np.where(
        first,
        np.where(u_type < _LOGIN_SHARE, LOGIN, VIEW),
        np.where(u_type < cart, ADD_TO_CART, np.where(u_type < cart + _SEARCH_SHARE, SEARCH, VIEW)),
    ).astype(np.int8)
    channel = np.where(session_app[session], APP, WEB).astype(np.int8)
    # The loss draw is taken whether or not an outage runs, so that an outage removes
    # events and changes nothing else.
    u_loss = rng.random(session.size, dtype=np.float32)
    kept = np.ones(session.size, dtype=bool)
    if outage_from is not None:
        kept = ~((seconds >= outage_from) & (u_loss < outage_loss[channel]))
    order = np.argsort(seconds[kept], kind="stable")
    parts.add(
        customer=cust[kept][order],
        seconds=seconds[kept][order].astype(np.uint32),
        type=event_type[kept][order],
        channel=channel[kept][order],
        session=(first_session + session[kept])[order],
    )
    return int(session_cust.size)


def _draw_tickets(week: _Week, traits: _Traits, parts: _Parts) -> np.ndarray:
    """Draw the week's tickets into ``parts``; returns who complained."""
    rng, s = week.rng, week.state
    complaint_p = np.minimum(
        _COMPLAINT_RATE[s] * traits.complaint_propensity[: s.size], _COMPLAINT_CAP
    )
    u_ticket = rng.random(s.size, dtype=np.float32)
    complaint = u_ticket < complaint_p
    inquiry = ~complaint & (u_ticket < complaint_p + _INQUIRY_RATE[s])
    filed = np.flatnonzero(complaint | inquiry).astype(np.int32)
    is_complaint = complaint[filed]
    day = _day_after(week.signup_floor[filed], rng.random(filed.size))
    resolved = rng.random(filed.size) < np.where(is_complaint, 0.7, 0.93)
    u_score = rng.random(filed.size)
    score = 1.0 + np.where(
        is_complaint,
        np.searchsorted(_SATISFACTION_CDF["complaint"], u_score, side="right"),
        np.searchsorted(_SATISFACTION_CDF["inquiry"], u_score, side="right"),
    )
    answered = rng.random(filed.size) < 0.45
    seconds = week.seconds(day)
    order = np.argsort(seconds, kind="stable")
    parts.add(
        customer=filed[order],
        week=np.full(filed.size, week.index, dtype=np.int32),
        seconds=seconds[order],
        complaint=is_complaint[order],
        resolved=resolved[order],
        satisfaction=np.where(answered, np.minimum(score, 5.0), np.nan)[order],
    )
    return complaint
