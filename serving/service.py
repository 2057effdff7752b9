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

from custlab.settings import Settings
from features.families import FAMILIES
from features.store import OnlineReader, feature_refs, open_store
from serving.models import load_champion_model
from serving.predictions import PredictionLog
from serving.schemas import (
    ChurnFeaturesRequest,
    ChurnRequest,
    Prediction,
    ReasonCode,
    ScoringResponse,
)
from serving.scoring import LoadedModel, Score, score_rows
from training.tasks import get_task

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


@bentoml.service(workers=1, traffic={"timeout": 10})
class CustomerScoring:
    """Online scoring of every task with a champion: answers carry the model version, the
    score, a decision tier with its action, reason codes and warnings."""

    def __init__(self) -> None:
        settings = Settings()
        self.task = get_task("churn")
        self.model: LoadedModel = load_champion_model(settings, self.task)
        self.store = open_store(settings)
        # The model's own features, wherever its feature service keeps them.
        refs = {
            ref.split(":", 1)[1]: ref
            for ref in feature_refs(self.store, self.model.feature_service, list(FAMILIES))
        }
        self.reader = OnlineReader(self.store, [refs[name] for name in self.model.feature_names])
        self.log = PredictionLog(settings.prediction_log_dir)
        logger.info("serving %s v%s", self.model.name, self.model.version)

    def _respond(self, predictions: list[Prediction]) -> ScoringResponse:
        return ScoringResponse(
            model=self.model.name,
            model_version=self.model.version,
            feature_service=self.model.feature_service,
            predictions=predictions,
        )

    @bentoml.api(route="/v1/churn")
    def churn(self, request: ChurnRequest, /) -> ScoringResponse:
        """Churn risk of customers, from their latest features in the online store."""
        ids = list(request.customer_ids)
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
        return self._respond(predictions)

    @bentoml.api(route="/v1/churn/features")
    def churn_features(self, request: ChurnFeaturesRequest, /) -> ScoringResponse:
        """Churn risk of feature rows given in the request."""
        rows = pd.DataFrame([row.model_dump() for row in request.rows])
        predictions = [_prediction(None, s, []) for s in score_rows(self.model, rows)]
        self.log.append(
            self.task.name, _log_records([None] * len(rows), rows, predictions, "features")
        )
        return self._respond(predictions)
