"""How a past week's predictions did once its labels matured: Evidently's classification
or regression report of the labels against what was predicted then, with the task's own
metric (the one that decides tuning and promotion) computed inside the same report, so
that the workspace's dashboard can plot it (:mod:`monitoring.workspace`)."""

from __future__ import annotations

import functools
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from monitoring.workspace import TASK_METRIC, save_report
from training.objectives import OBJECTIVES

if TYPE_CHECKING:
    from training.tasks import TaskSpec

logger = logging.getLogger(__name__)

# A multiclass report's column of the most probable class.
PREDICTED_CLASS = "predicted_class"


@functools.cache
def _task_metric_type() -> type:
    """The Evidently metric of a task's own metric: ``metric`` of ``objective``'s metric
    set (:mod:`training.objectives`), of the ``target`` column against the
    ``prediction`` columns. Defined on first use: Evidently takes seconds to import.

    Its results are plain single values, so the workspace's UI reads them without this
    class.
    """
    from evidently.core.metric_types import SingleValueCalculation, SingleValueMetric

    # Evidently names a metric by its class: this one is TASK_METRIC.
    class CustlabMetric(SingleValueMetric):
        metric: str
        objective: str
        target: str
        prediction: list[str]
        classes: list[str] = []

        # No default tests: the policy, not the report, says what a drop means.
        def _default_tests(self, context: Any) -> list:
            return []

        def _default_tests_with_reference(self, context: Any) -> list:
            return []

    class CustlabMetricCalculation(SingleValueCalculation[CustlabMetric]):
        def calculate(self, context: Any, current_data: Any, reference_data: Any) -> tuple:
            spec = self.metric
            rows = current_data.as_dataframe()
            objective = OBJECTIVES[spec.objective]
            prediction = rows[spec.prediction].to_numpy(dtype=np.float64)
            if prediction.shape[1] == 1:
                prediction = prediction[:, 0]
            targets = objective.targets(rows[spec.target], spec.classes)
            return self.result(float(objective.metrics(targets, prediction)[spec.metric])), None

        def display_name(self) -> str:
            return f"custlab {self.metric.metric}"

    return CustlabMetric


def _inputs(
    frame: pd.DataFrame, task: TaskSpec, prediction_columns: list[str]
) -> tuple[pd.DataFrame, Any, list[str]]:
    """The rows as Evidently reads them, their data definition, and the columns that
    hold the predictions.

    Raises:
        ValueError: Columns missing, the wrong number of prediction columns for the
            objective, a label missing or outside the task's classes, a prediction
            that is not finite.
    """
    from evidently import (
        BinaryClassification,
        DataDefinition,
        MulticlassClassification,
        Regression,
    )

    missing = [c for c in [task.label, *prediction_columns] if c not in frame]
    if missing:
        raise ValueError(f"performance of {task.name}: no column {', '.join(missing)}")
    if len(frame) == 0:
        raise ValueError(f"performance of {task.name}: no rows")
    expected = len(task.classes) if task.objective.name == "multiclass" else 1
    if len(prediction_columns) != expected:
        raise ValueError(
            f"performance of {task.name} ({task.objective.name}): {expected} prediction "
            f"column(s) expected, got {len(prediction_columns)}"
        )
    predictions = frame[prediction_columns].to_numpy(dtype=np.float64)
    if not np.isfinite(predictions).all():
        bad = int((~np.isfinite(predictions)).any(axis=1).sum())
        raise ValueError(f"performance of {task.name}: {bad:,} rows with no finite prediction")
    targets = task.targets(frame)  # raises on a missing or unknown label

    label = task.label
    if task.objective.name == "multiclass":
        # Evidently reads class probabilities from columns named as the classes.
        classes = list(task.classes)
        if {label, PREDICTED_CLASS} & set(classes):
            raise ValueError(f"performance of {task.name}: a class is named like a column")
        names = np.asarray(classes, dtype=object)
        rows = pd.DataFrame(predictions, columns=classes)
        rows[label] = names[targets]
        rows[PREDICTED_CLASS] = names[predictions.argmax(axis=1)]
        # Evidently 0.7 fails on probabilities of a class no row is labelled with (its
        # per-class ROC-AUC is undefined); such a week is reported on the most probable
        # class alone, without ROC-AUC and log loss.
        unlabelled = [c for i, c in enumerate(classes) if not (targets == i).any()]
        if unlabelled:
            logger.info(
                "performance of %s: no row labelled %s; no class probabilities in the report",
                task.name,
                ", ".join(unlabelled),
            )
        definition = DataDefinition(
            numerical_columns=classes,
            categorical_columns=[label, PREDICTED_CLASS],
            classification=[
                MulticlassClassification(
                    target=label,
                    prediction_labels=PREDICTED_CLASS,
                    prediction_probas=None if unlabelled else classes,
                )
            ],
        )
        return rows, definition, classes
    (column,) = prediction_columns
    rows = pd.DataFrame({label: targets, column: predictions[:, 0]})
    if task.objective.name == "binary":
        rows[label] = rows[label].astype(np.int64)
        definition = DataDefinition(
            numerical_columns=[column],
            classification=[
                BinaryClassification(target=label, prediction_probas=column, pos_label=1)
            ],
        )
    else:
        definition = DataDefinition(
            numerical_columns=[label, column],
            regression=[Regression(target=label, prediction=column)],
        )
    return rows, definition, [column]


def _snake(name: str) -> str:
    """``RocAuc`` -> ``roc_auc``, ``F1Score`` -> ``f1_score``, ``TPR`` -> ``tpr``."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def headline_metrics(report: dict[str, Any]) -> dict[str, float]:
    """The single figures of a performance snapshot's ``dict()``: each Evidently metric
    by its snake-case name (the mean of a mean-and-deviation figure; per-class figures
    left out), the task's own metric by its name."""
    figures: dict[str, float] = {}
    for metric in report["metrics"]:
        config, value = metric["config"], metric["value"]
        kind = config["type"].rsplit(":", 1)[-1]
        if kind == TASK_METRIC:
            figures[config["metric"]] = float(value)
        elif isinstance(value, int | float):
            figures[_snake(kind)] = float(value)
        elif isinstance(value, dict) and set(value) == {"mean", "std"}:
            figures[_snake(kind)] = float(value["mean"])
    return figures


def performance_report(
    frame: pd.DataFrame,
    task: TaskSpec,
    prediction_columns: list[str],
    out_dir: Path,
    max_rows: int = 50_000,
    seed: int = 0,
) -> dict[str, float]:
    """Evidently's classification (binary, multiclass) or regression (tweedie) report of
    ``frame``'s labels against the predictions made then, with the task's own metric,
    written as ``performance.html``, ``performance.json`` and
    ``performance.snapshot.json`` (:func:`monitoring.workspace.save_report`).

    Evidently reads at most ``max_rows`` rows (a seeded sample; its multiclass report
    takes about 17 s per 100,000 rows) and every figure returned comes from them.

    Args:
        frame: The task's label column (``task.label``) and the predictions.
        task: The task; its objective says which report, its classes their order.
        prediction_columns: Binary: the probability of the positive class; tweedie:
            the expected value; multiclass: one probability per class, in
            ``task.classes`` order (``p_<class>``).
        out_dir: The folder written into (created if missing).
        max_rows: The most rows Evidently reads.
        seed: Seeds the sample.

    Returns:
        The report's single figures by name: binary ``accuracy``, ``precision``,
        ``recall``, ``f1_score`` (at a 0.5 threshold), ``roc_auc``, ``log_loss``,
        ``tpr``, ``tnr``, ``fpr``, ``fnr``; multiclass the first six, macro-averaged
        (the first four alone when a class has no labelled row);
        regression ``mean_error``, ``mape``, ``rmse``, ``mae``, ``r2_score``,
        ``abs_max_error``; and the task's ``primary_metric`` under its own name.

    Raises:
        ValueError: Columns missing, the wrong number of prediction columns, a label
            missing or unknown, a prediction not finite, no rows.
    """
    from evidently import Dataset, Report
    from evidently.presets import ClassificationPreset, RegressionPreset

    if len(frame) > max_rows:
        frame = frame.sample(max_rows, random_state=seed)
    rows, definition, predicted = _inputs(frame, task, prediction_columns)
    preset = RegressionPreset() if task.objective.name == "tweedie" else ClassificationPreset()
    own = _task_metric_type()(
        metric=task.primary_metric,
        objective=task.objective.name,
        target=task.label,
        prediction=predicted,
        classes=list(task.classes),
    )
    snapshot = Report([preset, own], include_tests=True).run(
        Dataset.from_pandas(rows, data_definition=definition), None
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    save_report(snapshot, out_dir, "performance")
    figures = headline_metrics(snapshot.dict())
    logger.info(
        "performance of %s on %d rows: %s %.4f",
        task.name,
        len(rows),
        task.primary_metric,
        figures[task.primary_metric],
    )
    return figures
