"""The raw-data contract: table names, the entity key and the columns each table carries.

Every room reads column names from here, so the contract lives in one place. Timestamps
are UTC; ids are strings. Only ``orders`` is required; every feature family works with
whatever subset of the other tables exists.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pandera.pandas as pa
import pyarrow.parquet as pq
from pyarrow import types as pa_types

from features.errors import DataContractError

ENTITY_KEY = "customer_id"
EVENT_TIMESTAMP = "event_timestamp"


def _is_text(column: pd.Series) -> bool:
    """Whether a column holds text: a string dtype, categories that are strings, or Python
    strings. Decided from the dtype where it can be: pandera's own ``str`` check visits
    every value, which costs minutes on tens of millions of events."""
    if isinstance(column.dtype, pd.StringDtype):
        return True
    if isinstance(column.dtype, pd.CategoricalDtype):
        return all(isinstance(v, str) for v in column.cat.categories)
    return column.dtype == object and all(isinstance(v, str) for v in column.dropna())


def _text(nullable: bool, required: bool = True, **checks: object) -> pa.Column:
    """A text column (ids, names, categories) checked by dtype, not value by value."""
    text_check = pa.Check(_is_text, name="text", error="expected text")
    return pa.Column(None, checks=[text_check], nullable=nullable, required=required, **checks)


CUSTOMERS_SCHEMA = pa.DataFrameSchema(
    {
        "customer_id": _text(nullable=False, unique=True),
        "signup_ts": pa.Column(pd.DatetimeTZDtype(tz="UTC"), nullable=False),
        "acquisition_channel": _text(nullable=True, required=False),
        "region": _text(nullable=True, required=False),
        "birth_year": pa.Column(float, nullable=True, required=False),
        # Contact details arrive as PII and are stored only as keyed pseudonyms.
        "email": _text(nullable=True, required=False),
        "phone": _text(nullable=True, required=False),
        # Nullable booleans: an export may not know everyone's consent.
        "marketing_consent": pa.Column(
            pd.BooleanDtype(), nullable=True, required=False, coerce=True
        ),
    },
    name="customers",
)

ORDERS_SCHEMA = pa.DataFrameSchema(
    {
        "order_id": _text(nullable=False, unique=True),
        "customer_id": _text(nullable=False),
        "order_ts": pa.Column(pd.DatetimeTZDtype(tz="UTC"), nullable=False),
        "amount": pa.Column(float, nullable=False),
        "quantity": pa.Column(int, nullable=True, required=False),
        "category": _text(nullable=True, required=False),
        "channel": _text(nullable=True, required=False),
        "discount": pa.Column(float, nullable=True, required=False),
        "is_return": pa.Column(bool, nullable=False, required=False),
    },
    name="orders",
)

EVENTS_SCHEMA = pa.DataFrameSchema(
    {
        "customer_id": _text(nullable=False),
        "event_ts": pa.Column(pd.DatetimeTZDtype(tz="UTC"), nullable=False),
        "event_type": _text(nullable=False),
        "channel": _text(nullable=True, required=False),
        "session_id": _text(nullable=True, required=False),
    },
    name="events",
)

TICKETS_SCHEMA = pa.DataFrameSchema(
    {
        "ticket_id": _text(nullable=False, unique=True),
        "customer_id": _text(nullable=False),
        "ticket_ts": pa.Column(pd.DatetimeTZDtype(tz="UTC"), nullable=False),
        "kind": pa.Column(None, pa.Check.isin(["complaint", "inquiry"]), nullable=False),
        "resolved": pa.Column(pd.BooleanDtype(), nullable=True, required=False, coerce=True),
        "satisfaction": pa.Column(float, nullable=True, required=False),
    },
    name="tickets",
)

CAMPAIGNS_SCHEMA = pa.DataFrameSchema(
    {
        "customer_id": _text(nullable=False),
        "sent_ts": pa.Column(pd.DatetimeTZDtype(tz="UTC"), nullable=False),
        "campaign_id": _text(nullable=False),
        "channel": pa.Column(None, pa.Check.isin(["email", "sms", "push"]), nullable=False),
        "offer": _text(nullable=True, required=False),
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


def validate_table(
    name: str, frame: pd.DataFrame, columns: list[str] | None = None, allow_empty: bool = False
) -> pd.DataFrame:
    """Check a raw table against its contract.

    Args:
        name: Contract table name, e.g. ``"orders"``.
        frame: The table as read.
        columns: Check only these of the contract's columns (the others need not be there).
        allow_empty: Accept a table without rows (a shard of customers may have none).

    Returns:
        The frame, with the contract's dtypes.

    Raises:
        DataContractError: The table is empty or a required column is missing or of the
            wrong type; the message names the table and the column.
    """
    schema = RAW_SCHEMAS[name]
    if columns is not None:
        schema = schema.select_columns([c for c in schema.columns if c in columns])
    if frame.empty and not allow_empty:
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


def _read_parquet(
    path: Path, columns: list[str] | None = None, filters: list[tuple] | None = None
) -> pd.DataFrame:
    """A parquet table (or some of its columns and rows) with its strings kept in Arrow
    (a third of the memory of Python strings, and no object per value), everything else
    as pandas reads it."""
    return pq.read_table(path, columns=columns, filters=filters).to_pandas(
        types_mapper=lambda t: (
            pd.StringDtype("pyarrow")
            if pa_types.is_string(t) or pa_types.is_large_string(t)
            else None
        )
    )


def raw_table_paths(raw_dir: Path) -> dict[str, Path]:
    """The contract tables present in ``raw_dir`` (``<table>.parquet``), by name.

    Raises:
        DataContractError: The folder or a required table is missing.
    """
    if not raw_dir.is_dir():
        raise DataContractError(f"raw data folder {raw_dir} does not exist")
    paths = {name: raw_dir / f"{name}.parquet" for name in RAW_SCHEMAS}
    for name in REQUIRED_TABLES:
        if not paths[name].exists():
            raise DataContractError(f"required table '{name}' not found at {paths[name]}")
    return {name: path for name, path in paths.items() if path.exists()}


def read_raw_tables(raw_dir: Path) -> dict[str, pd.DataFrame]:
    """Read the contract tables present in ``raw_dir`` and validate them.

    Raises:
        DataContractError: The folder or a required table is missing, or a table breaks
            the contract.
    """
    return {
        name: validate_table(name, _read_parquet(path))
        for name, path in raw_table_paths(raw_dir).items()
    }


def read_raw_columns(raw_dir: Path, name: str, columns: list[str]) -> pd.DataFrame:
    """Some columns of one raw table (those it has), validated as the contract says of
    them: an id the contract holds unique is unique over the whole table.

    Raises:
        DataContractError: The table is empty, or lacks one of ``columns`` the contract
            requires, or one of them breaks the contract.
    """
    path = raw_dir / f"{name}.parquet"
    if not columns:  # nothing to read: the rows are counted, not read
        if pq.read_metadata(path).num_rows == 0:
            raise DataContractError(f"table '{name}' is empty")
        return pd.DataFrame()
    present = [c for c in columns if c in pq.read_schema(path).names]
    return validate_table(name, _read_parquet(path, present), columns)


def read_raw_shard(raw_dir: Path, first: str | None, end: str | None) -> dict[str, pd.DataFrame]:
    """The rows of every contract table in ``raw_dir`` whose customer id lies in
    ``[first, end)`` (None: unbounded), each validated; a table may have no such rows."""
    bounds = [(ENTITY_KEY, ">=", first)] if first is not None else []
    bounds += [(ENTITY_KEY, "<", end)] if end is not None else []
    return {
        name: validate_table(name, _read_parquet(path, filters=bounds or None), allow_empty=True)
        for name, path in raw_table_paths(raw_dir).items()
    }
