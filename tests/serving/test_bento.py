"""A built Bento serves the champions it packages with no MLflow reachable: ``custlab
build`` into a temporary BentoML store, then ``bentoml serve <tag>`` as a real process on
a home that holds the feature data and none of MLflow's files. Its answers are the
source-run service's, model versions and scores alike."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from benchmarks.servers import Server, free_port, start, stop, wait_ready
from custlab.settings import Settings
from features.store import latest_as_of, read_features
from serving.launch import serve_bento_command

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# What a machine serving the Bento lacks: the registry and the training stores (and the
# logs the source-run service is writing meanwhile).
NOT_COPIED = {"mlflow.db", "mlartifacts", "optuna.db", "predictions", "audit", "reports"}
NOWHERE = "http://127.0.0.1:9"  # nothing listens on the discard port


def test_a_built_bento_answers_as_the_source_run_service_with_no_mlflow(
    demo_home, client, tmp_path
):
    settings = Settings(home=demo_home)
    latest = read_features(settings, dates=[latest_as_of(settings)])
    ids = [*latest.loc[latest["orders_52w"] > 0, "customer_id"].head(5), "ghost-1"]
    from_source = client.post("/v1/score", json={"customer_ids": ids}).json()
    source_versions = {
        n: s["version"] for n, s in client.get("/v1/status").json()["served"].items()
    }

    env = os.environ | {
        "BENTOML_HOME": str(tmp_path / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "true",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    built = subprocess.run(
        [sys.executable, "-m", "custlab", "build"],
        env=env | {"CUSTLAB_HOME": str(demo_home)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr
    tag = built.stdout.split()[-1]
    assert tag.startswith("customer_scoring:")

    home = tmp_path / "home"
    shutil.copytree(
        demo_home,
        home,
        ignore=lambda folder, names: NOT_COPIED if Path(folder) == demo_home else (),
    )
    port = free_port()
    server = Server(
        "bento", "bento", serve_bento_command(tag, "127.0.0.1", port), port, "/v1/score"
    )
    log = tmp_path / "bento-serve.log"
    process = start(
        server,
        env
        | {
            "CUSTLAB_HOME": str(home),
            # Asked to watch the registry every second: a Bento's service does not.
            "CUSTLAB_CHAMPION_CHECK_SECONDS": "1",
            "MLFLOW_TRACKING_URI": NOWHERE,
            "MLFLOW_REGISTRY_URI": NOWHERE,
        },
        log,
        cwd=tmp_path,  # not the project: code and models come from the Bento
    )
    try:
        try:
            wait_ready(server, process, deadline_s=180)
        except RuntimeError as why:
            pytest.fail(f"{why}\n{log.read_text()}")
        from_bento = httpx.post(server.url("/v1/score"), json={"customer_ids": ids}, timeout=60)
        status = httpx.get(server.url("/v1/status"), timeout=10).json()
        time.sleep(2)  # two ticks of a watch, were there one
    finally:
        stop(process)

    assert from_bento.status_code == 200, from_bento.text
    body = from_bento.json()
    assert body["customers"] == from_source["customers"]
    assert set(body["unavailable"]) == set(from_source["unavailable"])
    assert {n: s["version"] for n, s in status["served"].items()} == source_versions
    models = status["models"]
    assert models["source"] == "bento" and models["bento"] == tag
    assert set(models["packaged"]) == set(source_versions)
    assert models["champion_watch"].startswith("off")
    # MLflow was never opened: its SQLite store would have been created in the home.
    assert not (home / "mlflow.db").exists() and not (home / "mlartifacts").exists()
