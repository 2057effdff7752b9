"""The oracle: what is knowable in principle about a simulated world at an as-of date.

This module owns :func:`oracle`, which propagates each customer's distribution over the
latent states forward with the simulation's own transition step
(:func:`features.simulate.dynamics._outflows`) and its own per-state rates, to give the
true churn probability, purchase probability and expected spend a model is scored against.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd

from features.contract import ENTITY_KEY, EVENT_TIMESTAMP
from features.errors import CustlabError
from features.simulate.draws import _BASKET, _COMPLAINT_CAP, _COMPLAINT_RATE, _ORDER_RATE
from features.simulate.dynamics import _TRANSITIONS, _outflows
from features.simulate.spec import _WEEK, STATES, WorldSpec
from features.simulate.world import World, _Dynamics


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


OracleTruth = Literal["churn", "purchase", "spend"]


def oracle_answer(
    world: World, as_of: pd.DatetimeIndex, truth: OracleTruth, horizon_days: int
) -> pd.DataFrame:
    """One of the oracle's answers at one horizon: ``customer_id``, ``event_timestamp``
    and ``oracle`` (the true churn or purchase probability within ``horizon_days``, or
    the expected net spend over as many whole weeks)."""
    days = {"churn_days": horizon_days, "purchase_days": horizon_days, "spend_weeks": 1}
    if truth == "spend":
        days = {"spend_weeks": max(1, round(horizon_days / 7))}
    known = oracle(world, as_of, **days)
    column = {
        "churn": "true_churn_prob",
        "purchase": f"true_purchase_prob_{horizon_days}d",
        "spend": f"true_spend_{days['spend_weeks']}w",
    }[truth]
    return known[[ENTITY_KEY, EVENT_TIMESTAMP]].assign(oracle=known[column].to_numpy())
