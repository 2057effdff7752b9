"""Shared fixtures: a small simulated world, one whole demo run the serving and
integration tests share (training once per session keeps the suite fast), and a local
Dask cluster of two workers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from starlette.applications import Starlette

from custlab.settings import Settings
from features.simulate import World, WorldSpec, simulate_world
from tests.factories import DEMO_TUNING, DEMO_WORLD

if TYPE_CHECKING:
    import distributed
    from starlette.testclient import TestClient

SMALL_WORLD = WorldSpec(customers=1500, weeks=70, seed=11)


@pytest.fixture(scope="session")
def small_world() -> World:
    return simulate_world(SMALL_WORLD)


@pytest.fixture(scope="session")
def dask_local() -> Iterator[distributed.Client]:
    """A client of a local Dask cluster of two worker processes, one thread each, as the
    cluster profile makes when no scheduler is set."""
    import distributed

    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


@pytest.fixture(scope="session")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A home where the whole demo ran: raw tables, Feast stores, a champion, a report.

    The service reads its settings from the environment, as it does under
    ``bentoml serve``, so the home is exported for the session.
    """
    from custlab import pipeline

    home = tmp_path_factory.mktemp("custlab-home")
    with pytest.MonkeyPatch.context() as environment:
        environment.setenv("CUSTLAB_HOME", str(home))
        # The service's champion watch would load models (and point MLflow's process-wide
        # tracking URI at this home) from a thread while other tests use other homes;
        # tests/serving/test_swap.py drives the same reload by hand.
        environment.setenv("CUSTLAB_CHAMPION_CHECK_SECONDS", "0")
        pipeline.quiet_libraries()
        pipeline.demo(Settings(), DEMO_WORLD, DEMO_TUNING)
        yield home


@pytest.fixture(scope="session")
def asgi_app(demo_home: Path) -> Starlette:
    """The service's ASGI app, built once: BentoML registers metrics per build."""
    from serving.service import CustomerScoring

    return CustomerScoring.to_asgi()


@pytest.fixture(scope="session")
def client(asgi_app: Starlette) -> Iterator[TestClient]:
    from starlette.testclient import TestClient

    with TestClient(asgi_app) as test_client:  # runs the lifespan: models load here
        yield test_client
