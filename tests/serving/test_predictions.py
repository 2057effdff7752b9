"""The prediction log: parquet by task and day, nothing half-written, old days deleted."""

from datetime import UTC, datetime, timedelta

from serving.predictions import CALLS, PredictionLog, read_predictions


def _record(customer: str, **extra) -> dict:
    return {
        "customer_id": customer,
        "source": "online",
        "caller": "open",
        "model_version": "3",
        "score": 0.25,
        "tier": "low",
        "feature_timestamp": "2025-09-29T00:00:00Z",
        "unknown": False,
    } | extra


def test_records_land_by_task_and_day_with_every_column(tmp_path):
    log = PredictionLog(tmp_path)
    log.append("churn", [_record("p1"), _record("p2")])
    log.append("clv", [_record("p1", source="features", features='{"orders_52w": 2.0}')])
    log.close()
    churn = read_predictions(tmp_path, "churn")
    assert list(churn["customer_id"]) == ["p1", "p2"] and churn["features"].isna().all()
    clv = read_predictions(tmp_path, "clv")
    assert clv["features"].tolist() == ['{"orders_52w": 2.0}']
    (day,) = (tmp_path / "churn").iterdir()
    assert day.name == f"date={datetime.now(UTC):%Y-%m-%d}"
    assert not list(day.glob(".*")), "no temporary part is left behind"
    assert read_predictions(tmp_path, "lifecycle").empty


def test_days_past_the_retention_are_deleted(tmp_path):
    log = PredictionLog(tmp_path, retention_days=30)
    for age in (0, 29, 31, 400):
        day = tmp_path / "churn" / f"date={datetime.now(UTC) - timedelta(days=age):%Y-%m-%d}"
        day.mkdir(parents=True)
        (day / "part-0.parquet").write_bytes(b"")
    gone = log.sweep()
    log.close()
    assert len(gone) == 2
    assert len(list((tmp_path / "churn").iterdir())) == 2


def test_the_audit_keeps_lists_of_pseudonyms(tmp_path):
    audit = PredictionLog(tmp_path, schema=CALLS)
    audit.append(
        "calls",
        [
            {
                "caller": "shop",
                "route": "/v1/score",
                "versions": '{"churn": "3"}',
                "customers": 2,
                "customer_ids": ["p1", "p2"],
            }
        ],
    )
    audit.close()
    (call,) = read_predictions(tmp_path, "calls").to_dict("records")
    assert call["caller"] == "shop" and list(call["customer_ids"]) == ["p1", "p2"]
