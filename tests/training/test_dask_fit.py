"""The final fit on Dask: lightgbm.dask on a local cluster of two workers gives a booster
like one process's (same trees count, categories, class count, about the same scores)."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from custlab.settings import Settings
from training.dask_fit import DaskFit, fit_on_dask
from training.tune import base_params


def _rows(n: int = 8_000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    rows = pd.DataFrame(
        {
            "recency": rng.exponential(30, n),
            "spend": rng.gamma(2, 50, n),
            "channel": pd.Categorical(rng.choice(["web", "app", "store"], n)),
        }
    )
    signal = -rows["recency"] / 30 + rows["spend"] / 100 + (rows["channel"] == "app") * 1.0
    return rows, (signal + rng.normal(size=n) > 0.5).to_numpy(dtype=float)


def test_a_binary_fit_on_dask_scores_like_one_process(dask_local):
    rows, targets = _rows()
    params = base_params({"objective": "binary"}, seed=0) | {
        "learning_rate": 0.1,
        "num_leaves": 15,
        "monotone_constraints": [-1, 1, 0],
    }
    booster = fit_on_dask(dask_local, params, rows, targets, rounds=40)
    here = lgb.train(params, lgb.Dataset(rows, targets), num_boost_round=40)
    assert booster.num_trees() == 40
    assert booster.feature_name() == here.feature_name()
    assert booster.pandas_categorical == here.pandas_categorical
    on_dask, alone = (roc_auc_score(targets, b.predict(rows)) for b in (booster, here))
    assert on_dask == pytest.approx(alone, abs=0.01)
    # The monotone constraint held on the workers too.
    probe = rows.iloc[:200].assign(recency=5.0)
    later = probe.assign(recency=200.0)
    assert (booster.predict(later) <= booster.predict(probe) + 1e-12).all()


def test_a_class_absent_from_the_rows_keeps_its_place(dask_local):
    rows, _ = _rows(3_000, seed=1)
    classes = np.random.default_rng(1).integers(0, 3, len(rows)).astype(float)  # no class 3
    params = base_params({"objective": "multiclass", "num_class": 4}, seed=0)
    booster = fit_on_dask(dask_local, params, rows, classes, rounds=5)
    assert booster.predict(rows.head(5)).shape == (5, 4)


def test_the_cluster_profile_fits_on_dask_past_its_size_only():
    assert DaskFit.of(Settings(profile="local")) is None
    fit = DaskFit.of(Settings(profile="cluster", dask_train_rows=1_000))
    assert fit is not None and fit.wanted(1_001) and not fit.wanted(1_000)
