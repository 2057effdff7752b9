"""The simulated world: :func:`simulate_world` and the :class:`World` it returns.

This module owns the weekly loop that ties the latent dynamics to the draws, the assembly
of the per-week chunks into the contract tables and the truth tables, and the column
helpers that build ids, categorical labels and timestamps without a Python object per
row. The :class:`_Dynamics` a world carries is what :func:`features.simulate.oracle.oracle`
reads.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

from features.simulate.draws import (
    _CAMPAIGN_CHANNELS,
    _CATEGORIES,
    _CHANNELS,
    _EVENT_TYPES,
    _ORDER_CHANNELS,
    _REGIONS,
    _draw_events,
    _draw_orders,
    _draw_tickets,
    _draw_traits,
    _open_week,
    _Parts,
    _record_campaign,
    _Traits,
)
from features.simulate.dynamics import _churn_hazard, _step_states
from features.simulate.spec import (
    _DAY_SECONDS,
    _WEEK,
    _WEEK_STREAM,
    NEW,
    STATES,
    WorldSpec,
)

logger = logging.getLogger(__name__)

_TICKET_KINDS = np.array(["inquiry", "complaint"])
_OFFERS = np.array(["percent_10", "free_shipping", "bundle"])
_ID_BLOCK = 1 << 22


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


def simulate_world(spec: WorldSpec) -> World:
    """Simulate customers, their orders, events, tickets and campaigns, and the truth.

    Customers sign up throughout the span (the base grows), start in state ``new`` and
    then follow the weekly transition rates of :mod:`features.simulate.dynamics`,
    modified by their frailty, recent complaints, campaigns and any price shock. Each
    week, in this order: states move; a campaign wave (if due) reaches a random share
    of consenting customers; orders, sessions and tickets are drawn from the new
    state; complaints feed the next steps.

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
