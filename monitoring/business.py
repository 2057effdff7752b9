"""The business view of a week: what customer-operations teams read every Monday.

One pure function over data, :func:`business_view`, from the raw contract tables, the
segments family's snapshots and (optionally) the churn-risk tiers. Each figure is given
for the week and the week before, with the change. What a source does not record is
stated as absent, never shown as zero: no events table, no funnel; no return flag, no
returns.

The weeks are ISO weeks, Monday 00:00 UTC for seven days: the week is
``[week_start, week_start + 7d)`` and the week before ``[week_start - 7d, week_start)``.
Two moments describe a week, each in the way the rest of custlab already uses it:

- *The base as served during the week*: the snapshot as of the week's Monday (records
  before it), which the online store and the batch scores hold all week. Lifecycle
  stages, RFM segments and churn tiers are read there (:func:`segment_dates`); the
  transitions are the moves between the Monday of the week before and this Monday.
- *What customers did in the week*: orders and events stamped inside it. Active
  customers are counted at the week's end, so every buyer of the week is among them,
  by churn's population rule (an order in the last
  :data:`training.tasks.churn.ACTIVE_WINDOW_DAYS` days).
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd

from features.arrow import lookup, to_arrow_strings
from features.contract import ENTITY_KEY, EVENT_TIMESTAMP
from features.errors import CustlabError, DataContractError
from features.families.base import WEEK, week_floor
from features.families.segments import RFM_SEGMENTS, STAGES
from features.history import epoch_seconds, purchase_mask
from training.tasks.churn import ACTIVE_WINDOW_DAYS
from training.tasks.churn import TASK as CHURN

# A customer missing from one of the two snapshots (most often: new to the base).
NOT_KNOWN = "(not known)"
# The RFM segment of a customer who has not bought yet (the rule leaves it empty).
NO_SEGMENT = "(none)"
# The funnel's steps, each with the event type that reaches it: ``None`` for a visit
# (an event of any type) and for the order (a purchase in the orders table). The types
# are the ones the engagement family reads (features.families.engagement.EVENT_TYPES).
FUNNEL: tuple[tuple[str, str | None], ...] = (
    ("visit", None),
    ("view", "view"),
    ("add_to_cart", "add_to_cart"),
    ("order", None),
)
_NO_RETURNS = "the source flags no returns (no is_return column)"
# The columns each table must have for the figures read from it.
_NEEDS = {
    "orders": (ENTITY_KEY, "order_ts", "amount"),
    "events": (ENTITY_KEY, "event_ts", "event_type"),
}


@dataclass(frozen=True)
class Compared:
    """One figure in the week and in the week before (None: not defined, e.g. a rate
    with no one to take it over)."""

    this_week: float | None
    week_before: float | None

    @property
    def change(self) -> float | None:
        if self.this_week is None or self.week_before is None:
            return None
        return self.this_week - self.week_before

    def to_dict(self) -> dict[str, float | None]:
        return {"this_week": self.this_week, "week_before": self.week_before, "change": self.change}


@dataclass(frozen=True)
class Absent:
    """A section the data cannot give, and why."""

    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"absent": self.reason}


@dataclass(frozen=True)
class OrderFigures:
    """Customers and orders of the week.

    Attributes:
        active_customers: Customers with a purchase in the :data:`ACTIVE_WINDOW_DAYS`
            days before the week's end.
        buyers: Customers with a purchase in the week.
        repeat_buyers: Buyers of the week who had bought before it.
        repurchase_rate: ``repeat_buyers / buyers`` (None without buyers).
        orders: Purchases in the week (returns are not orders).
        returns: Returns stamped in the week; None when the source flags no returns.
        net_sales: Purchase amounts minus the amounts of the week's returns.
        average_order_value: ``net_sales / orders`` (None without orders); its basis is
            :attr:`BusinessView.definitions` ``average_order_value``.
    """

    active_customers: Compared
    buyers: Compared
    repeat_buyers: Compared
    repurchase_rate: Compared
    orders: Compared
    returns: Compared | None
    net_sales: Compared
    average_order_value: Compared


@dataclass(frozen=True)
class SegmentMoves:
    """Customers per category of one segment rule, and who moved where.

    Attributes:
        column: ``lifecycle_stage`` or ``rfm_segment``.
        counts: Customers per category at this Monday and the one before, in the rule's
            order (:data:`NO_SEGMENT` for the RFM segment of customers who never bought).
        transitions: ``transitions[from][to]``: customers in category ``from`` at the
            Monday before and ``to`` at this one, every pair of categories (zeros
            included; :data:`NOT_KNOWN` for a customer in one snapshot only); absent
            without the earlier snapshot.
    """

    column: str
    counts: dict[str, Compared]
    transitions: dict[str, dict[str, int]] | Absent

    def to_dict(self) -> dict[str, Any]:
        transitions = self.transitions
        return {
            "counts": {name: c.to_dict() for name, c in self.counts.items()},
            "transitions": transitions.to_dict()
            if isinstance(transitions, Absent)
            else transitions,
        }


@dataclass(frozen=True)
class TierCounts:
    """Churn-risk tiers of the week's scored customers, in the policy's order."""

    counts: dict[str, int]

    @property
    def customers(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class FunnelStep:
    """Customers who reached a step in the week, having reached every step before it
    in the same week (in any order within it).

    Attributes:
        name: ``visit``, ``view``, ``add_to_cart`` or ``order``.
        customers: How many reached it.
        conversion: Their share of the step before (None for the first step, or with
            nobody at the step before).
    """

    name: str
    customers: Compared
    conversion: Compared | None

    @property
    def drop_off(self) -> Compared | None:
        """The share of the step before that did not go on: ``1 - conversion``."""
        if self.conversion is None:
            return None
        this, before = self.conversion.this_week, self.conversion.week_before
        return Compared(
            None if this is None else 1.0 - this, None if before is None else 1.0 - before
        )

    def to_dict(self) -> dict[str, Any]:
        drop_off = self.drop_off
        return {
            "customers": self.customers.to_dict(),
            "conversion": None if self.conversion is None else self.conversion.to_dict(),
            "drop_off": None if drop_off is None else drop_off.to_dict(),
        }


@dataclass(frozen=True)
class Funnel:
    """The behaviour funnel of the week; ``left_out``: steps the source does not record
    (an event type it never logs), with why."""

    steps: tuple[FunnelStep, ...]
    left_out: dict[str, str]


@dataclass(frozen=True)
class BusinessView:
    """The business view of one week against the week before.

    Attributes:
        week_start: The week's Monday 00:00 UTC; it ends seven days later.
        empty: Nothing was recorded in the week: no order, no return, no event.
        orders: Customers and orders (:class:`OrderFigures`).
        lifecycle: Customers per lifecycle stage and their moves, or why absent.
        rfm: Customers per RFM segment and their moves, or why absent.
        tiers: Churn-risk tier counts, or why absent.
        funnel: The behaviour funnel, or why absent.
        definitions: What each figure means, in words, for the reader.
    """

    week_start: pd.Timestamp
    empty: bool
    orders: OrderFigures
    lifecycle: SegmentMoves | Absent
    rfm: SegmentMoves | Absent
    tiers: TierCounts | Absent
    funnel: Funnel | Absent
    definitions: dict[str, str]

    @property
    def week_end(self) -> pd.Timestamp:
        return self.week_start + WEEK

    def to_dict(self) -> dict[str, Any]:
        """Every figure as JSON-able values (dates in ISO 8601, None for undefined)."""
        orders = {
            f.name: getattr(self.orders, f.name).to_dict()
            if getattr(self.orders, f.name) is not None
            else Absent(_NO_RETURNS).to_dict()
            for f in fields(self.orders)
        }
        tiers = self.tiers
        funnel = self.funnel
        return {
            "week_start": self.week_start.isoformat(),
            "week_end": self.week_end.isoformat(),
            "week_before_start": (self.week_start - WEEK).isoformat(),
            "empty": self.empty,
            "orders": orders,
            "lifecycle": self.lifecycle.to_dict(),
            "rfm": self.rfm.to_dict(),
            "tiers": tiers.to_dict()
            if isinstance(tiers, Absent)
            else {"counts": tiers.counts, "customers": tiers.customers},
            "funnel": funnel.to_dict()
            if isinstance(funnel, Absent)
            else {
                "steps": {step.name: step.to_dict() for step in funnel.steps},
                "left_out": funnel.left_out,
            },
            "definitions": self.definitions,
        }

    def html(self) -> str:
        """A self-contained HTML fragment of the view: no script, no external style or
        font; every value escaped."""
        return _render(self)


def segment_dates(week_start: pd.Timestamp) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The as-of dates of the segments snapshots :func:`business_view` reads: the Monday
    of the week before and the week's own Monday (the base as served during each)."""
    start = _monday(week_start)
    return start - WEEK, start


def business_view(
    tables: Mapping[str, pd.DataFrame],
    segments: pd.DataFrame | None,
    week_start: pd.Timestamp,
    tiers: pd.Series | None = None,
) -> BusinessView:
    """The business view of the week starting ``week_start`` against the week before.

    Args:
        tables: Raw contract tables by name, as :func:`features.contract.read_raw_tables`
            returns them; ``orders`` is required, ``events`` gives the funnel.
        segments: Rows of the segments family (``customer_id``, ``event_timestamp``,
            ``lifecycle_stage``, ``rfm_segment``) holding the as-of dates of
            :func:`segment_dates` (other dates are ignored); None: no segments sections.
        week_start: The week's Monday, 00:00 UTC.
        tiers: The churn-risk tier of each customer scored for the week (index: customer
            id; values: tier names of the churn policy), e.g. the ``tier`` column of the
            week's batch scores; None: no tier section.

    Returns:
        The view; :meth:`BusinessView.to_dict` and :meth:`BusinessView.html` render it.

    Raises:
        CustlabError: ``week_start`` is not a Monday 00:00 UTC, a table or the segments
            lack a column, a timestamp column is not time-zone aware, a segment or tier
            value is unknown, or a customer appears twice in one snapshot or in the tiers.
    """
    start = _monday(week_start)
    if "orders" not in tables:
        raise DataContractError(
            "business view: no 'orders' table (required); "
            f"tables given: {', '.join(tables) or 'none'}"
        )
    for name, columns in _NEEDS.items():
        if name in tables:
            _check_table(name, tables[name], columns)
    orders = tables["orders"]
    events = tables.get("events")
    this, before = _Week(start), _Week(start - WEEK)
    order_time = epoch_seconds(orders["order_ts"])
    recorded = bool(this.holds(order_time).any())
    if events is not None:
        recorded = recorded or bool(this.holds(epoch_seconds(events["event_ts"])).any())
    has_returns = "is_return" in orders
    return BusinessView(
        week_start=start,
        empty=not recorded,
        orders=_order_figures(orders, order_time, this, before),
        lifecycle=_segment_moves(segments, "lifecycle_stage", STAGES, start),
        rfm=_segment_moves(segments, "rfm_segment", (*RFM_SEGMENTS, NO_SEGMENT), start),
        tiers=Absent("no churn-risk tiers given") if tiers is None else _tier_counts(tiers),
        funnel=Absent("no events table: the source records no behaviour")
        if events is None
        else _funnel(events, orders, order_time, this, before),
        definitions=_definitions(has_returns),
    )


@dataclass(frozen=True)
class _Week:
    start: pd.Timestamp

    @property
    def bounds(self) -> tuple[int, int]:
        """Epoch seconds of the start and the (exclusive) end."""
        return self.start.value // 10**9, (self.start + WEEK).value // 10**9

    def holds(self, seconds: np.ndarray) -> np.ndarray:
        low, high = self.bounds
        return (seconds >= low) & (seconds < high)


def _monday(week_start: pd.Timestamp) -> pd.Timestamp:
    start = pd.Timestamp(week_start)
    if start.tzinfo is None:
        raise CustlabError(f"week_start {start} has no time zone: give the Monday 00:00 UTC")
    start = start.tz_convert("UTC")
    if start != week_floor(start):
        raise CustlabError(
            f"week_start {start} is not a Monday 00:00 UTC (snapshots are as of Mondays); "
            f"the week holding it starts {week_floor(start):%Y-%m-%d}"
        )
    return start


def _check_table(name: str, frame: pd.DataFrame, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataContractError(
            f"business view: table '{name}' lacks column(s) {', '.join(missing)}; "
            f"it has {', '.join(map(str, frame.columns))}"
        )
    unknown = int(frame[ENTITY_KEY].isna().sum())
    if unknown:
        raise DataContractError(
            f"business view: table '{name}': {unknown} row(s) have no {ENTITY_KEY}"
        )
    stamp = columns[1]
    if not isinstance(frame[stamp].dtype, pd.DatetimeTZDtype):
        raise DataContractError(
            f"business view: table '{name}', column '{stamp}' must hold UTC timestamps; "
            f"it holds {frame[stamp].dtype}"
        )


def _order_figures(
    orders: pd.DataFrame, seconds: np.ndarray, this: _Week, before: _Week
) -> OrderFigures:
    bought = purchase_mask(orders)
    # Customers as integer codes: set operations on millions of ids stay in numpy.
    codes, ids = pd.factorize(orders[ENTITY_KEY])
    amount = orders["amount"].to_numpy(dtype=np.float64)
    has_returns = "is_return" in orders

    def week(period: _Week) -> dict[str, float | None]:
        low, high = period.bounds
        inside = period.holds(seconds)
        buys, returns = inside & bought, inside & ~bought
        buyers = np.unique(codes[buys])
        had_bought = np.zeros(len(ids), dtype=bool)
        had_bought[codes[bought & (seconds < low)]] = True
        repeat = int(had_bought[buyers].sum())
        window = bought & (seconds >= high - ACTIVE_WINDOW_DAYS * 86_400) & (seconds < high)
        n_orders = int(buys.sum())
        net = float(amount[buys].sum() - amount[returns].sum())
        return {
            "active_customers": int(np.unique(codes[window]).size),
            "buyers": int(buyers.size),
            "repeat_buyers": repeat,
            "repurchase_rate": repeat / buyers.size if buyers.size else None,
            "orders": n_orders,
            "returns": int(returns.sum()) if has_returns else None,
            "net_sales": net,
            "average_order_value": net / n_orders if n_orders else None,
        }

    now, then = week(this), week(before)
    figures = {name: Compared(now[name], then[name]) for name in now}
    if not has_returns:
        figures["returns"] = None
    return OrderFigures(**figures)


def _snapshot(
    segments: pd.DataFrame, column: str, categories: tuple[str, ...], as_of: pd.Timestamp
) -> pd.Series | None:
    """The ``column`` of each customer at ``as_of``, indexed by customer (an empty RFM
    segment as :data:`NO_SEGMENT`); None when the frame holds no rows of that date."""
    stamps = pd.DatetimeIndex(segments[EVENT_TIMESTAMP])
    if stamps.tz is None:
        stamps = stamps.tz_localize("UTC")
    rows = segments[np.asarray(stamps == as_of)]
    if rows.empty:
        return None
    where = f"segments as of {as_of:%Y-%m-%d}"
    doubled = rows[ENTITY_KEY][rows[ENTITY_KEY].duplicated()]
    if len(doubled):
        raise CustlabError(
            f"{where}: {len(doubled)} customer(s) appear twice, e.g. {doubled.iloc[0]}"
        )
    values = rows[column].astype(object)
    empty = values.isna()
    if empty.any() and NO_SEGMENT not in categories:
        raise CustlabError(f"{where}: {int(empty.sum())} customer(s) have no {column}")
    unknown = sorted(set(values[~empty]) - set(categories))
    if unknown:
        raise CustlabError(
            f"{where}: unknown {column} value(s) {', '.join(map(str, unknown))}; "
            f"the rule gives {', '.join(categories)}"
        )
    return pd.Series(
        values.where(~empty, NO_SEGMENT).to_numpy(), index=rows[ENTITY_KEY].astype(str).to_numpy()
    )


def _segment_moves(
    segments: pd.DataFrame | None, column: str, categories: tuple[str, ...], start: pd.Timestamp
) -> SegmentMoves | Absent:
    if segments is None:
        return Absent("no segment snapshots given")
    missing = [c for c in (ENTITY_KEY, EVENT_TIMESTAMP, column) if c not in segments.columns]
    if missing:
        raise CustlabError(
            f"segments lack column(s) {', '.join(missing)}; "
            f"they have {', '.join(map(str, segments.columns))}"
        )
    earlier_date, this_date = segment_dates(start)
    now = _snapshot(segments, column, categories, this_date)
    if now is None:
        return Absent(f"no segments snapshot as of {this_date:%Y-%m-%d}")
    then = _snapshot(segments, column, categories, earlier_date)
    counts_now = now.value_counts()
    counts_then = None if then is None else then.value_counts()
    counts = {
        name: Compared(
            int(counts_now.get(name, 0)),
            None if counts_then is None else int(counts_then.get(name, 0)),
        )
        for name in categories
    }
    if then is None:
        return SegmentMoves(
            column, counts, Absent(f"no segments snapshot as of {earlier_date:%Y-%m-%d}")
        )
    pairs = pd.concat({"from": then, "to": now}, axis=1).fillna(NOT_KNOWN)
    moved = pairs.value_counts()
    labels = [*categories, *([NOT_KNOWN] if pairs.isin([NOT_KNOWN]).any(axis=None) else [])]
    transitions = {a: {b: int(moved.get((a, b), 0)) for b in labels} for a in labels}
    return SegmentMoves(column, counts, transitions)


def _tier_counts(tiers: pd.Series) -> TierCounts:
    if not isinstance(tiers, pd.Series):
        raise CustlabError(
            f"tiers must be a pandas Series of tier names indexed by customer id; "
            f"got {type(tiers).__name__}"
        )
    names = [tier.name for tier in CHURN.policy.tiers]
    if tiers.index.has_duplicates:
        doubled = tiers.index[tiers.index.duplicated()]
        raise CustlabError(f"tiers: {len(doubled)} customer(s) appear twice, e.g. {doubled[0]}")
    if tiers.isna().any():
        raise CustlabError(f"tiers: {int(tiers.isna().sum())} customer(s) have no tier")
    unknown = sorted(set(tiers.astype(str).unique()) - set(names))
    if unknown:
        raise CustlabError(
            f"tiers: unknown tier(s) {', '.join(unknown)}; churn's are {', '.join(names)}"
        )
    counts = tiers.astype(str).value_counts()
    return TierCounts({name: int(counts.get(name, 0)) for name in names})


def _funnel(
    events: pd.DataFrame,
    orders: pd.DataFrame,
    order_time: np.ndarray,
    this: _Week,
    before: _Week,
) -> Funnel | Absent:
    if events.empty:
        return Absent("the events table has no rows")
    logged = {str(kind) for kind in pd.unique(events["event_type"].dropna())}
    left_out = {
        name: f"the events table holds no '{kind}' event (its types: {', '.join(sorted(logged))})"
        for name, kind in FUNNEL
        if kind is not None and kind not in logged
    }
    steps = [(name, kind) for name, kind in FUNNEL if name not in left_out]
    # The two weeks' records only: a year of events is tens of millions of rows.
    low, high = before.bounds[0], this.bounds[1]
    event_time = epoch_seconds(events["event_ts"])
    span = (event_time >= low) & (event_time < high)
    events, event_time = events[span], event_time[span]
    bought = purchase_mask(orders) & (order_time >= low) & (order_time < high)
    purchases, order_time = orders[bought], order_time[bought]
    # Customers as codes of the events' ids; a buyer with no event there is -1 (no visit).
    codes, ids = pd.factorize(events[ENTITY_KEY])
    buyer_codes = lookup(purchases[ENTITY_KEY], to_arrow_strings(pd.Series(ids)))
    of_kind = {kind: (events["event_type"] == kind).to_numpy() for _, kind in steps if kind}

    def reached(period: _Week) -> list[int]:
        """Customers at each step, each having reached the steps before it."""
        inside = period.holds(event_time)
        counts, who = [], np.ones(len(ids), dtype=bool)
        for name, kind in steps:
            if name == "order":
                at_step = buyer_codes[period.holds(order_time) & (buyer_codes >= 0)]
            else:
                at_step = codes[inside & of_kind[kind]] if kind else codes[inside]
            member = np.zeros(len(ids), dtype=bool)
            member[at_step] = True
            who &= member
            counts.append(int(who.sum()))
        return counts

    now, then = reached(this), reached(before)
    return Funnel(
        tuple(
            FunnelStep(
                name,
                Compared(now[i], then[i]),
                Compared(_share(now[i], now[i - 1]), _share(then[i], then[i - 1])) if i else None,
            )
            for i, (name, _) in enumerate(steps)
        ),
        left_out,
    )


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _definitions(has_returns: bool) -> dict[str, str]:
    return {
        "week": "Monday 00:00 UTC for seven days; the week before is the seven days before it",
        "active_customers": (
            f"customers with a purchase in the {ACTIVE_WINDOW_DAYS} days before the week's "
            "end (churn's population rule)"
        ),
        "repurchase_rate": "share of the week's buyers who had bought before the week",
        "average_order_value": (
            "net of returns: the week's purchase amounts minus the amounts of the returns "
            "stamped in the week, over the week's purchases"
            if has_returns
            else "of the order amounts as recorded: the source flags no returns"
        ),
        "segments": (
            "lifecycle stage and RFM segment as of each week's Monday (the base as served "
            "during the week); moves are from the Monday before to this one"
        ),
        "tiers": "churn-risk tier of each customer scored for the week",
        "funnel": (
            "customers with, in the week, any event (visit), a 'view' event, an "
            "'add_to_cart' event and a purchase, each step counting those who reached "
            "every step before it; conversion is the share of the step before"
        ),
    }


# --- HTML -------------------------------------------------------------------------------

_STYLE = """
.custlab-business{font-family:system-ui,sans-serif;font-size:14px;color:#222}
.custlab-business table{border-collapse:collapse;margin:0.4em 0 1em}
.custlab-business th,.custlab-business td{border:1px solid #ccc;padding:2px 8px;text-align:right}
.custlab-business th:first-child,.custlab-business td:first-child{text-align:left}
.custlab-business .absent{color:#777;font-style:italic}
"""
_FIGURE_LABELS = {
    "active_customers": ("Active customers", "count"),
    "buyers": ("Buyers", "count"),
    "repeat_buyers": ("Repeat buyers", "count"),
    "repurchase_rate": ("Repurchase rate", "share"),
    "orders": ("Orders", "count"),
    "returns": ("Returns", "count"),
    "net_sales": ("Net sales", "money"),
    "average_order_value": ("Average order value", "money"),
}


def _format(value: float | None, kind: str, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    sign = "+" if signed else ""
    if kind == "share":
        return f"{100 * value:{sign}.1f} pp" if signed else f"{100 * value:.1f}%"
    if kind == "money":
        return f"{value:{sign},.2f}"
    return f"{value:{sign},.0f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _compared_row(label: str, figure: Compared, kind: str) -> list[str]:
    return [
        label,
        _format(figure.this_week, kind),
        _format(figure.week_before, kind),
        _format(figure.change, kind, signed=True),
    ]


_COMPARED = ["", "this week", "week before", "change"]


def _absent(title: str, reason: str) -> str:
    return f'<p class="absent">{html.escape(title)}: absent ({html.escape(reason)}).</p>'


def _segments_html(title: str, moves: SegmentMoves | Absent, week_start: pd.Timestamp) -> str:
    out = f"<h3>{html.escape(title)}</h3>"
    if isinstance(moves, Absent):
        return out + _absent(title, moves.reason)
    before, this = segment_dates(week_start)
    out += f"<p>Customers as of Monday {this:%Y-%m-%d} (this week) and {before:%Y-%m-%d}</p>"
    out += _table(_COMPARED, [_compared_row(name, c, "count") for name, c in moves.counts.items()])
    if isinstance(moves.transitions, Absent):
        return out + _absent("Moves since the week before", moves.transitions.reason)
    labels = list(moves.transitions)
    rows = [
        [origin, *(_format(moves.transitions[origin][to], "count") for to in labels)]
        for origin in labels
    ]
    return (
        out
        + "<p>Moves since the week before (row: then, column: now)</p>"
        + _table(["from \\ to", *labels], rows)
    )


def _render(view: BusinessView) -> str:
    week = f"{view.week_start:%Y-%m-%d} to {view.week_end - pd.Timedelta(days=1):%Y-%m-%d}"
    parts = [
        f"<style>{_STYLE}</style>",
        f"<h2>Business view: week of {html.escape(week)}</h2>",
    ]
    if view.empty:
        parts.append(
            '<p class="absent">Empty week: no order, return or event was recorded in it.</p>'
        )
    rows = []
    for f in fields(view.orders):
        label, kind = _FIGURE_LABELS[f.name]
        figure = getattr(view.orders, f.name)
        if figure is None:
            rows.append([label, f"absent: {_NO_RETURNS}", "", ""])
        else:
            rows.append(_compared_row(label, figure, kind))
    parts += ["<h3>Customers and orders</h3>", _table(_COMPARED, rows)]
    parts.append(_segments_html("Lifecycle stages", view.lifecycle, view.week_start))
    parts.append(_segments_html("RFM segments", view.rfm, view.week_start))
    parts.append("<h3>Churn-risk tiers</h3>")
    if isinstance(view.tiers, Absent):
        parts.append(_absent("Churn-risk tiers", view.tiers.reason))
    else:
        parts.append(
            _table(
                ["tier", "customers"],
                [[name, _format(n, "count")] for name, n in view.tiers.counts.items()],
            )
        )
    parts.append("<h3>Behaviour funnel</h3>")
    if isinstance(view.funnel, Absent):
        parts.append(_absent("Behaviour funnel", view.funnel.reason))
    else:
        rows = []
        for step in view.funnel.steps:
            conversion, drop = step.conversion, step.drop_off
            rows.append(
                _compared_row(step.name, step.customers, "count")
                + (
                    ["", "", "", ""]
                    if conversion is None or drop is None
                    else [
                        _format(conversion.this_week, "share"),
                        _format(conversion.week_before, "share"),
                        _format(drop.this_week, "share"),
                        _format(drop.change, "share", signed=True),
                    ]
                )
            )
        header = [
            "step",
            *_COMPARED[1:],
            "conversion",
            "conversion week before",
            "drop-off",
            "drop-off change",
        ]
        parts.append(_table(header, rows))
        if view.funnel.steps[-1].name == "order":
            reached, buyers = view.funnel.steps[-1].customers, view.orders.buyers
            note = (
                "The order step counts the buyers who took every step before it in the week: "
                f"{_format(reached.this_week, 'count')} of the week's "
                f"{_format(buyers.this_week, 'count')} buyers."
            )
            parts.append(f"<p>{html.escape(note)}</p>")
        for name, reason in view.funnel.left_out.items():
            parts.append(_absent(f"Step '{name}'", reason))
    parts.append("<h3>Definitions</h3><ul>")
    parts += [
        f"<li><b>{html.escape(name)}</b>: {html.escape(text)}</li>"
        for name, text in view.definitions.items()
    ]
    parts.append("</ul>")
    return '<section class="custlab-business">' + "".join(parts) + "</section>"
