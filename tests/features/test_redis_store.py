"""custlab's Redis online store (the cluster profile's) against the real server on
127.0.0.1:6379, through Feast itself and through its frame methods: the same answers as
the SQLite store and Feast's stock one, the newest row wins, views added, changed and
deleted later, bad frames refused whole, keys under the deployment's prefix alone.

Each test writes under a key prefix of its own and deletes its keys after. Without the
server the tests fail where ``CI`` is set (CI has it) and skip elsewhere, naming it.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pydantic
import pytest
import redis
from feast import FeatureView, Field, RepoConfig
from feast.types import Bool, Float32, Float64, Int64, String

from features.redis_store import CustomerRedisOnlineStore, CustomerRedisOnlineStoreConfig
from tests.features.test_online_store import (
    BAD_FRAMES,
    IDS,
    T1,
    Repo,
    definitions,
    f32,
    materialize,
    offline_table,
    online,
    open_repo,
)

pytestmark = [pytest.mark.integration, pytest.mark.services]

STORE_TYPE = "features.redis_store.CustomerRedisOnlineStore"
URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def server() -> redis.Redis:
    client = redis.Redis.from_url(URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as error:
        reason = f"Redis at {URL} does not answer ({error})"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI has this server, so this is a failure", pytrace=False)
        pytest.skip(reason)
    return client


@pytest.fixture
def prefix(server: redis.Redis) -> Iterator[str]:
    prefix = f"custlab-test-{uuid.uuid4().hex[:12]}:"
    yield prefix
    for key in server.scan_iter(match=f"{prefix}*"):
        server.delete(key)


def redis_repo(home: Path, prefix: str) -> Repo:
    return open_repo(home, {"type": STORE_TYPE, "url": URL, "key_prefix": prefix}, offline_table())


@pytest.fixture
def repo(tmp_path: Path, prefix: str) -> Repo:
    return redis_repo(tmp_path, prefix)


def keys(server: redis.Redis, prefix: str) -> set[str]:
    return {key.decode() for key in server.scan_iter(match=f"{prefix}*")}


def test_feast_finds_the_store_from_its_type(repo: Repo):
    assert isinstance(repo.config.online_store, CustomerRedisOnlineStoreConfig)
    assert isinstance(repo.store._get_provider().online_store, CustomerRedisOnlineStore)


@pytest.mark.parametrize("bad", [{"url": 3}, {"key_prefix": "x", "bogus": 1}])
def test_config_refuses_what_it_does_not_know(bad: dict):
    with pytest.raises(pydantic.ValidationError):
        CustomerRedisOnlineStoreConfig(**bad)


def test_feast_materialize_then_get_online_features_returns_the_newest_rows(
    repo: Repo, server: redis.Redis, prefix: str
):
    materialize(repo)
    got = online(repo, [*IDS, "nobody"])
    stamp = int(T1.timestamp())
    assert got["spend_90d"] == [f32(10.1), None, f32(30.3), None]
    assert got["orders_90d"] == [4.0, 5.0, None, None]
    assert got["segment"] == ["gold", None, "silver", None]
    assert got["channel"] == ["web", "app", "é-mail", None]
    for name in ("spend_90d", "segment", "channel"):
        assert got[f"{name}__ts"] == [stamp, stamp, stamp, 0]
    # One hash per customer, holding every view; the layouts and the count of changes
    # beside them.
    expected = {f"{prefix}custlab_test:customer:{c}" for c in IDS}
    beside = {f"{prefix}custlab_test:{name}" for name in ("layout", "generation")}
    assert keys(server, prefix) == expected | beside
    fields = {f.decode() for f in server.hkeys(f"{prefix}custlab_test:customer:c2")}
    assert fields == {
        "orders:event_ts", "orders:created_ts", "orders:numbers",  # segment is null: absent
        "web:event_ts", "web:created_ts", "web:numbers", "web.channel",
    }  # fmt: skip


def test_the_sdk_answers_as_with_the_sqlite_store_and_feasts_stock_one(repo: Repo, tmp_path: Path):
    custlab_sqlite = tmp_path / "sqlite"
    sqlite = open_repo(
        custlab_sqlite,
        {"type": "features.online_store.CustomerOnlineStore", "path": str(custlab_sqlite / "o.db")},
        repo.offline,
    )
    stock_home = tmp_path / "stock"
    stock = open_repo(
        stock_home, {"type": "sqlite", "path": str(stock_home / "online.db")}, repo.offline
    )
    for each in (repo, sqlite, stock):
        materialize(each)
    ids = ["c3", "nobody", "c1", "c3", "c2"]
    assert online(repo, ids) == online(stock, ids) == online(sqlite, ids)


def test_read_frames_reads_several_views_in_order_with_unknowns_empty(repo: Repo):
    store = CustomerRedisOnlineStore()
    store.write_frame(repo.config, repo.orders, repo.offline.iloc[3:])
    store.write_frame(repo.config, repo.web, repo.offline.iloc[[0]])  # c1 only, at T0
    ids = ["c2", "nobody", "c1", "c2"]
    values, stamps = store.read_frames(
        repo.config, [repo.web, repo.orders], ids, {"orders": ["segment", "orders_90d"]}
    )
    assert list(values.columns) == ["sessions_7d", "channel", "segment", "orders_90d"]
    assert values.dtypes.tolist() == [np.float64, object, object, np.float64]
    assert values["sessions_7d"].fillna(-1).tolist() == [-1, -1, 0.0, -1]
    assert values["channel"].tolist() == [None, None, "x", None]
    assert values["segment"].tolist() == [None, None, "gold", None]
    assert values["orders_90d"].fillna(-1).tolist() == [5.0, -1, 4.0, 5.0]
    assert np.isnan(stamps["web"][[0, 1, 3]]).all()
    assert stamps["orders"][[0, 2, 3]].tolist() == [T1.timestamp()] * 3
    empty, no_stamps = store.read_frame(repo.config, repo.orders, [])
    assert empty.shape == (0, 3) and no_stamps.shape == (0,)
    with pytest.raises(ValueError, match="repeat a feature"):
        store.read_frames(repo.config, [repo.orders, repo.orders], ids)
    with pytest.raises(ValueError, match="strings"):
        store.read_frame(repo.config, repo.orders, [1])
    assert sorted(store.customer_ids(repo.config, 10)) == IDS
    assert len(store.customer_ids(repo.config, 2)) == 2


def test_an_older_row_never_overwrites_a_newer_one_of_the_same_view(repo: Repo):
    store = CustomerRedisOnlineStore()
    newer, older = repo.offline.iloc[3:], repo.offline.iloc[:3]
    store.write_frame(repo.config, repo.orders, newer)
    store.write_frame(repo.config, repo.orders, older)
    repo.store.write_to_online_store("orders", older)  # Feast's own write path too
    values, stamps = store.read_frame(repo.config, repo.orders, IDS)
    assert values["segment"].tolist() == ["gold", None, "silver"]
    assert (stamps == T1.timestamp()).all()
    store.write_frame(repo.config, repo.web, older)  # each view keeps its own time
    assert store.read_frame(repo.config, repo.web, IDS)[0]["channel"].tolist() == ["x"] * 3
    # The same instant again replaces: a corrected re-run must land, a null included.
    store.write_frame(repo.config, repo.orders, newer.assign(segment=["fixed", "fixed", None]))
    got = store.read_frame(repo.config, repo.orders, IDS)[0]["segment"].tolist()
    assert got == ["fixed", "fixed", None]


def test_a_view_added_later_holds_any_number_exactly(repo: Repo, tmp_path: Path):
    store = CustomerRedisOnlineStore()
    objects = definitions(tmp_path / "snapshots.parquet")
    loyalty = FeatureView(
        name="loyalty-v2",
        entities=[objects[0]],
        ttl=timedelta(days=30),
        schema=[
            Field(name="points", dtype=Float64),
            Field(name="visits", dtype=Int64),
            Field(name="member", dtype=Bool),
            Field(name="tier", dtype=String),
        ],
        source=objects[1],
    )
    repo.store.apply([*objects, loyalty])
    frame = pd.DataFrame(
        {
            "customer_id": ["c1", "c2"],
            "event_timestamp": [T1, T1],
            "points": [0.1, None],
            "visits": [2**53, -3],
            "member": [True, None],
            "tier": ["gold", None],
        }
    )
    store.write_frame(repo.config, loyalty, frame)
    later = frame.iloc[[0]].assign(customer_id="c3", event_timestamp=T1 + pd.Timedelta("1us"))
    repo.store.write_to_online_store("loyalty-v2", later.assign(visits=7, member=False))
    got = repo.store.get_online_features(
        features=["loyalty-v2:points", "loyalty-v2:visits", "loyalty-v2:member", "loyalty-v2:tier"],
        entity_rows=[{"customer_id": c} for c in IDS],
    ).to_dict()
    assert got["points"] == [0.1, None, 0.1] and got["visits"] == [2**53, -3, 7]
    assert got["member"] == [True, None, False] and got["tier"] == ["gold", None, "gold"]
    _, stamps = store.read_frame(repo.config, loyalty, IDS)
    assert stamps[2] - stamps[0] == pytest.approx(1e-6, abs=1e-7)  # microseconds kept


def test_a_changed_schema_empties_the_view_until_written_and_never_misreads(
    repo: Repo, tmp_path: Path
):
    store = CustomerRedisOnlineStore()
    store.write_frame(repo.config, repo.orders, repo.offline.iloc[3:])
    store.write_frame(repo.config, repo.web, repo.offline.iloc[3:])
    changed = [Field(name="orders_90d", dtype=Float32), Field(name="segment", dtype=Int64)]
    repo.store.apply(definitions(tmp_path / "snapshots.parquet", changed))
    orders = repo.store.get_feature_view("orders")
    values, stamps = store.read_frame(repo.config, orders, IDS)
    assert values.isna().all().all() and np.isnan(stamps).all()
    assert store.read_frame(repo.config, repo.web, IDS)[0]["channel"].tolist()[0] == "web"
    # The old definition can neither read nor write under the new layout.
    with pytest.raises(ValueError, match="feast apply"):
        store.read_frame(repo.config, repo.orders, IDS)
    with pytest.raises(ValueError, match="feast apply"):
        store.write_frame(repo.config, repo.orders, repo.offline.iloc[3:])
    frame = pd.DataFrame(
        {"customer_id": ["c1"], "event_timestamp": [T1], "orders_90d": [5.0], "segment": [2]}
    )
    store.write_frame(repo.config, orders, frame)
    got = repo.store.get_online_features(
        features=["orders:orders_90d", "orders:segment"], entity_rows=[{"customer_id": "c1"}]
    ).to_dict()
    assert got == {"customer_id": ["c1"], "orders_90d": [5.0], "segment": [2]}


def test_a_deleted_view_loses_its_fields_and_the_others_keep_serving(
    repo: Repo, tmp_path: Path, server: redis.Redis, prefix: str
):
    materialize(repo)
    customer, source, orders, web, service = definitions(tmp_path / "snapshots.parquet")
    repo.store.apply([customer, source, orders], objects_to_delete=[web, service], partial=False)
    fields = {f.decode() for f in server.hkeys(f"{prefix}custlab_test:customer:c1")}
    assert fields == {"orders:event_ts", "orders:created_ts", "orders:numbers", "orders.segment"}
    store = CustomerRedisOnlineStore()
    assert store.read_frame(repo.config, orders, IDS)[0]["segment"].tolist()[0] == "gold"
    with pytest.raises(ValueError, match="feast apply"):
        store.read_frame(repo.config, web, IDS)


@pytest.mark.parametrize(("change", "column"), BAD_FRAMES)
def test_a_bad_frame_names_its_column_and_writes_nothing(repo: Repo, change, column: str):
    store = CustomerRedisOnlineStore()
    with pytest.raises(ValueError, match=column):
        store.write_frame(repo.config, repo.orders, change(repo.offline.iloc[3:]))
    _, stamps = store.read_frame(repo.config, repo.orders, IDS)
    assert np.isnan(stamps).all()


def test_teardown_deletes_the_projects_keys_and_no_one_elses(
    repo: Repo, tmp_path: Path, server: redis.Redis, prefix: str
):
    other = redis_repo(tmp_path / "other", prefix.replace("test-", "test-other-"))
    try:
        materialize(repo)
        materialize(other)
        repo.store.teardown()
        assert keys(server, prefix) == {f"{prefix}custlab_test:generation"}  # still counting
        assert online(other, ["c1"])["segment"] == ["gold"]
    finally:
        other.store.teardown()


def test_an_unreachable_server_fails_within_the_timeout(tmp_path: Path, prefix: str):
    repo = redis_repo(tmp_path, prefix)
    online_store = {"type": STORE_TYPE, "url": "redis://127.0.0.1:1/0", "timeout_seconds": 0.5}
    # The same repo with its store on a port nothing listens on.
    down = RepoConfig(**(repo.config.model_dump(by_alias=True) | {"online_store": online_store}))
    started = time.monotonic()
    with pytest.raises(redis.ConnectionError):
        CustomerRedisOnlineStore().read_frame(down, repo.orders, IDS)
    assert time.monotonic() - started < 5


def test_the_generation_moves_with_every_change_and_only_then(repo: Repo, tmp_path: Path):
    store = CustomerRedisOnlineStore()
    seen = [store.generation(repo.config)]  # the apply counted
    store.read_frames(repo.config, [repo.orders, repo.web], IDS)
    store.customer_ids(repo.config, 10)
    assert store.generation(repo.config) == seen[-1]  # reads change nothing
    for change in (
        lambda: store.write_frame(repo.config, repo.orders, repo.offline.iloc[3:]),
        lambda: repo.store.write_to_online_store("web", repo.offline.iloc[3:]),
        lambda: store.touch(repo.config),
        lambda: repo.store.apply(definitions(tmp_path / "snapshots.parquet", [])[:3]),
        lambda: repo.store.teardown(),
    ):
        change()
        seen.append(store.generation(repo.config))
    assert seen == sorted(set(seen)) and seen[0] > 0
