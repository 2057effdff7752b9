"""Loading champions from the registry into the form serving uses."""

from __future__ import annotations

from custlab.settings import Settings
from serving.scoring import LoadedModel
from training.record import ModelRecord
from training.registry import load_champion, use_tracking
from training.tasks import TaskSpec


def load_champion_model(settings: Settings, task: TaskSpec) -> LoadedModel:
    """The task's ``@champion`` with the record it was registered with.

    Raises:
        CustlabError: The registry holds no champion for the task (the message says why).
    """
    use_tracking(settings, task.registered_model)
    booster, version = load_champion(task.registered_model)
    return LoadedModel(
        task=task,
        version=str(version),
        booster=booster,
        record=ModelRecord.read(task.registered_model, version),
    )
