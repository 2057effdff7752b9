"""BG/NBD and Gamma-Gamma: the published CDNOW fits reproduced, and the CLV baseline on
feature rows of a simulated buy-till-you-die population."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.snapshots import build_snapshots
from tests.factories import orders_frame
from training import btyd
from training.tasks.clv import TASK

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT.parent / "shared" / "data" / "cdnow" / "CDNOW_sample.txt"


def significant(value: float, digits: int = 3) -> float:
    return float(f"{value:.{digits}g}")


@pytest.mark.slow
@pytest.mark.skipif(not SAMPLE.exists(), reason="shared/data/cdnow is not beside this checkout")
def test_cdnow_sample_reproduces_the_published_parameters():
    sample = pd.read_csv(
        SAMPLE,
        sep=r"\s+",
        header=None,
        names=["master_id", "customer_id", "date", "cds", "amount"],
        dtype={"date": str},
    )
    sample["date"] = pd.to_datetime(sample["date"], format="%Y%m%d")
    summary = btyd.summarize_transactions(sample, pd.Timestamp("1997-09-30"))
    assert len(summary) == 2357
    assert (summary["frequency"] > 0).sum() == 946

    fitted = btyd.fit_btyd(summary)

    # Fader, Hardie & Lee (2005), weeks 1-39; Fader & Hardie (2013), the 946 repeat buyers.
    published = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
    published |= {"p": 6.25, "q": 3.74, "v": 15.44}
    assert {k: significant(fitted.params[k]) for k in published} == {
        k: significant(v) for k, v in published.items()
    }
    assert fitted.customers == 2357


def test_transaction_summary_merges_same_day_purchases():
    log = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "a", "b"],
            "date": pd.to_datetime(
                ["1997-01-01", "1997-01-15", "1997-01-15", "1997-03-01", "1997-02-05"]
            ),
            "amount": [10.0, 5.0, 7.0, 99.0, 20.0],
        }
    )
    summary = btyd.summarize_transactions(log, pd.Timestamp("1997-02-11")).set_index("customer_id")
    # a: three lines by the end, two of them on one day; the March order is after it.
    assert summary.loc["a"].tolist() == [1.0, 2.0, 41 / 7, 12.0]
    assert summary.loc["b"].tolist() == [0.0, 0.0, 6 / 7, 0.0]


def test_feature_summary_reads_the_orders_family_and_marks_gaps():
    rows = pd.DataFrame(
        {
            "recency_days": [14.0, 70.0, np.nan, 5.0],
            "days_since_first_order": [70.0, 70.0, np.nan, np.nan],
            "orders_total": [3.0, 1.0, 0.0, 2.0],
            "avg_order_value": [25.0, 40.0, np.nan, 10.0],
        }
    )
    summary = btyd.summarize_features(rows)
    assert summary.loc[0, ["frequency", "recency", "T"]].tolist() == [2.0, 8.0, 10.0]
    assert summary.loc[1, ["frequency", "recency", "T"]].tolist() == [0.0, 0.0, 10.0]
    assert summary.loc[2:, ["frequency", "recency", "T"]].isna().all().all()


def simulated_population(customers: int = 800, seed: int = 3) -> tuple[pd.DataFrame, np.ndarray]:
    """Orders of a BG/NBD population over 60 weeks, and each customer's purchase rate.

    Customers first buy in the first 20 weeks, then buy at a gamma-distributed weekly
    rate until they drop out (after each purchase, with a beta-distributed probability).
    """
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2024-01-01", tz="UTC")
    rate = rng.gamma(0.8, 1 / 3, customers)  # purchases per week
    dropout = rng.beta(1.0, 4.0, customers)
    value = rng.gamma(6.0, 5.0, customers)
    rows = []
    for c in range(customers):
        week = rng.uniform(0, 20)
        while week < 60:
            rows.append((f"c{c:04d}", start + pd.Timedelta(weeks=week), value[c]))
            if rng.uniform() < dropout[c]:
                break
            week += rng.exponential(1 / rate[c])
    orders = orders_frame([(cid, ts.isoformat(), amount) for cid, ts, amount in rows])
    return orders, rate


@pytest.fixture(scope="module")
def population() -> dict:
    orders, rate = simulated_population()
    # Two as-of dates for training (the fit takes each customer's newest), one for test.
    as_of = pd.DatetimeIndex(["2024-06-03", "2024-07-01", "2024-08-05"], tz="UTC")
    rows = build_snapshots({"orders": orders}, as_of=as_of, families=["orders"])["orders"]
    rows = rows.assign(customer=rows["customer_id"].str[1:].astype(int))
    return {
        "train": rows[rows["event_timestamp"] < as_of[-1]].reset_index(drop=True),
        "test": rows[rows["event_timestamp"] == as_of[-1]].reset_index(drop=True),
        "rate": rate,
    }


@pytest.mark.slow
def test_baseline_predicts_every_row_and_ranks_heavy_buyers_first(population: dict):
    train, test = population["train"], population["test"]
    test = test.copy()
    # A customer who never bought, and one whose history features are missing.
    blank = test.iloc[[0, 1]].copy()
    blank.loc[:, ["recency_days", "days_since_first_order", "avg_order_value"]] = np.nan
    blank.loc[:, "orders_total"] = [0.0, 4.0]
    blank.loc[blank.index[1], "recency_days"] = 10.0
    test = pd.concat([test, blank], ignore_index=True)

    prediction = btyd.bgnbd_gamma_gamma(train, test, TASK)

    assert prediction.shape == (len(test),)
    assert np.isfinite(prediction).all() and (prediction >= 0).all()
    assert prediction[-2] == 0.0  # never bought: no spend
    assert prediction[-1] > 0.0  # bought, history unknown: the population's mean
    scored = test.iloc[:-2].assign(prediction=prediction[:-2])
    rate = population["rate"][scored["customer"]]
    heavy = scored["prediction"][rate >= np.quantile(rate, 0.75)].mean()
    light = scored["prediction"][rate <= np.quantile(rate, 0.25)].mean()
    assert heavy > 2 * light


@pytest.mark.slow
def test_one_row_predicts_the_same_alone_and_in_a_batch(population: dict):
    train, test = population["train"], population["test"]
    latest = train.sort_values("event_timestamp").drop_duplicates("customer_id", keep="last")
    fitted = btyd.fit_btyd(btyd.summarize_features(latest))
    summary = btyd.summarize_features(test)
    batch = fitted.expected_spend(summary, TASK.horizon_days / btyd.UNIT_DAYS)
    alone = fitted.expected_spend(summary.iloc[[7]], TASK.horizon_days / btyd.UNIT_DAYS)
    assert alone[0] == pytest.approx(batch[7])
    # More purchases in the same time, everything else equal, never lowers the forecast.
    more = summary.iloc[[7, 7]].reset_index(drop=True)
    more.loc[1, "frequency"] += 3
    more.loc[1, "recency"] = more.loc[1, "T"]
    forecast = fitted.expected_spend(more, TASK.horizon_days / btyd.UNIT_DAYS)
    assert forecast[1] > forecast[0]
