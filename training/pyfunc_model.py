"""A registered custlab model as MLflow's generic pyfunc, and the one home of turning
feature rows into the matrix a booster predicts on.

MLflow copies this file into every model it registers (a model "from code") and runs it
when the model is loaded by ``mlflow.pyfunc.load_model`` or ``mlflow models predict /
serve``, so it imports nothing of custlab: rows of plain values go in (a category as its
name, which is what JSON carries), the task's predictions come out, calibrated where the
model is. custlab's own rooms read the booster file beside it and call
:func:`feature_matrix` through :mod:`training.model_input`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd
from scipy.special import expit

BOOSTER = "booster"  # artifact keys
SCORING = "scoring"


def feature_matrix(
    names: Sequence[str], categories: Mapping[str, Sequence[str]], rows: pd.DataFrame
) -> np.ndarray:
    """``rows`` as a float matrix, columns ``names`` in order: a categorical feature's
    names become its codes in ``categories`` (an unseen or missing level becomes NaN,
    LightGBM's missing), numbers become floats (blanks NaN)."""
    missing = [name for name in names if name not in rows.columns]
    if missing:
        raise KeyError(f"rows lack feature(s) {', '.join(missing)}")
    matrix = np.empty((len(rows), len(names)), dtype=np.float64)
    for j, name in enumerate(names):
        column = rows[name]
        if name in categories:
            codes = pd.Categorical(column.astype(object), categories=categories[name]).codes
            matrix[:, j] = np.where(codes >= 0, codes, np.nan)
        else:
            matrix[:, j] = pd.to_numeric(column, errors="coerce").to_numpy(
                dtype=np.float64, na_value=np.nan
            )
    return matrix


def scoring_spec(
    booster: lgb.Booster,
    categories: Mapping[str, Sequence[str]],
    objective: str,
    classes: Sequence[str],
    calibration: tuple[float, float] | None,
) -> dict[str, Any]:
    """What the pyfunc needs beside the booster file, as JSON."""
    return {
        "features": booster.feature_name(),
        "categories": {name: list(levels) for name, levels in categories.items()},
        "objective": objective,
        "classes": list(classes),
        "calibration": list(calibration) if calibration else None,
    }


class CustlabModel(mlflow.pyfunc.PythonModel):
    """Predictions of a registered custlab model for rows of feature values."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        self.booster = lgb.Booster(model_file=context.artifacts[BOOSTER])
        with open(context.artifacts[SCORING], encoding="utf-8") as file:
            self.spec = json.load(file)

    def predict(
        self,
        context: mlflow.pyfunc.PythonModelContext,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame | np.ndarray:
        spec = self.spec
        matrix = feature_matrix(spec["features"], spec["categories"], model_input)
        if spec["objective"] == "multiclass":
            probability = self.booster.predict(matrix)
            return pd.DataFrame(probability, columns=spec["classes"])
        if spec["calibration"] is not None:
            slope, intercept = spec["calibration"]
            return expit(slope * self.booster.predict(matrix, raw_score=True) + intercept)
        return np.asarray(self.booster.predict(matrix))


# What MLflow loads when it runs this file as a model's code; when custlab imports the
# module for feature_matrix, the call only records the model MLflow would load.
mlflow.models.set_model(CustlabModel())
