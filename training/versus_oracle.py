"""A model against what is knowable in principle: on a simulated world, the oracle's
true probabilities (or expected spend) scored by the task's own metric on the model's
own test rows. The ratio says how much of the attainable the model reaches."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.contract import ENTITY_KEY, EVENT_TIMESTAMP
from features.errors import CustlabError
from features.simulate import World, oracle_answer
from training.tasks import TaskSpec


@dataclass(frozen=True)
class OracleComparison:
    metric: str
    model: float
    oracle: float

    @property
    def ratio(self) -> float:
        return self.model / self.oracle if self.oracle else float("nan")

    def describe(self) -> str:
        return (
            f"{self.metric} {self.model:.4f} is {self.ratio:.3f} of the oracle's {self.oracle:.4f}"
        )


def versus_oracle(
    task: TaskSpec, world: World, test: pd.DataFrame, prediction: np.ndarray
) -> OracleComparison | None:
    """The model's and the oracle's deciding metric on the same test rows, or None for
    a task the oracle knows no answer to.

    Args:
        task: The task.
        world: The simulated world the rows come from.
        test: The test rows: keys and the task's label.
        prediction: The model's prediction for each row.

    Raises:
        CustlabError: A test row has no oracle answer (it is not from ``world``).
    """
    if task.oracle is None:
        return None
    dates = pd.DatetimeIndex(sorted(test[EVENT_TIMESTAMP].unique()))
    truth = oracle_answer(world, dates, task.oracle, task.horizon_days)
    keys = [ENTITY_KEY, EVENT_TIMESTAMP]
    joined = test[keys].merge(truth, on=keys, how="left", validate="one_to_one")
    if joined["oracle"].isna().any():
        unknown = joined.loc[joined["oracle"].isna(), ENTITY_KEY].iloc[0]
        raise CustlabError(
            f"test row of customer {unknown} has no oracle answer: not from this simulated world"
        )
    metric = task.objective.metric(task.primary_metric)
    target, ones = task.targets(test), np.ones(len(test))
    return OracleComparison(
        task.primary_metric,
        model=metric(target, np.asarray(prediction), ones),
        oracle=metric(target, joined["oracle"].to_numpy(), ones),
    )
