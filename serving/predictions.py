"""The prediction log monitoring reads: parquet by task and day, written off the request
path, old days deleted.

Records carry the store's customer id (the pseudonym ingest gave, never the id an
application sent), the model version, the answer and the feature timestamp: the
features themselves are the offline snapshot of that customer at that timestamp, so an
answer from the online store is logged without them. Feature rows sent in a request are
not in any store and are logged whole.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

logger = logging.getLogger(__name__)

# Fewer, larger parts for monitoring to read; a flush holds the interpreter for about
# 3 us a record (pyarrow builds the table; pandas took six times as long).
FLUSH_SECONDS = 30.0
FLUSH_RECORDS = 50_000

PREDICTIONS = pa.schema(
    [
        ("logged_at", pa.timestamp("us", tz="UTC")),
        ("customer_id", pa.string()),  # the store's pseudonym
        ("source", pa.string()),  # online, or features sent in the request
        ("caller", pa.string()),
        ("model_version", pa.string()),
        ("score", pa.float64()),
        ("tier", pa.string()),
        ("feature_timestamp", pa.string()),
        ("unknown", pa.bool_()),
        ("features", pa.string()),  # JSON, for rows sent to /features only
    ]
)
# The audit: one record a request.
CALLS = pa.schema(
    [
        ("logged_at", pa.timestamp("us", tz="UTC")),
        ("caller", pa.string()),
        ("route", pa.string()),
        ("versions", pa.string()),  # JSON: task -> model version
        ("customers", pa.int64()),
        ("customer_ids", pa.list_(pa.string())),  # pseudonyms
    ]
)


class PredictionLog:
    """Buffers records and writes ``<folder>/<task>/date=<YYYY-MM-DD>/part-*.parquet``.

    A daemon thread flushes every :data:`FLUSH_SECONDS` (sooner past
    :data:`FLUSH_RECORDS`), so a request only appends to a list; :meth:`close` flushes
    what is left. Parts have ``schema``'s columns (a key a record lacks is null). Days
    older than ``retention_days`` are deleted at each hourly sweep.
    """

    def __init__(
        self, folder: Path, retention_days: int = 90, schema: pa.Schema = PREDICTIONS
    ) -> None:
        self.folder = folder
        self.retention_days = retention_days
        self.schema = schema
        # Column by column: a buffered record is a value in each column's list, not a
        # dict of its own. Strings, numbers and tuples of strings are objects the
        # collector does not track, so its full passes stay short however many records
        # wait (dicts made them walk the whole buffer, 90 ms a pass at 50,000).
        self._pending: dict[tuple[str, str], dict[str, list[Any]]] = {}
        self._count = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._parts = 0
        self._swept_at = 0.0
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def append(self, task: str, records: Sequence[dict[str, Any]]) -> None:
        now = datetime.now(UTC)
        with self._lock:
            key = (task, f"{now:%Y-%m-%d}")
            columns = self._pending.get(key)
            if columns is None:
                columns = self._pending[key] = {name: [] for name in self.schema.names}
            for name, values in columns.items():
                if name == "logged_at":
                    values.extend([now] * len(records))
                else:
                    values.extend(_untracked(r.get(name)) for r in records)
            self._count += len(records)
            full = self._count >= FLUSH_RECORDS
        if full:
            self._wake.set()

    def flush(self) -> None:
        """Write everything appended so far (tests and shutdown call it)."""
        with self._lock:
            pending, self._pending, self._count = self._pending, {}, 0
        for (task, day), columns in pending.items():
            self._write(task, day, pa.Table.from_pydict(columns, schema=self.schema))
        if pending and (now := datetime.now(UTC).timestamp()) - self._swept_at > 3600:
            self._swept_at = now
            self.sweep()

    def close(self) -> None:
        self._closed.set()
        self._wake.set()
        self._thread.join(timeout=10)
        self.flush()

    def sweep(self, today: datetime | None = None) -> list[Path]:
        """Delete the day folders past the retention; returns what was deleted."""
        cutoff = (today or datetime.now(UTC)).date() - timedelta(days=self.retention_days)
        gone = []
        for day in self.folder.glob("*/date=*"):
            try:
                date = datetime.strptime(day.name.removeprefix("date="), "%Y-%m-%d").date()
            except ValueError:
                continue
            if date < cutoff:
                for part in day.iterdir():
                    part.unlink()
                day.rmdir()
                gone.append(day)
        return gone

    def _run(self) -> None:
        while not self._closed.is_set():
            self._wake.wait(FLUSH_SECONDS)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # a full disk must not kill the logger for good
                logger.exception("could not write the prediction log; retrying")

    def _write(self, task: str, day: str, table: pa.Table) -> None:
        folder = self.folder / task / f"date={day}"
        folder.mkdir(parents=True, exist_ok=True)
        self._parts += 1
        # The process id too: replicas sharing a folder never write one name twice.
        name = f"part-{datetime.now(UTC):%H%M%S%f}-{os.getpid()}-{self._parts:06d}.parquet"
        temporary = folder / f".{name}"
        pq.write_table(table, temporary)
        temporary.rename(folder / name)  # readers never see half a file


def _untracked(value: Any) -> Any:
    """A record's value as the buffer keeps it: a list (of pseudonyms) as a tuple, which
    the collector stops tracking once it holds only strings."""
    return tuple(value) if isinstance(value, list) else value


def read_predictions(folder: Path, task: str) -> pd.DataFrame:
    """Every logged prediction of ``task``, oldest first (empty when none)."""
    parts = sorted((folder / task).glob("date=*/part-*.parquet"))
    if not parts:
        return pd.DataFrame()
    return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
