"""Feature rows as a model takes them: numbers as floats, categories as categories.

Training hands LightGBM pandas categoricals, so the booster itself records each
category's levels (``pandas_categorical`` in the model file); serving and monitoring map
strings to the same codes from the booster, so a category means the same thing in every
room and a level never seen in training counts as missing, not as some other level.
"""

from __future__ import annotations

from collections.abc import Sequence

import lightgbm as lgb
import numpy as np
import pandas as pd

from features.families import feature_kinds
from training.calibration import Calibration
from training.pyfunc_model import feature_matrix


def categorical_features(features: Sequence[str], frame: pd.DataFrame | None = None) -> list[str]:
    """The features among ``features`` that are categories: as their family declares,
    or, for a feature no family declares (a labelled table's column), as its column in
    ``frame`` holds text."""
    kinds = feature_kinds()
    return [
        name
        for name in features
        if kinds.get(name) == "category"
        or (name not in kinds and frame is not None and _is_text(frame[name]))
    ]


def _is_text(column: pd.Series) -> bool:
    return column.dtype == object or isinstance(column.dtype, (pd.StringDtype, pd.CategoricalDtype))


def model_frame(frame: pd.DataFrame, features: Sequence[str]) -> pd.DataFrame:
    """The feature columns of ``frame`` typed for LightGBM training: float32 numbers,
    categories with their levels sorted (so the codes do not depend on row order)."""
    categorical = set(categorical_features(features, frame))
    columns = {}
    for name in features:
        if name in categorical:
            values = frame[name].astype(object).where(frame[name].notna(), None)
            levels = sorted({v for v in values if v is not None})
            columns[name] = pd.Categorical(values, categories=levels)
        else:
            columns[name] = pd.to_numeric(frame[name], errors="raise").astype(np.float32)
    return pd.DataFrame(columns, index=frame.index)


def booster_categories(booster: lgb.Booster) -> dict[str, list[str]]:
    """Each categorical feature of a booster and its levels, in code order, as the
    booster itself records them (the columns it was trained on as categories)."""
    names = booster.feature_name()
    # A freshly trained booster keeps the indices as categorical_column; one read from a
    # model file as categorical_feature.
    params = booster.params or {}
    indices = params.get("categorical_column", params.get("categorical_feature")) or []
    if isinstance(indices, (int, str)):
        indices = [indices]
    levels = booster.pandas_categorical or []
    categorical = [names[int(i)] for i in indices]
    return dict(zip(categorical, levels, strict=True))


def model_matrix(booster: lgb.Booster, rows: pd.DataFrame) -> np.ndarray:
    """``rows`` as the float matrix the booster predicts on, columns in its order.

    Categories become the booster's codes; an unseen or missing level becomes NaN.
    """
    return feature_matrix(booster.feature_name(), booster_categories(booster), rows)


SMALL_BATCH = 64


def contributions(booster: lgb.Booster, matrix: np.ndarray) -> np.ndarray:
    """LightGBM's TreeSHAP values (``pred_contrib``) as (rows, classes, features + 1):
    one class block for a binary or regression model, each block ending in its bias.
    A block adds up to that class's raw margin."""
    # A few rows (an online request) are faster on one thread than waking a team of
    # them, above all on a busy machine (one row: 0.17 ms against 7.2 ms, measured here).
    threads = {"num_threads": 1} if len(matrix) < SMALL_BATCH else {}
    raw = np.asarray(booster.predict(matrix, pred_contrib=True, **threads))
    return raw.reshape(len(matrix), -1, matrix.shape[1] + 1)


def predict(
    booster: lgb.Booster, rows: pd.DataFrame, calibration: Calibration | None = None
) -> np.ndarray:
    """The booster's prediction for ``rows`` (probabilities for a binary objective,
    through ``calibration`` when the model carries one)."""
    matrix = model_matrix(booster, rows)
    if calibration is None:
        return np.asarray(booster.predict(matrix))
    return calibration.probability(np.asarray(booster.predict(matrix, raw_score=True)))
