"""Label factories: what happened to a customer after an as-of date, for the four tasks.

Every factory has the same shape, ``factory(tables, as_of, horizon_days=..., ...)``, and
returns ``customer_id``, ``event_timestamp`` (= t) and one label column, for the customers
eligible at ``t``. Labels read only orders at or after ``t``; snapshots stamped ``t`` read
only records before it. A label exists only once its horizon has fully passed (it has
*matured*) before the end of observation, so the newest weeks never get a made-up
"churned". The one exception is the lifecycle label: a stage is, by definition, read from
the history up to its own moment ``t + horizon``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from features.contract import ENTITY_KEY, EVENT_TIMESTAMP
from features.families.segments import StageRules, lifecycle_stage, signup_seconds
from features.history import History, purchases
from features.snapshots import snapshot_grid

Tables = Mapping[str, pd.DataFrame]
LabelFactory = Callable[..., pd.DataFrame]


def _matured(
    as_of: pd.DatetimeIndex, horizon_days: int, observation_end: pd.Timestamp
) -> pd.DatetimeIndex:
    horizon = pd.Timedelta(days=horizon_days)
    return pd.DatetimeIndex([t for t in as_of if t + horizon <= observation_end])


def _observation_end(orders: pd.DataFrame, given: pd.Timestamp | None) -> pd.Timestamp:
    return given if given is not None else orders["order_ts"].max()


def _empty(label: str, dtype: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            ENTITY_KEY: pd.Series(dtype=str),
            EVENT_TIMESTAMP: pd.Series(dtype="datetime64[ns, UTC]"),
            label: pd.Series(dtype=dtype),
        }
    )


def active_customers(
    orders: pd.DataFrame, as_of: pd.DatetimeIndex, window_days: int
) -> pd.DataFrame:
    """Customers with a purchase in ``[t - window, t)``, for each as-of date ``t``.

    Returns:
        ``customer_id`` and ``event_timestamp`` (= t), one row per active customer per date.
    """
    bought = purchases(orders)
    ts = bought["order_ts"]
    window = pd.Timedelta(days=window_days)
    frames = [
        pd.DataFrame(
            {
                ENTITY_KEY: pd.unique(bought.loc[(ts >= t - window) & (ts < t), ENTITY_KEY]),
                EVENT_TIMESTAMP: t,
            }
        )
        for t in as_of
    ]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return _empty("_", "int8").drop(columns="_")
    return pd.concat(frames, ignore_index=True)


def known_customers(tables: Tables, as_of: pd.DatetimeIndex) -> pd.DataFrame:
    """Customers known (signed up or bought) before each as-of date: the snapshot grid."""
    if len(as_of) == 0:
        return _empty("_", "int8").drop(columns="_")
    return snapshot_grid(tables, as_of).keys()


def churn_labels(
    tables: Tables,
    as_of: pd.DatetimeIndex,
    horizon_days: int = 90,
    active_window_days: int = 365,
    observation_end: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Churn at ``t``: an active customer places no order in ``[t, t + horizon)``.

    Args:
        tables: Contract tables (orders is read).
        as_of: As-of dates to label.
        horizon_days: Days after ``t`` in which an order means "retained".
        active_window_days: A customer is active at ``t`` with an order in
            ``[t - active_window, t)``; only active customers can churn.
        observation_end: Last moment the data covers; default the last order.

    Returns:
        ``customer_id``, ``event_timestamp`` and ``churned`` (0/1).
    """
    orders = tables["orders"]
    matured = _matured(as_of, horizon_days, _observation_end(orders, observation_end))
    labels = active_customers(orders, matured, active_window_days)
    if labels.empty:
        return _empty("churned", "int8")
    t = labels[EVENT_TIMESTAMP]
    history = History.of_purchases(orders)
    after = history.count_between(
        history.codes(labels[ENTITY_KEY]), t, t + pd.Timedelta(days=horizon_days)
    )
    return labels.assign(churned=(after == 0).astype(np.int8))


def propensity_labels(
    tables: Tables,
    as_of: pd.DatetimeIndex,
    horizon_days: int = 30,
    category: str | None = None,
    observation_end: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Purchase propensity at ``t``: a known customer orders (in ``category``, when
    given) in ``[t, t + horizon)``.

    Returns:
        ``customer_id``, ``event_timestamp`` and ``purchased`` (0/1).

    Raises:
        ValueError: ``category`` is given and orders have no ``category`` column.
    """
    orders = tables["orders"]
    matured = _matured(as_of, horizon_days, _observation_end(orders, observation_end))
    labels = known_customers(tables, matured)
    if labels.empty:
        return _empty("purchased", "int8")
    target = orders
    if category is not None:
        if "category" not in orders:
            raise ValueError(f"a target category ({category!r}) needs orders with a category")
        target = orders[orders["category"].astype(str) == category]
    t = labels[EVENT_TIMESTAMP]
    history = History.of_purchases(target)
    after = history.count_between(
        history.codes(labels[ENTITY_KEY]), t, t + pd.Timedelta(days=horizon_days)
    )
    return labels.assign(purchased=(after > 0).astype(np.int8))


def clv_labels(
    tables: Tables,
    as_of: pd.DatetimeIndex,
    horizon_days: int = 365,
    observation_end: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Customer value at ``t``: net spend (returns deducted) in ``[t, t + horizon)`` of a
    customer who has bought before ``t``.

    Returns:
        ``customer_id``, ``event_timestamp`` and ``future_spend``.
    """
    orders = tables["orders"]
    matured = _matured(as_of, horizon_days, _observation_end(orders, observation_end))
    labels = active_customers(orders, matured, window_days=100 * 365)
    if labels.empty:
        return _empty("future_spend", "float64")
    t = labels[EVENT_TIMESTAMP]
    history = History.of_net_spend(orders)
    spend = history.sum_between(
        history.codes(labels[ENTITY_KEY]), t, t + pd.Timedelta(days=horizon_days)
    )
    return labels.assign(future_spend=spend)


def lifecycle_labels(
    tables: Tables,
    as_of: pd.DatetimeIndex,
    horizon_days: int = 90,
    rules: StageRules = StageRules(),  # noqa: B008 (immutable)
    observation_end: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Lifecycle stage at ``t + horizon`` of a customer known at ``t``, by the same rule
    that gives the ``lifecycle_stage`` feature.

    Returns:
        ``customer_id``, ``event_timestamp`` and ``future_stage``.
    """
    orders = tables["orders"]
    matured = _matured(as_of, horizon_days, _observation_end(orders, observation_end))
    labels = known_customers(tables, matured)
    if labels.empty:
        return _empty("future_stage", "object")
    history = History.of_purchases(orders, History.vocabulary_of(labels[ENTITY_KEY]))
    cust = history.codes(labels[ENTITY_KEY])
    later = (labels[EVENT_TIMESTAMP] + pd.Timedelta(days=horizon_days)).to_numpy(
        dtype="datetime64[s]"
    )
    signed_up = signup_seconds(tables.get("customers"), cust, history.vocabulary)
    stage = lifecycle_stage(history, cust, later, signed_up, rules)
    return labels.assign(future_stage=stage)


LABEL_FACTORIES: dict[str, LabelFactory] = {
    "churn": churn_labels,
    "propensity": propensity_labels,
    "clv": clv_labels,
    "lifecycle": lifecycle_labels,
}
