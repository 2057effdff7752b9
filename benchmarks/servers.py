"""Server processes for the benchmarks and the tests that run them for real: a free
port, start in a process group of its own, wait until ready (and until its answers are
computed ahead), stop with every process of the group; and a Redis server of one's own.

One home for these so that the benchmark and the tests start, wait for and stop a
server the same way.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:  # imported where a Redis server is wanted, not by every benchmark
    import redis

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Server:
    """One server: how to start it and where it answers."""

    key: str  # names its log file
    name: str
    command: list[str]
    port: int
    score_path: str  # the route the load goes to
    ready_path: str = "/readyz"  # answers 200 once the server can score
    # A route answering {"warmed": true} once the work a server does in the background
    # after it is ready is done (custlab computes answers ahead); the load waits for it,
    # so that no measurement shares the cores with another server's start-up.
    warm_path: str | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def start(server: Server, env: dict[str, str], log: Path, cwd: Path = ROOT) -> subprocess.Popen:
    """Start ``server`` from ``cwd`` in a process group of its own (so that :func:`stop`
    ends its workers too), its output to ``log``."""
    with log.open("w") as handle:
        return subprocess.Popen(
            server.command,
            cwd=cwd,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _poll(url: str, process: subprocess.Popen) -> httpx.Response | None:
    """GET ``url`` once; None while nothing answers. Raises if the server has exited."""
    if process.poll() is not None:
        raise RuntimeError(f"server exited with {process.returncode} before {url} answered")
    try:
        return httpx.get(url, timeout=5)
    except httpx.TransportError:
        return None


def wait_ready(server: Server, process: subprocess.Popen, deadline_s: float = 300) -> None:
    """Wait until ``server.ready_path`` answers 200.

    Raises:
        RuntimeError: The server exited, or was not ready within ``deadline_s``.
    """
    url = server.url(server.ready_path)
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        response = _poll(url, process)
        if response is not None and response.status_code == 200:
            return
        time.sleep(0.5)
    raise RuntimeError(f"{url} not ready after {deadline_s:.0f}s")


def wait_warm(server: Server, process: subprocess.Popen, deadline_s: float = 900) -> dict:
    """Wait until ``server.warm_path`` says ``warmed``; returns what it answered ({} for
    a server without that route, which has nothing to wait for).

    Raises:
        RuntimeError: The server exited, or did not say warmed within ``deadline_s``.
    """
    if server.warm_path is None:
        return {}
    url = server.url(server.warm_path)
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        response = _poll(url, process)
        if response is not None and response.status_code == 404:
            return {}
        if response is not None and response.status_code == 200:
            body = response.json()
            if body.get("warmed", True):
                return body
        time.sleep(1)
    raise RuntimeError(f"{url} did not say warmed after {deadline_s:.0f}s")


def stop(process: subprocess.Popen) -> None:
    """End a server started by :func:`start` and every process of its group."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=30)
    # Whatever of the group is left (a worker slow to stop, or the leader itself).
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


class RedisServer:
    """A ``redis-server`` of one's own on a free port, its data in ``folder``: saved at a
    clean stop and loaded at the next start, as a production server keeps it across a
    restart. A benchmark or test using it touches no shared server's keys."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        import redis

        return redis.Redis.from_url(self.url, socket_connect_timeout=2)

    def start(self, deadline_s: float = 30) -> None:
        """Start the server and wait until it answers.

        Raises:
            RuntimeError: ``redis-server`` is not installed, or did not answer in time.
        """
        import redis

        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed (Debian's redis-server has it)")
        self.folder.mkdir(parents=True, exist_ok=True)
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--dir", str(self.folder), "--save", "", "--appendonly", "no"]
        with (self.folder / "server.log").open("a") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError):
                if self.client().ping():
                    return
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"redis-server on port {self.port} did not answer in {deadline_s} s")

    def stop(self) -> None:
        """A clean shutdown that saves the data first."""
        import redis

        with contextlib.suppress(redis.ConnectionError):  # it closes the connection
            self.client().shutdown(save=True)
        if self.process is not None:
            self.process.wait(timeout=60)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def copy_from(self, source: redis.Redis, match: str) -> int:
        """Copy the keys of ``source`` (a client) matching ``match``; how many."""
        target, copied = self.client(), 0
        for key in source.scan_iter(match=match):
            target.restore(key, 0, source.dump(key), replace=True)
            copied += 1
        return copied
