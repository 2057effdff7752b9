"""A bounded closed-loop load generator on loopback: ``concurrency`` clients, each
sending its next request when the previous answer arrives, ``requests`` in all."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx
import numpy as np


@dataclass(frozen=True)
class LoadResult:
    requests: int
    errors: int
    seconds: float
    latencies_ms: np.ndarray

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q))


async def _run(url: str, bodies: list[dict], concurrency: int, timeout: float) -> LoadResult:
    latencies: list[float] = []
    errors = 0
    queue: asyncio.Queue[dict] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:

        async def worker() -> None:
            nonlocal errors
            while not queue.empty():
                body = queue.get_nowait()
                started = time.perf_counter()
                response = await client.post(url, json=body)
                latencies.append((time.perf_counter() - started) * 1000)
                errors += response.status_code != 200

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    return LoadResult(len(bodies), errors, seconds, np.array(latencies))


def run_load(url: str, bodies: list[dict], concurrency: int, timeout: float = 10.0) -> LoadResult:
    """Send every body once to ``url`` (a loopback address) and time each answer."""
    if not url.startswith(("http://127.0.0.1", "http://localhost")):
        raise ValueError("load is only ever sent to loopback")
    return asyncio.run(_run(url, bodies, concurrency, timeout))
