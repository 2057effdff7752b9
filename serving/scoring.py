"""Scoring as plain functions: a loaded model plus feature rows in, actionable answers out.

The BentoML service only validates, fetches features and calls these; tests call them
directly without HTTP.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property

import lightgbm as lgb
import numpy as np
import pandas as pd

from training.forest import Forest, UnsupportedForest, compile_forest
from training.model_input import booster_categories, contributions
from training.pyfunc_model import feature_matrix
from training.record import ModelRecord
from training.tasks import TaskSpec

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    """A champion as serving holds it: its task, the booster and the record it carries."""

    task: TaskSpec
    version: str
    booster: lgb.Booster
    record: ModelRecord

    @property
    def name(self) -> str:
        return self.task.registered_model

    @property
    def feature_service(self) -> str:
        return self.record.feature_service

    # Asked of the booster once: each call into LightGBM copies every name out again,
    # and a scored row asked for them once a reason code.
    @cached_property
    def feature_names(self) -> list[str]:
        return list(self.booster.feature_name())

    @cached_property
    def categories(self) -> dict[str, list[str]]:
        """Each categorical feature's levels in the booster's code order."""
        return booster_categories(self.booster)

    def matrix(self, rows: pd.DataFrame) -> np.ndarray:
        """``rows`` as the float matrix the booster predicts on (:func:`model_matrix`)."""
        return feature_matrix(self.feature_names, self.categories, rows)

    @cached_property
    def forest(self) -> Forest | None:
        """The booster's trees compiled for many rows (:mod:`training.forest`), or None
        where they cannot be (LightGBM predicts then)."""
        try:
            return compile_forest(self.booster)
        except UnsupportedForest as why:
            logger.info("%s v%s predicts with LightGBM: %s", self.name, self.version, why)
            return None

    def raw_scores(self, matrix: np.ndarray) -> np.ndarray:
        """The booster's raw margin of every row of ``matrix``, (rows, classes)."""
        if self.forest is None:
            margin = np.asarray(self.booster.predict(matrix, raw_score=True))
            return margin.reshape(len(matrix), -1)
        return self.forest.raw_scores(matrix)

    @cached_property
    def training_ranges(self) -> tuple[dict[str, float], dict[str, float]]:
        """Each numeric feature's lowest and highest value in the training rows, as
        LightGBM recorded them in the model (``feature_infos``)."""
        line = next(
            row
            for row in self.booster.model_to_string().splitlines()
            if row.startswith("feature_infos=")
        )
        low, high = {}, {}
        for name, info in zip(self.feature_names, line.split("=", 1)[1].split(), strict=True):
            if info.startswith("["):  # a category lists its values; an unused feature "none"
                low[name], high[name] = map(float, info[1:-1].split(":"))
        return low, high


@dataclass(frozen=True)
class Reason:
    feature: str
    value: float | str | None
    contribution: float


@dataclass(frozen=True)
class Score:
    score: float
    tier: str
    action: str
    reasons: list[Reason]
    probabilities: dict[str, float] | None = None  # multiclass: one per class


def _plain(value: object) -> float | str:
    """A feature value as an answer shows it: a number as a float, a category by name."""
    return value if isinstance(value, str) else float(value)  # type: ignore[arg-type]


def from_margin(model: LoadedModel, margin: np.ndarray) -> np.ndarray:
    """The model's prediction from its raw margin, (rows, classes): class probabilities
    for a multiclass task, else one value a row (through the model's calibration when it
    carries one)."""
    objective = model.task.objective
    if objective.name == "multiclass":
        return objective.from_margin(margin)
    calibration = model.record.calibration
    if calibration is None:
        return objective.from_margin(margin[:, 0])
    return calibration.probability(margin[:, 0])


def score_rows(model: LoadedModel, rows: pd.DataFrame, top_reasons: int = 3) -> list[Score]:
    """Score feature rows and explain each score.

    Reason codes are the features with the largest positive contributions to the score
    (LightGBM's per-row SHAP values, ``pred_contrib``; for a multiclass task, to the
    most probable class), i.e. what pushes the prediction up most; each carries the
    feature's value as given (a category by its name).

    Args:
        model: The loaded champion.
        rows: One row per customer with at least the model's features (NaN = unknown).
        top_reasons: How many reason codes per answer.
    """
    task = model.task
    values = model.matrix(rows)
    given = rows[model.feature_names].to_numpy(dtype=object)
    per_class = contributions(model.booster, values)
    # Contributions and the bias add up to the raw margin, so one pass through the trees
    # gives both the explanation and the prediction.
    prediction = from_margin(model, per_class.sum(axis=2))
    if task.objective.name == "multiclass":
        pushes = per_class[np.arange(len(rows)), prediction.argmax(axis=1), :-1]
    else:
        pushes = per_class[:, 0, :-1]
    scores = []
    for i, p in enumerate(prediction):
        order = np.argsort(-pushes[i], kind="stable")[:top_reasons]
        reasons = [
            Reason(
                feature=model.feature_names[j],
                value=_plain(given[i, j]) if not np.isnan(values[i, j]) else None,
                contribution=round(float(pushes[i, j]), 4),
            )
            for j in order
            if pushes[i, j] > 0
        ]
        tier = task.policy.decide(p, model.record.tier_cuts)
        if task.objective.name == "multiclass":
            probabilities = dict(zip(task.classes, map(float, p), strict=True))
            scores.append(Score(float(p.max()), tier.name, tier.action, reasons, probabilities))
        else:
            scores.append(Score(float(p), tier.name, tier.action, reasons))
    return scores
