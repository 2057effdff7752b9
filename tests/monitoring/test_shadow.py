import pandas as pd
import pytest

from monitoring.shadow import compare_shadow


def records(source: str, version: str, scores: dict[str, float], tiers: dict[str, str]) -> list:
    return [
        {
            "logged_at": pd.Timestamp("2025-03-04", tz="UTC") + pd.Timedelta(minutes=i),
            "customer_id": c,
            "source": source,
            "model_version": version,
            "score": s,
            "tier": tiers[c],
            "unknown": False,
        }
        for i, (c, s) in enumerate(scores.items())
    ]


def test_champion_and_shadow_challenger_on_the_same_customers() -> None:
    champion = records(
        "online", "3", {"a": 0.1, "b": 0.5, "c": 0.9}, {"a": "low", "b": "medium", "c": "high"}
    )
    challenger = records(
        "shadow",
        "4",
        {"a": 0.2, "b": 0.4, "c": 0.8, "d": 0.3},
        {"a": "low", "b": "low", "c": "high", "d": "low"},
    )
    found = compare_shadow(pd.DataFrame(champion + challenger))
    assert found is not None
    assert (found.champion, found.challenger, found.customers) == ("3", "4", 3)
    assert found.mean_abs_difference == pytest.approx(0.1)
    assert found.rank_correlation == pytest.approx(1.0)
    assert found.same_tier == pytest.approx(2 / 3)
    assert "v4 beside champion v3 on 3 customers" in found.describe()


def test_no_shadow_no_comparison() -> None:
    champion = records("online", "3", {"a": 0.1}, {"a": "low"})
    assert compare_shadow(pd.DataFrame(champion)) is None
    assert compare_shadow(pd.DataFrame()) is None
