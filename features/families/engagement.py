"""Engagement from behaviour events: how much a customer visits, searches, puts in the
cart and logs in, whether carts end in orders, and whether activity is fading.

Event types outside :data:`EVENT_TYPES` count in the totals only. Sessions need the
optional ``session_id``; without it they are empty.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from features.arrow import lookup, to_arrow_strings
from features.families.base import (
    POPCOUNT,
    Feature,
    FeatureFamily,
    SnapshotGrid,
    Tables,
    WeekBins,
    ratio,
    trend,
)
from features.history import purchase_mask

EVENT_TYPES: tuple[str, ...] = ("view", "search", "add_to_cart", "login")
TYPE_WINDOWS_WEEKS: tuple[int, ...] = (4, 13)
TOTAL_WINDOWS_WEEKS: tuple[int, ...] = (4, 13, 52)
# Activity trend: the last RECENT weeks against the EARLIER weeks before them.
RECENT_WEEKS, EARLIER_WEEKS = 4, 13

FEATURES = (
    *(
        Feature(f"events_{w}w", f"Events of any type in the last {w} weeks.")
        for w in TOTAL_WINDOWS_WEEKS
    ),
    *(
        Feature(f"{kind}_{w}w", f"'{kind}' events in the last {w} weeks.")
        for kind in EVENT_TYPES
        for w in TYPE_WINDOWS_WEEKS
    ),
    *(
        Feature(f"sessions_{w}w", f"Sessions with an event in the last {w} weeks.")
        for w in TYPE_WINDOWS_WEEKS
    ),
    *(
        Feature(f"active_days_{w}w", f"Days with any event in the last {w} weeks.")
        for w in TYPE_WINDOWS_WEEKS
    ),
    Feature(
        "abandoned_cart_days_13w",
        "Days in the last 13 weeks with an add-to-cart and no order (cart abandonment).",
    ),
    Feature(
        "cart_abandonment_rate_13w",
        "Share of the last 13 weeks' add-to-cart days without an order that day.",
    ),
    Feature("days_since_last_event", "Days since the last event of any type (last visit)."),
    Feature("days_since_last_login", "Days since the last login event."),
    Feature(
        "activity_trend_4v13",
        "Weekly event rate of the last 4 weeks against the 13 before them: (recent - "
        "earlier) / (recent + earlier), from -1 (faded) to +1 (new); empty when both are zero.",
    ),
)


def compute(grid: SnapshotGrid, tables: Tables) -> dict[str, np.ndarray]:
    events = tables["events"]
    records = grid.records(events, "event_ts")
    bins = grid.bins(records)
    kind = lookup(events["event_type"], list(EVENT_TYPES)).astype(np.int8)[records.keep]
    out: dict[str, np.ndarray] = {}
    # Sessions first: their temporaries are the largest, and no window cells are held yet.
    if "session_id" in events:
        out |= _sessions(bins, events["session_id"], TYPE_WINDOWS_WEEKS)
    else:
        out |= {f"sessions_{w}w": np.full(grid.rows, np.nan) for w in TYPE_WINDOWS_WEEKS}

    totals = bins.windows(
        [(w, 0) for w in TOTAL_WINDOWS_WEEKS] + [(EARLIER_WEEKS + RECENT_WEEKS, RECENT_WEEKS)]
    )
    *total_windows, earlier = totals
    for w, value in zip(TOTAL_WINDOWS_WEEKS, total_windows, strict=True):
        out[f"events_{w}w"] = value
    by_kind = bins.grouped_windows([(w, 0) for w in TYPE_WINDOWS_WEEKS], kind, len(EVENT_TYPES))
    for name, values in zip(EVENT_TYPES, by_kind, strict=True):
        out |= {f"{name}_{w}w": v for w, v in zip(TYPE_WINDOWS_WEEKS, values, strict=True)}

    longest = max(TYPE_WINDOWS_WEEKS)
    active = POPCOUNT[bins.day_marks(weeks=longest)]
    out |= bins.named_windows("active_days", TYPE_WINDOWS_WEEKS, per_bin=active)
    del active
    cart_days = bins.day_marks(kind == EVENT_TYPES.index("add_to_cart"), weeks=13)
    # Days with a purchase (a return is no order).
    order_bins = grid.bins(grid.records(tables["orders"], "order_ts"))
    purchase = purchase_mask(tables["orders"])[order_bins.records.keep]
    order_days = order_bins.day_marks(purchase, weeks=13)
    abandoned_13w = bins.windows([(13, 0)], per_bin=POPCOUNT[cart_days & ~order_days])[0]
    carts_13w = bins.windows([(13, 0)], per_bin=POPCOUNT[cart_days])[0]
    del cart_days, order_days
    out["abandoned_cart_days_13w"] = abandoned_13w
    out["cart_abandonment_rate_13w"] = ratio(abandoned_13w, carts_13w)

    out["days_since_last_event"] = bins.days_since_last()
    out["days_since_last_login"] = bins.days_since_last(kind == EVENT_TYPES.index("login"))
    recent = out[f"events_{RECENT_WEEKS}w"] / RECENT_WEEKS
    out["activity_trend_4v13"] = trend(recent, earlier / EARLIER_WEEKS)
    return out


def _sessions(
    bins: WeekBins, session_id: pd.Series, weeks: tuple[int, ...]
) -> dict[str, np.ndarray]:
    """``sessions_{w}w``: sessions with an event in the ``w`` weeks before t.

    A session is a (customer, session id) pair: exports often number sessions per user,
    so one id may belong to several customers. A session with an event in weeks
    ``[t - w, t)`` is one whose first event lies before ``t`` and whose last event does
    not lie before ``t - w``, so the count is (sessions begun before t) minus (sessions
    ended before t - w). Sessions that ended before every window count in neither term,
    so only the events a window can read are encoded: for the newest snapshot alone,
    the last weeks, not the whole history. Ids are dictionary-encoded in Arrow (a hash,
    no sort); only when an id does repeat across customers are the pairs factorized.
    Events without a session id belong to none.
    """
    records = bins.records
    readable = bins.reads_back(max(weeks))
    rows = records.keep.copy()
    rows[rows] = readable
    ids = to_arrow_strings(session_id).filter(pa.array(rows))
    encoded = ids.dictionary_encode()
    codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    has = codes >= 0
    customer = records.customer[readable][has]
    cell = customer * bins.width + bins.column[readable][has]
    pair = codes[has]
    owner = np.full(len(encoded.dictionary), -1, dtype=np.int64)
    owner[pair] = customer
    if not (owner[pair] == customer).all():  # ids repeat across customers: pair them up
        pair, _ = pd.factorize(pair * (customer.max(initial=0) + 1) + customer)
    sessions = pair.max(initial=-1) + 1
    first = np.full(sessions, np.iinfo(np.int64).max)
    np.minimum.at(first, pair, cell)
    last = np.full(sessions, -1, dtype=np.int64)
    np.maximum.at(last, pair, cell)
    width = bins.width
    begun = bins.windows([(None, 0)], at=(first // width, first % width))[0]
    ended = bins.windows([(None, w) for w in weeks], at=(last // width, last % width))
    return {f"sessions_{w}w": begun - e for w, e in zip(weeks, ended, strict=True)}


FAMILY = FeatureFamily(
    name="engagement",
    source="events",
    reads=("orders",),
    features=FEATURES,
    compute=compute,
    description="Visits, searches, carts, logins and sessions from behaviour events.",
)
