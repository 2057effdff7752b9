"""The request timeout custlab gives BentoML: a 504 after the timeout as before, and no
timer left behind by an answered request (BentoML's own class leaves one per request
for the whole timeout, which made the collector's full passes the latency's tail)."""

from __future__ import annotations

import asyncio

from bentoml._internal.server.http import traffic as bentoml_traffic

import serving.service  # noqa: F401 (installs custlab's timeout, as the server does)
from serving.traffic import _BENTOML_TIMEOUT, CancellingTimeoutMiddleware


async def _answer(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def _never(scope, receive, send) -> None:
    await asyncio.sleep(60)


def _requests(middleware, n: int) -> tuple[list[dict], int]:
    """``n`` requests through ``middleware`` on a plain asyncio loop: what was sent, and
    how many timers the loop still holds after the last answer."""
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    async def receive() -> dict:
        return {"type": "http.request", "body": b""}

    async def run() -> int:
        for _ in range(n):
            await middleware({"type": "http"}, receive, send)
        await asyncio.sleep(0)  # a cancelled app's own timers go on its next step
        return len([h for h in asyncio.get_running_loop()._scheduled if not h.cancelled()])

    return sent, asyncio.run(run())


def test_bentoml_builds_its_apps_with_custlabs_timeout():
    assert bentoml_traffic.TimeoutMiddleware is CancellingTimeoutMiddleware


def test_an_answered_request_leaves_no_timer():
    sent, left = _requests(CancellingTimeoutMiddleware(_answer, timeout=10), 200)
    assert [m["status"] for m in sent if m["type"] == "http.response.start"] == [200] * 200
    assert left == 0
    # BentoML's own class, for contrast: every request's timer is still waiting.
    _, left_by_bentoml = _requests(_BENTOML_TIMEOUT(_answer, timeout=10), 200)
    assert left_by_bentoml == 200


def test_no_answer_within_the_timeout_is_a_504():
    sent, left = _requests(CancellingTimeoutMiddleware(_never, timeout=0.05), 1)
    assert sent[0]["status"] == 504 and b"0.05 seconds" in sent[1]["body"]
    assert left == 0
