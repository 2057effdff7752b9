"""The BentoML service through its ASGI app: contract, errors and the prediction log."""

import json

import pytest

from custlab.settings import Settings
from features.store import latest_as_of, read_features
from serving.schemas import MAX_BATCH
from serving.service import UNKNOWN_CUSTOMER, outside_population
from training.tasks import TASKS, get_task

pytestmark = pytest.mark.integration
CHURN = get_task("churn")


@pytest.fixture(scope="module")
def latest(demo_home):
    settings = Settings(home=demo_home)
    return read_features(settings, dates=[latest_as_of(settings)])


def test_scores_known_customers_with_version_tier_and_reasons(client, latest):
    ids = latest.loc[latest["orders_52w"] > 0, "customer_id"].head(3).tolist()
    response = client.post("/v1/churn", json={"customer_ids": ids})
    assert response.status_code == 200
    body = response.json()
    assert body["model"] == "custlab-churn" and body["model_version"] == "1"
    assert body["feature_service"] == "churn_v1"
    assert [p["customer_id"] for p in body["predictions"]] == ids
    for prediction in body["predictions"]:
        assert 0.0 <= prediction["score"] <= 1.0
        assert prediction["tier"] in {"high", "medium", "low"} and prediction["action"]
        assert prediction["warnings"] == []


def test_unknown_and_inactive_customers_are_flagged(client, latest):
    inactive = latest.loc[~(latest["recency_days"] <= 365), "customer_id"].head(1).tolist()
    response = client.post("/v1/churn", json={"customer_ids": ["ghost-1", *inactive]})
    unknown, *rest = response.json()["predictions"]
    assert unknown["score"] is None and unknown["warnings"] == [UNKNOWN_CUSTOMER]
    for prediction in rest:
        assert (
            prediction["score"] is not None
            and outside_population(CHURN.population_rule) in prediction["warnings"]
        )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"customer_ids": []}, "customer_ids"),
        ({"customer_ids": ["x"] * (MAX_BATCH + 1)}, "customer_ids"),
        ({"customer_ids": ["jane.doe@example.com ; DROP"]}, "customer_ids"),
        ({"customer_ids": ["a"], "email": "jane.doe@example.com"}, "email"),
        ({}, "customer_ids"),
    ],
)
def test_invalid_requests_get_400_naming_the_field_without_echoing_data(client, body, field):
    response = client.post("/v1/churn", json=body)
    assert response.status_code == 400
    assert field in json.dumps(response.json()["detail"])
    assert "jane.doe" not in response.text


def test_feature_route_scores_given_rows(client, latest):
    row = latest.iloc[0]
    features = {k: float(row[k]) for k in ("recency_days", "orders_52w", "spend_52w")}
    response = client.post("/v1/churn/features", json={"rows": [features]})
    assert response.status_code == 200
    assert 0 <= response.json()["predictions"][0]["score"] <= 1
    bad = client.post("/v1/churn/features", json={"rows": [{"recency_days": "soon"}]})
    assert bad.status_code == 400 and "recency_days" in bad.text


def test_every_prediction_is_logged(client, demo_home, latest):
    ids = latest["customer_id"].head(2).tolist()
    client.post("/v1/churn", json={"customer_ids": ids})
    logs = list((demo_home / "predictions" / "churn").glob("*.jsonl"))
    records = [json.loads(line) for path in logs for line in path.read_text().splitlines()]
    logged = [r for r in records if r["source"] == "online" and r["customer_id"] in ids]
    assert len(logged) >= 2 and all("features" in r and "score" in r for r in logged)


def test_every_task_with_a_champion_has_its_route(client, latest):
    from mlflow import MlflowClient

    ids = latest.loc[latest["orders_52w"] > 0, "customer_id"].head(2).tolist()
    registry = MlflowClient()
    served = 0
    for name, task in TASKS.items():
        response = client.post(f"/v1/{name}", json={"customer_ids": ids})
        try:
            registry.get_model_version_by_alias(task.registered_model, "champion")
        except Exception:
            # No champion: the route says why instead of scoring.
            assert response.status_code == 503 and "not served" in response.text
            continue
        served += 1
        body = response.json()
        assert response.status_code == 200 and body["model"] == task.registered_model
        assert [p["customer_id"] for p in body["predictions"]] == ids
        for prediction in body["predictions"]:
            assert prediction["tier"] in {tier.name for tier in task.policy.tiers}
            if task.classes:
                assert set(prediction["probabilities"]) == set(task.classes)
                assert sum(prediction["probabilities"].values()) == pytest.approx(1.0)
    assert served >= 2, "the demo run should leave most tasks with a champion"
