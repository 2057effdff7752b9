"""Planted canary PII goes in through ingestion and appears nowhere downstream."""

import logging
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
import yaml

from custlab import pipeline
from custlab.settings import Settings
from features.simulate import WorldSpec, simulate_world
from training.tune import TuneSpec

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CANARY = "canary"  # every planted value contains it, in some case


def _exports(folder: Path) -> tuple[Path, Path]:
    world = simulate_world(WorldSpec(customers=1200, weeks=70, seed=5))
    member = {cid: f"CANARY-ID-{i:05d}" for i, cid in enumerate(world.customers["customer_id"])}
    customers = pd.DataFrame(
        {
            "member_no": world.customers["customer_id"].map(member),
            "joined": world.customers["signup_ts"].dt.strftime("%Y-%m-%d %H:%M:%S"),
            "mail": [f"Person{i}@Canary-Mail.test" for i in range(len(member))],
            "tel": [f"+1 555 0{i:06d}" for i in range(len(member))],
            "consent": ["yes"] * len(member),
            "full_name": [f"Canary Person {i}" for i in range(len(member))],
        }
    )
    orders = pd.DataFrame(
        {
            "order_no": world.orders["order_id"],
            "member_no": world.orders["customer_id"].map(member),
            "placed": world.orders["order_ts"].dt.strftime("%Y-%m-%d %H:%M:%S"),
            "total": world.orders["amount"],
        }
    )
    folder.mkdir()
    customers.to_csv(folder / "customers.csv", index=False)
    orders.to_csv(folder / "orders.csv", index=False)
    return folder / "customers.csv", folder / "orders.csv"


def _mapping(folder: Path, name: str, body: dict) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def _text_of(path: Path) -> str:
    """Everything a file says, decoded: parquet cells, SQLite rows, or raw bytes."""
    if path.suffix == ".parquet":
        return pd.read_parquet(path).astype(str).to_csv()
    with path.open("rb") as handle:
        is_sqlite = handle.read(16) == b"SQLite format 3\x00"
    if is_sqlite:
        with sqlite3.connect(path) as connection:
            return "\n".join(connection.iterdump())
    return path.read_bytes().decode("latin-1")


def test_canaries_reach_no_store_model_report_or_log(tmp_path: Path, caplog, client):
    customers_csv, orders_csv = _exports(tmp_path / "exports")
    maps = tmp_path / "mappings"
    maps.mkdir()
    customers_map = ROOT / "features" / "mappings" / "crm_customers.yaml"
    orders_map = _mapping(
        maps,
        "orders",
        {
            "table": "orders",
            "columns": {
                "order_id": "order_no",
                "customer_id": "member_no",
                "order_ts": "placed",
                "amount": "total",
            },
        },
    )
    home = tmp_path / "home"
    settings = Settings(home=home, pseudonym_key="a secret for this test only")
    caplog.set_level(logging.DEBUG)

    pipeline.ingest(settings, customers_csv, customers_map)
    pipeline.ingest(settings, orders_csv, orders_map)
    pipeline.build_features(settings)
    outcome = pipeline.train(settings, "churn", TuneSpec(n_trials=2, max_rounds=100))
    if not outcome.promoted:
        # A world this small may tie its baseline; a person's promotion serves it anyway.
        pipeline.promote(settings, "churn", outcome.model_version, "privacy test")
    pipeline.monitor(settings, ["churn"])
    # The application asks by its own id; the door pseudonymizes it as ingest did.
    from serving.scorers import Scoring

    scoring = Scoring(settings)
    served, _ = scoring.served(["churn"])
    (answer,) = scoring.answers(served, ["CANARY-ID-00001"])["churn"]
    assert answer["score"] is not None and answer["feature_timestamp"]
    scoring.close()  # its prediction log is among the files searched below

    files = [p for p in home.rglob("*") if p.is_file()]
    assert any(p.suffix == ".parquet" for p in files) and any(p.name == "mlflow.db" for p in files)
    leaks = [str(p.relative_to(home)) for p in files if CANARY in _text_of(p).lower()]
    assert leaks == []
    assert CANARY not in caplog.text.lower()

    # The service never echoes what it was sent, valid or not.
    bad = client.post("/v1/churn", json={"customer_ids": ["Canary Person 1 <p1@canary.test>"]})
    extra = client.post(
        "/v1/churn", json={"customer_ids": ["x"], "email": "Person1@Canary-Mail.test"}
    )
    unknown = client.post("/v1/churn", json={"customer_ids": ["CANARY-ID-00001"]})
    assert bad.status_code == 400 and extra.status_code == 400
    for response in (bad, extra):
        assert CANARY not in response.text.lower()
    assert CANARY not in caplog.text.lower()
    assert unknown.json()["predictions"][0]["warnings"]
