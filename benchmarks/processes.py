"""Measuring a benchmark's work in a child process of its own: wall time and the child's
own peak resident memory (``os.wait4``), so every system pays its imports and start the
same way and none is measured with another's memory."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Child:
    seconds: float
    peak_rss_gb: float
    output: str  # what it printed on stdout


def run_child(command: Sequence[str], env: Mapping[str, str] | None = None) -> Child:
    """Run ``command`` from the project root, its output in temporary files (no pipe to
    fill), and reap it with ``os.wait4`` for its own peak memory.

    Raises:
        RuntimeError: The child failed (its exit code and the end of its stderr).
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        process = subprocess.Popen(
            list(command), cwd=ROOT, env=None if env is None else dict(env), stdout=out, stderr=err
        )
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        output, errors = out.read(), err.read()
    if process.returncode != 0:
        tail = "\n".join(errors.strip().splitlines()[-5:])
        raise RuntimeError(f"{' '.join(command[:4])} ... exited with {process.returncode}: {tail}")
    return Child(seconds, round(usage.ru_maxrss / 1024**2, 2), output)
