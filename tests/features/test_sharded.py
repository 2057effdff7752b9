"""Feature building on Dask: ranges of customers built on a local cluster of two workers
give the snapshot frames of one process, cell by cell, whatever the ranges hold."""

from __future__ import annotations

from pathlib import Path

import distributed
import pandas as pd
import pytest

from features.contract import read_raw_tables
from features.errors import DataContractError
from features.sharded import build_snapshots_on_dask, id_ranges
from features.simulate import World
from features.snapshots import build_snapshots
from features.tables import replace_folder
from tests.factories import orders_frame

RAW_TABLES = ("customers", "orders", "events", "tickets", "campaigns")


def _raw(folder: Path, tables: dict[str, pd.DataFrame]) -> Path:
    replace_folder(folder, tables)
    return folder


def _assert_same_as_one_process(client: distributed.Client, raw: Path, **kwargs) -> dict:
    here = build_snapshots(read_raw_tables(raw), as_of=kwargs.get("as_of"))
    on_dask = build_snapshots_on_dask(client, raw, **kwargs)
    assert list(on_dask) == list(here)
    for name, frame in here.items():
        pd.testing.assert_frame_equal(on_dask[name], frame, check_exact=True, obj=name)
    return on_dask


def test_the_small_world_on_four_ranges_equals_one_process(
    dask_local, small_world: World, tmp_path
):
    world = small_world.tables()
    raw = _raw(tmp_path / "raw", {name: world[name] for name in RAW_TABLES})
    snapshots = _assert_same_as_one_process(dask_local, raw, shard_customers=400)
    assert set(snapshots) == {"orders", "segments", "engagement", "marketing", "profile", "service"}
    # Every segment occurs: the quantiles were taken over the whole base, not a range.
    assert snapshots["segments"]["rfm_segment"].dropna().nunique() == 4


def test_ranges_without_rows_of_some_table_give_the_same_frames(dask_local, tmp_path):
    orders = orders_frame(
        [
            ("a", "2024-01-03", 10),
            ("a", "2024-02-14", 80),
            ("b", "2024-01-20", 30),
            ("c", "2024-02-01", 5),
            ("d", "2024-02-27", 200),
        ]
    )
    customers = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d", "e"],
            "signup_ts": pd.to_datetime(["2023-12-01"] * 4 + ["2024-02-05"], utc=True),
        }
    )
    tickets = pd.DataFrame(
        {
            "ticket_id": ["t1"],
            "customer_id": ["a"],
            "ticket_ts": pd.to_datetime(["2024-02-01"], utc=True),
            "kind": ["complaint"],
        }
    )
    events = pd.DataFrame(
        {
            "customer_id": ["d", "d"],
            "event_ts": pd.to_datetime(["2024-02-20", "2024-02-21"], utc=True),
            "event_type": ["visit", "add_to_cart"],
            "session_id": ["s1", "s1"],
        }
    )
    raw = _raw(
        tmp_path / "raw",
        {"orders": orders, "customers": customers, "tickets": tickets, "events": events},
    )
    # One customer a range: most ranges have no ticket, no event, or no order at all.
    snapshots = _assert_same_as_one_process(dask_local, raw, shard_customers=1)
    assert "e" in set(snapshots["profile"]["customer_id"])


def test_an_orders_only_source_gets_orders_and_segments(dask_local, tmp_path):
    orders = orders_frame([(f"c{i:02d}", f"2024-0{1 + i % 3}-1{i % 9}", 10 + i) for i in range(30)])
    raw = _raw(tmp_path / "raw", {"orders": orders})
    snapshots = _assert_same_as_one_process(dask_local, raw, shard_customers=7)
    assert list(snapshots) == ["orders", "segments"]


def test_given_as_of_dates_are_kept(dask_local, small_world: World, tmp_path):
    raw = _raw(tmp_path / "raw", {"orders": small_world.tables()["orders"]})
    newest = pd.DatetimeIndex([pd.Timestamp("2024-03-04", tz="UTC")])
    snapshots = _assert_same_as_one_process(dask_local, raw, as_of=newest, shard_customers=500)
    assert set(snapshots["orders"]["event_timestamp"]) == set(newest)


def test_a_key_repeated_across_ranges_is_refused_by_name(dask_local, tmp_path):
    orders = orders_frame([("a", "2024-01-03", 10), ("z", "2024-01-05", 20)])
    orders["order_id"] = ["same", "same"]  # "a" and "z" fall in different ranges
    raw = _raw(tmp_path / "raw", {"orders": orders})
    with pytest.raises(DataContractError, match="table 'orders', column 'order_id'"):
        build_snapshots_on_dask(dask_local, raw, shard_customers=1)


def test_an_empty_table_is_refused_as_in_one_process(dask_local, tmp_path):
    orders = orders_frame([("a", "2024-01-03", 10)])
    events = pd.DataFrame(
        {
            "customer_id": pd.Series([], dtype="string"),
            "event_ts": pd.to_datetime(pd.Series([], dtype="datetime64[ns]"), utc=True),
            "event_type": pd.Series([], dtype="string"),
        }
    )
    raw = _raw(tmp_path / "raw", {"orders": orders, "events": events})
    with pytest.raises(DataContractError, match="table 'events' is empty"):
        read_raw_tables(raw)
    with pytest.raises(DataContractError, match="table 'events' is empty"):
        build_snapshots_on_dask(dask_local, raw)


def test_a_missing_folder_or_orders_table_is_named(dask_local, tmp_path):
    with pytest.raises(DataContractError, match="does not exist"):
        build_snapshots_on_dask(dask_local, tmp_path / "nowhere")
    tickets_only = tmp_path / "tickets-only"
    tickets_only.mkdir()
    with pytest.raises(DataContractError, match="required table 'orders'"):
        build_snapshots_on_dask(dask_local, tickets_only)


def test_ranges_cover_every_id_once():
    import pyarrow as pa

    ids = pa.array([f"id{i:03d}" for i in range(10)][::-1], type=pa.large_string())
    ranges = id_ranges(ids, 3)
    assert len(ranges) == 3 and ranges[0][0] is None and ranges[-1][1] is None
    inside = [
        [i for i in ids.to_pylist() if (lo is None or i >= lo) and (hi is None or i < hi)]
        for lo, hi in ranges
    ]
    assert sorted(sum(inside, [])) == sorted(ids.to_pylist())
    assert [len(part) for part in inside] == [3, 3, 4]
    assert len(id_ranges(ids, 50)) == 10
