"""Snapshots of every feature family built on a Dask cluster, a range of customers a task.

The customers (every id of ``orders`` and ``customers``) are cut into ranges of ids. One
task per range reads that range's rows of every raw table itself (the raw folder must be
one every worker reaches), lays the snapshot grid on the as-of dates of the whole base and
computes each family on it: a family's features of a customer at ``t`` read that
customer's records alone, so a range computes them as the whole base would. What compares
a customer with everyone at the same date (a family's ``finish``: the RFM segment's
quantiles) runs once here, on all the ranges' rows put back in grid order. The answer is
:func:`features.snapshots.build_snapshots`' on the same tables, cell by cell (tested).

The driver reads only what must be seen whole: the ids (for the ranges, and for the
contract's unique keys, which no range can check alone) and the order times (for the
as-of dates). Each worker holds its range's tables; the snapshot frames meet here.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.arrow import to_arrow_strings
from features.contract import (
    ENTITY_KEY,
    EVENT_TIMESTAMP,
    RAW_SCHEMAS,
    raw_table_paths,
    read_raw_columns,
    read_raw_shard,
)
from features.families import FAMILIES
from features.snapshots import (
    GRID_TABLES,
    as_of_dates,
    computed_frame,
    finished_frame,
    snapshot_grid,
)

if TYPE_CHECKING:
    import distributed

logger = logging.getLogger(__name__)

# A range of ids: from ``first`` (inclusive) to ``end`` (exclusive); None is unbounded.
IdRange = tuple[str | None, str | None]


def id_ranges(ids: pa.Array, shards: int) -> list[IdRange]:
    """``shards`` ranges (fewer when there are fewer ids) holding about as many of the
    sorted distinct ``ids`` each, together covering every string."""
    ids = ids.take(pc.sort_indices(ids))
    shards = max(1, min(shards, len(ids)))
    cuts = [ids[i * len(ids) // shards].as_py() for i in range(1, shards)]
    bounds = [None, *cuts, None]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def _checked_whole(raw_dir: Path) -> tuple[pa.Array, pd.DataFrame]:
    """The distinct customer ids and the order times, once every key the contract holds
    unique is checked over its whole table (a range sees only its own rows)."""
    id_columns = []
    orders = None
    for name in raw_table_paths(raw_dir):
        # Of a table whose customers get no snapshot rows of their own, only a key held
        # unique is read (of one without, only the row count).
        known = name in GRID_TABLES
        wanted = [c for c, spec in RAW_SCHEMAS[name].columns.items() if spec.unique]
        wanted += ([ENTITY_KEY] if known else []) + (["order_ts"] if name == "orders" else [])
        frame = read_raw_columns(raw_dir, name, list(dict.fromkeys(wanted)))
        if known:
            id_columns.append(to_arrow_strings(frame[ENTITY_KEY]).cast(pa.large_string()))
        if name == "orders":
            orders = frame[["order_ts"]]
        del frame
    assert orders is not None  # raw_table_paths requires it
    return pc.unique(pa.chunked_array(id_columns)), orders


def _shard_frames(
    raw_dir: Path, ids: IdRange, dates: pd.DatetimeIndex, families: Sequence[str]
) -> dict[str, pd.DataFrame]:
    """One range's computed frame of every family whose table is present (on a worker)."""
    tables = read_raw_shard(raw_dir, *ids)
    grid = snapshot_grid(tables, dates)
    return {
        name: computed_frame(FAMILIES[name], grid, tables)
        for name in families
        if FAMILIES[name].available(tables)
    }


def _in_grid_order(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """The ranges' rows as the whole grid orders them: date by date, and within a date
    by id, which the ranges already are in turn."""
    frame = pd.concat(parts, ignore_index=True)
    stamps = frame[EVENT_TIMESTAMP].to_numpy(dtype="datetime64[ns]").view(np.int64)
    if (np.diff(stamps) >= 0).all():
        return frame
    return frame.iloc[np.argsort(stamps, kind="stable")].reset_index(drop=True)


def build_snapshots_on_dask(
    client: distributed.Client,
    raw_dir: Path,
    as_of: Sequence[pd.Timestamp] | pd.DatetimeIndex | None = None,
    families: Iterable[str] | None = None,
    shard_customers: int = 250_000,
) -> dict[str, pd.DataFrame]:
    """:func:`features.snapshots.build_snapshots` of the raw tables in ``raw_dir``,
    computed on the cluster ``client`` talks to.

    Args:
        client: A Dask client; its workers must reach ``raw_dir``.
        raw_dir: The raw tables (``<table>.parquet``).
        as_of: Week-aligned as-of dates; default those of the whole orders table.
        families: Only these families (default all).
        shard_customers: At most this many customers a task, and at least one task a
            worker thread.

    Raises:
        DataContractError: A table is missing, empty or breaks the contract.
    """
    raw_dir = raw_dir.resolve()
    ids, orders = _checked_whole(raw_dir)
    dates = pd.DatetimeIndex(as_of if as_of is not None else as_of_dates(orders))
    wanted = list(families) if families is not None else list(FAMILIES)
    threads = sum(client.nthreads().values()) or 1
    ranges = id_ranges(ids, max(threads, math.ceil(len(ids) / shard_customers)))
    futures = [
        client.submit(_shard_frames, raw_dir, bounds, dates, wanted, pure=False)
        for bounds in ranges
    ]
    shards = client.gather(futures)
    snapshots = {
        name: finished_frame(FAMILIES[name], _in_grid_order([s[name] for s in shards]))
        for name in wanted
        if name in shards[0]
    }
    left_out = [name for name in wanted if name not in snapshots]
    logger.info(
        "built %d snapshot rows over %d as-of dates for %s on %d Dask task(s)%s",
        len(next(iter(snapshots.values()))),
        len(dates),
        ", ".join(snapshots),
        len(ranges),
        f"; left out (no source table): {', '.join(left_out)}" if left_out else "",
    )
    return snapshots
