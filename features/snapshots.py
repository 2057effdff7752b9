"""Point-in-time snapshots of every feature family at weekly as-of dates.

One snapshot grid (who is known at which as-of date) is laid once and every family whose
source table exists fills its columns on it, so all families share their rows. A family
whose table is absent is left out: no table, no view data, no zeros standing in for it.
The point-in-time rule lives in :mod:`features.families.base`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.arrow import lookup, to_arrow_strings
from features.contract import ENTITY_KEY, EVENT_TIMESTAMP
from features.families import FAMILIES, FeatureFamily
from features.families.base import WEEK, Feature, SnapshotGrid, Tables, week_floor
from features.history import purchase_mask

logger = logging.getLogger(__name__)


def as_of_dates(orders: pd.DataFrame) -> pd.DatetimeIndex:
    """Weekly as-of dates from the first week boundary after the first order to the one
    after the last order (that last snapshot is "now": what online serving sees)."""
    first = week_floor(orders["order_ts"].min()) + WEEK
    last = week_floor(orders["order_ts"].max()) + WEEK
    return pd.date_range(first, last, freq="7D")


# The tables whose customers get snapshot rows: who signed up, or bought.
GRID_TABLES = ("orders", "customers")


def snapshot_grid(
    tables: Tables, as_of: Sequence[pd.Timestamp] | pd.DatetimeIndex | None = None
) -> SnapshotGrid:
    """Every customer known before each as-of date: signed up (customers table) or first
    purchased (orders) strictly before it."""
    orders = tables["orders"]
    customers = tables.get("customers")
    columns = [to_arrow_strings(orders[ENTITY_KEY])]
    if customers is not None:
        columns.append(to_arrow_strings(customers[ENTITY_KEY]))
    ids = pc.unique(pa.chunked_array([c.cast(pa.large_string()) for c in columns]))
    ids = ids.take(pc.sort_indices(ids))

    known_from = np.full(len(ids), np.iinfo(np.int64).max)
    order_codes = lookup(orders[ENTITY_KEY], ids)
    bought = purchase_mask(orders)
    np.minimum.at(
        known_from,
        order_codes[bought],
        orders["order_ts"].to_numpy(dtype="datetime64[ns]").view(np.int64)[bought],
    )
    if customers is not None:
        signup = customers["signup_ts"].to_numpy(dtype="datetime64[ns]").view(np.int64)
        customer_codes = lookup(customers[ENTITY_KEY], ids)
        known_from[customer_codes] = np.minimum(known_from[customer_codes], signup)
    dates = pd.DatetimeIndex(as_of if as_of is not None else as_of_dates(orders))
    grid = SnapshotGrid(ids, known_from, dates)
    # The families look these up again; the grid remembers them.
    grid.remember_codes(orders[ENTITY_KEY], order_codes)
    if customers is not None:
        grid.remember_codes(customers[ENTITY_KEY], customer_codes)
    return grid


def computed_frame(family: FeatureFamily, grid: SnapshotGrid, tables: Tables) -> pd.DataFrame:
    """What ``family.compute`` fills on the grid: keys, then its features in declared
    order (numbers as float32, categories as strings), then the columns its ``finish``
    still needs, while the features ``finish`` makes are not there yet."""
    columns = family.compute(grid, tables)
    missing = [
        name for name in family.feature_names if name not in columns and family.finish is None
    ]
    if missing:
        raise ValueError(f"family {family.name} did not compute {', '.join(missing)}")
    frame = grid.keys()
    for feature in family.features:
        if feature.name in columns:
            frame[feature.name] = _typed(feature, columns[feature.name])
    for name, values in columns.items():
        if name not in frame:
            frame[name] = values
    return frame


def finished_frame(family: FeatureFamily, frame: pd.DataFrame) -> pd.DataFrame:
    """A :func:`computed_frame` (of the whole grid, or its shards' put together in grid
    order) with the family's remaining features made by ``finish``: keys, then every
    feature in declared order."""
    if family.finish is None and list(frame.columns) == [
        ENTITY_KEY,
        EVENT_TIMESTAMP,
        *family.feature_names,
    ]:
        return frame  # nothing left to make: no copy
    made = family.finish(frame) if family.finish is not None else {}
    missing = [name for name in family.feature_names if name not in frame and name not in made]
    if missing:
        raise ValueError(f"family {family.name} did not compute {', '.join(missing)}")
    finished = frame[[ENTITY_KEY, EVENT_TIMESTAMP]].copy()
    for feature in family.features:
        finished[feature.name] = (
            _typed(feature, made[feature.name]) if feature.name in made else frame[feature.name]
        )
    return finished


def family_frame(family: FeatureFamily, grid: SnapshotGrid, tables: Tables) -> pd.DataFrame:
    """One family's snapshot table: keys, then its features in declared order."""
    return finished_frame(family, computed_frame(family, grid, tables))


def _typed(feature: Feature, values: object) -> object:
    return (
        np.asarray(values, dtype=np.float32)
        if feature.kind == "number"
        else pd.array(values, dtype="string[pyarrow]")
    )


def build_snapshots(
    tables: Tables,
    as_of: Sequence[pd.Timestamp] | pd.DatetimeIndex | None = None,
    families: Iterable[str] | None = None,
) -> dict[str, pd.DataFrame]:
    """Compute the snapshot table of every family whose source table is present.

    Args:
        tables: Contract tables by name; ``orders`` is required.
        as_of: Week-aligned as-of dates; default :func:`as_of_dates`.
        families: Only these families (default all).

    Returns:
        Family name -> frame with ``customer_id``, ``event_timestamp`` (the as-of date)
        and the family's features, one row for each customer known before each date.
    """
    grid = snapshot_grid(tables, as_of)
    wanted = list(families) if families is not None else list(FAMILIES)
    present = [name for name in wanted if FAMILIES[name].available(tables)]
    # Families are independent given the grid, and their heavy steps (Arrow lookups,
    # sorts, array arithmetic) release the GIL: two threads keep both cores busy. The
    # first two others run together; the family with the largest source table starts
    # after them, beside the small ones, so its memory never adds to another large one's.
    largest = sorted(present, key=lambda name: len(tables[FAMILIES[name].source]))[-1:]
    others = [name for name in present if name not in largest]
    order = others[:2] + largest + others[2:]
    with ThreadPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
        frames = pool.map(lambda name: family_frame(FAMILIES[name], grid, tables), order)
        built = dict(zip(order, frames, strict=True))
    snapshots = {name: built[name] for name in present}
    left_out = [name for name in wanted if name not in snapshots]
    logger.info(
        "built %d snapshot rows over %d as-of dates for %s%s",
        grid.rows,
        len(grid.dates),
        ", ".join(snapshots),
        f"; left out (no source table): {', '.join(left_out)}" if left_out else "",
    )
    return snapshots
