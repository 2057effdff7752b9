"""The prediction log monitoring reads: one JSON line per scored customer.

Customer ids in the store are already pseudonyms (ingestion replaces source ids), so
the log holds nothing that identifies a person.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


class PredictionLog:
    """Appends predictions to ``<folder>/<task>/<YYYY-MM-DD>.jsonl``."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._lock = threading.Lock()

    def append(self, task: str, records: Sequence[dict[str, Any]]) -> None:
        now = datetime.now(UTC)
        path = self._folder / task / f"{now:%Y-%m-%d}.jsonl"
        lines = "".join(
            json.dumps({"logged_at": now.isoformat()} | record, separators=(",", ":")) + "\n"
            for record in records
        )
        with self._lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as handle:
                handle.write(lines)
