"""``custlab score-batch`` at a million customers against the plain anchor
(:mod:`benchmarks.anchor_batch`), each run as a fresh command, rounds alternating.

    python -m benchmarks.run --only score_batch [--world-customers 1000000]

The champions are those of the serving benchmark's home (a 30,000-customer world
trained as the demo trains, built once and reused). The million customers are that
world's newest snapshot rows repeated under new ids (``C0000042~7``): scoring cost does
not depend on who the customers are, only on how many rows and which trees, and a
million-customer world would take longer to build than everything measured here. The
scaled home is the source home's registry beside those rewritten offline tables, under
``.custlab/bench-batch-<N>``. Target: at most 60 seconds, command start to exit.

Beside them (issue 11), ``custlab score-batch --dask`` on a local Dask cluster of two
worker processes, one thread each: the cluster profile's path, on this one machine.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from benchmarks.homes import trained_home
from benchmarks.processes import ROOT, Child, run_child

TARGET_SECONDS = 60
CUSTLAB = (
    "custlab score-batch (compiled trees; scores, tiers, actions, population, all-or-nothing,"
    " MLflow run)"
)
ANCHOR = "anchor: pyarrow read + LightGBM predict per champion + parquet"
DASK = "custlab score-batch --dask (a local Dask cluster: 2 workers x 1 thread)"


def scaled_home(source: Path, customers: int) -> Path:
    """A home whose offline tables hold ``customers`` at the newest snapshot date (the
    source's rows repeated under new ids) and whose registry is the source's."""
    home = ROOT / ".custlab" / f"bench-batch-{customers}"
    ready = home / "ready.json"
    if ready.exists():
        return home
    shutil.rmtree(home, ignore_errors=True)
    offline = home / "offline"
    offline.mkdir(parents=True)
    # The registry's artifact locations are absolute: they stay in the source home.
    shutil.copy2(source / "mlflow.db", home / "mlflow.db")
    manifest = json.loads((source / "offline" / "families.json").read_text())
    shutil.copy2(source / "offline" / "families.json", offline / "families.json")
    as_of = pd.Timestamp(manifest["last_as_of"])
    for family in manifest["families"]:
        path = source / "offline" / f"{family}.parquet"
        newest = pq.read_table(path).to_pandas()
        newest = newest[newest["event_timestamp"] == as_of].reset_index(drop=True)
        copies = -(-customers // len(newest))
        tiled = pd.concat([newest] * copies, ignore_index=True).iloc[:customers]
        copy = (pd.RangeIndex(len(tiled)) // len(newest)).astype(str)
        tiled["customer_id"] = tiled["customer_id"].astype(str) + "~" + copy
        tiled.to_parquet(offline / f"{family}.parquet", index=False)
    ready.write_text(json.dumps({"customers": customers, "source": str(source)}))
    return home


def compare(customers: int, rounds: int, source_customers: int) -> list[dict]:
    source = (ROOT / ".custlab" / f"bench-serving-{source_customers}").resolve()
    champions = trained_home(source, source_customers)
    home = scaled_home(source, customers).resolve()
    env = {"CUSTLAB_HOME": str(home), "MLFLOW_DISABLE_TELEMETRY": "true"}
    custlab = [str(Path(sys.executable).parent / "custlab"), "score-batch"]
    anchor = [sys.executable, "-m", "benchmarks.anchor_batch", str(home), str(home / "anchor")]
    commands = {CUSTLAB: custlab, ANCHOR: anchor, DASK: [*custlab, "--dask"]}
    runs: dict[str, list[Child]] = {name: [] for name in commands}
    for _ in range(rounds):
        for name, command in commands.items():
            runs[name].append(run_child(command, os.environ | env | {"CUSTLAB_DASK_WORKERS": "2"}))
    served = ", ".join(task for task, promoted in champions.items() if promoted)
    anchor_seconds = statistics.median(c.seconds for c in runs[ANCHOR])
    rows = []
    for system, children in runs.items():
        seconds = statistics.median(c.seconds for c in children)
        rows.append(
            {
                "benchmark": "score_batch",
                "system": system,
                "seconds": seconds,
                "peak GB": statistics.median(c.peak_rss_gb for c in children),
                "vs anchor": seconds / anchor_seconds,
                f"vs target ({TARGET_SECONDS} s)": seconds / TARGET_SECONDS,
                "setup": f"{customers:,} customers (the newest snapshot of a "
                f"{source_customers:,}-customer world repeated under new ids), champions of "
                f"{served}; each system a fresh command (imports and model loading "
                f"included), {rounds} alternating rounds, medians; peak GB is the "
                "command's own process (Dask's worker processes not counted)",
            }
        )
    return rows
