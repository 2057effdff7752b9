"""Task specs: what each customer model predicts, over which horizon, judged by what.

Horizons and definitions live here as parameters, not as literals in the code that
builds labels or fits models.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from features.errors import CustlabError
from features.labels import LABEL_FACTORIES

TaskName = Literal["churn"]


class TaskSpec(BaseModel):
    """One customer model: its label, objective, feature service and the metric that
    decides tuning and promotion."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: TaskName
    label: str = Field(description="The label column its label factory writes.")
    labels: str = Field(description="Its label factory, a key of features.labels.LABEL_FACTORIES.")
    label_params: dict[str, int | float | str] = Field(
        default_factory=dict, description="Extra parameters of the label factory."
    )
    objective: Literal["binary"]
    feature_service: str = Field(description="Versioned Feast feature service it trains on.")
    horizon_days: int = Field(gt=0, description="How far after the as-of date the label looks.")
    primary_metric: str = Field(description="Higher is better; tuning and the gate use it.")
    monotone: dict[str, Literal[-1, 1]] = Field(
        default_factory=dict,
        description="Features the score may only rise (1) or only fall (-1) with: domain "
        "knowledge the model must respect whatever the sample says.",
    )
    promotion_margin: float = Field(
        0.002, ge=0.0, description="How much the challenger must beat the champion by."
    )

    @property
    def registered_model(self) -> str:
        return f"custlab-{self.name}"

    @property
    def active_window_days(self) -> int:
        """Who the model scores: customers with a purchase in this many days."""
        return int(self.label_params.get("active_window_days", 365))

    def label_frame(
        self, tables: Mapping[str, pd.DataFrame], as_of: pd.DatetimeIndex
    ) -> pd.DataFrame:
        """The task's labels at ``as_of`` from the raw ``tables``."""
        factory = LABEL_FACTORIES[self.labels]
        return factory(tables, as_of, horizon_days=self.horizon_days, **self.label_params)


TASKS: dict[str, TaskSpec] = {
    "churn": TaskSpec(
        name="churn",
        label="churned",
        labels="churn",
        label_params={"active_window_days": 365},
        objective="binary",
        feature_service="churn_v1",
        horizon_days=90,
        primary_metric="roc_auc",
        # Longer since the last order never lowers churn risk.
        monotone={"recency_days": 1},
    ),
}


def get_task(name: str) -> TaskSpec:
    """Look up a task spec by name.

    Raises:
        CustlabError: ``name`` is not a known task; the message lists the known ones.
    """
    if name not in TASKS:
        raise CustlabError(f"unknown task '{name}'; known tasks: {', '.join(TASKS)}")
    return TASKS[name]
