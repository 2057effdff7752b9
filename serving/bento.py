"""A Bento of the champions: ``custlab build`` packages every task's current champion and
the service's code into one, and a service started from it (``bentoml serve <tag>``)
answers with those models and never contacts MLflow.

The models are fixed when the Bento is built (a new champion is served by building a new
Bento), so a Bento's service does not watch the registry. The feature data is not part of
a Bento: the service reads the Feast registry and online store of the home it is given
(``CUSTLAB_HOME``), as a service run from source does.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import bentoml

from custlab.settings import Settings
from features.errors import CustlabError
from serving.launch import PROJECT_ROOT, SERVICE
from serving.models import (
    VERSION_LABEL,
    PackagedChampions,
    load_champion_model,
    package_champion,
    serve_packaged,
)
from serving.scorers import Scoring
from training.tasks import TASKS

if TYPE_CHECKING:
    from bentoml import Bento

logger = logging.getLogger(__name__)

WATCH_OFF = (
    "off: a Bento's models are fixed when it is built; to serve a new champion, build a "
    "new Bento (custlab build)"
)


@dataclass(frozen=True)
class BuiltBento:
    """A Bento in BentoML's store, and what it packages."""

    tag: str
    models: dict[str, str]  # task: its model's tag in BentoML's store
    unavailable: dict[str, str]  # task: why it has no champion in the Bento


def project_files(root: Path = PROJECT_ROOT) -> list[str]:
    """What a Bento copies of the project: the packages the project's wheel ships (one
    list, in pyproject.toml), and the pyproject and lock file that pin its dependencies."""
    with (root / "pyproject.toml").open("rb") as file:
        packages = tomllib.load(file)["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    # Anchored: tests/features/ is not the features package.
    return [*(f"/{package}/" for package in packages), "/pyproject.toml", "/uv.lock"]


def locked_requirements(root: Path = PROJECT_ROOT) -> list[str]:
    """The project's runtime dependencies pinned as its lock file pins them (no dev
    group, not the project itself, whose code the Bento copies): what the Bento's image
    installs.

    Raises:
        CustlabError: uv, the project's lock tool, is not on the PATH or cannot read the
            lock file.
    """
    uv = shutil.which("uv")
    if uv is None:
        raise CustlabError("custlab build reads the lock file with uv; install it (pip install uv)")
    exported = subprocess.run(
        [uv, "export", "--frozen", "--no-dev", "--no-emit-project", "--no-hashes",
         "--no-header", "--no-annotate"],
        cwd=root, capture_output=True, text=True,
    )  # fmt: skip
    if exported.returncode != 0:
        raise CustlabError(f"uv could not export the lock file: {exported.stderr.strip()}")
    return [line for line in exported.stdout.splitlines() if line and not line.startswith("#")]


def build_bento(settings: Settings) -> BuiltBento:
    """Package every task's current champion into BentoML's model store and build a Bento
    of the service with them (both stores under ``BENTOML_HOME``).

    Raises:
        CustlabError: No task has a champion (the message says why for each).
    """
    models: dict[str, bentoml.Model] = {}
    unavailable: dict[str, str] = {}
    for name, task in TASKS.items():
        try:
            champion = load_champion_model(settings, task)
        except CustlabError as error:
            unavailable[name] = str(error)
            logger.info("not packaging %s: %s", name, error)
            continue
        models[name] = package_champion(champion)
        logger.info("packaged %s v%s as %s", champion.name, champion.version, models[name].tag)
    if not models:
        raise CustlabError("no task has a champion to package; " + "; ".join(unavailable.values()))
    bento = bentoml.bentos.build(
        SERVICE,
        models=[str(stored.tag) for stored in models.values()],
        include=project_files(),
        exclude=["__pycache__/", "*.pyc"],
        # Pinned already: BentoML's own locking would resolve them again, from the index.
        python={"packages": locked_requirements(), "lock_packages": False},
        labels={
            f"{name}_version": stored.info.labels[VERSION_LABEL] for name, stored in models.items()
        },
        build_ctx=str(PROJECT_ROOT),
    )
    logger.info("built Bento %s in %s", bento.tag, bento.path)
    return BuiltBento(
        str(bento.tag), {name: str(stored.tag) for name, stored in models.items()}, unavailable
    )


class PackagedScoring(Scoring):
    """The service's state when it serves a built Bento: the champions it packages, no
    watch for promotions, and a status that says where the models come from."""

    def __init__(self, settings: Settings, bento: Bento) -> None:
        if not settings.home.is_absolute():
            # BentoML runs a Bento's service in the Bento's own folder.
            raise CustlabError(
                f"a Bento's service needs the home as an absolute path (CUSTLAB_HOME), not "
                f"{str(settings.home)!r}: it runs in the Bento's folder, not where it was built"
            )
        self.packaged: PackagedChampions = serve_packaged(bento)
        super().__init__(settings)

    def watch(self) -> None:
        logger.info("champion watch %s", WATCH_OFF)

    def reload_if_promoted(self) -> bool:
        return False

    def status(self) -> dict[str, Any]:
        return super().status() | {
            "models": {
                "source": "bento",
                "bento": self.packaged.bento,
                "packaged": self.packaged.tags(),
                "champion_watch": WATCH_OFF,
            }
        }
