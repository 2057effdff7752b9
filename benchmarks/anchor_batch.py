"""The batch-scoring anchor: what a skilled user writes to score every customer with the
four champions, as plainly as it goes.

    python -m benchmarks.anchor_batch HOME OUT

Reads each feature family's newest snapshot date with pyarrow (the date filtered while
reading, as custlab does), joins the families on the customer, hands LightGBM the frame
with categories typed as the levels each booster recorded, and writes one parquet of
ids and scores a task. No calibration, tiers, population, MLflow run or all-or-nothing
folder: custlab does those on top.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightgbm as lgb
import mlflow
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

TASKS = ("churn", "propensity", "clv", "lifecycle")


def newest_rows(offline: Path) -> pd.DataFrame:
    families = json.loads((offline / "families.json").read_text())
    as_of = pd.Timestamp(families["last_as_of"])
    frame = None
    for family in families["families"]:
        path = offline / f"{family}.parquet"
        column = pq.read_schema(path).field("event_timestamp").type
        when = pa.scalar(as_of.to_pydatetime(), type=column)
        part = pq.read_table(path, filters=pc.field("event_timestamp") == when).to_pandas()
        part = part.drop(columns="event_timestamp")
        frame = part if frame is None else frame.merge(part, on="customer_id", how="left")
    assert frame is not None
    return frame


def champion(task: str) -> lgb.Booster:
    folder = mlflow.artifacts.download_artifacts(f"models:/custlab-{task}@champion")
    return lgb.Booster(model_file=str(Path(folder, "artifacts", "booster.txt")))


def main(home: Path, out: Path) -> None:
    mlflow.set_tracking_uri(f"sqlite:///{(home / 'mlflow.db').resolve()}")
    frame = newest_rows(home / "offline")
    out.mkdir(parents=True, exist_ok=True)
    for task in TASKS:
        booster = champion(task)
        names = booster.feature_name()
        rows = frame[names].copy()
        levels = dict(zip(_categorical(booster), booster.pandas_categorical or [], strict=True))
        for name, known in levels.items():
            rows[name] = pd.Categorical(rows[name], categories=known)
        score = booster.predict(rows)
        scores = pd.DataFrame({"customer_id": frame["customer_id"]})
        if score.ndim == 2:
            scores["score"] = score.max(axis=1)
            scores["class"] = score.argmax(axis=1)
        else:
            scores["score"] = score
        scores.to_parquet(out / f"{task}.parquet", index=False)


def _categorical(booster: lgb.Booster) -> list[str]:
    indices = booster.params.get("categorical_feature") or []
    indices = [indices] if isinstance(indices, (int, str)) else indices
    return [booster.feature_name()[int(i)] for i in indices]


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
