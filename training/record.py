"""What a model version carries, as one typed record written and read here alone.

Training writes the record when it registers a version; serving and monitoring read it
back. It travels as one JSON tag on the registry's model version (a few plain tags beside
it are for people browsing the MLflow UI; nothing reads them).
"""

from __future__ import annotations

import hashlib
from datetime import date

import pandas as pd
from mlflow import MlflowClient
from pydantic import BaseModel, ConfigDict, Field

from features.contract import ENTITY_KEY, EVENT_TIMESTAMP
from features.errors import CustlabError
from training.calibration import Calibration

RECORD_TAG = "custlab.record"


class Window(BaseModel):
    """First and last as-of date of a split."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    first: date
    last: date

    @classmethod
    def of(cls, dates: pd.DatetimeIndex) -> Window:
        return cls(first=dates[0].date(), last=dates[-1].date())

    def as_of_dates(self, stamps: pd.DatetimeIndex) -> pd.DatetimeIndex:
        """The dates among ``stamps`` inside the window."""
        first = pd.Timestamp(self.first, tz="UTC")
        last = pd.Timestamp(self.last, tz="UTC")
        return pd.DatetimeIndex(sorted(d for d in stamps if first <= d <= last))

    def __str__(self) -> str:
        return f"{self.first:%Y-%m-%d}..{self.last:%Y-%m-%d}"


class ModelRecord(BaseModel):
    """A registered model version: what it predicts, from what, judged how."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: str
    objective: str
    feature_service: str
    features: list[str] = Field(description="Model inputs in the booster's order.")
    classes: list[str] = Field(default_factory=list, description="Multiclass: code order.")
    train_window: Window
    valid_window: Window
    test_window: Window
    metrics: dict[str, float] = Field(description="On the test window.")
    baseline_metrics: dict[str, dict[str, float]] = Field(default_factory=dict)
    tier_cuts: dict[str, float] = Field(default_factory=dict)
    calibration: Calibration | None = Field(
        None, description="Binary: maps the booster's margin to calibrated probabilities."
    )
    data_fingerprint: str = Field(description="Hash of the labelled rows it was fitted on.")
    labelled_table: str | None = Field(
        None, description="The labelled table it learned from; None: the event tables."
    )

    def write(self, model_name: str, version: str) -> None:
        client = MlflowClient()
        client.set_model_version_tag(model_name, version, RECORD_TAG, self.model_dump_json())
        for key, value in {
            "task": self.task,
            "feature_service": self.feature_service,
            "train_window": str(self.train_window),
            "test_window": str(self.test_window),
            "data_fingerprint": self.data_fingerprint,
        }.items():
            client.set_model_version_tag(model_name, version, key, value)

    @classmethod
    def read(cls, model_name: str, version: str) -> ModelRecord:
        """The record of a registered version.

        Raises:
            CustlabError: The version carries no record (registered outside custlab).
        """
        tags = MlflowClient().get_model_version(model_name, version).tags
        if RECORD_TAG not in tags:
            raise CustlabError(
                f"{model_name} v{version} carries no custlab record; register it with custlab train"
            )
        return cls.model_validate_json(tags[RECORD_TAG])


def fingerprint(frame: pd.DataFrame, label: str) -> str:
    """A short hash of the labelled rows (keys and label): same rows, same fingerprint."""
    keys = frame[[ENTITY_KEY, EVENT_TIMESTAMP, label]].astype(str)
    hashed = pd.util.hash_pandas_object(keys, index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()[:16]
