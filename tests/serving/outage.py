"""A real online-store outage for tests: another process holds every lock of the
store's WAL index exclusively (as a connection recovering the WAL does), so no SQLite
reader can begin a read. (``BEGIN EXCLUSIVE`` would not do: in WAL mode it blocks
writers only; nor would making the file unreadable, for a root process that keeps its
file open.) SQLite retries such a read for about 10 s, then fails with "locking
protocol".

Used by the serving outage tests and by the online store's own tests."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# How long SQLite retries a read it cannot begin before it gives up.
SQLITE_RETRY_S = 10
# The WAL index's eight locks (write, checkpoint, recover, five read marks) are bytes
# 120-127 of the -shm file; a reader needs a shared lock on a read mark to begin.
_HOLDER = """
import fcntl, os, sqlite3, sys
db = sys.argv[1]
sqlite3.connect(db).execute("SELECT count(*) FROM sqlite_schema").fetchone()  # maps the index
index = os.open(db + "-shm", os.O_RDWR)
fcntl.lockf(index, fcntl.LOCK_EX, 8, 120)
print("held", flush=True)
sys.stdin.read()  # until the test closes stdin
"""


@contextmanager
def store_locked(db: Path) -> Iterator[None]:
    """Another process holds the online store's WAL index until the block ends."""
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        try:
            holder.wait(timeout=30)
        except subprocess.TimeoutExpired:
            holder.kill()
            holder.wait()
