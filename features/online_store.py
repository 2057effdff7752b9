"""custlab's Feast online store: SQLite, one row per customer holding every feature view.

Serving reads all views of up to 1,000 customers at once, so a customer must cost one
b-tree lookup and a handful of Python objects. Table ``{project}_customer`` has one row per
``customer_id`` (WITHOUT ROWID: the row lives in the key's b-tree) and, per view ``p`` (its
versioned name in word characters), columns ``"p:event_ts"`` and ``"p:created_ts"``
(microseconds since the epoch, UTC; NULL while the customer has no row of the view),
``"p:numbers"`` (the numeric features in one BLOB decoded with one ``np.frombuffer`` per
view: little-endian float32, NaN for null; float64 when the view declares a Float64, Int or
Bool, ints exact up to 2**53) and one TEXT column ``"p.{feature}"`` per String feature.

Table ``custlab_online_layout`` records each view's prefix and layout (features and types
in blob order): writes check it against the view inside their transaction, reads decode
with it and take a blob of another length as missing, so a packed layout is never read
under another. ``update`` adds a new view's columns, rewrites a changed view's blobs
(features keeping name and type keep their values) and drops a deleted view's columns.
A write sets a view's columns only where the incoming ``(event_ts, created_ts)`` is at
least the stored one of that view: a late backfill cannot undo a materialization, a
corrected re-run of the same instant lands (Feast's stock SQLite store overwrites).

``feature_store.yaml`` names it ``online_store: {type:
features.online_store.CustomerOnlineStore, path: ...}``; Feast uses the ``OnlineStore``
methods, :meth:`~CustomerOnlineStore.write_frame` and :meth:`~CustomerOnlineStore.read_frames`
move pandas frames without protos.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
import struct
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from feast import Entity, FeatureView
from feast.infra.online_stores.helpers import compute_table_id, compute_versioned_name
from feast.infra.online_stores.online_store import OnlineStore
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.repo_config import FeastConfigBaseModel, RepoConfig
from feast.types import String
from feast.value_type import ValueType
from pydantic import StrictStr

from features.contract import ENTITY_KEY, EVENT_TIMESTAMP

logger = logging.getLogger(__name__)

_META = "custlab_online_layout"
# Numeric value types, all packed into the blob -> their ValueProto field and cast.
_NUMERIC: dict[ValueType, tuple[str, Callable[[float], Any]]] = {
    ValueType.FLOAT: ("float_val", float),
    ValueType.DOUBLE: ("double_val", float),
    ValueType.INT32: ("int32_val", int),
    ValueType.INT64: ("int64_val", int),
    ValueType.BOOL: ("bool_val", bool),
}
_OWN_COLUMNS = {"event_ts": "INTEGER", "created_ts": "INTEGER", "numbers": "BLOB"}
_CREATED = "__created"  # Feast's created timestamps, in the frame its rows become
# WAL lets serving read while a materialization writes; synchronous=NORMAL is safe with
# it (a power cut loses at most the last commits, which a re-materialization restores).
# mmap (capped at SQLite's compiled limit) spares reads a copy per page.
_PRAGMAS = (
    "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=10000; "
    "PRAGMA cache_size=-131072; PRAGMA mmap_size=2147483648;"
)
_WRITE_CHUNK = 50_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# One connection per process and file, shared by threads (check_same_thread=False, as
# Feast does): see _connected.
_CONNECTIONS: dict[str, _Open] = {}
_CONNECTIONS_LOCK = threading.Lock()
# What SQLite says when the store lacks the tables or columns Feast's apply creates; any
# other error (a locked or busy file, for one) is not cured by applying.
_NOT_APPLIED = ("no such table", "no such column")


class CustomerOnlineStoreConfig(FeastConfigBaseModel):
    """The ``online_store`` block of ``feature_store.yaml`` (unknown keys are refused)."""

    type: Literal["features.online_store.CustomerOnlineStore"] = (
        "features.online_store.CustomerOnlineStore"
    )
    path: StrictStr = "data/online_custlab.db"
    """The SQLite file; a relative path is resolved against the repo path."""


@dataclass
class _Open:
    """A process's connection to the store's file, and which file it opened."""

    pid: int
    file: tuple[int, int] | None  # (st_dev, st_ino) of the path when it was opened
    conn: sqlite3.Connection
    lock: threading.RLock
    closed: bool = False


@dataclass(frozen=True)
class _Layout:
    """A view's column prefix, its numeric features ``(name, value type)`` in blob order
    and its string features."""

    prefix: str
    numbers: tuple[tuple[str, str], ...]
    strings: tuple[str, ...]

    @property
    def dtype(self) -> np.dtype:  # float32 holds Float32 exactly, float64 all the rest
        return np.dtype("<f4" if all(k == "FLOAT" for _, k in self.numbers) else "<f8")

    def column(self, suffix: str) -> str:
        return _q(f"{self.prefix}:{suffix}")

    def text(self, feature: str) -> str:
        return _q(f"{self.prefix}.{feature}")


class CustomerOnlineStore(OnlineStore):
    """Feast online store with one row per customer for all views, plus a bulk path."""

    def online_write_batch(
        self,
        config: RepoConfig,
        table: FeatureView,
        data: list[tuple[EntityKeyProto, dict[str, ValueProto], datetime, datetime | None]],
        progress: Callable[[int], Any] | None,
    ) -> None:
        """Upsert Feast's proto rows (``feast materialize``, ``write_to_online_store``)."""
        names = [field.name for field in table.features]
        frame = pd.DataFrame({n: [_from_proto(row[1].get(n)) for row in data] for n in names})
        frame[ENTITY_KEY] = [_customer_id(row[0]) for row in data]
        for column, at in ((EVENT_TIMESTAMP, 2), (_CREATED, 3)):  # naive is UTC in Feast
            frame[column] = pd.to_datetime([row[at] for row in data], utc=True)
        _upsert(config, table, frame, _CREATED)
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
        ids = [_customer_id(key) for key in entity_keys]
        wanted = {table.name: requested_features} if requested_features else None
        names, numeric, numbers, texts, micros = _read(config, [table], ids, wanted)
        kinds = {f.name: f.dtype.to_value_type() for f in table.features}
        protos = {
            n: [ValueProto() if v is None else ValueProto(string_val=v) for v in texts[n]]
            for n in texts
        }
        for j, name in enumerate(numeric):
            field, cast = _NUMERIC[kinds[name]]
            protos[name] = [
                ValueProto() if v != v else ValueProto(**{field: cast(v)})
                for v in numbers[:, j].tolist()
            ]
        return [
            (None, None)
            if us != us
            else (_EPOCH + timedelta(microseconds=us), {n: protos[n][i] for n in names})
            for i, us in enumerate(micros[table.name].tolist())
        ]

    def update(
        self,
        config: RepoConfig,
        tables_to_delete: Sequence[FeatureView],
        tables_to_keep: Sequence[FeatureView],
        entities_to_delete: Sequence[Entity],
        entities_to_keep: Sequence[Entity],
        partial: bool,
    ) -> None:
        """Add a new view's columns, migrate a changed view's, drop a deleted view's.

        A migration rewrites the blobs into the new layout in one UPDATE, so features that
        keep their name and type go on serving; new ones are null until the next write.

        Raises:
            ValueError: A view is not keyed by the one String join key ``customer_id``, has
                a feature the store cannot hold, or would share another view's prefix.
        """
        keep = {_key(config, view): _layout(view) for view in tables_to_keep}
        with _transaction(config) as conn:
            table, stored = _create(conn, config), _stored(conn, config.project)
            for view in tables_to_delete:
                if (key := _key(config, view)) in stored and key not in keep:
                    _forget(conn, config, key, stored.pop(key))
            for key, declared in keep.items():
                old = stored.get(key)
                prefix = old.prefix if old else re.sub(r"\W", "_", key, flags=re.ASCII)
                if not old and prefix.lower() in {v.prefix.lower() for v in stored.values()}:
                    raise ValueError(f"view {key!r} would share columns {prefix!r}.* with another")
                new = _Layout(prefix, declared.numbers, declared.strings)
                if old == new:
                    continue
                if old is None:
                    columns = {new.column(name): kind for name, kind in _OWN_COLUMNS.items()}
                    _add(conn, table, columns | dict.fromkeys(map(new.text, new.strings), "TEXT"))
                else:
                    logger.warning("online view %s changed schema; migrating its columns", key)
                    _migrate(conn, table, old, new)
                stored[key] = new
                layout = json.dumps([new.prefix, new.numbers, new.strings])
                conn.execute(
                    f"INSERT OR REPLACE INTO {_META} VALUES (?, ?, ?)",
                    (config.project, key, layout),
                )

    def teardown(
        self, config: RepoConfig, tables: Sequence[FeatureView], entities: Sequence[Entity]
    ) -> None:
        """Drop the views' columns, or the table once no view is left (one DROP rather
        than a table rewrite per column); delete the file once it holds no table."""
        with _transaction(config) as conn:
            table, stored = _create(conn, config), _stored(conn, config.project)
            gone = {_key(config, view) for view in tables} & set(stored)
            if gone == set(stored):
                conn.execute(f"DROP TABLE {_q(table)}")
                conn.execute(f"DELETE FROM {_META} WHERE project = ?", (config.project,))
            else:
                for key in gone:
                    _forget(conn, config, key, stored[key])
            for view in tables:  # the tables of the layout before this one: one per view
                legacy = compute_table_id(config.project, view, _versioned(config))
                if legacy != table:
                    conn.execute(f"DROP TABLE IF EXISTS {_q(legacy)}")
            if not conn.execute(f"SELECT 1 FROM {_META}").fetchone():
                conn.execute(f"DROP TABLE {_META}")
            (left,) = conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()
        if left == 0:
            path = _db_path(config)
            with _CONNECTIONS_LOCK:
                _close(_CONNECTIONS.pop(path))
            for suffix in ("", "-wal", "-shm"):
                Path(path + suffix).unlink(missing_ok=True)

    def write_frame(self, config: RepoConfig, view: FeatureView, frame: pd.DataFrame) -> int:
        """Upsert a frame of one view in one transaction, without protos.

        Args:
            config: The repo config naming this store.
            view: The feature view, as applied (``feast apply``).
            frame: ``customer_id`` (str), ``event_timestamp`` (tz-aware) and every feature
                of the view; other columns are ignored. The batch source's created
                timestamp column, when present, breaks ties between equal event times.

        Returns:
            Rows written (an older row than the stored one counts but does not replace it).

        Raises:
            ValueError: A column is missing or holds the wrong kind of values, a key or an
                event timestamp is null, or the view is not the applied one. Nothing is
                written.
        """
        _upsert(config, view, frame, getattr(view.batch_source, "created_timestamp_column", None))
        with _connected(config) as conn:  # fold the WAL, now as large as the pages written
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # back into the file
        logger.info("wrote %d rows to online view %s", len(frame), view.name)
        return len(frame)

    def customer_ids(self, config: RepoConfig, limit: int) -> list[str]:
        """Up to ``limit`` customers the store holds rows of (in key order)."""
        with _connected(config) as conn:
            try:
                rows = conn.execute(
                    f"SELECT {ENTITY_KEY} FROM {_q(_table(config))} LIMIT ?", (limit,)
                ).fetchall()
            except sqlite3.OperationalError as error:
                if not _not_applied(error):
                    raise
                return []  # nothing applied yet
        return [row[0] for row in rows]

    def read_frames(
        self,
        config: RepoConfig,
        views: Sequence[FeatureView],
        customer_ids: Sequence[str],
        features_by_view: Mapping[str, Sequence[str]] | None = None,
    ) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
        """Latest features of ``customer_ids`` in several views, in one query.

        Args:
            config: The repo config naming this store.
            views: The feature views to read.
            customer_ids: Customers to read; repeated and unknown ids are fine.
            features_by_view: Per view name, the features to return in this order (a view
                not named returns all of its features).

        Returns:
            One row per id with the views' features in order (numbers and bools as float64,
            NaN where missing; strings as objects, None where missing) and, per view name,
            the event timestamps in epoch seconds (NaN where the customer has no row).

        Raises:
            ValueError: An id is not a string, a feature is not in its view or not applied,
                or two views return a feature of the same name.
            sqlite3.OperationalError: The file could not be read (locked by another
                process, for one): a retry may succeed, applying would not help.
        """
        names, numeric, numbers, texts, micros = _read(
            config, views, customer_ids, features_by_view
        )
        # One float block and one object block: pandas builds them faster than 70 columns.
        frame = pd.DataFrame(numbers, columns=numeric, copy=False)
        if texts:
            strings = pd.DataFrame(np.column_stack(list(texts.values())), columns=list(texts))
            frame = pd.concat([frame, strings], axis=1).reindex(columns=names, copy=False)
        return frame, {name: stamps / 1e6 for name, stamps in micros.items()}

    def read_frame(
        self,
        config: RepoConfig,
        view: FeatureView,
        customer_ids: Sequence[str],
        features: Sequence[str] | None = None,
    ) -> tuple[pd.DataFrame, np.ndarray]:
        """:meth:`read_frames` of one view: its features and its event timestamps."""
        wanted = None if features is None else {view.name: features}
        frame, stamps = self.read_frames(config, [view], customer_ids, wanted)
        return frame, stamps[view.name]


def _read(
    config: RepoConfig,
    views: Sequence[FeatureView],
    customer_ids: Sequence[str],
    features_by_view: Mapping[str, Sequence[str]] | None,
) -> tuple[list[str], list[str], np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Names asked, numeric names, numbers (float64), strings by name and per view the event
    microseconds (NaN where missing), one row per id in order, from one query.

    The ids go as one JSON array (one parameter whatever their number) left joined to the
    table: one key probe per id, rows in the array's order (checked). ``IN (SELECT value
    FROM json_each(?))``, a temporary table or ``IN (?, ...)`` cost the same in SQLite and
    then need the rows put back in order.
    """
    ids = list(customer_ids)
    if not all(issubclass(kind, str) for kind in set(map(type, ids))):
        raise ValueError("customer ids must be strings")
    with _connected(config) as conn:
        conn.execute("BEGIN")  # the layouts and the rows of one snapshot
        try:
            stored = _stored(conn, config.project)
            plans = [_plan(config, view, stored, features_by_view) for view in views]
            # Columns named with their table: SQLite reads an unknown "name" alone as a
            # string literal (a dropped column would read as its own name), t."name" not.
            selected = ["j.key"]
            for layout, _, _, strings in plans:
                selected += [f"t.{layout.column('event_ts')}", f"t.{layout.column('numbers')}"]
                selected += (f"t.{layout.text(name)}" for name in strings)
            sql = (
                f"SELECT {', '.join(selected)} FROM json_each(?) j "
                f"LEFT JOIN {_q(_table(config))} t ON t.{ENTITY_KEY} = j.value"
            )
            rows = conn.execute(sql, (json.dumps(ids, ensure_ascii=False),)).fetchall()
        except sqlite3.OperationalError as error:
            if _not_applied(error):
                raise ValueError(
                    f"cannot read the online store ({error}); run feast apply"
                ) from error
            raise
        finally:
            conn.execute("COMMIT")
    if rows and [row[0] for row in rows] != list(range(len(ids))):
        rows.sort(key=lambda row: row[0])
    columns = iter(list(zip(*rows, strict=True))[1:] if rows else [()] * len(selected))
    names = [name for _, asked, _, _ in plans for name in asked]
    if len(set(names)) < len(names):
        raise ValueError(f"views {[v.name for v in views]} repeat a feature name")
    texts_of = {name for plan in plans for name in plan[3]}
    numbers = np.empty((len(ids), len(names) - len(texts_of)))
    texts, micros, at = {}, {}, 0
    for view, (layout, _, index, strings) in zip(views, plans, strict=True):
        micros[view.name] = np.array(next(columns), dtype=np.float64)  # None -> NaN
        numbers[:, at : at + len(index)] = _unpack(next(columns), layout)[:, index]
        at += len(index)
        texts |= {name: np.array(next(columns), dtype=object) for name in strings}
    return names, [n for n in names if n not in texts_of], numbers, texts, micros


def _plan(
    config: RepoConfig,
    view: FeatureView,
    stored: dict[str, _Layout],
    features_by_view: Mapping[str, Sequence[str]] | None,
) -> tuple[_Layout, list[str], list[int], list[str]]:
    """A view's applied layout, the features asked of it, the blob positions of the
    numeric ones and the names of the string ones."""
    declared = [field.name for field in view.features]
    names = list((features_by_view or {}).get(view.name, declared))
    unknown = [name for name in names if name not in declared]
    if unknown:
        raise ValueError(f"view {view.name!r} has no feature(s): {', '.join(unknown)}")
    layout = stored.get(_key(config, view), _Layout("", (), ()))
    positions = {name: j for j, (name, _) in enumerate(layout.numbers)}
    absent = [n for n in names if n not in positions and n not in layout.strings]
    if absent:
        raise ValueError(f"online store holds no {view.name}.{', '.join(absent)}; run feast apply")
    index = [positions[name] for name in names if name in positions]
    return layout, names, index, [name for name in names if name not in positions]


def _unpack(blobs: Sequence[bytes | None], layout: _Layout) -> np.ndarray:
    """One view's blobs as a ``(rows, features)`` matrix in one ``frombuffer``; a missing
    blob, or one of another length (another layout), reads as all NaN."""
    filler = np.full(len(layout.numbers), np.nan, layout.dtype).tobytes()
    joined = [filler if blob is None else blob for blob in blobs]
    buffer = b"".join(joined)
    if len(buffer) != len(filler) * len(joined):
        buffer = b"".join(b if len(b) == len(filler) else filler for b in joined)
    return np.frombuffer(buffer, layout.dtype).reshape(len(joined), len(layout.numbers))


def _upsert(config: RepoConfig, view: FeatureView, frame: pd.DataFrame, created: Any) -> None:
    """Upsert a frame of one view (see :meth:`CustomerOnlineStore.write_frame`). Columns
    are checked and converted before the transaction opens; the numbers are packed with
    numpy, one cast and one bytes slice per row."""
    layout = _layout(view)
    names = (ENTITY_KEY, EVENT_TIMESTAMP, *(field.name for field in view.features))
    if missing := [name for name in names if name not in frame]:
        raise ValueError(f"frame for view {view.name!r} lacks column(s): {', '.join(missing)}")
    numbers = np.empty((len(frame), len(layout.numbers)))
    for j, (name, kind) in enumerate(layout.numbers):
        numbers[:, j] = _prepare(frame[name], name, ValueType[kind])[0]
        if kind != "FLOAT" and (np.abs(numbers[:, j]) > 2.0**53).any():
            raise ValueError(f"column {name!r} holds values past 2**53, stored inexactly")
    stamp, no_stamps = (
        ValueType.UNIX_TIMESTAMP,
        pd.Series(pd.NaT, frame.index, "datetime64[us, UTC]"),
    )
    columns = [
        _prepare(frame[ENTITY_KEY], ENTITY_KEY, ValueType.STRING, nullable=False),
        _prepare(frame[EVENT_TIMESTAMP], EVENT_TIMESTAMP, stamp, nullable=False),
        _prepare(frame.get(created, no_stamps), str(created), stamp),
        *(_prepare(frame[name], name, ValueType.STRING) for name in layout.strings),
    ]
    packed = numbers.astype(layout.dtype)
    if not frame[ENTITY_KEY].is_monotonic_increasing:
        # Key order appends to the b-tree instead of splitting pages all over it: about
        # twice the rows/s on a large table, and each page reaches the WAL once.
        order = np.argsort(columns[0][0].astype(str), kind="stable")
        packed, columns = packed[order], [(v[order], nulls[order]) for v, nulls in columns]
    width = packed.shape[1] * packed.itemsize
    with _transaction(config) as conn:
        applied = _stored(conn, config.project).get(_key(config, view))
        if applied is None or (applied.numbers, applied.strings) != (
            layout.numbers,
            layout.strings,
        ):
            raise ValueError(f"view {view.name!r} is not applied as declared; run feast apply")
        sql = _upsert_sql(_table(config), applied)
        for start in range(0, len(frame), _WRITE_CHUNK):
            part = slice(start, start + _WRITE_CHUNK)
            data = packed[part].tobytes()
            lists = [_as_list(values[part], nulls[part]) for values, nulls in columns]
            blobs = [data[i : i + width] for i in range(0, len(data), width)] if width else None
            lists.insert(3, blobs or [b""] * len(lists[0]))
            conn.executemany(sql, zip(*lists, strict=True))


def _upsert_sql(table: str, layout: _Layout) -> str:
    """Insert a customer, or set one view's columns where the incoming row is not older
    than the stored one of that view (or the customer has none yet)."""
    t, event, created = _q(table), layout.column("event_ts"), layout.column("created_ts")
    columns = [event, created, layout.column("numbers"), *map(layout.text, layout.strings)]
    newer = f"(excluded.{event}, ifnull(excluded.{created}, 0))"
    return (
        f"INSERT INTO {t} ({ENTITY_KEY}, {', '.join(columns)}) "
        f"VALUES ({', '.join('?' * (len(columns) + 1))}) ON CONFLICT ({ENTITY_KEY}) DO UPDATE "
        f"SET {', '.join(f'{c} = excluded.{c}' for c in columns)} "
        f"WHERE {t}.{event} IS NULL OR {newer} >= ({t}.{event}, ifnull({t}.{created}, 0))"
    )


def _migrate(conn: sqlite3.Connection, table: str, old: _Layout, new: _Layout) -> None:
    """Rewrite a view's blobs from the ``old`` layout into the ``new`` one (NaN for a new
    feature), and swap the string columns of removed features for added ones."""
    if old.numbers != new.numbers:
        source = [old.numbers.index(pair) if pair in old.numbers else -1 for pair in new.numbers]
        unpack = struct.Struct(f"<{len(old.numbers)}{old.dtype.char}")
        pack = struct.Struct(f"<{len(new.numbers)}{new.dtype.char}")

        def remap(blob: bytes | None) -> bytes | None:
            if blob is None or len(blob) != unpack.size:
                return None
            values = (*unpack.unpack(blob), float("nan"))  # index -1: a new feature
            return pack.pack(*[values[i] for i in source])

        conn.create_function("custlab_remap", 1, remap, deterministic=True)
        blob = new.column("numbers")
        conn.execute(f"UPDATE {_q(table)} SET {blob} = custlab_remap({blob}) WHERE {blob} NOT NULL")
    for name in set(old.strings) - set(new.strings):
        conn.execute(f"ALTER TABLE {_q(table)} DROP COLUMN {old.text(name)}")
    _add(conn, table, {new.text(n): "TEXT" for n in new.strings if n not in old.strings})


def _add(conn: sqlite3.Connection, table: str, columns: dict[str, str]) -> None:
    for column, kind in columns.items():
        conn.execute(f"ALTER TABLE {_q(table)} ADD COLUMN {column} {kind}")


def _forget(conn: sqlite3.Connection, config: RepoConfig, key: str, layout: _Layout) -> None:
    for column in [*map(layout.column, _OWN_COLUMNS), *map(layout.text, layout.strings)]:
        conn.execute(f"ALTER TABLE {_q(_table(config))} DROP COLUMN {column}")
    conn.execute(f"DELETE FROM {_META} WHERE project = ? AND view = ?", (config.project, key))


def _create(conn: sqlite3.Connection, config: RepoConfig) -> str:
    """Create the layout table and the project's customer table if new; name the latter."""
    meta = "(project TEXT, view TEXT, layout TEXT, PRIMARY KEY (project, view))"
    conn.execute(f"CREATE TABLE IF NOT EXISTS {_META} {meta}")
    table = f"{_q(_table(config))} ({ENTITY_KEY} TEXT PRIMARY KEY) WITHOUT ROWID"
    conn.execute(f"CREATE TABLE IF NOT EXISTS {table}")
    return _table(config)


def _stored(conn: sqlite3.Connection, project: str) -> dict[str, _Layout]:
    """The applied layouts of the project's views, by (versioned) view name."""
    rows = conn.execute(f"SELECT view, layout FROM {_META} WHERE project = ?", (project,))
    return {view: _parse(layout) for view, layout in rows}


@cache
def _parse(text: str) -> _Layout:
    prefix, numbers, strings = json.loads(text)
    return _Layout(prefix, tuple(map(tuple, numbers)), tuple(strings))


def _layout(view: FeatureView) -> _Layout:
    """The layout a view declares (no prefix yet): its features in order, numbers apart."""
    keys = [(f.name, f.dtype) for f in view.entity_columns]
    if keys != [(ENTITY_KEY, String)]:
        raise ValueError(
            f"view {view.name!r} is keyed by {keys or 'no entity'}; "
            f"CustomerOnlineStore needs one String join key {ENTITY_KEY!r}"
        )
    kinds = {field.name: field.dtype.to_value_type() for field in view.features}
    for name, kind in kinds.items():
        if kind not in _NUMERIC and kind != ValueType.STRING:
            raise ValueError(f"feature {view.name}.{name} ({kind.name}) cannot be stored")
    strings = tuple(name for name, kind in kinds.items() if kind == ValueType.STRING)
    if len({name.lower() for name in strings}) < len(strings):  # SQLite ignores the case
        raise ValueError(f"view {view.name!r} has string features differing only in case")
    return _Layout("", tuple((n, k.name) for n, k in kinds.items() if n not in strings), strings)


def _versioned(config: RepoConfig) -> bool:
    return config.registry.enable_online_feature_view_versioning


def _key(config: RepoConfig, view: FeatureView) -> str:
    return compute_versioned_name(view, _versioned(config))


def _table(config: RepoConfig) -> str:
    return f"{config.project}_customer"


def _q(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _db_path(config: RepoConfig) -> str:
    return str(Path(config.repo_path or ".", config.online_store.path).resolve())


@contextmanager
def _connected(config: RepoConfig) -> Iterator[sqlite3.Connection]:
    """This process's connection to the store's file, held under its lock (so one
    thread's statements stay out of another's transaction)."""
    while True:
        entry = _connection(config)
        with entry.lock:
            if not entry.closed:  # else the file was replaced since: take the new one
                yield entry.conn
                return


def _connection(config: RepoConfig) -> _Open:
    """This process's connection to the store's file, opened anew after a fork and when
    another file took the path (a store built aside and renamed over it): a connection
    keeps reading the file it opened, even once that file is unlinked."""
    path = _db_path(config)
    file = _file_id(path)
    with _CONNECTIONS_LOCK:
        entry = _CONNECTIONS.get(path)
        if entry is not None and entry.pid == os.getpid():
            if entry.file == file:
                return entry
            logger.info("online store %s was replaced; reading the new file", path)
            # Closed before the new one opens: two connections of one process on the
            # one -shm file would share its POSIX locks, and closing the old one would
            # drop the new one's. No thread asks for a connection while holding one's
            # lock, so waiting for it here cannot deadlock.
            _close(entry)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode: every transaction is opened explicitly.
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            conn.executescript(_PRAGMAS)
        except sqlite3.Error:  # a locked store: the next call tries again
            conn.close()
            raise
        # The file as it was before connecting: were it replaced meanwhile, the next call
        # sees another file and reopens (a new file's id is known once connect made it).
        entry = _CONNECTIONS[path] = _Open(
            os.getpid(), file or _file_id(path), conn, threading.RLock()
        )
    return entry


def _close(entry: _Open) -> None:
    """Close a connection once no thread is in a statement on it."""
    with entry.lock:
        entry.conn.close()
        entry.closed = True


def _file_id(path: str) -> tuple[int, int] | None:
    """Which file is at ``path`` (device and inode), None if none is."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino


def _not_applied(error: sqlite3.OperationalError) -> bool:
    return str(error).startswith(_NOT_APPLIED)


@contextmanager
def _transaction(config: RepoConfig) -> Iterator[sqlite3.Connection]:
    """One write transaction, committed whole or rolled back whole."""
    with _connected(config) as conn:
        # IMMEDIATE takes the write lock up front, so a concurrent writer waits for it
        # rather than failing half-way when its read lock cannot be upgraded.
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


def _customer_id(key: EntityKeyProto) -> str:
    if list(key.join_keys) != [ENTITY_KEY] or not key.entity_values[0].HasField("string_val"):
        raise ValueError(f"entity key {list(key.join_keys)} is not one string {ENTITY_KEY!r}")
    return key.entity_values[0].string_val


def _from_proto(value: ValueProto | None) -> Any:
    kind = None if value is None else value.WhichOneof("val")
    return None if kind is None else getattr(value, kind)


def _as_list(values: np.ndarray, nulls: np.ndarray) -> list[Any]:
    """Python scalars for sqlite3 (``tolist`` converts in C), None where null."""
    out = values.tolist()
    for i in np.flatnonzero(nulls):
        out[i] = None
    return out


def _prepare(
    column: pd.Series, name: str, kind: ValueType, nullable: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """A frame column checked against its kind (a feature's value type, or UNIX_TIMESTAMP
    for tz-aware timestamps) as values (numbers as float64, NaN for null) and nulls."""
    nulls = column.isna().to_numpy()
    if not nullable and nulls.any():
        raise ValueError(f"column {name!r} has null values")
    try:
        if kind == ValueType.UNIX_TIMESTAMP:
            if not isinstance(column.dtype, pd.DatetimeTZDtype):
                raise TypeError(f"tz-aware timestamps expected, got {column.dtype}")
            return pd.DatetimeIndex(column).tz_convert("UTC").as_unit("us").asi8, nulls
        if kind == ValueType.STRING:
            if pd.api.types.infer_dtype(column, skipna=True) not in ("string", "empty"):
                raise TypeError("strings expected")
            return column.to_numpy(dtype=object), nulls
        if kind in (ValueType.FLOAT, ValueType.DOUBLE):
            # A Float32 feature is stored as Feast stores it: rounded to float32.
            dtype = np.float32 if kind == ValueType.FLOAT else np.float64
            return column.to_numpy(dtype=dtype, na_value=np.nan).astype(np.float64), nulls
        return column.astype("Int64").to_numpy(dtype=np.float64, na_value=np.nan), nulls
    except (TypeError, ValueError) as error:
        raise ValueError(f"column {name!r} does not hold {kind.name} values: {error}") from error
