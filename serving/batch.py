"""Batch scoring: every customer the features know, scored by every champion, written as
parquet with an MLflow run that says what was scored with what.

The rows are the newest snapshot date of the offline tables, the rows the online store
was materialized from, so a batch score and an online answer about the same customer
agree. Each task's file holds, per customer: the score (class probabilities too, for a
multiclass task), the decision (tier and action, with the cuts the champion was
registered with), whether the customer is in the task's population and, when asked for,
the top reason codes. Scores come from the champions' trees compiled for many rows
(:mod:`training.forest`; LightGBM's own scores, a few times faster). Reason codes are
exact TreeSHAP values and cost 30 to 100 times a prediction (measured here: 0.4 to 1.5
ms a row a task), so a million customers are scored within a minute without them and
explained on request (``--reasons``) or one by one online.

A batch is written into a folder of its own and moved into place whole
(:func:`features.tables.staged_folder`): a reader sees the previous batch of the date or
the new one, never half of one.

On Dask (``dask=True``; the cluster profile's default) the chunks are scored on the
scheduler's workers (``dask_scheduler``, or a local cluster) and written here in order:
the same files as scored in this process, byte for byte in their values.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from custlab.settings import Settings
from features.cluster import dask_client, runs_on_dask
from features.contract import ENTITY_KEY, EVENT_TIMESTAMP
from features.errors import CustlabError
from features.labelled import read_labelled_features
from features.store import latest_as_of, read_features
from features.tables import staged_folder
from serving.models import load_champion_models
from serving.scoring import LoadedModel, from_margin
from training.labelled import find_table
from training.model_input import contributions
from training.registry import use_tracking

if TYPE_CHECKING:
    import distributed

logger = logging.getLogger(__name__)

BATCH_EXPERIMENT = "custlab-score-batch"
# Rows scored at a time: bounds the memory of the feature matrix and the contributions.
CHUNK_ROWS = 250_000
TOP_REASONS = 3


@dataclass(frozen=True)
class TaskBatch:
    """One task's part of a batch."""

    task: str
    model_version: str
    rows: int
    in_population: int
    tiers: dict[str, int]
    path: Path


@dataclass(frozen=True)
class BatchScores:
    """What a batch scored: per task its version, rows and tier counts, and where."""

    as_of: pd.Timestamp
    folder: Path
    tasks: dict[str, TaskBatch]
    unavailable: dict[str, str]
    seconds: float
    run_id: str
    reasons: bool

    def lines(self) -> list[str]:
        out = []
        for name, part in self.tasks.items():
            tiers = ", ".join(f"{tier} {count:,}" for tier, count in part.tiers.items())
            out.append(
                f"{name}: v{part.model_version}, {part.rows:,} customers "
                f"({part.in_population:,} in its population): {tiers}"
            )
        out += [f"{name}: not scored: {why}" for name, why in self.unavailable.items()]
        out.append(
            f"scored as of {self.as_of:%Y-%m-%d} in {self.seconds:.1f}s into {self.folder} "
            f"(MLflow run {self.run_id})"
        )
        return out


def batch_frames(
    settings: Settings, models: dict[str, LoadedModel]
) -> tuple[dict[str, pd.DataFrame], pd.Timestamp]:
    """The rows each champion scores, read once per source, and the newest as-of date
    among them: the event tasks' features at the newest snapshot date; for a champion of
    a labelled table, that table's newest row of each customer (a home of labelled
    tables alone publishes no snapshots)."""
    sources: dict[str | None, list[str]] = {}
    for name, model in models.items():
        sources.setdefault(model.record.labelled_table, []).append(name)
    frames, dates = {}, []
    for table, names in sources.items():
        if table is None:
            as_of = latest_as_of(settings)
            features = sorted({f for n in names for f in models[n].feature_names})
            frame = read_features(settings, features, dates=[as_of])
        else:
            rows = read_labelled_features(settings, find_table(settings, table))
            frame = rows.sort_values(EVENT_TIMESTAMP).drop_duplicates(ENTITY_KEY, keep="last")
            frame = frame.reset_index(drop=True)
            as_of = frame[EVENT_TIMESTAMP].max()
        if frame.empty:
            raise CustlabError(f"no feature rows to score for {', '.join(names)}")
        frames.update(dict.fromkeys(names, frame))
        dates.append(pd.Timestamp(as_of))
    return frames, max(dates)


def _chunks(frame: pd.DataFrame, rows: int) -> Iterator[pd.DataFrame]:
    for start in range(0, len(frame), rows):
        yield frame.iloc[start : start + rows].reset_index(drop=True)


def score_table(model: LoadedModel, rows: pd.DataFrame, reasons: bool) -> pa.Table:
    """One chunk of a task's batch file: ids, score, decision, population, and the top
    reason codes (feature and contribution) when ``reasons``."""
    task = model.task
    matrix = model.matrix(rows)
    if reasons:
        per_class = contributions(model.booster, matrix)
        prediction = from_margin(model, per_class.sum(axis=2))
    else:
        prediction = from_margin(model, model.raw_scores(matrix))
    tiers = task.policy.decide_all(prediction, model.record.tier_cuts)
    names = np.array([t.name for t in task.policy.tiers], dtype=object)
    actions = np.array([t.action for t in task.policy.tiers], dtype=object)
    multiclass = task.objective.name == "multiclass"
    columns: dict[str, pa.Array] = {
        ENTITY_KEY: pa.array(rows[ENTITY_KEY].astype(str).to_numpy()),
        "model_version": pa.array([model.version] * len(rows)),
        "score": pa.array(prediction.max(axis=1) if multiclass else prediction, pa.float64()),
        "tier": pa.array(names[tiers]).dictionary_encode(),
        "action": pa.array(actions[tiers]).dictionary_encode(),
        "in_population": pa.array(np.asarray(task.population(rows), dtype=bool)),
    }
    if multiclass:
        for index, name in enumerate(task.classes):
            columns[f"probability_{name}"] = pa.array(prediction[:, index], pa.float64())
    if reasons:
        if multiclass:
            pushes = per_class[np.arange(len(rows)), prediction.argmax(axis=1), :-1]
        else:
            pushes = per_class[:, 0, :-1]
        top = np.argsort(-pushes, axis=1, kind="stable")[:, :TOP_REASONS]
        features = np.array(model.feature_names, dtype=object)
        for rank in range(top.shape[1]):
            pushed = pushes[np.arange(len(rows)), top[:, rank]]
            # Only features that push the score up are reasons, as online.
            feature = np.where(pushed > 0, features[top[:, rank]], None)
            columns[f"reason_{rank + 1}"] = pa.array(feature, pa.string())
            columns[f"reason_{rank + 1}_contribution"] = pa.array(
                np.where(pushed > 0, pushed, np.nan), pa.float64()
            )
    return pa.table(columns)


def scores_folder(settings: Settings, as_of: pd.Timestamp) -> Path:
    return settings.scores_dir / f"{as_of:%Y-%m-%d}"


def _scored_chunks(
    model: LoadedModel,
    frame: pd.DataFrame,
    reasons: bool,
    chunk_rows: int,
    client: distributed.Client | None,
) -> Iterator[pa.Table]:
    """The task's chunks scored in order: here, or on the Dask workers (the model sent to
    each once, at most two chunks a worker in flight so memory stays bounded)."""
    chunks = _chunks(frame, chunk_rows)
    if client is None:
        yield from (score_table(model, rows, reasons) for rows in chunks)
        return
    (shared,) = client.scatter([model], broadcast=True)
    pending = deque()
    ahead = 2 * max(1, len(client.nthreads()))
    for rows in chunks:
        pending.append(client.submit(score_table, shared, rows, reasons, pure=False))
        if len(pending) >= ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _score_task(
    model: LoadedModel,
    frame: pd.DataFrame,
    folder: Path,
    reasons: bool,
    chunk_rows: int,
    client: distributed.Client | None = None,
) -> TaskBatch:
    path = folder / f"{model.task.name}.parquet"
    tiers: dict[str, int] = {t.name: 0 for t in model.task.policy.tiers}
    inside = 0
    writer: pq.ParquetWriter | None = None
    try:
        for part in _scored_chunks(model, frame, reasons, chunk_rows, client):
            if writer is None:
                writer = pq.ParquetWriter(path, part.schema)
            writer.write_table(part)
            for name, count in part.column("tier").to_pandas().value_counts().items():
                tiers[str(name)] += int(count)
            inside += int(np.sum(part.column("in_population").to_numpy()))
    finally:
        if writer is not None:
            writer.close()
    return TaskBatch(model.task.name, model.version, len(frame), inside, tiers, path)


def score_batch(
    settings: Settings,
    reasons: bool = False,
    chunk_rows: int = CHUNK_ROWS,
    dask: bool | None = None,
) -> BatchScores:
    """Score every customer of the newest snapshot (or labelled table) with every
    champion, on Dask when ``dask`` (default: in the cluster profile).

    Writes ``<home>/scores/<as-of date>/<task>.parquet`` (replacing an earlier batch of
    the same date whole) and records the run in MLflow's ``custlab-score-batch``
    experiment: versions, rows, tier counts and the folder.

    Raises:
        CustlabError: Nothing is published, or no task has a champion.
        ServiceUnavailable: The Dask scheduler cannot be reached.
    """
    started = time.perf_counter()
    on_dask = runs_on_dask(settings, dask)
    models, unavailable = load_champion_models(settings)
    if not models:
        raise CustlabError(
            "no task has a champion to score with; "
            + "; ".join(f"{n}: {why}" for n, why in unavailable.items())
        )
    frames, as_of = batch_frames(settings, models)
    final = scores_folder(settings, as_of)
    with (
        staged_folder(final) as staging,
        dask_client(settings) if on_dask else contextlib.nullcontext() as client,
    ):
        tasks = {
            name: _score_task(model, frames[name], staging, reasons, chunk_rows, client)
            for name, model in models.items()
        }
        summary = {
            "as_of": f"{as_of:%Y-%m-%d}",
            "reasons": reasons,
            "tasks": {
                name: {
                    "model_version": part.model_version,
                    "rows": part.rows,
                    "in_population": part.in_population,
                    "tiers": part.tiers,
                }
                for name, part in tasks.items()
            },
            "unavailable": unavailable,
            "dask": on_dask,
        }
        (staging / "summary.json").write_text(json.dumps(summary, indent=2))
    tasks = {name: replace(part, path=final / part.path.name) for name, part in tasks.items()}
    seconds = time.perf_counter() - started
    run_id = _record_run(settings, as_of, tasks, unavailable, final, seconds, reasons, on_dask)
    return BatchScores(as_of, final, tasks, unavailable, seconds, run_id, reasons)


def _record_run(
    settings: Settings,
    as_of: pd.Timestamp,
    tasks: dict[str, TaskBatch],
    unavailable: dict[str, str],
    folder: Path,
    seconds: float,
    reasons: bool,
    on_dask: bool,
) -> str:
    use_tracking(settings, BATCH_EXPERIMENT)
    with mlflow.start_run(run_name=f"score-batch {as_of:%Y-%m-%d}") as run:
        mlflow.set_tags({"as_of": f"{as_of:%Y-%m-%d}", "output": str(folder.resolve())})
        mlflow.log_params(
            {"reasons": reasons, "dask": on_dask}
            | {f"{name}_version": part.model_version for name, part in tasks.items()}
        )
        metrics = {"seconds": seconds}
        for name, part in tasks.items():
            metrics[f"{name}_rows"] = part.rows
            metrics[f"{name}_in_population"] = part.in_population
            for tier, count in part.tiers.items():
                metrics[f"{name}_tier_{tier}"] = count
        mlflow.log_metrics(metrics)
        if unavailable:
            mlflow.log_dict(unavailable, "unavailable.json")
        mlflow.log_artifact(str(folder / "summary.json"))
    return run.info.run_id
