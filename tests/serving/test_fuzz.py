"""Schemathesis over the published OpenAPI document: whatever it generates from
``/v1/openapi.json`` (valid bodies, and bodies, types and values that break the contract),
the service answers with a status the document lists, a body its schema allows, and
never a 5xx.

The open app is the one the BentoML service mounts, with the champions the service
loaded at start (the shared ``client`` fixture starts it); an app with API keys shares
those champions, so the key checks are fuzzed too, with a key and without one. The run
is seeded and derandomized: CI sends the same requests every time.
"""

import pytest
import schemathesis
from schemathesis import Config

from serving.api import build_app
from serving.keys import ApiKeys
from serving.service import api as service_api

pytestmark = pytest.mark.integration

SCORING_SECRET = "fuzz-scoring-key-0000001"
KEYED_API = build_app(ApiKeys.parse(f"fuzzer:scoring:{SCORING_SECRET}"))
# Examples per operation in the fuzzing phase; the examples and coverage phases add the
# document's examples and its boundary and negative cases.
SETTINGS = {
    "seed": 90210,
    "generation": {"max-examples": 12, "deterministic": True, "database": "none"},
    # Bodies and callers are refused before a route is looked up (415 for a POST that is
    # not JSON, 401/403 without a key), so a wrong method answers those first; a wrong
    # method that passes them is 405 with Allow (test_method_not_allowed_... below).
    "checks": {"unsupported_method": {"enabled": False}},
}


def _schema(app, headers: dict[str, str]) -> schemathesis.BaseSchema:
    """The document as the app publishes it, fuzzed with ``headers`` on every request."""
    config = Config.from_dict({**SETTINGS, "headers": headers})
    return schemathesis.openapi.from_asgi("/v1/openapi.json", app, config=config)


open_schema = _schema(service_api, {})
keyed_schema = _schema(KEYED_API, {"Authorization": f"Bearer {SCORING_SECRET}"})
keyless_schema = _schema(KEYED_API, {})


@pytest.fixture(scope="module", autouse=True)
def champions(client):
    """The champions the service loaded at start, given to the keyed app too."""
    KEYED_API.state.scoring = service_api.state.scoring
    return service_api.state.scoring


def _check(case) -> None:
    response = case.call_and_validate()
    assert response.status_code < 500, response.text


@open_schema.parametrize()
def test_open_service_answers_as_its_document_says(case):
    _check(case)


@keyed_schema.parametrize()
def test_keyed_service_answers_a_scoring_key_as_its_document_says(case):
    _check(case)


@keyless_schema.parametrize()
def test_keyed_service_refuses_a_missing_key_as_its_document_says(case):
    response = case.call_and_validate()
    assert response.status_code == 401, response.text


def test_method_not_allowed_names_the_allowed_methods(client):
    """Found by the fuzz run: 405 came without the Allow header RFC 9110 requires, and a
    method the catch-all takes (PUT) on a route's path was 404."""
    for method in ("TRACE", "PUT", "DELETE"):
        response = client.request(method, "/v1/score")
        assert response.status_code == 405, method
        assert response.headers.get("allow") == "POST", method
        assert response.json()["error"]["code"] == "method_not_allowed", method
    assert client.put("/v1/nowhere").status_code == 404


def test_the_document_refuses_what_the_route_refuses(client):
    """Found by the fuzz run: a row of nulls was valid under the published schema but
    refused; now a feature is given with a value or left out, and a row gives one."""
    import jsonschema_rs

    schema = client.get("/v1/openapi.json").json()["components"]["schemas"]["FeatureRow"]
    validator = jsonschema_rs.validator_for(schema)
    assert not validator.is_valid({"view_4w": None})
    assert not validator.is_valid({})
    assert validator.is_valid({"view_4w": 2.0, "region": "north"})
    for row in ({"view_4w": None}, {}):
        response = client.post("/v1/churn/features", json={"rows": [row]})
        assert response.status_code == 400, row
