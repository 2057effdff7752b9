"""Batch scoring: every customer, every champion, the same answers as the service, whole or
not at all."""

from __future__ import annotations

from dataclasses import replace

import mlflow
import numpy as np
import pandas as pd
import pytest

from benchmarks.servers import free_port
from custlab.settings import Settings
from features.cluster import ServiceUnavailable
from features.errors import CustlabError
from features.store import latest_as_of, read_features
from serving import batch
from serving.batch import BATCH_EXPERIMENT, score_batch
from serving.models import load_champion_models
from training.tasks import TASKS


@pytest.fixture(scope="module")
def scored(demo_home):
    return score_batch(Settings(home=demo_home), reasons=True)


def test_every_customer_of_the_newest_snapshot_is_scored_by_every_champion(scored, demo_home):
    settings = Settings(home=demo_home)
    newest = read_features(settings, dates=[latest_as_of(settings)])
    assert set(scored.tasks) == set(TASKS)
    for name, part in scored.tasks.items():
        frame = pd.read_parquet(part.path)
        assert sorted(frame["customer_id"]) == sorted(newest["customer_id"]), name
        assert frame["score"].notna().all(), name
        assert sum(part.tiers.values()) == part.rows == len(frame), name
        assert frame["tier"].value_counts().to_dict() == {
            tier: count for tier, count in part.tiers.items() if count
        }
        inside = TASKS[name].population(newest.set_index("customer_id").loc[frame["customer_id"]])
        assert (frame["in_population"].to_numpy() == np.asarray(inside)).all(), name


def test_batch_answers_match_the_service(scored, client, demo_home):
    """A batch score and an online answer about the same customer agree (to the six
    decimals answers carry): score, tier, action and the top reason, both read from the
    newest snapshot as materialized."""
    frames = {name: pd.read_parquet(part.path) for name, part in scored.tasks.items()}
    ids = frames["churn"]["customer_id"].sample(25, random_state=3).tolist()
    online = client.post("/v1/score", json={"customer_ids": ids}).json()["customers"]
    for customer in online:
        for name, answer in customer["scores"].items():
            row = frames[name].set_index("customer_id").loc[customer["customer_id"]]
            assert row["score"] == pytest.approx(answer["score"], abs=1e-6), name
            assert row["tier"] == answer["tier"], name
            assert row["action"] == answer["action"], name
            assert row["model_version"] == answer["model_version"]
            top = answer["reasons"][0]["feature"] if answer["reasons"] else None
            assert row["reason_1"] == top, name


def test_lifecycle_carries_every_class_probability(scored):
    frame = pd.read_parquet(scored.tasks["lifecycle"].path)
    classes = [f"probability_{c}" for c in TASKS["lifecycle"].classes]
    assert np.allclose(frame[classes].sum(axis=1), 1.0)
    assert (frame[classes].max(axis=1) == frame["score"]).all()
    best = frame[classes].to_numpy().argmax(axis=1)
    assert (frame["tier"].to_numpy() == np.asarray(TASKS["lifecycle"].classes)[best]).all()


def test_the_batch_is_an_mlflow_run_with_versions_and_counts(scored, demo_home):
    client = mlflow.MlflowClient(tracking_uri=Settings(home=demo_home).mlflow_tracking_uri)
    run = client.get_run(scored.run_id)
    assert run.info.experiment_id == client.get_experiment_by_name(BATCH_EXPERIMENT).experiment_id
    assert run.data.params["churn_version"] == scored.tasks["churn"].model_version
    assert run.data.metrics["churn_rows"] == scored.tasks["churn"].rows
    assert run.data.tags["output"] == str(scored.folder.resolve())
    assert "summary.json" in [a.path for a in client.list_artifacts(scored.run_id)]


def test_a_failed_batch_leaves_the_previous_one_whole(scored, demo_home, monkeypatch):
    before = {p.name: p.read_bytes() for p in scored.folder.iterdir()}
    real = batch.score_table
    calls = []

    def fail_on_the_third_task(model, rows, reasons):
        calls.append(model.task.name)
        if len(calls) == 3:
            raise OSError("disk full")
        return real(model, rows, reasons)

    monkeypatch.setattr(batch, "score_table", fail_on_the_third_task)
    with pytest.raises(OSError, match="disk full"):
        score_batch(Settings(home=demo_home), reasons=True)
    assert {p.name: p.read_bytes() for p in scored.folder.iterdir()} == before
    assert [p.name for p in scored.folder.parent.iterdir()] == [scored.folder.name]


def test_without_a_champion_the_batch_refuses_and_says_why(tmp_path, demo_home):
    import shutil

    home = tmp_path / "home"
    shutil.copytree(demo_home / "offline", home / "offline")
    with pytest.raises(CustlabError, match="no task has a champion") as caught:
        score_batch(Settings(home=home))
    assert "churn" in str(caught.value)
    assert not (home / "scores").exists()


def test_scores_from_the_compiled_trees_are_lightgbms(demo_home):
    """Without reasons a batch scores with the champions' compiled trees; with them, with
    LightGBM's TreeSHAP, whose values add up to LightGBM's margin. Both batches agree,
    and a champion whose trees cannot be compiled scores with LightGBM, the same."""
    settings = Settings(home=demo_home)
    models, _ = load_champion_models(settings)
    frames, _ = batch.batch_frames(settings, models)
    for name, model in models.items():
        rows = frames[name]
        assert model.forest is not None, name
        compiled = batch.score_table(model, rows, reasons=False)
        explained = batch.score_table(model, rows, reasons=True)
        fallback = replace(model)  # a copy without the compiled trees cached
        fallback.__dict__["forest"] = None
        plain = batch.score_table(fallback, rows, reasons=False)
        for column in ("score", "tier", "in_population"):
            assert compiled.column(column).equals(plain.column(column)), (name, column)
        np.testing.assert_allclose(
            compiled.column("score").to_numpy(), explained.column("score").to_numpy(), rtol=1e-9
        )


def test_tiers_of_many_scores_match_one_by_one():
    rng = np.random.default_rng(0)
    for task in TASKS.values():
        if task.objective.name == "multiclass":
            scores = rng.dirichlet(np.ones(len(task.classes)), size=200)
            cuts = {}
        else:
            scores = rng.random(200)
            cuts = task.policy.cuts(scores)
        many = task.policy.decide_all(scores, cuts)
        one = [task.policy.tiers.index(task.policy.decide(s, cuts)) for s in scores]
        assert many.tolist() == one, task.name


@pytest.mark.slow
def test_on_dask_the_batch_is_the_one_scored_here(scored, demo_home):
    here = {name: pd.read_parquet(part.path) for name, part in scored.tasks.items()}
    # Small chunks: many tasks on the two workers, written back in order.
    settings = Settings(home=demo_home, dask_workers=2)
    on_dask = score_batch(settings, reasons=True, chunk_rows=1_000, dask=True)
    assert on_dask.folder == scored.folder
    for name, part in on_dask.tasks.items():
        pd.testing.assert_frame_equal(pd.read_parquet(part.path), here[name], obj=name)
    run = mlflow.get_run(on_dask.run_id)
    assert run.data.params["dask"] == "True"


def test_an_unreachable_dask_scheduler_names_its_setting_and_keeps_the_batch(scored, demo_home):
    before = {p.name: p.read_bytes() for p in scored.folder.iterdir()}
    settings = Settings(
        home=demo_home, dask_scheduler=f"tcp://127.0.0.1:{free_port()}", connect_timeout_seconds=1
    )
    with pytest.raises(ServiceUnavailable, match=r"did not answer.*\(CUSTLAB_DASK_SCHEDULER\)$"):
        score_batch(settings, dask=True)
    assert {p.name: p.read_bytes() for p in scored.folder.iterdir()} == before
