"""The service as a real server: ``bentoml serve`` (serving/launch.py) on a free port,
reading the demo home's settings from its environment, as ``custlab serve`` starts it.

Starting, waiting and stopping are the serving benchmark's own helpers
(benchmarks/servers.py), so the tests and the benchmark run the server the same way.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from benchmarks.servers import Server, free_port, start, stop, wait_ready
from serving.launch import serve_command

WORKER = "_bentoml_impl.worker.service"


@dataclass
class RunningServer:
    """A started server: where it answers, its process and its log."""

    server: Server
    process: subprocess.Popen
    log: Path

    def url(self, path: str) -> str:
        return self.server.url(path)

    def worker_pid(self) -> int:
        """The one worker process serving requests (BentoML's arbiter starts it)."""
        workers = [pid for pid in _descendants(self.process.pid) if WORKER in _cmdline(pid)]
        assert len(workers) == 1, f"expected one worker, found {workers}\n{self.log_tail()}"
        return workers[0]

    def worker_rss_kib(self) -> int:
        """The worker's resident memory (``VmRSS`` in ``/proc/<pid>/status``), in KiB."""
        status = Path(f"/proc/{self.worker_pid()}/status").read_text()
        line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
        return int(line.split()[1])

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture
def start_server(demo_home: Path, tmp_path: Path) -> Iterator[Callable[..., RunningServer]]:
    """Start the service on the demo home; every server started is stopped afterwards.

    The returned function takes ``ready_path``: the route that must answer 200 before
    it returns (``/readyz`` by default; ``/livez`` for a server whose store is down).
    """
    started: list[subprocess.Popen] = []
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("CUSTLAB_API_KEYS", "CUSTLAB_API_KEYS_FILE")  # an open service
    } | {
        "CUSTLAB_HOME": str(demo_home),
        "CUSTLAB_CHAMPION_CHECK_SECONDS": "0",  # the home's champions stay put
        "BENTOML_HOME": str(tmp_path / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "true",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }

    def launch(ready_path: str = "/readyz") -> RunningServer:
        port = free_port()
        server = Server(
            "custlab", "custlab", serve_command("127.0.0.1", port), port, "/v1/score",
            ready_path=ready_path, warm_path="/v1/status",
        )  # fmt: skip
        log = tmp_path / f"server-{port}.log"
        process = start(server, env, log)
        started.append(process)
        running = RunningServer(server, process, log)
        try:
            wait_ready(server, process)
        except RuntimeError as why:
            pytest.fail(f"{why}\n{running.log_tail()}")
        return running

    yield launch
    for process in started:
        stop(process)


def _descendants(pid: int) -> list[int]:
    children = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children += [int(c) for c in (task / "children").read_text().split()]
        except FileNotFoundError:  # the thread ended meanwhile
            continue
    return children + [grandchild for child in children for grandchild in _descendants(child)]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except FileNotFoundError:
        return ""
