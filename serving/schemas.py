"""Request and response models of the scoring API: bounds are declared here once.

Responses are built as plain dicts on the hot path (serving/scorers.py); these models
are what the OpenAPI document publishes, and the tests hold the two together.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model

from features.families import FAMILIES

MAX_BATCH = 1000
# A full batch of feature rows is about 2 MB (of the longest ids, 130 KB); a body past
# this is refused before it is read.
MAX_BODY_BYTES = 4 * 1024 * 1024

# Validation errors name the field but never repeat the value: ids are customer data.
# Strict: "12" and true are not numbers, whatever a lenient parser would make of them.
_REQUEST_CONFIG = ConfigDict(extra="forbid", hide_input_in_errors=True, frozen=True, strict=True)

CustomerId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@+-]+$"),
    Field(description="The application's own customer id; custlab pseudonymizes it."),
]
Ids = Annotated[list[CustomerId], Field(min_length=1, max_length=MAX_BATCH)]


class ScoreRequest(BaseModel):
    """Customers to score with one task; their features come from the online store."""

    model_config = _REQUEST_CONFIG

    customer_ids: Ids


class BatchRequest(BaseModel):
    """Customers to score with several tasks in one call (one feature fetch)."""

    model_config = _REQUEST_CONFIG

    customer_ids: Ids
    tasks: list[str] | None = Field(
        None, min_length=1, description="Tasks to answer (default: every served task)."
    )


FeatureRow = create_model(
    "FeatureRow",
    # A feature left out is unknown; one given has a value (null is refused), and a row
    # gives at least one, as the route checks and the document says.
    __config__=_REQUEST_CONFIG | ConfigDict(json_schema_extra={"minProperties": 1}),
    **{
        feature.name: (
            (float, Field(None, description=feature.description, allow_inf_nan=False))
            if feature.kind == "number"
            else (str, Field(None, description=feature.description, max_length=64))
        )
        for family in FAMILIES.values()
        for feature in family.features
    },
)
FeatureRow.__doc__ = "Feature values of one customer; a feature left out is unknown."


class FeaturesRequest(BaseModel):
    """Feature rows to score as they are, without the feature store."""

    model_config = _REQUEST_CONFIG

    rows: list[FeatureRow] = Field(min_length=1, max_length=MAX_BATCH)  # type: ignore[valid-type]


class ReasonCode(BaseModel):
    feature: str
    value: float | str | None
    contribution: float = Field(description="Push of this feature on the score (raw margin).")


class Prediction(BaseModel):
    customer_id: str | None = Field(None, description="The id as the request sent it.")
    score: float | None = Field(
        description="The task's prediction: a probability, an expected amount, or (for a "
        "multiclass task) the probability of the most likely class."
    )
    tier: str | None = Field(description="The decision tier (for a multiclass task: the class).")
    action: str | None = Field(description="What to do for a customer in this tier.")
    probabilities: dict[str, float] | None = Field(
        None, description="Multiclass tasks: the probability of each class."
    )
    reasons: list[ReasonCode] = Field(description="The features that push the score up most.")
    feature_timestamp: datetime | None = Field(
        None, description="When the customer's newest online features were computed."
    )
    warnings: list[str] = Field(default_factory=list)


class ScoringResponse(BaseModel):
    model: str
    model_version: str
    feature_service: str
    predictions: list[Prediction]


class TaskAnswer(Prediction):
    """One task's answer inside a multi-task response."""

    model: str
    model_version: str


class CustomerAnswer(BaseModel):
    customer_id: str
    scores: dict[str, TaskAnswer] = Field(description="Per task, its champion's answer.")


class BatchResponse(BaseModel):
    customers: list[CustomerAnswer]
    unavailable: dict[str, str] = Field(
        default_factory=dict, description="Tasks asked for that have no champion, and why."
    )


class FieldProblem(BaseModel):
    field: str = Field(description="Where in the body, dotted (customer_ids.3).")
    problem: str


class ErrorDetail(BaseModel):
    code: str = Field(description="invalid_request, not_found, unavailable, ...")
    message: str
    fields: list[FieldProblem] = Field(default_factory=list)


class ErrorBody(BaseModel):
    """Every 4xx and 5xx answer: never a submitted value, never a traceback."""

    error: ErrorDetail
