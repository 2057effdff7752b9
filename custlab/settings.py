"""The one settings object every room reads.

Values come from keyword arguments, the environment (prefix ``CUSTLAB_``), then secret
files; no other module reads the environment. A secret file holds one setting, is named
like its variable (``custlab_postgres_dsn``: the Docker and Kubernetes secrets
convention) and lives in the folder ``CUSTLAB_SECRETS_DIR`` names. Constructing a
``Settings`` creates nothing on disk or on a server: folders are made by the stage that
writes into them, PostgreSQL schemas by the first store opened in them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

Profile = Literal["local", "cluster"]
# The cluster profile's stores on PostgreSQL, each in a schema of its own: MLflow and
# Optuna both keep their migration state in a table named alembic_version.
PostgresStore = Literal["mlflow", "optuna", "feast"]
POSTGRES_STORES: tuple[PostgresStore, ...] = ("mlflow", "optuna", "feast")
ENV_PREFIX = "CUSTLAB_"
SECRETS_DIR_VARIABLE = f"{ENV_PREFIX}SECRETS_DIR"


def env_name(field: str) -> str:
    """The environment variable (and secret file) that sets ``field``."""
    return f"{ENV_PREFIX}{field.upper()}"


def redact_url(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***``: safe to print."""
    return re.sub(r"(//[^/@:]*:)[^/@]*@", r"\1***@", url)


class Settings(BaseSettings):
    """Where custlab keeps its state and which backends it talks to.

    The ``local`` profile keeps everything under ``home``, so deleting that folder is a
    clean slate. The ``cluster`` profile moves the stores to PostgreSQL and Redis, in the
    schemas and keys of its ``namespace``, so several deployments (or test runs) share
    one server without seeing each other.
    """

    # A refused value is not echoed: it may be a password.
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", frozen=True, hide_input_in_errors=True
    )

    profile: Profile = "local"
    home: Path = Field(Path(".custlab"), description="Folder for everything custlab writes.")
    seed: int = Field(7, ge=0, description="Seed for the simulator, splits and samplers.")
    pseudonym_key: SecretStr | None = Field(
        None, description="HMAC key for pseudonymizing ids and PII; never logged."
    )
    secrets_dir: Path | None = Field(
        None, description="Folder of secret files, one a setting, named like its variable."
    )
    postgres_dsn: SecretStr = Field(
        SecretStr("postgresql://postgres@127.0.0.1:5432/test"),
        description="PostgreSQL URL of the cluster profile's stores "
        "(postgresql://user:password@host:port/database?sslmode=...); never logged.",
    )
    redis_url: SecretStr = Field(
        SecretStr("redis://127.0.0.1:6379/0"),
        description="Redis URL of the cluster profile's online store; never logged.",
    )
    namespace: str = Field(
        "custlab",
        pattern=r"^[a-z][a-z0-9_]{0,39}$",
        description="This deployment's name on shared servers: PostgreSQL schemas "
        "<namespace>_mlflow, _optuna, _feast and Redis keys <namespace>:...",
    )
    artifact_root: str | None = Field(
        None,
        description="Where MLflow stores artifacts: a folder or a URI every worker reaches "
        "(file:///shared/..., s3://...); default <home>/mlartifacts.",
    )
    dask_scheduler: str | None = Field(
        None,
        pattern=r"^(tcp|tls|inproc|ucx)://\S+$",
        description="The Dask scheduler feature building and batch scoring run on "
        "(tcp://host:8786); none: a local cluster of dask_workers processes.",
    )
    dask_workers: int = Field(
        2, ge=1, le=256, description="Worker processes of the local Dask cluster."
    )
    dask_shard_customers: int = Field(
        250_000,
        ge=1,
        description="Feature building on Dask: at most this many customers a task (each "
        "task holds its customers' raw rows).",
    )
    dask_train_rows: int = Field(
        5_000_000,
        ge=1,
        description="The cluster profile fits a final model of more rows than this with "
        "lightgbm.dask on the Dask cluster.",
    )
    connect_timeout_seconds: float = Field(
        5.0, gt=0, le=300, description="How long to wait for PostgreSQL or Redis to answer."
    )
    serve_host: str = "127.0.0.1"
    serve_port: int = Field(3000, ge=1, le=65535)
    api_keys: SecretStr | None = Field(
        None, description="Service API keys, name:scope[+scope]:secret, comma-separated."
    )
    api_keys_file: Path | None = Field(None, description="A file of API keys, one a line.")
    champion_check_seconds: float = Field(
        5.0, ge=0, description="How often the service looks for moved champions (0: never)."
    )
    prediction_log_days: int = Field(90, ge=1, description="Days of prediction log kept.")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keyword arguments, then the environment, then the secrets folder's files."""
        init_kwargs: dict[str, Any] = getattr(init_settings, "init_kwargs", {})
        folder = init_kwargs.get("secrets_dir") or os.environ.get(SECRETS_DIR_VARIABLE)
        if not folder:
            return init_settings, env_settings
        if not Path(folder).is_dir():
            # A deployment that names a secrets folder it lacks would otherwise run on
            # the defaults (a local server) without a word.
            raise SettingsError(f"{SECRETS_DIR_VARIABLE}: {folder} is not a folder")
        return init_settings, env_settings, SecretsSettingsSource(settings_cls, folder)

    @field_validator("postgres_dsn")
    @classmethod
    def _postgres_url(cls, value: SecretStr) -> SecretStr:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        text = value.get_secret_value()
        scheme = text.split("://", 1)[0]
        if scheme not in {"postgresql", "postgres", "postgresql+psycopg"}:
            raise ValueError(f"a postgresql://user@host:port/database URL, not {scheme}://...")
        try:
            make_url(text)
        except (ArgumentError, ValueError):
            raise ValueError("not a postgresql://user@host:port/database URL") from None
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: SecretStr) -> SecretStr:
        scheme = value.get_secret_value().split("://", 1)[0]
        if scheme not in {"redis", "rediss", "unix"}:
            raise ValueError(f"a redis://host:port/db URL, not {scheme}://...")
        return value

    @property
    def raw_dir(self) -> Path:
        """Raw customer tables (the data contract), as simulated or ingested."""
        return self.home / "raw"

    @property
    def offline_dir(self) -> Path:
        """Parquet tables the Feast offline store reads."""
        return self.home / "offline"

    @property
    def feast_dir(self) -> Path:
        """Feast registry and the SQLite online store."""
        return self.home / "feast"

    def postgres_schema(self, store: PostgresStore) -> str:
        """The schema one of the cluster profile's stores keeps its tables in."""
        return f"{self.namespace}_{store}"

    def postgres_url(self, store: PostgresStore | None = None) -> str:
        """The SQLAlchemy URL (psycopg 3 driver) of ``postgres_dsn``; with ``store``, its
        connections see that store's schema alone (libpq ``options=-c search_path``).

        It holds the password: hand it to the libraries, print :func:`redact_url` of it.
        """
        from sqlalchemy.engine import make_url

        url = make_url(self.postgres_dsn.get_secret_value()).set(drivername="postgresql+psycopg")
        if store is not None:
            # Only that schema, not public too: a store never creates tables elsewhere.
            path = f"-c search_path={self.postgres_schema(store)}"
            options = " ".join(filter(None, [url.query.get("options"), path]))
            url = url.update_query_dict({"options": options})
        return url.render_as_string(hide_password=False)

    @property
    def redis_prefix(self) -> str:
        """The prefix of every Redis key this deployment writes."""
        return f"{self.namespace}:"

    @property
    def mlflow_tracking_uri(self) -> str:
        if self.profile == "cluster":
            return self.postgres_url("mlflow")
        return f"sqlite:///{(self.home / 'mlflow.db').resolve()}"

    @property
    def mlflow_artifact_root(self) -> str:
        """The URI experiments keep their artifacts under."""
        if self.artifact_root is None:
            return (self.home / "mlartifacts").resolve().as_uri()
        if "://" in self.artifact_root:
            return self.artifact_root.rstrip("/")
        return Path(self.artifact_root).resolve().as_uri()

    @property
    def optuna_storage(self) -> str:
        if self.profile == "cluster":
            return self.postgres_url("optuna")
        return f"sqlite:///{(self.home / 'optuna.db').resolve()}"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    @property
    def scores_dir(self) -> Path:
        """Batch scores, a folder per snapshot date."""
        return self.home / "scores"

    @property
    def prediction_log_dir(self) -> Path:
        return self.home / "predictions"

    @property
    def audit_log_dir(self) -> Path:
        return self.home / "audit"
