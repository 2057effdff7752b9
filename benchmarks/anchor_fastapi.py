"""The ceiling of the serving benchmark: a bare async FastAPI endpoint over the same
LightGBM booster, features from a dict of rows (:mod:`benchmarks.anchor_scoring`).

    ANCHOR_MODEL=... ANCHOR_FEATURES=... uvicorn benchmarks.anchor_fastapi:app \\
        --workers 1 --log-level warning --no-access-log

``POST /score`` takes ``{"customer_ids": [...]}`` and answers ``{"scores": [...]}``;
``GET /readyz`` answers 200 once the booster and the rows are loaded.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from pydantic import BaseModel

from benchmarks.anchor_scoring import load_from_environment


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.anchor = load_from_environment()
    yield


app = FastAPI(lifespan=lifespan)


class ScoreRequest(BaseModel):
    customer_ids: list[str]


@app.get("/readyz")
async def readyz() -> dict[str, str]:
    return {"status": "ready"}


@app.post("/score")
async def score(body: ScoreRequest, request: Request) -> dict[str, list[float]]:
    return {"scores": request.app.state.anchor.score(body.customer_ids)}
