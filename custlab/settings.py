"""The one settings object every room reads.

Values come from the environment (prefix ``CUSTLAB_``) or from keyword arguments; no other
module reads the environment. Constructing a ``Settings`` creates nothing on disk: folders
are made by the stage that writes into them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

Profile = Literal["local", "cluster"]


class Settings(BaseSettings):
    """Where custlab keeps its state and which backends it talks to.

    The ``local`` profile keeps everything under ``home``, so deleting that folder is a
    clean slate. The ``cluster`` profile moves stores to PostgreSQL and Redis.
    """

    model_config = SettingsConfigDict(env_prefix="CUSTLAB_", extra="forbid", frozen=True)

    profile: Profile = "local"
    home: Path = Field(Path(".custlab"), description="Folder for everything custlab writes.")
    seed: int = Field(7, ge=0, description="Seed for the simulator, splits and samplers.")
    pseudonym_key: SecretStr | None = Field(
        None, description="HMAC key for pseudonymizing ids and PII; never logged."
    )
    postgres_dsn: str = "postgresql://postgres@127.0.0.1:5432/test"
    redis_url: str = "redis://127.0.0.1:6379/0"
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

    @property
    def mlflow_tracking_uri(self) -> str:
        if self.profile == "cluster":
            return self.postgres_dsn.replace("postgresql://", "postgresql+psycopg://", 1)
        return f"sqlite:///{(self.home / 'mlflow.db').resolve()}"

    @property
    def mlflow_artifact_root(self) -> Path:
        return (self.home / "mlartifacts").resolve()

    @property
    def optuna_storage(self) -> str:
        if self.profile == "cluster":
            return self.postgres_dsn.replace("postgresql://", "postgresql+psycopg://", 1)
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
