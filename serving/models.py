"""Champions in the form serving uses, from one of two places: the MLflow registry (a
service run from source) or the models packaged in the built Bento the process serves.

A packaged champion is a model in BentoML's store holding the booster as LightGBM's text
model and the record it was registered with (JSON), labelled with its task and registry
version; it is written and read here alone. Neither place executes model code or
unpickles anything.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import bentoml
import lightgbm as lgb
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from custlab.settings import Settings
from features.errors import CustlabError
from serving.scoring import LoadedModel
from training.labelled import find_table, labelled_task
from training.record import ModelRecord
from training.registry import (
    BOOSTER_FILE,
    CHALLENGER,
    CHAMPION,
    load_champion,
    load_version,
    use_tracking,
)
from training.tasks import TASKS, TaskSpec

if TYPE_CHECKING:
    from bentoml import Bento

RECORD_FILE = "record.json"
TASK_LABEL = "task"
VERSION_LABEL = "registry_version"
# Over the booster's text and the record: two packagings of one champion are one model.
DIGEST = "content_sha256"


def _served(
    settings: Settings, task: TaskSpec, version: str, booster: lgb.Booster, record: ModelRecord
) -> LoadedModel:
    if record.labelled_table is not None:
        # The champion learned from a labelled table: its population and features are
        # that table's (the table is the home's data, wherever the model came from).
        task = labelled_task(task, find_table(settings, record.labelled_table))
    return LoadedModel(task=task, version=version, booster=booster, record=record)


def load_champion_model(settings: Settings, task: TaskSpec) -> LoadedModel:
    """The task's champion with the record it was registered with: the one packaged in
    the Bento this process serves (see :func:`serve_packaged`), else the registry's
    ``@champion``.

    Raises:
        CustlabError: The registry holds no champion for the task, or the Bento packages
            none (the message says why).
    """
    if _packaged is not None:
        return _packaged.load(settings, task)
    use_tracking(settings, task.registered_model)
    booster, version = load_champion(task.registered_model)
    record = ModelRecord.read(task.registered_model, version)
    return _served(settings, task, str(version), booster, record)


def load_champion_models(settings: Settings) -> tuple[dict[str, LoadedModel], dict[str, str]]:
    """Every task's champion (:func:`load_champion_model`), and for each task without
    one, why not."""
    models: dict[str, LoadedModel] = {}
    unavailable: dict[str, str] = {}
    for name, task in TASKS.items():
        try:
            models[name] = load_champion_model(settings, task)
        except CustlabError as error:
            unavailable[name] = " ".join(str(error).split())
    return models, unavailable


def registry_client(settings: Settings) -> MlflowClient | None:
    """A registry client of its own (the service asks it from a thread every few
    seconds, and must neither move the process's tracking URI nor build a store per
    question); None when the process serves a Bento, whose champions are fixed (building
    a client would open the registry's store)."""
    if _packaged is not None:
        return None
    uri = settings.mlflow_tracking_uri
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def champion_version(client: MlflowClient | None, task: TaskSpec) -> str | None:
    """The version holding ``@champion`` now (with no client: the one the Bento
    packages), None when there is none."""
    if client is None:
        return _packaged.version(task.name) if _packaged is not None else None
    return _alias_version(client, task, CHAMPION)


def challenger_version(client: MlflowClient | None, task: TaskSpec) -> str | None:
    """The version holding ``@challenger`` when it is not also the champion (a version
    the gate kept out, or one not yet judged); None otherwise, and for a Bento."""
    if client is None:
        return None
    challenger = _alias_version(client, task, CHALLENGER)
    return None if challenger == _alias_version(client, task, CHAMPION) else challenger


def _alias_version(client: MlflowClient, task: TaskSpec, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(task.registered_model, alias).version)
    except MlflowException:
        return None


def load_challenger_model(
    settings: Settings, client: MlflowClient | None, task: TaskSpec
) -> LoadedModel | None:
    """The task's challenger (:func:`challenger_version`) as serving holds it, for
    scoring in the shadow of the champion; None when there is none."""
    version = challenger_version(client, task)
    if version is None:
        return None
    use_tracking(settings, task.registered_model)
    booster = load_version(task.registered_model, version)
    record = ModelRecord.read(task.registered_model, version)
    return _served(settings, task, version, booster, record)


# -- packaged champions ---------------------------------------------------------------


def _digest(booster_text: str, record: ModelRecord) -> str:
    content = booster_text.encode() + b"\0" + record.model_dump_json().encode()
    return hashlib.sha256(content).hexdigest()


def package_champion(model: LoadedModel) -> bentoml.Model:
    """The champion as a model in BentoML's store (``BENTOML_HOME``), named after its
    registered model; one already there with the same booster and record is reused."""
    text = model.booster.model_to_string()
    digest = _digest(text, model.record)
    try:
        packaged = bentoml.models.list(model.name)
    except bentoml.exceptions.NotFound:  # the store has none of that name yet
        packaged = []
    for stored in packaged:
        if stored.info.metadata.get(DIGEST) == digest:
            return stored
    labels = {TASK_LABEL: model.task.name, VERSION_LABEL: model.version}
    metadata = {
        "registered_model": model.name,
        "feature_service": model.feature_service,
        "data_fingerprint": model.record.data_fingerprint,
        DIGEST: digest,
    }
    with bentoml.models.create(model.name, labels=labels, metadata=metadata) as stored:
        Path(stored.path_of(BOOSTER_FILE)).write_text(text)
        Path(stored.path_of(RECORD_FILE)).write_text(model.record.model_dump_json(indent=1))
    return stored


@dataclass(frozen=True)
class PackagedChampions:
    """The champions a built Bento carries, by task: fixed when it was built."""

    bento: str
    models: dict[str, bentoml.Model]

    @classmethod
    def of(cls, bento: Bento) -> PackagedChampions:
        """The custlab models among ``bento``'s, found in the model store BentoML serves
        it with (``BENTOML_HOME``'s, or the Bento's own in a container)."""
        models = {}
        for info in bento.info.all_models:
            stored = bentoml.models.get(info.tag)
            if TASK_LABEL in stored.info.labels:
                models[stored.info.labels[TASK_LABEL]] = stored
        return cls(str(bento.tag), models)

    def version(self, task: str) -> str | None:
        stored = self.models.get(task)
        return None if stored is None else stored.info.labels[VERSION_LABEL]

    def tags(self) -> dict[str, str]:
        return {task: str(stored.tag) for task, stored in self.models.items()}

    def load(self, settings: Settings, task: TaskSpec) -> LoadedModel:
        """The task's packaged champion.

        Raises:
            CustlabError: The Bento packages none for the task.
        """
        stored = self.models.get(task.name)
        if stored is None:
            raise CustlabError(
                f"Bento {self.bento} packages no champion of {task.name} (it had none when "
                "the Bento was built)"
            )
        booster = lgb.Booster(model_file=stored.path_of(BOOSTER_FILE))
        record = ModelRecord.model_validate_json(Path(stored.path_of(RECORD_FILE)).read_text())
        return _served(settings, task, stored.info.labels[VERSION_LABEL], booster, record)


# The champions of the Bento this process serves; None: it serves from source, and loads
# the registry's. Set once, at the service's start.
_packaged: PackagedChampions | None = None


def serve_packaged(bento: Bento) -> PackagedChampions:
    """From now on, this process's champions are those ``bento`` packages."""
    global _packaged
    _packaged = PackagedChampions.of(bento)
    return _packaged
