"""The monitoring policy of a task: what evidence makes a week's verdict retrain, alert
or nothing. One YAML file a task; custlab ships ``monitoring/policies/<task>.yaml`` and a
home's ``policies/<task>.yaml`` replaces it whole. Unknown keys are refused."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from custlab.settings import Settings
from features.mapping import load_yaml_model

SHIPPED = Path(__file__).parent / "policies"


class MonitorPolicy(BaseModel):
    """Thresholds of the weekly decision (see :func:`monitoring.decision.decide`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    drift_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Share of drifted features at which covariate drift is reported as "
        "dataset drift (an alert: the model may still hold).",
    )
    key_features: tuple[str, ...] = Field(
        (),
        description="Features whose drift alone means the customers' behaviour changed "
        "(retrain); features that grow with the customer base's age do not belong here.",
    )
    performance_drop: float = Field(
        0.03,
        gt=0,
        description="Fall of the primary metric on a matured week, below the champion's "
        "own test score, that means the model no longer holds (retrain).",
    )
    outcome_change: float = Field(
        0.1,
        gt=0,
        description="Relative change of the week's order rate or average order value "
        "against the reference weeks that means the world changed (retrain), when also "
        "significant at outcome_p_value.",
    )
    outcome_p_value: float = Field(0.001, gt=0, lt=1)
    missing_share_rise: float = Field(
        0.1,
        gt=0,
        le=1,
        description="Rise of a feature's missing share over the reference (data quality).",
    )
    volume_drop: float = Field(
        0.3,
        gt=0,
        le=1,
        description="Fall of a raw table's rows in the week against the reference weeks' "
        "mean, per active customer (data quality: a feed broke).",
    )
    mix_features: tuple[str, ...] = Field(
        ("acquisition_channel", "region", "age_band"),
        description="Who the customers are: a change of their mix among the newest "
        "customers is reported as covariate drift (an alert).",
    )
    mix_p_value: float = Field(0.001, gt=0, lt=1)
    min_sample: int = Field(
        300, ge=1, description="Fewer scored rows in a week than this: no verdict."
    )
    cooldown_weeks: int = Field(
        4, ge=0, description="Weeks after a retrain in which another is only an alert."
    )


def policy_path(settings: Settings, task: str) -> Path:
    """The home's policy file for ``task`` where there is one, else the shipped one."""
    own = settings.home / "policies" / f"{task}.yaml"
    return own if own.exists() else SHIPPED / f"{task}.yaml"


def load_policy(settings: Settings, task: str) -> MonitorPolicy:
    """The task's policy.

    Raises:
        CustlabError: The file is missing, not YAML, or holds an unknown key or a bad
            value; the message names the file and the key.
    """
    return load_yaml_model(policy_path(settings, task), MonitorPolicy, "policy file")
