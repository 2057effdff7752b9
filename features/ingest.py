"""Ingestion: one export file, through its mapping, into one contract table.

Every source row ends in exactly one place: the table (possibly merged with other lines
of the same order) or the quarantine, with a reason code. The reconciliation
``rows in = rows kept + rows quarantined`` is checked before anything is written.
Source ids and PII columns leave this module only as keyed pseudonyms.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from custlab.settings import Settings
from features.contract import RAW_SCHEMAS, validate_table
from features.errors import CustlabError, DataContractError
from features.identity import Resolution, resolve_identities
from features.mapping import (
    KEY_COLUMNS,
    TIMESTAMP_COLUMNS,
    ExtremeRule,
    Mapping,
    SourceFormat,
    load_mapping,
)
from features.pseudonymize import normalize_email, normalize_phone, pseudonymize
from features.tables import replace_folder

logger = logging.getLogger(__name__)

REASON = "reason"
_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}


@dataclass
class IngestResult:
    """What one ingest did: the table, the set-aside rows and the reconciliation."""

    table: str
    frame: pd.DataFrame
    quarantine: pd.DataFrame
    flagged: pd.DataFrame
    rows_in: int
    rows_kept: int
    rows_quarantined: int
    rows_written: int
    reasons: dict[str, int] = field(default_factory=dict)
    resolution: Resolution | None = None
    # Per reason: what the rule expected and a few of the values it refused (never an
    # id or a PII column's).
    hints: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # how values were read, e.g. ISO 8601

    def summary(self) -> dict[str, object]:
        keep = ("table", "rows_in", "rows_kept", "rows_quarantined", "rows_written", "reasons")
        identity = {"identity": self.resolution.report()} if self.resolution else {}
        counts = {k: getattr(self, k) for k in keep}
        return counts | {"rows_flagged": len(self.flagged)} | identity

    def line(self) -> str:
        """The one line printed after each ingest."""
        reasons = "; ".join(f"{r} {n:,}" for r, n in sorted(self.reasons.items())) or "none"
        merged = (
            f"; {self.rows_written:,} rows written" if self.rows_written != self.rows_kept else ""
        )
        flagged = f"; {len(self.flagged):,} flagged extreme (kept)" if len(self.flagged) else ""
        linked = ""
        if self.resolution is not None and len(self.resolution.merges):
            report = self.resolution.report()
            linked = (
                f"; identity: {report['rows_merged']:,} rows linked into "
                f"{report['merged_customers']:,} customers"
            )
        # Where one rule set aside most rows, the mapping is likely wrong: say how.
        most = "".join(
            f"; most rows failed {reason}: {self.hints[reason]}"
            for reason, count in self.reasons.items()
            if count * 2 > self.rows_in and reason in self.hints
        )
        notes = "".join(f"; {note}" for note in self.notes)
        return (
            f"{self.table}: {self.rows_in:,} rows in = {self.rows_kept:,} kept + "
            f"{self.rows_quarantined:,} quarantined ({reasons}){merged}{flagged}{linked}"
            f"{notes}{most}"
        )


def read_text_table(path: Path, fmt: SourceFormat) -> pd.DataFrame:
    """Read an export as strings, blanks as None (parsing is the cleaning step's job,
    row by row).

    Raises:
        CustlabError: The file is missing, unreadable or empty.
    """
    if not path.is_file():
        raise CustlabError(f"source file {path} not found")
    try:
        if fmt.kind == "parquet":
            typed = pd.read_parquet(path)
            frame = typed.astype("string").astype(object).where(typed.notna(), None)
        else:
            whitespace = fmt.separator == "whitespace"
            frame = pd.read_csv(
                path,
                sep=r"\s+" if whitespace else fmt.separator,
                header=0 if fmt.header else None,
                names=None if fmt.header else fmt.names,
                dtype=str,
                keep_default_na=False,
                na_values=[""],
                encoding=fmt.encoding,
            )
    except (OSError, ValueError, UnicodeDecodeError) as error:
        raise CustlabError(f"cannot read {path}: {' '.join(str(error).split())}") from None
    if frame.empty:
        raise DataContractError(f"source file {path} has no rows")
    return frame


def read_source(path: Path, mapping: Mapping) -> pd.DataFrame:
    """Read an export for ``mapping`` as strings.

    Raises:
        CustlabError: The file is missing, unreadable, empty, or lacks a mapped column.
    """
    frame = read_text_table(path, mapping.source)
    needed = set(mapping.columns.values()) | set(mapping.identity.values())
    if mapping.amount.unit_price:
        needed.add(mapping.amount.unit_price)
    if mapping.returns.column:
        needed.add(mapping.returns.column)
    needed |= {rule.column for rule in mapping.exclude.values()}
    require_columns(frame, needed, path)
    return frame


def require_columns(frame: pd.DataFrame, needed: set[str], path: Path) -> None:
    """Refuse a source that lacks a column its mapping names.

    Raises:
        DataContractError: Naming the missing columns and the ones the file has.
    """
    missing = sorted(needed - set(frame.columns))
    if missing:
        raise DataContractError(
            f"source file {path} lacks column(s) {', '.join(missing)} named in the mapping; "
            f"it has {', '.join(map(str, frame.columns))}"
        )


class RowSorter:
    """Moves rows from the working frame into the quarantine, one reason at a time."""

    def __init__(self, source: pd.DataFrame) -> None:
        self.source = source
        self.reason = pd.Series(None, index=source.index, dtype=object)
        self.hints: dict[str, str] = {}
        self.notes: list[str] = []

    def set_aside(
        self,
        mask: pd.Series,
        reason: str,
        values: pd.Series | None = None,
        expected: str | None = None,
    ) -> None:
        """Set aside the rows of ``mask`` not yet set aside, with ``reason``; with
        ``values`` (a column that is neither an id nor PII), remember what was expected
        and up to three of the refused values, for the report."""
        fresh = mask & self.reason.isna()
        self.reason[fresh] = reason
        if values is not None and fresh.any() and reason not in self.hints:
            shown = ", ".join(repr(str(v)) for v in values[fresh].dropna().unique()[:3])
            self.hints[reason] = f"expected {expected}; refused values such as {shown}"

    @property
    def alive(self) -> pd.Series:
        return self.reason.isna()


def _parse_timestamps(
    text: pd.Series, mapping: Mapping, notes: list[str] | None = None
) -> pd.Series:
    """Timestamps in UTC: in the mapping's format, or else ISO 8601 (an export of the
    same kind often writes that); values that carry no zone are in the mapping's
    timezone. How many values were read as ISO 8601 beside a format goes to ``notes``."""
    spec = mapping.timestamps
    parsed = _in_utc(text, spec.format or "ISO8601", spec.timezone)
    if spec.format is not None:
        retry = parsed.isna() & text.notna()
        if retry.any():
            iso = _in_utc(text[retry], "ISO8601", spec.timezone)
            parsed = parsed.copy()  # the parse may be a view; writing into it is lost
            parsed[retry] = iso
            if notes is not None and iso.notna().any():
                notes.append(
                    f"{text.name}: {int(iso.notna().sum()):,} values read as ISO 8601 "
                    f"beside the format {spec.format}"
                )
    return parsed


def _in_utc(text: pd.Series, format: str, timezone: str) -> pd.Series:
    try:
        parsed = pd.to_datetime(text, format=format, errors="coerce", utc=False)
    except ValueError:  # offsets that differ from row to row
        return pd.to_datetime(text, format=format, errors="coerce", utc=True)
    if getattr(parsed.dt, "tz", None) is None:
        parsed = parsed.dt.tz_localize(timezone, ambiguous="NaT", nonexistent="NaT")
    return parsed.dt.tz_convert("UTC")


def _parse_bool(text: pd.Series) -> pd.Series:
    lowered = text.str.strip().str.lower()
    out = pd.Series(pd.NA, index=text.index, dtype="boolean")
    out[lowered.isin(_TRUE)] = True
    out[lowered.isin(_FALSE)] = False
    return out


def clean(source: pd.DataFrame, mapping: Mapping, now: datetime) -> tuple[pd.DataFrame, RowSorter]:
    """Map and parse columns, sorting out rows that cannot be used.

    Returns:
        The usable rows in contract columns (still one per source row) and the sorter
        holding a reason for every row set aside.
    """
    sorter = RowSorter(source)
    table = mapping.table
    cols = mapping.columns
    out = pd.DataFrame(index=source.index)

    if mapping.drop_exact_duplicates:
        sorter.set_aside(source.duplicated(keep="first"), "duplicate_row")
    for name, rule in mapping.exclude.items():
        value = source[rule.column].str.strip()
        matched = value.isin(rule.values)
        if rule.pattern is not None:
            matched |= value.str.fullmatch(rule.pattern, na=False)
        sorter.set_aside(matched, f"excluded_{name}")

    customer = source[cols["customer_id"]].str.strip()
    sorter.set_aside(customer.isna() | (customer == ""), "missing_customer_id")
    out["customer_id"] = customer

    ts_column = TIMESTAMP_COLUMNS[table]
    stamps = _parse_timestamps(source[cols[ts_column]], mapping, sorter.notes)
    expected = (
        f"{mapping.timestamps.format} or ISO 8601"
        if mapping.timestamps.format
        else "ISO 8601 (or give timestamps.format in the mapping)"
    )
    sorter.set_aside(stamps.isna(), "bad_timestamp", source[cols[ts_column]], expected)
    earliest = pd.Timestamp(mapping.timestamps.earliest, tz="UTC")
    latest = (
        pd.Timestamp(mapping.timestamps.latest, tz="UTC") + pd.Timedelta(days=1)
        if mapping.timestamps.latest
        else pd.Timestamp(now)
    )
    sorter.set_aside((stamps < earliest) | (stamps >= latest), "timestamp_out_of_range")
    out[ts_column] = stamps

    schema = RAW_SCHEMAS[table]
    for column, source_column in cols.items():
        if column in ("customer_id", ts_column):
            continue
        text = source[source_column]
        declared = schema.columns[column].dtype
        dtype = declared.type if declared is not None else str
        if column.endswith("_ts"):
            out[column] = _parse_timestamps(text, mapping)
        elif dtype is bool or str(dtype).lower() in ("bool", "boolean"):
            out[column] = _parse_bool(text)
        elif str(dtype).startswith(("float", "int")):
            number = pd.to_numeric(text, errors="coerce")
            shown = None if column in mapping.pii else text
            sorter.set_aside(text.notna() & number.isna(), f"bad_{column}", shown, "a number")
            if str(dtype).startswith("int"):
                # Exports write counts as 6.0; a real fraction is a bad row, not a count.
                sorter.set_aside(
                    number.notna() & (number % 1 != 0),
                    f"fractional_{column}",
                    shown,
                    "a whole number",
                )
            out[column] = number.astype(float)
        else:
            out[column] = text.str.strip()

    if table == "orders":
        _orders_amount_and_returns(source, mapping, out, sorter)
    if table in KEY_COLUMNS and not mapping.order_lines and KEY_COLUMNS[table] in out:
        key = out[KEY_COLUMNS[table]]
        sorter.set_aside(key.isna(), f"missing_{KEY_COLUMNS[table]}")
        duplicated = key.duplicated(keep="first") & key.notna() & sorter.alive
        sorter.set_aside(duplicated, "duplicate_key")
    return out, sorter


def _orders_amount_and_returns(
    source: pd.DataFrame, mapping: Mapping, out: pd.DataFrame, sorter: RowSorter
) -> None:
    """Form net amounts, mark returns, and set aside amounts that make no sense."""
    if mapping.amount.rule == "quantity_x_unit_price":
        price = pd.to_numeric(source[mapping.amount.unit_price], errors="coerce")
        sorter.set_aside(price.isna(), "bad_unit_price")
        out["amount"] = out["quantity"] * price  # the mapping gives quantity (checked)
    sorter.set_aside(out["amount"].isna(), "bad_amount")

    rule = mapping.returns
    if rule.rule == "negative_amount":
        is_return = out["amount"] < 0
    elif rule.rule == "negative_quantity":
        is_return = out.get("quantity", pd.Series(0, index=out.index)) < 0
    elif rule.rule == "invoice_prefix":
        is_return = source[rule.column].str.strip().str.startswith(rule.prefix, na=False)
    elif rule.rule == "flag":
        is_return = source[rule.column].str.strip().str.lower().isin(rule.flag_values)
    else:
        is_return = pd.Series(False, index=out.index)
    out["is_return"] = is_return.astype(bool)
    sorter.set_aside(~out["is_return"] & (out["amount"] <= 0), "non_positive_amount")
    sorter.set_aside(out["is_return"] & (out["amount"] == 0), "non_positive_amount")
    out["amount"] = out["amount"].abs()
    if "quantity" in out:
        out["quantity"] = out["quantity"].abs()


def _merge_order_lines(rows: pd.DataFrame) -> pd.DataFrame:
    """Lines sharing an order id become one order: amounts and quantities add up; the
    customer, time and flags come from the first line."""
    spec: dict[str, tuple[str, str]] = {
        c: (c, "first") for c in rows.columns if c not in ("order_id", "amount", "quantity")
    }
    spec["amount"] = ("amount", "sum")
    if "quantity" in rows:
        spec["quantity"] = ("quantity", "sum")
    return rows.groupby("order_id", sort=False, as_index=False).agg(**spec)


def _extremes(rows: pd.DataFrame, rule: ExtremeRule) -> pd.Series:
    """Rows whose ``rule.column`` exceeds ``factor`` times its ``quantile``."""
    values = rows[rule.column].astype(float)
    return values > rule.factor * float(np.nanquantile(values, rule.quantile))


def _pseudonym_of(values: pd.Series, kind: str, key: bytes) -> pd.Series:
    text = values.astype("string")
    if kind == "email":
        text = normalize_email(text)
    elif kind == "phone":
        text = normalize_phone(text)
    return pseudonymize(text, key, kind)


def _pseudonymize_columns(frame: pd.DataFrame, mapping: Mapping, key: bytes) -> pd.DataFrame:
    out = frame.copy()
    out["customer_id"] = pseudonymize(out["customer_id"], key, "customer")
    for column, kind in mapping.pii.items():
        if column in out:
            out[column] = _pseudonym_of(out[column], kind, key)
    return out


def _resolve(
    table: pd.DataFrame, source: pd.DataFrame, mapping: Mapping, key: bytes
) -> tuple[pd.DataFrame, Resolution]:
    """Give rows linked through shared identifiers one customer id; for customers, fold
    the linked rows into one (earliest sign-up, first known value of everything else)."""
    identifiers = pd.DataFrame(
        {"customer": table["customer_id"]}
        | {
            kind: _pseudonym_of(source.loc[table.index, column], kind, key).to_numpy()
            for kind, column in mapping.identity.items()
        },
        index=table.index,
    )
    resolution = resolve_identities(identifiers, {k: k for k in identifiers.columns})
    table = table.assign(customer_id=resolution.keys)
    if mapping.table == "customers":
        spec = {c: (c, "first") for c in table.columns if c not in ("customer_id", "signup_ts")}
        table = table.groupby("customer_id", as_index=False, sort=False).agg(
            signup_ts=("signup_ts", "min"), **spec
        )
    return table, resolution


def apply_links(table: pd.DataFrame, links: pd.DataFrame) -> pd.DataFrame:
    """Map customer pseudonyms onto the customers identity resolution linked them to."""
    by_source_id = links[links["kind"] == "customer"].set_index("identifier")["customer_id"]
    resolved = table["customer_id"].map(by_source_id)
    return table.assign(customer_id=resolved.fillna(table["customer_id"]))


def ingest_frame(
    source: pd.DataFrame,
    mapping: Mapping,
    key: bytes,
    now: datetime | None = None,
    links: pd.DataFrame | None = None,
) -> IngestResult:
    """Turn a source frame into a contract table and its quarantine.

    Args:
        source: The export, every column as text.
        mapping: How it maps onto the contract.
        key: HMAC key for ids and PII.
        now: Reference time for "timestamps from the future"; default the current time.
        links: Identity links from an earlier ingest (``Resolution.links``); customer ids
            found there take the customer they were linked to.

    Raises:
        DataContractError: No row survives, or the result breaks the contract.
    """
    now = now or datetime.now(UTC)
    rows, sorter = clean(source, mapping, now)
    rule = mapping.extreme
    usable = rule is not None and rule.column in rows and sorter.alive.any()
    if usable and rule.action == "quarantine":
        extreme = _extremes(rows[sorter.alive], rule)
        sorter.set_aside(extreme.reindex(rows.index, fill_value=False), f"extreme_{rule.column}")
    kept_rows = rows[sorter.alive]
    table = _merge_order_lines(kept_rows) if mapping.order_lines else kept_rows
    flagged = table.iloc[0:0]
    if usable and rule.action == "flag" and not table.empty:
        flagged = table[_extremes(table, rule)].assign(**{REASON: f"extreme_{rule.column}"})

    rows_in, kept = len(source), int(sorter.alive.sum())
    quarantined = int(sorter.reason.notna().sum())
    if rows_in != kept + quarantined:  # cannot happen by construction; guard the invariant
        raise CustlabError(f"reconciliation failed: {rows_in} != {kept} + {quarantined}")
    if table.empty:
        reasons = sorter.reason.value_counts().to_dict()
        hints = "".join(f"; {r}: {sorter.hints[r]}" for r in reasons if r in sorter.hints)
        raise DataContractError(
            f"no usable {mapping.table} rows: all {rows_in:,} were quarantined ({reasons}){hints}"
        )

    if "order_id" not in table and mapping.table == "orders":
        # A source without order ids: rows are orders, numbered in source order.
        table = table.assign(order_id=[f"r{i}" for i in table.index])
    table = _pseudonymize_columns(table, mapping, key)
    flagged = _pseudonymize_columns(flagged.reset_index(drop=True), mapping, key)
    resolution = None
    if mapping.identity:
        table, resolution = _resolve(table, source, mapping, key)
    elif links is not None:
        table = apply_links(table, links)
    table = table.reset_index(drop=True)
    quarantine = _quarantine_frame(source, sorter, mapping, key)
    schema = RAW_SCHEMAS[mapping.table].columns
    for column, values in table.items():
        if isinstance(values.dtype, pd.BooleanDtype) and not values.isna().any():
            table[column] = values.astype(bool)
        declared = schema[column].dtype if column in schema else None
        if str(declared).startswith("int") and values.dtype.kind == "f" and values.notna().all():
            # Integral by construction: fractions were set aside above.
            table[column] = values.astype(np.int64)
    table = validate_table(mapping.table, table)
    return IngestResult(
        table=mapping.table,
        frame=table,
        quarantine=quarantine,
        flagged=flagged,
        rows_in=rows_in,
        rows_kept=kept,
        rows_quarantined=quarantined,
        rows_written=len(table),
        reasons={str(k): int(v) for k, v in sorter.reason.value_counts().items()},
        hints=sorter.hints,
        notes=sorter.notes,
        resolution=resolution,
    )


def _quarantine_frame(
    source: pd.DataFrame, sorter: RowSorter, mapping: Mapping, key: bytes
) -> pd.DataFrame:
    """Set-aside source rows with their reason and data row number (1 = first row after
    the header). Only mapped columns are kept, so unmapped PII (names, addresses) is never
    stored; mapped ids and PII are pseudonymized."""
    used = [*mapping.columns.values(), mapping.amount.unit_price, mapping.returns.column]
    kept_columns = [c for c in source.columns if c in used]
    aside = source.loc[sorter.reason.notna(), kept_columns].copy()
    id_column = mapping.columns["customer_id"]
    aside[id_column] = pseudonymize(aside[id_column], key, "customer")
    for column, kind in mapping.pii.items():
        source_column = mapping.columns.get(column)
        if source_column in aside:
            aside[source_column] = pseudonymize(aside[source_column], key, kind)
    aside.insert(0, "source_row", aside.index + 1)
    aside.insert(1, REASON, sorter.reason[sorter.reason.notna()])
    return aside.reset_index(drop=True)


MANIFEST = "manifest"


def read_manifest(raw_dir: Path) -> dict[str, dict[str, object]]:
    """Where each raw table came from (``origin``: ``simulator`` or ``ingest``)."""
    path = raw_dir / f"{MANIFEST}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _key_path(settings: Settings) -> Path:
    return settings.home / "secrets" / "pseudonym.key"


def stored_pseudonym_key(settings: Settings) -> bytes | None:
    """The key ingest used, from the environment or the home's key file; None when
    there is neither. Never makes one: a reader (the service) must use ingest's key."""
    if settings.pseudonym_key is not None:
        return settings.pseudonym_key.get_secret_value().encode()
    path = _key_path(settings)
    return path.read_bytes() if path.exists() else None


def pseudonym_key(settings: Settings, pii: Collection[str] = ()) -> bytes:
    """The HMAC key: from the environment (``CUSTLAB_PSEUDONYM_KEY``).

    A mapping that declares PII columns is refused without it. Without PII, only source
    ids need pseudonyms; then a random key is made once for this home
    (``<home>/secrets/pseudonym.key``, readable by the owner only) so ids stay
    consistent across ingests and never leave the home in clear.

    Raises:
        CustlabError: PII columns are declared and no key is set.
    """
    if settings.pseudonym_key is not None:
        return settings.pseudonym_key.get_secret_value().encode()
    if pii:
        raise CustlabError(
            f"the mapping declares PII column(s) {', '.join(sorted(pii))}; set "
            "CUSTLAB_PSEUDONYM_KEY to pseudonymize them (nothing was written)"
        )
    path = _key_path(settings)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.parent.chmod(0o700)
        path.write_bytes(secrets.token_bytes(32))
        path.chmod(0o600)
        logger.info("no CUSTLAB_PSEUDONYM_KEY set: made a key for this home at %s", path)
    return path.read_bytes()


def ingest_file(settings: Settings, source: Path, mapping_path: Path) -> IngestResult:
    """Ingest one export into ``<home>/raw/<table>.parquet``.

    The quarantine, the extreme-value flags and the report (with the reconciliation)
    go to ``<home>/ingest/<table>/``. Tables of a simulated world in the raw folder are
    replaced, not mixed with real data. Nothing is written when anything fails.
    """
    mapping = load_mapping(mapping_path)
    frame = read_source(source, mapping)
    key = pseudonym_key(settings, mapping.pii)
    links_path = settings.home / "identity" / "links.parquet"
    links = pd.read_parquet(links_path) if links_path.exists() else None
    result = ingest_frame(frame, mapping, key, links=links)
    report = result.summary() | {
        "source": source.name,
        "mapping": mapping_path.name,
        "ingested_at": datetime.now(UTC).isoformat(),
    }
    replace_folder(
        settings.home / "ingest" / result.table,
        {"quarantine": result.quarantine.astype(str), "flagged": result.flagged},
        {"report": report},
    )
    raw_dir = settings.raw_dir
    manifest = {
        name: entry
        for name, entry in read_manifest(raw_dir).items()
        if entry.get("origin") == "ingest" and name != result.table
    }
    tables = {name: pd.read_parquet(raw_dir / f"{name}.parquet") for name in manifest}
    tables[result.table] = result.frame
    manifest[result.table] = {"origin": "ingest"} | report
    replace_folder(raw_dir, tables, {MANIFEST: manifest})
    if result.resolution is not None:
        replace_folder(
            settings.home / "identity",
            {"links": result.resolution.links, "merges": result.resolution.merges},
            {"report": result.resolution.report()},
        )
    return result
