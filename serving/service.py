"""The BentoML service: loads every champion once at start and mounts custlab's API
(serving/api.py), whose routes are under ``/v1``; BentoML runs the server, its worker and
the health routes (``/livez``, ``/readyz``, ahead of the API's).

Run it from source with ``custlab serve`` (which checks the registry first) or
``bentoml serve serving.service:CustomerScoring``: it loads the registry's champions and
watches for promotions. Built into a Bento (``custlab build``, serving/bento.py) and run
with ``bentoml serve <tag>``, it serves the champions the Bento packages and never
contacts MLflow.

Three of BentoML's per-request defaults are turned off for the API, each measured with
``wrk`` on this 2-core machine against a bare endpoint: its Prometheus middleware labels
series by the raw path (memory grows with every unknown path; custlab's own metrics,
``/v1/metrics``, use the route template), its access log writes a line per request (a
client error is custlab's one line instead), and its tracing spans, exported nowhere by
default, took 60% of the throughput (``/v1`` is excluded from them).
"""

from __future__ import annotations

import gc
import logging

import bentoml

from custlab.settings import Settings
from features.errors import CustlabError
from serving import traffic
from serving.api import build_app
from serving.bento import PackagedScoring
from serving.scorers import Scoring

logger = logging.getLogger(__name__)

traffic.install()  # before BentoML builds the app (serving/traffic.py says why)
api = build_app()


@bentoml.asgi_app(api, path="/")
@bentoml.service(
    workers=1,
    traffic={"timeout": 10},
    metrics={"enabled": False},
    logging={"access": {"enabled": False}},
    tracing={"excluded_urls": ["/v1/"]},
)
class CustomerScoring:
    """Online scoring of every task with a champion: ``POST /v1/score`` answers all of
    them in one call, ``/v1/<task>`` one, ``/v1/<task>/features`` from given feature
    values; the OpenAPI document is ``/v1/openapi.json``."""

    def __init__(self) -> None:
        settings = Settings()
        # BentoML sets the Bento when it serves a built one.
        bento = CustomerScoring.bento
        self.scoring = Scoring(settings) if bento is None else PackagedScoring(settings, bento)
        champions = self.scoring.champions
        for name, why in champions.unavailable.items():
            logger.warning("not serving %s: %s", name, why)
        if not champions.scorers:
            raise CustlabError("no task has a champion to serve; train one (custlab train)")
        for name, version in champions.versions.items():
            logger.info("serving %s v%s", name, version)
        if bento is not None:
            logger.info("models from Bento %s; MLflow is not contacted", bento.tag)
        if api.state.open:
            logger.warning("no API keys configured (CUSTLAB_API_KEYS): every route is open")
        api.state.scoring = self.scoring
        self.scoring.watch()
        self.scoring.warm_in_background()
        # The models and libraries loaded above are millions of objects that live as long
        # as the process: frozen, the collector stops walking them at every full pass
        # (those passes were the 100 ms tail of the latency).
        gc.collect()
        gc.freeze()

    def __is_ready__(self) -> bool:
        return self.scoring.ready()

    @bentoml.on_shutdown
    def close(self) -> None:
        self.scoring.close()
