"""Scale run of the synthetic customer world: seconds and peak memory to simulate it.

    python -m benchmarks.simulate_world --customers 1000000 --weeks 104

The world is simulated in a fresh child process, so the peak resident memory measured
(``os.wait4`` returns the child's own resource usage) is that of the simulation alone,
not of whatever the calling process held before. The target on a 2-core machine is one
million customers over 104 weeks in at most 3 minutes and 8 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _child(customers: int, weeks: int, seed: int) -> dict:
    """Simulate one world in this process; the timing excludes interpreter start-up."""
    from features.simulate import WorldSpec, simulate_world

    spec = WorldSpec(customers=customers, weeks=weeks, seed=seed)
    started = time.perf_counter()
    world = simulate_world(spec)
    tables = world.tables() | world.truth_tables()
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows": {name: len(frame) for name, frame in tables.items()}}


def simulate_scale(customers: int, weeks: int = 104, seed: int = 7) -> dict:
    """Simulate a world of ``customers`` over ``weeks`` in a child process and measure it.

    Args:
        customers: Simulated customers.
        weeks: Simulated weeks.
        seed: World seed.

    Returns:
        ``customers``, ``weeks``, ``seconds`` (simulation, observable and truth tables
        built), ``wall_seconds`` (the whole child, imports included), ``peak_rss_gb``
        (the child's peak resident memory) and ``rows`` (row count per table).

    Raises:
        RuntimeError: The child process failed.
    """
    command = [
        sys.executable,
        "-m",
        "benchmarks.simulate_world",
        "--child",
        "--customers",
        str(customers),
        "--weeks",
        str(weeks),
        "--seed",
        str(seed),
    ]
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    output = process.stdout.read()
    process.stdout.close()
    # wait4 reaps the child and returns its own rusage, unlike RUSAGE_CHILDREN, which
    # reports the largest child this process ever waited for.
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"simulation child exited with {process.returncode}")
    measured = json.loads(output.strip().splitlines()[-1])
    return {
        "customers": customers,
        "weeks": weeks,
        "seconds": round(measured["seconds"], 1),
        "wall_seconds": round(wall, 1),
        "peak_rss_gb": round(usage.ru_maxrss / 1024**2, 2),  # ru_maxrss is in KiB on Linux
        "rows": measured["rows"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--weeks", type=int, default=104)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.customers, args.weeks, args.seed)))
        return
    print(json.dumps(simulate_scale(args.customers, args.weeks, args.seed), indent=2))


if __name__ == "__main__":
    main()
