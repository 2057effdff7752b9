"""Performance reports of matured labels against what was predicted then: for a binary, a
regression and a multiclass task, Evidently's figures equal scikit-learn's on the same
rows, the task's own metric equals custlab's, and the report is written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    mean_absolute_error,
    r2_score,
    roc_auc_score,
)

from monitoring.performance import performance_report
from training.objectives import normalized_gini
from training.tasks import get_task

ROWS = 3000


def _binary(rng: np.random.Generator) -> pd.DataFrame:
    churned = rng.integers(0, 2, ROWS)
    probability = np.clip(0.3 * churned + rng.uniform(0, 0.7, ROWS), 0, 1)
    return pd.DataFrame({"churned": churned.astype(bool), "prediction": probability})


def _multiclass(rng: np.random.Generator, classes: tuple[str, ...], labelled: int) -> pd.DataFrame:
    """Labels drawn from the first ``labelled`` classes; probabilities that favour them."""
    codes = rng.integers(0, labelled, ROWS)
    logits = rng.normal(0, 1, (ROWS, len(classes)))
    logits[np.arange(ROWS), codes] += 1.5
    probability = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    frame = pd.DataFrame(probability, columns=[f"p_{c}" for c in classes])
    frame["future_stage"] = np.asarray(classes)[codes]
    return frame


def _written(out: Path) -> dict:
    assert (out / "performance.html").stat().st_size > 10_000
    assert (out / "performance.snapshot.json").exists()
    return json.loads((out / "performance.json").read_text())


def test_binary_task_figures_equal_sklearn(tmp_path: Path):
    task = get_task("churn")
    frame = _binary(np.random.default_rng(0))
    figures = performance_report(frame, task, ["prediction"], tmp_path)

    report = _written(tmp_path)
    assert any(m["config"]["type"].endswith(":RocAuc") for m in report["metrics"])
    y, p = frame["churned"].astype(int), frame["prediction"]
    assert figures["roc_auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert figures["accuracy"] == pytest.approx(accuracy_score(y, p >= 0.5), abs=1e-12)
    assert {"precision", "recall", "f1_score", "log_loss", "tpr", "fpr"} <= set(figures)


def test_the_report_renders_and_loads_nothing_from_the_network(tmp_path: Path):
    from monitoring.browser import check_page

    performance_report(
        _binary(np.random.default_rng(7)), get_task("churn"), ["prediction"], tmp_path
    )
    check = check_page(tmp_path / "performance.html")
    assert check.external_requests == []
    assert check.console_errors == [] and check.page_errors == []
    assert check.text_length > 100


def test_regression_task_figures_equal_sklearn_and_its_own_metric(tmp_path: Path):
    task = get_task("clv")
    rng = np.random.default_rng(1)
    spend = rng.gamma(0.5, 200, ROWS) * (rng.uniform(size=ROWS) < 0.6)
    frame = pd.DataFrame({"future_spend": spend, "expected": spend * 0.7 + rng.gamma(1, 30, ROWS)})
    figures = performance_report(frame, task, ["expected"], tmp_path)

    _written(tmp_path)
    y, p = frame["future_spend"], frame["expected"]
    assert figures["mae"] == pytest.approx(mean_absolute_error(y, p), rel=1e-12)
    assert figures["r2_score"] == pytest.approx(r2_score(y, p), rel=1e-9)
    # Evidently has no Gini; the task's own metric is computed inside the report.
    assert figures["normalized_gini"] == pytest.approx(normalized_gini(y.to_numpy(), p.to_numpy()))


def test_multiclass_task_figures_equal_sklearn_in_class_order(tmp_path: Path):
    task = get_task("lifecycle")
    frame = _multiclass(np.random.default_rng(2), task.classes, len(task.classes))
    columns = [f"p_{c}" for c in task.classes]
    figures = performance_report(frame, task, columns, tmp_path)

    _written(tmp_path)
    codes = pd.Categorical(frame["future_stage"], categories=task.classes).codes
    probability = frame[columns].to_numpy()
    predicted = probability.argmax(axis=1)
    assert figures["accuracy"] == pytest.approx(accuracy_score(codes, predicted), abs=1e-12)
    assert figures["f1_score"] == pytest.approx(f1_score(codes, predicted, average="macro"))
    assert figures["roc_auc"] == pytest.approx(
        roc_auc_score(codes, probability, multi_class="ovr", average="macro")
    )
    assert figures["macro_f1"] == pytest.approx(figures["f1_score"])  # every class labelled


def test_multiclass_week_missing_a_class_is_reported_without_probabilities(tmp_path: Path):
    # Evidently fails on probabilities of a class no row is labelled with.
    task = get_task("lifecycle")
    frame = _multiclass(np.random.default_rng(3), task.classes, len(task.classes) - 1)
    columns = [f"p_{c}" for c in task.classes]
    figures = performance_report(frame, task, columns, tmp_path)

    _written(tmp_path)
    codes = pd.Categorical(frame["future_stage"], categories=task.classes).codes
    predicted = frame[columns].to_numpy().argmax(axis=1)
    assert figures["accuracy"] == pytest.approx(accuracy_score(codes, predicted), abs=1e-12)
    assert "roc_auc" not in figures and "macro_f1" in figures


def test_a_frame_larger_than_max_rows_is_sampled(tmp_path: Path):
    task = get_task("churn")
    frame = _binary(np.random.default_rng(4))
    sample = frame.sample(1000, random_state=5)
    figures = performance_report(frame, task, ["prediction"], tmp_path, max_rows=1000, seed=5)
    assert figures["roc_auc"] == pytest.approx(
        roc_auc_score(sample["churned"].astype(int), sample["prediction"]), abs=1e-12
    )


@pytest.mark.parametrize(
    ("task", "change", "message"),
    [
        ("churn", lambda f: f.assign(extra=f["prediction"]), "1 prediction column"),
        ("churn", lambda f: f.drop(columns="churned"), "no column churned"),
        ("churn", lambda f: f.assign(prediction=np.nan), "no finite prediction"),
        ("churn", lambda f: f.iloc[:0], "no rows"),
        ("clv", lambda f: f.assign(future_spend=np.nan), "missing labels"),
        ("lifecycle", lambda f: f.assign(future_stage="unknown"), "outside the task's classes"),
    ],
)
def test_inputs_that_do_not_fit_the_task_are_refused(task, change, message, tmp_path: Path):
    spec = get_task(task)
    rng = np.random.default_rng(6)
    if spec.objective.name == "multiclass":
        frame = _multiclass(rng, spec.classes, len(spec.classes))
        columns = [f"p_{c}" for c in spec.classes]
    else:
        frame = _binary(rng).rename(columns={"churned": spec.label})
        columns = ["prediction"]
    frame = change(frame)
    if "extra" in frame:
        columns = [*columns, "extra"]
    with pytest.raises(ValueError, match=message):
        performance_report(frame, spec, columns, tmp_path)
    assert not (tmp_path / "performance.html").exists()
