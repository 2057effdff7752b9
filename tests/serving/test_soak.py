"""Memory soak: a real server under wrk for 100,000 distinct requests (unknown paths,
unknown customers, and windows of known customers) answers every one without an error,
and its worker's resident memory grows less than 10% from after a warm-up batch.

Unknown paths and unknown ids are what a careless or hostile client sends without end;
the service promises that neither adds metrics series nor kept answers, so memory stays
bounded whatever clients send. Known customers are answered from the answers kept ahead.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest

from benchmarks.servers import wait_warm
from benchmarks.wrk import WrkResult, ensure_wrk, run_wrk
from custlab.settings import Settings
from features.store import latest_as_of, read_features

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REQUESTS = 100_000
CONNECTIONS = 8
# The warm-up batch outlasts one flush of the prediction and audit logs (every 30 s), so
# the high-water mark of their buffers is already in the baseline.
WARM_UP_SECONDS = 40
ROUND_SECONDS = 30
MAX_GROWTH = 0.10

_LUA = """\
-- Written by tests/serving/test_soak.py. Request i (counting on from the rounds before,
-- so no two requests of the run are the same): i %% 3 == 0 GETs an unknown path,
-- i %% 3 == 1 scores an unknown customer, i %% 3 == 2 scores a window of 1-16 known
-- customers whose start and length move with i.
local known = {%(known)s}
local i = %(offset)d
local headers = {["Content-Type"] = "application/json"}

function request()
  i = i + 1
  local kind = i %% 3
  if kind == 0 then
    return wrk.format("GET", "/v1/nowhere-" .. i)
  elseif kind == 1 then
    return wrk.format("POST", "/v1/score", headers, '{"customer_ids":["ghost-' .. i .. '"]}')
  end
  local j = math.floor(i / 3)
  local start, length = math.floor(j / 16) %% #known, 1 + j %% 16
  local ids = {}
  for k = 0, length - 1 do
    ids[k + 1] = '"' .. known[(start + k) %% #known + 1] .. '"'
  end
  local body = '{"customer_ids":[' .. table.concat(ids, ",") .. ']}'
  return wrk.format("POST", "/v1/score", headers, body)
end
"""
_SERIES = re.compile(
    r'^custlab_requests_total\{route="([^"]*)",status="(\dxx)"\} ([\d.e+]+)$', re.MULTILINE
)


def _script(folder: Path, known: list[str], offset: int) -> Path:
    path = folder / f"soak-{offset}.lua"
    path.write_text(_LUA % {"known": ", ".join(map(json.dumps, known)), "offset": offset})
    return path


def _answered(url: str) -> dict[tuple[str, str], float]:
    """The server's own count of answers by route template and status class."""
    text = httpx.get(url, timeout=30).text
    return {(route, status): float(n) for route, status, n in _SERIES.findall(text)}


def test_memory_stays_flat_over_100k_distinct_requests(start_server, demo_home, tmp_path):
    try:
        ensure_wrk()
    except RuntimeError as why:  # a soak without its load generator proves nothing
        pytest.fail(str(why))
    settings = Settings(home=demo_home)
    latest = read_features(settings, dates=[latest_as_of(settings)])
    known = sorted(latest["customer_id"])
    running = start_server()
    warm = wait_warm(running.server, running.process)
    kept = {task: s["answers_kept"] for task, s in warm["served"].items()}
    assert all(kept.values()), warm

    rounds: list[WrkResult] = []
    offset = 0

    def load(seconds: int) -> WrkResult:
        nonlocal offset
        result = run_wrk(running.url("/"), _script(tmp_path, known, offset), CONNECTIONS, seconds)
        # Past every request this round may have started, answered or not.
        offset += result.requests + 10 * CONNECTIONS
        assert result.socket_errors == {k: 0 for k in result.socket_errors}, result
        return result

    load(WARM_UP_SECONDS)
    before_kib = running.worker_rss_kib()
    before = _answered(running.url("/v1/metrics"))
    while sum(r.requests for r in rounds) < REQUESTS:
        rounds.append(load(ROUND_SECONDS))
    after_kib = running.worker_rss_kib()
    after = _answered(running.url("/v1/metrics"))

    answered = {key: after.get(key, 0) - before.get(key, 0) for key in after}
    sent = sum(r.requests for r in rounds)
    errors = {key: n for key, n in answered.items() if key[1] == "5xx" and n}
    assert errors == {}, running.log_tail()
    scored = answered.get(("/v1/score", "2xx"), 0)
    unknown_paths = answered.get(("/{path:path}", "4xx"), 0)
    # Every scoring request succeeded; the only refusals are the unknown paths' 404s.
    assert {key for key, n in answered.items() if n and key[1] != "2xx"} <= {
        ("/{path:path}", "4xx")
    }, answered
    assert scored + unknown_paths >= sent, (answered, sent)
    assert unknown_paths == pytest.approx(sent / 3, rel=0.02)
    assert sum(r.non_2xx for r in rounds) <= unknown_paths

    status = httpx.get(running.url("/v1/status"), timeout=30).json()
    assert {task: s["answers_kept"] for task, s in status["served"].items()} == kept
    sample = httpx.post(running.url("/v1/score"), json={"customer_ids": known[:5]}, timeout=30)
    assert all(
        answer["score"] is not None
        for customer in sample.json()["customers"]
        for answer in customer["scores"].values()
    )
    assert "Traceback" not in running.log.read_text(errors="replace"), running.log_tail()

    growth = (after_kib - before_kib) / before_kib
    rate = sent / sum(r.seconds for r in rounds)
    assert growth < MAX_GROWTH, (
        f"worker RSS {before_kib / 1024:.0f} MiB after the warm-up, "
        f"{after_kib / 1024:.0f} MiB after {sent:,} more requests ({growth:+.1%}, {rate:.0f}/s)"
    )
    print(
        f"soak: {sent:,} requests at {rate:.0f}/s; worker RSS {before_kib / 1024:.0f} -> "
        f"{after_kib / 1024:.0f} MiB ({growth:+.1%})"
    )
