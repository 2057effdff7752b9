"""The cluster profile against the real PostgreSQL and Redis servers.

Each test (or module of tests) runs in a namespace of its own, so its PostgreSQL schemas
and Redis keys are its alone, and drops them after. Where a server cannot be reached the
tests fail when the ``CI`` variable is set (CI has both servers) and skip elsewhere, with
a reason naming the server and the setting that points at it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import distributed
import httpx
import mlflow
import optuna
import pandas as pd
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState
from psycopg import sql
from pydantic import SecretStr

from benchmarks.servers import (
    RedisServer,
    Server,
    free_port,
    start,
    stop,
    wait_ready,
    wait_warm,
)
from custlab.doctor import check_services
from custlab.settings import POSTGRES_STORES, Settings
from features.cluster import (
    ServiceUnavailable,
    ensure_schemas,
    ping_redis,
    postgres_connection,
    redis_client,
)
from features.simulate import WorldSpec
from features.store import latest_as_of, read_features
from serving.launch import serve_command
from serving.schemas import ErrorBody
from serving.scorers import UNKNOWN_CUSTOMER
from tests.serving.conftest import RunningServer
from training.record import RECORD_TAG
from training.tune import FINISHED, TuneSpec, open_study

pytestmark = pytest.mark.integration
services = pytest.mark.services

ROOT = Path(__file__).resolve().parents[2]
# The brief's small world: enough rows for a model that clears the baselines.
WORLD = WorldSpec(customers=1500, weeks=70, seed=11)


def _unreachable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI has this server, so this is a failure", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def reachable() -> None:
    """Both servers answer (checked once a session)."""
    settings = Settings(profile="cluster")
    try:
        with postgres_connection(settings):
            pass
        ping_redis(settings)
    except ServiceUnavailable as error:
        _unreachable(str(error))


def drop_namespace(settings: Settings) -> None:
    """Drop the namespace's schemas and delete its Redis keys."""
    with postgres_connection(settings) as connection:
        # Never wait for ever on a pooled connection some library left in a transaction.
        connection.execute("SET lock_timeout = '20s'")
        for store in POSTGRES_STORES:
            schema = sql.Identifier(settings.postgres_schema(store))
            connection.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(schema))
    client = redis_client(settings)
    try:
        for key in client.scan_iter(match=f"{settings.redis_prefix}*"):
            client.delete(key)
    finally:
        client.close()


def _schemas(settings: Settings) -> list[str]:
    with postgres_connection(settings) as connection:
        rows = connection.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s ORDER BY 1",
            [f"{settings.namespace}\\_%"],
        )
        return [row[0] for row in rows]


@pytest.fixture(scope="module")
def namespaces(reachable: None) -> Iterator[list[Settings]]:
    """Deployments the module's tests made; each one's schemas and keys are dropped
    after the module, and the drop is checked."""
    made: list[Settings] = []
    tracking = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    yield made
    # MLflow's URIs are process-wide: later tests find them where they were.
    mlflow.set_tracking_uri(tracking[0])
    mlflow.set_registry_uri(tracking[1])
    for settings in made:
        drop_namespace(settings)
        assert _schemas(settings) == []
        client = redis_client(settings)
        assert not list(client.scan_iter(match=f"{settings.redis_prefix}*"))
        client.close()


def cluster_settings(namespaces: list[Settings], home: Path, **overrides: object) -> Settings:
    """The cluster profile in a namespace of its own (servers from the environment)."""
    settings = Settings(
        profile="cluster", home=home, namespace=f"t{uuid.uuid4().hex[:12]}", **overrides
    )
    namespaces.append(settings)
    return settings


@pytest.fixture(scope="module")
def trained(namespaces: list[Settings], tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A cluster deployment where the small world was simulated, its features built on
    Dask and published, and churn trained (2 trials; the final fit on Dask)."""
    from custlab import pipeline

    settings = cluster_settings(
        namespaces, tmp_path_factory.mktemp("cluster-home"), dask_train_rows=1_000
    )
    pipeline.quiet_libraries()
    pipeline.simulate(settings, WORLD)
    pipeline.build_features(settings)
    pipeline.train(settings, "churn", TuneSpec(n_trials=2, max_rounds=300))
    return settings


@services
@pytest.mark.slow
def test_the_main_job_runs_end_to_end_in_the_cluster_profile(namespaces, tmp_path: Path):
    from custlab import pipeline
    from training.tasks import TASKS

    settings = cluster_settings(namespaces, tmp_path / "home")
    pipeline.quiet_libraries()
    summary = pipeline.demo(settings, WORLD, TuneSpec(n_trials=2, max_rounds=200))
    assert "custlab demo finished" in summary
    # Every task registered a version in the deployment's own MLflow schema; those the
    # gate let through are champions (at this scale the gate may keep one out).
    uri = settings.mlflow_tracking_uri
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    champions = []
    for name, task in TASKS.items():
        model = client.get_registered_model(task.registered_model)
        assert model.latest_versions, name
        champions += [name] if "champion" in model.aliases else []
    assert "churn" in champions
    # The batch was scored on Dask, a file a champion; each champion's week has its report.
    (batch,) = sorted(settings.scores_dir.iterdir())
    assert sorted(p.stem for p in batch.glob("*.parquet")) == sorted(champions)
    scored = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        "params.dask = 'True'",
    )
    assert scored, "no batch run on Dask"
    (week,) = [p for p in settings.reports_dir.iterdir() if p.is_dir()]
    for name in champions:
        assert (week / name / "index.html").exists()
    for local_store in ("mlflow.db", "optuna.db", "feast/registry.db"):
        assert not (settings.home / local_store).exists()


@services
@pytest.mark.slow
def test_train_registers_and_promotes_in_its_own_schemas(trained: Settings, namespaces):
    with postgres_connection(trained) as connection:
        mlflow_schema = sql.Identifier(trained.postgres_schema("mlflow"))
        aliases = connection.execute(
            sql.SQL(
                "SELECT alias, version FROM {}.registered_model_aliases WHERE name = %s"
            ).format(mlflow_schema),
            ["custlab-churn"],
        ).fetchall()
        trials = connection.execute(
            sql.SQL("SELECT state FROM {}.trials").format(
                sql.Identifier(trained.postgres_schema("optuna"))
            )
        ).fetchall()
        views = connection.execute(
            sql.SQL("SELECT feature_view_name FROM {}.feature_views").format(
                sql.Identifier(trained.postgres_schema("feast"))
            )
        ).fetchall()
        # Nothing of it landed in the schema every login sees by default.
        public = connection.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename IN ('registered_models', 'trials', 'feature_views')"
        ).fetchone()
    assert ("champion", 1) in aliases
    states = sorted(state for (state,) in trials)
    assert len(states) == 2 and states[0] == "COMPLETE" and set(states) <= {"COMPLETE", "PRUNED"}
    assert len(views) == 6
    assert public == (0,)
    # The stores are the server's: the home holds no SQLite store of them.
    for local_store in ("mlflow.db", "optuna.db", "feast/registry.db"):
        assert not (trained.home / local_store).exists()
    # The champion loads through the registry, artifacts from the configured root.
    mlflow.set_tracking_uri(trained.mlflow_tracking_uri)
    mlflow.set_registry_uri(trained.mlflow_tracking_uri)
    model = MlflowClient().get_model_version_by_alias("custlab-churn", "champion")
    run = MlflowClient().get_run(model.run_id)
    assert run.info.artifact_uri.startswith(trained.mlflow_artifact_root)
    # Past dask_train_rows the final fit ran with lightgbm.dask on the local cluster.
    assert run.data.params["final_fit"] == "lightgbm.dask, 2 workers"
    (feast,) = [c for c in check_services(trained) if c.name == "feast"]
    assert feast.ok and "registry opens: 6 feature views, online as of" in feast.detail
    assert feast.detail.endswith("online store CustomerRedisOnlineStore")
    # Another deployment on the same server sees none of it.
    other = cluster_settings(namespaces, trained.home.parent / "other")
    ensure_schemas(other)
    uri = other.mlflow_tracking_uri
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert client.search_registered_models() == []
    assert [e.name for e in client.search_experiments()] == ["Default"]


@services
@pytest.mark.slow
def test_features_built_on_dask_are_those_of_one_process(trained: Settings):
    from features.contract import read_raw_tables
    from features.snapshots import build_snapshots

    here = build_snapshots(read_raw_tables(trained.raw_dir))
    for name, frame in here.items():
        offline = pd.read_parquet(trained.offline_dir / f"{name}.parquet")
        pd.testing.assert_frame_equal(
            offline[frame.columns].reset_index(drop=True),
            frame.astype(offline[frame.columns].dtypes),
            check_exact=True,
            obj=name,
        )


@services
@pytest.mark.slow
def test_tune_with_two_workers_runs_the_trained_study_on_postgres(trained: Settings):
    from custlab import pipeline

    # The same data as training's study: this run resumes it, with a worker process.
    result = pipeline.tune(trained, "churn", TuneSpec(n_trials=8, max_rounds=300, workers=2))
    (summary,) = [
        s
        for s in optuna.get_all_study_summaries(trained.optuna_storage)
        if s.study_name.startswith("custlab-churn-")
    ]
    study = optuna.load_study(study_name=summary.study_name, storage=trained.optuna_storage)
    finished = [t for t in study.trials if t.state in FINISHED]
    assert 8 <= len(finished) <= 9 and result.n_trials == len(finished)
    # Training's two trials, then both processes of this run.
    workers = [t.user_attrs["worker"] for t in sorted(finished, key=lambda t: t.number)]
    assert len(set(workers[2:])) == 2 and os.getpid() in workers[2:]


@services
@pytest.mark.slow
def test_postgres_refusing_stops_train_with_one_line_and_writes_nothing(trained: Settings):
    port = free_port()
    dsn = f"postgresql://postgres:refused-secret@127.0.0.1:{port}/test"
    before = {p: p.stat().st_mtime_ns for p in trained.home.rglob("*")}
    with postgres_connection(trained) as connection:
        versions = connection.execute(
            sql.SQL("SELECT count(*) FROM {}.model_versions").format(
                sql.Identifier(trained.postgres_schema("mlflow"))
            )
        ).fetchone()
    done = subprocess.run(
        [sys.executable, "-m", "custlab", "train", "--task", "churn", "--trials", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={
            "PATH": os.environ.get("PATH", ""),
            "CUSTLAB_HOME": str(trained.home),
            "CUSTLAB_PROFILE": "cluster",
            "CUSTLAB_NAMESPACE": trained.namespace,
            "CUSTLAB_POSTGRES_DSN": dsn,
        },
    )
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("custlab: error:")]
    assert len(errors) == 1, done.stderr
    assert f"PostgreSQL at postgresql://postgres:***@127.0.0.1:{port}/test" in errors[0]
    assert "refused the connection" in errors[0]
    assert errors[0].endswith("(CUSTLAB_POSTGRES_DSN)")
    assert "refused-secret" not in done.stderr + done.stdout
    # Nothing half-written: the home and the registry are as they were.
    assert {p: p.stat().st_mtime_ns for p in trained.home.rglob("*")} == before
    with postgres_connection(trained) as connection:
        assert (
            connection.execute(
                sql.SQL("SELECT count(*) FROM {}.model_versions").format(
                    sql.Identifier(trained.postgres_schema("mlflow"))
                )
            ).fetchone()
            == versions
        )


# No server needed: the one refusing is a closed port.
@pytest.mark.slow
def test_postgres_refusing_publishes_no_features(tmp_path: Path):
    from custlab import pipeline

    refused = Settings(
        profile="cluster",
        home=tmp_path / "home",
        postgres_dsn=f"postgresql://postgres@127.0.0.1:{free_port()}/test",
    )
    pipeline.simulate(refused, WorldSpec(customers=200, weeks=40, seed=3))
    with pytest.raises(ServiceUnavailable, match=r"\(CUSTLAB_POSTGRES_DSN\)$"):
        pipeline.build_features(refused)
    # No offline table beside a registry that never heard of it.
    assert not refused.offline_dir.exists() or not any(refused.offline_dir.iterdir())


@services
def test_doctor_says_ok_for_every_service(namespaces, tmp_path: Path):
    from sqlalchemy.engine import make_url

    settings = cluster_settings(namespaces, tmp_path / "home")
    url = make_url(settings.postgres_dsn.get_secret_value())
    if url.password is None:
        # A canary the trust-auth servers ignore: it must not reach any line.
        settings = settings.model_copy(
            update={
                "postgres_dsn": SecretStr(
                    url.set(password="doctor-canary").render_as_string(hide_password=False)
                )
            }
        )
    checks = check_services(settings)
    names = ["home", "postgres", "redis", "mlflow", "optuna", "feast", "dask"]
    assert [c.name for c in checks] == names
    assert all(c.ok for c in checks), [c.line for c in checks]
    assert "to be made" in checks[1].detail and "not made yet" in checks[3].detail
    assert "not made yet" in checks[5].detail
    assert "starts a local cluster of 2 worker processes" in checks[6].detail
    # A scheduler of its own, as a cluster has: the doctor finds its workers.
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, protocol="tcp", dashboard_address=None
    ) as cluster:
        scheduled = settings.model_copy(update={"dask_scheduler": cluster.scheduler_address})
        (dask,) = [c for c in check_services(scheduled) if c.name == "dask"]
    assert dask.ok and dask.detail.endswith("answers: workers 1, threads 2"), dask.line
    ensure_schemas(settings)
    open_study("doctor", settings.optuna_storage, 0, TuneSpec())
    checks = check_services(settings)
    assert all(c.ok for c in checks), [c.line for c in checks]
    assert checks[4].detail.endswith("opens: 1 studies")
    assert all("doctor-canary" not in c.line and "\n" not in c.line for c in checks)


@services
def test_doctor_names_the_schemas_a_login_may_not_use(namespaces, tmp_path: Path):
    from sqlalchemy.engine import make_url

    settings = cluster_settings(namespaces, tmp_path / "home")
    ensure_schemas(settings, ("mlflow", "optuna"))
    role = f"r{uuid.uuid4().hex[:10]}"
    with postgres_connection(settings) as connection:
        connection.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    try:
        url = make_url(settings.postgres_dsn.get_secret_value()).set(username=role)
        limited = settings.model_copy(
            update={"postgres_dsn": SecretStr(url.render_as_string(hide_password=False))}
        )
        (postgres,) = [c for c in check_services(limited) if c.name == "postgres"]
        assert not postgres.ok
        assert postgres.detail.startswith(f"the login of postgresql://{role}@")
        refused = (("use", "mlflow"), ("use", "optuna"), ("create", "feast"))
        assert (
            "may not: "
            + "; ".join(
                f"{doing} schema {settings.postgres_schema(store)}" for doing, store in refused
            )
            in postgres.detail
        )
        assert postgres.detail.endswith("choose another CUSTLAB_NAMESPACE)")
    finally:
        with postgres_connection(settings) as connection:
            connection.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


# A worker as a separate machine would run it: its settings from the environment, the
# study opened as custlab opens it, trials until the study holds the budget (whoever
# ran them). Each trial records its worker and says when it starts.
WORKER = textwrap.dedent(
    """
    import os, sys, time
    from optuna.study import MaxTrialsCallback
    from custlab.settings import Settings
    from training.tune import FINISHED, TuneSpec, open_study

    budget = int(sys.argv[1])
    study = open_study("shared", Settings().optuna_storage, 0, TuneSpec(jobs=2))

    def objective(trial):
        x = trial.suggest_float("x", -3.0, 3.0)
        trial.set_user_attr("worker", os.getpid())
        time.sleep(0.8)
        return -((x - 1.0) ** 2)

    study.optimize(objective, callbacks=[MaxTrialsCallback(budget, states=FINISHED)])
    """
)


@services
@pytest.mark.slow
def test_two_workers_share_one_study_and_a_killed_one_loses_no_finished_trial(
    namespaces, tmp_path: Path
):
    settings = cluster_settings(namespaces, tmp_path / "home")
    ensure_schemas(settings, ("optuna",))
    # Made before the workers start: two processes creating one study's tables race.
    study = open_study("shared", settings.optuna_storage, 0, TuneSpec(jobs=2))
    # Long enough that the survivor runs past the killed trial's heartbeat grace period
    # (10 s) and marks it failed.
    budget = 30
    env = {
        "PATH": os.environ.get("PATH", ""),
        "CUSTLAB_PROFILE": "cluster",
        "CUSTLAB_NAMESPACE": settings.namespace,
        "CUSTLAB_POSTGRES_DSN": settings.postgres_dsn.get_secret_value(),
    }
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(budget)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(2)
    ]
    victim, survivor = workers
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            trials = study.get_trials(deepcopy=False)
            by_worker = {t.user_attrs.get("worker") for t in trials if t.state.is_finished()}
            if len(by_worker) == 2 and sum(t.state.is_finished() for t in trials) >= 4:
                break
            time.sleep(0.2)
        else:
            pytest.fail("the two workers did not both finish trials within 120 s")
        # Killed mid-trial: within 0.3 s of a trial's start, well inside its 0.8 s.
        while not any(
            t.state == TrialState.RUNNING
            and t.user_attrs.get("worker") == victim.pid
            and t.datetime_start is not None
            and (datetime.now() - t.datetime_start).total_seconds() < 0.3
            for t in study.get_trials(deepcopy=False)
        ):
            time.sleep(0.02)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        kept = {
            t.number: (t.value, t.params)
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        }
        assert survivor.wait(timeout=180) == 0
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    trials = optuna.load_study(study_name="shared", storage=settings.optuna_storage).trials
    finished = [t for t in trials if t.state in FINISHED]
    assert len(finished) == budget
    # Every trial finished before the kill is still there, as it was.
    now = {t.number: (t.value, t.params) for t in trials if t.state == TrialState.COMPLETE}
    assert {number: now.get(number) for number in kept} == kept
    # Both workers ran trials of the one study.
    assert len({t.user_attrs["worker"] for t in finished}) == 2
    # The killed worker's trial went silent and the survivor marked it failed, so nothing
    # is left running and its budget went to a trial that finished.
    killed = [t for t in trials if t.user_attrs.get("worker") == victim.pid]
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert [t.state for t in killed if t.state not in FINISHED] == [TrialState.FAIL]


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    try:
        server.start()
    except RuntimeError as why:
        _unreachable(str(why))
    yield server
    server.kill()


def _replica(trained: Settings, redis_url: str, tmp_path: Path, name: str) -> RunningServer:
    """One serving replica of the trained deployment, started as ``custlab serve`` is."""
    port = free_port()
    server = Server(
        "custlab", name, serve_command("127.0.0.1", port), port, "/v1/score",
        warm_path="/v1/status",
    )  # fmt: skip
    env = {key: value for key, value in os.environ.items() if not key.startswith("CUSTLAB_")}
    env |= {
        "CUSTLAB_PROFILE": "cluster",
        "CUSTLAB_HOME": str(trained.home),
        "CUSTLAB_NAMESPACE": trained.namespace,
        "CUSTLAB_POSTGRES_DSN": trained.postgres_dsn.get_secret_value(),
        "CUSTLAB_REDIS_URL": redis_url,
        "CUSTLAB_CHAMPION_CHECK_SECONDS": "1",
        "BENTOML_HOME": str(tmp_path / f"bentoml-{name}"),
        "BENTOML_DO_NOT_TRACK": "true",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    log = tmp_path / f"{name}.log"
    running = RunningServer(server, start(server, env, log), log)
    try:
        wait_ready(server, running.process)
        wait_warm(server, running.process)
    except RuntimeError as why:
        stop(running.process)
        pytest.fail(f"{why}\n{running.log_tail()}")
    return running


def _until(check: Callable[[], bool], seconds: float, what: str, *servers: RunningServer) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    tails = "\n".join(s.log_tail() for s in servers)
    pytest.fail(f"{what} not within {seconds:.0f} s\n{tails}")


@services
@pytest.mark.slow
def test_replicas_share_redis_and_the_registry_and_ride_out_a_redis_restart(
    trained: Settings, private_redis: RedisServer, tmp_path: Path
):
    """Two replicas read one Redis and one registry: the same answers, a champion move
    reaching both; Redis restarted under them: what needs the store answers 503 and
    readiness fails meanwhile, and both recover by themselves once it is back."""
    shared = redis_client(trained)
    assert private_redis.copy_from(shared, f"{trained.redis_prefix}*") > 0
    replicas = [_replica(trained, private_redis.url, tmp_path, f"replica{i}") for i in (1, 2)]
    try:
        features = read_features(trained, dates=[latest_as_of(trained)])
        known = features.loc[features["orders_52w"] > 0, "customer_id"].head(3).tolist()

        def score(replica: RunningServer, ids: list[str]) -> httpx.Response:
            body = {"customer_ids": ids, "tasks": ["churn"]}
            return httpx.post(replica.url("/v1/score"), json=body, timeout=60)

        def churn(replica: RunningServer) -> list[tuple[str, float]]:
            response = score(replica, known)
            assert response.status_code == 200, response.text
            answers = [c["scores"]["churn"] for c in response.json()["customers"]]
            return [(a["model_version"], a["score"]) for a in answers]

        first = churn(replicas[0])
        assert first == churn(replicas[1]) and {v for v, _ in first} == {"1"}

        # A champion move (the same model registered again, as version 2) reaches both.
        uri = trained.mlflow_tracking_uri
        registry = MlflowClient(tracking_uri=uri, registry_uri=uri)
        champion = registry.get_model_version_by_alias("custlab-churn", "champion")
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        moved = mlflow.register_model(champion.source, "custlab-churn")
        registry.set_model_version_tag(
            "custlab-churn", moved.version, RECORD_TAG, champion.tags[RECORD_TAG]
        )
        registry.set_registered_model_alias("custlab-churn", "champion", moved.version)
        for replica in replicas:
            _until(
                lambda r=replica: {v for v, _ in churn(r)} == {str(moved.version)},
                60, f"champion v{moved.version} on {replica.server.name}", *replicas,
            )  # fmt: skip
        assert [s for _, s in churn(replicas[0])] == [s for _, s in first]

        # Redis restarted: an id no answer was kept for needs the store.
        private_redis.stop()
        for replica in replicas:
            down = score(replica, ["someone-new"])
            assert down.status_code == 503, down.text
            body = ErrorBody.model_validate(down.json())
            assert body.error.code == "unavailable" and "someone-new" not in down.text
            assert httpx.get(replica.url("/readyz"), timeout=60).status_code == 503
            assert httpx.get(replica.url("/livez"), timeout=5).status_code == 200
        private_redis.start()
        for replica in replicas:
            _until(
                lambda r=replica: httpx.get(r.url("/readyz"), timeout=60).status_code == 200,
                60, f"{replica.server.name} ready again", *replicas,
            )  # fmt: skip
            back = score(replica, ["someone-new", *known])
            assert back.status_code == 200, back.text
            unknown = back.json()["customers"][0]["scores"]["churn"]
            assert unknown["score"] is None and UNKNOWN_CUSTOMER in unknown["warnings"]
    finally:
        for replica in replicas:
            stop(replica.process)
