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

The package has one module per concern, each importing only those before it:
:mod:`~features.simulate.spec` (states, scenarios, the spec),
:mod:`~features.simulate.dynamics` (weekly state transitions),
:mod:`~features.simulate.draws` (traits and the weekly observable records),
:mod:`~features.simulate.world` (:func:`simulate_world`, :class:`World`) and
:mod:`~features.simulate.oracle` (:func:`oracle`).
"""

from features.simulate.draws import ADD_TO_CART, APP, LOGIN, SEARCH, STORE, VIEW, WEB
from features.simulate.oracle import OracleTruth, oracle, oracle_answer
from features.simulate.spec import (
    ACTIVE,
    AT_RISK,
    CHURNED,
    GROWING,
    NEW,
    SCENARIO_NAMES,
    STATES,
    Effects,
    Scenario,
    ScenarioName,
    WorldSpec,
    parse_scenario,
)
from features.simulate.world import World, simulate_world

__all__ = [
    "ACTIVE",
    "ADD_TO_CART",
    "APP",
    "AT_RISK",
    "CHURNED",
    "GROWING",
    "LOGIN",
    "NEW",
    "SCENARIO_NAMES",
    "SEARCH",
    "STATES",
    "STORE",
    "VIEW",
    "WEB",
    "Effects",
    "Scenario",
    "ScenarioName",
    "World",
    "WorldSpec",
    "oracle",
    "oracle_answer",
    "OracleTruth",
    "parse_scenario",
    "simulate_world",
]
