"""Customer value on CDNOW: BG/NBD + Gamma-Gamma against LightGBM trained through custlab,
per customer on the published 39-week holdout.

    python -m benchmarks.cdnow_clv            # or: python -m benchmarks.run --only cdnow_clv

The test customers are the 2,357 of the CDNOW sample (``CDNOW_sample.txt``), the
population of the published fits: calibration weeks 1-39 (1997-01-01 to 1997-09-30),
holdout weeks 40-78 (1997-10-01 to 1998-06-30). Every model is scored on their holdout
spend; BG/NBD also on their holdout transactions (same-day purchases merged), the
figure the paper reports.

- **BG/NBD + Gamma-Gamma, published protocol**: fitted on the sample's calibration
  transactions (reproducing the published parameters), its conditional expectations
  for the holdout's 39 weeks.
- **LightGBM through custlab**: the master log ingested through the shipped mapping,
  features built and published to Feast, the CLV task with a 273-day (39-week) horizon
  tuned and fitted by :func:`training.train.fit` on the master's other customers:
  their features as of 1997-09-29 joined by Feast, their holdout spend as the label. It
  learns across customers over the same calendar, as the CLV task's split by customer
  does (see :mod:`training.split`). Feature snapshots fall on Mondays, so its features
  miss the calibration's last two days (1997-09-29 and 30).
- **The CLV task's baselines** on those same feature rows: ``bgnbd_gamma_gamma`` (BG/NBD
  + Gamma-Gamma from the order features, fitted on the training customers) and
  ``last_year_spend``.

Everything is written under ``.custlab/bench-cdnow-clv``; the rows go to the results table.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "cdnow"
MAPPING = ROOT / "features" / "mappings" / "cdnow.yaml"
HOME = ROOT / ".custlab" / "bench-cdnow-clv"

CALIBRATION_END = pd.Timestamp("1997-09-30")  # the last calibration day
HOLDOUT_END = pd.Timestamp("1998-06-30")  # the last holdout day
HOLDOUT_WEEKS = 39
# The newest weekly snapshot (a Monday) whose features read only calibration orders.
AS_OF = pd.Timestamp("1997-09-29", tz="UTC")


def read_sample(path: Path) -> pd.DataFrame:
    """The CDNOW sample: ``master_id`` (the master log's id), ``customer_id`` (the sample's),
    ``date`` and ``amount``."""
    sample = pd.read_csv(
        path,
        sep=r"\s+",
        header=None,
        names=["master_id", "customer_id", "date", "cds", "amount"],
        dtype={"master_id": str, "customer_id": str, "date": str},
    )
    sample["date"] = pd.to_datetime(sample["date"], format="%Y%m%d")
    return sample.drop(columns="cds")


def holdout_outcomes(transactions: pd.DataFrame) -> pd.DataFrame:
    """Per customer in the holdout: ``transactions`` (purchase days) and ``spend``."""
    holdout = transactions[
        (transactions["date"] > CALIBRATION_END) & (transactions["date"] <= HOLDOUT_END)
    ]
    days = holdout.groupby(["customer_id", "date"])["amount"].sum().groupby("customer_id")
    return pd.DataFrame({"transactions": days.size(), "spend": days.sum()})


def prepare_home(home: Path):
    """Ingest the master log through the shipped mapping and publish its features (once:
    a home that already has them is reused)."""
    from custlab import pipeline
    from custlab.settings import Settings

    settings = Settings(home=home)
    # Written after the whole build (Feast applied and materialized): a home that has it
    # is complete; one cut off midway is built again.
    ready = settings.home / "ready.json"
    if not ready.exists():
        pipeline.quiet_libraries()
        pipeline.ingest(settings, DATA / "CDNOW_master.txt", MAPPING)
        pipeline.build_features(settings)
        ready.write_text("{}\n")
    return settings


def published_protocol(sample: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, float]]:
    """BG/NBD + Gamma-Gamma fitted on the sample's calibration, as the papers do.

    Returns:
        Per sample customer (indexed by ``master_id``): expected holdout ``transactions``
        and ``spend``; and the fitted parameters.
    """
    from training import btyd

    log = sample.assign(customer_id=sample["master_id"])
    summary = btyd.summarize_transactions(log, CALIBRATION_END)
    fitted = btyd.fit_btyd(summary)
    expected = pd.DataFrame(
        {
            "transactions": fitted.expected_purchases(summary, HOLDOUT_WEEKS),
            "spend": fitted.expected_spend(summary, HOLDOUT_WEEKS),
        },
        index=summary["customer_id"],
    )
    return expected, fitted.params


def custlab_models(
    settings, test_ids: pd.Index, n_trials: int, seed: int
) -> tuple[dict[str, np.ndarray], dict[str, object]]:
    """LightGBM and the CLV task's baselines through custlab, scored on ``test_ids``.

    Args:
        settings: The benchmark's home, its features published.
        test_ids: Pseudonymized ids of the test customers, in the order to score them.
        n_trials: Optuna trials.
        seed: Seeds Optuna and LightGBM.

    Returns:
        Predictions of the holdout spend by model, and facts for the setup line.
    """
    import mlflow

    from features.contract import ENTITY_KEY, EVENT_TIMESTAMP, read_raw_tables
    from features.store import feature_refs, historical_features, open_store, published_families
    from training.model_input import predict
    from training.registry import use_tracking
    from training.split import SplitPlan, customer_part
    from training.tasks.clv import TASK
    from training.train import SplitFrames, fit, tune
    from training.tune import TuneSpec

    task = dataclasses.replace(TASK, horizon_days=7 * HOLDOUT_WEEKS)
    orders = read_raw_tables(settings.raw_dir)["orders"]
    log = pd.DataFrame(
        {
            "customer_id": orders[ENTITY_KEY],
            "date": orders["order_ts"].dt.tz_localize(None).dt.normalize(),
            "amount": orders["amount"],
        }
    )
    spend = holdout_outcomes(log)["spend"]
    known = orders.loc[orders["order_ts"] < AS_OF, ENTITY_KEY].unique()
    train_ids = pd.Index(known).difference(test_ids)
    entities = pd.DataFrame({ENTITY_KEY: train_ids.append(test_ids), EVENT_TIMESTAMP: AS_OF})
    entities[task.label] = spend.reindex(entities[ENTITY_KEY]).fillna(0.0).to_numpy()

    store = open_store(settings)
    refs = feature_refs(store, task.feature_service, published_families(settings))
    frame = historical_features(store, entities, refs)
    features = [ref.split(":", 1)[1] for ref in refs]
    is_test = frame[ENTITY_KEY].isin(test_ids).to_numpy()
    learn = frame[~is_test].reset_index(drop=True)
    # The master's other customers learn; the split's validation share of them stops early.
    valid = customer_part(learn[ENTITY_KEY]) == "valid"
    test = frame[is_test].set_index(ENTITY_KEY).loc[test_ids].reset_index()
    dates = pd.DatetimeIndex([AS_OF])
    frames = SplitFrames(
        train=learn[~valid].reset_index(drop=True),
        valid=learn[valid].reset_index(drop=True),
        test=test,
        plan=SplitPlan(train=dates, valid=dates, test=dates, by_customer=True),
    )
    # A fresh study each run: a resumed one would count the trials of an earlier run.
    study = settings.home / "optuna.db"
    study.unlink(missing_ok=True)
    started = time.perf_counter()
    # Trials are nested MLflow runs, in the benchmark's own tracking store.
    use_tracking(settings, "bench-cdnow-clv")
    with mlflow.start_run(run_name=f"cdnow-clv-seed{seed}"):
        tuned = tune(
            task,
            frames,
            features,
            TuneSpec(n_trials=n_trials),
            storage=f"sqlite:///{study}",
            seed=seed,
        )
        fitted = fit(task, frames, tuned)
    fit_seconds = time.perf_counter() - started
    predictions = {"LightGBM (custlab CLV task, 39-week horizon)": predict(fitted.booster, test)}
    baseline_seconds = float("nan")
    for name, baseline in task.baselines.items():
        started = time.perf_counter()
        predictions[f"baseline {name} (from custlab features)"] = baseline(frames.fit, test, task)
        if name == "bgnbd_gamma_gamma":
            baseline_seconds = time.perf_counter() - started
    facts = {
        "train": len(frames.train),
        "valid": len(frames.valid),
        "features": len(fitted.features),
        "trees": fitted.booster.num_trees(),
        "fit_seconds": fit_seconds,
        "btyd_seconds": baseline_seconds,
    }
    return predictions, facts


def compare(n_trials: int = 20, seed: int = 0, home: Path = HOME) -> list[dict]:
    """Every model on the sample customers' holdout: one results row per model."""
    from scipy.stats import spearmanr

    from features.ingest import pseudonym_key
    from features.mapping import load_mapping
    from features.pseudonymize import pseudonymize
    from training.objectives import regression_metrics

    sample = read_sample(DATA / "CDNOW_sample.txt")
    settings = prepare_home(home)
    key = pseudonym_key(settings, load_mapping(MAPPING).pii)
    master_ids = pd.Index(sorted(sample["master_id"].unique()))
    test_ids = pd.Index(pseudonymize(pd.Series(master_ids), key, "customer").to_numpy())

    outcomes = holdout_outcomes(sample.assign(customer_id=sample["master_id"]))
    outcomes = outcomes.reindex(master_ids, fill_value=0)
    expected, params = published_protocol(sample)
    expected = expected.loc[master_ids]
    predictions = {"BG/NBD + Gamma-Gamma (published protocol)": expected["spend"].to_numpy()}
    learned, facts = custlab_models(settings, test_ids, n_trials, seed)
    predictions |= learned

    actual_spend = outcomes["spend"].to_numpy(dtype=float)
    rows = []
    for system, prediction in predictions.items():
        metrics = regression_metrics(actual_spend, prediction)
        row = {
            "benchmark": "cdnow_clv",
            "system": system,
            "spend MAE $": metrics["mae"],
            "spend Spearman": metrics["spearman"],
            "normalized Gini": metrics["normalized_gini"],
            "top 10% share": metrics["top_10pct_share"],
            "transactions MAE": float("nan"),
            "transactions Spearman": float("nan"),
            "predicted / actual spend": float(np.sum(prediction) / actual_spend.sum()),
        }
        if system.startswith("BG/NBD"):
            transactions = outcomes["transactions"].to_numpy(dtype=float)
            forecast = expected["transactions"].to_numpy()
            row["transactions MAE"] = float(np.mean(np.abs(forecast - transactions)))
            row["transactions Spearman"] = float(spearmanr(transactions, forecast).statistic)
        rows.append(row)
    setup = (
        f"CDNOW sample: {len(master_ids):,} customers, calibration 1997-01-01..09-30, holdout "
        f"1997-10-01..1998-06-30 ({int(outcomes['transactions'].sum()):,} purchase days, "
        f"${actual_spend.sum():,.0f}); BG/NBD fit on the sample: "
        + ", ".join(f"{k}={v:.4g}" for k, v in params.items())
        + f"; LightGBM: {facts['train']:,} + {facts['valid']:,} other master customers "
        f"(train + early stopping), {facts['features']} features as of {AS_OF:%Y-%m-%d}, "
        f"{n_trials} Optuna trials, seed {seed}, {facts['trees']} trees, tuned and fitted in "
        f"{facts['fit_seconds']:.0f} s; bgnbd_gamma_gamma baseline fitted and scored in "
        f"{facts['btyd_seconds']:.1f} s"
    )
    return [row | {"setup": setup} for row in rows]


def main() -> None:
    from datetime import UTC, datetime

    from benchmarks.run import write_results

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started = datetime.now(UTC)
    path = write_results(compare(args.trials, args.seed), started)
    print(path.read_text())


if __name__ == "__main__":
    main()
