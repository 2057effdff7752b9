import pytest
from feast import FeatureService

from features.errors import CustlabError
from features.store import repo_definitions
from training.objectives import OBJECTIVES
from training.tasks import TASKS, get_task
from training.tasks.base import ScoreTiers, TaskSpec, Tier

SERVICES = {obj.name for obj in repo_definitions() if isinstance(obj, FeatureService)}


def test_unknown_task_lists_the_known_ones():
    with pytest.raises(
        CustlabError, match="unknown task 'upsell'; known tasks: churn, propensity, clv, lifecycle"
    ):
        get_task("upsell")


def test_the_four_tasks_are_declared_with_their_objectives():
    objectives = {name: task.objective.name for name, task in TASKS.items()}
    assert objectives == {
        "churn": "binary",
        "propensity": "binary",
        "clv": "tweedie",
        "lifecycle": "multiclass",
    }


@pytest.mark.parametrize("task", TASKS.values(), ids=list(TASKS))
def test_every_task_names_a_declared_feature_service_and_a_baseline(task: TaskSpec):
    assert task.feature_service in SERVICES
    assert task.registered_model == f"custlab-{task.name}"
    assert task.baselines and task.primary_metric


def test_a_spec_refuses_classes_without_a_multiclass_objective():
    with pytest.raises(ValueError, match="classes go with a multiclass objective"):
        TaskSpec(
            name="odd",
            description="-",
            label="y",
            labels=lambda tables, as_of, horizon_days: None,
            horizon_days=30,
            objective=OBJECTIVES["binary"],
            classes=("a", "b"),
            feature_service="churn_v1",
            primary_metric="roc_auc",
            baselines={},
            policy=ScoreTiers((Tier("all", "-"),)),
        )
