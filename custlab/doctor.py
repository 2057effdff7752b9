"""``custlab doctor``: is every service the active profile uses there and usable?

Each check returns one line: ``ok`` with what it found, or ``FAIL`` with why and the
setting (environment variable) that points at the service. A check never raises, never
creates a store that is not there yet (the first command that needs it does), and never
shows a secret: addresses are printed without their passwords and error texts are
scrubbed of every secret the settings hold.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

from custlab.settings import POSTGRES_STORES, PostgresStore, Settings, env_name, redact_url
from features.cluster import (
    ServiceUnavailable,
    dask_client,
    ping_redis,
    postgres_address,
    postgres_connection,
    redis_address,
    redis_client,
    redis_failure,
    schema_status,
    scrub,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Check:
    """The outcome of one check.

    Attributes:
        name: What was checked (``home``, ``postgres``, ``redis``, ``mlflow``, ``optuna``).
        ok: Whether it can be used.
        detail: What was found; on a failure, why, ending with the setting to fix.
    """

    name: str
    ok: bool
    detail: str

    @property
    def line(self) -> str:
        return f"{'ok' if self.ok else 'FAIL':<4} {self.name}: {self.detail}"


def check_services(settings: Settings) -> list[Check]:
    """Check each service of the active profile, in the order they depend on each other.

    ``local``: the home, the MLflow store, the Optuna storage and the Feast registry
    (SQLite files in the home). ``cluster``: the home, PostgreSQL and the deployment's
    schemas in it, Redis, then the MLflow store, the Optuna storage and the Feast registry
    in their schemas (not opened when PostgreSQL is down: each would only wait for it
    again), and the Dask scheduler.
    """
    checks = [_check_home(settings)]
    postgres_ok = True
    if settings.profile == "cluster":
        checks.append(_guarded("postgres", settings, _check_postgres))
        postgres_ok = checks[-1].ok
        checks.append(_guarded("redis", settings, _check_redis))
    for name, check in (
        ("mlflow", _check_mlflow),
        ("optuna", _check_optuna),
        ("feast", _check_feast),
    ):
        if postgres_ok:
            checks.append(_guarded(name, settings, check))
        else:
            checks.append(
                Check(
                    name,
                    False,
                    f"not opened: PostgreSQL is unreachable ({env_name('postgres_dsn')})",
                )
            )
    if settings.profile == "cluster":
        checks.append(_guarded("dask", settings, _check_dask))
    return checks


def _guarded(name: str, settings: Settings, check: Callable[[Settings], str]) -> Check:
    """``check``'s finding as an ok line; any error it raises as a failed one."""
    try:
        return Check(name, True, check(settings))
    except ServiceUnavailable as error:
        return Check(name, False, scrub(settings, str(error)))
    except Exception as error:  # a doctor reports every failure, whatever raised it
        logger.debug("check %s failed", name, exc_info=True)
        setting = env_name("postgres_dsn" if settings.profile == "cluster" else "home")
        why = scrub(settings, f"{type(error).__name__}: {error}")
        return Check(name, False, f"{why} ({setting})")


def _writable(folder: Path) -> str | None:
    """Why nothing can be written under ``folder`` (None when it can): a file is created
    and removed in it, or in its nearest existing parent while it does not exist."""
    target = folder
    while not target.exists() and target != target.parent:
        target = target.parent
    if not target.is_dir():
        return f"{target} is not a folder"
    try:
        with tempfile.NamedTemporaryFile(dir=target, prefix=".custlab-doctor-"):
            pass
    except OSError as error:
        return f"cannot write in {target}: {error.strerror or error}"
    return None


def _check_home(settings: Settings) -> Check:
    home = settings.home.resolve()
    why = _writable(home)
    if why is not None:
        return Check("home", False, f"{why} ({env_name('home')})")
    found = "writable" if home.exists() else "not there yet; its parent is writable"
    return Check("home", True, f"{home} {found}")


def _check_postgres(settings: Settings) -> str:
    with postgres_connection(settings) as connection:
        version = connection.info.server_version
    found, refused = [], []
    for store in POSTGRES_STORES:
        schema = settings.postgres_schema(store)
        status = schema_status(settings, store)
        if not status.usable:
            refused.append(f"{'use' if status.exists else 'create'} schema {schema}")
        else:
            found.append(
                f"{schema} ({status.tables} tables)" if status.exists else f"{schema} (to be made)"
            )
    if refused:
        raise ServiceUnavailable(
            f"the login of {postgres_address(settings)} may not: {'; '.join(refused)} "
            f"(grant it, or choose another {env_name('namespace')})"
        )
    release = f"{version // 10000}.{version % 10000}"
    return (
        f"{postgres_address(settings)} answers (PostgreSQL {release}); schemas {', '.join(found)}"
    )


def _check_redis(settings: Settings) -> str:
    import redis

    version = ping_redis(settings)
    # Writing proves more than a ping: a replica or a full server answers pings too.
    probe = f"{settings.redis_prefix}doctor"
    client = redis_client(settings)
    try:
        client.set(probe, "1", px=10_000)
        client.delete(probe)
    except redis.RedisError as error:
        raise redis_failure(settings, "refused a write", error) from None
    finally:
        client.close()
    return f"{redis_address(settings)} answers (Redis {version}); keys {probe}... writable"


def _check_dask(settings: Settings) -> str:
    setting = env_name("dask_scheduler")
    if settings.dask_scheduler is None:
        return (
            f"no scheduler set ({setting}): each command that runs on Dask starts a local "
            f"cluster of {settings.dask_workers} worker processes"
        )
    with dask_client(settings) as client:
        threads = client.nthreads()
    if not threads:
        raise ServiceUnavailable(
            f"Dask scheduler at {settings.dask_scheduler} answers but has no workers ({setting})"
        )
    return (
        f"scheduler at {settings.dask_scheduler} answers: workers {len(threads)}, "
        f"threads {sum(threads.values())}"
    )


def _sqlite_file(uri: str) -> Path:
    return Path(uri.removeprefix("sqlite:///"))


def _store_missing(settings: Settings, store: PostgresStore, uri: str) -> str | None:
    """Where the store will be made, while it has not been (None once it has)."""
    if settings.profile == "cluster":
        if schema_status(settings, store).tables:
            return None
        where = f"in schema {settings.postgres_schema(store)}"
    else:
        path = _sqlite_file(uri)
        if path.exists():
            return None
        where = f"at {path}"
    return f"not made yet; the first command that needs it makes it {where}"


def _artifacts_line(settings: Settings) -> str:
    root = settings.mlflow_artifact_root
    parts = urlsplit(root)
    if parts.scheme != "file":
        return f"artifacts under {root} (not checked from here)"
    why = _writable(Path(url2pathname(parts.path)))
    if why is not None:
        raise ServiceUnavailable(f"artifacts: {why} ({env_name('artifact_root')})")
    return f"artifacts under {root}, writable"


def _check_mlflow(settings: Settings) -> str:
    uri = settings.mlflow_tracking_uri
    artifacts = _artifacts_line(settings)
    missing = _store_missing(settings, "mlflow", uri)
    if missing is not None:
        return f"{missing}; {artifacts}"
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiments = len(client.search_experiments(max_results=1000))
    models = len(client.search_registered_models(max_results=1000))
    where = redact_url(uri)
    return f"{where} opens: {experiments} experiments, {models} registered models; {artifacts}"


def _check_optuna(settings: Settings) -> str:
    uri = settings.optuna_storage
    missing = _store_missing(settings, "optuna", uri)
    if missing is not None:
        return missing
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # Opening checks the tables' version against this Optuna's: an older store
        # fails here with Optuna's own advice to upgrade it.
        storage = optuna.storages.RDBStorage(uri)
    try:
        studies = len(storage.get_all_studies())
    finally:
        storage.remove_session()
        storage.engine.dispose()
    return f"{redact_url(uri)} opens: {studies} studies"


def _check_feast(settings: Settings) -> str:
    if settings.profile == "cluster":
        if not schema_status(settings, "feast").tables:
            where = f"in schema {settings.postgres_schema('feast')}"
            return f"not made yet; custlab features makes the registry {where}"
    elif not (settings.feast_dir / "registry.db").exists():
        return f"not made yet; custlab features makes the registry in {settings.feast_dir}"
    from features.store import open_store

    store = open_store(settings)
    views = store.list_feature_views()
    ends = [v.most_recent_end_time for v in views if v.most_recent_end_time]
    online = type(store._get_provider().online_store).__name__
    newest = f"online as of {max(ends):%Y-%m-%d}" if ends else "nothing materialized yet"
    return f"registry opens: {len(views)} feature views, {newest}; online store {online}"
