"""The weekly run for four tasks on the demo world: ``custlab monitor --no-retrain`` of the
newest week, a fresh command each round, against a target of 60 seconds.

    python -m benchmarks.run --only weekly [--customers 30000]

The champions are those of the serving benchmark's home (a 30,000-customer world trained
as the demo trains, built once and reused). Each round runs on a fresh copy of that home
under ``.custlab/bench-weekly-<N>`` (a weekly run writes reports, audit lines and MLflow
runs; the source home stays as built). Retraining is off: what is measured is the
evidence, the verdicts and the records, not a training run.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
from pathlib import Path

from benchmarks.homes import trained_home
from benchmarks.processes import ROOT, Child, run_child

TARGET_SECONDS = 60
CUSTLAB = "custlab monitor --no-retrain (every task: evidence, verdict, records, pages)"


def compare(customers: int, rounds: int) -> list[dict]:
    source = (ROOT / ".custlab" / f"bench-serving-{customers}").resolve()
    champions = trained_home(source, customers)
    home = (ROOT / ".custlab" / f"bench-weekly-{customers}").resolve()
    command = [str(Path(sys.executable).parent / "custlab"), "monitor", "--no-retrain"]
    env = os.environ | {"CUSTLAB_HOME": str(home), "MLFLOW_DISABLE_TELEMETRY": "true"}
    children: list[Child] = []
    for _ in range(rounds):
        shutil.rmtree(home, ignore_errors=True)
        # The registry's artifact locations are absolute and stay in the source home.
        shutil.copytree(source, home, ignore=shutil.ignore_patterns("reports", "scores"))
        children.append(run_child(command, env))
    seconds = statistics.median(c.seconds for c in children)
    tasks = ", ".join(task for task, promoted in champions.items() if promoted)
    return [
        {
            "benchmark": "weekly",
            "system": CUSTLAB,
            "seconds": seconds,
            "peak GB": statistics.median(c.peak_rss_gb for c in children),
            f"vs target ({TARGET_SECONDS} s)": seconds / TARGET_SECONDS,
            "setup": f"the newest week of a {customers:,}-customer world, champions of {tasks}; "
            f"a fresh command on a fresh copy of the home each round (imports included), "
            f"{rounds} rounds, medians",
        }
    ]
