"""API keys: scopes per route, constant-time checks, and the audit of who called what."""

import pytest
from starlette.testclient import TestClient

from custlab.settings import Settings
from features.errors import CustlabError
from features.store import latest_as_of, read_features
from serving.api import build_app
from serving.keys import ApiKeys
from serving.predictions import read_predictions
from serving.scorers import Scoring

SCORER = "shop-frontend"
SCORING_SECRET = "s3cret-scoring-key-0001"
ADMIN_SECRET = "s3cret-admin-key-000001"
KEYS = f"{SCORER}:scoring:{SCORING_SECRET}, ops:admin+scoring:{ADMIN_SECRET}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("frontend:scoring", "not name:scope"),
        ("frontend:write:0123456789abcdef", r"unknown scope\(s\) write"),
        ("frontend:scoring:short", "shorter than 16"),
        ("a:scoring:0123456789abcdef,a:admin:0123456789abcdeg", "given twice"),
    ],
)
def test_malformed_keys_are_refused_without_showing_the_secret(text, message):
    with pytest.raises(CustlabError, match=message) as refused:
        ApiKeys.parse(text)
    assert "0123456789abcde" not in str(refused.value)


def test_a_key_belongs_to_its_caller_only():
    keys = ApiKeys.parse(KEYS)
    assert keys.caller(SCORING_SECRET).name == SCORER
    assert keys.caller(ADMIN_SECRET).scopes == {"admin", "scoring"}
    assert keys.caller(SCORING_SECRET[:-1]) is None and keys.caller("") is None
    assert keys.caller(None) is None and not keys.open
    assert ApiKeys.parse("").open


@pytest.mark.integration
def test_routes_need_their_scope_and_every_call_is_audited(demo_home, tmp_path):
    settings = Settings(home=demo_home)
    latest = read_features(settings, dates=[latest_as_of(settings)])
    ids = latest.loc[latest["orders_52w"] > 0, "customer_id"].head(2).tolist()
    app = build_app(ApiKeys.parse(KEYS))
    scoring = Scoring(settings)
    scoring.audit.folder = tmp_path / "audit"
    app.state.scoring = scoring
    client = TestClient(app)
    body = {"customer_ids": ids}
    scorer = {"Authorization": f"Bearer {SCORING_SECRET}"}
    admin = {"X-API-Key": ADMIN_SECRET}

    assert client.post("/v1/score", json=body).status_code == 401
    wrong = client.post("/v1/score", json=body, headers={"X-API-Key": SCORING_SECRET + "x"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "unauthorized"
    assert client.post("/v1/score", json=body, headers=scorer).status_code == 200
    assert client.post("/v1/churn", json=body, headers=admin).status_code == 200
    assert client.get("/v1/status", headers=scorer).status_code == 403
    assert client.get("/v1/status", headers=admin).status_code == 200
    assert client.get("/v1/metrics").status_code == 401
    assert client.get("/v1/openapi.json").status_code == 200  # the contract is public

    scoring.close()
    calls = read_predictions(tmp_path / "audit", "calls")
    assert list(calls["caller"]) == [SCORER, "ops"]
    assert list(calls["route"]) == ["/v1/score", "/v1/churn"]
    assert all(set(c) == set(ids) for c in calls["customer_ids"])
    assert SCORING_SECRET not in calls.to_csv() and ADMIN_SECRET not in calls.to_csv()
    logged = read_predictions(settings.prediction_log_dir, "churn")
    assert SCORER in set(logged["caller"])
