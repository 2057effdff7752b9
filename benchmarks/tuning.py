"""Tuning churn at scale: custlab's Optuna study against a plain Optuna loop, in one run.

    python -m benchmarks.run --only tuning        # or: python -m benchmarks.tuning
    python -m benchmarks.tuning --customers 5000 --train-rows 20000 --trials 3   # smoke

Target (issue 7): 50 trials for churn on 200,000 training rows in at most 10 minutes on
a 2-core machine, with the share of pruned trials reported; the same study with two
parallel trials beside it, and (issue 11) with two worker processes sharing it.

The data is the churn task's real training frame: a simulated world (30,000 customers,
104 weeks, seed 7) with its features published to Feast, labelled and joined by
:func:`training.dataset.training_frame`, and cut by the task's split. The training rows
are a seeded sample of exactly ``train_rows`` of the split's training rows; the
validation window is kept whole. The world and its features are built once under
``.custlab/bench-tuning/world-<customers>-<weeks>-<seed>`` and reused by later runs.

Each measurement is a fresh study on the same rows, timed from the rows to the study's
result (LightGBM datasets built inside the timing):

- **custlab, 1 job**, **custlab, 2 jobs** and **custlab, 2 workers**:
  :func:`training.train.tune` inside the MLflow run ``custlab tune`` opens
  (:func:`training.train.task_run`): seeded multivariate TPE, successive halving, every
  trial a nested MLflow run, the study in SQLite; ``--workers 2`` runs a second process
  on the same study (the cluster profile's way to tune on several machines).
- **anchor**: what a skilled user writes by hand: ``optuna.create_study`` with a
  seeded ``TPESampler``, one trial at a time, in memory, each trial ``lgb.train`` with
  early stopping on the validation rows; no pruning, no MLflow. Same search space
  (:func:`training.tune.suggest_params`), the same fixed LightGBM settings (objective,
  seed, every core, the monotone constraint on recency), the same round budget.

Run it on otherwise idle cores: a LightGBM fit on two threads slowed 7-25x per round
while another process held one of the two cores (one thread: not at all), so the load
average before and after is in the setup line. Everything is written under
``.custlab/bench-tuning``; the rows go to the results table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HOME = ROOT / ".custlab" / "bench-tuning"
TARGET_SECONDS = 600
ANCHOR = "anchor: plain Optuna + lgb.train, 1 job, no pruning"


@dataclass(frozen=True)
class Measured:
    """One study: its wall time and what it found."""

    seconds: float
    trials: int
    pruned: int
    trial_seconds: float  # median wall time of a finished trial
    best_roc_auc: float  # on the validation rows


def prepare_world(home: Path, customers: int, weeks: int = 104, seed: int = 7):
    """Simulate the world and publish its features, once per (customers, weeks, seed):
    a home whose build finished (its ``ready.json`` written last) is reused.

    Returns:
        The settings of the world's home.
    """
    from custlab import pipeline
    from custlab.settings import Settings
    from features.simulate import WorldSpec

    settings = Settings(home=home / f"world-{customers}-{weeks}-{seed}")
    ready = settings.home / "ready.json"
    if not ready.exists():
        spec = WorldSpec(customers=customers, weeks=weeks, seed=seed)
        pipeline.simulate(settings, spec)
        pipeline.build_features(settings)
        ready.write_text(json.dumps(spec.model_dump(mode="json"), indent=2))
    return settings


def churn_frames(settings, train_rows: int, train_every: int, seed: int):
    """The churn task's split frames, its training rows sampled down to ``train_rows``.

    Returns:
        The frames, the feature names, and the number of training rows sampled from.

    Raises:
        ValueError: The split has fewer training rows than ``train_rows``.
    """
    from features.store import open_store
    from training.dataset import training_frame
    from training.split import SplitSpec
    from training.tasks import get_task
    from training.train import SplitFrames, split_frames

    task = get_task("churn")
    frame, features, plan = training_frame(
        settings, open_store(settings), task, SplitSpec(train_every=train_every)
    )
    frames = split_frames(task, frame, plan)
    available = len(frames.train)
    if available < train_rows:
        raise ValueError(
            f"the churn split has {available:,} training rows, fewer than {train_rows:,}: "
            "simulate more customers or keep more as-of dates (a smaller train_every)"
        )
    train = frames.train.sample(n=train_rows, random_state=seed).sort_index()
    sampled = SplitFrames(
        train=train.reset_index(drop=True), valid=frames.valid, test=frames.test, plan=plan
    )
    return sampled, features, available


def _median_trial_seconds(trials: list) -> float:
    spans = [
        (t.datetime_complete - t.datetime_start).total_seconds()
        for t in trials
        if t.datetime_complete is not None and t.datetime_start is not None
    ]
    return statistics.median(spans) if spans else float("nan")


def custlab_study(
    home: Path,
    task,
    frames,
    features: list[str],
    n_trials: int,
    jobs: int,
    seed: int,
    workers: int = 1,
) -> Measured:
    """A fresh custlab study as ``custlab tune`` runs it, timed."""
    import mlflow
    import optuna

    from custlab.settings import Settings
    from training.registry import use_tracking
    from training.train import task_run, tune
    from training.tune import FINISHED, TuneSpec

    study_db = home / f"optuna-jobs{jobs}-workers{workers}.db"
    study_db.unlink(missing_ok=True)  # a resumed study would count an earlier run's trials
    storage = f"sqlite:///{study_db.resolve()}"
    use_tracking(Settings(home=home), "bench-tuning")
    started = time.perf_counter()
    with task_run(task, frames, "tune"):
        mlflow.set_tag("benchmark", f"tuning, {jobs} job(s), {workers} worker(s)")
        spec = TuneSpec(n_trials=n_trials, jobs=jobs, workers=workers)
        tuned = tune(task, frames, features, spec, storage, seed)
    seconds = time.perf_counter() - started
    (summary,) = optuna.get_all_study_summaries(storage)
    trials = optuna.load_study(study_name=summary.study_name, storage=storage).get_trials(
        deepcopy=False, states=FINISHED
    )
    result = tuned.result
    return Measured(
        seconds, result.n_trials, result.n_pruned, _median_trial_seconds(trials), result.best_value
    )


def anchor_study(
    frames, features: list[str], targets: Callable, fixed: dict[str, Any], n_trials: int, seed: int
) -> Measured:
    """The plain loop a skilled user writes, timed: seeded TPE in memory, one trial at a
    time, ``lgb.train`` with early stopping on the validation rows, no pruning."""
    import lightgbm as lgb
    import optuna
    from sklearn.metrics import roc_auc_score

    from training.model_input import model_frame
    from training.tune import TuneSpec, suggest_params

    budget = TuneSpec(n_trials=n_trials)
    started = time.perf_counter()
    x_valid, y_valid = model_frame(frames.valid, features), targets(frames.valid)
    # min_data_in_leaf is searched, so the bins must not be filtered by the first trial's.
    train_set = lgb.Dataset(
        model_frame(frames.train, features),
        targets(frames.train),
        params={"feature_pre_filter": False},
    )
    valid_set = lgb.Dataset(x_valid, y_valid, reference=train_set)

    def objective(trial: optuna.Trial) -> float:
        booster = lgb.train(
            fixed | suggest_params(trial),
            train_set,
            num_boost_round=budget.max_rounds,
            valid_sets=[valid_set],
            callbacks=[lgb.early_stopping(budget.early_stopping_rounds, verbose=False)],
        )
        score = booster.predict(x_valid, num_iteration=booster.best_iteration)
        return float(roc_auc_score(y_valid, score))

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=n_trials, n_jobs=1)
    seconds = time.perf_counter() - started
    return Measured(
        seconds, len(study.trials), 0, _median_trial_seconds(study.trials), study.best_value
    )


def compare(
    n_trials: int = 50,
    train_rows: int = 200_000,
    customers: int = 30_000,
    train_every: int = 2,
    rounds: int = 1,
    seed: int = 0,
    home: Path = HOME,
) -> list[dict]:
    """custlab with one and two jobs beside the anchor on the same rows; one results row
    each, medians over ``rounds`` rounds whose order rotates."""
    from custlab import pipeline
    from training.tasks import get_task
    from training.train import usable_features
    from training.tune import TuneSpec, base_params

    budget = TuneSpec(n_trials=n_trials)
    pipeline.quiet_libraries()
    home = home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    settings = prepare_world(home, customers)
    task = get_task("churn")
    frames, features, available = churn_frames(settings, train_rows, train_every, seed)
    usable = usable_features(frames.train, features)
    # The settings custlab's tune fixes for every trial (training.train.tune), so both
    # sides fit the same models and differ in the tuning around them.
    fixed = base_params(task.objective.params(task.classes), seed) | {
        "monotone_constraints": task.monotone_constraints(usable)
    }
    systems: dict[str, Callable[[], Measured]] = {
        "custlab tune, 1 job (successive halving)": lambda: custlab_study(
            home, task, frames, features, n_trials, 1, seed
        ),
        ANCHOR: lambda: anchor_study(frames, usable, task.targets, fixed, n_trials, seed),
        "custlab tune --jobs 2 (successive halving)": lambda: custlab_study(
            home, task, frames, features, n_trials, 2, seed
        ),
        "custlab tune --workers 2 (successive halving)": lambda: custlab_study(
            home, task, frames, features, n_trials, 1, seed, workers=2
        ),
    }
    names = list(systems)
    measured: dict[str, list[Measured]] = {name: [] for name in names}
    load_before = os.getloadavg()[0]
    for round_ in range(rounds):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            measured[name].append(systems[name]())
    load_after = os.getloadavg()[0]

    rows = []
    for name, runs in measured.items():
        trials = statistics.median(m.trials for m in runs)
        rows.append(
            {
                "benchmark": "tuning",
                "system": name,
                "seconds": statistics.median(m.seconds for m in runs),
                "trials": trials,
                "trials per minute": statistics.median(60 * m.trials / m.seconds for m in runs),
                "pruned share": statistics.median(m.pruned / m.trials for m in runs),
                "median trial s": statistics.median(m.trial_seconds for m in runs),
                "best valid ROC-AUC": statistics.median(m.best_roc_auc for m in runs),
            }
        )
    anchor = next(row for row in rows if row["system"] == ANCHOR)
    for row in rows:
        row["seconds vs anchor"] = row["seconds"] / anchor["seconds"]
        row["ROC-AUC minus anchor"] = row["best valid ROC-AUC"] - anchor["best valid ROC-AUC"]
        row[f"seconds vs target ({TARGET_SECONDS})"] = row["seconds"] / TARGET_SECONDS
    valid_dates = frames.plan.valid
    setup = (
        f"churn on a simulated world of {customers:,} customers (104 weeks, seed 7); "
        f"{train_rows:,} training rows sampled (seed {seed}) from the split's "
        f"{available:,} (train_every {train_every}: as-of dates "
        f"{frames.plan.train.min():%Y-%m-%d}..{frames.plan.train.max():%Y-%m-%d}), "
        f"validation {valid_dates.min():%Y-%m-%d}..{valid_dates.max():%Y-%m-%d} "
        f"({len(frames.valid):,} rows), {len(usable)} features; {n_trials} trials each, "
        f"at most {budget.max_rounds} rounds, early stopping after "
        f"{budget.early_stopping_rounds}, seed {seed}; "
        f"a fresh study per measurement, {rounds} round(s), medians; load average "
        f"{load_before:.1f} before, {load_after:.1f} after"
    )
    return [row | {"setup": setup} for row in rows]


def main() -> None:
    from datetime import UTC, datetime

    from benchmarks.run import write_results

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--train-rows", type=int, default=200_000)
    parser.add_argument("--customers", type=int, default=30_000)
    parser.add_argument("--train-every", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started = datetime.now(UTC)
    rows = compare(
        args.trials, args.train_rows, args.customers, args.train_every, args.rounds, args.seed
    )
    path = write_results(rows, started)
    print(path.read_text())


if __name__ == "__main__":
    main()
