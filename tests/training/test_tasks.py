import pytest

from features.errors import CustlabError
from training.tasks import TASKS, get_task


def test_unknown_task_lists_the_known_ones():
    with pytest.raises(CustlabError, match="unknown task 'upsell'; known tasks: churn"):
        get_task("upsell")


def test_every_task_names_a_versioned_feature_service():
    for task in TASKS.values():
        assert task.feature_service.endswith("_v1")
        assert task.registered_model == f"custlab-{task.name}"
