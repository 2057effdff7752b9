import numpy as np
import pandas as pd
import pytest

from features.errors import CustlabError
from training.tasks import get_task
from training.versus_oracle import versus_oracle

WEEK = pd.Timedelta(days=7)


def labelled(small_world):
    """Labels of each task the oracle knows, at two dates of the small world."""
    tables = small_world.tables()
    start = pd.Timestamp(small_world.spec.start)
    dates = pd.DatetimeIndex([start + 30 * WEEK, start + 34 * WEEK])
    return {name: get_task(name).label_frame(tables, dates) for name in ("churn", "propensity")}


@pytest.mark.parametrize("name", ["churn", "propensity"])
def test_the_oracle_scores_its_own_answer_as_itself_and_noise_below_it(small_world, name):
    task = get_task(name)
    test = labelled(small_world)[name]
    noise = np.random.default_rng(0).random(len(test))
    comparison = versus_oracle(task, small_world, test, noise)
    assert comparison.metric == "roc_auc"
    # The true probabilities rank the realized labels well; noise does not.
    assert comparison.oracle > 0.7
    assert comparison.ratio < 0.8
    from features.simulate import oracle_answer

    truth = oracle_answer(
        small_world,
        pd.DatetimeIndex(sorted(test["event_timestamp"].unique())),
        task.oracle,
        task.horizon_days,
    )
    own = test.merge(truth, on=["customer_id", "event_timestamp"])["oracle"].to_numpy()
    assert versus_oracle(task, small_world, test, own).ratio == pytest.approx(1.0)


def test_rows_from_elsewhere_are_refused(small_world):
    test = labelled(small_world)["churn"].copy()
    test.loc[0, "customer_id"] = "not-simulated"
    with pytest.raises(CustlabError, match="not-simulated has no oracle answer"):
        versus_oracle(get_task("churn"), small_world, test, np.zeros(len(test)))


def test_a_task_the_oracle_knows_nothing_of_is_skipped(small_world):
    assert versus_oracle(get_task("lifecycle"), small_world, pd.DataFrame(), np.array([])) is None
