"""The BentoML service through its ASGI app: contract, errors, the answers it keeps and
the prediction log."""

import json

import pytest

from custlab.settings import Settings
from features.store import latest_as_of, read_features
from serving.predictions import read_predictions
from serving.schemas import MAX_BATCH, MAX_BODY_BYTES
from serving.scorers import UNKNOWN_CUSTOMER, outside_population
from training.tasks import TASKS, get_task

pytestmark = pytest.mark.integration
CHURN = get_task("churn")


@pytest.fixture(scope="module")
def latest(demo_home):
    settings = Settings(home=demo_home)
    return read_features(settings, dates=[latest_as_of(settings)])


@pytest.fixture(scope="module")
def active_ids(latest):
    return latest.loc[latest["orders_52w"] > 0, "customer_id"].head(3).tolist()


def _served(client) -> dict:
    return client.get("/v1/status").json()["served"]


def test_scores_known_customers_with_version_tier_and_reasons(client, active_ids):
    response = client.post("/v1/churn", json={"customer_ids": active_ids})
    assert response.status_code == 200
    body = response.json()
    assert body["model"] == "custlab-churn" and body["model_version"] == "1"
    assert body["feature_service"] == "churn_v1"
    assert [p["customer_id"] for p in body["predictions"]] == active_ids
    for prediction in body["predictions"]:
        assert 0.0 <= prediction["score"] <= 1.0
        assert prediction["tier"] in {"high", "medium", "low"} and prediction["action"]
        assert prediction["warnings"] == []
        assert prediction["feature_timestamp"].endswith("Z")
        assert 1 <= len(prediction["reasons"]) <= 3


def test_one_call_answers_every_served_task(client, active_ids):
    response = client.post("/v1/score", json={"customer_ids": [*active_ids, "ghost-1"]})
    assert response.status_code == 200
    body = response.json()
    served = _served(client)
    assert len(served) >= 2, "the demo run should leave most tasks with a champion"
    assert set(body["unavailable"]) == set(TASKS) - set(served)
    *known, ghost = body["customers"]
    assert [c["customer_id"] for c in known] == active_ids
    for customer in known:
        assert set(customer["scores"]) == set(served)
        for name, answer in customer["scores"].items():
            assert answer["model_version"] == served[name]["version"]
            assert answer["tier"] in {tier.name for tier in get_task(name).policy.tiers}
            if get_task(name).classes:
                assert sum(answer["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert all(a["warnings"] == [UNKNOWN_CUSTOMER] for a in ghost["scores"].values())
    # The per-task route gives the same answer as the all-task one.
    one = client.post("/v1/churn", json={"customer_ids": active_ids[:1]}).json()
    assert one["predictions"][0]["score"] == known[0]["scores"]["churn"]["score"]
    only = client.post("/v1/score", json={"customer_ids": active_ids, "tasks": ["churn"]})
    assert set(only.json()["customers"][0]["scores"]) == {"churn"}


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
        ({"customer_ids": ["jane.doe@example.com ; DROP"]}, "customer_ids.0"),
        ({"customer_ids": [12]}, "customer_ids.0"),
        ({"customer_ids": ["a"], "email": "jane.doe@example.com"}, "email"),
        ({"customer_ids": ["a"], "jane.doe@example.com": 1}, "(an unknown field)"),
        ({"customer_ids": ["a"], "tasks": []}, "tasks"),
        ({}, "customer_ids"),
    ],
)
@pytest.mark.parametrize("route", ["/v1/score", "/v1/churn"])
def test_invalid_requests_get_400_naming_the_field_without_echoing_data(client, route, body, field):
    if "tasks" in body and route != "/v1/score":
        field = "tasks"  # a single-task route takes no task list
    response = client.post(route, json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert field in [problem["field"] for problem in error["fields"]]
    assert "jane.doe" not in response.text and "Traceback" not in response.text


def test_what_no_route_takes_is_refused_before_it_is_read(client):
    form = client.post("/v1/score", data={"customer_ids": "jane.doe@example.com"})
    assert form.status_code == 415 and "jane.doe" not in form.text
    assert form.json()["error"]["code"] == "unsupported_media_type"
    huge = b'{"customer_ids": ["' + b"a" * MAX_BODY_BYTES + b'"]}'
    too_big = client.post("/v1/score", content=huge, headers={"content-type": "application/json"})
    assert too_big.status_code == 413 and too_big.json()["error"]["code"] == "body_too_large"
    broken = client.post(
        "/v1/score", content=b'{"customer_ids": [', headers={"content-type": "application/json"}
    )
    assert broken.status_code == 400
    missing = client.post("/v1/nowhere/jane.doe@example.com", json={"customer_ids": ["a"]})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert "jane.doe" not in missing.text
    no_task = client.post("/v1/score", json={"customer_ids": ["a"], "tasks": ["upsell"]})
    assert no_task.status_code == 404 and "upsell" in no_task.json()["error"]["message"]


def test_feature_route_scores_given_rows_and_says_what_is_doubtful(client, latest):
    row = latest.iloc[0]
    features = {k: float(row[k]) for k in ("recency_days", "orders_52w", "spend_52w")}
    response = client.post("/v1/churn/features", json={"rows": [features]})
    assert response.status_code == 200
    (prediction,) = response.json()["predictions"]
    assert 0 <= prediction["score"] <= 1
    assert any(w.startswith("missing_features:") for w in prediction["warnings"])
    odd = client.post(
        "/v1/churn/features", json={"rows": [features | {"orders_52w": -4, "recency_days": 1e9}]}
    )
    (warned,) = odd.json()["predictions"]
    out_of_range = next(w for w in warned["warnings"] if w.startswith("out_of_range:"))
    assert "orders_52w" in out_of_range and "recency_days" in out_of_range
    for bad, field in (
        ({"recency_days": "soon"}, "rows.0.recency_days"),
        ({"recency_days": "12"}, "rows.0.recency_days"),
        ({"recency_days": True}, "rows.0.recency_days"),
        ({}, "rows.0"),
    ):
        refused = client.post("/v1/churn/features", json={"rows": [bad]})
        assert refused.status_code == 400, bad
        assert field in [p["field"] for p in refused.json()["error"]["fields"]]


def test_every_prediction_is_logged_by_day_as_parquet(client, demo_home, active_ids):
    client.post("/v1/score", json={"customer_ids": active_ids[:2]})
    scoring = _scoring(client)
    scoring.log.flush()
    logged = read_predictions(demo_home / "predictions", "churn")
    assert set(active_ids[:2]) <= set(logged["customer_id"])
    assert {"logged_at", "model_version", "score", "tier", "feature_timestamp"} <= set(
        logged.columns
    )
    days = list((demo_home / "predictions" / "churn").glob("date=*"))
    assert days and all(day.name.startswith("date=20") for day in days)


def test_answers_are_kept_until_the_online_features_change(client, demo_home, active_ids):
    from features.store import open_store

    scoring = _scoring(client)
    customer = active_ids[0]
    client.post("/v1/churn", json={"customer_ids": [customer]})
    scorer = scoring.current().scorers["churn"]
    assert customer in scorer.answers
    before = client.post("/v1/churn", json={"customer_ids": [customer]}).json()
    # A materialization of one changed row: the kept answer must not survive it.
    settings = Settings(home=demo_home)
    store = open_store(settings)
    view = store.get_feature_view("customer_orders")
    row = read_features(settings, dates=[latest_as_of(settings)])
    original = row[row["customer_id"] == customer]
    changed = original.assign(recency_days=300.0, orders_52w=1.0)
    online = store._get_provider().online_store
    online.write_frame(store.config, view, changed)
    try:
        after = client.post("/v1/churn", json={"customer_ids": [customer]}).json()
    finally:  # the home is the session's
        online.write_frame(store.config, view, original)
    assert scoring.current().scorers["churn"] is not scorer
    assert after["predictions"][0]["score"] != before["predictions"][0]["score"]
    values = {r["feature"]: r["value"] for r in after["predictions"][0]["reasons"]}
    assert values.get("recency_days", 300.0) == pytest.approx(300.0)


def test_kept_answers_are_given_at_once_and_logged_like_any(client, active_ids):
    """A request whose answers are all kept is answered without a read (on the event
    loop); the same answers as the path that may read."""
    scoring = _scoring(client)
    client.post("/v1/score", json={"customer_ids": active_ids})  # kept from here on
    scorers, _ = scoring.served(None)
    chosen, at_once = scoring.answers_at_once(None, active_ids, "tester", "/v1/score")
    assert chosen == scorers
    assert at_once == scoring.answers(scorers, active_ids, "tester", "/v1/score")
    assert set(at_once) == set(scoring.champions.scorers)
    (churn,), answers = scoring.answers_at_once(["churn"], active_ids)
    assert churn.name == "churn"
    assert answers["churn"] == at_once["churn"]
    # Anything else is left to the path that may read or refuse.
    assert scoring.answers_at_once(None, [*active_ids, "never-asked-about"]) is None
    assert scoring.answers_at_once(["no_such_task"], active_ids) is None


def test_unknown_paths_and_ids_leave_metrics_and_memory_bounded(client):
    def series() -> int:
        text = client.get("/v1/metrics").text
        return sum(1 for line in text.splitlines() if line and not line.startswith("#"))

    client.post("/v1/score", json={"customer_ids": ["ghost-0"]})
    client.get("/v1/nowhere-0")
    series()  # the metrics route's own series appear after its first answer
    before = series()
    for i in range(300):
        client.get(f"/v1/nowhere-{i}")
        client.post("/v1/score", json={"customer_ids": [f"ghost-{i}"]})
    assert series() == before
    kept = [i for s in _scoring(client).current().scorers.values() for i in s.answers]
    assert kept and not any(i.startswith("ghost-") for i in kept)  # answered, never kept


def test_openapi_document_is_versioned_and_matches_the_error_schema(client):
    from importlib.metadata import version

    document = client.get("/v1/openapi.json").json()
    assert document["info"]["title"] == "custlab"
    assert document["info"]["version"] == version("custlab")
    score = document["paths"]["/v1/score"]["post"]
    assert set(score["responses"]) >= {"200", "400", "413", "415", "503"}
    assert score["responses"]["400"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "ErrorBody"
    )
    for page in ("/v1/docs", "/", "/docs.json"):  # no page of third-party scripts
        assert client.get(page).json()["error"]["code"] == "not_found"


def _scoring(client):
    from serving.service import api

    return api.state.scoring


def test_status_names_what_is_served(client):
    status = client.get("/v1/status").json()
    assert status["served"]["churn"]["model"] == "custlab-churn"
    assert set(status["served"]) | set(status["unavailable"]) == set(TASKS)
    assert json.dumps(status).count("ghost") == 0
