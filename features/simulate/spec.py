"""What a simulated world is: its latent states, its spec and the drifts injected into it.

This module owns the public vocabulary of the world (:data:`STATES` and the state codes,
the scenario names), the validated configuration (:class:`WorldSpec`, :class:`Effects`,
:class:`Scenario`, :func:`parse_scenario`) and the layout of the world's clock and random
streams that every other module of the package shares. It does no simulation.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Literal, get_args

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from features.errors import CustlabError

STATES = ("new", "active", "growing", "at_risk", "churned")
NEW, ACTIVE, GROWING, AT_RISK, CHURNED = range(len(STATES))

# Random streams: one for the customers' traits, one per simulated week.
_TRAITS_STREAM, _WEEK_STREAM = 0, 1
_DAY_SECONDS = 86_400
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
