"""The compiled forest scores exactly as LightGBM does: every objective, every missing
type, categories seen and unseen, trees of one leaf, a model cut at its best iteration;
and it refuses the trees it cannot score."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from training.forest import UnsupportedForest, compile_forest

ROWS = 4_000
FEATURES = 8
CATEGORY = 3  # a categorical feature of 40 levels
ZERO_HEAVY = 4  # 0, 1, NaN: where the missing types differ
SIGNED = 5


def training_rows(rng: np.random.Generator) -> np.ndarray:
    rows = rng.normal(size=(ROWS, FEATURES))
    rows[rng.random(rows.shape) < 0.1] = np.nan
    rows[:, CATEGORY] = rng.integers(0, 40, ROWS)
    rows[rng.random(ROWS) < 0.1, CATEGORY] = np.nan
    rows[:, ZERO_HEAVY] = rng.choice([0.0, 1.0, np.nan], ROWS)
    rows[:, SIGNED] = rng.choice([0.0, 2.0, -1.0], ROWS)
    return rows


def awkward_rows(rng: np.random.Generator, count: int = 20_000) -> np.ndarray:
    """Rows with every value a split treats apart: NaN, ±0 and values within 1e-35 of it,
    categories negative, fractional, unseen, past every bitset and beyond an int."""
    rows = rng.normal(size=(count, FEATURES))
    rows[rng.random(rows.shape) < 0.1] = np.nan
    rows[:, CATEGORY] = rng.integers(-3, 70, count)
    odd = [-0.5, -1.0, np.nan, 2.7, 1e300, -1e300, 2.0**31, 39.999]
    rows[: len(odd) * 5, CATEGORY] = np.repeat(odd, 5)
    rows[:, ZERO_HEAVY] = rng.choice([0.0, -0.0, 1.0, np.nan, 1e-40, -1e-36, 1e-30], count)
    rows[:, SIGNED] = rng.choice([0.0, 2.0, -1.0, np.nan, 5e-36, np.inf, -np.inf], count)
    return rows


def train(params: dict, label: np.ndarray, rows: np.ndarray, rounds: int = 60) -> lgb.Booster:
    data = lgb.Dataset(rows, label, categorical_feature=[CATEGORY])
    return lgb.train({"verbose": -1, "num_leaves": 31, **params}, data, rounds)


def assert_scores_equal(booster: lgb.Booster, rows: np.ndarray) -> None:
    expected = np.asarray(booster.predict(rows, raw_score=True)).reshape(len(rows), -1)
    np.testing.assert_array_equal(compile_forest(booster).raw_scores(rows), expected)


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(7)


@pytest.fixture(scope="module")
def rows(rng):
    return training_rows(rng)


@pytest.fixture(scope="module")
def binary_label(rows, rng):
    signal = np.nan_to_num(rows[:, 0]) + (np.nan_to_num(rows[:, CATEGORY]) % 3 == 0)
    return (signal + rows[:, SIGNED] + rng.normal(size=ROWS) > 0).astype(int)


@pytest.mark.parametrize(
    "params",
    [
        {"objective": "binary"},
        {"objective": "binary", "use_missing": False},
        {"objective": "regression", "zero_as_missing": True},
        {"objective": "tweedie", "max_cat_to_onehot": 64},
        {"objective": "binary", "num_leaves": 64, "min_data_in_leaf": 5},
    ],
    ids=["binary", "no-missing", "zero-as-missing", "one-hot-categories", "a-word-of-leaves"],
)
def test_scores_equal_lightgbm_to_the_last_bit(params, rows, binary_label, rng):
    label = binary_label
    if params["objective"] == "regression":
        label = np.nan_to_num(rows[:, 0]) + rows[:, SIGNED]
    elif params["objective"] == "tweedie":
        label = np.exp(np.nan_to_num(rows[:, 0]))
    assert_scores_equal(train(params, label, rows), awkward_rows(rng))


def test_multiclass_sums_each_class_apart(rows, binary_label, rng):
    label = binary_label + (np.nan_to_num(rows[:, 1]) > 0) + (rows[:, SIGNED] > 1)
    booster = train({"objective": "multiclass", "num_class": 4}, label, rows)
    assert compile_forest(booster).num_class == 4
    assert_scores_equal(booster, awkward_rows(rng))


def test_trees_of_one_leaf_add_their_value(rows, binary_label, rng):
    booster = train({"objective": "binary", "min_data_in_leaf": ROWS}, binary_label, rows, 5)
    assert all(tree["num_leaves"] == 1 for tree in booster.dump_model()["tree_info"])
    assert_scores_equal(booster, awkward_rows(rng, 100))


def test_a_model_with_a_best_iteration_scores_the_trees_predict_uses(rows, binary_label, rng):
    booster = train({"objective": "binary"}, binary_label, rows, 30)
    booster.best_iteration = 10
    assert len(compile_forest(booster).tree_class) == 10
    assert_scores_equal(booster, awkward_rows(rng))


def test_one_row_scores_as_inside_a_batch(rows, binary_label, rng):
    forest = compile_forest(train({"objective": "binary"}, binary_label, rows))
    batch = awkward_rows(rng, 50)
    alone = np.vstack([forest.raw_scores(batch[i : i + 1]) for i in range(len(batch))])
    np.testing.assert_array_equal(alone, forest.raw_scores(batch))


def test_a_matrix_of_the_wrong_width_is_refused(rows, binary_label):
    forest = compile_forest(train({"objective": "binary"}, binary_label, rows, 3))
    with pytest.raises(ValueError, match=f"reads {FEATURES} features a row; got shape"):
        forest.raw_scores(rows[:, :-1])


def test_trees_of_several_words_of_leaves_score_alike(rows, binary_label, rng):
    params = {"objective": "binary", "num_leaves": 200, "min_data_in_leaf": 2, "max_depth": -1}
    booster = train(params, binary_label, rows, 20)
    leaves = [tree["num_leaves"] for tree in booster.dump_model()["tree_info"]]
    assert max(leaves) > 128  # three words
    assert_scores_equal(booster, awkward_rows(rng))


def test_linear_trees_are_refused(rows, binary_label):
    dense = np.nan_to_num(rows)
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "linear_tree": True},
        lgb.Dataset(dense, binary_label),
        3,
    )
    with pytest.raises(UnsupportedForest, match="linear trees"):
        compile_forest(booster)
