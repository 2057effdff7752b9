"""What a task is: one declaration naming everything that makes a customer model itself.

A :class:`TaskSpec` names its label factory and horizon, who it scores, its objective and
the metric that decides tuning and promotion, its baselines, its feature service,
monotone constraints and the decision policy serving applies. Dataset, split, tuning,
fitting, evaluation, registration, the gate, serving and monitoring read the spec and
know nothing else about the task.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from features.labels import LabelFactory
from features.simulate.oracle import OracleTruth
from training.objectives import Objective

Tables = Mapping[str, pd.DataFrame]
# A baseline is fitted on the training rows (features and labels) and predicts the test
# rows in the model's own output shape, so one metric set judges both.
Baseline = Callable[[pd.DataFrame, pd.DataFrame, "TaskSpec"], np.ndarray]


@dataclass(frozen=True)
class Tier:
    """A decision tier: the share of scores it takes from the top, and what to do."""

    name: str
    action: str
    share: float = 1.0


@dataclass(frozen=True)
class ScoreTiers:
    """Tiers cut from the top of the test window's score distribution: the first takes
    the highest ``share`` of scores, the next the following share, the last the rest.
    The cuts are stored with the model version, so serving applies the same ones."""

    tiers: tuple[Tier, ...]
    kind: Literal["score"] = "score"

    def cuts(self, scores: np.ndarray) -> dict[str, float]:
        """Each tier's lowest score (all but the last tier)."""
        cuts, taken = {}, 0.0
        for tier in self.tiers[:-1]:
            taken += tier.share
            cuts[tier.name] = float(np.quantile(scores, 1.0 - taken))
        return cuts

    def decide(self, prediction: np.ndarray | float, cuts: Mapping[str, float]) -> Tier:
        """The first tier whose cut the score reaches; the last tier below all of them."""
        return self.tiers[int(self.decide_all(np.asarray([prediction]), cuts)[0])]

    def decide_all(self, predictions: np.ndarray, cuts: Mapping[str, float]) -> np.ndarray:
        """:meth:`decide` for many scores at once: each one's tier index."""
        chosen = np.full(len(predictions), len(self.tiers) - 1)
        # From the lowest cut up, so the first tier a score reaches is the one it keeps.
        for index in range(len(self.tiers) - 2, -1, -1):
            name = self.tiers[index].name
            if name in cuts:
                chosen[np.asarray(predictions, dtype=float) >= cuts[name]] = index
        return chosen


@dataclass(frozen=True)
class ClassTiers:
    """The tier is the most probable class; each class has its action."""

    tiers: tuple[Tier, ...]  # one per class, in the task's class order
    kind: Literal["class"] = "class"

    def cuts(self, scores: np.ndarray) -> dict[str, float]:
        return {}

    def decide(self, prediction: np.ndarray | float, cuts: Mapping[str, float]) -> Tier:
        return self.tiers[int(np.argmax(prediction))]

    def decide_all(self, predictions: np.ndarray, cuts: Mapping[str, float]) -> np.ndarray:
        """Each row's tier index: its most probable class (rows of class probabilities)."""
        return np.asarray(predictions).argmax(axis=1)


DecisionPolicy = ScoreTiers | ClassTiers


def everyone(rows: pd.DataFrame) -> np.ndarray:
    """Every known customer is in the population."""
    return np.ones(len(rows), dtype=bool)


@dataclass(frozen=True)
class TaskSpec:
    """One customer model.

    Attributes:
        name: The task, e.g. ``churn``; the registered model is ``custlab-<name>``.
        description: What the score means, in one line (the answers' field description).
        label: The label column its factory writes.
        labels: Its label factory (:mod:`features.labels`).
        horizon_days: How far after the as-of date the label looks (also the purge gap).
        objective: Binary, tweedie or multiclass.
        feature_service: The versioned Feast feature service it trains and serves on.
        primary_metric: Higher is better; decides tuning, the gate and the ablation.
        baselines: Named baselines fitted and scored on the same rows as the model.
        policy: How serving turns a prediction into a tier and an action.
        population: Who the model scores, from feature rows (serving and monitoring
            warn about, or leave out, the others), and that rule in words.
        label_params: Extra parameters of the label factory.
        classes: The classes of a multiclass task, in code order.
        monotone: Features the prediction may only rise (1) or only fall (-1) with.
        promotion_margin: How much the challenger must beat the champion by.
        split_by_customer: Keep customers apart across train, validation and test
            instead of purging one horizon between them (a horizon too long for two
            gaps in the history; see :mod:`training.split`).
        oracle: Which answer of the simulator's oracle is this task's, at its horizon
            (:func:`features.simulate.oracle_answer`); on a simulated world the model
            is reported against it. None: the oracle knows no such answer.
    """

    name: str
    description: str
    label: str
    labels: LabelFactory
    horizon_days: int
    objective: Objective
    feature_service: str
    primary_metric: str
    baselines: Mapping[str, Baseline]
    policy: DecisionPolicy
    population: Callable[[pd.DataFrame], np.ndarray] = everyone
    population_rule: str = "every known customer"
    label_params: Mapping[str, Any] = field(default_factory=dict)
    classes: tuple[str, ...] = ()
    monotone: Mapping[str, Literal[-1, 1]] = field(default_factory=dict)
    promotion_margin: float = 0.002
    split_by_customer: bool = False
    oracle: OracleTruth | None = None

    def __post_init__(self) -> None:
        if self.horizon_days <= 0:
            raise ValueError(f"task {self.name}: horizon_days must be positive")
        if (self.objective.name == "multiclass") != bool(self.classes):
            raise ValueError(f"task {self.name}: classes go with a multiclass objective")
        if isinstance(self.policy, ClassTiers) and [t.name for t in self.policy.tiers] != list(
            self.classes
        ):
            raise ValueError(f"task {self.name}: a class policy names one tier per class")

    @property
    def registered_model(self) -> str:
        return f"custlab-{self.name}"

    def label_frame(
        self, tables: Tables, as_of: pd.DatetimeIndex, observation_end: pd.Timestamp | None = None
    ) -> pd.DataFrame:
        """The task's labels at ``as_of`` from the raw ``tables``: those whose horizon has
        closed by ``observation_end`` (default: the newest order)."""
        # Passed only when given: a factory that takes no observation_end still labels
        # the whole history (training as known by a moment needs one that does).
        known_by = {} if observation_end is None else {"observation_end": observation_end}
        return self.labels(
            tables, as_of, horizon_days=self.horizon_days, **known_by, **self.label_params
        )

    def targets(self, frame: pd.DataFrame) -> np.ndarray:
        """The label column as LightGBM fits it."""
        return self.objective.targets(frame[self.label], self.classes)

    def metrics(self, frame: pd.DataFrame, prediction: np.ndarray) -> dict[str, float]:
        """The objective's metric set of ``prediction`` against the frame's labels."""
        return self.objective.metrics(self.targets(frame), prediction)

    def monotone_constraints(self, features: Sequence[str]) -> list[int]:
        return [int(self.monotone.get(name, 0)) for name in features]
