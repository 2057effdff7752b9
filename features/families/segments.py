"""Segments from order history: the lifecycle stage and the RFM segment of a customer at
the as-of date, each from one rule with its thresholds as parameters.

Both rules read purchases only, so an orders-only source gets them too. The lifecycle
rule works at any moment, not only at week boundaries: the lifecycle label (the stage
some days after the as-of date) calls the very same function.

Lifecycle stage (:class:`StageRules`, first rule that applies):

1. ``new``: first purchase within ``new_days`` (or signed up within ``new_days`` and no
   purchase yet);
2. ``churned``: no purchase in ``churn_days`` (or signed up earlier and never bought);
3. ``reactivated``: a purchase within ``recent_days`` after a gap of more than
   ``churn_days`` since the one before;
4. ``at_risk``: days since the last purchase above the larger of ``at_risk_min_days``
   and ``at_risk_gap_factor`` times the customer's own mean gap;
5. ``growing``: at least two purchases in the last ``recent_days`` and more than in the
   ``recent_days`` before;
6. ``active``: everyone else.

RFM segment (:class:`RfmRules`), for customers who have bought: ``at_risk`` when the
last purchase is more than ``at_risk_days`` ago; otherwise ``high_value`` when the net
spend of the last ``value_days`` reaches the ``high_value_quantile`` of the recent
buyers' spend at that date, ``potential`` when it reaches the ``potential_quantile`` or
the first purchase is within ``new_days``, and ``basic`` otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from features.arrow import lookup
from features.contract import ENTITY_KEY, EVENT_TIMESTAMP
from features.families.base import Feature, FeatureFamily, SnapshotGrid, Tables
from features.history import History, epoch_seconds

STAGES: tuple[str, ...] = ("new", "active", "growing", "at_risk", "churned", "reactivated")
RFM_SEGMENTS: tuple[str, ...] = ("high_value", "potential", "basic", "at_risk")
_DAY = 86_400


class StageRules(BaseModel):
    """Thresholds of the lifecycle rule, in days."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    new_days: int = Field(90, gt=0)
    recent_days: int = Field(90, gt=0)
    churn_days: int = Field(365, gt=0)
    at_risk_min_days: int = Field(60, gt=0)
    at_risk_gap_factor: float = Field(2.0, gt=0)


class RfmRules(BaseModel):
    """Thresholds of the RFM segment rule."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    at_risk_days: int = Field(90, gt=0)
    value_days: int = Field(365, gt=0)
    new_days: int = Field(90, gt=0)
    high_value_quantile: float = Field(0.8, gt=0, lt=1)
    potential_quantile: float = Field(0.5, gt=0, lt=1)


FEATURES = (
    Feature("lifecycle_stage", "Lifecycle stage by rule: " + ", ".join(STAGES) + ".", "category"),
    Feature("rfm_segment", "RFM segment by rule: " + ", ".join(RFM_SEGMENTS) + ".", "category"),
)


def _seconds_before(when: np.ndarray, days: float) -> np.ndarray:
    return (when - int(days * _DAY)).astype("datetime64[s]")


def lifecycle_stage(
    history: History,
    cust: np.ndarray,
    when: np.ndarray,
    signed_up: np.ndarray | None = None,
    rules: StageRules = StageRules(),  # noqa: B008 (immutable)
) -> np.ndarray:
    """The lifecycle stage of each customer at each moment.

    Args:
        history: Purchases (:meth:`History.of_purchases`).
        cust: One customer code (of the history's vocabulary) per row.
        when: One moment per row (datetime64).
        signed_up: Epoch seconds of each row's sign-up (NaN unknown), for customers
            who have not bought yet.
        rules: The thresholds.

    Returns:
        An object array of stage names.
    """
    when = np.asarray(when, dtype="datetime64[s]")
    now = when.astype(np.int64).astype(np.float64)
    first = history.first(cust)
    bought = first < now  # NaN compares False: never bought
    last = history.last_before(cust, when)
    recency = (now - last) / _DAY
    recent_start = _seconds_before(when, rules.recent_days)
    n_recent = history.count_between(cust, recent_start, when)
    n_before = history.count_between(
        cust, _seconds_before(when, 2 * rules.recent_days), recent_start
    )
    n_total = history.count_between(cust, np.zeros_like(when), when)
    first_recent = history.first_at_or_after(cust, recent_start)
    before_recent = history.last_before(cust, recent_start)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_gap = np.where(n_total >= 2, (last - first) / (n_total - 1) / _DAY, np.nan)
        at_risk_after = np.fmax(rules.at_risk_min_days, rules.at_risk_gap_factor * mean_gap)
        since_signup = (now - (signed_up if signed_up is not None else np.nan)) / _DAY
        conditions = [
            ~bought & ~(since_signup > rules.new_days),
            ~bought,
            (now - first) / _DAY <= rules.new_days,
            recency > rules.churn_days,
            (first_recent < now) & ((first_recent - before_recent) / _DAY > rules.churn_days),
            recency > at_risk_after,
            (n_recent >= 2) & (n_recent > n_before),
        ]
    choices = ["new", "churned", "new", "churned", "reactivated", "at_risk", "growing"]
    return np.select(conditions, choices, default="active").astype(object)


# What the RFM rule needs of each row before the base's quantiles are known: the net
# spend of the last value_days, and whether the customer has bought, bought recently and
# first bought within new_days. ``compute`` returns them; ``finish`` assigns the segment.
_RFM_INPUTS = ("rfm_value", "rfm_recent", "rfm_new", "rfm_bought")


def rfm_inputs(
    purchases: History,
    spend: History,
    cust: np.ndarray,
    when: np.ndarray,
    rules: RfmRules = RfmRules(),  # noqa: B008 (immutable)
) -> dict[str, np.ndarray]:
    """The per-row inputs of the RFM rule (:data:`_RFM_INPUTS`); both histories must
    share one vocabulary (``cust`` indexes it)."""
    when = np.asarray(when, dtype="datetime64[s]")
    now = when.astype(np.int64).astype(np.float64)
    first = purchases.first(cust)
    bought = first < now
    recency = (now - purchases.last_before(cust, when)) / _DAY
    with np.errstate(invalid="ignore"):
        is_new = (now - first) / _DAY <= rules.new_days
    return dict(
        zip(
            _RFM_INPUTS,
            (
                spend.sum_between(cust, _seconds_before(when, rules.value_days), when),
                bought & (recency <= rules.at_risk_days),
                is_new,
                bought,
            ),
            strict=True,
        )
    )


def assign_rfm(
    inputs: Mapping[str, np.ndarray],
    moment: np.ndarray,
    rules: RfmRules = RfmRules(),  # noqa: B008 (immutable)
) -> np.ndarray:
    """The RFM segment of each row (None before any purchase) from its
    :func:`rfm_inputs`, ``moment`` coding the rows' as-of dates.

    The value thresholds are quantiles of the recent buyers at the same moment, so a
    segment means the same share of the base in every week and every currency: every
    row of a moment must be here at once.
    """
    value = np.asarray(inputs["rfm_value"], dtype=np.float64)
    recent, is_new, bought = (np.asarray(inputs[k], dtype=bool) for k in _RFM_INPUTS[1:])
    cuts = (
        pd.Series(value[recent])
        .groupby(moment[recent])
        .quantile([rules.high_value_quantile, rules.potential_quantile])
        .unstack()
        .reindex(range(moment.max() + 1 if moment.size else 0))
    )
    high = cuts[rules.high_value_quantile].to_numpy()[moment] if recent.any() else np.inf
    mid = cuts[rules.potential_quantile].to_numpy()[moment] if recent.any() else np.inf
    with np.errstate(invalid="ignore"):
        segment = np.select(
            [~recent, value >= high, (value >= mid) | is_new],
            ["at_risk", "high_value", "potential"],
            default="basic",
        ).astype(object)
    segment[~bought] = None
    return segment


def rfm_segment(
    purchases: History,
    spend: History,
    cust: np.ndarray,
    when: np.ndarray,
    rules: RfmRules = RfmRules(),  # noqa: B008 (immutable)
) -> np.ndarray:
    """The RFM segment of each customer at each moment (None before any purchase): the
    rule of :func:`assign_rfm` over these rows alone."""
    moment = pd.Series(np.asarray(when, dtype="datetime64[s]")).factorize()[0]
    return assign_rfm(rfm_inputs(purchases, spend, cust, when, rules), moment, rules)


def signup_seconds(
    customers: pd.DataFrame | None, cust: np.ndarray, vocabulary: pa.Array
) -> np.ndarray | None:
    """Epoch seconds of each row's sign-up (NaN where unknown); None without the table."""
    if customers is None:
        return None
    per_customer = np.full(len(vocabulary), np.nan)
    codes = lookup(customers[ENTITY_KEY], vocabulary)
    known = codes >= 0
    per_customer[codes[known]] = epoch_seconds(customers["signup_ts"])[known]
    return np.where(cust >= 0, per_customer[np.maximum(cust, 0)], np.nan)


def compute(grid: SnapshotGrid, tables: Tables) -> dict[str, np.ndarray]:
    orders = tables["orders"]
    when = grid.dates.tz_localize(None).to_numpy(dtype="datetime64[s]")[grid.row_date]
    cust = grid.row_customer
    codes = grid.customer_codes(orders[ENTITY_KEY])
    purchases = History.of_purchases(orders, grid.ids, codes)
    spend = History.of_net_spend(orders, grid.ids, codes)
    return {
        "lifecycle_stage": lifecycle_stage(
            purchases, cust, when, signup_seconds(tables.get("customers"), cust, grid.ids)
        ),
    } | rfm_inputs(purchases, spend, cust, when)


def finish(rows: pd.DataFrame) -> dict[str, np.ndarray]:
    """The RFM segment of every row, the base's quantiles taken at each as-of date."""
    return {"rfm_segment": assign_rfm(rows, rows[EVENT_TIMESTAMP].factorize()[0])}


FAMILY = FeatureFamily(
    name="segments",
    source="orders",
    reads=("customers",),
    features=FEATURES,
    compute=compute,
    finish=finish,
    description="Lifecycle stage and RFM segment by documented rules.",
)
