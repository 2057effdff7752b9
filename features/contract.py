"""The raw-data contract: table names, the entity key and the columns each table carries.

Every room reads column names from here, so the contract lives in one place. Timestamps
are UTC; ids are strings. Only ``orders`` is required; every feature family works with
whatever subset of the other tables exists.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pandera.pandas as pa

from features.errors import DataContractError

ENTITY_KEY = "customer_id"
EVENT_TIMESTAMP = "event_timestamp"

CUSTOMERS_SCHEMA = pa.DataFrameSchema(
    {
        "customer_id": pa.Column(str, nullable=False, unique=True),
        "signup_ts": pa.Column(pd.DatetimeTZDtype(tz="UTC"), nullable=False),
        "acquisition_channel": pa.Column(str, nullable=True, required=False),
        "region": pa.Column(str, nullable=True, required=False),
        "birth_year": pa.Column(float, nullable=True, required=False),
        # Contact details arrive as PII and are stored only as keyed pseudonyms.
        "email": pa.Column(str, nullable=True, required=False),
        "phone": pa.Column(str, nullable=True, required=False),
        "marketing_consent": pa.Column(bool, nullable=True, required=False),
    },
    name="customers",
)

ORDERS_SCHEMA = pa.DataFrameSchema(
    {
        "order_id": pa.Column(str, nullable=False, unique=True),
        "customer_id": pa.Column(str, nullable=False),
        "order_ts": pa.Column(pd.DatetimeTZDtype(tz="UTC"), nullable=False),
        "amount": pa.Column(float, nullable=False),
        "quantity": pa.Column(int, nullable=True, required=False),
        "category": pa.Column(str, nullable=True, required=False),
        "channel": pa.Column(str, nullable=True, required=False),
        "discount": pa.Column(float, nullable=True, required=False),
        "is_return": pa.Column(bool, nullable=False, required=False),
    },
    name="orders",
)

EVENTS_SCHEMA = pa.DataFrameSchema(
    {
        "customer_id": pa.Column(str, nullable=False),
        "event_ts": pa.Column(pd.DatetimeTZDtype(tz="UTC"), nullable=False),
        "event_type": pa.Column(str, nullable=False),
        "channel": pa.Column(str, nullable=True, required=False),
        "session_id": pa.Column(str, nullable=True, required=False),
    },
    name="events",
)

TICKETS_SCHEMA = pa.DataFrameSchema(
    {
        "ticket_id": pa.Column(str, nullable=False, unique=True),
        "customer_id": pa.Column(str, nullable=False),
        "ticket_ts": pa.Column(pd.DatetimeTZDtype(tz="UTC"), nullable=False),
        "kind": pa.Column(str, pa.Check.isin(["complaint", "inquiry"]), nullable=False),
        "resolved": pa.Column(bool, nullable=True, required=False),
        "satisfaction": pa.Column(float, nullable=True, required=False),
    },
    name="tickets",
)

CAMPAIGNS_SCHEMA = pa.DataFrameSchema(
    {
        "customer_id": pa.Column(str, nullable=False),
        "sent_ts": pa.Column(pd.DatetimeTZDtype(tz="UTC"), nullable=False),
        "campaign_id": pa.Column(str, nullable=False),
        "channel": pa.Column(str, pa.Check.isin(["email", "sms", "push"]), nullable=False),
        "offer": pa.Column(str, nullable=True, required=False),
        "opened": pa.Column(bool, nullable=False),
        "clicked": pa.Column(bool, nullable=False),
        "converted": pa.Column(bool, nullable=False),
    },
    name="campaigns",
)

RAW_SCHEMAS: dict[str, pa.DataFrameSchema] = {
    "customers": CUSTOMERS_SCHEMA,
    "orders": ORDERS_SCHEMA,
    "events": EVENTS_SCHEMA,
    "tickets": TICKETS_SCHEMA,
    "campaigns": CAMPAIGNS_SCHEMA,
}
REQUIRED_TABLES = ("orders",)


def validate_table(name: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Check a raw table against its contract.

    Args:
        name: Contract table name, e.g. ``"orders"``.
        frame: The table as read.

    Returns:
        The frame, with the contract's dtypes.

    Raises:
        DataContractError: The table is empty or a required column is missing or of the
            wrong type; the message names the table and the column.
    """
    schema = RAW_SCHEMAS[name]
    if frame.empty:
        raise DataContractError(f"table '{name}' is empty")
    missing = [
        column
        for column, spec in schema.columns.items()
        if spec.required and column not in frame.columns
    ]
    if missing:
        raise DataContractError(
            f"table '{name}' lacks required column(s) {', '.join(missing)}; "
            f"it has {', '.join(map(str, frame.columns))}"
        )
    try:
        return schema.validate(frame, lazy=False)
    except pa.errors.SchemaError as error:
        column = getattr(error.schema, "name", None) or "?"
        raise DataContractError(f"table '{name}', column '{column}': {error.args[0]}") from None


def read_raw_tables(raw_dir: Path) -> dict[str, pd.DataFrame]:
    """Read the contract tables present in ``raw_dir`` (``<table>.parquet``) and validate them.

    Raises:
        DataContractError: The folder or a required table is missing, or a table breaks
            the contract.
    """
    if not raw_dir.is_dir():
        raise DataContractError(f"raw data folder {raw_dir} does not exist")
    tables: dict[str, pd.DataFrame] = {}
    for name in RAW_SCHEMAS:
        path = raw_dir / f"{name}.parquet"
        if not path.exists():
            if name in REQUIRED_TABLES:
                raise DataContractError(f"required table '{name}' not found at {path}")
            continue
        tables[name] = validate_table(name, pd.read_parquet(path))
    return tables
