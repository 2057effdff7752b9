"""The door: applications send their own customer ids; the stores hold ingest's pseudonyms.

An id is pseudonymized here exactly as ingest did (the home's key, kind ``customer``) and
mapped onto the customer identity resolution linked it to (``identity/links.parquet``), so
an application never needs custlab's pseudonyms, and nothing past the door (the online
store, the prediction log) sees the id it sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from custlab.settings import Settings
from features.errors import CustlabError
from features.ingest import read_manifest, stored_pseudonym_key
from features.pseudonymize import pseudonym


@dataclass(frozen=True)
class Door:
    """Application ids to store ids. ``key`` None: the store keeps the ids as they are
    (a simulated world's synthetic ids)."""

    key: bytes | None
    # Pseudonyms identity resolution folded into another customer (only those differ).
    linked: dict[str, str] = field(default_factory=dict)

    def store_ids(self, ids: Sequence[str]) -> list[str]:
        if self.key is None:
            return list(ids)
        pseudonyms = (pseudonym(i, self.key, "customer") for i in ids)
        return [self.linked.get(p, p) for p in pseudonyms]


def door_for(settings: Settings, labelled: bool) -> Door:
    """The door of the home's event tables (``labelled`` False) or of its labelled tables.

    Raises:
        CustlabError: The stores hold pseudonyms and the key ingest used is not here.
    """
    origins = {entry.get("origin") for entry in read_manifest(settings.raw_dir).values()}
    if not labelled and origins == {"simulator"}:
        return Door(None)
    key = stored_pseudonym_key(settings)
    if key is None:
        raise CustlabError(
            "the feature store holds pseudonymized ids, but the key ingest used is not "
            "here: set CUSTLAB_PSEUDONYM_KEY (or keep <home>/secrets/pseudonym.key)"
        )
    links_path = settings.home / "identity" / "links.parquet"
    linked: dict[str, str] = {}
    if not labelled and links_path.exists():
        links = pd.read_parquet(links_path, columns=["kind", "identifier", "customer_id"])
        moved = links[(links["kind"] == "customer") & (links["identifier"] != links["customer_id"])]
        linked = dict(zip(moved["identifier"], moved["customer_id"], strict=True))
    return Door(key, linked)
