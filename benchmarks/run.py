"""Run named benchmarks, each beside its anchor in the same run, and write the results
table (``benchmarks/results/results.md`` and ``.json``).

    python -m benchmarks.run                         # every benchmark, default scale
    python -m benchmarks.run --only serving --customers 2000 --duration 2 --rounds 1
    python -m benchmarks.run --only tuning --customers 5000 --train-rows 20000 --trials 3

Machines here are shared and noisy: every figure is the median over ``--rounds`` rounds
that alternate custlab and its anchor, and the ratio to the anchor is what to compare.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from benchmarks.homes import trained_home
from benchmarks.servers import Server, free_port, start, stop, wait_ready, wait_warm
from benchmarks.wrk import WrkResult, ensure_wrk, run_wrk, write_script
from serving.launch import serve_command

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"


def _rounds(
    servers: list[Server], script: Path, connections: int, args: argparse.Namespace
) -> dict[str, list[WrkResult]]:
    """``args.rounds`` rounds that visit the servers in turn, each visit a warm-up run
    then a measured one."""
    results: dict[str, list[WrkResult]] = {server.name: [] for server in servers}
    for _ in range(args.rounds):
        for server in servers:
            url = server.url(server.score_path)
            run_wrk(url, script, connections, args.warmup)
            results[server.name].append(run_wrk(url, script, connections, args.duration))
    return results


def _errors(results: list[WrkResult]) -> str:
    """Every failure wrk counted over the measured runs, or "none"."""
    requests = sum(r.requests for r in results)
    parts = []
    if non_2xx := sum(r.non_2xx for r in results):
        parts.append(f"{non_2xx:,} of {requests:,} answers not 2xx/3xx")
    for kind in ("connect", "read", "write", "timeout"):
        if count := sum(r.socket_errors.get(kind, 0) for r in results):
            parts.append(f"{count:,} socket {kind} errors")
    return "; ".join(parts) or "none"


def _summary(benchmark: str, name: str, results: list[WrkResult]) -> dict:
    return {
        "benchmark": benchmark,
        "system": name,
        "requests/s": statistics.median(r.requests_per_s for r in results),
        "p50 ms": statistics.median(r.latency_ms[50] for r in results),
        "p90 ms": statistics.median(r.latency_ms[90] for r in results),
        "p99 ms": statistics.median(r.latency_ms[99] for r in results),
        "errors": _errors(results),
    }


CEILING = "ceiling: bare async FastAPI (uvicorn), features from a dict"
PLAIN_BENTOML = "plain BentoML service, same booster and dict"
CUSTLAB = "custlab (BentoML: online store, every task, reason codes, tiers, prediction log)"
BATCH_TARGET_MS = 50
DISTINCT_IDS = 1000


def serving(args: argparse.Namespace) -> list[dict]:
    """custlab's scoring service against two anchors over churn's booster, in one run:
    one id per request from 8 connections, and 1,000 ids in one body from one.

    The ceiling is a bare async FastAPI endpoint; the plain-BentoML anchor is BentoML's
    ordinary service doing the same, so the gap splits into what BentoML costs and what
    custlab's work (online store, four tasks, reason codes, prediction log) costs. The
    load comes from wrk on one thread (:mod:`benchmarks.wrk`); the servers take turns,
    one server worker each. Everything is written under ``.custlab/bench-serving-<N>``.
    """
    from custlab.settings import Settings
    from features.store import latest_as_of, read_features
    from training.model_input import model_matrix
    from training.registry import load_champion, use_tracking

    ensure_wrk()
    home = (ROOT / ".custlab" / f"bench-serving-{args.customers}").resolve()
    champions = trained_home(home, args.customers)
    if not champions.get("churn"):
        raise RuntimeError(f"{home} has no churn champion for the anchors to serve")
    settings = Settings(home=home)
    use_tracking(settings, "custlab-churn")
    booster, version = load_champion("custlab-churn")
    bench = home / "bench"
    bench.mkdir(exist_ok=True)
    model_file = bench / "anchor-model.txt"
    booster.save_model(str(model_file))
    latest = read_features(settings, dates=[latest_as_of(settings)])
    # The anchors get the rows already encoded as the model takes them (categories as codes).
    encoded = pd.DataFrame(model_matrix(booster, latest), columns=booster.feature_name())
    encoded.insert(0, "customer_id", latest["customer_id"].to_numpy())
    features_file = bench / "anchor-features.parquet"
    encoded.to_parquet(features_file)

    # Distinct customers with an order in the last year: every task scores them.
    active = latest.loc[latest["recency_days"] <= 365, "customer_id"]
    ids = active.sample(min(DISTINCT_IDS, len(active)), random_state=0).tolist()
    single = write_script(bench / "wrk-one-id.lua", [{"customer_ids": [cid]} for cid in ids])
    batch = write_script(bench / "wrk-batch.lua", [{"customer_ids": ids}])

    env = os.environ | {
        "CUSTLAB_HOME": str(home),
        "BENTOML_HOME": str(home / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "true",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "ANCHOR_MODEL": str(model_file),
        "ANCHOR_FEATURES": str(features_file),
    }
    ports = {name: free_port() for name in (CEILING, PLAIN_BENTOML, CUSTLAB)}
    servers = [
        Server(
            "ceiling",
            CEILING,
            [
                sys.executable, "-m", "uvicorn", "benchmarks.anchor_fastapi:app",
                "--host", "127.0.0.1", "--port", str(ports[CEILING]), "--workers", "1",
                "--log-level", "warning", "--no-access-log",
            ],
            ports[CEILING],
            score_path="/score",
        ),
        Server(
            "plain-bentoml",
            PLAIN_BENTOML,
            [
                sys.executable, "-m", "bentoml", "serve", "benchmarks.anchor_bentoml:PlainScoring",
                "--host", "127.0.0.1", "--port", str(ports[PLAIN_BENTOML]),
                "--working-dir", str(ROOT),
            ],
            ports[PLAIN_BENTOML],
            score_path="/score",
        ),
        Server(
            "custlab", CUSTLAB, serve_command("127.0.0.1", ports[CUSTLAB]), ports[CUSTLAB],
            score_path="/v1/score", warm_path="/v1/status",
        ),
    ]  # fmt: skip
    by_name = {server.name: server for server in servers}

    processes: dict[str, subprocess.Popen] = {}
    try:
        for server in servers:  # all at once: their start-ups overlap
            processes[server.key] = start(server, env, bench / f"{server.key}.log")
        for server in servers:
            wait_ready(server, processes[server.key])
        warmed = {server.key: wait_warm(server, processes[server.key]) for server in servers}
        load_before = os.getloadavg()[0]
        one_id = _rounds(servers, single, args.concurrency, args)
        many = _rounds([by_name[CEILING], by_name[CUSTLAB]], batch, 1, args)
    finally:
        for process in processes.values():
            stop(process)
    load_after = os.getloadavg()[0]

    rows = [_summary("serving", name, results) for name, results in one_id.items()]
    ceiling = next(row for row in rows if row["system"] == CEILING)
    for row in rows:
        row["rps vs ceiling"] = row["requests/s"] / ceiling["requests/s"]
        row["p50 vs ceiling"] = row["p50 ms"] / ceiling["p50 ms"]
    batch_rows = [_summary("serving_batch", name, results) for name, results in many.items()]
    for row in batch_rows:
        del row["p90 ms"]
        row["p50 vs target (50 ms)"] = row["p50 ms"] / BATCH_TARGET_MS

    leaves = sum(tree["num_leaves"] for tree in booster.dump_model()["tree_info"])
    served = ", ".join(task for task, promoted in champions.items() if promoted)
    common = (
        f"{args.customers:,} customers; anchors serve churn's champion v{version} "
        f"({booster.num_trees()} trees, {leaves:,} leaves) with no calibration or reason "
        f"codes; custlab POST {by_name[CUSTLAB].score_path} with champions of {served}; "
        f"wrk -t1, {args.rounds} round(s) visiting the servers in turn, {args.warmup} s "
        f"warm-up then {args.duration} s measured per visit, medians; one server worker each"
    )
    kept = {
        task: status.get("answers_kept")
        for task, status in warmed["custlab"].get("served", {}).items()
    }
    if any(kept.values()):
        common += (
            "; custlab measured once GET /v1/status said warmed (answers computed ahead: "
            + ", ".join(f"{task} {n:,}" for task, n in kept.items() if n)
            + ")"
        )
    load = f"load average {load_before:.1f} before, {load_after:.1f} after"
    for row in rows:
        row["setup"] = (
            f"{common}; one id per request from {args.concurrency} connections, cycling "
            f"over {len(ids):,} distinct active customers; {load}"
        )
    for row in batch_rows:
        row["setup"] = (
            f"{common}; one body of {len(ids):,} distinct active customers from 1 "
            f"connection, target p50 <= {BATCH_TARGET_MS} ms; {load}"
        )
    return rows + batch_rows


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
    """One snapshot of every feature family at scale against its targets (one million
    customers in at most 60 seconds and 8 GB), in one process and on a local Dask
    cluster of two workers, the two alternating in each round."""
    from benchmarks.feature_snapshot import snapshot_scale

    home = ROOT / ".custlab" / "bench-snapshot"
    runs: dict[bool, list[dict]] = {False: [], True: []}
    for _ in range(args.rounds):
        for dask in (False, True):
            runs[dask].append(snapshot_scale(home, args.world_customers, dask=dask))
    rows = runs[False][0]["rows"]

    def total(run: dict) -> float:
        return run["build_seconds"] + run.get("read_seconds", 0.0)

    here = statistics.median(total(r) for r in runs[False])
    start = statistics.median(r["start_seconds"] for r in runs[True])
    setup = (
        f"{args.world_customers:,} customers, the newest weekly as-of date, "
        f"{runs[False][0]['features']} features of 6 families, {args.rounds} round(s) "
        "alternating the two, each run in a fresh process; one process: peak includes the "
        "raw tables it reads, reading timed apart; Dask: a local cluster of 2 worker "
        "processes x 1 thread, each reading its ranges of customers (reading inside "
        "seconds), peak the driver's plus each worker's own, the cluster's start (median "
        f"{start:.1f} s) apart; rows: " + ", ".join(f"{name} {n:,}" for name, n in rows.items())
    )
    table = []
    for dask, system in (
        (False, "custlab build_snapshots (one process)"),
        (True, "custlab build_snapshots_on_dask (2 workers)"),
    ):
        measured = runs[dask]
        seconds = statistics.median(r["build_seconds"] for r in measured)
        peak = statistics.median(r["peak_rss_gb"] for r in measured)
        table.append(
            {
                "benchmark": "feature_snapshot",
                "system": system,
                "seconds": seconds,
                "peak GB": peak,
                "read seconds": statistics.median(r["read_seconds"] for r in measured)
                if not dask
                else None,
                "read + build vs one process": statistics.median(total(r) for r in measured) / here,
                "seconds vs target (60)": seconds / 60,
                "peak vs target (8 GB)": peak / 8,
                "setup": setup,
            }
        )
    return table


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


def score_batch(args: argparse.Namespace) -> list[dict]:
    """``custlab score-batch`` for a million customers against a plain predict-and-write
    script, with a target of 60 seconds."""
    from benchmarks.score_batch import compare

    return compare(args.world_customers, args.rounds, source_customers=args.customers)


def drift(args: argparse.Namespace) -> list[dict]:
    """Drift verdicts for ``--world-customers`` rows x 60 features (default 1,000,000)
    and half that x 35: custlab's numpy engine against Evidently's plain DataDriftPreset,
    with targets of 60 seconds, 4 GB and 3x faster."""
    from benchmarks.drift import compare

    return compare(args.world_customers, args.rounds)


def weekly(args: argparse.Namespace) -> list[dict]:
    """``custlab monitor --no-retrain`` for the four tasks on the demo world (``--customers``),
    with a target of 60 seconds."""
    from benchmarks.weekly import compare

    return compare(args.customers, args.rounds)


BENCHMARKS: dict[str, Callable[[argparse.Namespace], list[dict]]] = {
    "serving": serving,
    "score_batch": score_batch,
    "simulate_world": simulate_world,
    "feature_snapshot": feature_snapshot,
    "online_store": online_store,
    "cdnow_clv": cdnow_clv,
    "tuning": tuning,
    "telco_churn": telco_churn,
    "drift": drift,
    "weekly": weekly,
}


# Benchmarks renamed since rows of theirs were written: a fresh run drops the old rows.
RENAMED = {"serving_churn": "serving"}


def write_results(rows: list[dict], started: datetime) -> Path:
    """Merge ``rows`` into the results table, replacing earlier rows of the same benchmark."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    json_path = RESULTS / "results.json"
    previous = json.loads(json_path.read_text())["rows"] if json_path.exists() else []
    fresh = {r["benchmark"] for r in rows}
    fresh |= {old for old, new in RENAMED.items() if new in fresh}
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
        # Columns in the order the benchmark's own rows give them, not the merged table's.
        order = dict.fromkeys(key for row in merged if row["benchmark"] == name for key in row)
        shown = group[list(order)].drop(columns=["benchmark", "setup", "machine", "measured"])
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
        "--customers", type=int, default=30_000, help="world size (serving, score_batch, tuning)"
    )
    parser.add_argument("--world-customers", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--duration", type=int, default=10, help="seconds of each measured wrk run (serving)"
    )
    parser.add_argument(
        "--warmup", type=int, default=3, help="seconds of wrk warm-up before each (serving)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=8, help="wrk connections, one id each (serving)"
    )
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
