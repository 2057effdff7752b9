"""Telco churn (a labelled table, no time axis) through custlab's labelled path, beside
plain scikit-learn on the same file.

    python -m benchmarks.telco_churn            # or: python -m benchmarks.run --only telco_churn

- **custlab, LightGBM**: ``custlab ingest-labelled`` with the shipped mapping
  (``features/mappings/telco.yaml``), then ``custlab train --task churn``: nested
  stratified 5-fold cross-validation, an Optuna study per fold.
- **custlab's baseline**: the logistic regression on every feature that the gate holds
  the model to, on the same folds.
- **Anchors, plain scikit-learn on the raw CSV**: logistic regression (one-hot
  categories, standardized numbers) and HistGradientBoosting with its defaults, scored by
  ``cross_val_score`` over a stratified 5-fold split; what a skilled user runs first.
  The published figures (../shared/data/README.md): logistic regression 0.845 +/- 0.014,
  HistGradientBoosting 0.836 +/- 0.013.

Everything is written under ``.custlab/bench-telco``; the rows go to the results table.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "telco" / "Telco-Customer-Churn.csv"
MAPPING = ROOT / "features" / "mappings" / "telco.yaml"
HOME = ROOT / ".custlab" / "bench-telco"
FOLDS = 5


def sklearn_anchors(seed: int) -> list[dict]:
    """Logistic regression and HistGradientBoosting, 5-fold ROC-AUC on the raw file."""
    from sklearn.compose import make_column_selector, make_column_transformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    frame = pd.read_csv(DATA)
    frame["TotalCharges"] = pd.to_numeric(frame["TotalCharges"], errors="coerce")
    target = (frame.pop("Churn") == "Yes").astype(int)
    features = frame.drop(columns=["customerID"])
    numbers = make_column_selector(dtype_include="number")
    text = make_column_selector(dtype_exclude="number")
    logistic = make_pipeline(
        make_column_transformer(
            (make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numbers),
            (OneHotEncoder(handle_unknown="ignore"), text),
        ),
        LogisticRegression(max_iter=2000),
    )
    boosting = make_pipeline(
        make_column_transformer(
            (OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1), text),
            remainder="passthrough",
        ),
        HistGradientBoostingClassifier(random_state=seed),
    )
    folds = StratifiedKFold(n_splits=FOLDS, shuffle=True, random_state=seed)
    rows = []
    for name, model in (
        ("anchor: scikit-learn logistic regression", logistic),
        ("anchor: scikit-learn HistGradientBoosting", boosting),
    ):
        started = time.perf_counter()
        scores = cross_val_score(model, features, target, cv=folds, scoring="roc_auc")
        rows.append(
            {
                "system": name,
                "ROC-AUC mean": float(np.mean(scores)),
                "ROC-AUC std": float(np.std(scores)),
                "seconds": time.perf_counter() - started,
            }
        )
    return rows


def compare(n_trials: int = 20, seeds: tuple[int, ...] = (7, 8, 9)) -> list[dict]:
    """The labelled path and the anchors with each seed (the folds move with it); one row
    per system and seed."""
    return [row for seed in seeds for row in compare_once(n_trials, seed)]


def compare_once(n_trials: int, seed: int) -> list[dict]:
    """Run the labelled path and the anchors with one seed, in a home of its own (MLflow
    keeps a home's database open for the process); one row per system."""
    home = HOME / f"seed-{seed}"
    from custlab import pipeline
    from custlab.settings import Settings
    from training.tune import TuneSpec

    if not DATA.exists():
        raise SystemExit(f"{DATA} not found: the Telco data set is not on this machine")
    shutil.rmtree(home, ignore_errors=True)
    # A fixed key: the folds group rows by pseudonymous id, so a fresh random key would
    # move them from run to run.
    settings = Settings(home=home, seed=seed, pseudonym_key="custlab-telco-benchmark")
    pipeline.quiet_libraries()
    started = time.perf_counter()
    table = pipeline.ingest_labelled(settings, DATA, MAPPING)
    outcome = pipeline.train(settings, "churn", TuneSpec(n_trials=n_trials))
    seconds = time.perf_counter() - started
    baseline = outcome.baseline_metrics["logistic_all_features"]
    rows = [
        {
            "system": "custlab LightGBM (nested CV, Optuna per fold)",
            "ROC-AUC mean": outcome.metrics["roc_auc"],
            "ROC-AUC std": outcome.metrics["roc_auc_std"],
            "seconds": seconds,
            "gate": "promoted" if outcome.promoted else outcome.reason.split(";")[0],
        },
        {
            "system": "custlab baseline: logistic regression on all features",
            "ROC-AUC mean": baseline["roc_auc"],
            "ROC-AUC std": baseline["roc_auc_std"],
        },
        *sklearn_anchors(seed),
    ]
    setup = (
        f"{table.rows_kept:,} customers, {len(table.features)} features, "
        f"{table.positive_share:.1%} churned; {FOLDS}-fold, {n_trials} trials per study; "
        "the folds and the samplers move with the seed"
    )
    return [row | {"benchmark": "telco_churn", "seed": seed, "setup": setup} for row in rows]


if __name__ == "__main__":
    for row in compare():
        print(row)
