"""Scoring without HTTP: tiers, reason codes and model behaviour of the trained champion."""

import numpy as np
import pandas as pd
import pytest

from custlab.settings import Settings
from features.store import latest_as_of, read_features
from serving.models import load_champion_model
from serving.scoring import LoadedModel, score_rows
from training.tasks import get_task


@pytest.fixture(scope="module")
def champion(demo_home) -> LoadedModel:
    return load_champion_model(Settings(home=demo_home), get_task("churn"))


@pytest.fixture(scope="module")
def latest_rows(demo_home) -> pd.DataFrame:
    settings = Settings(home=demo_home)
    latest = read_features(settings, dates=[latest_as_of(settings)])
    return latest[latest["orders_52w"] > 0].head(200).reset_index(drop=True)


@pytest.mark.parametrize(
    ("score", "tier"),
    [(0.95, "high"), (0.8, "high"), (0.79, "medium"), (0.6, "medium"), (0.1, "low")],
)
def test_tiers_follow_thresholds(score: float, tier: str):
    policy = get_task("churn").policy
    assert policy.decide(score, {"high": 0.8, "medium": 0.6}).name == tier


def test_champion_carries_tier_cuts(champion: LoadedModel):
    cuts = champion.record.tier_cuts
    assert 0 < cuts["medium"] < cuts["high"] < 1
    assert champion.feature_service == "churn_v1"


def test_one_row_scores_the_same_alone_and_in_a_batch(champion, latest_rows):
    batch = score_rows(champion, latest_rows)
    for i in (0, 57, 199):
        alone = score_rows(champion, latest_rows.iloc[[i]])[0]
        assert alone.score == pytest.approx(batch[i].score, abs=1e-12)
        assert alone.reasons == batch[i].reasons


def test_more_days_since_last_order_never_lowers_churn_risk(champion, latest_rows):
    base = np.array([s.score for s in score_rows(champion, latest_rows)])
    later = latest_rows.assign(recency_days=latest_rows["recency_days"] + 30)
    shifted = np.array([s.score for s in score_rows(champion, later)])
    assert (shifted >= base - 1e-12).all()


def test_answers_are_actionable(champion, latest_rows):
    actions = {tier.name: tier.action for tier in get_task("churn").policy.tiers}
    scores = score_rows(champion, latest_rows)
    assert {s.tier for s in scores} <= set(actions)
    for s in scores:
        assert s.action == actions[s.tier]
        assert len(s.reasons) <= 3
        assert all(r.contribution > 0 for r in s.reasons)
        assert [r.contribution for r in s.reasons] == sorted(
            (r.contribution for r in s.reasons), reverse=True
        )
