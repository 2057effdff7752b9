"""Feast definitions for custlab: the customer entity, its sources, feature views and the
versioned feature service each model trains and serves on.

Source paths are relative: the store resolves them against the offline folder of the
active profile, so the same definitions serve every profile.
"""

from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource
from feast.types import Float32
from feast.value_type import ValueType

from features.contract import ENTITY_KEY, EVENT_TIMESTAMP
from features.snapshots import FEATURE_DESCRIPTIONS

customer = Entity(
    name="customer",
    join_keys=[ENTITY_KEY],
    value_type=ValueType.STRING,
    description="A customer, keyed by the pseudonymous id ingestion assigns.",
)

customer_snapshots_source = FileSource(
    name="customer_snapshots_source",
    path="customer_snapshots.parquet",
    timestamp_field=EVENT_TIMESTAMP,
    description="Weekly point-in-time snapshots; a row at t uses only orders before t.",
)

# Order behaviour: recency, frequency and spend over several windows. Snapshots are weekly,
# so a row older than two weeks means the pipeline missed a run: it is not joined.
customer_orders = FeatureView(
    name="customer_orders",
    entities=[customer],
    ttl=timedelta(days=14),
    schema=[
        Field(name=name, dtype=Float32, description=description)
        for name, description in FEATURE_DESCRIPTIONS.items()
    ],
    source=customer_snapshots_source,
    online=True,
    tags={"family": "orders", "owner": "custlab"},
)

churn_v1 = FeatureService(
    name="churn_v1",
    features=[customer_orders],
    description="Inputs of the churn model, version 1.",
    tags={"task": "churn"},
)
