from pathlib import Path

import pandas as pd
import pytest

from features.contract import read_raw_tables, validate_table
from features.errors import DataContractError
from tests.factories import orders_frame


def test_valid_orders_pass():
    orders = orders_frame([("a", "2024-01-02", 10.0)])
    assert len(validate_table("orders", orders)) == 1


def test_empty_table_is_named():
    with pytest.raises(DataContractError, match="table 'orders' is empty"):
        validate_table("orders", orders_frame([]).iloc[0:0])


def test_missing_column_is_named():
    orders = orders_frame([("a", "2024-01-02", 10.0)]).drop(columns="amount")
    with pytest.raises(DataContractError, match="lacks required column\\(s\\) amount"):
        validate_table("orders", orders)


def test_wrong_type_names_the_column():
    orders = orders_frame([("a", "2024-01-02", 10.0)]).assign(order_ts="yesterday")
    with pytest.raises(DataContractError, match="column 'order_ts'"):
        validate_table("orders", orders)


def test_missing_folder_and_required_table(tmp_path: Path):
    with pytest.raises(DataContractError, match="does not exist"):
        read_raw_tables(tmp_path / "nowhere")
    with pytest.raises(DataContractError, match="required table 'orders' not found"):
        read_raw_tables(tmp_path)


def test_optional_tables_may_be_absent(tmp_path: Path):
    orders_frame([("a", "2024-01-02", 10.0)]).to_parquet(tmp_path / "orders.parquet")
    tables = read_raw_tables(tmp_path)
    assert set(tables) == {"orders"}
    assert isinstance(tables["orders"], pd.DataFrame)
