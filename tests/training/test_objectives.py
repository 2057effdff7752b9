"""Each objective's metrics and the decision policies, on numbers worked by hand."""

import numpy as np
import pandas as pd
import pytest

from training.objectives import OBJECTIVES, gini, multiclass_metrics, regression_metrics
from training.tasks.base import ClassTiers, ScoreTiers, Tier


def test_normalized_gini_is_one_for_the_perfect_order_and_negative_for_the_reverse():
    actual = np.array([0.0, 0.0, 5.0, 10.0, 100.0])
    assert regression_metrics(actual, actual)["normalized_gini"] == pytest.approx(1.0)
    assert regression_metrics(actual, -actual)["normalized_gini"] < 0
    assert np.isnan(gini(np.zeros(4), np.arange(4.0)))  # no value to gather


def test_top_decile_share_is_the_value_the_top_tenth_holds():
    actual = np.r_[np.full(9, 1.0), 91.0]  # the top tenth (one customer) holds 91 of 100
    assert regression_metrics(actual, actual)["top_10pct_share"] == pytest.approx(0.91)


def test_multiclass_metrics_score_the_most_probable_class():
    probability = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.5, 0.4, 0.1]])
    metrics = multiclass_metrics(np.array([0, 1, 2, 1]), probability)
    assert metrics["balanced_accuracy"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert 0 < metrics["macro_f1"] < 1


def test_multiclass_targets_refuse_a_label_outside_the_classes():
    with pytest.raises(ValueError, match="outside the task's classes: lost"):
        OBJECTIVES["multiclass"].targets(pd.Series(["new", "lost"]), ("new", "active"))


def test_score_tiers_cut_shares_from_the_top():
    policy = ScoreTiers((Tier("high", "call", 0.1), Tier("medium", "mail", 0.2), Tier("low", "-")))
    cuts = policy.cuts(np.arange(1000.0))
    assert cuts["high"] == pytest.approx(899.1) and cuts["medium"] == pytest.approx(699.3)
    assert [policy.decide(s, cuts).name for s in (950.0, 700.0, 10.0)] == ["high", "medium", "low"]


def test_class_tiers_take_the_most_probable_class():
    policy = ClassTiers((Tier("a", "do a"), Tier("b", "do b")))
    assert policy.decide(np.array([0.3, 0.7]), {}).action == "do b"


def test_fast_single_metrics_equal_the_library_ones():
    from sklearn.metrics import f1_score, roc_auc_score

    from training.objectives import macro_f1, rank_auc

    rng = np.random.default_rng(4)
    y = (rng.random(5000) < 0.3).astype(int)
    score = np.round(rng.random(5000) + 0.3 * y, 2)  # many ties
    assert rank_auc(y, score) == pytest.approx(roc_auc_score(y, score), abs=1e-12)
    classes = rng.integers(0, 4, 5000)
    probability = rng.random((5000, 5))  # class 4 never occurs
    expected = f1_score(classes, probability.argmax(axis=1), average="macro", labels=range(5))
    assert macro_f1(classes, probability) == pytest.approx(expected, abs=1e-12)


def test_weights_count_rows_as_often_as_repeating_them():
    from training.objectives import macro_f1, normalized_gini, rank_auc

    rng = np.random.default_rng(5)
    y = (rng.random(400) < 0.4).astype(int)
    score = np.round(rng.random(400) + 0.2 * y, 1)
    weight = rng.integers(0, 3, 400)
    rows = np.repeat(np.arange(400), weight)
    assert rank_auc(y, score, weight) == pytest.approx(rank_auc(y[rows], score[rows]))
    spend = rng.gamma(2.0, 50.0, 400) * y
    assert normalized_gini(spend, score + 1e-6 * np.arange(400), weight) == pytest.approx(
        normalized_gini(spend[rows], (score + 1e-6 * np.arange(400))[rows]), abs=1e-3
    )
    probability = rng.random((400, 3))
    classes = rng.integers(0, 3, 400)
    assert macro_f1(classes, probability, weight) == pytest.approx(
        macro_f1(classes[rows], probability[rows])
    )
