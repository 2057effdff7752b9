"""Identity resolution: one person seen under several identifiers becomes one customer.

Rows that share any identifier value (an email, a phone, a member number, a device id)
belong to the same person, and so, transitively, do all rows linked through such shared
values: the customers are the connected components of the graph of rows and
identifiers. Each component's key is the smallest identifier pseudonym in it, so the
result does not depend on row order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


@dataclass(frozen=True)
class Resolution:
    """The resolved key of every row, the identifier links, and what was merged."""

    keys: pd.Series  # per input row: the resolved customer key
    links: pd.DataFrame  # kind, identifier (pseudonym), customer_id
    merges: pd.DataFrame  # customer_id, rows, identifiers: components of more than one row

    def report(self) -> dict[str, object]:
        return {
            "rows": int(len(self.keys)),
            "customers": int(self.keys.nunique()),
            "merged_customers": int(len(self.merges)),
            "rows_merged": int(self.merges["rows"].sum()) if len(self.merges) else 0,
            "largest_merge": int(self.merges["rows"].max()) if len(self.merges) else 0,
        }


def resolve_identities(frame: pd.DataFrame, identifiers: dict[str, str]) -> Resolution:
    """Link rows into customers through shared identifier values.

    Args:
        frame: One row per record, identifier columns already pseudonymized (nulls allowed).
        identifiers: Kind (``email``, ``member``, ...) -> column of ``frame``. Values of
            different kinds never match each other.

    Returns:
        The resolution. A row without any identifier has no key (None): nothing ties it
        to a person.
    """
    n = len(frame)
    long = pd.concat(
        [
            pd.DataFrame(
                {"row": np.arange(n), "kind": kind, "identifier": frame[column].to_numpy()}
            )
            for kind, column in identifiers.items()
        ],
        ignore_index=True,
    ).dropna(subset=["identifier"])
    nodes = pd.Index(pd.unique(long["kind"] + ":" + long["identifier"]))
    node = nodes.get_indexer(long["kind"] + ":" + long["identifier"])
    # Bipartite graph: rows 0..n-1, identifiers n..n+len(nodes)-1.
    size = n + len(nodes)
    graph = coo_matrix((np.ones(len(long)), (long["row"].to_numpy(), n + node)), shape=(size, size))
    _, component = connected_components(graph, directed=False)

    long = long.assign(component=component[long["row"].to_numpy()])
    smallest = long.groupby("component")["identifier"].min()
    row_component = component[:n]
    keys = pd.Series(smallest.reindex(row_component).to_numpy(), index=frame.index, dtype=object)
    keys = keys.where(keys.notna(), None)

    links = long.assign(customer_id=keys.to_numpy()[long["row"].to_numpy()])[
        ["kind", "identifier", "customer_id"]
    ].drop_duplicates(ignore_index=True)
    sizes = keys.value_counts()
    merged = sizes[sizes > 1]
    per_key = links.groupby("customer_id")["identifier"].nunique()
    merges = pd.DataFrame(
        {
            "customer_id": merged.index,
            "rows": merged.to_numpy(),
            "identifiers": per_key.reindex(merged.index).to_numpy(),
        }
    ).sort_values(["rows", "customer_id"], ascending=[False, True], ignore_index=True)
    return Resolution(keys=keys, links=links, merges=merges)
