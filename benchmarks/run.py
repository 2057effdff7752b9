"""Run named benchmarks, each beside its anchor in the same run, and write the results
table (``benchmarks/results/results.md`` and ``.json``).

    python -m benchmarks.run                         # every benchmark, default scale
    python -m benchmarks.run --only serving_churn --customers 5000 --requests 1000
    python -m benchmarks.run --only tuning --customers 5000 --train-rows 20000 --trials 3

Machines here are shared and noisy: every figure is the median over ``--rounds`` rounds
that alternate custlab and its anchor, and the ratio to the anchor is what to compare.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pandas as pd

from benchmarks.loadgen import LoadResult, run_load
from serving.launch import serve_command

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_ready(url: str, process: subprocess.Popen, deadline_s: float = 180) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} not ready after {deadline_s:.0f}s")


def _start(command: list[str], env: dict[str, str], ready_url: str, log: Path) -> subprocess.Popen:
    handle = log.open("w")
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=handle, stderr=handle)
    _wait_ready(ready_url, process)
    return process


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


def _prepare_home(home: Path, customers: int) -> None:
    """A home with a churn champion at the requested scale (reused when present)."""
    from custlab import pipeline
    from custlab.settings import Settings
    from features.simulate import WorldSpec
    from training.tune import TuneSpec

    settings = Settings(home=home)
    if (home / "offline").exists() and (home / "mlflow.db").exists():
        return
    pipeline.quiet_libraries()
    pipeline.simulate(settings, WorldSpec(customers=customers))
    pipeline.build_features(settings)
    pipeline.train(settings, "churn", TuneSpec(n_trials=2))


def serving_churn(args: argparse.Namespace) -> list[dict]:
    """POST /v1/churn for one customer: custlab's BentoML service (online store, reason
    codes, prediction log) against a bare FastAPI endpoint over the same booster."""
    from custlab.settings import Settings
    from features.store import latest_as_of, read_features
    from training.model_input import model_matrix
    from training.registry import load_champion, use_tracking

    home = (ROOT / ".custlab" / f"bench-{args.customers}").resolve()
    _prepare_home(home, args.customers)
    settings = Settings(home=home)
    use_tracking(settings, "custlab-churn")
    booster, version = load_champion("custlab-churn")
    model_file = home / "bench" / "anchor-model.txt"
    model_file.parent.mkdir(parents=True, exist_ok=True)
    booster.save_model(str(model_file))
    latest = read_features(settings, dates=[latest_as_of(settings)])
    # The anchor gets the rows already encoded as the model takes them (categories as codes).
    encoded = pd.DataFrame(model_matrix(booster, latest), columns=booster.feature_name())
    encoded.insert(0, "customer_id", latest["customer_id"].to_numpy())
    features_file = home / "bench" / "anchor-features.parquet"
    encoded.to_parquet(features_file)

    ids = latest.loc[latest["recency_days"] <= 365, "customer_id"].sample(
        args.requests, replace=True, random_state=0
    )
    bodies = [{"customer_ids": [cid]} for cid in ids]
    env = os.environ | {
        "CUSTLAB_HOME": str(home),
        "BENTOML_DO_NOT_TRACK": "true",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "ANCHOR_MODEL": str(model_file),
        "ANCHOR_FEATURES": str(features_file),
    }
    custlab_port, anchor_port = _free_port(), _free_port()
    servers = {
        "custlab (BentoML)": (
            serve_command("127.0.0.1", custlab_port),
            f"http://127.0.0.1:{custlab_port}",
            f"http://127.0.0.1:{custlab_port}/readyz",
        ),
        "anchor: bare FastAPI": (
            [
                sys.executable,
                "-m",
                "uvicorn",
                "benchmarks.anchor_fastapi:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(anchor_port),
                "--workers",
                "1",
                "--log-level",
                "warning",
            ],
            f"http://127.0.0.1:{anchor_port}",
            f"http://127.0.0.1:{anchor_port}/docs",
        ),
    }
    processes = {}
    rounds: dict[str, list[LoadResult]] = {name: [] for name in servers}
    try:
        for name, (command, _, ready) in servers.items():
            processes[name] = _start(command, env, ready, home / "bench" / f"{name[:7]}.log")
        for _ in range(args.rounds):
            for name, (_, base, _) in servers.items():
                run_load(f"{base}/v1/churn", bodies[:50], args.concurrency)  # warm-up
                rounds[name].append(run_load(f"{base}/v1/churn", bodies, args.concurrency))
    finally:
        for process in processes.values():
            _stop(process)

    anchor = "anchor: bare FastAPI"
    rows = []
    for name, results in rounds.items():
        rows.append(
            {
                "benchmark": "serving_churn",
                "system": name,
                "requests/s": statistics.median(r.rps for r in results),
                "p50 ms": statistics.median(r.percentile(50) for r in results),
                "p99 ms": statistics.median(r.percentile(99) for r in results),
                "errors": sum(r.errors for r in results),
            }
        )
    base = next(r for r in rows if r["system"] == anchor)
    for row in rows:
        row["rps vs anchor"] = row["requests/s"] / base["requests/s"]
        row["p50 vs anchor"] = row["p50 ms"] / base["p50 ms"]
    leaves = sum(tree["num_leaves"] for tree in booster.dump_model()["tree_info"])
    setup = (
        f"{args.customers:,} customers; model v{version} ({booster.num_trees()} trees, "
        f"{leaves:,} leaves: reason codes cost grows with it); {args.requests} requests x "
        f"{args.rounds} rounds, {args.concurrency} concurrent clients, one id per request, "
        "one server worker each"
    )
    for row in rows:
        row["setup"] = setup
    return rows


def simulate_world(args: argparse.Namespace) -> list[dict]:
    """The synthetic world at scale against its targets (no anchor exists to run beside
    it): one million customers over 104 weeks in at most 3 minutes and 8 GB."""
    from benchmarks.simulate_world import simulate_scale

    runs = [simulate_scale(args.world_customers) for _ in range(args.rounds)]
    rows = runs[0]["rows"]
    return [
        {
            "benchmark": "simulate_world",
            "system": "custlab simulate_world",
            "seconds": statistics.median(r["seconds"] for r in runs),
            "peak GB": statistics.median(r["peak_rss_gb"] for r in runs),
            "seconds vs target (180)": statistics.median(r["seconds"] for r in runs) / 180,
            "peak vs target (8 GB)": statistics.median(r["peak_rss_gb"] for r in runs) / 8,
            "setup": f"{args.world_customers:,} customers, 104 weeks, {args.rounds} runs in a "
            f"fresh process each; rows: " + ", ".join(f"{name} {n:,}" for name, n in rows.items()),
        }
    ]


def feature_snapshot(args: argparse.Namespace) -> list[dict]:
    """One snapshot of every feature family at scale against its targets (no anchor exists
    to run beside it): one million customers in at most 60 seconds and 8 GB."""
    from benchmarks.feature_snapshot import snapshot_scale

    home = ROOT / ".custlab" / "bench-snapshot"
    runs = [snapshot_scale(home, args.world_customers) for _ in range(args.rounds)]
    rows = runs[0]["rows"]
    seconds = statistics.median(r["build_seconds"] for r in runs)
    peak = statistics.median(r["peak_rss_gb"] for r in runs)
    return [
        {
            "benchmark": "feature_snapshot",
            "system": "custlab build_snapshots",
            "seconds": seconds,
            "peak GB": peak,
            "read seconds": statistics.median(r["read_seconds"] for r in runs),
            "seconds vs target (60)": seconds / 60,
            "peak vs target (8 GB)": peak / 8,
            "setup": f"{args.world_customers:,} customers, the newest weekly as-of date, "
            f"{runs[0]['features']} features of 6 families, {args.rounds} runs in a fresh "
            "process each (peak includes the raw tables it reads); rows: "
            + ", ".join(f"{name} {n:,}" for name, n in rows.items()),
        }
    ]


def online_store(args: argparse.Namespace) -> list[dict]:
    """custlab's Feast online store against Feast's stock SQLite store, in one run:
    materializing a million customers, and reading 1,000 customers' full vectors."""
    from benchmarks.online_store import run

    with tempfile.TemporaryDirectory(prefix="custlab-online-", dir="/tmp") as home:
        table = run(args.world_customers, Path(home).resolve())
    return table.to_dict("records")


def cdnow_clv(args: argparse.Namespace) -> list[dict]:
    """Customer value on the CDNOW holdout: BG/NBD + Gamma-Gamma (the published protocol
    and custlab's baseline) against LightGBM trained through custlab's CLV task."""
    from benchmarks.cdnow_clv import compare

    return compare(n_trials=args.trials or 20)


def tuning(args: argparse.Namespace) -> list[dict]:
    """50 Optuna trials for churn on 200,000 training rows: custlab's study with one and
    two jobs against a plain Optuna + LightGBM loop, with a target of 10 minutes."""
    from benchmarks.tuning import compare

    return compare(n_trials=args.trials or 50, train_rows=args.train_rows, customers=args.customers)


def telco_churn(args: argparse.Namespace) -> list[dict]:
    """Telco churn through the labelled path (nested 5-fold CV) beside plain
    scikit-learn logistic regression and HistGradientBoosting on the same file."""
    from benchmarks.telco_churn import compare

    return compare(n_trials=args.trials or 20)


BENCHMARKS: dict[str, Callable[[argparse.Namespace], list[dict]]] = {
    "serving_churn": serving_churn,
    "simulate_world": simulate_world,
    "feature_snapshot": feature_snapshot,
    "online_store": online_store,
    "cdnow_clv": cdnow_clv,
    "tuning": tuning,
    "telco_churn": telco_churn,
}


def write_results(rows: list[dict], started: datetime) -> Path:
    """Merge ``rows`` into the results table, replacing earlier rows of the same benchmark."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    json_path = RESULTS / "results.json"
    previous = json.loads(json_path.read_text())["rows"] if json_path.exists() else []
    fresh = {r["benchmark"] for r in rows}
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    stamped = [r | {"measured": f"{started:%Y-%m-%d}", "machine": machine} for r in rows]
    merged = [r for r in previous if r["benchmark"] not in fresh] + stamped
    json_path.write_text(json.dumps({"rows": merged}, indent=2))
    table = pd.DataFrame(merged)
    lines = [
        "# custlab benchmark results",
        "",
        "Medians over alternating rounds; ratios are "
        "custlab over its anchor measured in the same run.",
        "",
    ]
    for name, group in table.groupby("benchmark", sort=False):
        lines += [
            f"## {name}",
            "",
            f"{group['setup'].iloc[0]}; {group['machine'].iloc[0]}; "
            f"measured {group['measured'].iloc[0]}",
            "",
        ]
        shown = group.drop(columns=["benchmark", "setup", "machine", "measured"])
        shown = shown.dropna(axis=1, how="all")
        # Scores such as ROC-AUC differ in the third decimal; everything else shows two.
        formats = tuple(".4f" if "AUC" in column else ".2f" for column in shown.columns)
        lines += [shown.to_markdown(index=False, floatfmt=formats), ""]
    md_path = RESULTS / "results.md"
    md_path.write_text("\n".join(lines))
    return md_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=sorted(BENCHMARKS), action="append")
    parser.add_argument(
        "--customers", type=int, default=30_000, help="world size (serving_churn, tuning)"
    )
    parser.add_argument("--world-customers", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--trials",
        type=int,
        help="Optuna trials (default: cdnow_clv and telco_churn 20, tuning 50)",
    )
    parser.add_argument(
        "--train-rows", type=int, default=200_000, help="churn training rows (tuning)"
    )
    args = parser.parse_args()
    started = datetime.now(UTC)
    rows = [row for name in args.only or BENCHMARKS for row in BENCHMARKS[name](args)]
    path = write_results(rows, started)
    print(path.read_text())


if __name__ == "__main__":
    main()
