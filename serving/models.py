"""Loading champions from the registry into the form serving uses."""

from __future__ import annotations

from mlflow import MlflowClient

from custlab.settings import Settings
from serving.scoring import LoadedModel
from training.registry import load_champion, use_tracking
from training.tasks import TaskSpec


def load_champion_model(settings: Settings, task: TaskSpec) -> LoadedModel:
    """The task's ``@champion`` with its decision-tier thresholds.

    Raises:
        CustlabError: The registry holds no champion for the task.
    """
    use_tracking(settings, task.registered_model)
    booster, version = load_champion(task.registered_model)
    tags = MlflowClient().get_model_version(task.registered_model, version).tags
    thresholds = {
        key.removeprefix("tier_"): float(value)
        for key, value in tags.items()
        if key.startswith("tier_")
    }
    return LoadedModel(
        name=task.registered_model,
        version=str(version),
        booster=booster,
        tier_thresholds=thresholds,
        feature_service=tags.get("feature_service", task.feature_service),
    )
