"""Writing tables so that a failure never leaves half a result behind."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd


def write_parquet_atomic(frame: pd.DataFrame, path: Path) -> Path:
    """Write ``frame`` to ``path`` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as handle:
        tmp = Path(handle.name)
    try:
        frame.to_parquet(tmp, index=False)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def replace_folder(
    folder: Path, tables: dict[str, pd.DataFrame], documents: dict[str, Any] | None = None
) -> Path:
    """Replace ``folder`` with one holding ``<name>.parquet`` for each table and
    ``<name>.json`` for each document, all or nothing (:func:`staged_folder`)."""
    with staged_folder(folder) as staging:
        for name, frame in tables.items():
            frame.to_parquet(staging / f"{name}.parquet", index=False)
        for name, document in (documents or {}).items():
            (staging / f"{name}.json").write_text(json.dumps(document, indent=2, default=str))
    return folder


@contextmanager
def staged_folder(folder: Path) -> Iterator[Path]:
    """A sibling folder to write into, swapped in for ``folder`` when the block ends
    without an error (and removed when it does not), so readers see the old set or the
    new set, never a mix."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-"))
    try:
        yield staging
        retired = folder.with_name(f".{folder.name}-retired")
        if folder.exists():
            shutil.rmtree(retired, ignore_errors=True)
            folder.rename(retired)
        staging.rename(folder)
        shutil.rmtree(retired, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
