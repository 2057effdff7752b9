"""The ``custlab`` command: one subcommand per stage, each a thin shell over a function in
:mod:`custlab.pipeline`."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, ParamSpec, TypeVar

import typer

from custlab.settings import Settings
from features.errors import CustlabError

if TYPE_CHECKING:
    from features.simulate import WorldSpec

P = ParamSpec("P")
R = TypeVar("R")

app = typer.Typer(
    name="custlab",
    help="ML experimentation and model serving for customer analytics.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

Customers = Annotated[int, typer.Option(help="Simulated customers.", min=10)]
Weeks = Annotated[int, typer.Option(help="Simulated weeks.", min=30)]
Seed = Annotated[int, typer.Option(help="Random seed.", min=0)]
Trials = Annotated[int, typer.Option(help="Optuna trials.", min=1)]
Timeout = Annotated[float, typer.Option(help="Stop tuning after this many seconds.", min=1)]
Jobs = Annotated[int, typer.Option(help="Optuna trials run in parallel.", min=1)]
Workers = Annotated[
    int,
    typer.Option(
        help="Processes sharing the study, each running --jobs trials at a time (processes "
        "on other machines join with the same command and storage).",
        min=1,
    ),
]
Task = Annotated[str, typer.Option(help="Task: churn, propensity, clv or lifecycle.")]
OnDask = Annotated[
    bool | None,
    typer.Option(
        "--dask/--no-dask",
        help="Run on Dask: CUSTLAB_DASK_SCHEDULER, or a local cluster of "
        "CUSTLAB_DASK_WORKERS processes (default: in the cluster profile).",
        show_default=False,
    ),
]
Scenarios = Annotated[
    list[str] | None,
    typer.Option(
        "--scenario",
        help="Drift from a date, NAME@YYYY-MM-DD (price_shock, channel_mix, tracking_outage); "
        "repeatable.",
    ),
]


def _settings() -> Settings:
    return Settings()


def _run(step: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Call a pipeline step; turn custlab's errors into one line and exit code 2."""
    try:
        return step(*args, **kwargs)
    except CustlabError as error:
        typer.echo(f"custlab: error: {' '.join(str(error).split())}", err=True)
        raise typer.Exit(2) from None


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    """ML experimentation and model serving for customer analytics."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    from custlab.pipeline import quiet_libraries

    quiet_libraries()


def _world(customers: int, weeks: int, seed: int, scenarios: list[str] | None) -> WorldSpec:
    from features.simulate import WorldSpec, parse_scenario

    parsed = tuple(parse_scenario(text) for text in scenarios or ())
    return WorldSpec(customers=customers, weeks=weeks, seed=seed, scenarios=parsed)


@app.command()
def simulate(
    customers: Customers = 30_000,
    weeks: Weeks = 104,
    seed: Seed = 7,
    scenario: Scenarios = None,
) -> None:
    """Simulate a customer world (all five tables) and write it with its ground truth."""
    from custlab import pipeline

    spec = _run(_world, customers, weeks, seed, scenario)
    _run(pipeline.simulate, _settings(), spec)


@app.command()
def ingest(
    source: Annotated[Path, typer.Option(help="Export file: CSV or parquet, may be gzipped.")],
    mapping: Annotated[
        Path, typer.Option(help="Mapping file (YAML); examples in features/mappings/.")
    ],
) -> None:
    """Ingest an export into a raw contract table; unusable rows go to quarantine."""
    from custlab import pipeline

    result = _run(pipeline.ingest, _settings(), source, mapping)
    typer.echo(result.line())


@app.command("ingest-labelled")
def ingest_labelled(
    source: Annotated[
        Path, typer.Option(help="Labelled customer table: CSV or parquet, may be gzipped.")
    ],
    mapping: Annotated[
        Path,
        typer.Option(help="Labelled mapping (YAML); example: features/mappings/telco.yaml."),
    ],
) -> None:
    """Ingest a labelled customer table (one row per customer, a label column) into the
    feature store; custlab train then cross-validates on it."""
    from custlab import pipeline

    table = _run(pipeline.ingest_labelled, _settings(), source, mapping)
    typer.echo(table.line())


@app.command()
def features(
    raw: Annotated[
        Path | None, typer.Option(help="Folder of raw contract tables (default: the home's).")
    ] = None,
    dask: OnDask = None,
) -> None:
    """Build point-in-time snapshots, write the Feast offline table, apply and materialize."""
    from custlab import pipeline

    build = _run(pipeline.build_features, _settings(), raw, dask)
    typer.echo(
        f"{build.rows:,} snapshot rows for {build.customers:,} customers, "
        f"{build.first_as_of:%Y-%m-%d} .. {build.last_as_of:%Y-%m-%d}; families: "
        + ", ".join(build.families)
    )


@app.command()
def tune(
    task: Task = "churn",
    trials: Trials = 20,
    timeout: Timeout = 900.0,
    jobs: Jobs = 1,
    workers: Workers = 1,
) -> None:
    """Run (or resume) a task's Optuna study alone; a later train on the same data
    resumes it."""
    from custlab import pipeline
    from training.tune import TuneSpec

    spec = TuneSpec(n_trials=trials, timeout_seconds=timeout, jobs=jobs, workers=workers)
    result = _run(pipeline.tune, _settings(), task, spec)
    typer.echo(pipeline.describe_tuning(task, result))


@app.command()
def train(
    task: Task = "churn",
    trials: Trials = 20,
    timeout: Timeout = 900.0,
    jobs: Jobs = 1,
    workers: Workers = 1,
    table: Annotated[
        str | None,
        typer.Option(
            help="Labelled table to train on, or 'events' (default: the home's only data "
            "for the task)."
        ),
    ] = None,
) -> None:
    """Tune, train, evaluate and register a model (--task all: every task); promote it if
    it passes the gate. On a labelled table: nested 5-fold cross-validation."""
    from custlab import pipeline
    from training.tune import TuneSpec

    spec = TuneSpec(n_trials=trials, timeout_seconds=timeout, jobs=jobs, workers=workers)
    if task == "all":
        outcomes = _run(pipeline.train_all, _settings(), spec)
    else:
        outcomes = [_run(pipeline.train, _settings(), task, spec, table=table)]
    for outcome in outcomes:
        typer.echo(pipeline.describe_training(outcome))


@app.command()
def evaluate(
    task: Task = "churn",
    version: Annotated[
        str | None, typer.Option(help="Registry version (default: the champion).")
    ] = None,
) -> None:
    """Score a registered version and the baselines on the current test window."""
    from custlab import pipeline

    found, evaluation = _run(pipeline.evaluate, _settings(), task, version)
    typer.echo(pipeline.describe_evaluation(task, found, evaluation))


@app.command()
def promote(
    task: Task,
    version: Annotated[str, typer.Option(help="Registry version to make champion.")],
    reason: Annotated[str, typer.Option(help="Why, recorded on the version.")],
) -> None:
    """Make a version the champion by hand (for example one that no baseline rule lets
    through), with the reason recorded."""
    from custlab import pipeline

    typer.echo(_run(pipeline.promote, _settings(), task, version, reason))


@app.command()
def ablate(task: Task = "churn") -> None:
    """Refit a task with the feature families added one at a time; print the gain of each."""
    from custlab import pipeline

    typer.echo(_run(pipeline.ablate, _settings(), task))


@app.command()
def monitor(
    task: Annotated[
        list[str] | None,
        typer.Option(help="Only this task (repeatable; default every task with a champion)."),
    ] = None,
    week: Annotated[
        str | None, typer.Option(help="ISO week YYYY-Www (default: the newest snapshot's).")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Backfill: every week from this one through --week.")
    ] = None,
    retrain: Annotated[
        bool, typer.Option(help="Retrain (and gate) when the verdict says so.")
    ] = True,
    trials: Trials = 4,
) -> None:
    """The weekly run: each task's week against its champion's test window, the verdict
    from its policy (retrain, alert or nothing), the retrain it calls for, and
    reports/index.html."""
    from custlab import pipeline
    from training.tune import TuneSpec

    settings = _settings()
    results = _run(
        pipeline.monitor, settings, task, week, since, TuneSpec(n_trials=trials), None, retrain
    )
    for result in results:
        typer.echo(result.describe())
    typer.echo(f"index: {settings.reports_dir / 'index.html'}")


@app.command()
def doctor() -> None:
    """Check each service the active profile uses (home, PostgreSQL, Redis, MLflow,
    Optuna): one line each, naming the setting of any that fails; exit 1 when one does."""
    from custlab.doctor import check_services

    checks = check_services(_settings())
    for check in checks:
        typer.echo(check.line)
    if not all(check.ok for check in checks):
        raise typer.Exit(1)


@app.command("monitor-ui")
def monitor_ui(
    port: Annotated[int, typer.Option(help="Port of the UI.", min=1, max=65535)] = 8000,
) -> None:
    """Open Evidently's UI on the home's workspace: a project per task, a snapshot per
    monitored week, panels of drift share and performance over time (blocks until stopped)."""
    from monitoring.workspace import ui_command, workspace_path

    settings = _settings()
    workspace = workspace_path(settings)
    if not workspace.exists():
        typer.echo(
            f"custlab: error: no Evidently workspace at {workspace}; run custlab monitor first",
            err=True,
        )
        raise typer.Exit(2)
    command = ui_command(workspace, settings.serve_host, port)
    os.execvp(command[0], command)


@app.command("score-batch")
def score_batch(
    reasons: Annotated[
        bool,
        typer.Option(help="Add the top 3 reason codes (exact TreeSHAP: 30-100x the time)."),
    ] = False,
    dask: OnDask = None,
) -> None:
    """Score every customer with every champion into <home>/scores/<date>/ (a parquet
    file a task) and record the batch as an MLflow run."""
    from custlab import pipeline

    for line in _run(pipeline.score_batch, _settings(), reasons, dask).lines():
        typer.echo(line)


@app.command()
def serve(
    port: Annotated[int | None, typer.Option(help="Port (default: settings).")] = None,
) -> None:
    """Serve every champion with BentoML (blocks until stopped)."""
    from custlab import pipeline
    from serving.launch import serve_command

    settings = _settings()
    for line in _run(pipeline.check_serving, settings):
        typer.echo(line)
    command = serve_command(settings.serve_host, port or settings.serve_port)
    # BentoML's usage tracking stays off: nothing leaves the machine.
    os.execve(sys.executable, command, os.environ | {"BENTOML_DO_NOT_TRACK": "true"})


@app.command()
def build() -> None:
    """Package every champion and the service into a Bento (BentoML's store, BENTOML_HOME);
    prints its tag, to serve with bentoml serve TAG."""
    # BentoML's usage tracking stays off: nothing leaves the machine.
    os.environ["BENTOML_DO_NOT_TRACK"] = "true"
    from serving.bento import build_bento

    typer.echo(_run(build_bento, _settings()).tag)


@app.command()
def demo(
    customers: Customers = 30_000,
    weeks: Weeks = 104,
    seed: Seed = 7,
    trials: Trials = 4,
    timeout: Timeout = 60.0,
    scenario: Scenarios = None,
) -> None:
    """Run the main job: simulate, build features, train the four tasks, check drift, summarize."""
    from custlab import pipeline
    from training.tune import TuneSpec

    spec = _run(_world, customers, weeks, seed, scenario)
    summary = _run(
        pipeline.demo,
        _settings(),
        spec,
        TuneSpec(n_trials=trials, timeout_seconds=timeout, max_rounds=500),
    )
    typer.echo(summary)
