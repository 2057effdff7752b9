"""The reviewer's pages, built from audit records alone, opened in a real browser."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from monitoring.audit import append_record
from monitoring.browser import check_page
from monitoring.index import write_index


def decision(week: str, task: str, action: str, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "decision",
        "task": task,
        "week": week,
        "champion": "2",
        "evidence": {
            "rows": 1_200,
            "source": "snapshot",
            "drift_share": 0.25,
            "drifted_features": ["tenure_days"],
            "unjudged_features": [],
            "key_features_drifted": [],
            "prediction_drift": {"method": "Wasserstein", "score": 0.02, "drifted": False},
            "quality": {"missing": [], "volumes": []},
            "outcomes": [
                {
                    "name": "order rate",
                    "reference": 0.12,
                    "current": 0.11,
                    "p_value": 0.3,
                    "change": -0.083,
                }
            ],
            "performance": None,
        },
        "verdict": {"action": action, "reasons": [f"because <{action}>"]},
        "retrained": None,
        "report": f"{week}/{task}",
    } | extra


def test_index_lists_weeks_newest_first_with_the_newest_decision_of_each(tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    append_record(audit, decision("2025-W10", "churn", "nothing"))
    append_record(audit, decision("2025-W11", "churn", "alert"))
    retrained = {"run_id": "r1", "version": "3", "promoted": True, "gate": "beats v2"}
    append_record(audit, decision("2025-W11", "churn", "retrain", retrained=retrained))
    append_record(audit, decision("2025-W11", "propensity", "nothing"))
    append_record(
        audit,
        {
            "kind": "review",
            "task": "churn",
            "reviewed_week": "2025-W10",
            "action": "nothing",
            "right": True,
            "note": "nothing in 2025-W10 was right",
        },
    )
    index = write_index(tmp_path, audit)
    text = index.read_text()
    assert text.index("2025-W11") < text.index("2025-W10")
    assert "retrained: v3 promoted" in text
    assert "<td class='alert'>" not in text  # the week's newest decision replaced it
    assert "nothing in 2025-W10 was right" in text
    week_page = tmp_path / "2025-W11" / "churn" / "index.html"
    assert "because &lt;retrain&gt;" in week_page.read_text()  # reasons are escaped
    assert "v3 promoted: beats v2" in week_page.read_text()

    for page in (index, week_page):
        seen = check_page(page)
        assert seen.ok, (seen.console_errors, seen.page_errors, seen.external_urls)
        assert seen.title.startswith("custlab") or "week" in seen.title
        assert seen.text_length > 100


def test_an_empty_trail_says_so(tmp_path: Path) -> None:
    index = write_index(tmp_path, tmp_path / "audit.jsonl")
    assert "No week monitored yet" in index.read_text()
