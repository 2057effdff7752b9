"""Purchase propensity: will a customer order within 30 days?"""

from __future__ import annotations

from features.labels import propensity_labels
from training import baselines
from training.objectives import OBJECTIVES
from training.tasks.base import ScoreTiers, TaskSpec, Tier

TASK = TaskSpec(
    name="propensity",
    description="Probability that the customer places an order in the next 30 days.",
    label="purchased",
    labels=propensity_labels,
    horizon_days=30,
    objective=OBJECTIVES["binary"],
    oracle="purchase",
    feature_service="propensity_v1",
    primary_metric="roc_auc",
    baselines={
        "frequency_rule": baselines.frequency_rule,
        "rfm_logistic": baselines.rfm_logistic,
    },
    policy=ScoreTiers(
        (
            Tier("high", "personal recommendation now", share=0.1),
            Tier("medium", "include in the next campaign", share=0.2),
            Tier("low", "no action"),
        )
    ),
)
