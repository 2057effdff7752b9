"""The end-to-end job: the rooms called in order, and what flows between them.

Each step takes settings and typed specs and returns what it made; the CLI and the
MLproject entry points call these and nothing else.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from custlab.settings import Settings
from features.errors import CustlabError
from features.ingest import MANIFEST, IngestResult, ingest_file
from features.simulate import World, WorldSpec, simulate_world
from features.tables import replace_folder
from training.split import SplitPlan, SplitSpec

# The ML stack (Feast, MLflow, LightGBM, Evidently) takes seconds to import: each step
# imports what it uses, so a command pays only for its own (an ingest needs none of it).
if TYPE_CHECKING:
    import pandas as pd

    from features.labelled import LabelledTable
    from monitoring.weekly import WeekResult
    from serving.batch import BatchScores
    from training.tasks import TaskSpec
    from training.train import Evaluation, TrainOutcome
    from training.tune import TuneResult, TuneSpec
    from training.versus_oracle import OracleComparison

logger = logging.getLogger("custlab")


def quiet_libraries() -> None:
    """Keep the libraries' routine INFO chatter out of custlab's progress lines."""
    for name in ("mlflow", "alembic", "feast", "evidently", "bentoml", "httpx"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # psycopg warns when MLflow's PostgreSQL store aborts a pipeline it then handles.
    logging.getLogger("psycopg").setLevel(logging.ERROR)
    # MLflow warns when the venv has no pip; the model's requirements are stated explicitly.
    logging.getLogger("mlflow.utils.environment").setLevel(logging.ERROR)
    # MLflow sets its own loggers' level when it is imported; this is what it reads.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    # Nor a progress bar for each of the small files a registration copies.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # Deprecations raised inside dependencies (MLflow's SQLAlchemy store, Evidently's UI
    # stack, Feast's query engines) say nothing a custlab user can act on. They are
    # dropped where they are shown, not by filters: Feast, imported later by the steps
    # that use it, puts its own filters in front of any set here.
    show = warnings.showwarning

    def show_ours(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        if issubclass(category, DeprecationWarning) and _IN_DEPENDENCY in filename:
            return
        show(message, category, filename, lineno, file, line)

    warnings.showwarning = show_ours


_IN_DEPENDENCY = f"{os.sep}site-packages{os.sep}"


@contextmanager
def step(name: str) -> Iterator[None]:
    """Log the start and the duration of a long step."""
    logger.info("%s ...", name)
    started = time.perf_counter()
    yield
    logger.info("%s done in %.1fs", name, time.perf_counter() - started)


@dataclass(frozen=True)
class FeatureBuild:
    rows: int
    customers: int
    first_as_of: pd.Timestamp
    last_as_of: pd.Timestamp
    families: tuple[str, ...]


def simulate(settings: Settings, spec: WorldSpec) -> World:
    """Simulate a world; write its raw tables and its ground truth under the home."""
    with step(f"simulate {spec.customers:,} customers over {spec.weeks} weeks"):
        world = simulate_world(spec)
        origin = {"origin": "simulator"} | spec.model_dump(mode="json")
        manifest = {name: origin for name in world.tables()}
        replace_folder(settings.raw_dir, world.tables(), {MANIFEST: manifest})
        replace_folder(settings.home / "truth", world.truth_tables())
    return world


def ingest(settings: Settings, source: Path, mapping: Path) -> IngestResult:
    """One export through its mapping into a raw contract table, with its quarantine."""
    with step(f"ingest {source.name} with {mapping.name}"):
        return ingest_file(settings, source, mapping)


def ingest_labelled(settings: Settings, source: Path, mapping: Path) -> LabelledTable:
    """A labelled customer table into the home and the feature store (its view, its
    feature service, each customer's newest row online)."""
    from features.labelled import ingest_labelled as ingest_table
    from features.labelled import load_labelled_mapping
    from features.store import publish_labelled
    from training.labelled import require_binary
    from training.tasks import get_task

    with step(f"ingest labelled table {source.name} with {mapping.name}"):
        # The task is checked before anything is read: a labelled table trains a
        # yes/no task.
        mapped = load_labelled_mapping(mapping)
        require_binary(get_task(mapped.task), mapped.name)
        table = ingest_table(settings, source, mapping)
    with step(f"publish labelled table {table.name} to Feast"):
        publish_labelled(settings)
    return table


def build_features(
    settings: Settings, raw_dir: Path | None = None, dask: bool | None = None
) -> FeatureBuild:
    """Snapshots from the raw tables, published to the offline and online stores; built
    on Dask when ``dask`` (default: in the cluster profile)."""
    from features.cluster import dask_client, runs_on_dask
    from features.contract import read_raw_tables
    from features.snapshots import build_snapshots
    from features.store import publish_snapshots

    raw_dir = raw_dir or settings.raw_dir
    if runs_on_dask(settings, dask):
        from features.sharded import build_snapshots_on_dask

        with (
            step("build point-in-time snapshots of every feature family on Dask"),
            dask_client(settings) as client,
        ):
            snapshots = build_snapshots_on_dask(
                client, raw_dir, shard_customers=settings.dask_shard_customers
            )
    else:
        with step("build point-in-time snapshots of every feature family"):
            snapshots = build_snapshots(read_raw_tables(raw_dir))
    with step("publish to Feast (apply, materialize)"):
        publish_snapshots(settings, snapshots)
    keys = snapshots["orders"]
    stamps = keys["event_timestamp"]
    return FeatureBuild(
        len(keys),
        keys["customer_id"].nunique(),
        stamps.min(),
        stamps.max(),
        tuple(snapshots),
    )


def _task_frame(
    settings: Settings, task: TaskSpec, split: SplitSpec | None
) -> tuple[pd.DataFrame, list[str], SplitPlan]:
    """The task's labelled frame from Feast, with the tracking store selected."""
    from features.store import open_store
    from training.dataset import training_frame
    from training.registry import use_tracking

    with step(f"{task.name}: training frame from Feast"):
        found = training_frame(settings, open_store(settings), task, split or SplitSpec())
    use_tracking(settings, task.registered_model)
    return found


def tune(
    settings: Settings, task_name: str, spec: TuneSpec, split: SplitSpec | None = None
) -> TuneResult:
    """Run (or resume) the task's Optuna study alone, in a run of its own. A later
    ``train`` on the same data resumes the same study instead of starting over."""
    from training.tasks import get_task
    from training.train import split_frames, task_run
    from training.train import tune as tune_study

    task = get_task(task_name)
    frame, features, plan = _task_frame(settings, task, split)
    frames = split_frames(task, frame, plan)
    with (
        step(f"{task.name}: {spec.n_trials} Optuna trials"),
        task_run(task, frames, "tune"),
    ):
        return tune_study(
            task, frames, features, spec, settings.optuna_storage, settings.seed
        ).result


# ``--table`` value that picks the event tables over a labelled table.
EVENTS = "events"


def choose_table(settings: Settings, task_name: str, table: str | None) -> LabelledTable | None:
    """The labelled table a task trains on, or None for the event tables.

    ``table`` names one (or ``events``); without it, a home whose only data for the task
    is one labelled table uses that.

    Raises:
        CustlabError: The choice is ambiguous (event features and a labelled table, or
            several labelled tables) or names a table the home lacks.
    """
    from features.labelled import labelled_tables
    from features.store import MANIFEST
    from training.labelled import find_table

    if table == EVENTS:
        return None
    if table is not None:
        found = find_table(settings, table)
        if found.task != task_name:
            raise CustlabError(
                f"labelled table {table} is labelled for {found.task}, not {task_name}"
            )
        return found
    tables = [t.name for t in labelled_tables(settings) if t.task == task_name]
    if not tables:
        return None
    if (settings.offline_dir / MANIFEST).exists():
        raise CustlabError(
            f"this home has event features and labelled table(s) {', '.join(tables)} for "
            f"{task_name}: pass --table {tables[0]} or --table {EVENTS}"
        )
    if len(tables) > 1:
        raise CustlabError(
            f"several labelled tables for {task_name} ({', '.join(tables)}): pass --table NAME"
        )
    return find_table(settings, tables[0])


def train_labelled(
    settings: Settings, task_name: str, table: LabelledTable, spec: TuneSpec
) -> TrainOutcome:
    """A labelled table's frame from Feast, then nested cross-validation, the final fit,
    registration and the gate (:mod:`training.labelled`)."""
    from features.store import open_store
    from training.dataset import labelled_frame
    from training.labelled import labelled_task
    from training.labelled import train_labelled as train_on_table
    from training.registry import use_tracking
    from training.tasks import get_task

    task = labelled_task(get_task(task_name), table)
    with step(f"{task.name}: training frame from labelled table {table.name}"):
        frame, features = labelled_frame(settings, open_store(settings), task, table)
    use_tracking(settings, task.registered_model)
    with step(f"{task.name}: nested cross-validation, {spec.n_trials} Optuna trials per study"):
        return train_on_table(
            task, table, frame, features, spec, settings.optuna_storage, settings.seed
        )


def train(
    settings: Settings,
    task_name: str,
    spec: TuneSpec,
    split: SplitSpec | None = None,
    table: str | None = None,
) -> TrainOutcome:
    """Training frame from Feast, then tune, fit, evaluate, register and gate; on a
    labelled table (``table``, or the home's only data for the task), cross-validated."""
    from training.dask_fit import DaskFit
    from training.tasks import get_task
    from training.train import train_task

    labelled = choose_table(settings, task_name, table)
    if labelled is not None:
        return train_labelled(settings, task_name, labelled, spec)
    task = get_task(task_name)
    frame, features, plan = _task_frame(settings, task, split)
    with step(f"{task.name}: {spec.n_trials} Optuna trials, final fit, registration"):
        return train_task(
            task,
            frame,
            features,
            plan,
            spec,
            settings.optuna_storage,
            settings.seed,
            DaskFit.of(settings),
        )


def evaluate(
    settings: Settings, task_name: str, version: str | None = None, split: SplitSpec | None = None
) -> tuple[str, Evaluation]:
    """Score a registered version (default: the champion) and the baselines on the
    current test window, logged as a run of its own; returns the version and scores."""
    from training.record import ModelRecord
    from training.registry import champion_version, load_version
    from training.tasks import get_task
    from training.train import evaluate as evaluate_model
    from training.train import log_evaluation, split_frames, task_run

    task = get_task(task_name)
    frame, _, plan = _task_frame(settings, task, split)
    version = version or champion_version(task.registered_model)
    booster = load_version(task.registered_model, version)
    missing = sorted(set(booster.feature_name()) - set(frame.columns))
    if missing:
        raise CustlabError(
            f"{task.registered_model} v{version} needs features the store no longer has: "
            + ", ".join(missing)
        )
    calibration = ModelRecord.read(task.registered_model, version).calibration
    frames = split_frames(task, frame, plan)
    with step(f"{task.name}: evaluate v{version}"), task_run(task, frames, f"evaluate-v{version}"):
        evaluation = evaluate_model(task, booster, calibration, frames)
        log_evaluation(task, booster, frames, evaluation)
    return version, evaluation


def train_all(
    settings: Settings, spec: TuneSpec, split: SplitSpec | None = None
) -> list[TrainOutcome]:
    """Every task in turn."""
    from training.tasks import TASKS

    return [train(settings, name, spec, split) for name in TASKS]


# The demo's split keeps fewer, further-apart as-of dates than a real run's default, so
# that four tasks train in minutes on two cores: half the test and validation weeks, and
# every eighth older week for training.
DEMO_SPLIT = SplitSpec(test_dates=2, valid_dates=2, train_every=8)


def promote(settings: Settings, task_name: str, version: str, reason: str) -> str:
    """A person's promotion of a version to champion, recorded with the reason."""
    from training.registry import promote_by_hand, use_tracking
    from training.tasks import get_task

    task = get_task(task_name)
    use_tracking(settings, task.registered_model)
    promote_by_hand(task.registered_model, version, reason)
    return f"{task.registered_model} v{version} is champion (promoted by hand: {reason.strip()})"


def ablate(settings: Settings, task_name: str, split: SplitSpec | None = None) -> str:
    """Each feature family's worth for a task: refits with families added in turn, all on
    one test window, logged to MLflow; returns the table."""
    import mlflow

    from features.store import open_store
    from training.ablation import ablate_families, ablation_table
    from training.dataset import training_frame
    from training.registry import use_tracking
    from training.tasks import get_task

    task = get_task(task_name)
    store = open_store(settings)
    with step(f"{task.name}: training frame from Feast"):
        frame, features, plan = training_frame(settings, store, task, split or SplitSpec())
    use_tracking(settings, task.registered_model)
    test_start, test_end = plan.window("test")
    with (
        step(f"{task.name}: family ablation"),
        mlflow.start_run(run_name=f"{task.name}-ablation-{test_end:%Y-%m-%d}"),
    ):
        steps = ablate_families(task, frame, features, plan, settings.seed)
        table = ablation_table(steps, task.primary_metric)
        mlflow.log_text(table + "\n", "ablation.md")
        mlflow.set_tag("test_window", f"{test_start:%Y-%m-%d}..{test_end:%Y-%m-%d}")
    return table


def monitor(
    settings: Settings,
    tasks: list[str] | None = None,
    week: str | None = None,
    since: str | None = None,
    tune: TuneSpec | None = None,
    split: SplitSpec | None = None,
    retrain: bool = True,
) -> list[WeekResult]:
    """The weekly run of every task with a champion (or of ``tasks``): ``week`` (default
    the newest snapshot's), or every week from ``since`` through it, in order, so a
    retrain in one week judges the next. Writes ``reports/index.html``."""
    from monitoring.index import write_index
    from monitoring.layout import audit_path
    from monitoring.retrain import retrainer
    from monitoring.weekly import latest_week, monitor_week, write_business_week
    from monitoring.weeks import IsoWeek, weeks_between
    from training.registry import champion_version, use_tracking
    from training.tasks import TASKS, get_task
    from training.tune import TuneSpec

    last = IsoWeek.parse(week) if week else latest_week(settings)
    weeks = weeks_between(IsoWeek.parse(since), last) if since else [last]
    if not weeks:
        raise CustlabError(f"--since {since} is after the week monitored, {last}")
    if tasks is None:
        tasks = []
        for name, task in TASKS.items():
            use_tracking(settings, task.registered_model)
            try:
                champion_version(task.registered_model)
            except CustlabError as error:
                logger.info("%s: not monitored: %s", name, error)
                continue
            tasks.append(name)
    retrain_task = None
    if retrain:
        retrain_task = retrainer(settings, tune or TuneSpec(), split or SplitSpec())
    results = []
    for each in weeks:
        for name in tasks:
            with step(f"{name}: week {each}"):
                results.append(monitor_week(settings, get_task(name), each, retrain_task))
        write_business_week(settings, each)
        write_index(settings.reports_dir, audit_path(settings))
    return results


def score_batch(settings: Settings, reasons: bool = False, dask: bool | None = None) -> BatchScores:
    """Every customer of the newest snapshot, scored by every champion, to parquet (on
    Dask when ``dask``; default: in the cluster profile)."""
    from serving.batch import score_batch as score_everyone

    with step("score every customer with every champion"):
        return score_everyone(settings, reasons=reasons, dask=dask)


def check_serving(settings: Settings) -> list[str]:
    """Before a server starts: which tasks it will serve (those with a champion), and
    why each other one will answer 503.

    Raises:
        CustlabError: No task has a champion; the message says why for each.
    """
    from training.registry import champion_version, use_tracking
    from training.tasks import TASKS

    served, lines = [], []
    for name, task in TASKS.items():
        use_tracking(settings, task.registered_model)
        try:
            version = champion_version(task.registered_model)
        except CustlabError as error:
            lines.append(f"{name}: not served: {error}")
            continue
        served.append(name)
        lines.append(f"{name}: {task.registered_model} v{version} at /v1/{name}")
    if not served:
        raise CustlabError("nothing to serve; " + "; ".join(lines))
    return lines


def compare_to_oracle(world: World, outcome: TrainOutcome) -> OracleComparison | None:
    """The trained model against the oracle of the world it learned from, logged to its
    training run."""
    import mlflow

    from training.tasks import get_task
    from training.versus_oracle import versus_oracle

    comparison = versus_oracle(get_task(outcome.task), world, outcome.test, outcome.prediction)
    if comparison is not None:
        client = mlflow.MlflowClient()
        client.log_metric(outcome.run_id, f"oracle_test_{comparison.metric}", comparison.oracle)
        client.log_metric(outcome.run_id, "ratio_to_oracle", comparison.ratio)
    return comparison


def describe_scores(
    title: str, metrics: dict[str, float], baselines: dict[str, dict[str, float]]
) -> list[str]:
    """The model's and each baseline's test metrics, one aligned line each."""
    width = max(map(len, ["test", *baselines])) + 2
    rows = {"test": metrics, **baselines}
    return [title] + [f"  {name:<{width}}" + _scores(values) for name, values in rows.items()]


def _scores(values: dict[str, float]) -> str:
    """Metrics in a line; a cross-validated one as its mean +/- its spread over folds."""
    return "  ".join(
        f"{k} {v:.4f}" + (f" +/- {values[f'{k}_std']:.4f}" if f"{k}_std" in values else "")
        for k, v in values.items()
        if not (k.endswith("_std") and k[: -len("_std")] in values)
    )


def describe_training(outcome: TrainOutcome) -> str:
    lines = describe_scores(
        f"custlab-{outcome.task} v{outcome.model_version} (run {outcome.run_id})",
        outcome.metrics,
        outcome.baseline_metrics,
    )
    verdict = "promoted to champion" if outcome.promoted else "not promoted"
    lines.append(f"  {verdict}: {outcome.reason}")
    return "\n".join(lines)


def describe_evaluation(task_name: str, version: str, evaluation: Evaluation) -> str:
    from training.tasks import get_task

    task = get_task(task_name)
    lines = describe_scores(
        f"{task.registered_model} v{version} on the current test window",
        evaluation.metrics,
        evaluation.baseline_metrics,
    )
    lines.append(f"  {evaluation.describe_margin(task.primary_metric)}")
    return "\n".join(lines)


def describe_tuning(task_name: str, result: TuneResult) -> str:
    from training.tasks import get_task

    metric = get_task(task_name).primary_metric
    params = ", ".join(
        f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in result.searched.items()
    )
    return (
        f"custlab-{task_name}: {result.n_trials} finished trials ({result.n_pruned} pruned); "
        f"best valid {metric} {result.best_value:.4f} after {result.best_iteration} rounds; "
        f"{params}"
    )


def demo(
    settings: Settings, world: WorldSpec, tune: TuneSpec, split: SplitSpec = DEMO_SPLIT
) -> str:
    """The main job on the embedded profile: simulate, build features, train every task,
    score every customer, run the newest week's monitoring; returns the closing summary."""
    from training.tasks import TASKS

    started = time.perf_counter()
    simulated = simulate(settings, world)
    build = build_features(settings)
    outcomes = train_all(settings, tune, split)
    against_oracle = [compare_to_oracle(simulated, outcome) for outcome in outcomes]
    batch = score_batch(settings)
    weekly = monitor(settings, tune=tune, split=split)
    churn = next(r for r in weekly if r.task == "churn")
    home = settings.home.resolve()
    return "\n".join(
        [
            "",
            f"custlab demo finished in {time.perf_counter() - started:.0f}s",
            f"features: {build.rows:,} snapshot rows for {build.customers:,} customers, "
            f"{build.first_as_of:%Y-%m-%d} .. {build.last_as_of:%Y-%m-%d}; families "
            + ", ".join(build.families),
            *map(describe_training, outcomes),
            "against the simulator's oracle, on the same test rows:",
            *(
                f"  {outcome.task:<12}{comparison.describe()}"
                for outcome, comparison in zip(outcomes, against_oracle, strict=True)
                if comparison is not None
            ),
            f"every customer scored as of {batch.as_of:%Y-%m-%d}: {batch.folder}",
            f"weekly monitoring of {weekly[0].week} against each champion's test window:",
            *(f"  {result.describe()}" for result in weekly),
            "",
            "next:",
            "  MLflow UI      .venv/bin/mlflow ui --backend-store-uri "
            + settings.mlflow_tracking_uri,
            "  serve          .venv/bin/custlab serve",
            f"  score          curl -s -X POST http://{settings.serve_host}:{settings.serve_port}"
            "/v1/score -H 'content-type: application/json' "
            f'-d \'{{"customer_ids": ["{churn.example_customer}"]}}\'',
            "  one task       the same body at " + ", ".join(f"/v1/{name}" for name in TASKS),
            f"  monitoring     {settings.reports_dir.resolve() / 'index.html'}",
            f"  clean up       rm -rf {home}",
        ]
    )
