"""The settings object: where each address and secret comes from, what it refuses, and
the store URIs each profile derives from it."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from pydantic_settings import SettingsError

from custlab.settings import Settings, redact_url


def test_the_local_profile_keeps_every_store_under_the_home(tmp_path: Path):
    settings = Settings(home=tmp_path)
    assert settings.mlflow_tracking_uri == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert settings.optuna_storage == f"sqlite:///{tmp_path.resolve()}/optuna.db"
    assert settings.mlflow_artifact_root == (tmp_path / "mlartifacts").resolve().as_uri()


def test_the_cluster_profile_puts_each_store_in_its_namespace_schema():
    settings = Settings(
        profile="cluster",
        namespace="shop_eu",
        postgres_dsn="postgres://ml:p%40ss@db.internal:6432/analytics?sslmode=require"
        "&options=-c%20statement_timeout%3D60000",
    )
    mlflow_uri = settings.mlflow_tracking_uri
    assert mlflow_uri.startswith("postgresql+psycopg://ml:p%40ss@db.internal:6432/analytics?")
    # The DSN's own options are kept, the store's schema is added after them.
    from sqlalchemy.engine import make_url

    for store, uri in (("mlflow", mlflow_uri), ("optuna", settings.optuna_storage)):
        query = make_url(uri).query
        assert query["sslmode"] == "require"
        assert query["options"] == f"-c statement_timeout=60000 -c search_path=shop_eu_{store}"
    assert settings.postgres_schema("feast") == "shop_eu_feast"
    assert settings.redis_prefix == "shop_eu:"
    assert redact_url(mlflow_uri).startswith("postgresql+psycopg://ml:***@db.internal:6432/")


@pytest.mark.parametrize(
    ("root", "expected"),
    [
        ("s3://bucket/custlab/", "s3://bucket/custlab"),
        ("/shared/mlartifacts", "file:///shared/mlartifacts"),
    ],
)
def test_the_artifact_root_is_a_uri(root: str, expected: str):
    assert Settings(artifact_root=root).mlflow_artifact_root == expected


def test_secrets_come_from_files_in_the_secrets_folder(tmp_path: Path, monkeypatch):
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "custlab_postgres_dsn").write_text("postgresql://ml:from-file@db:5432/prod\n")
    (secrets / "custlab_redis_url").write_text("redis://:also-from-file@cache:6379/1")
    monkeypatch.setenv("CUSTLAB_SECRETS_DIR", str(secrets))
    settings = Settings()
    assert settings.postgres_dsn.get_secret_value() == "postgresql://ml:from-file@db:5432/prod"
    assert settings.redis_url.get_secret_value() == "redis://:also-from-file@cache:6379/1"
    # The environment overrides a file; neither shows in the settings' repr.
    monkeypatch.setenv("CUSTLAB_REDIS_URL", "redis://cache-2:6379/0")
    settings = Settings()
    assert settings.redis_url.get_secret_value() == "redis://cache-2:6379/0"
    assert "from-file" not in repr(settings) and "from-file" not in str(settings)


def test_a_secrets_folder_that_is_not_there_is_refused(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("CUSTLAB_SECRETS_DIR", str(tmp_path / "missing"))
    with pytest.raises(SettingsError, match="CUSTLAB_SECRETS_DIR: .*missing is not a folder"):
        Settings()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("namespace", "Shop"),
        ("namespace", "1shop"),
        ("namespace", "shop-eu"),
        ("namespace", "x" * 41),
        ("postgres_dsn", "mysql://ml:refused-secret@db/analytics"),
        ("postgres_dsn", "postgresql://ml:refused-secret@db:port/analytics"),
        ("redis_url", "http://:refused-secret@cache:6379"),
        ("connect_timeout_seconds", 0),
        ("dask_scheduler", "scheduler:8786 refused-secret"),
        ("dask_workers", 0),
    ],
)
def test_a_value_out_of_bounds_is_refused_without_echoing_it(field: str, value: object):
    with pytest.raises(ValidationError) as refused:
        Settings(**{field: value})
    assert field in str(refused.value)
    assert "refused-secret" not in str(refused.value)
