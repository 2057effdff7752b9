"""A promotion while requests keep coming: the service swaps to the new champion whole,
without a failed request. (After test_service.py: it moves the demo home's champion and
moves it back.)"""

import threading

import pytest
from mlflow import MlflowClient

from custlab.settings import Settings
from features.store import latest_as_of, read_features
from serving.scorers import Scoring
from training.registry import promote_by_hand, use_tracking

pytestmark = pytest.mark.integration


def test_champion_moves_under_load_without_a_failed_request(demo_home):
    settings = Settings(home=demo_home)
    latest = read_features(settings, dates=[latest_as_of(settings)])
    ids = latest.loc[latest["orders_52w"] > 0, "customer_id"].head(50).tolist()
    use_tracking(settings, "custlab-churn")
    registry = MlflowClient()
    first = registry.get_model_version_by_alias("custlab-churn", "champion")
    # A second version of the same model, with its record: what a retrain registers.
    second = registry.create_model_version(
        "custlab-churn", first.source, run_id=first.run_id, tags=first.tags
    )
    scoring = Scoring(settings)
    seen: list[str] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            try:
                (scorer,), _ = scoring.served(["churn"])
                answers = scoring.answers([scorer], ids)["churn"]
                assert all(a["score"] is not None for a in answers)
                seen.append({a["model_version"] for a in answers}.pop())
            except BaseException as failure:  # noqa: BLE001 - every failure is the finding
                failures.append(failure)

    clients = [threading.Thread(target=load) for _ in range(2)]
    try:
        for thread in clients:
            thread.start()
        promote_by_hand("custlab-churn", second.version, "swap test")
        assert scoring.reload_if_promoted()
        for _ in range(50):  # answers after the swap
            if seen.count(str(second.version)) >= 5:
                break
            threading.Event().wait(0.1)
    finally:
        stop.set()
        for thread in clients:
            thread.join()
        promote_by_hand("custlab-churn", first.version, "swap test: back to the first")
        registry.delete_model_version("custlab-churn", second.version)
        scoring.close()
    assert failures == []
    old, new = str(first.version), str(second.version)
    assert seen[0] == old and seen[-1] == new
    # Every request saw one version whole; once the new one answered, the old never did.
    assert old not in seen[seen.index(new) :]
