"""Labelled customer tables: one row per customer with feature columns and a label, the
table most ML engineers arrive with (a churn flag per customer, often no time axis).

A labelled mapping names the entity id, the label and its positive values, and which
columns are features (or lets their kinds be inferred, minus ``drop``). Ingest follows
the rules of every other export: each source row ends in the table or in the quarantine
with a reason, ids leave only as keyed pseudonyms, and nothing is written unless all of
it can be. The table lands under ``<home>/labelled/<name>/``: its features (read by Feast
as one feature view), its labels, its quarantine and a manifest (:class:`LabelledTable`).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from custlab.settings import Settings
from features.contract import ENTITY_KEY, EVENT_TIMESTAMP
from features.errors import CustlabError, DataContractError
from features.ingest import RowSorter, pseudonym_key, read_text_table, require_columns
from features.mapping import SourceFormat, load_yaml_model
from features.pseudonymize import pseudonymize
from features.tables import replace_folder

Kind = Literal["number", "category"]
LABEL = "label"
MANIFEST = "table"
# Cell values that mean "not known", compared trimmed and case-insensitively.
BLANKS = frozenset({"", "na", "n/a", "nan", "null", "none", "?", "-"})
# A text column with more levels than this is an identifier or free text, not a category.
MAX_LEVELS = 200


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LabelRule(_Strict):
    """The label column and which of its values mean the positive class."""

    column: str
    positive: list[str] = Field(min_length=1, description="Values of the positive class.")
    negative: list[str] = Field(
        default_factory=list,
        description="Values of the negative class; needed when the column has more than "
        "two values (any other value is quarantined as unknown_label).",
    )


class AsOf(_Strict):
    """When the features were true: one date for the table, a column per row, or (by
    default) the day of ingest."""

    date: dt.date | None = None
    column: str | None = None
    format: str | None = Field(None, description="strptime format of the column; ISO 8601 else.")

    @model_validator(mode="after")
    def _one_source(self) -> AsOf:
        if self.date is not None and self.column is not None:
            raise ValueError("as_of takes a date or a column, not both")
        if self.format is not None and self.column is None:
            raise ValueError("as_of.format goes with as_of.column")
        return self


class Numbers(_Strict):
    """How numbers are written: ``decimal: ","`` and ``thousands: "."`` for a European
    export."""

    decimal: str = Field(".", min_length=1, max_length=1)
    thousands: str | None = Field(None, min_length=1, max_length=1)


class LabelledMapping(_Strict):
    """One labelled customer table: which column is which."""

    name: str = Field(
        pattern=r"^[a-z][a-z0-9_]{0,39}$",
        description="The table's name: its Feast view is labelled_<name>.",
    )
    task: str = Field(description="The binary task it trains: churn or propensity.")
    source: SourceFormat = SourceFormat()
    entity: str = Field(description="Source column of the customer id.")
    label: LabelRule
    as_of: AsOf = AsOf()
    features: dict[str, Kind] | None = Field(
        None,
        description="Source column -> number or category. Absent: every column but the "
        "entity, label, as-of and drop columns, each kind inferred.",
    )
    drop: list[str] = Field(
        default_factory=list,
        description="Columns never used: ones that leak the label, identifiers, free text.",
    )
    numbers: Numbers = Numbers()

    @model_validator(mode="after")
    def _roles_do_not_overlap(self) -> LabelledMapping:
        roles = {self.entity: "entity", self.label.column: "label"}
        if self.as_of.column:
            roles[self.as_of.column] = "as_of.column"
        for column in [*(self.features or {}), *self.drop]:
            if column in roles:
                raise ValueError(
                    f"column {column!r} is the {roles[column]}; it cannot be a feature"
                )
        both = sorted(set(self.features or {}) & set(self.drop))
        if both:
            raise ValueError(f"column(s) {', '.join(both)} are both features and dropped")
        return self

    @property
    def feature_view(self) -> str:
        return f"labelled_{self.name}"


def load_labelled_mapping(path: Path) -> LabelledMapping:
    """Read and check a labelled mapping file.

    Raises:
        CustlabError: The file is missing, is not YAML, or breaks the schema; the message
            names the file and the offending key.
    """
    return load_yaml_model(path, LabelledMapping)


class FeatureColumn(_Strict):
    name: str
    kind: Kind
    inferred: bool = Field(description="The kind was inferred, not given by the mapping.")
    blanks: int = Field(description="Kept rows where the value is unknown.")
    levels: int | None = Field(None, description="A category's distinct values.")


class LabelledTable(_Strict):
    """The manifest of an ingested labelled table: what training and serving read."""

    name: str
    task: str
    source: str
    mapping: str
    ingested_at: datetime
    features: list[FeatureColumn]
    label_column: str
    positive: list[str]
    rows_in: int
    rows_kept: int
    rows_quarantined: int
    reasons: dict[str, int]
    positive_share: float
    as_of_first: dt.date
    as_of_last: dt.date

    @property
    def feature_view(self) -> str:
        return f"labelled_{self.name}"

    @property
    def feature_service(self) -> str:
        """The versioned Feast service of this table's model."""
        return f"{self.task}_{self.name}_v1"

    @property
    def categorical(self) -> list[str]:
        return [f.name for f in self.features if f.kind == "category"]

    def line(self) -> str:
        """The one line printed after the ingest."""
        reasons = "; ".join(f"{r} {n:,}" for r, n in sorted(self.reasons.items())) or "none"
        numbers = sum(f.kind == "number" for f in self.features)
        inferred = sum(f.inferred for f in self.features)
        return (
            f"labelled table {self.name} ({self.task}): {self.rows_in:,} rows in = "
            f"{self.rows_kept:,} kept + {self.rows_quarantined:,} quarantined ({reasons}); "
            f"{len(self.features)} features ({numbers} numbers, "
            f"{len(self.features) - numbers} categories; {inferred} kinds inferred); "
            f"label {self.label_column} in {', '.join(self.positive)}: "
            f"{self.positive_share:.1%} positive"
        )


def labelled_folder(settings: Settings, name: str) -> Path:
    return settings.home / "labelled" / name


def features_path(settings: Settings, name: str) -> Path:
    """The table's features, the file its Feast source reads."""
    return labelled_folder(settings, name) / "features.parquet"


def _blank(text: pd.Series) -> pd.Series:
    """Trimmed text, with every spelling of "unknown" as None."""
    trimmed = (
        text.astype(object)
        .where(text.notna(), None)
        .map(lambda v: v.strip() if isinstance(v, str) else v)
    )
    unknown = trimmed.isna() | trimmed.map(lambda v: isinstance(v, str) and v.lower() in BLANKS)
    return trimmed.where(~unknown, None)


def parse_numbers(text: pd.Series, numbers: Numbers) -> pd.Series:
    """Numbers written with the mapping's separators; what does not parse is NaN."""
    cleaned = text.astype("string")
    if numbers.thousands:
        cleaned = cleaned.str.replace(numbers.thousands, "", regex=False)
    if numbers.decimal != ".":
        cleaned = cleaned.str.replace(numbers.decimal, ".", regex=False)
    return pd.to_numeric(cleaned, errors="coerce").astype(float)


def _normal(value: str) -> str:
    """A label value as compared: trimmed, case-folded, ``1.0`` as ``1``."""
    text = value.strip().casefold()
    if re.fullmatch(r"[+-]?\d+\.0*", text):
        text = text.split(".", 1)[0].lstrip("+")
    return text


def infer_kind(name: str, values: pd.Series, numbers: Numbers) -> Kind:
    """A column's kind from its known values: a number when every one parses, a category
    when it has at most ``MAX_LEVELS`` levels.

    Raises:
        CustlabError: The column is mostly numbers with a few that are not (say which to
            declare), or has too many levels to be a category (an id or free text).
    """
    known = values.dropna()
    parsed = parse_numbers(known, numbers)
    if parsed.notna().all():
        return "number"
    share = float(parsed.notna().mean()) if len(known) else 0.0
    if share >= 0.9:
        others = ", ".join(repr(v) for v in known[parsed.isna()].unique()[:3])
        raise CustlabError(
            f"column {name}: {share:.1%} of its values are numbers and some are not "
            f"(such as {others}); declare it under features as number (the others are "
            "quarantined) or category, or drop it"
        )
    written = known.astype(str).str.fullmatch(r"[+-]?[\d.,' ]*\d[\d.,' ]*")
    if written.mean() >= 0.9:
        shown = ", ".join(repr(v) for v in known[written].unique()[:3])
        raise CustlabError(
            f"column {name}: numbers written with separators (such as {shown}) that "
            f"numbers.decimal {numbers.decimal!r} and numbers.thousands "
            f"{numbers.thousands!r} do not read; set them in the mapping"
        )
    levels = known.nunique()
    if levels > MAX_LEVELS:
        raise CustlabError(
            f"column {name}: {levels:,} distinct text values, too many for a category "
            f"(at most {MAX_LEVELS}); an identifier or free text belongs under drop"
        )
    return "category"


def _as_of(source: pd.DataFrame, mapping: LabelledMapping, now: datetime) -> pd.Series:
    rule = mapping.as_of
    if rule.column is None:
        day = rule.date or now.date()
        return pd.Series(pd.Timestamp(day, tz="UTC"), index=source.index)
    text = _blank(source[rule.column])
    parsed = pd.to_datetime(text, format=rule.format or "ISO8601", errors="coerce", utc=True)
    return parsed.dt.floor("D")


def clean_labelled(
    source: pd.DataFrame, mapping: LabelledMapping, now: datetime
) -> tuple[pd.DataFrame, list[FeatureColumn], RowSorter]:
    """Parse ids, label, as-of date and features, sorting out rows that cannot be used.

    Returns:
        The kept rows (``customer_id`` in clear, ``event_timestamp``, ``label`` 0/1 and
        the features, numbers as floats, categories as text), the feature columns, and
        the sorter with a reason for every row set aside.

    Raises:
        CustlabError: A column's kind cannot be inferred, or the label values are
            ambiguous (more than two, and the negative ones not named).
    """
    sorter = RowSorter(source)
    out = pd.DataFrame(index=source.index)
    customer = _blank(source[mapping.entity])
    sorter.set_aside(customer.isna(), "missing_customer_id")
    out[ENTITY_KEY] = customer

    label_text = _blank(source[mapping.label.column])
    sorter.set_aside(label_text.isna(), "missing_label")
    normal = label_text.map(lambda v: _normal(v) if isinstance(v, str) else None)
    positive = {_normal(v) for v in mapping.label.positive}
    negative = {_normal(v) for v in mapping.label.negative}
    seen = set(normal.dropna().unique())
    if not negative:
        others = seen - positive
        if len(others) > 1:
            shown = ", ".join(sorted(repr(v) for v in others)[:5])
            raise CustlabError(
                f"label column {mapping.label.column} has {len(others)} values besides the "
                f"positive ones ({shown}); name the negative ones under label.negative"
            )
        negative = others
    known_label = normal.isin(positive | negative)
    sorter.set_aside(
        normal.notna() & ~known_label,
        "unknown_label",
        label_text,
        f"one of {', '.join(sorted(positive | negative))}",
    )
    out[LABEL] = normal.isin(positive).astype(np.int8)

    stamps = _as_of(source, mapping, now)
    if mapping.as_of.column is not None:
        sorter.set_aside(
            stamps.isna(),
            "bad_as_of",
            source[mapping.as_of.column],
            mapping.as_of.format or "ISO 8601",
        )
    sorter.set_aside(stamps > pd.Timestamp(now), "as_of_in_future")
    out[EVENT_TIMESTAMP] = stamps

    roles = {mapping.entity, mapping.label.column, mapping.as_of.column, *mapping.drop}
    declared = mapping.features
    names = list(declared) if declared is not None else [c for c in source if c not in roles]
    if not names:
        raise CustlabError("the mapping leaves no feature column")
    columns = []
    for name in names:
        text = _blank(source[name])
        inferred = declared is None
        kind = infer_kind(name, text, mapping.numbers) if inferred else declared[name]
        if kind == "number":
            number = parse_numbers(text, mapping.numbers)
            sorter.set_aside(text.notna() & number.isna(), f"bad_number_{name}", text, "a number")
            sorter.set_aside(number.abs() == np.inf, f"bad_number_{name}", text, "a finite number")
            out[name] = number
        else:
            out[name] = text
        columns.append((name, kind, inferred))

    # One row per customer and as-of date: a second one would be counted twice.
    # Among rows still kept, so a refused row never pushes out a good one.
    sorter.set_aside(
        source[sorter.alive].duplicated().reindex(source.index, fill_value=False), "duplicate_row"
    )
    key = out.loc[sorter.alive, [ENTITY_KEY, EVENT_TIMESTAMP]]
    sorter.set_aside(key.duplicated().reindex(source.index, fill_value=False), "duplicate_customer")

    kept = out[sorter.alive]
    features = [
        FeatureColumn(
            name=name,
            kind=kind,
            inferred=inferred,
            blanks=int(kept[name].isna().sum()),
            levels=int(kept[name].nunique()) if kind == "category" else None,
        )
        for name, kind, inferred in columns
    ]
    return kept, features, sorter


def ingest_labelled(
    settings: Settings, source_path: Path, mapping_path: Path, now: datetime | None = None
) -> LabelledTable:
    """Ingest a labelled customer table into ``<home>/labelled/<name>/``.

    Raises:
        CustlabError: The mapping or the file cannot be used, or nothing usable is left
            (every row set aside, or a single class); nothing is written then.
    """
    now = now or datetime.now(UTC)
    mapping = load_labelled_mapping(mapping_path)
    source = read_text_table(source_path, mapping.source)
    needed = {mapping.entity, mapping.label.column, *(mapping.features or {}), *mapping.drop}
    if mapping.as_of.column:
        needed.add(mapping.as_of.column)
    require_columns(source, needed, source_path)
    kept, features, sorter = clean_labelled(source, mapping, now)
    reasons = {str(k): int(v) for k, v in sorter.reason.value_counts().items()}
    if kept.empty:
        hints = "; ".join(f"{r}: {h}" for r, h in sorter.hints.items())
        raise DataContractError(
            f"every row of {source_path.name} was set aside ({reasons})"
            + (f"; {hints}" if hints else "")
        )
    classes = kept[LABEL].value_counts()
    if len(classes) < 2:
        which = "positive" if classes.index[0] == 1 else "negative"
        raise DataContractError(
            f"every kept row of {source_path.name} is {which}: check label.positive "
            f"({', '.join(mapping.label.positive)}) against column {mapping.label.column}"
        )
    key = pseudonym_key(settings)
    kept = kept.assign(**{ENTITY_KEY: pseudonymize(kept[ENTITY_KEY], key, "customer")})
    table = LabelledTable(
        name=mapping.name,
        task=mapping.task,
        source=source_path.name,
        mapping=mapping_path.name,
        ingested_at=now,
        features=features,
        label_column=mapping.label.column,
        positive=list(mapping.label.positive),
        rows_in=len(source),
        rows_kept=len(kept),
        rows_quarantined=int(sorter.reason.notna().sum()),
        reasons=reasons,
        positive_share=float(kept[LABEL].mean()),
        as_of_first=kept[EVENT_TIMESTAMP].min().date(),
        as_of_last=kept[EVENT_TIMESTAMP].max().date(),
    )
    if table.rows_kept + table.rows_quarantined != table.rows_in:
        raise CustlabError("labelled ingest lost rows: kept + quarantined != rows in")
    names = [f.name for f in features]
    quarantine = _quarantine(source, sorter, mapping, key)
    replace_folder(
        labelled_folder(settings, mapping.name),
        {
            "features": kept[[ENTITY_KEY, EVENT_TIMESTAMP, *names]].reset_index(drop=True),
            "labels": kept[[ENTITY_KEY, EVENT_TIMESTAMP, LABEL]].reset_index(drop=True),
            "quarantine": quarantine,
        },
        {MANIFEST: json.loads(table.model_dump_json())},
    )
    return table


def _quarantine(
    source: pd.DataFrame, sorter: RowSorter, mapping: LabelledMapping, key: bytes
) -> pd.DataFrame:
    """Set-aside rows with their reason and data row number; the id pseudonymized, the
    dropped columns (which may hold anything) left out."""
    columns = [c for c in source.columns if c not in set(mapping.drop)]
    aside = source.loc[sorter.reason.notna(), columns].astype(object).copy()
    aside[mapping.entity] = pseudonymize(_blank(aside[mapping.entity]), key, "customer")
    aside.insert(0, "source_row", aside.index + 1)
    aside.insert(1, "reason", sorter.reason[sorter.reason.notna()])
    return aside.reset_index(drop=True).astype(str)


def labelled_tables(settings: Settings) -> list[LabelledTable]:
    """Every labelled table ingested into this home, by name."""
    root = settings.home / "labelled"
    if not root.is_dir():
        return []
    return [
        LabelledTable.model_validate_json((folder / f"{MANIFEST}.json").read_text())
        for folder in sorted(root.iterdir())
        if (folder / f"{MANIFEST}.json").is_file()
    ]


def read_labels(settings: Settings, table: LabelledTable) -> pd.DataFrame:
    """The table's ``customer_id``, ``event_timestamp`` and 0/1 ``label``."""
    return pd.read_parquet(labelled_folder(settings, table.name) / "labels.parquet")


def read_labelled_features(settings: Settings, table: LabelledTable) -> pd.DataFrame:
    return pd.read_parquet(features_path(settings, table.name))
