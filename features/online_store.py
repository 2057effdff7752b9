"""custlab's Feast online store: SQLite, one typed row per customer and feature view.

Feast's stock SQLite store keeps one row per (entity, feature) holding a serialized
``ValueProto``; materializing a customer costs one upsert and one proto per feature, and
reading one decodes a proto per feature. This store keeps the same file-based simplicity
with a columnar layout: table ``{project}_{view}`` (Feast's own naming) holds one row per
customer keyed by ``customer_id``, one column per feature (``REAL`` for floats, ``INTEGER``
for ints and bools, ``TEXT`` for strings; SQL ``NULL`` for a missing value or a NaN
float), and ``event_ts``/``created_ts`` as integer microseconds since the epoch (UTC).

Feast finds it from ``feature_store.yaml``::

    online_store:
      type: features.online_store.CustomerOnlineStore
      path: /abs/path/online_custlab.db

``type`` is a class path: Feast imports ``CustomerOnlineStoreConfig`` (the path plus
``Config``) from this module to validate the block, then ``CustomerOnlineStore`` (the
config's class name minus ``Config``) to serve it. ``feast apply``, ``feast materialize``,
``FeatureStore.write_to_online_store`` and ``get_online_features`` work through the
``OnlineStore`` interface. The bulk path, :meth:`CustomerOnlineStore.write_frame` and
:meth:`CustomerOnlineStore.read_frame`, moves pandas frames with no protos at all.

A write never replaces a row with an older one: the upsert applies only when the incoming
``(event_ts, created_ts)`` is at least the stored one, so a late backfill cannot undo a
newer materialization, while re-writing the same instant (a corrected re-run) does.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from feast import Entity, FeatureView
from feast.feature_view import DUMMY_ENTITY_NAME
from feast.infra.online_stores.helpers import compute_table_id
from feast.infra.online_stores.online_store import OnlineStore
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.repo_config import FeastConfigBaseModel, RepoConfig
from feast.types import String
from feast.value_type import ValueType
from pydantic import StrictStr

from features.contract import ENTITY_KEY, EVENT_TIMESTAMP

logger = logging.getLogger(__name__)

_EVENT_TS = "event_ts"
_CREATED_TS = "created_ts"
_RESERVED = {ENTITY_KEY, _EVENT_TS, _CREATED_TS}
# Feast value type -> (SQLite column type, ValueProto field).
_TYPES: dict[ValueType, tuple[str, str]] = {
    ValueType.FLOAT: ("REAL", "float_val"),
    ValueType.DOUBLE: ("REAL", "double_val"),
    ValueType.INT32: ("INTEGER", "int32_val"),
    ValueType.INT64: ("INTEGER", "int64_val"),
    ValueType.BOOL: ("INTEGER", "bool_val"),
    ValueType.STRING: ("TEXT", "string_val"),
}
# WAL lets serving read while a materialization writes. synchronous=NORMAL is safe in WAL
# mode: a crash never corrupts the file, a power cut can lose only the last commits, which
# re-materializing from the offline store restores. mmap and a larger page cache serve
# reads from mapped pages rather than through read(2) copies (reads are CPU-bound).
_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA busy_timeout=10000",
    "PRAGMA cache_size=-131072",
    "PRAGMA mmap_size=4294967296",
)
_WRITE_CHUNK = 50_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# One connection per process and file: the sqlite3 module is thread safe with
# check_same_thread=False, and the lock keeps one thread's transaction from another's.
_CONNECTIONS: dict[str, tuple[int, sqlite3.Connection, threading.RLock]] = {}
_CONNECTIONS_LOCK = threading.Lock()


class CustomerOnlineStoreConfig(FeastConfigBaseModel):
    """The ``online_store`` block of ``feature_store.yaml`` (unknown keys are refused)."""

    type: Literal["features.online_store.CustomerOnlineStore"] = (
        "features.online_store.CustomerOnlineStore"
    )
    path: StrictStr = "data/online_custlab.db"
    """The SQLite file; a relative path is resolved against the repo path."""


class CustomerOnlineStore(OnlineStore):
    """A Feast online store with one row per customer per feature view, plus a bulk path."""

    def online_write_batch(
        self,
        config: RepoConfig,
        table: FeatureView,
        data: list[tuple[EntityKeyProto, dict[str, ValueProto], datetime, datetime | None]],
        progress: Callable[[int], Any] | None,
    ) -> None:
        """Upsert Feast's proto rows (``feast materialize``, ``write_to_online_store``)."""
        types = _feature_types(table)
        rows = (
            (
                _customer_id(key),
                _micros(event_ts),
                None if created_ts is None else _micros(created_ts),
                *(_from_proto(values.get(name)) for name in types),
            )
            for key, values, event_ts, created_ts in data
        )
        with _transaction(config) as conn:
            conn.executemany(_upsert_sql(_table(config, table), list(types)), rows)
        if progress:
            progress(len(data))

    def online_read(
        self,
        config: RepoConfig,
        table: FeatureView,
        entity_keys: list[EntityKeyProto],
        requested_features: list[str] | None = None,
    ) -> list[tuple[datetime | None, dict[str, ValueProto] | None]]:
        """Rows for ``entity_keys`` in order; ``(None, None)`` for an unknown customer."""
        types = _feature_types(table)
        names = list(requested_features or types)
        fields = [_TYPES[types[name]][1] for name in names]
        result: list[tuple[datetime | None, dict[str, ValueProto] | None]] = []
        for event_ts, *values in _select(
            config, table, [_customer_id(k) for k in entity_keys], names
        ):
            if event_ts is None:
                result.append((None, None))
                continue
            protos = {
                name: ValueProto() if value is None else ValueProto(**{field: value})
                for name, field, value in zip(names, fields, values, strict=True)
            }
            result.append((_EPOCH + event_ts * _MICROSECOND, protos))
        return result

    def update(
        self,
        config: RepoConfig,
        tables_to_delete: Sequence[FeatureView],
        tables_to_keep: Sequence[FeatureView],
        entities_to_delete: Sequence[Entity],
        entities_to_keep: Sequence[Entity],
        partial: bool,
    ) -> None:
        """Create a table per kept view, rebuild one whose columns changed, drop the rest.

        A rebuild keeps the columns whose name and type survive, so serving goes on for
        them; a new column is NULL until the next write of that customer.
        """
        with _transaction(config) as conn:
            for view in tables_to_keep:
                _check_entity(view, strict=True)
                name = _table(config, view)
                wanted = _columns(_feature_types(view))
                have = {r[1]: r[2] for r in conn.execute(f"PRAGMA table_info({_q(name)})")}
                if have == wanted:
                    continue
                if not have:
                    conn.execute(_create_sql(name, wanted))
                    continue
                logger.warning("online table %s changed schema; rebuilding it", name)
                kept = ", ".join(_q(c) for c, kind in wanted.items() if have.get(c) == kind)
                conn.execute(_create_sql(f"{name}__rebuild", wanted))
                conn.execute(
                    f"INSERT INTO {_q(name + '__rebuild')} ({kept}) SELECT {kept} FROM {_q(name)}"
                )
                conn.execute(f"DROP TABLE {_q(name)}")
                conn.execute(f"ALTER TABLE {_q(name + '__rebuild')} RENAME TO {_q(name)}")
            for view in tables_to_delete:
                conn.execute(f"DROP TABLE IF EXISTS {_q(_table(config, view))}")

    def teardown(
        self, config: RepoConfig, tables: Sequence[FeatureView], entities: Sequence[Entity]
    ) -> None:
        """Drop the views' tables; delete the file once it holds no table at all."""
        with _transaction(config) as conn:
            for view in tables:
                conn.execute(f"DROP TABLE IF EXISTS {_q(_table(config, view))}")
            left = conn.execute("SELECT count(*) FROM sqlite_schema WHERE type='table'").fetchone()
        if left[0] == 0:
            path = _db_path(config)
            with _CONNECTIONS_LOCK:
                _, conn, _ = _CONNECTIONS.pop(path)
                conn.close()
            for suffix in ("", "-wal", "-shm"):
                Path(path + suffix).unlink(missing_ok=True)

    def write_frame(self, config: RepoConfig, view: FeatureView, frame: pd.DataFrame) -> int:
        """Upsert a frame of one view in one transaction, without protos.

        Args:
            config: The repo config naming this store.
            view: The feature view; its table must exist (``feast apply``).
            frame: ``customer_id`` (str), ``event_timestamp`` (tz-aware) and every feature
                of the view (extra columns are ignored). The batch source's created
                timestamp column, when the frame has it, breaks ties between equal
                event timestamps.

        Returns:
            The number of rows written (a row older than the stored one is counted but
            does not replace it).

        Raises:
            ValueError: A column is missing, has the wrong kind of values, or a key or
                event timestamp is null; nothing is written.
        """
        _check_entity(view, strict=False)
        types = _feature_types(view)
        missing = [c for c in (ENTITY_KEY, EVENT_TIMESTAMP, *types) if c not in frame.columns]
        if missing:
            raise ValueError(f"frame for view {view.name!r} lacks column(s): {', '.join(missing)}")
        created = getattr(view.batch_source, "created_timestamp_column", "") or None
        # Validate and convert every column before the transaction opens: a bad frame
        # fails whole, and the loop below only slices arrays into Python lists.
        columns = [
            _text_values(frame[ENTITY_KEY], ENTITY_KEY, nullable=False),
            _micros_values(frame[EVENT_TIMESTAMP], EVENT_TIMESTAMP, nullable=False),
            _micros_values(frame[created], created, nullable=True)
            if created in frame.columns
            else (np.zeros(len(frame), dtype=np.int64), np.ones(len(frame), dtype=bool)),
            *(_feature_values(frame[name], name, kind) for name, kind in types.items()),
        ]
        sql = _upsert_sql(_table(config, view), list(types))
        with _transaction(config) as conn:
            for start in range(0, len(frame), _WRITE_CHUNK):
                part = slice(start, start + _WRITE_CHUNK)
                lists = [
                    _as_list(values[part], None if nulls is None else nulls[part])
                    for values, nulls in columns
                ]
                conn.executemany(sql, zip(*lists, strict=True))
        conn, lock = _connection(config)
        with lock:
            # The WAL holds every page the transaction touched; fold it back into the file.
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        logger.info("wrote %d rows to online view %s", len(frame), view.name)
        return len(frame)

    def read_frame(
        self,
        config: RepoConfig,
        view: FeatureView,
        customer_ids: Sequence[str],
        features: Sequence[str] | None = None,
    ) -> tuple[pd.DataFrame, np.ndarray]:
        """Latest features of ``customer_ids`` (in their order) in one query, without protos.

        Args:
            config: The repo config naming this store.
            view: The feature view to read.
            customer_ids: Customers to read; repeats and unknown ids are allowed.
            features: Feature names to return, in this order (default: all of the view's).

        Returns:
            The features, one row per id (numeric and bool features as float64 with NaN
            when missing, strings as objects with None), and each row's event timestamp
            in epoch seconds (NaN for an unknown customer).

        Raises:
            ValueError: An id is not a string or a feature is not in the view.
        """
        types = _feature_types(view)
        names = list(features) if features is not None else list(types)
        unknown = [n for n in names if n not in types]
        if unknown:
            raise ValueError(f"view {view.name!r} has no feature(s): {', '.join(unknown)}")
        rows = _select(config, view, customer_ids, names)
        grid = np.array(rows, dtype=object).reshape(len(rows), len(names) + 1)
        out = {
            name: grid[:, i + 1]
            if types[name] == ValueType.STRING
            else grid[:, i + 1].astype(float)
            for i, name in enumerate(names)
        }
        return pd.DataFrame(out, columns=names), grid[:, 0].astype(float) / 1e6


def _db_path(config: RepoConfig) -> str:
    path = Path(config.online_store.path)
    if not path.is_absolute() and config.repo_path is not None:
        path = Path(config.repo_path) / path
    return str(path.resolve())


def _connection(config: RepoConfig) -> tuple[sqlite3.Connection, threading.RLock]:
    """This process's connection to the store's file (re-opened after a fork)."""
    path = _db_path(config)
    with _CONNECTIONS_LOCK:
        entry = _CONNECTIONS.get(path)
        if entry is None or entry[0] != os.getpid():
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            # Autocommit: transactions are opened explicitly by _transaction.
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            for pragma in _PRAGMAS:
                conn.execute(pragma)
            entry = (os.getpid(), conn, threading.RLock())
            _CONNECTIONS[path] = entry
    return entry[1], entry[2]


@contextmanager
def _transaction(config: RepoConfig) -> Iterator[sqlite3.Connection]:
    """One write transaction: committed whole or rolled back whole."""
    conn, lock = _connection(config)
    with lock:
        # IMMEDIATE takes the write lock up front: a second writer waits (busy_timeout)
        # instead of failing half-way when its read lock cannot be upgraded.
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


def _select(
    config: RepoConfig, view: FeatureView, customer_ids: Sequence[str], names: Sequence[str]
) -> list[tuple[Any, ...]]:
    """``(event_ts, *features)`` per id, in order; all NULL for an unknown customer.

    The ids travel as one JSON array, so any number fits in one bound parameter (no
    32,766-variable limit) and the statement text stays the same, hence cached. The LEFT
    JOIN keeps ``json_each`` as the outer loop: rows come back in array order, one per id.
    """
    if not all(isinstance(c, str) for c in customer_ids):
        raise ValueError(f"customer ids must be strings (view {view.name!r})")
    cols = ", ".join(f"t.{_q(n)}" for n in (_EVENT_TS, *names))
    table = _q(_table(config, view))
    sql = f"SELECT {cols} FROM json_each(?) AS j LEFT JOIN {table} AS t ON t.{ENTITY_KEY} = j.value"
    conn, lock = _connection(config)
    try:
        with lock:
            return conn.execute(sql, (json.dumps(list(customer_ids)),)).fetchall()
    except sqlite3.OperationalError as error:
        raise ValueError(f"cannot read view {view.name!r} ({error}); run 'feast apply'") from error


def _table(config: RepoConfig, view: FeatureView) -> str:
    versioning = getattr(config.registry, "enable_online_feature_view_versioning", False)
    return compute_table_id(config.project, view, versioning)


def _q(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _check_entity(view: FeatureView, strict: bool) -> None:
    """Refuse a view not keyed by the one string join key ``customer_id``.

    A view built in code has no entity columns until Feast infers them at apply; the bulk
    path then relies on the check ``update`` made when the table was created.
    """
    keys = [(f.name, f.dtype) for f in view.entity_columns]
    inferred_later = not keys and not strict and view.entities not in ([], [DUMMY_ENTITY_NAME])
    if keys == [(ENTITY_KEY, String)] or inferred_later:
        return
    raise ValueError(
        f"view {view.name!r} is keyed by {keys or 'no entity'}; CustomerOnlineStore "
        f"serves only views keyed by one String join key {ENTITY_KEY!r}"
    )


def _feature_types(view: FeatureView) -> dict[str, ValueType]:
    types = {f.name: f.dtype.to_value_type() for f in view.features}
    for name, kind in types.items():
        if kind not in _TYPES:
            raise ValueError(f"feature {view.name}.{name} has unsupported type {kind.name}")
        if name in _RESERVED:
            raise ValueError(f"feature {view.name}.{name} collides with a key column")
    return types


def _columns(types: dict[str, ValueType]) -> dict[str, str]:
    """Column name -> declared type, as ``PRAGMA table_info`` reports them."""
    keys = {ENTITY_KEY: "TEXT", _EVENT_TS: "INTEGER", _CREATED_TS: "INTEGER"}
    return keys | {name: _TYPES[kind][0] for name, kind in types.items()}


def _create_sql(table: str, columns: dict[str, str]) -> str:
    body = ", ".join(f"{_q(name)} {kind}" for name, kind in columns.items())
    # WITHOUT ROWID: the row lives in the primary-key b-tree, one lookup per customer.
    return f"CREATE TABLE {_q(table)} ({body}, PRIMARY KEY ({ENTITY_KEY})) WITHOUT ROWID"


def _upsert_sql(table: str, names: list[str]) -> str:
    columns = [ENTITY_KEY, _EVENT_TS, _CREATED_TS, *names]
    updates = ", ".join(f"{_q(c)} = excluded.{_q(c)}" for c in columns[1:])
    return (
        f"INSERT INTO {_q(table)} ({', '.join(_q(c) for c in columns)}) "
        f"VALUES ({', '.join('?' * len(columns))}) ON CONFLICT ({ENTITY_KEY}) DO UPDATE SET "
        f"{updates} WHERE (excluded.{_EVENT_TS}, ifnull(excluded.{_CREATED_TS}, 0)) >= "
        f"({_q(table)}.{_EVENT_TS}, ifnull({_q(table)}.{_CREATED_TS}, 0))"
    )


def _customer_id(key: EntityKeyProto) -> str:
    if (
        list(key.join_keys) != [ENTITY_KEY]
        or key.entity_values[0].WhichOneof("val") != "string_val"
    ):
        raise ValueError(f"entity key {list(key.join_keys)} is not one string {ENTITY_KEY!r}")
    return key.entity_values[0].string_val


def _micros(ts: datetime) -> int:
    """Microseconds since the epoch; a naive timestamp is UTC, as Feast defines it."""
    return ((ts if ts.tzinfo else ts.replace(tzinfo=UTC)) - _EPOCH) // _MICROSECOND


def _from_proto(value: ValueProto | None) -> Any:
    kind = None if value is None else value.WhichOneof("val")
    if kind is None:
        return None
    item = getattr(value, kind)
    return None if item != item else item  # NaN is stored as NULL


# A prepared column: values as a NumPy array, plus a null mask (None: no nulls possible).
_Column = tuple[np.ndarray, np.ndarray | None]


def _as_list(values: np.ndarray, nulls: np.ndarray | None) -> list[Any]:
    """Python scalars for sqlite3 (``tolist`` converts in C), None where null."""
    if nulls is not None and nulls.all():
        return [None] * len(values)
    out = values.tolist()
    if nulls is not None:
        for i in np.flatnonzero(nulls):
            out[i] = None
    return out


def _micros_values(column: pd.Series, name: str, nullable: bool) -> _Column:
    if not isinstance(column.dtype, pd.DatetimeTZDtype):
        raise ValueError(f"column {name!r} must hold tz-aware timestamps, not {column.dtype}")
    nulls = column.isna().to_numpy()
    if not nullable and nulls.any():
        raise ValueError(f"column {name!r} has null timestamps")
    return pd.DatetimeIndex(column).tz_convert("UTC").as_unit("us").asi8, nulls


def _text_values(column: pd.Series, name: str, nullable: bool) -> _Column:
    if pd.api.types.infer_dtype(column, skipna=True) not in ("string", "empty"):
        raise ValueError(f"column {name!r} must hold strings")
    nulls = column.isna().to_numpy()
    if not nullable and nulls.any():
        raise ValueError(f"column {name!r} has null values")
    return column.to_numpy(dtype=object), nulls


def _feature_values(column: pd.Series, name: str, kind: ValueType) -> _Column:
    if kind == ValueType.STRING:
        return _text_values(column, name, nullable=True)
    try:
        if kind in (ValueType.FLOAT, ValueType.DOUBLE):
            # A Float32 feature is stored as Feast stores it: rounded to float32.
            dtype = np.float32 if kind == ValueType.FLOAT else np.float64
            numbers = column.to_numpy(dtype=dtype, na_value=np.nan).astype(np.float64)
            return numbers, np.isnan(numbers)
        ints = column.astype("Int64")
    except (TypeError, ValueError) as error:
        raise ValueError(f"column {name!r} must hold {kind.name} values ({error})") from error
    return ints.to_numpy(dtype=np.int64, na_value=0), ints.isna().to_numpy()
