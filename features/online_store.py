"""custlab's Feast online store: SQLite, one row per customer holding every feature view.

Serving reads all views of up to 1,000 customers at once, so a customer must cost one
b-tree lookup and a handful of Python objects. Table ``{project}_customer`` has one row per
``customer_id`` (WITHOUT ROWID: the row lives in the key's b-tree) and, per view ``p`` (its
versioned name in word characters), columns ``"p:event_ts"`` and ``"p:created_ts"``
(microseconds since the epoch, UTC; NULL while the customer has no row of the view),
``"p:numbers"`` (the numeric features packed in one BLOB, see ``features.online_layout``)
and one TEXT column ``"p.{feature}"`` per String feature.

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
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from feast import Entity, FeatureView
from feast.infra.online_stores.helpers import compute_table_id
from feast.repo_config import FeastConfigBaseModel, RepoConfig
from pydantic import StrictStr

from features.contract import ENTITY_KEY
from features.online_layout import (
    FrameOnlineStore,
    Layout,
    Rows,
    as_list,
    assemble,
    checked_ids,
    declared_layout,
    pack_frame,
    plan_read,
    versioned_key,
)

logger = logging.getLogger(__name__)

_META = "custlab_online_layout"
_OWN_COLUMNS = {"event_ts": "INTEGER", "created_ts": "INTEGER", "numbers": "BLOB"}
# WAL lets serving read while a materialization writes; synchronous=NORMAL is safe with
# it (a power cut loses at most the last commits, which a re-materialization restores).
# mmap (capped at SQLite's compiled limit) spares reads a copy per page.
_PRAGMAS = (
    "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=10000; "
    "PRAGMA cache_size=-131072; PRAGMA mmap_size=2147483648;"
)
_WRITE_CHUNK = 50_000
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


def _column(layout: Layout, suffix: str) -> str:
    return _q(f"{layout.prefix}:{suffix}")


def _text(layout: Layout, feature: str) -> str:
    return _q(f"{layout.prefix}.{feature}")


class CustomerOnlineStore(FrameOnlineStore):
    """Feast online store with one row per customer for all views, plus a bulk path.
    A frame is written in one transaction."""

    def _read(
        self,
        config: RepoConfig,
        views: Sequence[FeatureView],
        customer_ids: Sequence[str],
        features_by_view: Mapping[str, Sequence[str]] | None,
    ) -> Rows:
        return _read(config, views, customer_ids, features_by_view)

    def _write(
        self, config: RepoConfig, view: FeatureView, frame: pd.DataFrame, created: str | None
    ) -> None:
        _upsert(config, view, frame, created)

    def _settle(self, config: RepoConfig) -> None:
        with _connected(config) as conn:  # fold the WAL, now as large as the pages written
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # back into the file

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
        keep = {versioned_key(config, view): _layout(view) for view in tables_to_keep}
        with _transaction(config) as conn:
            table, stored = _create(conn, config), _stored(conn, config.project)
            for view in tables_to_delete:
                if (key := versioned_key(config, view)) in stored and key not in keep:
                    _forget(conn, config, key, stored.pop(key))
            for key, declared in keep.items():
                old = stored.get(key)
                prefix = old.prefix if old else re.sub(r"\W", "_", key, flags=re.ASCII)
                if not old and prefix.lower() in {v.prefix.lower() for v in stored.values()}:
                    raise ValueError(f"view {key!r} would share columns {prefix!r}.* with another")
                new = Layout(prefix, declared.numbers, declared.strings)
                if old == new:
                    continue
                if old is None:
                    columns = {_column(new, name): kind for name, kind in _OWN_COLUMNS.items()}
                    texts = dict.fromkeys((_text(new, name) for name in new.strings), "TEXT")
                    _add(conn, table, columns | texts)
                else:
                    logger.warning("online view %s changed schema; migrating its columns", key)
                    _migrate(conn, table, old, new)
                stored[key] = new
                conn.execute(
                    f"INSERT OR REPLACE INTO {_META} VALUES (?, ?, ?)",
                    (config.project, key, new.to_json()),
                )

    def teardown(
        self, config: RepoConfig, tables: Sequence[FeatureView], entities: Sequence[Entity]
    ) -> None:
        """Drop the views' columns, or the table once no view is left (one DROP rather
        than a table rewrite per column); delete the file once it holds no table."""
        with _transaction(config) as conn:
            table, stored = _create(conn, config), _stored(conn, config.project)
            gone = {versioned_key(config, view) for view in tables} & set(stored)
            if gone == set(stored):
                conn.execute(f"DROP TABLE {_q(table)}")
                conn.execute(f"DELETE FROM {_META} WHERE project = ?", (config.project,))
            else:
                for key in gone:
                    _forget(conn, config, key, stored[key])
            for view in tables:  # the tables of the layout before this one: one per view
                versioned = config.registry.enable_online_feature_view_versioning
                legacy = compute_table_id(config.project, view, versioned)
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


def _read(
    config: RepoConfig,
    views: Sequence[FeatureView],
    customer_ids: Sequence[str],
    features_by_view: Mapping[str, Sequence[str]] | None,
) -> Rows:
    """The views' rows of the ids, one per id in order, from one query.

    The ids go as one JSON array (one parameter whatever their number) left joined to the
    table: one key probe per id, rows in the array's order (checked). ``IN (SELECT value
    FROM json_each(?))``, a temporary table or ``IN (?, ...)`` cost the same in SQLite and
    then need the rows put back in order.
    """
    ids = checked_ids(customer_ids)
    with _connected(config) as conn:
        conn.execute("BEGIN")  # the layouts and the rows of one snapshot
        try:
            stored = _stored(conn, config.project)
            plans = [
                plan_read(view, stored.get(versioned_key(config, view)), features_by_view)
                for view in views
            ]
            # Columns named with their table: SQLite reads an unknown "name" alone as a
            # string literal (a dropped column would read as its own name), t."name" not.
            selected = ["j.key"]
            for plan in plans:
                layout = plan.layout
                selected += [f"t.{_column(layout, 'event_ts')}", f"t.{_column(layout, 'numbers')}"]
                selected += (f"t.{_text(layout, name)}" for name in plan.strings)
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
    return assemble(len(ids), plans, columns)


def _upsert(config: RepoConfig, view: FeatureView, frame: pd.DataFrame, created: Any) -> None:
    """Upsert a frame of one view (see :meth:`CustomerOnlineStore.write_frame`). Columns
    are checked and packed before the transaction opens."""
    _layout(view)
    # Key order appends to the b-tree instead of splitting pages all over it: about twice
    # the rows/s on a large table, and each page reaches the WAL once.
    packed = pack_frame(view, frame, created or None).in_key_order()
    columns = [
        (packed.ids, np.zeros(len(packed), bool)),
        (packed.event_us, np.zeros(len(packed), bool)),
        (packed.created_us, packed.created_null),
        *packed.strings,
    ]
    with _transaction(config) as conn:
        applied = _stored(conn, config.project).get(versioned_key(config, view))
        if applied is None or not applied.holds(packed.layout):
            raise ValueError(f"view {view.name!r} is not applied as declared; run feast apply")
        sql = _upsert_sql(_table(config), applied)
        for start in range(0, len(packed), _WRITE_CHUNK):
            part = slice(start, start + _WRITE_CHUNK)
            lists = [as_list(values[part], nulls[part]) for values, nulls in columns]
            lists.insert(3, packed.blobs(part))
            conn.executemany(sql, zip(*lists, strict=True))


def _upsert_sql(table: str, layout: Layout) -> str:
    """Insert a customer, or set one view's columns where the incoming row is not older
    than the stored one of that view (or the customer has none yet)."""
    t, event = _q(table), _column(layout, "event_ts")
    created, numbers = _column(layout, "created_ts"), _column(layout, "numbers")
    columns = [event, created, numbers, *(_text(layout, name) for name in layout.strings)]
    newer = f"(excluded.{event}, ifnull(excluded.{created}, 0))"
    return (
        f"INSERT INTO {t} ({ENTITY_KEY}, {', '.join(columns)}) "
        f"VALUES ({', '.join('?' * (len(columns) + 1))}) ON CONFLICT ({ENTITY_KEY}) DO UPDATE "
        f"SET {', '.join(f'{c} = excluded.{c}' for c in columns)} "
        f"WHERE {t}.{event} IS NULL OR {newer} >= ({t}.{event}, ifnull({t}.{created}, 0))"
    )


def _migrate(conn: sqlite3.Connection, table: str, old: Layout, new: Layout) -> None:
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
        blob = _column(new, "numbers")
        conn.execute(f"UPDATE {_q(table)} SET {blob} = custlab_remap({blob}) WHERE {blob} NOT NULL")
    for name in set(old.strings) - set(new.strings):
        conn.execute(f"ALTER TABLE {_q(table)} DROP COLUMN {_text(old, name)}")
    _add(conn, table, {_text(new, n): "TEXT" for n in new.strings if n not in old.strings})


def _add(conn: sqlite3.Connection, table: str, columns: dict[str, str]) -> None:
    for column, kind in columns.items():
        conn.execute(f"ALTER TABLE {_q(table)} ADD COLUMN {column} {kind}")


def _forget(conn: sqlite3.Connection, config: RepoConfig, key: str, layout: Layout) -> None:
    own = [_column(layout, suffix) for suffix in _OWN_COLUMNS]
    for column in [*own, *(_text(layout, name) for name in layout.strings)]:
        conn.execute(f"ALTER TABLE {_q(_table(config))} DROP COLUMN {column}")
    conn.execute(f"DELETE FROM {_META} WHERE project = ? AND view = ?", (config.project, key))


def _create(conn: sqlite3.Connection, config: RepoConfig) -> str:
    """Create the layout table and the project's customer table if new; name the latter."""
    meta = "(project TEXT, view TEXT, layout TEXT, PRIMARY KEY (project, view))"
    conn.execute(f"CREATE TABLE IF NOT EXISTS {_META} {meta}")
    table = f"{_q(_table(config))} ({ENTITY_KEY} TEXT PRIMARY KEY) WITHOUT ROWID"
    conn.execute(f"CREATE TABLE IF NOT EXISTS {table}")
    return _table(config)


def _stored(conn: sqlite3.Connection, project: str) -> dict[str, Layout]:
    """The applied layouts of the project's views, by (versioned) view name."""
    rows = conn.execute(f"SELECT view, layout FROM {_META} WHERE project = ?", (project,))
    return {view: Layout.parse(layout) for view, layout in rows}


def _layout(view: FeatureView) -> Layout:
    """The layout a view declares, checked for what SQLite cannot tell apart."""
    layout = declared_layout(view, "CustomerOnlineStore")
    if len({name.lower() for name in layout.strings}) < len(layout.strings):
        raise ValueError(f"view {view.name!r} has string features differing only in case")
    return layout


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
