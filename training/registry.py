"""MLflow wiring: where runs go, how models are registered, and the promotion gate."""

from __future__ import annotations

import logging
from pathlib import Path

import lightgbm as lgb
import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from custlab.settings import Settings
from features.cluster import ensure_schemas
from features.errors import CustlabError

logger = logging.getLogger(__name__)

# The booster's file name among a registered model's artifacts.
BOOSTER_FILE = "booster.txt"
CHAMPION = "champion"
CHALLENGER = "challenger"
PROMOTION_DECISION = "promotion_decision"
PROMOTION_REASON = "promotion_reason"


class GateFailed(CustlabError):
    """The challenger did not clear the promotion gate; the message says by how much."""


def use_tracking(settings: Settings, experiment: str) -> str:
    """Point MLflow at the profile's tracking store and select ``experiment``, creating it
    with artifacts under the profile's artifact root. Returns the experiment id.

    In the cluster profile the deployment's PostgreSQL schemas are made first (MLflow
    creates its tables, not their schema), and an unreachable server stops here with a
    one-line error, before a run is opened or anything is written.

    Raises:
        ServiceUnavailable: PostgreSQL cannot be reached or its schemas cannot be made.
    """
    if settings.profile == "cluster":
        ensure_schemas(settings)
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_registry_uri(settings.mlflow_tracking_uri)
    found = mlflow.get_experiment_by_name(experiment)
    if found is None:
        location = f"{settings.mlflow_artifact_root}/{experiment}"
        experiment_id = mlflow.create_experiment(experiment, artifact_location=location)
    else:
        experiment_id = found.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def champion_uri(model_name: str) -> str:
    return f"models:/{model_name}@{CHAMPION}"


def champion_version(model_name: str) -> str:
    """The registry version that holds the champion alias.

    Raises:
        CustlabError: No version of ``model_name`` holds it; the message says whether
            the model was never trained or why its versions were kept out.
    """
    client = MlflowClient()
    try:
        return str(client.get_model_version_by_alias(model_name, CHAMPION).version)
    except MlflowException:
        pass
    task = model_name.removeprefix("custlab-")
    try:
        versions = client.search_model_versions(f"name = '{model_name}'")
    except MlflowException:
        versions = []
    if not versions:
        raise CustlabError(
            f"no '{CHAMPION}' version of model '{model_name}' in the registry; "
            f"train it first (custlab train --task {task})"
        ) from None
    newest = max(versions, key=lambda v: int(v.version))
    why = newest.tags.get(PROMOTION_REASON, "no promotion decision recorded")
    raise CustlabError(
        f"'{model_name}' has no '{CHAMPION}': {len(versions)} version(s) registered, none "
        f"promoted; the newest, v{newest.version}, was kept out because {why}. To serve it "
        f"anyway: custlab promote --task {task} --version {newest.version} --reason TEXT"
    ) from None


def record_decision(model_name: str, version: str, promoted: bool, reason: str) -> None:
    """Record the gate's (or a person's) decision on a version."""
    client = MlflowClient()
    client.set_model_version_tag(
        model_name, version, PROMOTION_DECISION, "promoted" if promoted else "kept out"
    )
    client.set_model_version_tag(model_name, version, PROMOTION_REASON, reason)


def promote_by_hand(model_name: str, version: str, reason: str) -> None:
    """Make ``version`` the champion on a person's word, recording who decided and why.

    Raises:
        CustlabError: The version does not exist, or the reason is blank.
    """
    if not reason.strip():
        raise CustlabError("a manual promotion needs a --reason")
    try:
        MlflowClient().get_model_version(model_name, version)
    except MlflowException:
        raise CustlabError(f"'{model_name}' has no version {version}") from None
    set_alias(model_name, CHAMPION, version)
    record_decision(model_name, version, True, f"promoted by hand: {reason.strip()}")


def load_champion(model_name: str) -> tuple[lgb.Booster, str]:
    """The champion's native LightGBM booster and its registry version.

    Raises:
        CustlabError: No version of ``model_name`` holds the champion alias.
    """
    version = champion_version(model_name)
    return load_version(model_name, version), version


def load_version(model_name: str, version: str) -> lgb.Booster:
    """The native LightGBM booster of one registry version (the file its pyfunc wraps,
    :mod:`training.pyfunc_model`).

    Raises:
        CustlabError: ``model_name`` has no such version.
    """
    try:
        MlflowClient().get_model_version(model_name, version)
    except MlflowException:
        raise CustlabError(f"'{model_name}' has no version {version}") from None
    uri = f"models:/{model_name}/{version}"
    booster_file = Path(mlflow.artifacts.download_artifacts(uri), "artifacts", BOOSTER_FILE)
    if not booster_file.exists():
        # Registered before custlab logged its pyfunc: a plain LightGBM model.
        return mlflow.lightgbm.load_model(uri)
    return lgb.Booster(model_file=str(booster_file))


def check_gate(
    metric: str,
    challenger: float,
    champion: float | None,
    baselines: dict[str, float],
    margin: float,
) -> str:
    """The promotion gate: the challenger beats every baseline, and the champion (scored on
    the same test window) by ``margin``.

    Returns:
        Why the challenger passes.

    Raises:
        GateFailed: Naming the number that failed and by how much.
    """
    for name, value in baselines.items():
        if challenger <= value:
            raise GateFailed(
                f"{metric} {challenger:.4f} does not beat baseline {name} ({value:.4f}) "
                f"by {value - challenger:.4f}"
            )
    if champion is None:
        return f"no champion yet; {metric} {challenger:.4f} beats every baseline"
    if challenger < champion + margin:
        raise GateFailed(
            f"{metric} {challenger:.4f} is below champion {champion:.4f} + margin {margin} "
            f"by {champion + margin - challenger:.4f}"
        )
    return f"{metric} {challenger:.4f} beats champion {champion:.4f} by more than {margin}"


def set_alias(model_name: str, alias: str, version: str) -> None:
    MlflowClient().set_registered_model_alias(model_name, alias, version)
