"""The cluster profile's shared servers: connections to PostgreSQL, Redis and a Dask
scheduler, the deployment's PostgreSQL schemas, and errors that name the setting to fix.

It sits in the lowest room that reaches a shared server (Feast's SQL registry here;
MLflow and Optuna in ``training/``), since rooms import nothing of ``custlab/`` but its
settings. The addresses come from :class:`custlab.settings.Settings` alone, and no
message carries a password: addresses are shown through :func:`redact_url`, error texts
through :func:`scrub`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, NamedTuple

from pydantic import SecretStr

from custlab.settings import POSTGRES_STORES, PostgresStore, Settings, env_name, redact_url
from features.errors import CustlabError

if TYPE_CHECKING:
    import distributed
    import psycopg
    import redis

# libpq counts its connect timeout in whole seconds and treats less than 2 as 2.
_MIN_CONNECT_SECONDS = 2
# Deployments whose schemas this process has seen exist: (server, namespace).
_prepared: set[tuple[str, str]] = set()


class ServiceUnavailable(CustlabError):
    """A server of the active profile cannot be used; the message says which setting
    points at it and why."""


def scrub(settings: Settings, text: str) -> str:
    """``text`` on one line, with every secret of ``settings`` (the passwords inside the
    server URLs too) replaced by ``***``."""
    from urllib.parse import unquote, urlsplit

    urls = {"postgres_dsn": settings.postgres_dsn, "redis_url": settings.redis_url}
    # A server URL is secret for its password alone; its address is what messages show.
    secrets = [
        value.get_secret_value()
        for name, value in vars(settings).items()
        if isinstance(value, SecretStr) and name not in urls
    ]
    for url in urls.values():
        password = urlsplit(url.get_secret_value()).password
        if password:
            secrets.extend([password, unquote(password)])
    text = " ".join(text.split())
    for secret in sorted(filter(None, secrets), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def postgres_address(settings: Settings) -> str:
    """``postgres_dsn`` without its password, for messages."""
    return redact_url(settings.postgres_dsn.get_secret_value())


def _postgres_failure(settings: Settings, doing: str, error: BaseException) -> ServiceUnavailable:
    # libpq says where it failed before why ('connection to server at ... failed: why');
    # the address is already in the message.
    why = str(error).rsplit(" failed: ", 1)[-1]
    return ServiceUnavailable(
        f"PostgreSQL at {postgres_address(settings)} {doing}: "
        f"{scrub(settings, why) or type(error).__name__} ({env_name('postgres_dsn')})"
    )


@contextmanager
def postgres_connection(settings: Settings) -> Iterator[psycopg.Connection]:
    """An autocommit connection to ``postgres_dsn``, waiting at most the connect timeout.

    Raises:
        ServiceUnavailable: The server cannot be reached or refuses the login.
    """
    import psycopg

    # libpq reads the same URL SQLAlchemy does, without SQLAlchemy's driver suffix.
    conninfo = settings.postgres_dsn.get_secret_value().replace("+psycopg://", "://", 1)
    timeout = max(_MIN_CONNECT_SECONDS, math.ceil(settings.connect_timeout_seconds))
    try:
        connection = psycopg.connect(conninfo, connect_timeout=timeout, autocommit=True)
    except psycopg.Error as error:
        raise _postgres_failure(settings, "refused the connection", error) from None
    with connection:
        yield connection


def ensure_schemas(settings: Settings, stores: tuple[PostgresStore, ...] = POSTGRES_STORES) -> None:
    """Create the deployment's schemas of ``stores`` that do not exist yet (once per
    process and deployment), before a library opens its store in one.

    Raises:
        ServiceUnavailable: PostgreSQL cannot be reached, or the user may not create a
            missing schema.
    """
    import psycopg
    from psycopg import sql

    key = (settings.postgres_dsn.get_secret_value(), settings.namespace)
    if key in _prepared:
        return
    wanted = [settings.postgres_schema(store) for store in stores]
    with postgres_connection(settings) as connection:
        found = {
            row[0]
            for row in connection.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s)", [wanted]
            )
        }
        for schema in wanted:
            if schema in found:
                continue
            try:
                # IF NOT EXISTS still races a worker creating the same schema at once.
                connection.execute(
                    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema))
                )
            except psycopg.errors.UniqueViolation:
                pass
            except psycopg.Error as error:
                raise _postgres_failure(
                    settings,
                    f"cannot create schema {schema} (create it, or choose another "
                    f"{env_name('namespace')})",
                    error,
                ) from None
    _prepared.add(key)


class SchemaStatus(NamedTuple):
    """What a store's schema holds and what the login may do with it."""

    exists: bool
    # May create tables in it; while it does not exist, may create it.
    usable: bool
    tables: int


def schema_status(settings: Settings, store: PostgresStore) -> SchemaStatus:
    """Whether ``store``'s schema exists, whether the login can use it, and how many
    tables it holds; it changes nothing.

    Raises:
        ServiceUnavailable: PostgreSQL cannot be reached.
    """
    schema = settings.postgres_schema(store)
    with postgres_connection(settings) as connection:
        row = connection.execute(
            "SELECT has_schema_privilege(n.oid, 'USAGE, CREATE'), "
            "(SELECT count(*) FROM pg_class c WHERE c.relnamespace = n.oid AND c.relkind = 'r') "
            "FROM pg_namespace n WHERE n.nspname = %s",
            [schema],
        ).fetchone()
        if row is not None:
            return SchemaStatus(True, bool(row[0]), int(row[1]))
        may_create = connection.execute(
            "SELECT has_database_privilege(current_database(), 'CREATE')"
        ).fetchone()
    return SchemaStatus(False, bool(may_create and may_create[0]), 0)


def redis_address(settings: Settings) -> str:
    """``redis_url`` without its password, for messages."""
    return redact_url(settings.redis_url.get_secret_value())


def redis_client(settings: Settings) -> redis.Redis:
    """A client of ``redis_url`` that waits at most the connect timeout (it connects on
    its first command)."""
    import redis

    return redis.Redis.from_url(
        settings.redis_url.get_secret_value(),
        socket_connect_timeout=settings.connect_timeout_seconds,
        socket_timeout=settings.connect_timeout_seconds,
    )


def redis_failure(settings: Settings, doing: str, error: BaseException) -> ServiceUnavailable:
    """The one-line error of a Redis command that failed, naming ``redis_url``."""
    return ServiceUnavailable(
        f"Redis at {redis_address(settings)} {doing}: "
        f"{scrub(settings, str(error)) or type(error).__name__} ({env_name('redis_url')})"
    )


def ping_redis(settings: Settings) -> str:
    """The server's version, after a ping.

    Raises:
        ServiceUnavailable: Redis cannot be reached or refuses the login.
    """
    import redis

    client = redis_client(settings)
    try:
        client.ping()
        return str(client.info("server").get("redis_version", "unknown version"))
    except redis.RedisError as error:
        raise redis_failure(settings, "did not answer", error) from None
    finally:
        client.close()


def runs_on_dask(settings: Settings, asked: bool | None) -> bool:
    """Whether a command runs on Dask: as asked, else in the cluster profile."""
    return settings.profile == "cluster" if asked is None else asked


@contextmanager
def dask_client(settings: Settings) -> Iterator[distributed.Client]:
    """A client of the Dask scheduler ``dask_scheduler`` names, or of a local cluster of
    ``dask_workers`` processes (one thread each: LightGBM and numpy inside a task run on
    one core, the workers side by side) made for the body and shut down after it.

    Raises:
        ServiceUnavailable: The scheduler cannot be reached within the connect timeout.
    """
    import distributed

    if settings.dask_scheduler is None:
        with (
            distributed.LocalCluster(
                n_workers=settings.dask_workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                env={"OMP_NUM_THREADS": "1"},
            ) as cluster,
            distributed.Client(cluster) as client,
        ):
            yield client
        return
    try:
        client = distributed.Client(
            settings.dask_scheduler, timeout=settings.connect_timeout_seconds
        )
    except OSError as error:  # distributed's TimeoutError and refused connections
        raise ServiceUnavailable(
            f"Dask scheduler at {settings.dask_scheduler} did not answer: "
            f"{scrub(settings, str(error)) or type(error).__name__} ({env_name('dask_scheduler')})"
        ) from None
    with client:
        yield client
