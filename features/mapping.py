"""The mapping file: how one export file becomes one contract table.

A mapping names the contract table, how to read the file, which source column feeds
each contract column, how timestamps are written, how returns are marked and how the
amount is formed. It refuses keys it does not know, so a typo fails loudly.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from features.contract import RAW_SCHEMAS
from features.errors import CustlabError

TableName = Literal["customers", "orders", "events", "tickets", "campaigns"]
PiiKind = Literal["email", "phone", "name"]
ModelT = TypeVar("ModelT", bound=BaseModel)

# The timestamp column each contract table is ordered by.
TIMESTAMP_COLUMNS: dict[str, str] = {
    "customers": "signup_ts",
    "orders": "order_ts",
    "events": "event_ts",
    "tickets": "ticket_ts",
    "campaigns": "sent_ts",
}
# The column that identifies a row of the table, when the table has one.
KEY_COLUMNS: dict[str, str] = {
    "customers": "customer_id",
    "orders": "order_id",
    "tickets": "ticket_id",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceFormat(_Strict):
    """How to read the file. Gzip is recognized from a ``.gz`` suffix."""

    kind: Literal["csv", "parquet"] = "csv"
    separator: str = Field(",", description="Field separator; 'whitespace' for runs of blanks.")
    header: bool = True
    names: list[str] | None = Field(None, description="Column names when there is no header.")
    encoding: str = "utf-8"

    @model_validator(mode="after")
    def _names_without_header(self) -> SourceFormat:
        if self.kind == "csv" and not self.header and not self.names:
            raise ValueError("a csv without header needs 'names'")
        return self


class Timestamps(_Strict):
    format: str | None = Field(None, description="strptime format; ISO 8601 when absent.")
    timezone: str = Field("UTC", description="Zone of timestamps that carry none.")
    earliest: date = Field(date(1990, 1, 1), description="Older timestamps are quarantined.")
    latest: date | None = Field(None, description="Newer ones are quarantined; default: today.")


class Returns(_Strict):
    """How a return or cancellation is marked in the source."""

    rule: Literal["none", "negative_amount", "negative_quantity", "invoice_prefix", "flag"] = "none"
    column: str | None = Field(None, description="Source column for invoice_prefix or flag.")
    prefix: str | None = None
    flag_values: list[str] = ["true", "1", "yes", "y", "t"]

    @model_validator(mode="after")
    def _rule_needs(self) -> Returns:
        if self.rule in ("invoice_prefix", "flag") and not self.column:
            raise ValueError(f"returns rule '{self.rule}' needs 'column'")
        if self.rule == "invoice_prefix" and not self.prefix:
            raise ValueError("returns rule 'invoice_prefix' needs 'prefix'")
        return self


class Amount(_Strict):
    rule: Literal["column", "quantity_x_unit_price"] = "column"
    unit_price: str | None = Field(None, description="Source column of the unit price.")

    @model_validator(mode="after")
    def _rule_needs(self) -> Amount:
        if self.rule == "quantity_x_unit_price" and not self.unit_price:
            raise ValueError("amount rule 'quantity_x_unit_price' needs 'unit_price'")
        return self


class ExcludeRule(_Strict):
    """Rows that are not what the table holds (postage, fees, manual adjustments on an
    invoice export): set aside as ``excluded_<name>`` when a source column takes one of
    ``values`` or matches ``pattern`` whole."""

    column: str = Field(description="Source column to test.")
    values: list[str] = Field(default_factory=list)
    pattern: str | None = Field(None, description="Regular expression the whole value matches.")

    @model_validator(mode="after")
    def _something_to_match(self) -> ExcludeRule:
        if not self.values and not self.pattern:
            raise ValueError("an exclude rule needs 'values' or 'pattern'")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as error:
                raise ValueError(
                    f"pattern {self.pattern!r} is not a regular expression: {error}"
                ) from None
        return self


class ExtremeRule(_Strict):
    """Values above ``factor`` times the ``quantile`` of the column are extreme. They are
    never dropped silently: ``flag`` keeps them and lists them, ``quarantine`` sets them
    aside."""

    column: str = "amount"
    quantile: float = Field(0.99, ge=0.5, lt=1.0)
    factor: float = Field(10.0, ge=1.0)
    action: Literal["flag", "quarantine"] = "flag"


class Mapping(_Strict):
    """One source file onto one contract table."""

    table: TableName
    source: SourceFormat = SourceFormat()
    columns: dict[str, str] = Field(description="Contract column -> source column.")
    timestamps: Timestamps = Timestamps()
    returns: Returns = Returns()
    amount: Amount = Amount()
    order_lines: bool = Field(
        False, description="Rows are lines of an order: lines sharing order_id become one order."
    )
    pii: dict[str, PiiKind] = Field(
        default_factory=dict, description="Contract column -> kind, for columns holding PII."
    )
    identity: dict[str, str] = Field(
        default_factory=dict,
        description="Identifier kind (email, phone, member, device, ...) -> source column. "
        "Rows sharing any identifier are one customer (see features/identity.py).",
    )
    drop_exact_duplicates: bool = Field(
        True,
        description="Quarantine rows identical to an earlier one. Turn off for sources "
        "without a row key, where two identical rows can be two real events.",
    )
    extreme: ExtremeRule | None = None
    exclude: dict[str, ExcludeRule] = Field(
        default_factory=dict, description="Name -> rule; matching rows go to quarantine."
    )

    @model_validator(mode="after")
    def _columns_are_contract_columns(self) -> Mapping:
        known = set(RAW_SCHEMAS[self.table].columns)
        unknown = sorted(set(self.columns) - known)
        if unknown:
            raise ValueError(
                f"unknown {self.table} column(s) {', '.join(unknown)}; "
                f"the contract has {', '.join(sorted(known))}"
            )
        if "customer_id" not in self.columns:
            raise ValueError("'columns' must map customer_id")
        timestamp = TIMESTAMP_COLUMNS[self.table]
        if timestamp not in self.columns:
            raise ValueError(f"'columns' must map {timestamp}")
        # A rule that reads a column the mapping does not give would silently read
        # nothing (an amount of unit price alone, no returns): refuse it here.
        for rule, needs in (
            (self.amount.rule == "quantity_x_unit_price" and "quantity_x_unit_price", "quantity"),
            (self.returns.rule == "negative_quantity" and "negative_quantity", "quantity"),
        ):
            if rule and needs not in self.columns:
                raise ValueError(f"rule '{rule}' needs {needs} mapped in 'columns'")
        if self.order_lines and "order_id" not in self.columns:
            raise ValueError("order_lines needs order_id mapped")
        if self.order_lines and self.identity:
            raise ValueError("identity resolution runs on customer records, not order lines")
        return self


def load_mapping(path: Path) -> Mapping:
    """Read and check a mapping file.

    Raises:
        CustlabError: The file is missing, is not YAML, or breaks the mapping schema; the
            message names the file and the offending key.
    """
    return load_yaml_model(path, Mapping)


def load_yaml_model(path: Path, model: type[ModelT], kind: str = "mapping file") -> ModelT:
    """Read a YAML file into the pydantic ``model``.

    Raises:
        CustlabError: The file is missing, is not YAML, or breaks the schema; the message
            names the ``kind`` of file, the file and the offending key.
    """
    if not path.is_file():
        raise CustlabError(f"{kind} {path} not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise CustlabError(f"{kind} {path} is not valid YAML: {error}") from None
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise CustlabError(f"{kind} {path}: {where}: {first['msg']}") from None
