"""custlab doctor without servers: the local profile's checks, and every failure of the
cluster profile's named by its setting, on one line, with no secret in it (the servers
are closed ports; tests/integration/test_cluster.py runs it against the real ones)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest

from benchmarks.servers import free_port
from custlab.doctor import check_services
from custlab.settings import Settings
from training.registry import use_tracking
from training.tune import TuneSpec, open_study


@pytest.fixture
def tracking_restored() -> Iterator[None]:
    """MLflow's URIs are process-wide: later tests find them where they were."""
    uris = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    yield
    mlflow.set_tracking_uri(uris[0])
    mlflow.set_registry_uri(uris[1])


def test_local_profile_checks_the_home_and_its_sqlite_stores(
    tmp_path: Path, tracking_restored: None
):
    settings = Settings(home=tmp_path / "home")
    checks = check_services(settings)
    assert [c.name for c in checks] == ["home", "mlflow", "optuna", "feast"]
    assert all(c.ok for c in checks), [c.line for c in checks]
    # The doctor looks and makes nothing: the first command makes the stores.
    assert not settings.home.exists()
    assert all("not made yet" in c.detail for c in checks[1:])

    use_tracking(settings, "custlab-doctor")
    open_study("doctor", settings.optuna_storage, 0, TuneSpec())
    lines = [c.line for c in check_services(settings)]
    assert lines[0] == f"ok   home: {settings.home.resolve()} writable"
    assert "opens: 2 experiments, 0 registered models" in lines[1]
    assert lines[2].endswith("opens: 1 studies")


def test_a_home_that_cannot_be_written_names_the_setting(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    (home,) = [c for c in check_services(Settings(home=blocker / "home")) if c.name == "home"]
    assert not home.ok
    assert home.line == f"FAIL home: {blocker} is not a folder (CUSTLAB_HOME)"


@pytest.fixture
def closed() -> Settings:
    """The cluster profile with passwords in its URLs, pointed at ports nobody serves."""
    return Settings(
        profile="cluster",
        postgres_dsn=f"postgresql://custlab:pg-secret-1@127.0.0.1:{free_port()}/test",
        redis_url=f"redis://:redis-secret-2@127.0.0.1:{free_port()}/0",
        dask_scheduler=f"tcp://127.0.0.1:{free_port()}",
        pseudonym_key="hmac-secret-3",
        connect_timeout_seconds=2,
    )


def test_each_unreachable_service_fails_on_one_line_naming_its_setting(closed: Settings):
    checks = {c.name: c for c in check_services(closed)}
    assert list(checks) == ["home", "postgres", "redis", "mlflow", "optuna", "feast", "dask"]
    assert checks["home"].ok
    postgres, redis = checks["postgres"], checks["redis"]
    assert not postgres.ok and not redis.ok
    assert postgres.line.startswith("FAIL postgres: PostgreSQL at postgresql://custlab:***@")
    assert "refused the connection: Connection refused" in postgres.detail
    assert postgres.detail.endswith("(CUSTLAB_POSTGRES_DSN)")
    assert redis.line.startswith("FAIL redis: Redis at redis://:***@127.0.0.1:")
    assert redis.detail.endswith("(CUSTLAB_REDIS_URL)")
    dask = checks["dask"]
    assert dask.line.startswith(f"FAIL dask: Dask scheduler at {closed.dask_scheduler} did not")
    assert dask.detail.endswith("(CUSTLAB_DASK_SCHEDULER)")
    # MLflow, Optuna and Feast's registry live on that PostgreSQL: not opened, so not
    # waited for.
    for name in ("mlflow", "optuna", "feast"):
        assert checks[name].line == (
            f"FAIL {name}: not opened: PostgreSQL is unreachable (CUSTLAB_POSTGRES_DSN)"
        )
    text = "\n".join(c.line for c in checks.values())
    assert len(text.splitlines()) == len(checks)
    for secret in ("pg-secret-1", "redis-secret-2", "hmac-secret-3"):
        assert secret not in text


def test_an_artifact_root_that_cannot_be_written_names_the_setting(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    settings = Settings(home=tmp_path / "home", artifact_root=str(blocker / "artifacts"))
    (mlflow,) = [c for c in check_services(settings) if c.name == "mlflow"]
    assert (
        mlflow.line == f"FAIL mlflow: artifacts: {blocker} is not a folder (CUSTLAB_ARTIFACT_ROOT)"
    )
