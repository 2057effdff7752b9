"""Scale run of the feature store's snapshot: one as-of date of every feature family for a
million customers, in seconds and peak memory, in one process and on Dask.

    python -m benchmarks.feature_snapshot --customers 1000000 [--dask]

The world is simulated once and written as raw tables under the benchmark's home (reused
on later runs); each measurement then runs in a fresh child process that reads the raw
tables as ``custlab features`` does and builds the newest weekly snapshot of every
family, so the peak resident memory (``os.wait4`` reports the child's own) is that of a
real feature build, the tables it holds included. Targets on a 2-core machine: at most 60
seconds and 8 GB.

With ``--dask`` the child starts a local cluster of two worker processes (one thread
each) and builds as ``custlab features --dask`` does: the workers read their ranges of
customers themselves, so reading and building are one span there; the peak adds each
worker's own peak to the driver's (an upper bound of what they held at once), each
measured by the process itself.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.processes import ROOT, run_child


def _prepare(raw: Path, customers: int, weeks: int, seed: int) -> None:
    """Simulate the world and write its raw tables once (in a child, to free its memory)."""
    if (raw / "orders.parquet").exists():
        return
    command = [
        sys.executable,
        "-c",
        "import sys; from pathlib import Path;"
        "from features.simulate import WorldSpec, simulate_world;"
        "from features.tables import replace_folder;"
        f"w = simulate_world(WorldSpec(customers={customers}, weeks={weeks}, seed={seed}));"
        f"replace_folder(Path({str(raw)!r}), w.tables())",
    ]
    subprocess.run(command, cwd=ROOT, check=True)


def _child(raw: Path) -> dict:
    """Read the raw tables and build the newest snapshot of every family, timed apart."""
    import pandas as pd

    from features.contract import read_raw_tables
    from features.snapshots import as_of_dates, build_snapshots

    started = time.perf_counter()
    tables = read_raw_tables(raw)
    read = time.perf_counter() - started
    newest = as_of_dates(tables["orders"])[-1:]
    started = time.perf_counter()
    snapshots = build_snapshots(tables, as_of=pd.DatetimeIndex(newest))
    build = time.perf_counter() - started
    return {
        "read_seconds": read,
        "build_seconds": build,
        "rows": {name: len(frame) for name, frame in tables.items()},
        "snapshot_rows": len(snapshots["orders"]),
        "features": sum(frame.shape[1] - 2 for frame in snapshots.values()),
    }


def _dask_child(raw: Path) -> dict:
    """The same snapshot built on the local cluster ``custlab features --dask`` makes (two
    workers), the cluster's start timed apart."""
    import resource

    import pandas as pd

    from custlab.settings import Settings
    from features.cluster import dask_client
    from features.contract import read_raw_columns
    from features.sharded import build_snapshots_on_dask
    from features.snapshots import as_of_dates

    settings = Settings(dask_workers=2, dask_scheduler=None)
    started = time.perf_counter()
    with dask_client(settings) as client:
        start = time.perf_counter() - started
        newest = as_of_dates(read_raw_columns(raw, "orders", ["order_ts"]))[-1:]
        started = time.perf_counter()
        snapshots = build_snapshots_on_dask(
            client,
            raw,
            as_of=pd.DatetimeIndex(newest),
            shard_customers=settings.dask_shard_customers,
        )
        build = time.perf_counter() - started

        def peak_kib() -> int:
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

        workers_kib = sum(client.run(peak_kib).values())
    return {
        # This process's own: os.wait4 would report the largest of it and the worker
        # processes it reaped.
        "driver_peak_rss_gb": peak_kib() / 1024**2,
        "start_seconds": start,
        "build_seconds": build,
        "workers_peak_rss_gb": workers_kib / 1024**2,
        "snapshot_rows": len(snapshots["orders"]),
        "features": sum(frame.shape[1] - 2 for frame in snapshots.values()),
    }


def snapshot_scale(
    home: Path, customers: int, weeks: int = 104, seed: int = 7, dask: bool = False
) -> dict:
    """Measure one snapshot build at scale in a child process.

    Returns:
        ``build_seconds`` (snapshot of every family; on Dask the workers' reading
        included), ``read_seconds`` (reading and validating the raw tables, in one
        process), ``peak_rss_gb`` of the child (on Dask: plus every worker's own peak),
        and row counts.

    Raises:
        RuntimeError: The child process failed.
    """
    raw = home / f"raw-{customers}-{weeks}-{seed}"
    _prepare(raw, customers, weeks, seed)
    command = [sys.executable, "-m", "benchmarks.feature_snapshot", "--child", str(raw)]
    child = run_child(command + (["--dask"] if dask else []))
    measured = json.loads(child.output.strip().splitlines()[-1])
    if dask:
        peak = measured["driver_peak_rss_gb"] + measured["workers_peak_rss_gb"]
        return measured | {"peak_rss_gb": peak}
    return measured | {"peak_rss_gb": child.peak_rss_gb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--home", type=Path, default=ROOT / ".custlab" / "bench-snapshot")
    parser.add_argument("--dask", action="store_true", help="Build on a local Dask cluster.")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_dask_child(args.child) if args.dask else _child(args.child)))
        return
    print(json.dumps(snapshot_scale(args.home, args.customers, dask=args.dask), indent=2))


if __name__ == "__main__":
    main()
