"""custlab's HTTP API, versioned under ``/v1``: routes, the error schema, and the guards
in front.

A FastAPI app that the BentoML service mounts (serving/service.py) and gives its
:class:`~serving.scorers.Scoring` at start. Every error answer is an
:class:`~serving.schemas.ErrorBody` that names the field and never repeats a submitted
value; a client error is one log line without ids. Metrics are labelled by route
template, so unknown paths and ids add no series.

A request whose answers are all kept (:meth:`Scoring.answers_at_once`: nothing to read,
reload or wait for) is answered on the event loop; any other goes to the thread pool,
since an online read can wait (SQLite retries a locked file for about 10 s) and on the
event loop it would hold up every other request, ``/livez`` and ``/readyz`` included.
For kept answers the hop to a thread and back was most of the cost: with it custlab
answered at 0.46x the benchmark's ceiling, without it 0.66x (README, Serving).
"""

from __future__ import annotations

import logging
import re
import time
from importlib.metadata import version
from typing import Any

import orjson
import pandas as pd
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from custlab.settings import Settings
from serving.keys import ApiKeys, load_keys
from serving.schemas import (
    MAX_BODY_BYTES,
    BatchRequest,
    BatchResponse,
    ErrorBody,
    FeaturesRequest,
    ScoreRequest,
    ScoringResponse,
)
from serving.scorers import Scoring, StoreUnavailable
from training.tasks import TASKS

logger = logging.getLogger(__name__)

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in (
        (400, "Invalid request: the fields and what is wrong with each."),
        (401, "No API key, or one that is not configured."),
        (403, "The key lacks the route's scope."),
        (404, "No such route or task."),
        (413, "Body larger than the limit."),
        (415, "Not a JSON body."),
        (503, "The task has no champion, or the feature store is unreachable."),
    )
}
CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
    503: "unavailable",
}
# A field name an unknown key may be echoed as; anything else could be customer data.
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,40}$")


def json_response(body: Any, status: int = 200) -> Response:
    """Serialize with orjson straight to bytes: the answers are plain dicts already."""
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def error(status: int, message: str, fields: list[dict[str, str]] | None = None) -> Response:
    body = {
        "error": {"code": CODES.get(status, "error"), "message": message, "fields": fields or []}
    }
    return json_response(body, status)


class Guard:
    """Refuses, before the body is read, what no route takes: a body past
    :data:`MAX_BODY_BYTES` (by its length, or as it streams in) and a POST that is not
    JSON."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        media = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if media != b"application/json":
            refusal = error(415, "send the body as JSON (Content-Type: application/json)")
            return await refusal(scope, receive, send)
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            refusal = error(413, f"the body may be at most {MAX_BODY_BYTES} bytes")
            return await refusal(scope, receive, send)
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > MAX_BODY_BYTES:
                raise HTTPException(413, f"the body may be at most {MAX_BODY_BYTES} bytes")
            return message

        await self.app(scope, counted, send)


class Authorize:
    """Lets a request through only with a key of the scope its route needs: ``admin``
    for the service's state, ``scoring`` for every other ``/v1`` route but the OpenAPI
    document. No keys configured: everything is open. The caller's name goes to the
    request's state for the audit log."""

    def __init__(self, app: ASGIApp, keys: ApiKeys) -> None:
        self.app = app
        self.keys = keys

    @staticmethod
    def needed(path: str) -> str | None:
        if path in ("/v1/status", "/v1/metrics"):
            return "admin"
        if path.startswith("/v1/") and path != "/v1/openapi.json":
            return "scoring"
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.keys.open or not (need := self.needed(scope["path"])):
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        bearer = headers.get(b"authorization", b"").decode("latin-1")
        secret = bearer[7:] if bearer[:7].lower() == "bearer " else None
        secret = secret or headers.get(b"x-api-key", b"").decode("latin-1") or None
        caller = self.keys.caller(secret)
        if caller is None:
            refusal = error(401, "send an API key: Authorization: Bearer <key> or X-API-Key")
        elif need not in caller.scopes:
            refusal = error(403, f"this key has no {need} scope")
        else:
            scope.setdefault("state", {})["caller"] = caller.name
            return await self.app(scope, receive, send)
        logger.info("%s %s", refusal.status_code, scope["path"])
        await refusal(scope, receive, send)


class Measure:
    """Counts and times answers by route template ("unmatched" for any unknown path)."""

    def __init__(self, app: ASGIApp, registry: CollectorRegistry) -> None:
        self.app = app
        self.answered = Counter(
            "custlab_requests", "Answered requests.", ["route", "status"], registry=registry
        )
        self.seconds = Histogram(
            "custlab_request_seconds", "Time to answer.", ["route"], registry=registry
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = 500

        async def sent(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sent)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            self.answered.labels(template, f"{status // 100}xx").inc()
            self.seconds.labels(template).observe(time.perf_counter() - started)


def _field(location: tuple[Any, ...], kind: str) -> str:
    parts = [str(p) for p in location if p != "body"]
    if kind == "extra_forbidden" and parts and not _NAME.match(parts[-1]):
        parts[-1] = "(an unknown field)"
    return ".".join(parts) or "body"


def build_app(keys: ApiKeys | None = None) -> FastAPI:
    """The API; ``app.state.scoring`` must be set before the first request. ``keys``:
    who may call it (default: the settings' keys)."""
    app = FastAPI(
        title="custlab",
        version=version("custlab"),
        summary="Customer scores with decisions, reason codes and warnings.",
        openapi_url="/v1/openapi.json",
        docs_url=None,  # the Swagger page loads third-party scripts
        redoc_url=None,
        responses=ERRORS,
    )
    registry = CollectorRegistry()
    app.add_middleware(Guard)
    keys = keys if keys is not None else load_keys(Settings())
    app.state.open = keys.open
    app.add_middleware(Authorize, keys=keys)
    app.add_middleware(Measure, registry=registry)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        fields = [
            {
                "field": _field(tuple(e.get("loc", ())), e.get("type", "")),
                "problem": str(e.get("msg", "invalid")),
            }
            for e in exc.errors()
        ]
        logger.info("400 %s: %s", request.url.path, "; ".join(f["field"] for f in fields))
        return error(400, "the request does not match the schema", fields)

    @app.exception_handler(HTTPException)
    async def refused(request: Request, exc: HTTPException) -> Response:
        if exc.status_code < 500:
            logger.info("%s %s", exc.status_code, request.url.path)
        response = error(exc.status_code, str(exc.detail))
        response.headers.update(exc.headers or {})  # 405's Allow, for one
        return response

    @app.exception_handler(StoreUnavailable)
    async def store_down(request: Request, exc: StoreUnavailable) -> Response:
        logger.warning("503 %s: %s", request.url.path, exc)
        return error(503, "the online feature store is unreachable; retry shortly")

    def scoring(request: Request) -> Scoring:
        return request.app.state.scoring

    @app.post("/v1/score", response_model=BatchResponse, tags=["scores"])
    async def score(body: BatchRequest, request: Request) -> Response:
        """Every served task (or those named) for up to 1,000 customers, with one online
        feature read: per customer and task the champion's score, decision, top reason
        codes, feature timestamp and warnings."""
        service, who = scoring(request), _who(request)
        at_once = service.answers_at_once(body.tasks, body.customer_ids, *who)
        if at_once is None:
            return await run_in_threadpool(score_waiting, service, body, who)
        return _batch_response(body.customer_ids, at_once[1], {})

    def score_waiting(service: Scoring, body: BatchRequest, who: tuple) -> Response:
        try:
            scorers, unavailable = service.served(body.tasks)
        except KeyError as unknown:
            raise HTTPException(
                404, f"no task named {unknown.args[0]!r} (tasks: {', '.join(TASKS)})"
            ) from None
        if not scorers:
            raise HTTPException(
                503, "no task asked for has a champion: " + "; ".join(unavailable.values())
            )
        answers = service.answers(scorers, body.customer_ids, *who)
        return _batch_response(body.customer_ids, answers, unavailable)

    def task_routes(task: str) -> None:
        description = TASKS[task].description

        def served(service: Scoring) -> Any:
            scorers, unavailable = service.served([task])
            if not scorers:
                raise HTTPException(503, f"{task} is not served: {unavailable[task]}")
            return scorers[0]

        async def by_id(body: ScoreRequest, request: Request) -> Response:
            service, who = scoring(request), _who(request)
            at_once = service.answers_at_once([task], body.customer_ids, *who)
            if at_once is None:
                return await run_in_threadpool(by_id_waiting, service, body, who)
            (scorer,), answers = at_once
            return _task_response(scorer, body.customer_ids, answers[task])

        def by_id_waiting(service: Scoring, body: ScoreRequest, who: tuple) -> Response:
            scorer = served(service)
            given = service.answers([scorer], body.customer_ids, *who)[task]
            return _task_response(scorer, body.customer_ids, given)

        def by_features(body: FeaturesRequest, request: Request) -> Response:  # in a worker thread
            scorer = served(scoring(request))
            rows = pd.DataFrame([row.model_dump() for row in body.rows])
            empty = [
                str(i) for i, row in enumerate(body.rows) if not row.model_dump(exclude_none=True)
            ]
            if empty:
                fields = [{"field": f"rows.{i}", "problem": "no feature values"} for i in empty]
                return error(400, "a row must give at least one feature value", fields)
            try:
                given = scoring(request).score_features(scorer, rows, *_who(request))
            except LookupError as why:
                raise HTTPException(404, str(why)) from None
            return _task_response(scorer, [None] * len(given), given)

        for function, path, summary in (
            (by_id, f"/v1/{task}", f"{description} Features from the online store."),
            (by_features, f"/v1/{task}/features", f"{description} Features as given."),
        ):
            app.post(
                path,
                response_model=ScoringResponse,
                tags=[task],
                summary=summary,
                name=f"{task}{'_features' if 'features' in path else ''}",
            )(function)

    for name in TASKS:
        task_routes(name)

    @app.get("/v1/status", tags=["operations"])
    async def status(request: Request) -> Response:
        """The champions served (name, version, feature service, answers computed
        ahead), the tasks not served and why, and whether the answers of the online
        store's customers are computed."""
        return json_response(scoring(request).status())

    @app.get("/v1/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")

    @app.api_route(
        "/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False
    )
    async def nowhere(request: Request) -> Response:
        # Every other path, BentoML's index page (third-party scripts) and its generated
        # document included: one answer in the error schema, one metrics series; a
        # route's path with a method it does not take is 405 with the ones it does.
        path = request.scope["path"]
        allowed = sorted(
            {
                method
                for route in app.routes
                if isinstance(route, APIRoute) and route.path != "/{path:path}"
                if route.path_regex.match(path)
                for method in route.methods
            }
        )
        if allowed:
            response = error(405, f"{path} takes {', '.join(allowed)}")
            response.headers["Allow"] = ", ".join(allowed)
            return response
        return error(404, "no such route; the API is described at /v1/openapi.json")

    return app


def _who(request: Request) -> tuple[str | None, str]:
    """The caller's key name (None when the API is open) and the route, for the audit."""
    return getattr(request.state, "caller", None), request.scope["route"].path


def _batch_response(
    ids: list[str], answers: dict[str, list[dict]], unavailable: dict[str, str]
) -> Response:
    customers = [
        {"customer_id": cid, "scores": {name: given[i] for name, given in answers.items()}}
        for i, cid in enumerate(ids)
    ]
    return json_response({"customers": customers, "unavailable": unavailable})


def _task_response(scorer: Any, ids: list[str | None], given: list[dict]) -> Response:
    model = scorer.model
    predictions = [
        {"customer_id": cid} | {k: v for k, v in answer.items() if k not in _MODEL_KEYS}
        for cid, answer in zip(ids, given, strict=True)
    ]
    return json_response(
        {
            "model": model.name,
            "model_version": model.version,
            "feature_service": model.feature_service,
            "predictions": predictions,
        }
    )


_MODEL_KEYS = frozenset({"model", "model_version"})
