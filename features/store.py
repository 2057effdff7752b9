"""The Feast feature store of the active profile: publishing snapshots, reading training
frames (offline, point in time) and serving rows (online).

The config comes from ``feature_repo/feature_store.yaml`` with its placeholders filled
from :class:`custlab.settings.Settings`; Feast never reads the environment on its own.
"""

from __future__ import annotations

import contextlib
import io
import logging
import string
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from feast import Entity, FeatureService, FeatureStore, FeatureView, FileSource, RepoConfig

import feature_repo
from custlab.settings import Settings
from feature_repo import definitions
from features.contract import ENTITY_KEY, EVENT_TIMESTAMP
from features.errors import CustlabError
from features.tables import write_parquet_atomic

logger = logging.getLogger(__name__)

SNAPSHOTS_TABLE = "customer_snapshots.parquet"
_ROW = "__row"


def repo_config(settings: Settings) -> RepoConfig:
    """Read the profile's ``feature_store.yaml`` and fill its placeholders from settings."""
    name = (
        "feature_store.yaml"
        if settings.profile == "local"
        else f"feature_store.{settings.profile}.yaml"
    )
    template = (Path(feature_repo.__file__).parent / name).read_text()
    text = string.Template(template).substitute(
        CUSTLAB_FEAST_DIR=str(settings.feast_dir.resolve()),
        CUSTLAB_OFFLINE_DIR=str(settings.offline_dir.resolve()),
        CUSTLAB_POSTGRES_DSN=settings.postgres_dsn,
        CUSTLAB_REDIS_URL=settings.redis_url,
    )
    config = RepoConfig(**yaml.safe_load(text))
    config.repo_path = settings.offline_dir.resolve()
    return config


def open_store(settings: Settings) -> FeatureStore:
    """The profile's feature store (creates its folder, nothing else)."""
    settings.feast_dir.mkdir(parents=True, exist_ok=True)
    config = repo_config(settings)
    return FeatureStore(config=config, repo_path=str(config.repo_path))


def _definitions(offline_dir: Path) -> list[object]:
    """The repo's objects, with source paths bound to ``offline_dir``.

    The DuckDB offline store reads a source path as given, so the registry must hold the
    absolute one.
    """
    objects = [
        value
        for value in vars(definitions).values()
        if isinstance(value, (Entity, FeatureView, FeatureService, FileSource))
    ]
    for obj in objects:
        source = obj.batch_source if isinstance(obj, FeatureView) else obj
        # The definitions are module-level objects shared by every store in the process:
        # bind by file name, so a second home never inherits the first one's path.
        if isinstance(source, FileSource):
            source.file_options.uri = str(offline_dir.resolve() / Path(source.path).name)
    return objects


def publish_snapshots(settings: Settings, snapshots: pd.DataFrame) -> FeatureStore:
    """Write snapshots as the offline table, apply the repo and load the newest snapshot of
    every customer into the online store.

    Raises:
        CustlabError: ``snapshots`` is empty.
    """
    if snapshots.empty:
        raise CustlabError("no feature snapshots to publish: the order history is empty")
    write_parquet_atomic(snapshots, settings.offline_dir / SNAPSHOTS_TABLE)
    store = open_store(settings)
    store.apply(_definitions(settings.offline_dir))
    latest = snapshots[EVENT_TIMESTAMP].max()
    # Only the newest weekly snapshot goes online: serving answers "as of now". Feast
    # prints its own coloured progress; custlab's log line below says the same.
    with contextlib.redirect_stdout(io.StringIO()):
        store.materialize(
            start_date=(latest - timedelta(days=1)).to_pydatetime(),
            end_date=(latest + timedelta(seconds=1)).to_pydatetime(),
        )
    logger.info("published %d snapshot rows; online as of %s", len(snapshots), latest)
    return store


def historical_features(store: FeatureStore, entity_df: pd.DataFrame, service: str) -> pd.DataFrame:
    """Point-in-time join of a feature service onto ``entity_df`` (customer_id,
    event_timestamp, anything else passes through), in the input's row order.

    Every input row comes back; a customer without a snapshot in the view's ttl gets
    empty features.
    """
    missing = {ENTITY_KEY, EVENT_TIMESTAMP} - set(entity_df.columns)
    if missing:
        raise CustlabError(f"entity frame lacks column(s) {', '.join(sorted(missing))}")
    keyed = entity_df.assign(**{_ROW: np.arange(len(entity_df))})
    joined = store.get_historical_features(
        entity_df=keyed, features=store.get_feature_service(service)
    ).to_df()
    passthrough = set(keyed.columns) - {_ROW}
    features = joined.drop(columns=[c for c in joined.columns if c in passthrough])
    out = keyed.merge(features, on=_ROW, how="left").sort_values(_ROW)
    return out.drop(columns=_ROW).reset_index(drop=True)


def service_features(service: FeatureService) -> list[str]:
    """The feature names a feature service delivers, in definition order."""
    return [f.name for view in service.feature_view_projections for f in view.features]


def read_snapshots(settings: Settings, columns: list[str] | None = None) -> pd.DataFrame:
    """The offline snapshot table as last published (only ``columns``, when given).

    Raises:
        CustlabError: Nothing has been published yet.
    """
    path = settings.offline_dir / SNAPSHOTS_TABLE
    if not path.exists():
        raise CustlabError(f"no feature snapshots at {path}; run 'custlab features' first")
    return pd.read_parquet(path, columns=columns)


def online_features(
    store: FeatureStore, service: FeatureService, customer_ids: list[str]
) -> tuple[pd.DataFrame, np.ndarray]:
    """Latest features of a feature service for ``customer_ids``, in their order.

    Returns:
        The feature frame (NaN where unknown) and, per customer, the event timestamp of
        its newest feature row in epoch seconds (0 for a customer the store has never
        seen).
    """
    response = store.get_online_features(
        features=service, entity_rows=[{ENTITY_KEY: c} for c in customer_ids]
    ).to_dict(include_event_timestamps=True)
    names = service_features(service)
    values = np.array([response[name] for name in names], dtype=np.float64).T
    stamps = np.array([response[f"{name}__ts"] for name in names], dtype=np.float64).max(axis=0)
    return pd.DataFrame(values, columns=names), stamps
