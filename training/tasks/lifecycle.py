"""Lifecycle stage: where a customer will stand 90 days from now."""

from __future__ import annotations

from features.families.segments import STAGES
from features.labels import lifecycle_labels
from training import baselines
from training.objectives import OBJECTIVES
from training.tasks.base import ClassTiers, TaskSpec, Tier

ACTIONS = {
    "new": "onboarding journey",
    "active": "no action",
    "growing": "loyalty programme invitation",
    "at_risk": "win-back offer",
    "churned": "reactivation campaign",
    "reactivated": "welcome-back follow-up",
}

TASK = TaskSpec(
    name="lifecycle",
    description="Probability of each lifecycle stage 90 days from now.",
    label="future_stage",
    labels=lifecycle_labels,
    horizon_days=90,
    objective=OBJECTIVES["multiclass"],
    classes=tuple(STAGES),
    feature_service="lifecycle_v1",
    primary_metric="macro_f1",
    baselines={"persistence": baselines.persistence},
    policy=ClassTiers(tuple(Tier(stage, ACTIONS[stage]) for stage in STAGES)),
)
