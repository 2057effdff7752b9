"""The anchor for the serving benchmark: a bare FastAPI endpoint over the same LightGBM
booster. Features come from an in-memory table of the newest snapshot, the least a
service can do to turn customer ids into scores: no feature store, no reason codes, no
prediction log. Run: ``uvicorn benchmarks.anchor_fastapi:app`` with ANCHOR_MODEL and
ANCHOR_FEATURES set to the model file and the features parquet.
"""

from __future__ import annotations

import os

import lightgbm as lgb
import numpy as np
import pandas as pd
from fastapi import FastAPI
from pydantic import BaseModel

# Benchmark tooling outside custlab's settings: the runner passes these two paths.
booster = lgb.Booster(model_file=os.environ["ANCHOR_MODEL"])
features = pd.read_parquet(os.environ["ANCHOR_FEATURES"]).set_index("customer_id")
features = features[booster.feature_name()].astype(np.float64)
app = FastAPI()


class Request(BaseModel):
    customer_ids: list[str]


@app.post("/v1/churn")
def churn(request: Request) -> dict[str, list[float]]:
    rows = features.reindex(request.customer_ids)
    return {"scores": booster.predict(rows).tolist()}
