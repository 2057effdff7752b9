"""A challenger is scored in the champion's shadow: the same customers, off the response
path, logged beside the champion's answers. (Registers a second churn version in the demo
home and removes it again.)"""

import pytest
from mlflow import MlflowClient

from custlab.settings import Settings
from features.store import latest_as_of, read_features
from serving.predictions import PredictionLog, read_predictions
from serving.scorers import Scoring
from training.registry import CHALLENGER, use_tracking

pytestmark = pytest.mark.integration


@pytest.fixture
def second_churn_version(demo_home):
    """A second churn version holding ``@challenger`` (the champion stays), as a retrain
    the gate kept out leaves it."""
    use_tracking(Settings(home=demo_home), "custlab-churn")
    registry = MlflowClient()
    first = registry.get_model_version_by_alias("custlab-churn", "champion")
    second = registry.create_model_version(
        "custlab-churn", first.source, run_id=first.run_id, tags=first.tags
    )
    registry.set_registered_model_alias("custlab-churn", CHALLENGER, second.version)
    yield str(second.version)
    registry.set_registered_model_alias("custlab-churn", CHALLENGER, first.version)
    registry.delete_model_version("custlab-churn", second.version)


def test_challenger_scored_in_the_shadow_and_logged_beside_the_champion(
    demo_home, tmp_path, second_churn_version
):
    settings = Settings(home=demo_home)
    latest = read_features(settings, dates=[latest_as_of(settings)])
    ids = latest.loc[latest["orders_52w"] > 0, "customer_id"].head(20).tolist()
    scoring = Scoring(settings, PredictionLog(tmp_path / "log"))
    try:
        assert scoring.champions.challenger_versions == {"churn": second_churn_version}
        scorers, _ = scoring.served(None)
        answers = scoring.answers(scorers, ids, caller="crm")
        # The response carries the champions' versions only.
        assert {a["model_version"] for a in answers["churn"]} != {second_churn_version}
        scoring.shadow.wait()
        status = scoring.status()
        assert status["shadow"]["churn"]["version"] == second_churn_version
        assert status["shadow"]["churn"]["customers_scored"] == len(ids)
    finally:
        scoring.close()
    logged = read_predictions(tmp_path / "log", "churn")
    shadow = logged[logged["source"] == "shadow"]
    online = logged[logged["source"] == "online"]
    assert sorted(shadow["customer_id"]) == sorted(online["customer_id"]) == sorted(ids)
    assert set(shadow["model_version"]) == {second_churn_version}
    assert set(shadow["caller"]) == {"crm"}
    # The same booster under another version: the same scores, customer by customer.
    pairs = shadow.merge(online, on="customer_id", suffixes=("_shadow", "_online"))
    assert (pairs["score_shadow"] == pairs["score_online"]).all()
    # Tasks without a challenger are not shadowed.
    for task in ("propensity", "clv", "lifecycle"):
        assert "shadow" not in set(read_predictions(tmp_path / "log", task)["source"])


def test_a_new_challenger_is_picked_up_without_recomputing_the_champions(
    demo_home, tmp_path, second_churn_version
):
    settings = Settings(home=demo_home)
    use_tracking(settings, "custlab-churn")
    registry = MlflowClient()
    champion = registry.get_model_version_by_alias("custlab-churn", "champion").version
    registry.set_registered_model_alias("custlab-churn", CHALLENGER, champion)
    scoring = Scoring(settings, PredictionLog(tmp_path / "log"))
    try:
        assert scoring.champions.challengers == {}
        kept = scoring.champions.scorers
        registry.set_registered_model_alias("custlab-churn", CHALLENGER, second_churn_version)
        assert scoring.reload_if_promoted()
        assert scoring.champions.challenger_versions == {"churn": second_churn_version}
        assert scoring.champions.scorers is kept  # answers kept, no warm-up again
        assert not scoring.reload_if_promoted()
    finally:
        scoring.close()
