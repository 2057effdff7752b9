"""Small hand-made contract tables for tests."""

from __future__ import annotations

import pandas as pd


def orders_frame(rows: list[tuple[str, str, float]]) -> pd.DataFrame:
    """Contract orders from (customer_id, ISO timestamp, amount) tuples."""
    return pd.DataFrame(
        {
            "order_id": [f"o{i}" for i in range(len(rows))],
            "customer_id": [r[0] for r in rows],
            "order_ts": pd.to_datetime([r[1] for r in rows], utc=True, format="ISO8601"),
            "amount": [float(r[2]) for r in rows],
        }
    )
