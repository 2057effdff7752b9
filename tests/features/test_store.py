"""The real Feast store of the local profile: DuckDB offline, custlab's SQLite online store."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from custlab.settings import Settings
from features.families import FAMILIES
from features.simulate import World
from features.snapshots import build_snapshots
from features.store import (
    MANIFEST,
    OnlineReader,
    feature_refs,
    historical_features,
    publish_snapshots,
    published_families,
    read_features,
)

pytestmark = pytest.mark.integration
KEYS = ["customer_id", "event_timestamp"]


@pytest.fixture(scope="module")
def published(small_world: World, tmp_path_factory: pytest.TempPathFactory):
    settings = Settings(home=tmp_path_factory.mktemp("store"))
    snapshots = build_snapshots(small_world.tables())
    return settings, snapshots, publish_snapshots(settings, snapshots)


def _wide(snapshots: dict[str, pd.DataFrame]) -> pd.DataFrame:
    frames = iter(snapshots.values())
    wide = next(frames)
    for frame in frames:
        wide = wide.merge(frame, on=KEYS)
    return wide


def _assert_same(actual: pd.DataFrame, expected: pd.DataFrame, names: list[str]) -> None:
    for name in names:
        kind = next(f.kind for fam in FAMILIES.values() for f in fam.features if f.name == name)
        if kind == "number":
            np.testing.assert_allclose(
                actual[name].to_numpy(dtype=float),
                expected[name].to_numpy(dtype=float),
                rtol=1e-6,
                err_msg=name,
            )
        else:
            got = actual[name].astype(object).where(actual[name].notna(), None).tolist()
            want = expected[name].astype(object).where(expected[name].notna(), None).tolist()
            assert got == want, name


def test_every_family_is_published(published):
    settings, snapshots, _ = published
    assert published_families(settings) == list(FAMILIES) == list(snapshots)


def test_historical_join_is_point_in_time_across_views_and_keeps_row_order(published):
    _, snapshots, store = published
    wide = _wide(snapshots)
    dates = sorted(wide["event_timestamp"].unique())
    sample = wide[wide["event_timestamp"].isin(dates[-20:-10])].sample(300, random_state=1)
    refs = feature_refs(store, "churn_v1", list(FAMILIES))
    names = [ref.split(":")[1] for ref in refs]
    # An entity row three days after a snapshot still gets that snapshot (within the ttl).
    entity = sample[KEYS].assign(
        event_timestamp=lambda f: f["event_timestamp"] + pd.Timedelta(days=3), tag=np.arange(300)
    )
    joined = historical_features(store, entity, refs)
    assert joined["tag"].tolist() == list(range(300))
    _assert_same(joined, sample, names)


def test_rows_without_a_snapshot_in_ttl_come_back_empty(published):
    _, snapshots, store = published
    orders = snapshots["orders"]
    first = orders["event_timestamp"].min()
    entity = pd.DataFrame(
        {
            "customer_id": ["nobody", orders["customer_id"].iloc[0]],
            "event_timestamp": [first, first - pd.Timedelta(days=1)],
        }
    )
    joined = historical_features(store, entity, ["customer_orders:orders_total"])
    assert len(joined) == 2 and joined["orders_total"].isna().all()


def test_online_store_holds_the_newest_snapshot_of_every_view(published):
    _, snapshots, store = published
    wide = _wide(snapshots)
    latest = wide[wide["event_timestamp"] == wide["event_timestamp"].max()].head(5)
    refs = feature_refs(store, "churn_v1", list(FAMILIES))
    names = [ref.split(":")[1] for ref in refs]
    online = OnlineReader(store, refs).read([*latest["customer_id"], "nobody"])
    _assert_same(online.features.head(5), latest.reset_index(drop=True), names)
    assert online.known.tolist() == [True] * 5 + [False]
    assert online.features.iloc[5].isna().all()
    assert (online.stale_days == 0).all()


def test_a_row_past_its_views_ttl_is_flagged_stale(published):
    _, snapshots, store = published
    orders = snapshots["orders"]
    latest = orders[orders["event_timestamp"] == orders["event_timestamp"].max()]
    # A customer whose last refresh was five weeks before the newest materialization.
    old = latest.head(1).assign(
        customer_id="missed-refreshes",
        event_timestamp=latest["event_timestamp"].max() - pd.Timedelta(days=35),
    )
    view = store.get_feature_view("customer_orders")
    store._get_provider().online_store.write_frame(store.config, view, old)
    online = OnlineReader(store, ["customer_orders:orders_total"]).read(
        ["missed-refreshes", latest["customer_id"].iloc[1]]
    )
    # 35 days old against a 14-day ttl: 21 days past it.
    assert online.known.all()
    assert online.stale_days.tolist() == pytest.approx([21.0, 0.0])


def test_offline_rows_for_batch_scoring_match_the_snapshots(published):
    settings, snapshots, _ = published
    wide = _wide(snapshots)
    last = wide["event_timestamp"].max()
    rows = read_features(settings, ["recency_days", "events_4w", "region"], [last])
    expected = wide[wide["event_timestamp"] == last].reset_index(drop=True)
    _assert_same(rows, expected, ["recency_days", "events_4w", "region"])


def test_an_orders_only_source_replaces_every_other_family(small_world: World, tmp_path: Path):
    settings = Settings(home=tmp_path)
    publish_snapshots(settings, build_snapshots(small_world.tables()))
    store = publish_snapshots(settings, build_snapshots({"orders": small_world.orders}))
    assert published_families(settings) == ["orders", "segments"]
    offline = sorted(p.name for p in (tmp_path / "offline").glob("*.parquet"))
    assert offline == ["orders.parquet", "segments.parquet"]
    refs = feature_refs(store, "churn_v1", published_families(settings))
    assert {ref.split(":")[0] for ref in refs} == {"customer_orders", "customer_segments"}
    # Nothing of the earlier source answers online.
    online = OnlineReader(store, ["customer_engagement:events_4w"]).read(["C0000001"])
    assert not online.known.any()


def test_store_files_live_under_the_home(published):
    settings, _, _ = published
    home = Path(settings.home)
    assert (home / "feast" / "registry.db").exists() and (home / "feast" / "online.db").exists()
    assert (home / "offline" / MANIFEST).exists()
    assert {p.name for p in (home / "offline").glob("*.parquet")} == {
        f.table_file for f in FAMILIES.values()
    }


def test_feasts_dask_offline_store_joins_what_duckdb_joins(published):
    """The cluster profile reads the offline tables with Feast's Dask-backed store; the
    local one with DuckDB. Both joins give every service the same frame."""
    from feast import FeatureStore
    from feast.repo_config import RepoConfig

    from features.store import open_store, repo_config

    settings, snapshots, _ = published
    duckdb = open_store(settings)
    fields = repo_config(settings).model_dump(by_alias=True, exclude={"repo_path"})
    on_dask = RepoConfig(**(fields | {"offline_store": {"type": "dask"}}))
    assert type(on_dask.offline_store).__name__ == "DaskOfflineStoreConfig"
    dask = FeatureStore(config=on_dask, repo_path=str(settings.offline_dir.resolve()))
    keys = snapshots["orders"][KEYS].sample(3_000, random_state=0).reset_index(drop=True)
    # A moment between snapshots and one before any: the as-of rule and the ttl decide.
    keys.loc[0, "event_timestamp"] += pd.Timedelta(days=3)
    keys.loc[1, "event_timestamp"] -= pd.Timedelta(days=3_000)
    for service in ("churn_v1", "propensity_v1", "clv_v1", "lifecycle_v1"):
        refs = feature_refs(duckdb, service)
        expected = historical_features(duckdb, keys, refs)
        joined = historical_features(dask, keys, refs)[expected.columns]
        # Missing categories come back as None from one store, <NA> from the other.
        text = [c for c in expected.columns if not pd.api.types.is_numeric_dtype(expected[c])]
        text = [c for c in text if c != "event_timestamp"]
        pd.testing.assert_frame_equal(
            joined.astype(dict.fromkeys(text, "string")),
            expected.astype(dict.fromkeys(text, "string")),
            check_dtype=False,
            obj=service,
        )
