"""Marketing reach and response from campaign messages: how often a customer is
contacted, how often they open, click and convert, and whether they may be contacted.

Opens, clicks and conversions happen after a message is sent, so the rates and the last
response read only messages at least :data:`SETTLE_WEEKS` old at the as-of date.
Consent comes from the customers table when it has one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.families.base import SETTLE_WEEKS, Feature, FeatureFamily, SnapshotGrid, Tables, ratio

SEND_WINDOWS_WEEKS: tuple[int, ...] = (13, 52)
RESPONSE_WEEKS = 52
RESPONSES: tuple[str, ...] = ("opened", "clicked", "converted")

FEATURES = (
    *(
        Feature(f"sends_{w}w", f"Campaign messages received in the last {w} weeks.")
        for w in SEND_WINDOWS_WEEKS
    ),
    Feature("open_rate_52w", "Share of the last 52 weeks' messages opened (settled ones)."),
    Feature("click_rate_52w", "Share of the last 52 weeks' messages clicked (settled ones)."),
    Feature(
        "conversion_rate_52w",
        "Share of the last 52 weeks' messages followed by an order (settled ones).",
    ),
    Feature(
        "days_since_last_response",
        "Days since the last message the customer opened, clicked or converted on.",
    ),
    Feature("marketing_consent", "1 if the customer consents to marketing, 0 if not."),
)


def compute(grid: SnapshotGrid, tables: Tables) -> dict[str, np.ndarray]:
    campaigns = tables["campaigns"]
    records = grid.records(campaigns, "sent_ts")
    bins = grid.bins(records)
    rows = records.rows(campaigns)
    out = bins.named_windows("sends", SEND_WINDOWS_WEEKS)
    sent = bins.window(RESPONSE_WEEKS, end=SETTLE_WEEKS)
    flags = {name: rows[name].to_numpy(dtype=bool) for name in RESPONSES}
    for name, feature in zip(
        RESPONSES, ("open_rate_52w", "click_rate_52w", "conversion_rate_52w"), strict=True
    ):
        responded = bins.window(RESPONSE_WEEKS, flags[name].astype(np.float64), end=SETTLE_WEEKS)
        out[feature] = ratio(responded, sent)
    any_response = flags["opened"] | flags["clicked"] | flags["converted"]
    last = bins.last_day(any_response, end=SETTLE_WEEKS)
    out["days_since_last_response"] = grid.row_day - last
    out["marketing_consent"] = _consent(grid, tables.get("customers"))
    return out


def _consent(grid: SnapshotGrid, customers: pd.DataFrame | None) -> np.ndarray:
    """Consent per row, from the customers table; empty where unknown."""
    consent = np.full(grid.customers, np.nan)
    if customers is not None and "marketing_consent" in customers:
        codes = grid.customer_codes(customers["customer_id"])
        values = customers["marketing_consent"].astype("float64").to_numpy(na_value=np.nan)
        consent[codes[codes >= 0]] = values[codes >= 0]
    return consent[grid.row_customer]


FAMILY = FeatureFamily(
    name="marketing",
    source="campaigns",
    reads=("customers",),
    features=FEATURES,
    compute=compute,
    description="Campaign reach, opens, clicks, conversions and consent.",
)
