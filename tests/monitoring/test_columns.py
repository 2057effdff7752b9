"""The numpy drift engine gives Evidently's DataDriftPreset verdicts per column: the same
method, the same verdict and the same score (to rounding) on drifted and stable columns,
large references (distances) and small ones (p-value tests), and on the edge cases
Evidently handles; where Evidently raises, a status instead of a crash."""

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from monitoring.columns import (
    CHI_SQUARE,
    JENSEN_SHANNON,
    KS,
    NO_METHOD,
    WASSERSTEIN,
    Z_TEST,
    column_drift,
    default_method,
    wasserstein_sorted,
)
from monitoring.drift import drift_report, summarize_drift

NUMERICAL = ["stable", "shifted", "slight", "skewed", "counts", "levels", "flag"]
CATEGORICAL = ["channel", "region", "plan"]


def _window(rng: np.random.Generator, rows: int, drift: bool) -> pd.DataFrame:
    """Ten columns; with ``drift`` some move (by a lot, a little, or not at all)."""
    d = 1.0 if drift else 0.0
    levels = rng.choice(4, rows, p=[0.4, 0.3, 0.2, 0.1] if not drift else [0.2, 0.3, 0.2, 0.3])
    levels = levels.astype(float)
    levels[rng.random(rows) < 0.05] = np.nan
    regions = np.array([f"r{i}" for i in range(12)] + (["r12"] if drift else []), dtype=object)
    return pd.DataFrame(
        {
            "stable": rng.normal(0, 1, rows),
            "shifted": rng.normal(0.8 * d, 1, rows),
            "slight": rng.normal(0.05 * d, 1, rows),
            "skewed": rng.lognormal(3 + 0.3 * d, 1, rows),
            "counts": rng.poisson(3 + d, rows).astype(float),
            "levels": levels,
            "flag": (rng.random(rows) < 0.3 + 0.2 * d).astype(float),
            "channel": rng.choice(np.array(["web", "app", "store"], dtype=object), rows),
            "region": rng.choice(regions, rows),
            "plan": rng.choice(
                np.array(["basic", "plus"], dtype=object), rows, p=[0.5 - 0.3 * d, 0.5 + 0.3 * d]
            ),
        }
    )


def _evidently(
    reference: pd.DataFrame, current: pd.DataFrame, numerical: list[str], categorical: list[str]
):
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    columns = numerical + categorical
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snapshot = Report([DataDriftPreset()], include_tests=True).run(
            Dataset.from_pandas(current[columns], data_definition=definition),
            Dataset.from_pandas(reference[columns], data_definition=definition),
        )
    return summarize_drift(snapshot.dict())


def _assert_same_verdicts(ours, theirs, same_count: bool = True) -> None:
    """Equal per-column verdicts, and the share they make; with ``same_count``, also the
    share Evidently's own DriftedColumnsCount reports (a second computation of its own,
    which keeps infinite values in a column without missing ones)."""
    assert sorted(ours.columns) == sorted(theirs.columns)
    for name, expected in theirs.columns.items():
        got = ours.columns[name]
        assert (got.method, got.drifted) == (expected.method, expected.drifted), name
        assert got.threshold == expected.threshold, name
        assert got.score == pytest.approx(expected.score, rel=1e-7, abs=1e-12), name
    assert ours.share_drifted == pytest.approx(len(theirs.drifted_columns) / len(theirs.columns))
    if same_count:
        assert ours.share_drifted == pytest.approx(theirs.share_drifted)
        assert ours.dataset_drift == theirs.dataset_drift


@pytest.mark.parametrize("reference_rows", [5000, 600], ids=["large", "small"])
def test_verdicts_equal_evidently_on_generated_shifts(reference_rows: int):
    rng = np.random.default_rng(reference_rows)
    reference = _window(rng, reference_rows, drift=False)
    current = _window(rng, 4000, drift=True)
    ours = column_drift(reference, current, NUMERICAL, CATEGORICAL)
    _assert_same_verdicts(ours, _evidently(reference, current, NUMERICAL, CATEGORICAL))
    methods = {c.method for c in ours.columns.values()}
    if reference_rows > 1000:
        assert methods == {WASSERSTEIN.display_name, JENSEN_SHANNON.display_name}
        assert ours.drifted_columns == [
            "counts",
            "flag",
            "levels",
            "plan",
            "region",
            "shifted",
            "skewed",
        ]
    else:
        assert methods == {KS.display_name, CHI_SQUARE.display_name, Z_TEST.display_name}
    assert not ours.columns["stable"].drifted
    assert ours.columns["region"].status == "new in current: 'r12'"


def test_stable_world_is_quiet_and_equal_to_evidently():
    rng = np.random.default_rng(3)
    reference, current = _window(rng, 5000, drift=False), _window(rng, 5000, drift=False)
    ours = column_drift(reference, current, NUMERICAL, CATEGORICAL)
    _assert_same_verdicts(ours, _evidently(reference, current, NUMERICAL, CATEGORICAL))
    assert ours.drifted_columns == []


def _edge_windows(rows: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(7)
    ref_inf = rng.normal(0, 1, rows)
    ref_inf[rng.random(rows) < 0.02] = np.inf
    ref_inf[:3] = -np.inf
    reference = pd.DataFrame(
        {
            "with_inf": ref_inf,
            "constant": np.ones(rows),
            "constant_moved": np.ones(rows),
            "constant_ref": np.zeros(rows),
            "mostly_missing": np.where(rng.random(rows) < 0.9, np.nan, rng.normal(0, 1, rows)),
            "integers": pd.array(rng.integers(0, 50, rows), dtype="Int64"),
            "new_category": rng.choice(np.array(["a", "b"], dtype=object), rows),
            "category_dtype": pd.Categorical(rng.choice(["x", "y", "z"], rows)),
            "codes": rng.integers(0, 3, rows),
        }
    )
    current = pd.DataFrame(
        {
            "with_inf": np.where(rng.random(rows) < 0.1, -np.inf, rng.normal(0, 1, rows)),
            "constant": np.ones(rows),
            "constant_moved": np.full(rows, 2.0),
            "constant_ref": rng.normal(0, 1, rows),
            "mostly_missing": np.where(rng.random(rows) < 0.5, np.nan, rng.normal(0, 1, rows)),
            "integers": pd.array(rng.integers(0, 50, rows), dtype="Int64"),
            "new_category": rng.choice(np.array(["a", "b", "c", None], dtype=object), rows),
            "category_dtype": pd.Categorical(rng.choice(["x", "y"], rows), categories=["y", "x"]),
            "codes": rng.integers(0, 4, rows),
        }
    )
    return reference, current


EDGE_NUMERICAL = ["with_inf", "constant", "constant_moved", "constant_ref", "mostly_missing"]
EDGE_NUMERICAL += ["integers"]
EDGE_CATEGORICAL = ["new_category", "category_dtype", "codes"]


@pytest.mark.parametrize("rows", [3000, 500])
def test_edge_cases_evidently_handles_give_its_verdicts(rows: int):
    reference, current = _edge_windows(rows)
    ours = column_drift(reference, current, EDGE_NUMERICAL, EDGE_CATEGORICAL)
    theirs = _evidently(reference, current, EDGE_NUMERICAL, EDGE_CATEGORICAL)
    # Evidently's count keeps the current's -inf in "with_inf" (no NaN there): with 3,000
    # rows its Wasserstein is NaN there (not drifted), with 500 its K-S test drifts.
    _assert_same_verdicts(ours, theirs, same_count=False)
    status = {name: c.status for name, c in ours.columns.items()}
    assert status["with_inf"].startswith("infinite values ignored: ")
    assert status["constant"] == "constant: both windows hold only 1"
    assert status["constant_ref"] == "the reference is constant (0)"
    assert "missing values ignored: " in status["mostly_missing"]
    assert status["new_category"].endswith("new in current: 'c'")
    assert status["codes"] == "new in current: 3"
    assert ours.columns["constant_moved"].drifted
    assert not ours.columns["constant"].drifted


def test_what_evidently_raises_on_gets_a_status():
    rows = 2000
    rng = np.random.default_rng(11)
    reference = pd.DataFrame(
        {
            "all_nan": np.full(rows, np.nan),
            "all_inf": np.full(rows, np.inf),
            "text": rng.choice(np.array(["1", "2"], dtype=object), rows),
            "fine": rng.normal(0, 1, rows),
            "cat_all_missing": np.full(rows, None, dtype=object),
        }
    )
    current = reference.assign(all_nan=rng.normal(0, 1, rows), all_inf=rng.normal(0, 1, rows))
    numerical = ["all_nan", "all_inf", "text", "fine"]
    summary = column_drift(reference, current, numerical, ["cat_all_missing"])
    status = {name: c.status for name, c in summary.columns.items()}
    empty = "no verdict: no finite value in the reference window"
    assert status == {
        "all_nan": f"{empty} (2,000 missing, 0 infinite)",
        "all_inf": f"{empty} (0 missing, 2,000 infinite)",
        "text": "no verdict: the reference window is not numerical (dtype object)",
        "fine": "ok",
        "cat_all_missing": f"{empty} (2,000 missing, 0 infinite)",
    }
    assert summary.unjudged_columns == ["all_inf", "all_nan", "cat_all_missing", "text"]
    assert all(math.isnan(summary.columns[n].score) for n in summary.unjudged_columns)
    assert summary.columns["all_nan"].method == NO_METHOD
    assert summary.share_drifted == 0.0
    assert summary.describe().endswith("no verdict for all_inf, all_nan, cat_all_missing, text")
    saved = json.loads(json.dumps(summary.to_dict(), allow_nan=False))
    assert saved["columns"]["all_nan"]["score"] is None
    # Evidently stops the whole report on such a column.
    with pytest.raises(ValueError, match="empty column 'all_nan'"):
        _evidently(reference, current, ["all_nan"], [])


def test_empty_current_window_gets_a_status():
    reference, current = _edge_windows(2000)
    summary = column_drift(reference, current.iloc[:0], EDGE_NUMERICAL, EDGE_CATEGORICAL)
    assert {c.status for c in summary.columns.values()} == {
        "no verdict: the current window has no rows"
    }
    assert not summary.dataset_drift


def test_method_rule_is_evidentlys():
    from evidently.legacy.calculations import stattests
    from evidently.legacy.calculations.stattests.registry import _get_default_stattest
    from evidently.legacy.core import ColumnType

    ours = {m.name: m for m in (WASSERSTEIN, JENSEN_SHANNON, KS, CHI_SQUARE, Z_TEST)}
    for test in (
        stattests.wasserstein_stat_test,
        stattests.jensenshannon_stat_test,
        stattests.ks_stat_test,
        stattests.chi_stat_test,
        stattests.z_stat_test,
    ):
        assert (ours[test.name].display_name, ours[test.name].threshold) == (
            test.display_name,
            test.default_threshold,
        )
    kinds = {"numerical": ColumnType.Numerical, "categorical": ColumnType.Categorical}
    for kind, column_type in kinds.items():
        for rows in (2, 1000, 1001, 5000):
            for distinct in (1, 2, 3, 5, 6, 40):
                reference = pd.Series(np.arange(rows) % distinct)
                current = pd.Series(np.arange(10) % distinct)
                expected = _get_default_stattest(reference, current, column_type)
                both = pd.concat([reference, current]).nunique()
                assert default_method(kind, rows, both).name == expected.name


@pytest.mark.parametrize(
    ("u", "v"),
    [
        (np.arange(10.0), np.arange(3.0, 8.0)),
        (np.array([1.0, 1, 1, 2, 2, 5]), np.array([1.0, 2, 2, 2, 5, 5, 5, 9])),
        (np.array([0.0]), np.array([3.0])),
        (np.random.default_rng(0).normal(0, 1, 999), np.random.default_rng(1).normal(0, 2, 1234)),
        (np.round(np.random.default_rng(2).normal(0, 3, 500)), np.arange(-3.0, 4.0)),
    ],
)
def test_wasserstein_equals_scipy(u: np.ndarray, v: np.ndarray):
    expected = stats.wasserstein_distance(u, v)
    assert wasserstein_sorted(np.sort(u), np.sort(v)) == pytest.approx(expected, rel=1e-12)
    assert wasserstein_sorted(np.sort(v), np.sort(u)) == pytest.approx(expected, rel=1e-12)


def test_drift_report_survives_a_column_evidently_cannot_read(tmp_path: Path):
    rng = np.random.default_rng(5)
    reference = pd.DataFrame({"x": rng.normal(0, 1, 3000), "gone": np.full(3000, np.nan)})
    current = pd.DataFrame({"x": rng.normal(1, 1, 1000), "gone": np.full(1000, np.nan)})
    summary = drift_report(reference, current, ["x", "gone"], [], tmp_path)
    assert summary.drifted_columns == ["x"]
    assert summary.unjudged_columns == ["gone"]
    assert (tmp_path / "drift.html").stat().st_size > 10_000
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["columns"]["gone"]["status"].startswith("no verdict: ")


def test_drift_report_with_nothing_to_compare_writes_a_page(tmp_path: Path):
    empty = pd.DataFrame({"x": [np.nan] * 10, "c": [None] * 10})
    summary = drift_report(empty, empty, ["x"], ["c"], tmp_path)
    assert summary.unjudged_columns == ["c", "x"]
    assert "no verdict for c, x" in (tmp_path / "drift.html").read_text()
