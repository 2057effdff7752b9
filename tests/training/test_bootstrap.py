import numpy as np
import pandas as pd
import pytest

from training.bootstrap import customer_weights, margin_interval
from training.objectives import rank_auc


def test_a_resample_weighs_all_rows_of_a_customer_alike_and_draws_as_many_customers():
    customers = pd.Series(["a", "a", "b", "c", "c", "c"])
    for weight in customer_weights(customers, 20, seed=1):
        assert weight[0] == weight[1] and weight[3] == weight[4] == weight[5]
        assert weight[0] + weight[2] + weight[3] == 3


def test_a_real_margin_has_an_interval_above_zero_and_noise_one_around_it():
    rng = np.random.default_rng(0)
    customers = pd.Series(np.repeat(np.arange(1000), 3).astype(str))
    signal = np.repeat(rng.normal(size=1000), 3)
    y = (rng.random(3000) < 1 / (1 + np.exp(-2 * signal))).astype(int)
    good = signal + rng.normal(scale=0.3, size=3000)
    weak = signal + rng.normal(scale=1.5, size=3000)
    better = margin_interval(rank_auc, y, good, weak, customers, 200, seed=1)
    assert better.low > 0 and better.low < better.estimate < better.high
    same = margin_interval(rank_auc, y, good, good + 1e-9, customers, 200, seed=1)
    assert same.estimate == pytest.approx(0.0)


def test_the_verdict_is_a_tie_while_the_interval_holds_zero():
    from training.bootstrap import Interval

    assert Interval(0.01, 0.004, 0.02).verdict == "win"
    assert Interval(0.003, -0.001, 0.008).verdict == "tie"
    assert Interval(-0.01, -0.02, -0.004).verdict == "loss"
