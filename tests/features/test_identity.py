from pathlib import Path

import pandas as pd
import pytest

from features.identity import resolve_identities
from features.ingest import ingest_frame
from features.mapping import Mapping, load_mapping

IDS = {"email": "email", "phone": "phone", "member": "member"}


def _people() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "email": ["e1", "e1", None, "e3", None, "p1"],
            "phone": ["p1", None, "p1", None, None, None],
            "member": ["m1", "m2", "m3", "m4", None, "m9"],
        }
    )


def test_rows_linked_through_shared_identifiers_are_one_customer():
    keys = resolve_identities(_people(), IDS).keys.tolist()
    assert keys[0] == keys[1] == keys[2]  # e1 joins rows 0-1, p1 joins rows 0-2
    assert len({keys[0], keys[3], keys[5]}) == 3
    assert keys[4] is None  # no identifier at all: nothing ties the row to a person


def test_values_of_different_kinds_never_match():
    keys = resolve_identities(_people(), IDS).keys.tolist()
    assert keys[5] != keys[0]  # email "p1" is not phone "p1"


def test_resolution_is_deterministic_under_row_order():
    people = _people()
    shuffled = people.sample(frac=1.0, random_state=3)
    first = resolve_identities(people, IDS).keys
    second = resolve_identities(shuffled, IDS).keys
    pd.testing.assert_series_equal(first, second.reindex(first.index))


def test_merge_report_names_each_merged_customer():
    resolution = resolve_identities(_people(), IDS)
    assert resolution.merges[["rows", "identifiers"]].values.tolist() == [[3, 5]]
    assert resolution.report() == {
        "rows": 6,
        "customers": 3,
        "merged_customers": 1,
        "rows_merged": 3,
        "largest_merge": 3,
    }


@pytest.fixture()
def customer_export() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "member_no": ["100", "200", "300"],
            "joined": ["2024-03-01", "2024-01-15", "2024-02-01"],
            "mail": ["Ann@Example.com", "ann@example.com ", "bob@example.com"],
            "tel": ["+44 20 7946 0000", None, "+44 20 7946 0999"],
            "consent": ["yes", "no", "yes"],
        }
    )


CUSTOMER_MAPPING = load_mapping(
    Path(__file__).resolve().parents[2] / "features" / "mappings" / "crm_customers.yaml"
)


def test_ingest_folds_linked_customer_records_and_links_later_tables(customer_export):
    result = ingest_frame(customer_export, CUSTOMER_MAPPING, b"k")
    customers = result.frame
    assert len(customers) == 2 and result.rows_in == 3 and result.rows_kept == 3
    ann = customers[customers["email"].notna()].sort_values("signup_ts").iloc[0]
    assert ann["signup_ts"] == pd.Timestamp("2024-01-15", tz="UTC")  # earliest of the two
    assert "identity: 2 rows linked into 1 customers" in result.line()

    orders = pd.DataFrame(
        {"oid": ["a", "b"], "member": ["100", "200"], "ts": ["2024-04-01"] * 2, "amt": ["5", "7"]}
    )
    order_mapping = Mapping.model_validate(
        {
            "table": "orders",
            "columns": {
                "order_id": "oid",
                "customer_id": "member",
                "order_ts": "ts",
                "amount": "amt",
            },
        }
    )
    linked = ingest_frame(orders, order_mapping, b"k", links=result.resolution.links)
    assert linked.frame["customer_id"].nunique() == 1
    assert linked.frame["customer_id"].iloc[0] in set(customers["customer_id"])
