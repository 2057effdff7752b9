"""The BentoML service: loads every champion once at start, then validates, fetches
features, scores and logs. The scoring itself lives in :mod:`serving.scoring`.

Run it with ``custlab serve`` (which checks the registry first) or
``bentoml serve serving.service:CustomerScoring``.
"""

from __future__ import annotations

import logging
from typing import Any

import bentoml
import pandas as pd
from bentoml.exceptions import NotFound, ServiceUnavailable
from feast import FeatureStore

from custlab.settings import Settings
from features.errors import CustlabError
from features.store import OnlineReader, feature_refs, open_store
from serving.models import load_champion_model
from serving.predictions import PredictionLog
from serving.schemas import (
    FeaturesRequest,
    Prediction,
    ReasonCode,
    ScoreRequest,
    ScoringResponse,
)
from serving.scoring import LoadedModel, Score, score_rows
from training.tasks import TASKS, get_task

logger = logging.getLogger(__name__)

UNKNOWN_CUSTOMER = "unknown_customer: no features in the online store; not scored"


def outside_population(rule: str) -> str:
    return f"outside_population: the model is trained on {rule}"


def _prediction(customer_id: str | None, score: Score, warnings: list[str]) -> Prediction:
    return Prediction(
        customer_id=customer_id,
        score=round(score.score, 6),
        tier=score.tier,
        action=score.action,
        probabilities=score.probabilities,
        reasons=[ReasonCode(**vars(reason)) for reason in score.reasons],
        warnings=warnings,
    )


def _log_records(
    ids: list[str | None], rows: pd.DataFrame, predictions: list[Prediction], source: str
) -> list[dict[str, Any]]:
    names = list(rows.columns)
    return [
        {
            "customer_id": cid,
            "source": source,
            "score": p.score,
            "tier": p.tier,
            # NaN != NaN: an unknown feature is logged as null.
            "features": {
                n: None if v is None or v != v else v for n, v in zip(names, values, strict=True)
            },
        }
        for cid, p, values in zip(ids, predictions, rows.to_numpy().tolist(), strict=True)
    ]


class TaskScorer:
    """One task's champion with the online reader of its own features."""

    def __init__(self, model: LoadedModel, store: FeatureStore, log: PredictionLog) -> None:
        self.model, self.task, self.log = model, model.task, log
        # The model's own features, wherever its feature service keeps them.
        refs = {ref.split(":", 1)[1]: ref for ref in feature_refs(store, model.feature_service)}
        self.reader = OnlineReader(store, [refs[name] for name in model.feature_names])

    def respond(self, predictions: list[Prediction]) -> ScoringResponse:
        return ScoringResponse(
            model=self.model.name,
            model_version=self.model.version,
            feature_service=self.model.feature_service,
            predictions=predictions,
        )

    def score_customers(self, ids: list[str]) -> ScoringResponse:
        online = self.reader.read(ids)
        rows, known = online.features, online.known
        scores = iter(score_rows(self.model, rows[known]) if known.any() else [])
        inside = self.task.population(rows)
        predictions = []
        for cid, is_known, is_inside, stale in zip(
            ids, known, inside, online.stale_days, strict=True
        ):
            if not is_known:
                predictions.append(
                    Prediction(
                        customer_id=cid,
                        score=None,
                        tier=None,
                        action=None,
                        reasons=[],
                        warnings=[UNKNOWN_CUSTOMER],
                    )
                )
                continue
            warnings = []
            if not is_inside:
                warnings.append(outside_population(self.task.population_rule))
            if stale > 0:
                warnings.append(f"stale_features: {stale:.0f} days past the feature view's ttl")
            predictions.append(_prediction(cid, next(scores), warnings))
        self.log.append(self.task.name, _log_records(ids, rows, predictions, "online"))
        return self.respond(predictions)

    def score_features(self, rows: pd.DataFrame) -> ScoringResponse:
        table = self.model.record.labelled_table
        if table is not None:
            # The request schema holds the event families' features, not this table's.
            raise NotFound(
                f"{self.task.name}'s champion learned from labelled table {table}: score "
                f"its customers by id at /v1/{self.task.name}"
            )
        predictions = [_prediction(None, s, []) for s in score_rows(self.model, rows)]
        self.log.append(
            self.task.name, _log_records([None] * len(rows), rows, predictions, "features")
        )
        return self.respond(predictions)


def _routes(task: str) -> dict[str, Any]:
    """The two routes of one task: its customers by id, and feature rows as given."""

    def by_id(self, request: ScoreRequest, /) -> ScoringResponse:
        return self.scorer(task).score_customers(list(request.customer_ids))

    def by_features(self, request: FeaturesRequest, /) -> ScoringResponse:
        rows = pd.DataFrame([row.model_dump() for row in request.rows])
        return self.scorer(task).score_features(rows)

    description = get_task(task).description
    by_id.__doc__ = f"{description} Features from the online store."
    by_features.__doc__ = f"{description} Features as given in the request."
    routes = {}
    for function, name, route in (
        (by_id, task, f"/v1/{task}"),
        (by_features, f"{task}_features", f"/v1/{task}/features"),
    ):
        # BentoML finds an API by its function's name: it must be the attribute's.
        function.__name__ = function.__qualname__ = name
        routes[name] = bentoml.api(route=route)(function)
    return routes


@bentoml.service(workers=1, traffic={"timeout": 10})
class CustomerScoring:
    """Online scoring of every task with a champion: answers carry the model version, the
    score, a decision tier with its action, reason codes and warnings. Each task has
    ``/v1/<task>`` and ``/v1/<task>/features``; a task without a champion answers 503
    saying why."""

    def __init__(self) -> None:
        settings = Settings()
        store = open_store(settings)
        log = PredictionLog(settings.prediction_log_dir)
        self.scorers: dict[str, TaskScorer] = {}
        self.unavailable: dict[str, str] = {}
        for name, task in TASKS.items():
            try:
                model = load_champion_model(settings, task)
            except CustlabError as error:
                self.unavailable[name] = str(error)
                logger.warning("not serving %s: %s", name, error)
                continue
            self.scorers[name] = TaskScorer(model, store, log)
            logger.info("serving %s v%s", model.name, model.version)
        if not self.scorers:
            raise CustlabError("no task has a champion to serve; train one (custlab train)")

    def scorer(self, task: str) -> TaskScorer:
        if task not in self.scorers:
            raise ServiceUnavailable(f"{task} is not served: {self.unavailable[task]}")
        return self.scorers[task]

    for _task in TASKS:
        vars().update(_routes(_task))
    del _task
