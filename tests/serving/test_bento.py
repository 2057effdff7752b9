"""A built Bento serves the champions it packages with no MLflow reachable: ``custlab
build`` into a temporary BentoML store, then ``bentoml serve <tag>`` as a real process on
a home that holds the feature data and none of MLflow's files. Its answers are the
source-run service's, model versions and scores alike."""

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from benchmarks.run import _stop
from custlab.settings import Settings
from features.store import latest_as_of, read_features
from serving.launch import serve_bento_command

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# What a machine serving the Bento lacks: the registry and the training stores (and the
# logs the source-run service is writing meanwhile).
NOT_COPIED = {"mlflow.db", "mlartifacts", "optuna.db", "predictions", "audit", "reports"}
NOWHERE = "http://127.0.0.1:9"  # nothing listens on the discard port


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_ready(url: str, process: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the Bento's server exited ({process.returncode}):\n{log.read_text()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.5)
    pytest.fail(f"the Bento's server was not ready in {timeout:.0f} s:\n{log.read_text()}")


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
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "bento-serve.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            serve_bento_command(tag, "127.0.0.1", port),
            cwd=tmp_path,  # not the project: code and models come from the Bento
            env=env
            | {
                "CUSTLAB_HOME": str(home),
                # Asked to watch the registry every second: a Bento's service does not.
                "CUSTLAB_CHAMPION_CHECK_SECONDS": "1",
                "MLFLOW_TRACKING_URI": NOWHERE,
                "MLFLOW_REGISTRY_URI": NOWHERE,
            },
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_ready(url, process, log)
        from_bento = httpx.post(f"{url}/v1/score", json={"customer_ids": ids}, timeout=60)
        status = httpx.get(f"{url}/v1/status", timeout=10).json()
        time.sleep(2)  # two ticks of a watch, were there one
    finally:
        _stop(process)

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
