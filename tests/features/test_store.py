"""The real Feast store of the local profile: DuckDB offline, SQLite online."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from custlab.settings import Settings
from features.simulate import World
from features.snapshots import FEATURE_NAMES, build_snapshots
from features.store import historical_features, online_features, publish_snapshots

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def published(small_world: World, tmp_path_factory: pytest.TempPathFactory):
    settings = Settings(home=tmp_path_factory.mktemp("store"))
    snapshots = build_snapshots(small_world.orders, small_world.customers)
    return settings, snapshots, publish_snapshots(settings, snapshots)


def test_historical_join_is_point_in_time_and_keeps_row_order(published):
    _, snapshots, store = published
    dates = sorted(snapshots["event_timestamp"].unique())
    sample = snapshots[snapshots["event_timestamp"].isin(dates[-20:-10])].sample(
        300, random_state=1
    )
    # An entity row three days after a snapshot still gets that snapshot (within the ttl).
    entity = sample[["customer_id", "event_timestamp"]].assign(
        event_timestamp=lambda f: f["event_timestamp"] + pd.Timedelta(days=3), tag=np.arange(300)
    )
    joined = historical_features(store, entity, "churn_v1")
    assert joined["tag"].tolist() == list(range(300))
    np.testing.assert_allclose(
        joined[list(FEATURE_NAMES)].to_numpy(dtype=float),
        sample[list(FEATURE_NAMES)].to_numpy(dtype=float),
        rtol=1e-6,
    )


def test_rows_without_a_snapshot_in_ttl_come_back_empty(published):
    _, snapshots, store = published
    first = snapshots["event_timestamp"].min()
    entity = pd.DataFrame(
        {
            "customer_id": ["nobody", snapshots["customer_id"].iloc[0]],
            "event_timestamp": [first, first - pd.Timedelta(days=1)],
        }
    )
    joined = historical_features(store, entity, "churn_v1")
    assert len(joined) == 2 and joined["orders_total"].isna().all()


def test_online_store_holds_the_newest_snapshot(published):
    _, snapshots, store = published
    latest = snapshots[snapshots["event_timestamp"] == snapshots["event_timestamp"].max()]
    ids = latest["customer_id"].iloc[:5].tolist() + ["nobody"]
    rows, stamps = online_features(store, store.get_feature_service("churn_v1"), ids)
    np.testing.assert_allclose(
        rows[list(FEATURE_NAMES)].iloc[:5].to_numpy(dtype=float),
        latest[list(FEATURE_NAMES)].iloc[:5].to_numpy(dtype=float),
        rtol=1e-6,
    )
    assert rows.iloc[5].isna().all() and stamps[5] == 0
    assert (stamps[:5] == latest["event_timestamp"].iloc[0].timestamp()).all()


def test_store_files_live_under_the_home(published):
    settings, _, _ = published
    home = Path(settings.home)
    assert (home / "feast" / "registry.db").exists() and (home / "feast" / "online.db").exists()
    assert (home / "offline" / "customer_snapshots.parquet").exists()
