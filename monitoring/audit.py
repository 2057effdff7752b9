"""The append-only audit trail of monitoring: one JSON line per weekly decision of a task
(its evidence, verdict and what retraining made of it) and one per review of a past
decision once its labels matured. Lines are only ever added; readers take the file as
the history, the index renders it."""

from __future__ import annotations

import json
import math
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

AUDIT_FILE = "audit.jsonl"


def append_record(path: Path, record: dict[str, Any]) -> dict[str, Any]:
    """Add one record (stamped with the time it was written) and make it durable before
    returning it; a reader never sees half a line."""
    stamped = {"recorded_at": datetime.now(UTC).isoformat(timespec="seconds"), **_finite(record)}
    line = json.dumps(stamped, sort_keys=True, allow_nan=False) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    # One write of a whole line in append mode: records never interleave.
    with path.open("a", encoding="utf-8") as out:
        out.write(line)
        out.flush()
        os.fsync(out.fileno())
    return stamped


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: a number without a value is written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def read_records(path: Path, kind: str | None = None) -> list[dict[str, Any]]:
    """Every record, oldest first (only those of ``kind`` when given); a torn last line
    (a crash mid-write) is left out."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if kind is None or record.get("kind") == kind:
            records.append(record)
    return records
