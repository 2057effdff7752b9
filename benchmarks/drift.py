"""Drift verdicts at scale: custlab's engine (:func:`monitoring.columns.column_drift`)
against Evidently's plain ``DataDriftPreset`` on the same data, in the same run.

    python -m benchmarks.run --only drift [--world-customers 1000000] [--rounds 1]
    python -m benchmarks.drift --child custlab|evidently FOLDER   # what each child runs
    python -m benchmarks.drift --prepare ROWS FEATURES            # the data, once

The data is generated once per scale, seeded, as ``reference.parquet`` and
``current.parquet`` of ``rows`` rows each under ``.custlab/bench-drift/<rows>x<features>``:
four numerical columns in five (normal, log-normal amounts, Poisson counts, a 4-level
integer with 5% missing) and one categorical in five (text of 3, 8, 20 or 50 levels, a
level new in the current window now and then); every third column moves in the current
window by an amount that grows with its position, some past the 0.1 thresholds, some
not. Each system runs in a fresh child process (:func:`benchmarks.processes.run_child`,
wall time and the child's own peak memory: imports, the parquet read and the drift
computation alike); each child also times its drift computation alone and prints its
per-column verdicts, which are compared column by column. The data is written by a child
too: Linux counts the launching process's own high-water memory into each child's peak
(it is carried over at ``exec``), so the launcher stays small (its mark is in the setup).

Targets (issue 10): 1,000,000 rows x 60 features in at most 60 s and 4 GB, at least 3x
faster than the plain preset on the same data with the same verdicts. The preset also
runs on half the rows and 35 columns, the scale it was first measured at (about 52 s
and 1.5 GB).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.processes import ROOT, Child, run_child

TARGET_SECONDS = 60
TARGET_GB = 4
HOME = ROOT / ".custlab" / "bench-drift"
CUSTLAB = "custlab monitoring.columns.column_drift"
EVIDENTLY = "Evidently DataDriftPreset (plain)"


@dataclass(frozen=True)
class Scale:
    rows: int  # of each window
    features: int

    @property
    def folder(self) -> Path:
        return HOME / f"{self.rows}x{self.features}"


def _window(rng: np.random.Generator, rows: int, features: int, moved: bool) -> pd.DataFrame:
    columns: dict[str, np.ndarray] = {}
    for i in range(features):
        shift = 0.04 * (1 + i % 7) if moved and i % 3 == 0 else 0.0
        name = f"f{i:02d}"
        if i % 5 == 4:
            size = (3, 8, 20, 50)[i // 5 % 4]
            extra = 1 if moved and i % 10 == 9 else 0
            levels = np.array([f"level_{j}" for j in range(size + extra)], dtype=object)
            weights = np.linspace(1.0, 2.0, size + extra)
            weights[: size // 2] *= 1 + 4 * shift
            if extra:
                weights[-1] = weights[:size].mean() * 0.02
            # One object per level: a column of references, as parquet reads them back.
            columns[name] = levels[rng.choice(len(levels), rows, p=weights / weights.sum())]
        elif i % 5 == 0:
            columns[name] = rng.normal(shift, 1, rows)
        elif i % 5 == 1:
            columns[name] = rng.lognormal(3 + shift, 1, rows)
        elif i % 5 == 2:
            columns[name] = rng.poisson(3 * (1 + shift), rows).astype(np.float64)
        else:
            weights = np.array([1 + 4 * shift, 1, 1, 1])
            values = rng.choice(4, rows, p=weights / weights.sum()).astype(np.float64)
            values[rng.random(rows) < 0.05] = np.nan
            columns[name] = values
    return pd.DataFrame(columns)


def prepare(scale: Scale, seed: int = 0) -> Path:
    """Write the scale's two windows and their column kinds (once; reused after)."""
    folder = scale.folder
    if (folder / "columns.json").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "benchmarks.drift", "--prepare"]
    run_child([*command, str(scale.rows), str(scale.features), str(seed)])
    return folder


def _write(scale: Scale, seed: int) -> None:
    folder = scale.folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for side, moved in (("reference", False), ("current", True)):
        _window(rng, scale.rows, scale.features, moved).to_parquet(folder / f"{side}.parquet")
    names = [f"f{i:02d}" for i in range(scale.features)]
    kinds = {
        "numerical": [n for i, n in enumerate(names) if i % 5 != 4],
        "categorical": [n for i, n in enumerate(names) if i % 5 == 4],
    }
    (folder / "columns.json").write_text(json.dumps(kinds))


def _child(system: str, folder: Path) -> dict:
    """One system's verdicts on the folder's windows, in this process."""
    import pyarrow.parquet as pq

    if system == "evidently":
        from evidently import DataDefinition, Dataset, Report
        from evidently.presets import DataDriftPreset

        from monitoring.drift import summarize_drift
    else:
        from monitoring.columns import column_drift

    kinds = json.loads((folder / "columns.json").read_text())
    numerical, categorical = kinds["numerical"], kinds["categorical"]
    started = time.perf_counter()
    reference = pq.read_table(folder / "reference.parquet").to_pandas()
    current = pq.read_table(folder / "current.parquet").to_pandas()
    read = time.perf_counter()
    if system == "evidently":
        definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
        snapshot = Report([DataDriftPreset()]).run(
            Dataset.from_pandas(current, data_definition=definition),
            Dataset.from_pandas(reference, data_definition=definition),
        )
        summary = summarize_drift(snapshot.dict())
    else:
        summary = column_drift(reference, current, numerical, categorical)
    done = time.perf_counter()
    return {
        "read_seconds": read - started,
        "drift_seconds": done - read,
        "verdicts": {name: [c.method, c.score, c.drifted] for name, c in summary.columns.items()},
    }


def _measure(system: str, folder: Path) -> tuple[Child, dict]:
    command = [sys.executable, "-m", "benchmarks.drift", "--child", system, str(folder)]
    child = run_child(command, os.environ | {"PYTHONWARNINGS": "ignore"})
    return child, json.loads(child.output.strip().splitlines()[-1])


def _agreement(ours: dict, theirs: dict) -> tuple[int, float]:
    """Columns whose method or verdict differ, and the largest relative score gap."""
    differ, gap = 0, 0.0
    for name, (method, score, drifted) in theirs.items():
        our_method, our_score, our_drifted = ours[name]
        differ += (our_method, our_drifted) != (method, drifted)
        gap = max(gap, abs(our_score - score) / max(abs(score), 1e-12))
    return differ, gap


def compare(rows: int, rounds: int) -> list[dict]:
    """custlab and the plain preset at ``rows`` x 60 features and at half the rows x 35,
    ``rounds`` rounds alternating the systems; medians."""
    scales = {"drift": Scale(rows, 60), "drift_35_columns": Scale(rows // 2, 35)}
    folders = {name: prepare(scale) for name, scale in scales.items()}
    load_before = os.getloadavg()[0]
    runs: dict[tuple[str, str], list[tuple[Child, dict]]] = {}
    for _ in range(rounds):
        for name, folder in folders.items():
            for system in ("custlab", "evidently"):
                runs.setdefault((name, system), []).append(_measure(system, folder))
    load_after = os.getloadavg()[0]
    launcher_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2

    table = []
    for name, scale in scales.items():
        kinds = json.loads((folders[name] / "columns.json").read_text())
        medians = {}
        for system in ("custlab", "evidently"):
            done = runs[(name, system)]
            medians[system] = {
                "seconds": statistics.median(c.seconds for c, _ in done),
                "drift s": statistics.median(r["drift_seconds"] for _, r in done),
                "read s": statistics.median(r["read_seconds"] for _, r in done),
                "peak GB": statistics.median(c.peak_rss_gb for c, _ in done),
            }
        ours, theirs = runs[(name, "custlab")][-1][1], runs[(name, "evidently")][-1][1]
        differ, gap = _agreement(ours["verdicts"], theirs["verdicts"])
        drifted = sum(v[2] for v in theirs["verdicts"].values())
        evidently_seconds = medians["evidently"]["seconds"]
        setup = (
            f"reference and current windows of {scale.rows:,} rows each, {scale.features} "
            f"features ({len(kinds['numerical'])} numerical: normal, log-normal, Poisson "
            f"counts, 4-level integer with 5% missing; {len(kinds['categorical'])} text "
            f"categories of 3-50 levels), {drifted} drifted by Evidently's verdict; each "
            "system a fresh child process (seconds: imports, parquet read and drift; "
            "'drift s': the drift call alone; peak: the child's, with the launcher's own "
            f"{launcher_gb:.2f} GB as its floor); Evidently 0.7: Report([DataDriftPreset()]) "
            f"defaults, verdicts from its ValueDrift scores; {rounds} round(s) alternating "
            f"the systems, medians; load average {load_before:.1f} before, "
            f"{load_after:.1f} after"
        )
        for system, label in (("custlab", CUSTLAB), ("evidently", EVIDENTLY)):
            m = medians[system]
            row = {
                "benchmark": name,
                "system": label,
                **m,
                "seconds vs Evidently": m["seconds"] / evidently_seconds,
                "speed-up": evidently_seconds / m["seconds"],
                "verdicts differing": differ,
                "max score gap": gap,
                "setup": setup,
            }
            if name == "drift" and system == "custlab":
                row[f"seconds vs target ({TARGET_SECONDS})"] = m["seconds"] / TARGET_SECONDS
                row[f"peak vs target ({TARGET_GB} GB)"] = m["peak GB"] / TARGET_GB
            table.append(row)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", choices=["custlab", "evidently"])
    parser.add_argument("--prepare", action="store_true")
    parser.add_argument("arguments", nargs="+", help="FOLDER, or ROWS FEATURES SEED")
    args = parser.parse_args()
    if args.prepare:
        rows, features, seed = (int(a) for a in args.arguments)
        _write(Scale(rows, features), seed)
    elif args.child:
        print(json.dumps(_child(args.child, Path(args.arguments[0]))))
    else:
        parser.error("--child SYSTEM FOLDER or --prepare ROWS FEATURES SEED")


if __name__ == "__main__":
    main()
