"""Request and response models of the scoring API: bounds are declared here once."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model

from features.families import FAMILIES

MAX_BATCH = 1000

# Validation errors name the field but never repeat the value: ids are customer data.
_REQUEST_CONFIG = ConfigDict(extra="forbid", hide_input_in_errors=True, frozen=True)

CustomerId = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:@-]+$")
]


class ScoreRequest(BaseModel):
    """Customers to score; their features come from the online store."""

    model_config = _REQUEST_CONFIG

    customer_ids: list[CustomerId] = Field(min_length=1, max_length=MAX_BATCH)


FeatureRow = create_model(
    "FeatureRow",
    __config__=_REQUEST_CONFIG,
    **{
        feature.name: (
            (float | None, Field(None, description=feature.description, allow_inf_nan=False))
            if feature.kind == "number"
            else (str | None, Field(None, description=feature.description, max_length=64))
        )
        for family in FAMILIES.values()
        for feature in family.features
    },
)
FeatureRow.__doc__ = "Feature values of one customer; a missing feature is unknown."


class FeaturesRequest(BaseModel):
    """Feature rows to score as they are, without the feature store."""

    model_config = _REQUEST_CONFIG

    rows: list[FeatureRow] = Field(min_length=1, max_length=MAX_BATCH)  # type: ignore[valid-type]


class ReasonCode(BaseModel):
    feature: str
    value: float | str | None
    contribution: float = Field(description="Push of this feature on the score (log-odds).")


class Prediction(BaseModel):
    customer_id: str | None = None
    score: float | None = Field(
        description="The task's prediction: a probability, an expected amount, or (for a "
        "multiclass task) the probability of the most likely class."
    )
    tier: str | None = Field(description="The decision tier (for a multiclass task: the class).")
    action: str | None = Field(description="What to do for a customer in this tier.")
    probabilities: dict[str, float] | None = Field(
        None, description="Multiclass tasks: the probability of each class."
    )
    reasons: list[ReasonCode] = Field(description="Features that raise the risk most.")
    warnings: list[str] = Field(default_factory=list)


class ScoringResponse(BaseModel):
    model: str
    model_version: str
    feature_service: str
    predictions: list[Prediction]
