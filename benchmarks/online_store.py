"""custlab's online stores (SQLite, ``features.online_store``; Redis, the cluster
profile's ``features.redis_store``) against plain Feast on its stock SQLite online store,
over one synthetic customer table of 70 features in 6 views.

    python -m benchmarks.online_store --customers 1000000 [--home DIR]

* materialize: custlab ``write_frame`` of every customer into every view (into SQLite,
  and into a Redis server of the benchmark's own on loopback), against the anchor,
  ``FeatureStore.materialize`` into Feast's ``sqlite`` store, which runs on the first
  ``anchor_rows`` customers of the same table because it is slow; in customers/s.
* read: the full vectors (all views) of 1,000 random customers, custlab ``read_frames``
  (one query, or one Redis script call, for all views) against
  ``FeatureStore.get_online_features`` of the feature service on the anchor store. All
  read the same ids, drawn from the customers the anchor holds (custlab's stores hold all
  of them, so their tables are the larger). Wall and CPU (``time.process_time``)
  milliseconds: the machine may be shared, CPU time is what the read itself costs (a
  Redis read's wall time includes the server's work, its CPU time does not).

Everything is written under the home folder (a temporary one, removed afterwards, unless
``--home`` is given). Nothing runs at import.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import resource
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from feast import Entity, FeatureService, FeatureStore, FeatureView, Field, FileSource, RepoConfig
from feast.types import Float32, String
from feast.value_type import ValueType

from benchmarks.servers import RedisServer
from features.online_store import CustomerOnlineStore
from features.redis_store import CustomerRedisOnlineStore

CUSTLAB_TYPE = "features.online_store.CustomerOnlineStore"
REDIS_TYPE = "features.redis_store.CustomerRedisOnlineStore"
SNAPSHOT = pd.Timestamp("2025-09-29", tz="UTC")
# (view, float features, string categoricals): 64 floats and 6 strings, 4-25 per view.
LAYOUT = [
    ("orders", 24, 1),
    ("engagement", 14, 1),
    ("service", 9, 1),
    ("campaigns", 8, 1),
    ("payments", 6, 1),
    ("profile", 3, 1),
]
CATEGORIES = np.array(["north", "south", "east", "west", "online", "store", None], dtype=object)
SYSTEMS = {"custlab": CUSTLAB_TYPE, "anchor": "sqlite"}


def feature_names(view: str, floats: int, strings: int) -> list[tuple[str, bool]]:
    """(name, is_string) of a synthetic view's features."""
    names = [(f"{view}_f{i:02d}", False) for i in range(floats)]
    return names + [(f"{view}_cat{i}", True) for i in range(strings)]


def synthetic_table(customers: int, seed: int = 7) -> pd.DataFrame:
    """One snapshot per customer: pseudonymous hex ids in random order, float32 features
    with 5% missing, string categoricals with 1 in 7 missing."""
    rng = np.random.default_rng(seed)
    ids = pd.Series(rng.integers(0, 2**63, customers, dtype=np.int64)).map("{:016x}".format)
    columns: dict[str, object] = {
        "customer_id": ids.to_numpy(dtype=object),
        "event_timestamp": SNAPSHOT - pd.to_timedelta(rng.integers(0, 86_400, customers), "s"),
    }
    for view, floats, strings in LAYOUT:
        for name, is_string in feature_names(view, floats, strings):
            if is_string:
                columns[name] = CATEGORIES[rng.integers(0, len(CATEGORIES), customers)]
            else:
                values = rng.gamma(2.0, 50.0, customers).astype(np.float32)
                values[rng.random(customers) < 0.05] = np.nan
                columns[name] = values
    return pd.DataFrame(columns).drop_duplicates("customer_id", ignore_index=True)


def repo_config(home: Path, online_type: str, redis_url: str | None = None) -> RepoConfig:
    """The config of a benchmark repo in ``home`` (DuckDB offline, as custlab runs); a
    Redis store at ``redis_url``."""
    online = (
        {"type": online_type, "url": redis_url, "key_prefix": "bench:"}
        if online_type == REDIS_TYPE
        else {"type": online_type, "path": str(home / "online.db")}
    )
    config = RepoConfig(
        project="bench",
        provider="local",
        registry={"path": str(home / "registry.db"), "cache_ttl_seconds": 0},
        online_store=online,
        offline_store={"type": "duckdb"},
        entity_key_serialization_version=3,
    )
    config.repo_path = home
    return config


def build_repo(
    home: Path, table: pd.DataFrame, online_type: str, redis_url: str | None = None
) -> FeatureStore:
    """Write ``table`` as the parquet source of a Feast repo in ``home`` and apply it."""
    home.mkdir(parents=True, exist_ok=True)
    table.to_parquet(home / "customers.parquet")
    config = repo_config(home, online_type, redis_url)
    store = FeatureStore(config=config, repo_path=str(home))
    customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.STRING)
    source = FileSource(
        name="customers", path=str(home / "customers.parquet"), timestamp_field="event_timestamp"
    )
    views = [
        FeatureView(
            name=view,
            entities=[customer],
            ttl=timedelta(days=30),
            schema=[
                Field(name=name, dtype=String if is_string else Float32)
                for name, is_string in feature_names(view, floats, strings)
            ],
            source=source,
        )
        for view, floats, strings in LAYOUT
    ]
    store.apply([customer, source, *views, FeatureService(name="all_v1", features=views)])
    return store


def _views(store: FeatureStore) -> list[FeatureView]:
    return [store.get_feature_view(name) for name, _, _ in LAYOUT]


def _feast_materialize(store: FeatureStore) -> tuple[float, float]:
    """Wall and CPU seconds of Feast's own materialize of the snapshot day (its progress
    bar muted)."""
    started, cpu = time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(io.StringIO()):
        store.materialize(
            start_date=(SNAPSHOT - timedelta(days=2)).to_pydatetime(),
            end_date=(SNAPSHOT + timedelta(seconds=1)).to_pydatetime(),
        )
    return time.perf_counter() - started, time.process_time() - cpu


def _write_frames(store: FeatureStore, table: pd.DataFrame) -> tuple[float, float]:
    """Wall and CPU seconds of custlab ``write_frame`` of ``table`` into every view."""
    online = store._get_provider().online_store
    started, cpu = time.perf_counter(), time.process_time()
    for view in _views(store):
        columns = ["customer_id", "event_timestamp", *(f.name for f in view.features)]
        online.write_frame(store.config, view, table[columns])
    return time.perf_counter() - started, time.process_time() - cpu


def measure_materialize(
    home: Path, table: pd.DataFrame, redis_url: str, anchor_rows: int = 50_000
) -> list[dict]:
    """Load ``table`` into custlab's stores (SQLite, and Redis at ``redis_url``) and its
    first ``anchor_rows`` into the anchor.

    Also times Feast's materialize into custlab's store (on the anchor's rows): the same
    proto path as the anchor, into the columnar layout.

    Returns:
        One row per system: customers, wall and CPU seconds, rows/s (customers over all
        views per wall second) and rows/s relative to the anchor.
    """
    head = table.iloc[:anchor_rows]
    custlab_s = _write_frames(build_repo(home / "custlab", table, CUSTLAB_TYPE), table)
    redis_s = _write_frames(build_repo(home / "redis-repo", table, REDIS_TYPE, redis_url), table)
    via_feast_s = _feast_materialize(build_repo(home / "custlab-via-feast", head, CUSTLAB_TYPE))
    anchor_s = _feast_materialize(build_repo(home / "anchor", head, "sqlite"))
    rows = [
        {"system": name, "customers": customers, "seconds": wall, "cpu seconds": cpu}
        for name, customers, (wall, cpu) in [
            ("custlab write_frame", len(table), custlab_s),
            ("custlab write_frame -> Redis", len(table), redis_s),
            ("Feast materialize -> custlab", len(head), via_feast_s),
            ("anchor: Feast materialize -> sqlite", len(head), anchor_s),
        ]
    ]
    anchor_rps = len(head) / anchor_s[0]
    for row in rows:
        row["rows/s"] = row["customers"] / row["seconds"]
        row |= {"benchmark": "online_store_materialize", "vs anchor": row["rows/s"] / anchor_rps}
    return rows


def measure_read(
    home: Path,
    table: pd.DataFrame,
    redis_url: str,
    anchor_rows: int = 50_000,
    batch: int = 1000,
    rounds: int = 30,
    seed: int = 0,
) -> list[dict]:
    """Read ``batch`` random customers' full vectors ``rounds`` times from the stores
    :func:`measure_materialize` filled in ``home``.

    The ids of every round are drawn once, among the anchor's customers (and among all of
    custlab's for one system), and every system reads the same ones: custlab
    ``read_frames`` over all views, the Feast SDK on custlab's store and the Feast SDK on
    the anchor. Each system runs its rounds back to back, as a serving process would; one
    more custlab row reads each batch right after a (untimed) Feast SDK read of 100 other
    customers, which leaves the CPU caches cold. A first, warm-up round is not counted.

    Returns:
        One row per system: median and p95 milliseconds of wall and of CPU time
        (``time.process_time``: what the read costs on a shared machine), and the wall
        median over the anchor's.
    """
    store = FeatureStore(config=repo_config(home / "custlab", CUSTLAB_TYPE), repo_path=str(home))
    redis_config = repo_config(home / "redis-repo", REDIS_TYPE, redis_url)
    on_redis = FeatureStore(config=redis_config, repo_path=str(home))
    anchor = FeatureStore(config=repo_config(home / "anchor", "sqlite"), repo_path=str(home))
    views, online, redis_online = _views(store), CustomerOnlineStore(), CustomerRedisOnlineStore()

    def custlab(ids: list[str]) -> object:
        return online.read_frames(store.config, views, ids)

    def custlab_redis(ids: list[str]) -> object:
        return redis_online.read_frames(on_redis.config, views, ids)

    def sdk(feast: FeatureStore) -> Callable[[list[str]], object]:
        service = feast.get_feature_service("all_v1")
        return lambda ids: feast.get_online_features(
            features=service, entity_rows=[{"customer_id": c} for c in ids]
        ).to_dict(include_event_timestamps=True)

    anchor_sdk = sdk(anchor)
    # name -> (read, pool of ids: 0 the anchor's customers, 1 all, untimed read before)
    systems: dict[str, tuple[Callable[[list[str]], object], int, Callable | None]] = {
        "custlab read_frames (6 views)": (custlab, 0, None),
        f"custlab read_frames, ids of all {len(table):,}": (custlab, 1, None),
        "custlab read_frames, after a Feast SDK read": (custlab, 0, anchor_sdk),
        "custlab read_frames from Redis (6 views)": (custlab_redis, 0, None),
        "Feast SDK -> custlab": (sdk(store), 0, None),
        "anchor: Feast SDK -> sqlite": (anchor_sdk, 0, None),
    }
    rng = np.random.default_rng(seed)
    pools = table["customer_id"].iloc[:anchor_rows], table["customer_id"]
    draws = [
        [pool.sample(batch, random_state=rng).tolist() for pool in pools] for _ in range(rounds + 1)
    ]
    rows = []
    for name, (read, pool, before) in systems.items():
        timings = []
        for ids in (draw[pool] for draw in draws):
            if before is not None:
                before(pools[0].sample(100, random_state=rng).tolist())
            started, cpu = time.perf_counter(), time.process_time()
            read(ids)
            timings.append(
                ((time.perf_counter() - started) * 1e3, (time.process_time() - cpu) * 1e3)
            )
        wall, cpu = np.array(timings[1:]).T
        rows.append(
            {
                "benchmark": "online_store_read",
                "system": name,
                "p50 ms": float(np.median(wall)),
                "p95 ms": float(np.percentile(wall, 95)),
                "cpu p50 ms": float(np.median(cpu)),
                "cpu p95 ms": float(np.percentile(cpu, 95)),
            }
        )
    anchor_ms = rows[-1]["p50 ms"]
    for row in rows:
        row["p50 vs anchor"] = row["p50 ms"] / anchor_ms
    return rows


def run(customers: int, home: Path, anchor_rows: int = 50_000, rounds: int = 30) -> pd.DataFrame:
    """Build the table, measure materialize then read, and return all rows as one table."""
    load_before = os.getloadavg()[0]
    table = synthetic_table(customers)
    anchor_rows = min(anchor_rows, len(table))
    redis = RedisServer(home / "redis")
    redis.start()
    try:
        version = redis.client().info("server")["redis_version"]
        rows = measure_materialize(home, table, redis.url, anchor_rows)
        rows += measure_read(home, table, redis.url, anchor_rows, rounds=rounds)
        redis_gb = redis.client().info("memory")["used_memory"] / 1e9
    finally:
        redis.kill()  # its data is of no use after the run: not saved
    setup = (
        f"{len(table):,} customers x {sum(f + s for _, f, s in LAYOUT)} features in "
        f"{len(LAYOUT)} views; anchor on the first {anchor_rows:,}; {rounds} read rounds "
        f"of 1,000 ids; peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f}"
        f" GB; Redis {version} on loopback, the benchmark's own server, {redis_gb:.2f} GB used; "
        f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
    )
    return pd.DataFrame(rows).assign(setup=setup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--home", type=Path, help="keep everything here (default: a temp folder)")
    parser.add_argument("--anchor-rows", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=30, help="read rounds")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        home = args.home or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="custlab-online-", dir="/tmp"))
        )
        result = run(args.customers, home.resolve(), args.anchor_rows, args.rounds)
    for name, group in result.groupby("benchmark", sort=False):
        shown = group.drop(columns=["benchmark", "setup"]).dropna(axis=1, how="all")
        if "customers" in shown:
            shown["customers"] = shown["customers"].astype(int)
        print(f"\n## {name}\n\n{shown.to_markdown(index=False, floatfmt=',.2f')}")
    print(f"\n{result['setup'].iloc[0]}")


if __name__ == "__main__":
    main()
