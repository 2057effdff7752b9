from pathlib import Path

import pytest

from custlab.settings import Settings
from features.errors import CustlabError
from monitoring.policy import SHIPPED, load_policy
from training.tasks import TASKS


@pytest.mark.parametrize("task", sorted(TASKS))
def test_every_task_ships_a_valid_policy(task: str, tmp_path: Path) -> None:
    assert (SHIPPED / f"{task}.yaml").exists()
    policy = load_policy(Settings(home=tmp_path), task)
    assert 0 < policy.drift_share <= 1


def test_a_home_policy_replaces_the_shipped_one(tmp_path: Path) -> None:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "churn.yaml").write_text("cooldown_weeks: 9\nmin_sample: 10\n")
    policy = load_policy(Settings(home=tmp_path), "churn")
    assert (policy.cooldown_weeks, policy.min_sample) == (9, 10)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("drift_shares: 0.4\n", "drift_shares"),
        ("drift_share: 2\n", "drift_share"),
        ("min_sample: [1\n", "not valid YAML"),
    ],
)
def test_a_bad_policy_is_refused_naming_file_and_key(tmp_path: Path, text: str, says: str) -> None:
    (tmp_path / "policies").mkdir()
    path = tmp_path / "policies" / "churn.yaml"
    path.write_text(text)
    with pytest.raises(CustlabError, match=says) as raised:
        load_policy(Settings(home=tmp_path), "churn")
    assert str(path) in str(raised.value) and "policy file" in str(raised.value)
