"""A worker process of an Optuna study: ``python -m training.tune_worker JOB``, started
by :func:`training.tune.tune_task` with ``workers > 1``; it runs trials until the study
holds its budget."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from training.tune import run_worker

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    run_worker(Path(sys.argv[1]))
