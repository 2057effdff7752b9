"""The serving benchmark's load generator: ``wrk``, a native closed-loop HTTP client, on
one thread against loopback, with a Lua script that POSTs JSON bodies in turn.

wrk's answer is its text report; :func:`parse_report` turns it into numbers. wrk counts
an answer with a status above 399 as "Non-2xx or 3xx", and connect, read, write and
timeout failures as socket errors; both are kept, so that a server answering errors
fast is never mistaken for a fast server.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_LATENCY = re.compile(r"^\s*(50|75|90|99)%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.MULTILINE)
_REQUESTS = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h),", re.MULTILINE)
_RATE = re.compile(r"^Requests/sec:\s+([\d.]+)\s*$", re.MULTILINE)
_NON_2XX = re.compile(r"^\s*Non-2xx or 3xx responses: (\d+)\s*$", re.MULTILINE)
_SOCKET = re.compile(
    r"^\s*Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)\s*$", re.MULTILINE
)

_SCRIPT = """\
-- Written by benchmarks/wrk.py: POST the bodies in turn, each request the next one.
local bodies = {{
{bodies}
}}
local requests = {{}}
local position = 0

function init(args)
  for i, body in ipairs(bodies) do
    requests[i] = wrk.format("POST", nil, {{["Content-Type"] = "application/json"}}, body)
  end
end

function request()
  position = position % #requests + 1
  return requests[position]
end
"""


@dataclass(frozen=True)
class WrkResult:
    """One wrk run: throughput, the latency distribution, and every failure it counted."""

    requests: int
    seconds: float
    requests_per_s: float
    latency_ms: dict[int, float]  # percentile (50, 75, 90, 99) -> milliseconds
    non_2xx: int = 0
    socket_errors: dict[str, int] = field(default_factory=dict)  # connect, read, write, timeout

    @property
    def failures(self) -> int:
        return self.non_2xx + sum(self.socket_errors.values())


def ensure_wrk() -> str:
    """The path of ``wrk``, installed with apt-get first when missing and running as root.

    Raises:
        RuntimeError: wrk is missing and could not be installed.
    """
    path = shutil.which("wrk")
    if path is None and os.geteuid() == 0:
        subprocess.run(
            ["apt-get", "install", "-y", "wrk"],
            env=os.environ | {"DEBIAN_FRONTEND": "noninteractive"},
            capture_output=True,
            check=False,
        )
        path = shutil.which("wrk")
    if path is None:
        raise RuntimeError(
            "the serving benchmark needs the HTTP load generator wrk on PATH and could not "
            "install it: install it (Debian/Ubuntu: apt-get install wrk; macOS: brew install "
            "wrk) and run again"
        )
    return path


def _lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_script(path: Path, bodies: list[dict]) -> Path:
    """Write a wrk Lua script that POSTs ``bodies`` as JSON, cycling through them."""
    if not bodies:
        raise ValueError("a wrk script needs at least one body")
    lines = ",\n".join(_lua_string(json.dumps(body, separators=(",", ":"))) for body in bodies)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_SCRIPT.format(bodies=lines))
    return path


def _milliseconds(value: str, unit: str) -> float:
    return float(value) * _UNITS_MS[unit]


def parse_report(report: str) -> WrkResult:
    """wrk's text report (run with ``--latency``) as numbers.

    Raises:
        ValueError: The report lacks the request count, the rate or the latency lines.
    """
    requests, rate = _REQUESTS.search(report), _RATE.search(report)
    latency = {int(q): _milliseconds(v, u) for q, v, u in _LATENCY.findall(report)}
    if requests is None or rate is None or set(latency) != {50, 75, 90, 99}:
        raise ValueError(f"not a wrk --latency report:\n{report}")
    non_2xx = _NON_2XX.search(report)
    socket = _SOCKET.search(report)
    return WrkResult(
        requests=int(requests.group(1)),
        seconds=_milliseconds(requests.group(2), requests.group(3)) / 1e3,
        requests_per_s=float(rate.group(1)),
        latency_ms=latency,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=(
            dict(
                zip(("connect", "read", "write", "timeout"), map(int, socket.groups()), strict=True)
            )
            if socket
            else {}
        ),
    )


def run_wrk(
    url: str, script: Path, connections: int, seconds: int, timeout_s: int = 10
) -> WrkResult:
    """Load ``url`` (loopback only) for ``seconds`` from one wrk thread and ``connections``
    connections, each sending its next request when the previous answer arrives.

    Raises:
        ValueError: ``url`` is not a loopback address.
        RuntimeError: wrk failed to run.
    """
    if not url.startswith(("http://127.0.0.1:", "http://localhost:")):
        raise ValueError("load is only ever sent to loopback")
    command = [
        ensure_wrk(), "-t1", f"-c{connections}", f"-d{seconds}s", f"--timeout={timeout_s}s",
        "--latency", "-s", str(script), url,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited with {done.returncode}: {done.stderr.strip()}")
    return parse_report(done.stdout)
