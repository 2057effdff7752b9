"""custlab's Feast online store through Feast itself: apply, materialize, write, read, and
its one-row-per-customer layout: several views in one query, views added, changed and
deleted later, never a blob read under another layout; a locked file's error as SQLite
gave it, and a file renamed over the store's read from then on."""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pydantic
import pytest
from feast import Entity, FeatureService, FeatureStore, FeatureView, Field, FileSource, RepoConfig
from feast.types import Bool, Float32, Float64, Int64, String
from feast.value_type import ValueType

from features.online_store import CustomerOnlineStore, CustomerOnlineStoreConfig, _connection
from tests.serving.outage import store_locked

pytestmark = pytest.mark.integration

STORE_TYPE = "features.online_store.CustomerOnlineStore"
T0 = pd.Timestamp("2025-03-03 00:00:00", tz="UTC")
T1 = pd.Timestamp("2025-03-10 06:30:15.250000", tz="UTC")
IDS = ["c1", "c2", "c3"]
TABLE = "custlab_test_customer"


@dataclass
class Repo:
    store: FeatureStore
    config: RepoConfig
    orders: FeatureView
    web: FeatureView
    service: FeatureService
    offline: pd.DataFrame


def offline_table() -> pd.DataFrame:
    """Two snapshots per customer; the newer one holds a null, a NaN and a None string."""
    return pd.DataFrame(
        {
            "customer_id": IDS * 2,
            "event_timestamp": [T0] * 3 + [T1] * 3,
            "spend_90d": [1.0, 2.0, 3.0, 10.1, np.nan, 30.3],
            "orders_90d": [1.0, 1.0, 1.0, 4.0, 5.0, None],
            "segment": ["a", "b", "c", "gold", None, "silver"],
            "sessions_7d": [0.0, 0.0, 0.0, 7.5, 0.25, 1e-7],
            "channel": ["x", "x", "x", "web", "app", "é-mail"],
        }
    )


def definitions(source_path: Path, orders_schema: list[Field] | None = None) -> list:
    customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.STRING)
    source = FileSource(name="snapshots", path=str(source_path), timestamp_field="event_timestamp")
    orders = FeatureView(
        name="orders",
        entities=[customer],
        ttl=timedelta(days=365 * 10),
        schema=orders_schema
        or [
            Field(name="spend_90d", dtype=Float32),
            Field(name="orders_90d", dtype=Float32),
            Field(name="segment", dtype=String),
        ],
        source=source,
    )
    web = FeatureView(
        name="web",
        entities=[customer],
        ttl=timedelta(days=365 * 10),
        schema=[Field(name="sessions_7d", dtype=Float32), Field(name="channel", dtype=String)],
        source=source,
    )
    service = FeatureService(name="profile_v1", features=[orders, web])
    return [customer, source, orders, web, service]


def open_repo(home: Path, online_store: dict, offline: pd.DataFrame) -> Repo:
    home.mkdir(parents=True, exist_ok=True)
    offline.to_parquet(home / "snapshots.parquet")
    config = RepoConfig(
        project="custlab_test",
        provider="local",
        registry={"path": str(home / "registry.db"), "cache_ttl_seconds": 0},
        online_store=online_store,
        offline_store={"type": "duckdb"},
        entity_key_serialization_version=3,
    )
    config.repo_path = home
    store = FeatureStore(config=config, repo_path=str(home))
    objects = definitions(home / "snapshots.parquet")
    store.apply(objects)
    _, _, orders, web, service = objects
    return Repo(store, config, orders, web, service, offline)


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    online = {"type": STORE_TYPE, "path": str(tmp_path / "online.db")}
    return open_repo(tmp_path, online, offline_table())


def materialize(repo: Repo) -> None:
    repo.store.materialize(
        start_date=(T0 - pd.Timedelta(days=1)).to_pydatetime(),
        end_date=(T1 + pd.Timedelta(days=1)).to_pydatetime(),
    )


def online(repo: Repo, ids: list[str]) -> dict[str, list]:
    return repo.store.get_online_features(
        features=repo.service, entity_rows=[{"customer_id": c} for c in ids]
    ).to_dict(include_event_timestamps=True)


def f32(value: float) -> float:
    return float(np.float32(value))


def test_feast_finds_the_store_from_its_type(repo: Repo):
    assert isinstance(repo.config.online_store, CustomerOnlineStoreConfig)
    assert isinstance(repo.store._get_provider().online_store, CustomerOnlineStore)


@pytest.mark.parametrize("bad", [{"path": 3}, {"path": "x.db", "bogus": 1}])
def test_config_refuses_what_it_does_not_know(bad: dict):
    with pytest.raises(pydantic.ValidationError):
        CustomerOnlineStoreConfig(**bad)


def test_feast_materialize_then_get_online_features_returns_the_newest_rows(repo: Repo):
    materialize(repo)
    got = online(repo, [*IDS, "nobody"])
    stamp = int(T1.timestamp())
    assert got["customer_id"] == [*IDS, "nobody"]
    assert got["spend_90d"] == [f32(10.1), None, f32(30.3), None]
    assert got["orders_90d"] == [4.0, 5.0, None, None]
    assert got["segment"] == ["gold", None, "silver", None]
    assert got["sessions_7d"] == [7.5, 0.25, f32(1e-7), None]
    assert got["channel"] == ["web", "app", "é-mail", None]
    for name in ("spend_90d", "segment", "channel"):
        assert got[f"{name}__ts"] == [stamp, stamp, stamp, 0]


def test_feast_sdk_answers_exactly_as_with_feasts_stock_sqlite_store(repo: Repo, tmp_path: Path):
    stock_home = tmp_path / "stock"
    stock = open_repo(
        stock_home, {"type": "sqlite", "path": str(stock_home / "online.db")}, repo.offline
    )
    materialize(repo)
    materialize(stock)
    ids = ["c3", "nobody", "c1", "c3", "c2"]
    assert online(repo, ids) == online(stock, ids)


def table_columns(repo: Repo) -> list[str]:
    with sqlite3.connect(repo.config.online_store.path) as conn:
        return [row[1] for row in conn.execute(f'PRAGMA table_info("{TABLE}")')]


def view_columns(view: str, *strings: str) -> list[str]:
    return [f"{view}:event_ts", f"{view}:created_ts", f"{view}:numbers"] + [
        f"{view}.{name}" for name in strings
    ]


def test_apply_lays_out_one_row_per_customer_with_columns_per_view(repo: Repo):
    expected = ["customer_id", *view_columns("orders", "segment"), *view_columns("web", "channel")]
    assert table_columns(repo) == expected


def test_write_frame_then_get_online_features_equals_read_frame(repo: Repo):
    frame = repo.offline.iloc[3:].reset_index(drop=True)
    store = CustomerOnlineStore()
    assert store.write_frame(repo.config, repo.orders, frame) == 3
    assert store.write_frame(repo.config, repo.web, frame) == 3
    ids = ["c2", "c1", "nobody", "c3", "c1"]
    got = online(repo, ids)
    for view in (repo.orders, repo.web):
        values, stamps = store.read_frame(repo.config, view, ids)
        assert list(values.columns) == [f.name for f in view.features]
        for name in values.columns:
            expected = [None if v is None or v != v else v for v in values[name].tolist()]
            assert got[name] == expected, name
            assert got[f"{name}__ts"] == [0 if s != s else int(s) for s in stamps]
        assert stamps[1] == T1.timestamp()  # microseconds survive the round trip
    with sqlite3.connect(repo.config.online_store.path) as conn:
        blob, segment = conn.execute(
            f'SELECT "orders:numbers", "orders.segment" FROM "{TABLE}" WHERE customer_id = ?',
            ["c2"],
        ).fetchone()
    # The view's numbers are one little-endian float32 blob (NaN for null); None is NULL.
    numbers = np.frombuffer(blob, "<f4")
    assert len(numbers) == 2 and np.isnan(numbers[0]) and numbers[1] == 5.0
    assert segment is None


def test_read_frames_reads_several_views_in_one_query(repo: Repo):
    store = CustomerOnlineStore()
    store.write_frame(repo.config, repo.orders, repo.offline.iloc[3:])
    store.write_frame(repo.config, repo.web, repo.offline.iloc[[0]])  # c1 only, at T0
    ids = ["c2", "nobody", "c1", "c2"]
    conn = _connection(repo.config).conn
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    try:
        values, stamps = store.read_frames(
            repo.config, [repo.web, repo.orders], ids, {"orders": ["segment", "orders_90d"]}
        )
    finally:
        conn.set_trace_callback(None)
    assert len([s for s in statements if TABLE in s]) == 1
    assert list(values.columns) == ["sessions_7d", "channel", "segment", "orders_90d"]
    assert values.dtypes.tolist() == [np.float64, object, object, np.float64]
    assert values["sessions_7d"].fillna(-1).tolist() == [-1, -1, 0.0, -1]
    assert values["channel"].tolist() == [None, None, "x", None]
    assert values["segment"].tolist() == [None, None, "gold", None]
    assert values["orders_90d"].fillna(-1).tolist() == [5.0, -1, 4.0, 5.0]
    t0, t1, nan = T0.timestamp(), T1.timestamp(), -1
    assert np.nan_to_num(stamps["web"], nan=nan).tolist() == [nan, nan, t0, nan]
    assert np.nan_to_num(stamps["orders"], nan=nan).tolist() == [t1, nan, t1, t1]
    with pytest.raises(ValueError, match="repeat a feature"):
        store.read_frames(repo.config, [repo.orders, repo.orders], ids)


def test_read_frame_returns_features_in_the_asked_order_and_unknowns_empty(repo: Repo):
    store = CustomerOnlineStore()
    store.write_frame(repo.config, repo.orders, repo.offline.iloc[3:])
    values, stamps = store.read_frame(
        repo.config, repo.orders, ["nobody", "c1", "nobody"], ["segment", "spend_90d"]
    )
    assert list(values.columns) == ["segment", "spend_90d"]
    assert values["segment"].tolist() == [None, "gold", None]
    assert values["spend_90d"].isna().tolist() == [True, False, True]
    assert np.isnan(stamps[[0, 2]]).all() and stamps[1] == T1.timestamp()
    empty, no_stamps = store.read_frame(repo.config, repo.orders, [])
    assert empty.shape == (0, 3) and no_stamps.shape == (0,)
    with pytest.raises(ValueError, match="no feature.*unknown_feature"):
        store.read_frame(repo.config, repo.orders, ["c1"], ["unknown_feature"])
    with pytest.raises(ValueError, match="strings"):
        store.read_frame(repo.config, repo.orders, [1])


def test_an_older_row_never_overwrites_a_newer_one_of_the_same_view(repo: Repo):
    store = CustomerOnlineStore()
    newer, older = repo.offline.iloc[3:], repo.offline.iloc[:3]
    store.write_frame(repo.config, repo.orders, newer)
    store.write_frame(repo.config, repo.orders, older)
    repo.store.write_to_online_store("orders", older)  # Feast's own write path too
    values, stamps = store.read_frame(repo.config, repo.orders, IDS)
    assert values["segment"].tolist() == ["gold", None, "silver"]
    assert (stamps == T1.timestamp()).all()
    # Each view keeps its own time: older web rows land where web has none yet.
    store.write_frame(repo.config, repo.web, older)
    assert store.read_frame(repo.config, repo.web, IDS)[0]["channel"].tolist() == ["x"] * 3
    # The same instant again replaces: a corrected re-run must land.
    store.write_frame(repo.config, repo.orders, newer.assign(segment="fixed"))
    assert store.read_frame(repo.config, repo.orders, IDS)[0]["segment"].tolist() == ["fixed"] * 3


def test_a_view_added_later_gets_its_columns_and_holds_any_number_exactly(
    repo: Repo, tmp_path: Path
):
    store = CustomerOnlineStore()
    store.write_frame(repo.config, repo.orders, repo.offline.iloc[3:])
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
    assert table_columns(repo)[-4:] == view_columns("loyalty_v2", "tier")  # a safe prefix
    values, stamps = store.read_frames(repo.config, [repo.orders, loyalty], IDS)
    assert values["segment"].tolist() == ["gold", None, "silver"]
    assert values[["points", "visits", "member", "tier"]].isna().all().all()
    assert np.isnan(stamps["loyalty-v2"]).all() and (stamps["orders"] == T1.timestamp()).all()
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
    # Feast's own write path (protos) for c3, one microsecond later.
    later = frame.iloc[[0]].assign(customer_id="c3", event_timestamp=T1 + pd.Timedelta("1us"))
    repo.store.write_to_online_store("loyalty-v2", later.assign(visits=7, member=False))
    got = repo.store.get_online_features(
        features=["loyalty-v2:points", "loyalty-v2:visits", "loyalty-v2:member", "orders:segment"],
        entity_rows=[{"customer_id": c} for c in IDS],
    ).to_dict(include_event_timestamps=True)
    # A view declaring Float64, Int64 or Bool packs float64: exact, ints up to 2**53.
    assert got["points"] == [0.1, None, 0.1] and got["visits"] == [2**53, -3, 7]
    assert got["member"] == [True, None, False] and got["segment"] == ["gold", None, "silver"]
    assert got["points__ts"] == [int(T1.timestamp())] * 3
    _, stamps = store.read_frame(repo.config, loyalty, IDS)
    assert stamps[2] - stamps[0] == pytest.approx(1e-6, abs=1e-7)  # microseconds kept
    with pytest.raises(ValueError, match="visits"):
        store.write_frame(repo.config, loyalty, frame.assign(visits=[2**53 + 2, 0]))


def test_a_changed_schema_migrates_the_view_and_no_blob_is_read_under_another_layout(
    repo: Repo, tmp_path: Path
):
    store = CustomerOnlineStore()
    store.write_frame(repo.config, repo.orders, repo.offline.iloc[3:])
    store.write_frame(repo.config, repo.web, repo.offline.iloc[3:])
    changed = [
        Field(name="orders_90d", dtype=Float32),  # kept, now first in the blob
        Field(name="segment", dtype=Int64),  # was a string: its values cannot survive
        Field(name="tenure_days", dtype=Int64),  # new: the blob turns float64
    ]  # spend_90d dropped
    repo.store.apply(definitions(tmp_path / "snapshots.parquet", changed))
    orders = repo.store.get_feature_view("orders")
    expected = ["customer_id", *view_columns("orders"), *view_columns("web", "channel")]
    assert table_columns(repo) == expected
    values, stamps = store.read_frame(repo.config, orders, IDS)
    assert values["orders_90d"].fillna(-1).tolist() == [4.0, 5.0, -1]
    assert values[["segment", "tenure_days"]].isna().all().all()
    assert (stamps == T1.timestamp()).all()  # the rows stay: their kept features serve
    assert store.read_frame(repo.config, repo.web, IDS)[0]["channel"].tolist()[0] == "web"
    # The old definition reads what the applied layout still holds, by name, and can
    # neither read what it lost nor write blobs of its own layout.
    stale, _ = store.read_frame(repo.config, repo.orders, IDS, ["orders_90d"])
    assert stale["orders_90d"].fillna(-1).tolist() == [4.0, 5.0, -1]
    with pytest.raises(ValueError, match="feast apply"):
        store.read_frame(repo.config, repo.orders, IDS, ["spend_90d"])
    with pytest.raises(ValueError, match="feast apply"):
        store.write_frame(repo.config, repo.orders, repo.offline.iloc[3:])
    # A blob of another length (another layout) reads as missing, never as shifted numbers.
    with sqlite3.connect(repo.config.online_store.path) as conn:
        short = np.array([1.0, 2.0], "<f4").tobytes()
        conn.execute(
            f'UPDATE "{TABLE}" SET "orders:numbers" = ? WHERE customer_id = ?', (short, "c1")
        )
    values, _ = store.read_frame(repo.config, orders, IDS)
    assert values["orders_90d"].fillna(-1).tolist() == [-1, 5.0, -1]
    frame = pd.DataFrame(
        {
            "customer_id": ["c1"],
            "event_timestamp": [T1 + pd.Timedelta(days=1)],
            "orders_90d": [5.0],
            "segment": [2],
            "tenure_days": [400],
        }
    )
    store.write_frame(repo.config, orders, frame)
    got = repo.store.get_online_features(
        features=["orders:segment", "orders:tenure_days"], entity_rows=[{"customer_id": "c1"}]
    ).to_dict()
    assert got["segment"] == [2] and got["tenure_days"] == [400]


def test_a_deleted_view_loses_its_columns_and_the_others_keep_serving(repo: Repo, tmp_path: Path):
    materialize(repo)
    customer, source, orders, web, service = definitions(tmp_path / "snapshots.parquet")
    repo.store.apply([customer, source, orders], objects_to_delete=[web, service], partial=False)
    assert table_columns(repo) == ["customer_id", *view_columns("orders", "segment")]
    store = CustomerOnlineStore()
    assert store.read_frame(repo.config, orders, IDS)[0]["segment"].tolist()[0] == "gold"
    with pytest.raises(ValueError, match="feast apply"):
        store.read_frame(repo.config, web, IDS)


# (what spoils the frame, the column the error names): every online store refuses these.
BAD_FRAMES = [
    (lambda f: f.drop(columns="segment"), "segment"),
    (lambda f: f.drop(columns="event_timestamp"), "event_timestamp"),
    (lambda f: f.assign(spend_90d=["1.0", "oops", None]), "spend_90d"),
    (lambda f: f.assign(customer_id=["c1", None, "c3"]), "customer_id"),
    (lambda f: f.assign(event_timestamp=f["event_timestamp"].dt.tz_localize(None)), "event"),
]


@pytest.mark.parametrize(("change", "column"), BAD_FRAMES)
def test_a_bad_frame_names_its_column_and_writes_nothing(repo: Repo, change, column: str):
    store = CustomerOnlineStore()
    frame = change(repo.offline.iloc[3:].reset_index(drop=True))
    with pytest.raises(ValueError, match=column):
        store.write_frame(repo.config, repo.orders, frame)
    _, stamps = store.read_frame(repo.config, repo.orders, IDS)
    assert np.isnan(stamps).all()


def test_a_view_not_keyed_by_customer_id_is_refused(repo: Repo, tmp_path: Path):
    account = Entity(name="account", join_keys=["account_id"], value_type=ValueType.STRING)
    view = FeatureView(
        name="accounts",
        entities=[account],
        schema=[Field(name="balance", dtype=Float32)],
        source=FileSource(
            path=str(tmp_path / "snapshots.parquet"), timestamp_field="event_timestamp"
        ),
    )
    with pytest.raises(ValueError, match="customer_id"):
        repo.store.apply([account, view])


def test_teardown_removes_the_tables_and_the_file(repo: Repo, tmp_path: Path):
    materialize(repo)
    with sqlite3.connect(tmp_path / "online.db") as conn:  # a table of the earlier layout
        conn.execute('CREATE TABLE "custlab_test_orders" (customer_id TEXT PRIMARY KEY)')
    repo.store.teardown()
    assert not (tmp_path / "online.db").exists()


@pytest.mark.parametrize(
    ("damage", "missing"),
    [
        (f'DROP TABLE "{TABLE}"', "no such table"),
        (f'ALTER TABLE "{TABLE}" DROP COLUMN "web.channel"', "no such column"),
    ],
)
def test_a_store_lacking_what_apply_creates_says_to_run_feast_apply(
    repo: Repo, damage: str, missing: str
):
    store = CustomerOnlineStore()
    store.write_frame(repo.config, repo.web, repo.offline.iloc[3:])
    with sqlite3.connect(repo.config.online_store.path) as conn:
        conn.execute(damage)
    with pytest.raises(ValueError, match=f"{missing}.*; run feast apply"):
        store.read_frame(repo.config, repo.web, ["c1"])


@pytest.mark.slow
def test_a_locked_store_raises_sqlites_own_error_without_the_apply_hint(repo: Repo):
    store = CustomerOnlineStore()
    store.write_frame(repo.config, repo.orders, repo.offline.iloc[3:])
    with store_locked(Path(repo.config.online_store.path)):
        with pytest.raises(sqlite3.OperationalError, match="locking protocol") as locked:
            store.read_frame(repo.config, repo.orders, ["c1"])
        assert "apply" not in str(locked.value)
        # Not an empty list: serving's warm-up would take that for "every answer ready".
        with pytest.raises(sqlite3.OperationalError, match="locking protocol"):
            store.customer_ids(repo.config, 10)
    values, _ = store.read_frame(repo.config, repo.orders, ["c1"])  # the same connection
    assert values["segment"].tolist() == ["gold"]


def test_a_file_renamed_over_the_store_is_read_from_then_on(repo: Repo, tmp_path: Path):
    store = CustomerOnlineStore()
    store.write_frame(repo.config, repo.orders, repo.offline.iloc[:3])
    assert store.read_frame(repo.config, repo.orders, ["c1"])[0]["segment"].tolist() == ["a"]
    # The next materialization, built aside in a store of its own, then renamed over.
    aside_db = tmp_path / "aside" / "online.db"
    aside = open_repo(tmp_path / "aside", {"type": STORE_TYPE, "path": str(aside_db)}, repo.offline)
    store.write_frame(aside.config, aside.orders, aside.offline.iloc[3:])
    os.replace(aside_db, tmp_path / "online.db")

    values, stamps = store.read_frame(repo.config, repo.orders, ["c1", "c2"])
    assert values["segment"].tolist() == ["gold", None] and stamps[0] == T1.timestamp()
    # The old file's connection is closed: the unlinked file no longer takes disk space.
    open_files = [os.readlink(fd) for fd in Path("/proc/self/fd").iterdir() if fd.is_symlink()]
    assert f"{tmp_path / 'online.db'} (deleted)" not in open_files
