"""Ingestion of exports through mapping files: every row accounted for, bad rows set aside
with a reason, ids and PII pseudonymized."""

from pathlib import Path

import pandas as pd
import pytest

from custlab.settings import Settings
from features.contract import read_raw_tables
from features.errors import CustlabError, DataContractError
from features.ingest import ingest_file, ingest_frame, read_source
from features.mapping import Mapping, load_mapping

MAPPINGS = Path(__file__).resolve().parents[2] / "features" / "mappings"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CDNOW = Path(__file__).resolve().parents[3] / "shared" / "data" / "cdnow" / "CDNOW_master.txt"
KEY = b"test-key"


@pytest.fixture(scope="module")
def retail():
    mapping = load_mapping(MAPPINGS / "online_retail.yaml")
    source = read_source(FIXTURES / "online_retail_lines.csv", mapping)
    return source, ingest_frame(source, mapping, KEY)


def test_every_row_is_accounted_for(retail):
    source, result = retail
    assert result.rows_in == len(source) == 21
    assert result.rows_in == result.rows_kept + result.rows_quarantined
    assert len(result.quarantine) == result.rows_quarantined


@pytest.mark.parametrize(
    ("source_row", "reason"),
    [
        (7, "duplicate_row"),
        (8, "missing_customer_id"),
        (13, "bad_timestamp"),
        (14, "timestamp_out_of_range"),
        (15, "non_positive_amount"),
        (16, "bad_unit_price"),
        (10, "excluded_non_product"),
    ],
)
def test_bad_rows_land_in_quarantine_with_their_reason(retail, source_row, reason):
    _, result = retail
    row = result.quarantine.set_index("source_row").loc[source_row]
    assert row["reason"] == reason


def test_invoice_lines_become_orders_and_cancellations_returns(retail):
    _, result = retail
    assert result.rows_written == 11
    orders = result.frame.set_index("order_id")
    assert orders.loc["536365", "amount"] == pytest.approx(6 * 2.55 + 6 * 3.39 + 8 * 2.75)
    assert orders.loc["536367", "amount"] == pytest.approx(32 * 1.69 + 6 * 2.10)
    cancelled = orders.loc["C536383"]
    assert cancelled["is_return"] and cancelled["amount"] == pytest.approx(4.65)
    assert not orders.loc["536365", "is_return"]


def test_local_time_becomes_utc(retail):
    _, result = retail
    # 01/12/2010 08:26 in London (GMT in winter) is 08:26 UTC; summer time would shift it.
    first = result.frame.set_index("order_id").loc["536365", "order_ts"]
    assert first == pd.Timestamp("2010-12-01 08:26", tz="UTC")


def test_extreme_orders_are_flagged_and_kept(retail):
    _, result = retail
    assert result.flagged["order_id"].tolist() == ["581483"]
    assert "581483" in set(result.frame["order_id"])


def test_source_ids_never_appear_in_clear(retail):
    _, result = retail
    ids = {"17850", "13047", "14527", "15311", "12583", "16446"}
    assert not ids & set(result.frame["customer_id"])
    assert not ids & set(result.quarantine["CustomerID"].dropna())
    assert result.frame["customer_id"].str.fullmatch(r"[0-9a-f]{20}").all()


def test_the_same_id_gets_the_same_pseudonym_under_one_key_only(retail):
    source, result = retail
    mapping = load_mapping(MAPPINGS / "online_retail.yaml")
    again = ingest_frame(source, mapping, KEY)
    other = ingest_frame(source, mapping, b"another-key")
    assert again.frame["customer_id"].tolist() == result.frame["customer_id"].tolist()
    assert not set(other.frame["customer_id"]) & set(result.frame["customer_id"])


def test_the_line_says_what_happened(retail):
    _, result = retail
    line = result.line()
    assert line.startswith("orders: 21 rows in = 14 kept + 7 quarantined (")
    assert "duplicate_row 1" in line and "11 rows written" in line and "1 flagged" in line


def _customers_mapping(**extra) -> Mapping:
    return Mapping.model_validate(
        {
            "table": "customers",
            "columns": {"customer_id": "id", "signup_ts": "joined", "email": "mail"},
            "pii": {"email": "email"},
        }
        | extra
    )


def test_pii_without_a_key_is_refused_and_nothing_written(tmp_path: Path):
    source = tmp_path / "customers.csv"
    source.write_text("id,joined,mail\n1,2024-01-01,a@example.com\n")
    mapping = tmp_path / "customers.yaml"
    mapping.write_text(_customers_mapping().model_dump_json())
    with pytest.raises(CustlabError, match="PII column\\(s\\) email; set CUSTLAB_PSEUDONYM_KEY"):
        ingest_file(Settings(home=tmp_path / "home"), source, mapping)
    assert not (tmp_path / "home").exists()


def test_emails_are_normalized_then_pseudonymized():
    source = pd.DataFrame(
        {
            "id": ["1", "2"],
            "joined": ["2024-01-01", "2024-01-02"],
            "mail": ["Ann@Example.com ", "ann@example.com"],
        }
    )
    result = ingest_frame(source, _customers_mapping(), KEY)
    emails = result.frame["email"].tolist()
    assert emails[0] == emails[1] and "example" not in emails[0]


def test_duplicate_keys_are_quarantined():
    source = pd.DataFrame(
        {"id": ["1", "1"], "joined": ["2024-01-01", "2024-02-01"], "mail": [None, None]}
    )
    result = ingest_frame(source, _customers_mapping(), KEY)
    assert result.reasons == {"duplicate_key": 1} and result.rows_written == 1


@pytest.mark.parametrize(
    ("mapping_text", "message"),
    [
        ("table: orders\ncolumns: {customer_id: a}\n", "must map order_ts"),
        (
            "table: orders\ncolumns: {customer_id: a, order_ts: b, colour: c}\n",
            "unknown orders column",
        ),
        ("table: order\ncolumns: {}\n", "table"),
        ("table: orders\ncolumns: {customer_id: a, order_ts: b}\nspeed: 3\n", "speed"),
        ("table: [orders\n", "not valid YAML"),
    ],
)
def test_bad_mapping_files_are_named(tmp_path: Path, mapping_text: str, message: str):
    path = tmp_path / "m.yaml"
    path.write_text(mapping_text)
    with pytest.raises(CustlabError, match=message):
        load_mapping(path)


def test_source_lacking_a_mapped_column_is_named(tmp_path: Path):
    path = tmp_path / "orders.csv"
    path.write_text("InvoiceNo,CustomerID\n1,2\n")
    with pytest.raises(DataContractError, match="lacks column\\(s\\) InvoiceDate, Quantity"):
        read_source(path, load_mapping(MAPPINGS / "online_retail.yaml"))


def test_gzip_and_parquet_sources(tmp_path: Path):
    mapping = load_mapping(MAPPINGS / "online_retail.yaml")
    frame = pd.read_csv(FIXTURES / "online_retail_lines.csv", dtype=str)
    frame.to_csv(tmp_path / "lines.csv.gz", index=False, compression="gzip")
    zipped = ingest_frame(read_source(tmp_path / "lines.csv.gz", mapping), mapping, KEY)
    assert zipped.rows_written == 11
    frame.to_parquet(tmp_path / "lines.parquet")
    parquet_mapping = mapping.model_copy(
        update={"source": mapping.source.model_copy(update={"kind": "parquet"})}
    )
    from_parquet = ingest_frame(
        read_source(tmp_path / "lines.parquet", parquet_mapping), parquet_mapping, KEY
    )
    assert from_parquet.rows_written == 11


@pytest.mark.skipif(not CDNOW.exists(), reason="shared/data/cdnow is not beside this checkout")
def test_cdnow_reconciles_and_replaces_a_simulated_world(tmp_path: Path):
    from custlab import pipeline
    from features.simulate import WorldSpec

    settings = Settings(home=tmp_path)
    pipeline.simulate(settings, WorldSpec(customers=100, weeks=30))
    result = ingest_file(settings, CDNOW, MAPPINGS / "cdnow.yaml")
    assert (result.rows_in, result.rows_kept, result.rows_quarantined) == (69_659, 69_579, 80)
    assert result.reasons == {"non_positive_amount": 80}
    tables = read_raw_tables(settings.raw_dir)
    assert set(tables) == {"orders"}  # the simulated customers are gone
    # 68 of the 23,570 customers bought only $0.00 lines: they are in quarantine, not lost.
    quarantined_only = set(result.quarantine["customer_id"]) - set(tables["orders"]["customer_id"])
    assert tables["orders"]["customer_id"].nunique() == 23_570 - 68
    assert len(quarantined_only) == 68
    report = (tmp_path / "ingest" / "orders" / "report.json").read_text()
    assert '"rows_in": 69659' in report


def test_extremes_can_be_quarantined_instead_of_flagged(retail):
    source, _ = retail
    mapping = load_mapping(MAPPINGS / "online_retail.yaml")
    strict = mapping.model_copy(
        update={"extreme": mapping.extreme.model_copy(update={"action": "quarantine"})}
    )
    result = ingest_frame(source, strict, KEY)
    assert result.reasons["extreme_amount"] == 1
    assert "581483" not in set(result.frame["order_id"]) and result.flagged.empty
    assert result.rows_in == result.rows_kept + result.rows_quarantined


def test_integral_floats_count_as_integers_and_fractions_are_set_aside():
    mapping = load_mapping(MAPPINGS / "online_retail.yaml")
    source = pd.read_csv(FIXTURES / "online_retail_lines.csv", dtype=str).head(6)
    source["Quantity"] = ["6.0", "6", "8.00", "6.0", "2.5", "6.0"]
    result = ingest_frame(source, mapping, KEY)
    assert result.reasons == {"fractional_quantity": 1}
    orders = result.frame.set_index("order_id")
    assert orders.loc["536365", "amount"] == pytest.approx(6 * 2.55 + 6 * 3.39 + 8 * 2.75)
    assert result.rows_in == result.rows_kept + result.rows_quarantined


def test_a_rule_needing_an_unmapped_column_is_refused_before_reading(tmp_path: Path):
    path = tmp_path / "m.yaml"
    path.write_text(
        "table: orders\ncolumns: {customer_id: a, order_ts: b}\n"
        "amount: {rule: quantity_x_unit_price, unit_price: p}\n"
    )
    with pytest.raises(CustlabError, match="quantity_x_unit_price.*needs quantity mapped"):
        load_mapping(path)
    path.write_text(
        "table: orders\ncolumns: {customer_id: a, order_ts: b, amount: c}\n"
        "returns: {rule: negative_quantity}\n"
    )
    with pytest.raises(CustlabError, match="negative_quantity.*needs quantity mapped"):
        load_mapping(path)


def test_iso_timestamps_are_read_beside_the_mapping_format_and_said_so():
    mapping = load_mapping(MAPPINGS / "online_retail.yaml")
    source = pd.read_csv(FIXTURES / "online_retail_lines.csv", dtype=str).head(6)
    source.loc[0:2, "InvoiceDate"] = "2010-12-01T08:26:00"
    result = ingest_frame(source, mapping, KEY)
    assert result.reasons == {}
    assert any("3 values read as ISO 8601 beside the format" in note for note in result.notes)
    # London in December is UTC: the ISO values land where the formatted ones do.
    first = result.frame.set_index("order_id").loc["536365", "order_ts"]
    assert first == pd.Timestamp("2010-12-01 08:26", tz="UTC")


def test_a_rule_most_rows_fail_is_named_with_its_format_and_values():
    mapping = load_mapping(MAPPINGS / "online_retail.yaml")
    source = pd.read_csv(FIXTURES / "online_retail_lines.csv", dtype=str).head(6)
    source["InvoiceDate"] = ["12.01.2010 08:26"] * 5 + ["01/12/2010 08:26"]
    result = ingest_frame(source, mapping, KEY)
    line = result.line()
    assert "most rows failed bad_timestamp: expected %d/%m/%Y %H:%M or ISO 8601" in line
    assert "'12.01.2010 08:26'" in line
    # Never an id: the customer ids of those rows are not shown.
    assert "17850" not in line
    source["InvoiceDate"] = "soon"
    with pytest.raises(DataContractError, match="bad_timestamp: expected .* such as 'soon'"):
        ingest_frame(source, mapping, KEY)


def test_non_product_lines_are_excluded_with_their_rule_and_counted():
    mapping = load_mapping(MAPPINGS / "online_retail.yaml")
    source = pd.read_csv(FIXTURES / "online_retail_lines.csv", dtype=str).head(6)
    source.loc[1, "StockCode"] = "POST"
    source.loc[2, "StockCode"] = "gift_0001_20"
    result = ingest_frame(source, mapping, KEY)
    assert result.reasons == {"excluded_non_product": 2}
    assert result.rows_in == result.rows_kept + result.rows_quarantined
    # The invoice keeps its product line only.
    assert result.frame.set_index("order_id").loc["536365", "amount"] == pytest.approx(6 * 2.55)


def test_an_exclude_rule_with_nothing_to_match_is_refused(tmp_path: Path):
    path = tmp_path / "m.yaml"
    path.write_text(
        "table: orders\ncolumns: {customer_id: a, order_ts: b, amount: c}\n"
        "exclude: {fees: {column: code}}\n"
    )
    with pytest.raises(CustlabError, match="exclude.fees: .*needs 'values' or 'pattern'"):
        load_mapping(path)
