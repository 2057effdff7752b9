"""BentoML's request timeout, with its timer cancelled once the answer starts.

BentoML 1.4's ``TimeoutMiddleware`` (the service's ``traffic.timeout``) schedules a timer
for every request and never cancels it, so each request leaves a timer handle, a future,
a bound method and a context alive for the whole timeout. At a thousand requests a
second and custlab's 10 s that is some 60,000 live objects, and every full pass of
Python's collector walks them all: 60 to 90 ms a pass, about once a second, which was the
p99 of ``POST /v1/score`` (measured here with ``wrk``: p99 from 40-85 ms down to 14-16 ms
with the timer cancelled). BentoML's ``traffic.timeout`` cannot be turned off (it must be
a positive number), so custlab puts this class where BentoML looks the middleware up
when it builds the app.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bentoml._internal.server.http import traffic
from starlette.responses import JSONResponse

_BENTOML_TIMEOUT = traffic.TimeoutMiddleware


class CancellingTimeoutMiddleware(_BENTOML_TIMEOUT):
    """BentoML's timeout (504 when no answer starts within ``timeout`` seconds) whose
    timer is cancelled as soon as the answer starts."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        timer = loop.call_later(self.timeout, self._set_timer_out, waiter)

        async def _send(message: Any) -> None:
            if not waiter.done():
                waiter.set_result(None)
            await send(message)

        answering = asyncio.ensure_future(self.app(scope, receive, _send), loop=loop)
        try:
            await waiter
        except TimeoutError:
            if answering.cancel():
                body = {"error": f"Not able to process the request in {self.timeout} seconds"}
                await JSONResponse(body, status_code=504)(scope, receive, send)
        else:
            await answering
        finally:
            timer.cancel()  # the one line BentoML's own class lacks


def install() -> None:
    """Make BentoML build its apps with :class:`CancellingTimeoutMiddleware` (it imports
    the class from this module each time it builds one)."""
    traffic.TimeoutMiddleware = CancellingTimeoutMiddleware
