"""Feast definitions for custlab: the customer entity, one source and one feature view per
feature family, and the versioned feature service each model trains and serves on.

Names, descriptions and kinds of the features come from the families in ``features/``;
this module declares how Feast holds them. Source paths are file names: the store binds
them to the offline folder of the active profile (``features.store``), so the same
definitions serve every profile and are never rewritten.
"""

from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource
from feast.types import Float32, String
from feast.value_type import ValueType

from features.contract import ENTITY_KEY, EVENT_TIMESTAMP
from features.families import FAMILIES, FeatureFamily

# Snapshots are weekly: a row older than two weeks means the pipeline missed a run, so it
# is not joined offline and is flagged stale online.
SNAPSHOT_TTL = timedelta(days=14)

customer = Entity(
    name="customer",
    join_keys=[ENTITY_KEY],
    value_type=ValueType.STRING,
    description="A customer, keyed by the pseudonymous id ingestion assigns.",
)


def _family_view(family: FeatureFamily, ttl: timedelta = SNAPSHOT_TTL) -> FeatureView:
    source = FileSource(
        name=f"{family.name}_snapshots",
        path=family.table_file,
        timestamp_field=EVENT_TIMESTAMP,
        description=f"Weekly point-in-time snapshots of the {family.name} family; a row "
        "at t uses only records before t.",
    )
    return FeatureView(
        name=f"customer_{family.name}",
        entities=[customer],
        ttl=ttl,
        schema=[
            Field(
                name=f.name,
                dtype=Float32 if f.kind == "number" else String,
                description=f.description,
            )
            for f in family.features
        ],
        source=source,
        online=True,
        description=family.description,
        owner="custlab",
        tags={"family": family.name, "owner": "custlab", "source_table": family.source},
    )


# What a customer bought, when and how: the backbone every source has.
customer_orders = _family_view(FAMILIES["orders"])
# Where a customer stands (lifecycle stage, RFM segment): features and monitoring slices.
customer_segments = _family_view(FAMILIES["segments"])
# Visits, carts and logins: engagement fades before a customer leaves.
customer_engagement = _family_view(FAMILIES["engagement"])
# Complaints and unresolved tickets raise the risk of leaving.
customer_service = _family_view(FAMILIES["service"])
# Who is reachable and who responds to campaigns.
customer_marketing = _family_view(FAMILIES["marketing"])
# Who the customer is: tenure, channel, region, age band.
customer_profile = _family_view(FAMILIES["profile"])

ALL_VIEWS = [
    customer_orders,
    customer_segments,
    customer_engagement,
    customer_service,
    customer_marketing,
    customer_profile,
]

churn_v1 = FeatureService(
    name="churn_v1",
    features=ALL_VIEWS,
    description="Inputs of the churn model, version 1: every family.",
    tags={"task": "churn"},
)
propensity_v1 = FeatureService(
    name="propensity_v1",
    features=ALL_VIEWS,
    description="Inputs of the purchase-propensity model, version 1: every family.",
    tags={"task": "propensity"},
)
clv_v1 = FeatureService(
    name="clv_v1",
    features=ALL_VIEWS,
    description="Inputs of the customer-lifetime-value model, version 1: every family.",
    tags={"task": "clv"},
)
lifecycle_v1 = FeatureService(
    name="lifecycle_v1",
    features=ALL_VIEWS,
    description="Inputs of the lifecycle-stage model, version 1: every family.",
    tags={"task": "lifecycle"},
)
