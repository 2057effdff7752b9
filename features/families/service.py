"""Service experience from support tickets: how often a customer needs help, how often
they complain, whether it was resolved and how satisfied they were.

Resolution and satisfaction are filled in after a ticket is raised, so the rates over
them read only tickets at least :data:`SETTLE_WEEKS` old at the as-of date.
"""

from __future__ import annotations

import numpy as np

from features.families.base import SETTLE_WEEKS, Feature, FeatureFamily, SnapshotGrid, Tables, ratio

TICKET_WINDOWS_WEEKS: tuple[int, ...] = (13, 52)
COMPLAINT_WINDOWS_WEEKS: tuple[int, ...] = (4, 13, 52)
OUTCOME_WEEKS = 52

FEATURES = (
    *(
        Feature(f"tickets_{w}w", f"Tickets of any kind in the last {w} weeks.")
        for w in TICKET_WINDOWS_WEEKS
    ),
    *(
        Feature(f"complaints_{w}w", f"Complaints in the last {w} weeks.")
        for w in COMPLAINT_WINDOWS_WEEKS
    ),
    Feature(
        "unresolved_share_52w",
        f"Share of the tickets of the last 52 weeks (older than {SETTLE_WEEKS} week) left "
        "unresolved; empty without such tickets or without a resolution field.",
    ),
    Feature(
        "mean_satisfaction_52w",
        f"Mean satisfaction score of the tickets of the last 52 weeks (older than "
        f"{SETTLE_WEEKS} week) that have one.",
    ),
    Feature("days_since_last_complaint", "Days since the last complaint; empty if none."),
)


def compute(grid: SnapshotGrid, tables: Tables) -> dict[str, np.ndarray]:
    tickets = tables["tickets"]
    records = grid.records(tickets, "ticket_ts")
    bins = grid.bins(records)
    rows = records.rows(tickets)
    complaint = (rows["kind"].astype(str) == "complaint").to_numpy()
    out = bins.named_windows("tickets", TICKET_WINDOWS_WEEKS)
    out |= bins.named_windows("complaints", COMPLAINT_WINDOWS_WEEKS, complaint.astype(np.float64))

    settled = (OUTCOME_WEEKS, SETTLE_WEEKS)
    empty = np.full(grid.rows, np.nan)
    if "resolved" in rows:
        known = rows["resolved"].notna().to_numpy()
        unresolved = known & ~rows["resolved"].fillna(True).to_numpy(dtype=bool)
        with_outcome, open_tickets = (
            bins.windows([settled], mask.astype(np.float64))[0] for mask in (known, unresolved)
        )
        out["unresolved_share_52w"] = ratio(open_tickets, with_outcome)
    else:
        out["unresolved_share_52w"] = empty
    if "satisfaction" in rows:
        score = rows["satisfaction"].to_numpy(dtype=np.float64, na_value=np.nan)
        rated = np.isfinite(score)
        total, count = (
            bins.windows([settled], weights)[0]
            for weights in (np.where(rated, score, 0.0), rated.astype(np.float64))
        )
        out["mean_satisfaction_52w"] = ratio(total, count)
    else:
        out["mean_satisfaction_52w"] = empty
    out["days_since_last_complaint"] = bins.days_since_last(complaint)
    return out


FAMILY = FeatureFamily(
    name="service",
    source="tickets",
    features=FEATURES,
    compute=compute,
    description="Tickets, complaints, resolution and satisfaction from customer service.",
)
