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
