"""The latent dynamics: how a customer's lifecycle state moves from one week to the next.

This module owns the weekly transition table and the rules that scale it per customer
(frailty, complaints, price shocks, campaign reactivation). :func:`_outflows` is the one
definition of a weekly step: the simulation draws from it (:func:`_step_states`), records
the churn hazard with it (:func:`_churn_hazard`) and the oracle propagates probability
mass through it, so the world and its ground truth cannot drift apart.
"""

from __future__ import annotations

import numpy as np

from features.simulate.spec import ACTIVE, AT_RISK, CHURNED, GROWING, NEW

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
