"""The synthetic customer world the embedded default runs on.

Customers move week by week through latent lifecycle states (new, active, growing,
at risk, churned, with rare reactivation). Everything observable depends on that state
and on persistent customer traits (a purchase rate, a spend level, a frailty that scales
churn transitions, an engagement level, a propensity to complain):

- ``orders`` are Poisson per week with a state-dependent rate; baskets are gamma
  distributed around the customer's spend level;
- ``events`` come in sessions whose weekly rate falls in ``at_risk``, before the customer
  churns, and is almost zero once churned;
- ``tickets``: a complaint multiplies the customer's churn-ward transition probabilities
  at the following weekly steps (:attr:`Effects.complaint_hazard`, decaying);
- ``campaigns`` go to a random share of consenting customers every few weeks and have a
  true uplift on the order rate that week and on reactivation at the next step.

Beside the observable tables the world keeps its ground truth: the latent state and the
one-step churn hazard of every customer in every week, the customer traits, and enough
of the dynamics for :func:`oracle` to compute the true churn probability, purchase
probability and expected spend at any as-of date, so a model can be scored against what
is knowable in principle. Drift :class:`Scenario` s (a price shock, a channel-mix shift,
a tracking outage) change the world from a given date and nothing before it.

Everything is vectorized over customers: one loop over weeks, no loop over people.
Customers are numbered in sign-up order, so the customers present in a week are a prefix
of every per-customer array. Each week draws from its own random stream, which is what
keeps the weeks before a scenario's date identical to the world without it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal, get_args

import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, field_validator

from features.contract import ENTITY_KEY, EVENT_TIMESTAMP
from features.errors import CustlabError

logger = logging.getLogger(__name__)

STATES = ("new", "active", "growing", "at_risk", "churned")
NEW, ACTIVE, GROWING, AT_RISK, CHURNED = range(len(STATES))

# Weekly transition probabilities between latent states for a customer of frailty 1.
# Rows: from-state; the churn-ward entries are scaled by the customer's frailty, by a
# recent complaint and by a price shock; the reactivations by a campaign last week. Every
# road to churned runs through at_risk, where engagement has already fallen; new
# customers are the most fragile (many buy once and drift away).
_TRANSITIONS: dict[int, dict[int, float]] = {
    NEW: {ACTIVE: 0.15, AT_RISK: 0.10},
    ACTIVE: {GROWING: 0.02, AT_RISK: 0.018},
    GROWING: {ACTIVE: 0.03, AT_RISK: 0.008},
    AT_RISK: {ACTIVE: 0.08, CHURNED: 0.11},
    CHURNED: {ACTIVE: 0.003},
}
_CHURNWARD = frozenset({AT_RISK, CHURNED})
_REACTIVATIONS = frozenset({(AT_RISK, ACTIVE), (CHURNED, ACTIVE)})
# Scaled probabilities are capped so a very frail customer still has a valid distribution.
_MAX_OUTFLOW = 0.95

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
_TICKET_KINDS = np.array(["inquiry", "complaint"])
_CAMPAIGN_CHANNELS = np.array(["email", "sms", "push"])
_CAMPAIGN_CHANNEL_SHARE = np.array([0.6, 0.15, 0.25])
_OFFERS = np.array(["percent_10", "free_shipping", "bundle"])
_SATISFACTION_CDF = {
    "complaint": np.cumsum([0.35, 0.3, 0.2, 0.1, 0.05]),
    "inquiry": np.cumsum([0.05, 0.1, 0.2, 0.35, 0.3]),
}

# Random streams: one for the customers' traits, one per simulated week.
_TRAITS_STREAM, _WEEK_STREAM = 0, 1
_DAY_SECONDS = 86_400
_ID_BLOCK = 1 << 22
_WEEK = pd.Timedelta(days=7)

ScenarioName = Literal["price_shock", "channel_mix", "tracking_outage"]
SCENARIO_NAMES: tuple[str, ...] = get_args(ScenarioName)


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Scenario(BaseModel):
    """A drift injected into the world from a date on.

    ``price_shock`` raises every churn-ward transition probability and shrinks baskets;
    ``channel_mix`` moves new sign-ups towards social and affiliate channels (covariate
    drift: the customers change, the rules do not); ``tracking_outage`` loses most events
    (all app events, a share of web ones) without changing behaviour, a data-quality
    problem. A scenario acts from the first simulated week starting on or after
    ``start``; weekly dynamics have no finer clock.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: ScenarioName
    start: datetime = Field(description="First day of the drift; naive means UTC.")

    @field_validator("start")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return _as_utc(value)


def parse_scenario(text: str) -> Scenario:
    """Read a scenario written as ``<name>@<date>``, e.g. ``price_shock@2025-06-02``.

    Args:
        text: The scenario name, ``@`` and an ISO date (or date-time; naive means UTC).

    Returns:
        The scenario.

    Raises:
        CustlabError: The text has no ``@``, the name is unknown or the date is invalid.
    """
    name, sep, when = text.strip().partition("@")
    if not sep or not name or not when:
        raise CustlabError(
            f"scenario {text!r} is not <name>@<YYYY-MM-DD>, e.g. price_shock@2025-06-02"
        )
    if name not in SCENARIO_NAMES:
        raise CustlabError(
            f"unknown scenario {name!r}; known scenarios: {', '.join(SCENARIO_NAMES)}"
        )
    try:
        start = datetime.fromisoformat(when)
    except ValueError:
        raise CustlabError(
            f"scenario {text!r}: {when!r} is not a date; write it as YYYY-MM-DD"
        ) from None
    return Scenario(name=name, start=_as_utc(start))


class Effects(BaseModel):
    """The causal effect sizes the world is built with; :func:`oracle` reads the same."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    complaint_hazard: float = Field(
        2.0,
        ge=1.0,
        description="Multiplier on churn-ward transition probabilities at the weekly step "
        "right after a complaint; the extra part decays by complaint_decay each week.",
    )
    complaint_decay: float = Field(0.7, ge=0.0, lt=1.0)
    campaign_every_weeks: int = Field(4, ge=1, description="Weeks between campaign waves.")
    campaign_share: float = Field(
        0.3, gt=0.0, le=1.0, description="Share of consenting customers each wave reaches."
    )
    campaign_order_uplift: float = Field(
        0.5,
        ge=0.0,
        description="Relative rise of a treated customer's order rate in the campaign week.",
    )
    campaign_reactivation: float = Field(
        3.0,
        ge=1.0,
        description="Multiplier on at_risk/churned -> active at the step after a campaign.",
    )
    price_shock_hazard: float = Field(1.6, ge=1.0)
    price_shock_basket: float = Field(0.85, gt=0.0, le=1.0)
    outage_loss_app: float = Field(1.0, ge=0.0, le=1.0, description="App events lost.")
    outage_loss_web: float = Field(0.2, ge=0.0, le=1.0, description="Web events lost.")


class WorldSpec(BaseModel):
    """Size, time span, seed, effect sizes and drift scenarios of a simulated world."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    customers: int = Field(30_000, ge=10, le=5_000_000)
    weeks: int = Field(104, ge=30, le=520)
    start: datetime = Field(datetime(2024, 1, 1, tzinfo=UTC), description="A Monday, UTC.")
    seed: int = Field(7, ge=0)
    effects: Effects = Field(default_factory=Effects)
    scenarios: tuple[Scenario, ...] = ()

    @field_validator("start")
    @classmethod
    def _monday(cls, value: datetime) -> datetime:
        # Weeks start on Mondays so that they line up with the snapshots' as-of dates.
        value = _as_utc(value)
        if value.weekday() != 0 or value != value.replace(
            hour=0, minute=0, second=0, microsecond=0
        ):
            raise ValueError(f"start must be a Monday 00:00 UTC, got {value.isoformat()}")
        return value

    def effective_week(self, scenario: Scenario) -> int:
        """Index of the first simulated week a scenario acts in (0 when it predates the world)."""
        days = (scenario.start - self.start) / timedelta(days=1)
        return max(0, math.ceil(days / 7))

    def scenario_weeks(self, name: ScenarioName) -> list[int]:
        """Effective weeks of the scenarios called ``name``."""
        return [self.effective_week(s) for s in self.scenarios if s.name == name]

    def price_shock(self, week: int) -> tuple[float, float]:
        """Churn-hazard and basket multipliers in force during ``week``."""
        shocks = sum(1 for w in self.scenario_weeks("price_shock") if w <= week)
        return (
            self.effects.price_shock_hazard**shocks,
            self.effects.price_shock_basket**shocks,
        )

    def is_campaign_week(self, week: int) -> bool:
        """Whether a campaign wave goes out at the start of ``week``."""
        every = self.effects.campaign_every_weeks
        return week > 0 and week % every == every - 1


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


@dataclass(frozen=True)
class _Dynamics:
    """What the oracle needs beyond the spec: traits, latent path, complaints, campaigns."""

    traits: _Traits
    state_flat: np.ndarray  # int8, week-major: week w holds customers [0, joined[w])
    week_offsets: np.ndarray  # int64, week w is state_flat[week_offsets[w]:week_offsets[w+1]]
    complaint_customer: np.ndarray  # int32
    complaint_week: np.ndarray  # int32
    campaign_customer: np.ndarray  # int32
    campaign_week: np.ndarray  # int32

    def states_in_week(self, week: int) -> np.ndarray:
        """Latent state of every customer who had joined by ``week``."""
        return self.state_flat[self.week_offsets[week] : self.week_offsets[week + 1]]


@dataclass(frozen=True)
class World:
    """The observable tables and the ground truth behind them.

    Attributes:
        customers, orders, events, tickets, campaigns: The contract tables. Ids are
            ``string[pyarrow]`` and enumerations categorical, which keeps a million
            customers in a few gigabytes; both pass the contract's ``str`` columns.
        latent_states: Ground truth, one row per customer per week since sign-up.
        customer_traits: Ground truth, the persistent traits of each customer.
        spec: What the world was built from, effects and scenarios included.
    """

    customers: pd.DataFrame
    orders: pd.DataFrame
    latent_states: pd.DataFrame
    events: pd.DataFrame
    tickets: pd.DataFrame
    campaigns: pd.DataFrame
    customer_traits: pd.DataFrame
    spec: WorldSpec
    _dynamics: _Dynamics = field(repr=False)

    def tables(self) -> dict[str, pd.DataFrame]:
        """The observable raw tables, by contract name.

        An optional table without rows (a tiny world may file no ticket) is left out: the
        contract accepts an absent table and refuses an empty one.
        """
        optional = {"events": self.events, "tickets": self.tickets, "campaigns": self.campaigns}
        return {
            "customers": self.customers,
            "orders": self.orders,
            **{name: table for name, table in optional.items() if len(table)},
        }

    def truth_tables(self) -> dict[str, pd.DataFrame]:
        """The ground truth, by name: what a pipeline writes beside the raw tables.

        - ``latent_states``: customer_id, week_start, state, and churn_hazard (the true
          probability of entering ``churned`` at the next weekly step; NaN when churned);
        - ``customer_traits``: customer_id and the persistent traits behind behaviour;
        - ``scenarios``: name, start and effective_from of each injected drift.

        Oracle quantities depend on the as-of dates asked for; see :func:`oracle`.
        """
        start = pd.Timestamp(self.spec.start)
        scenarios = pd.DataFrame(
            {
                "name": pd.Series([s.name for s in self.spec.scenarios], dtype="string[pyarrow]"),
                "start": pd.to_datetime([s.start for s in self.spec.scenarios], utc=True),
                "effective_from": pd.to_datetime(
                    [start + self.spec.effective_week(s) * _WEEK for s in self.spec.scenarios],
                    utc=True,
                ),
            }
        )
        return {
            "latent_states": self.latent_states,
            "customer_traits": self.customer_traits,
            "scenarios": scenarios,
        }


def _outflows(
    origin: int,
    frailty: np.ndarray,
    churn_mult: np.ndarray | float,
    react_mult: np.ndarray | float,
) -> list[tuple[int, np.ndarray]]:
    """Per-customer probabilities of leaving ``origin`` for each target in one week.

    The simulation and the oracle both call this, so they share one set of dynamics.
    """
    flows = []
    for target, base in _TRANSITIONS[origin].items():
        if target in _CHURNWARD:
            p = base * frailty * churn_mult
        elif (origin, target) in _REACTIVATIONS:
            p = base * react_mult * np.ones_like(frailty)
        else:
            p = np.full_like(frailty, base)
        flows.append((target, p))
    total = sum(p for _, p in flows)
    scale = np.minimum(1.0, _MAX_OUTFLOW / total).astype(frailty.dtype)
    return [(target, p * scale) for target, p in flows]


def _step_states(
    state: np.ndarray,
    u: np.ndarray,
    frailty: np.ndarray,
    churn_mult: np.ndarray,
    react_mult: np.ndarray,
) -> np.ndarray:
    """One week of latent-state transitions for every customer at once."""
    nxt = state.copy()
    for origin in _TRANSITIONS:
        idx = np.flatnonzero(state == origin)
        if idx.size == 0:
            continue
        draw = u[idx]
        low = np.zeros(idx.size, dtype=u.dtype)
        for target, p in _outflows(origin, frailty[idx], churn_mult[idx], react_mult[idx]):
            high = low + p
            nxt[idx[(draw >= low) & (draw < high)]] = target
            low = high
    return nxt


def _churn_hazard(
    state: np.ndarray, frailty: np.ndarray, churn_mult: np.ndarray, react_mult: np.ndarray
) -> np.ndarray:
    """Probability of entering ``churned`` at the next step; NaN for the churned."""
    hazard = np.zeros(state.size, dtype=np.float32)
    hazard[state == CHURNED] = np.nan
    for origin in (o for o, targets in _TRANSITIONS.items() if CHURNED in targets):
        idx = np.flatnonzero(state == origin)
        flows = dict(_outflows(origin, frailty[idx], churn_mult[idx], react_mult[idx]))
        hazard[idx] = flows[CHURNED]
    return hazard


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


def _id_chars(prefix: str, codes: np.ndarray, width: int) -> np.ndarray:
    """Fixed-width ASCII ids, ``prefix`` + ``codes`` zero-padded to at least ``width``
    digits, as one row of bytes per id.

    Worked in blocks so that the temporaries stay small next to tens of millions of ids.
    """
    width = max(width, len(str(int(codes.max()))) if codes.size else 1)
    head = len(prefix)
    chars = np.empty((codes.size, head + width), dtype=np.uint8)
    chars[:, :head] = np.frombuffer(prefix.encode("ascii"), dtype=np.uint8)
    for low in range(0, codes.size, _ID_BLOCK):
        rest = codes[low : low + _ID_BLOCK].astype(np.int64)
        block = chars[low : low + _ID_BLOCK]
        for position in range(head + width - 1, head - 1, -1):
            rest, digit = np.divmod(rest, 10)
            block[:, position] = digit + ord("0")
    return chars


def _strings(chars: np.ndarray) -> pd.Series:
    """A ``string[pyarrow]`` column over fixed-width rows of ASCII bytes.

    The Arrow array is laid over the NumPy bytes (large_string, pandas' own layout), so
    there is no copy and no Python object per row.
    """
    rows, size = chars.shape
    offsets = np.arange(0, (rows + 1) * size, size, dtype=np.int64)
    data = np.ascontiguousarray(chars).reshape(-1)
    array = pa.Array.from_buffers(
        pa.large_string(), rows, [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    )
    return pd.Series(pd.arrays.ArrowStringArray(array), copy=False)


def _labels(codes: np.ndarray, labels: np.ndarray) -> pd.Categorical:
    """A categorical column from integer codes: one byte per row for enumerations."""
    return pd.Categorical.from_codes(codes.astype(np.int8), categories=list(labels))


def _timestamps(start: pd.Timestamp, seconds: np.ndarray) -> pd.DatetimeIndex:
    """UTC timestamps whole ``seconds`` after ``start``."""
    ns = seconds.astype(np.int64)
    ns *= 1_000_000_000
    ns += start.value
    return pd.DatetimeIndex(ns.view("datetime64[ns]")).tz_localize("UTC")


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


def simulate_world(spec: WorldSpec) -> World:
    """Simulate customers, their orders, events, tickets and campaigns, and the truth.

    Customers sign up throughout the span (the base grows), start in state ``new`` and
    then follow the weekly transition rates above, modified by their frailty, recent
    complaints, campaigns and any price shock. Each week, in this order: states move;
    a campaign wave (if due) reaches a random share of consenting customers; orders,
    sessions and tickets are drawn from the new state; complaints feed the next steps.

    Args:
        spec: Size, span, seed, effect sizes and scenarios.

    Returns:
        The world: the five contract tables and the ground truth behind them.
    """
    n, effects = spec.customers, spec.effects
    traits = _draw_traits(spec)
    joined_by = np.searchsorted(traits.signup_week, np.arange(spec.weeks), side="right")
    outage_weeks = spec.scenario_weeks("tracking_outage")
    outage_from = min(outage_weeks) * 7 * _DAY_SECONDS if outage_weeks else None
    outage_loss = np.array([effects.outage_loss_web, effects.outage_loss_app], np.float32)

    state = np.full(n, NEW, dtype=np.int8)
    pressure = np.zeros(n, dtype=np.float32)  # complaints so far, decayed weekly
    treated = np.zeros(0, dtype=bool)
    states_by_week: list[np.ndarray] = []
    hazard_by_week: list[np.ndarray] = []
    orders, events, tickets, campaigns = _Parts(), _Parts(), _Parts(), _Parts()
    sessions = 0

    def churn_mult(present: int, week: int) -> np.ndarray:
        extra = (effects.complaint_hazard - 1.0) * pressure[:present]
        return ((1.0 + extra) * spec.price_shock(week)[0]).astype(np.float32)

    def react_mult(treated: np.ndarray) -> np.ndarray:
        return np.where(treated, effects.campaign_reactivation, 1.0).astype(np.float32)

    for index in range(spec.weeks):
        rng = np.random.default_rng([spec.seed, _WEEK_STREAM, index])
        present = int(joined_by[index])
        moved = int(joined_by[index - 1]) if index else 0
        if moved:
            state[:moved] = _step_states(
                state[:moved],
                rng.random(moved, dtype=np.float32),
                traits.frailty[:moved],
                churn_mult(moved, index),
                react_mult(treated[:moved]),
            )
        states_by_week.append(state[:present].copy())

        week = _open_week(index, rng, state[:present], moved, traits, spec)
        order_count = _draw_orders(week, traits, effects, spec.price_shock(index)[1], orders)
        _record_campaign(week, order_count, campaigns)
        sessions += _draw_events(week, traits, outage_from, outage_loss, sessions, events)
        complained = _draw_tickets(week, traits, tickets)
        pressure[:present] = pressure[:present] * effects.complaint_decay + complained
        treated = week.treated
        hazard_by_week.append(
            _churn_hazard(
                week.state,
                traits.frailty[:present],
                churn_mult(present, index + 1),
                react_mult(treated),
            )
        )
        if index % 26 == 25:
            logger.info("simulated week %d of %d", index + 1, spec.weeks)

    world = _assemble(
        spec,
        traits,
        joined_by,
        states_by_week,
        hazard_by_week,
        orders,
        events,
        tickets,
        campaigns,
    )
    logger.info(
        "simulated %d customers: %d orders, %d events, %d tickets, %d campaign messages",
        n,
        len(world.orders),
        len(world.events),
        len(world.tickets),
        len(world.campaigns),
    )
    return world


def _assemble(
    spec: WorldSpec,
    traits: _Traits,
    joined_by: np.ndarray,
    states_by_week: list[np.ndarray],
    hazard_by_week: list[np.ndarray],
    orders: _Parts,
    events: _Parts,
    tickets: _Parts,
    campaigns: _Parts,
) -> World:
    """Turn the per-week chunks into the contract tables and the truth tables.

    Columns are built one at a time and each chunk list is dropped once used, so the
    peak stays near the size of the finished tables; the largest go first.
    """
    start = pd.Timestamp(spec.start)
    customer_chars = _id_chars("C", np.arange(spec.customers), 7)
    # Gathering whole rows as opaque fixed-size items is much faster than 2-D indexing.
    customer_items = customer_chars.view(f"V{customer_chars.shape[1]}").ravel()

    def customer_ids(codes: np.ndarray) -> pd.Series:
        items = customer_items[codes]
        return _strings(items.view(np.uint8).reshape(items.size, customer_chars.shape[1]))

    def frame(columns: dict[str, object]) -> pd.DataFrame:
        return pd.DataFrame(columns, copy=False)

    event_table = frame(
        {
            "customer_id": customer_ids(events.pop("customer", np.int32)),
            "event_ts": _timestamps(start, events.pop("seconds", np.uint32)),
            "event_type": _labels(events.pop("type", np.int8), _EVENT_TYPES),
            "channel": _labels(events.pop("channel", np.int8), _ORDER_CHANNELS[:2]),
            "session_id": _strings(_id_chars("S", events.pop("session", np.int64), 9)),
        }
    )

    week_offsets = np.concatenate([[0], np.cumsum(joined_by)]).astype(np.int64)
    state_flat = np.concatenate(states_by_week)
    states_by_week.clear()
    latent_weeks = np.repeat(np.arange(spec.weeks, dtype=np.int32), joined_by)
    latent_cust = np.arange(state_flat.size, dtype=np.int64)
    latent_cust -= week_offsets[latent_weeks]
    latent_ids = customer_ids(latent_cust)
    del latent_cust
    latent = frame(
        {
            "customer_id": latent_ids,
            "week_start": _timestamps(start, latent_weeks.astype(np.uint32) * 7 * _DAY_SECONDS),
            "state": pd.Categorical.from_codes(state_flat, STATES),
            "churn_hazard": np.concatenate(hazard_by_week),
        }
    )
    hazard_by_week.clear()
    del latent_ids, latent_weeks

    order_cust = orders.pop("customer", np.int32)
    order_table = frame(
        {
            "order_id": _strings(_id_chars("O", np.arange(order_cust.size), 8)),
            "customer_id": customer_ids(order_cust),
            "order_ts": _timestamps(start, orders.pop("seconds", np.uint32)),
            "amount": orders.pop("amount", np.float64),
            "quantity": orders.pop("quantity", np.int64),
            "category": _labels(orders.pop("category", np.int8), _CATEGORIES),
            "channel": _labels(orders.pop("channel", np.int8), _ORDER_CHANNELS),
            "discount": orders.pop("discount", np.float64),
            "is_return": np.zeros(order_cust.size, dtype=bool),
        }
    )
    del order_cust

    ticket_cust = tickets.pop("customer", np.int32)
    ticket_week = tickets.pop("week", np.int32)
    complaint = tickets.pop("complaint", bool)
    ticket_table = frame(
        {
            "ticket_id": _strings(_id_chars("T", np.arange(ticket_cust.size), 7)),
            "customer_id": customer_ids(ticket_cust),
            "ticket_ts": _timestamps(start, tickets.pop("seconds", np.uint32)),
            "kind": _labels(complaint.astype(np.int8), _TICKET_KINDS),
            "resolved": tickets.pop("resolved", bool),
            "satisfaction": tickets.pop("satisfaction", np.float64),
        }
    )

    camp_cust = campaigns.pop("customer", np.int32)
    camp_week = campaigns.pop("week", np.int32)
    campaign_table = frame(
        {
            "customer_id": customer_ids(camp_cust),
            "sent_ts": _timestamps(start, campaigns.pop("seconds", np.uint32)),
            "campaign_id": _strings(_id_chars("K", camp_week, 3)),
            "channel": _labels(campaigns.pop("channel", np.int8), _CAMPAIGN_CHANNELS),
            "offer": _labels(
                (camp_week // spec.effects.campaign_every_weeks) % len(_OFFERS), _OFFERS
            ),
            "opened": campaigns.pop("opened", bool),
            "clicked": campaigns.pop("clicked", bool),
            "converted": campaigns.pop("converted", bool),
        }
    )

    customers = frame(
        {
            "customer_id": customer_ids(np.arange(spec.customers)),
            "signup_ts": _timestamps(
                start, (traits.signup_week * 7.0 + traits.signup_day) * _DAY_SECONDS
            ),
            "acquisition_channel": _labels(traits.channel, _CHANNELS),
            "region": _labels(traits.region, _REGIONS),
            "birth_year": traits.birth_year,
            "marketing_consent": traits.consent,
        }
    )
    customer_traits = frame(
        {
            "customer_id": customers["customer_id"],
            "frailty": traits.frailty,
            "base_rate": traits.base_rate,
            "spend_level": traits.spend_level,
            "engagement": traits.engagement,
            "complaint_propensity": traits.complaint_propensity,
            "prefers_app": traits.prefers_app,
        }
    )

    dynamics = _Dynamics(
        traits=traits,
        state_flat=state_flat,
        week_offsets=week_offsets,
        complaint_customer=ticket_cust[complaint],
        complaint_week=ticket_week[complaint],
        campaign_customer=camp_cust,
        campaign_week=camp_week,
    )
    return World(
        customers=customers,
        orders=order_table,
        latent_states=latent,
        events=event_table,
        tickets=ticket_table,
        campaigns=campaign_table,
        customer_traits=customer_traits,
        spec=spec,
        _dynamics=dynamics,
    )


def _week_of(spec: WorldSpec, as_of: pd.DatetimeIndex) -> np.ndarray:
    """Week index of each as-of date; every date must start a simulated week."""
    start = pd.Timestamp(spec.start)
    weeks = (as_of - start) // _WEEK
    bad = (as_of != start + weeks * _WEEK) | (weeks < 1) | (weeks > spec.weeks)
    if bad.any():
        first = as_of[np.flatnonzero(bad)[0]]
        last = start + spec.weeks * _WEEK
        raise CustlabError(
            f"as-of date {first.isoformat()} is not a Monday 00:00 UTC between "
            f"{(start + _WEEK).date()} and {last.date()}, the weeks this world simulated"
        )
    return np.asarray(weeks, dtype=np.int64)


def _transition(
    mass: np.ndarray,
    frailty: np.ndarray,
    churn_mult: np.ndarray,
    react_mult: float,
) -> np.ndarray:
    """Push probability masses (layers x states x customers) through one weekly step."""
    out = mass.copy()
    for origin in _TRANSITIONS:
        for target, p in _outflows(origin, frailty, churn_mult, react_mult):
            moved = mass[:, origin] * p
            out[:, target] += moved
            out[:, origin] -= moved
    return out


def _no_order(layers: int, rate: np.ndarray, uplift: float, shares: dict[int, float]) -> np.ndarray:
    """Probability of no order this week, per layer, state and customer: 1 on the state
    layer, Poisson zero over the part of the week inside a horizon on the others."""
    factor = np.ones((layers, *rate.shape))
    for layer, share in shares.items():
        if layer < layers and share > 0:
            factor[layer] = np.exp(-rate * (1.0 + uplift) * share)
    return factor


def oracle(
    world: World,
    as_of: pd.DatetimeIndex | Sequence[pd.Timestamp],
    churn_days: int = 90,
    purchase_days: int = 30,
    spend_weeks: int = 52,
) -> pd.DataFrame:
    """The true churn probability, purchase probability and expected spend at as-of dates.

    For each customer signed up before ``t``, the oracle knows what the world knows at
    ``t``: the latent state in the week before, the traits, the complaints and campaigns
    so far and the scenarios. It propagates the customer's distribution over the five
    states forward week by week with the simulation's own transition probabilities,
    carrying alongside it the probability of no order so far, vectorized over customers.
    Future campaign waves enter exactly (each reaches a consenting customer with the
    known share); future complaints enter at their expected rate, the one approximation.

    Churn here is the churn task's label, not the latent state: **no order in
    ``[t, t + churn_days)``**, so the oracle scores the same target a model is trained
    on. Entering ``churned`` is visible in ``latent_states`` and its ``churn_hazard``.

    Args:
        world: A simulated world.
        as_of: Week starts (Mondays 00:00 UTC) within the simulated span, after its
            first week.
        churn_days: Churn horizon in days.
        purchase_days: Purchase horizon in days.
        spend_weeks: Spend horizon in weeks.

    Returns:
        ``customer_id``, ``event_timestamp`` (= t), ``latent_state`` (in the week before
        t), ``true_churn_prob``, ``true_purchase_prob_<purchase_days>d`` and
        ``true_spend_<spend_weeks>w`` (expected net spend), one row per customer per date.

    Raises:
        CustlabError: An as-of date is not a week start within the simulated span, or a
            horizon is shorter than a day (a week for spend).
    """
    if min(churn_days, purchase_days, spend_weeks) < 1:
        raise CustlabError(
            f"oracle horizons must be at least 1, got churn_days={churn_days}, "
            f"purchase_days={purchase_days}, spend_weeks={spend_weeks}"
        )
    spec, dynamics = world.spec, world._dynamics
    dates = pd.DatetimeIndex(as_of)
    if dates.tz is None:
        dates = dates.tz_localize("UTC")
    week_of = _week_of(spec, dates)
    ids = world.customers[ENTITY_KEY]
    frames = []
    for date, week in zip(dates, week_of, strict=True):
        churn, purchase, spend = _forward(
            spec, dynamics, int(week), churn_days, purchase_days, spend_weeks
        )
        states = dynamics.states_in_week(int(week) - 1)
        frames.append(
            pd.DataFrame(
                {
                    ENTITY_KEY: ids.iloc[: states.size].reset_index(drop=True),
                    EVENT_TIMESTAMP: date,
                    "latent_state": pd.Categorical.from_codes(states, STATES),
                    "true_churn_prob": churn,
                    f"true_purchase_prob_{purchase_days}d": purchase,
                    f"true_spend_{spend_weeks}w": spend,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def _forward(
    spec: WorldSpec,
    dynamics: _Dynamics,
    week: int,
    churn_days: int,
    purchase_days: int,
    spend_weeks: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Oracle quantities for the customers present in the week before ``week``."""
    effects, traits = spec.effects, dynamics.traits
    prev = dynamics.states_in_week(week - 1)
    k = prev.size
    frailty = traits.frailty[:k].astype(np.float64)
    extra_hazard = effects.complaint_hazard - 1.0

    # What is known at t: complaints so far (decayed) and last week's campaign.
    complained = dynamics.complaint_week < week
    pressure = np.bincount(
        dynamics.complaint_customer[complained],
        weights=effects.complaint_decay
        ** (week - 1 - dynamics.complaint_week[complained]).astype(np.float64),
        minlength=k,
    )[:k]
    treated_last = np.zeros(k, dtype=bool)
    treated_last[dynamics.campaign_customer[dynamics.campaign_week == week - 1]] = True

    rate = traits.base_rate[:k].astype(np.float64) * _ORDER_RATE[:, None].astype(np.float64)
    value = rate * traits.spend_level[:k] * _BASKET[:, None].astype(np.float64)
    complaint_p = np.minimum(
        _COMPLAINT_RATE[:, None].astype(np.float64) * traits.complaint_propensity[:k],
        _COMPLAINT_CAP,
    )
    consent = traits.consent[:k]

    # Layers: 0 the state distribution, 1 and 2 the same jointly with "no order yet"
    # within the churn and the purchase horizon.
    mass = np.zeros((3, len(STATES), k))
    mass[:, prev, np.arange(k)] = 1.0
    hazard_shock, _ = spec.price_shock(week)
    churn_mult = (1.0 + extra_hazard * pressure) * hazard_shock
    mass = np.where(
        treated_last,
        _transition(mass, frailty, churn_mult, effects.campaign_reactivation),
        _transition(mass, frailty, churn_mult, 1.0),
    )

    horizons = {1: churn_days / 7.0, 2: purchase_days / 7.0}
    no_order: dict[int, np.ndarray] = {}
    spend = np.zeros(k)
    steps = max(spend_weeks, *(math.ceil(h) for h in horizons.values()))
    for i in range(steps):
        j = week + i
        reach = consent * effects.campaign_share if spec.is_campaign_week(j) else None
        _, basket_shock = spec.price_shock(j)
        if i < spend_weeks:
            expected = (mass[0] * value).sum(axis=0) * basket_shock
            if reach is not None:
                expected *= 1.0 + effects.campaign_order_uplift * reach
            spend += expected

        # Share of this week inside each order horizon (the last week may be partial).
        shares = {layer: min(max(h - i, 0.0), 1.0) for layer, h in horizons.items()}
        pressure = pressure * effects.complaint_decay + (mass[0] * complaint_p).sum(axis=0)
        next_shock, _ = spec.price_shock(j + 1)
        churn_mult = (1.0 + extra_hazard * pressure) * next_shock
        untreated = _transition(
            mass * _no_order(mass.shape[0], rate, 0.0, shares), frailty, churn_mult, 1.0
        )
        if reach is None:
            mass = untreated
        else:
            treated = _transition(
                mass * _no_order(mass.shape[0], rate, effects.campaign_order_uplift, shares),
                frailty,
                churn_mult,
                effects.campaign_reactivation,
            )
            mass = (1.0 - reach) * untreated + reach * treated
        # Transitions keep mass, so a layer's total is final once its horizon has passed.
        for layer, horizon in horizons.items():
            if layer not in no_order and i + 1 >= horizon:
                no_order[layer] = mass[layer].sum(axis=0)
        if len(no_order) == len(horizons) and mass.shape[0] > 1:
            mass = mass[:1]
    return no_order[1], 1.0 - no_order[2], spend
