"""Loading champions from the registry into the form serving uses."""

from __future__ import annotations

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from custlab.settings import Settings
from serving.scoring import LoadedModel
from training.labelled import find_table, labelled_task
from training.record import ModelRecord
from training.registry import CHAMPION, load_champion, use_tracking
from training.tasks import TaskSpec


def load_champion_model(settings: Settings, task: TaskSpec) -> LoadedModel:
    """The task's ``@champion`` with the record it was registered with.

    Raises:
        CustlabError: The registry holds no champion for the task (the message says why).
    """
    use_tracking(settings, task.registered_model)
    booster, version = load_champion(task.registered_model)
    record = ModelRecord.read(task.registered_model, version)
    if record.labelled_table is not None:
        # The champion learned from a labelled table: its population and features are
        # that table's.
        task = labelled_task(task, find_table(settings, record.labelled_table))
    return LoadedModel(task=task, version=str(version), booster=booster, record=record)


def registry_client(settings: Settings) -> MlflowClient:
    """A registry client of its own (the service asks it from a thread every few
    seconds, and must neither move the process's tracking URI nor build a store per
    question)."""
    uri = settings.mlflow_tracking_uri
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def champion_version(client: MlflowClient, task: TaskSpec) -> str | None:
    """The version holding ``@champion`` now, None when there is none."""
    try:
        found = client.get_model_version_by_alias(task.registered_model, CHAMPION)
    except MlflowException:
        return None
    return str(found.version)
