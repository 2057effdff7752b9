"""Where a home keeps its monitoring: a folder per ISO week and task, the audit trail
beside them, and the name of the prediction column every report carries."""

from __future__ import annotations

from pathlib import Path

from custlab.settings import Settings
from monitoring.audit import AUDIT_FILE
from monitoring.weeks import IsoWeek

# The champion's prediction as one more column of the compared rows (a multiclass
# model's: the probability of its top class; ``p_<class>`` columns beside it).
PREDICTION = "prediction"
# What was predicted in a week, kept in its folder to be judged once labels mature.
PREDICTIONS_FILE = "predictions.parquet"


def week_folder(settings: Settings, task: str, week: IsoWeek) -> Path:
    return settings.reports_dir / str(week) / task


def audit_path(settings: Settings) -> Path:
    return settings.reports_dir / AUDIT_FILE
