"""Labelled customer tables: every row accounted for, kinds inferred or refused loudly,
ids pseudonymized, nothing written on failure."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from custlab.settings import Settings
from features.errors import CustlabError
from features.labelled import (
    LABEL,
    ingest_labelled,
    labelled_folder,
    labelled_tables,
    read_labelled_features,
    read_labels,
)

NOW = datetime(2026, 6, 1, tzinfo=UTC)

# A European export: semicolons, decimal commas, quoted numbers, blanks of several
# spellings, labels in mixed case.
EUROPEAN = """\
kunde;vertrag;monatlich;gesamt;alter;gekuendigt;notiz
K-001;monat;"29,85";"29,85";34;Ja;x
K-002;jahr;56,95;1.889,50;;nein;y
K-003;monat;53,85;108,15;51;JA;z
K-004;zwei jahre;42,30;1.840,75;NA;Nein;w
K-005;monat;70,70;;45;ja;v
K-006;jahr;99,65;820,50;n/a;nein;u
"""


def _write(tmp_path: Path, text: str, mapping: str, name: str = "export.csv") -> tuple[Path, Path]:
    source = tmp_path / name
    source.write_text(text, encoding="utf-8")
    mapping_path = tmp_path / "mapping.yaml"
    mapping_path.write_text(mapping, encoding="utf-8")
    return source, mapping_path


EUROPEAN_MAPPING = """\
name: vertrag
task: churn
source: {separator: ";"}
entity: kunde
label: {column: gekuendigt, positive: ["ja"]}
numbers: {decimal: ",", thousands: "."}
as_of: {date: 2026-05-31}
drop: [notiz]
"""


def test_european_export_parses_numbers_blanks_and_labels(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    source, mapping = _write(tmp_path, EUROPEAN, EUROPEAN_MAPPING)
    table = ingest_labelled(settings, source, mapping, now=NOW)

    assert (table.rows_in, table.rows_kept, table.rows_quarantined) == (6, 6, 0)
    kinds = {f.name: f.kind for f in table.features}
    assert kinds == {
        "vertrag": "category",
        "monatlich": "number",
        "gesamt": "number",
        "alter": "number",
    }
    assert "notiz" not in kinds  # dropped
    features = read_labelled_features(settings, table)
    assert features["gesamt"].tolist()[:2] == [29.85, 1889.5]
    assert np.isnan(features["gesamt"].iloc[4])  # a blank is unknown, not zero
    assert features["alter"].isna().sum() == 3  # "", "NA" and "n/a"
    labels = read_labels(settings, table)
    assert labels[LABEL].tolist() == [1, 0, 1, 0, 1, 0]
    assert table.positive_share == pytest.approx(0.5)
    assert (labels["event_timestamp"] == pd.Timestamp("2026-05-31", tz="UTC")).all()


def test_ids_leave_only_as_pseudonyms(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    text = EUROPEAN + "K-007;monat;10,00;10,00;20;vielleicht;t\n"
    mapping = EUROPEAN_MAPPING.replace('positive: ["ja"]}', 'positive: ["ja"], negative: ["nein"]}')
    source, mapping_path = _write(tmp_path, text, mapping)
    table = ingest_labelled(settings, source, mapping_path, now=NOW)
    assert table.reasons == {"unknown_label": 1}
    folder = labelled_folder(settings, table.name)
    written = b"".join(path.read_bytes() for path in folder.iterdir())
    assert b"K-00" not in written
    quarantine = pd.read_parquet(folder / "quarantine.parquet")
    assert quarantine["reason"].tolist() == ["unknown_label"]
    assert quarantine["source_row"].tolist() == ["7"]


def test_more_than_two_label_values_need_the_negative_ones(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    text = EUROPEAN + "K-007;monat;10,00;10,00;20;vielleicht;t\n"
    source, mapping = _write(tmp_path, text, EUROPEAN_MAPPING)
    with pytest.raises(CustlabError, match="label.negative") as error:
        ingest_labelled(settings, source, mapping, now=NOW)
    assert "vielleicht" in str(error.value)
    assert not (settings.home / "labelled").exists()


def test_mostly_numeric_column_is_refused_until_declared(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    rows = [f"c{i},{i % 2},{i * 1.5}" for i in range(40)] + ["c40,1,unbekannt"]
    text = "id,churned,spend\n" + "\n".join(rows) + "\n"
    mapping = "name: t\ntask: churn\nentity: id\nlabel: {column: churned, positive: ['1']}\n"
    source, mapping_path = _write(tmp_path, text, mapping)
    with pytest.raises(CustlabError, match="column spend: 97.6% of its values are numbers"):
        ingest_labelled(settings, source, mapping_path, now=NOW)

    mapping_path.write_text(mapping + "features: {spend: number}\n")
    table = ingest_labelled(settings, source, mapping_path, now=NOW)
    assert table.reasons == {"bad_number_spend": 1}
    assert table.rows_kept == 40


def test_identifier_like_text_is_not_a_category(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    rows = [f"c{i},{i % 2},mail{i}@example.com" for i in range(300)]
    text = "id,churned,email\n" + "\n".join(rows) + "\n"
    mapping = "name: t\ntask: churn\nentity: id\nlabel: {column: churned, positive: ['1']}\n"
    source, mapping_path = _write(tmp_path, text, mapping)
    with pytest.raises(CustlabError, match="column email: 300 distinct text values"):
        ingest_labelled(settings, source, mapping_path, now=NOW)


def test_a_single_class_is_refused_and_nothing_written(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    text = "id,churned,x\n" + "\n".join(f"c{i},No,{i}" for i in range(20)) + "\n"
    mapping = "name: t\ntask: churn\nentity: id\nlabel: {column: churned, positive: ['Yes']}\n"
    source, mapping_path = _write(tmp_path, text, mapping)
    with pytest.raises(CustlabError, match="every kept row of export.csv is negative"):
        ingest_labelled(settings, source, mapping_path, now=NOW)
    assert labelled_tables(settings) == []


def test_duplicates_blanks_and_bad_dates_are_set_aside(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    text = (
        "id|snapshot|y|x\n"
        "a|2026-01-31|1|1.0\n"
        "a|2026-01-31|1|1.0\n"  # the same row twice
        "a|2026-01-31|0|2.0\n"  # a second row of a on the same date
        "|2026-01-31|0|2.0\n"
        "b|31.01.2026|0|2.0\n"
        "c|2026-02-28||3.0\n"
        "d|2030-01-01|1|4.0\n"
        "e|2026-02-28|0|5.0\n"
    )
    mapping = (
        "name: t\ntask: propensity\nsource: {separator: '|'}\nentity: id\n"
        "label: {column: y, positive: ['1']}\nas_of: {column: snapshot}\n"
    )
    source, mapping_path = _write(tmp_path, text, mapping)
    table = ingest_labelled(settings, source, mapping_path, now=NOW)
    assert table.reasons == {
        "duplicate_row": 1,
        "duplicate_customer": 1,
        "missing_customer_id": 1,
        "bad_as_of": 1,
        "missing_label": 1,
        "as_of_in_future": 1,
    }
    assert table.rows_kept + table.rows_quarantined == table.rows_in == 8
    manifest = json.loads((labelled_folder(settings, "t") / "table.json").read_text())
    assert manifest["as_of_first"] == "2026-01-31" and manifest["as_of_last"] == "2026-02-28"


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ("features: {churned: number}\n", "column 'churned' is the label"),
        ("drop: [id]\n", "column 'id' is the entity"),
        ("as_of: {date: 2026-01-01, column: d}\n", "a date or a column, not both"),
        ("colour: blue\n", "colour: Extra inputs are not permitted"),
    ],
)
def test_mapping_mistakes_are_named(tmp_path: Path, mapping: str, message: str) -> None:
    settings = Settings(home=tmp_path / "home")
    base = "name: t\ntask: churn\nentity: id\nlabel: {column: churned, positive: ['1']}\n"
    source, mapping_path = _write(tmp_path, "id,churned\na,1\n", base + mapping)
    with pytest.raises(CustlabError, match=message):
        ingest_labelled(settings, source, mapping_path, now=NOW)


def test_numbers_with_unread_separators_name_the_setting(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    rows = [f"c{i}\t{i % 2}\t{1000 + i * 7:,}.50" for i in range(300)]
    text = "id\tchurned\tbalance\n" + "\n".join(rows) + "\n"
    mapping = (
        'name: t\ntask: churn\nsource: {separator: "\\t"}\nentity: id\n'
        "label: {column: churned, positive: ['1']}\n"
    )
    source, mapping_path = _write(tmp_path, text, mapping)
    with pytest.raises(CustlabError, match="column balance: numbers written with separators"):
        ingest_labelled(settings, source, mapping_path, now=NOW)
    mapping_path.write_text(mapping + 'numbers: {thousands: ","}\n')
    table = ingest_labelled(settings, source, mapping_path, now=NOW)
    assert read_labelled_features(settings, table)["balance"].iloc[1] == 1007.5
