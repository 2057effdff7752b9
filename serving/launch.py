"""How the scoring service is started as a server process."""

from __future__ import annotations

import sys
from pathlib import Path

SERVICE = "serving.service:CustomerScoring"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def serve_command(host: str, port: int) -> list[str]:
    """The ``bentoml serve`` command line for the service, one worker, from the project
    root (where BentoML imports ``serving.service`` from)."""
    return [
        sys.executable, "-m", "bentoml", "serve", SERVICE,
        "--host", host, "--port", str(port), "--working-dir", str(PROJECT_ROOT),
    ]  # fmt: skip


def serve_bento_command(tag: str, host: str, port: int) -> list[str]:
    """The ``bentoml serve`` command line for a built Bento (``custlab build``): its code
    and models come from BentoML's store, not from the project."""
    return [
        sys.executable, "-m", "bentoml", "serve", tag, "--host", host, "--port", str(port),
    ]  # fmt: skip
