"""The final fit on a Dask cluster (``lightgbm.dask``) once a training frame is too large
for one process to fit in reasonable time.

LightGBM's data-parallel learner builds each tree from histograms every worker makes of
its own partition of the rows, so the trees are those of one process up to the split
finding's float sums: close, not bit-equal. The trials of a study still run in one
process (their early stopping and pruning need a validation score each round); the model
that is registered is this fit, a plain :class:`lightgbm.Booster` like any other.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import lightgbm as lgb
import numpy as np
import pandas as pd

if TYPE_CHECKING:
    import distributed

    from custlab.settings import Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DaskFit:
    """Where and from what size the final fit runs on Dask.

    Attributes:
        min_rows: Fit on Dask when the rows to fit exceed this many.
        client: Opens a client of the cluster for the fit (and closes it after).
    """

    min_rows: int
    client: Callable[[], AbstractContextManager[distributed.Client]]

    def wanted(self, rows: int) -> bool:
        return rows > self.min_rows

    @classmethod
    def of(cls, settings: Settings) -> DaskFit | None:
        """The profile's: in the cluster profile, a final fit of more than
        ``dask_train_rows`` rows on its Dask cluster; elsewhere none."""
        from features.cluster import dask_client, runs_on_dask

        if not runs_on_dask(settings, None):
            return None
        return cls(settings.dask_train_rows, lambda: dask_client(settings))


def fit_on_dask(
    client: distributed.Client,
    params: dict[str, Any],
    features: pd.DataFrame,
    targets: np.ndarray,
    rounds: int,
) -> lgb.Booster:
    """A booster of ``rounds`` trees fitted with ``params`` on the cluster's workers, the
    rows split into one partition a worker (each worker uses its own threads)."""
    import dask.dataframe as dd

    workers = max(1, len(client.nthreads()))
    # Each worker runs as many threads as it has; the objective's own settings (a
    # multiclass's num_class too) pass as they are: the regressor's wrapper re-codes no
    # label, so a class absent from these rows keeps its place.
    params = {k: v for k, v in params.items() if k not in ("num_threads", "n_jobs")}
    # The label travels as a column of the rows, so both split alike.
    label = "__custlab_target__"
    frame = features.assign(**{label: np.asarray(targets, dtype=np.float64)})
    parts = client.persist(dd.from_pandas(frame, npartitions=workers, sort=False))
    model = lgb.DaskLGBMRegressor(client=client, n_estimators=rounds, **params)
    with warnings.catch_warnings():
        # The wrapper's own n_jobs default, which lightgbm.dask replaces as said above.
        warnings.filterwarnings("ignore", "Parameter n_jobs will be ignored")
        model.fit(parts.drop(columns=[label]), parts[label])
    logger.info(
        "fitted %d trees on %d Dask worker(s), %s rows", rounds, workers, f"{len(features):,}"
    )
    return model.booster_
