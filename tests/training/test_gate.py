import pytest

from training.registry import GateFailed, check_gate

BASELINES = {"recency_rule": 0.80, "rfm_logistic": 0.82}


def test_first_model_must_beat_every_baseline():
    assert "no champion yet" in check_gate("roc_auc", 0.83, None, BASELINES, 0.002)
    with pytest.raises(
        GateFailed, match=r"does not beat baseline rfm_logistic \(0.8200\) by 0.0100"
    ):
        check_gate("roc_auc", 0.81, None, BASELINES, 0.002)


def test_challenger_must_beat_champion_by_the_margin():
    assert "beats champion" in check_gate("roc_auc", 0.86, 0.85, BASELINES, 0.005)
    with pytest.raises(GateFailed, match=r"below champion 0.8500 \+ margin 0.005 by 0.0030"):
        check_gate("roc_auc", 0.852, 0.85, BASELINES, 0.005)


def test_a_task_kept_out_by_the_gate_says_why_and_can_be_promoted_by_hand(tmp_path):
    import lightgbm as lgb
    import mlflow
    import numpy as np

    from custlab.settings import Settings
    from features.errors import CustlabError
    from training.registry import (
        champion_version,
        promote_by_hand,
        record_decision,
        use_tracking,
    )

    use_tracking(Settings(home=tmp_path), "custlab-toy")
    with pytest.raises(CustlabError, match="train it first"):
        champion_version("custlab-toy")
    x = np.random.default_rng(0).random((200, 3))
    booster = lgb.train({"objective": "binary", "verbosity": -1}, lgb.Dataset(x, x[:, 0] > 0.5), 5)
    with mlflow.start_run():
        mlflow.lightgbm.log_model(booster, name="model", registered_model_name="custlab-toy")
    record_decision("custlab-toy", "1", False, "roc_auc 0.70 does not beat baseline rule")
    with pytest.raises(CustlabError, match=r"none promoted; the newest, v1, was kept out because"):
        champion_version("custlab-toy")
    promote_by_hand("custlab-toy", "1", "approved by the retention team")
    assert champion_version("custlab-toy") == "1"
    with pytest.raises(CustlabError, match="no version 7"):
        promote_by_hand("custlab-toy", "7", "typo")
