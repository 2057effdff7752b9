"""Point-in-time feature families: one module each, found by discovery.

A family is a module of this package that defines ``FAMILY``, a
:class:`~features.families.base.FeatureFamily`: its source table, its features with
their descriptions, and the function that fills them for a snapshot grid. Adding a
family is one new module here plus its feature view in ``feature_repo/``; nothing else
lists the families.
"""

from __future__ import annotations

from features.discovery import discover
from features.families.base import Feature, FeatureFamily

# The families every source has come first; then alphabetical.
_FIRST = ("orders", "segments")


def _discover() -> dict[str, FeatureFamily]:
    found = discover(__name__, __path__, "FAMILY", FeatureFamily, _FIRST)
    seen: dict[str, str] = {}
    for family in found.values():
        for name in family.feature_names:
            if name in seen:
                raise ValueError(f"feature {name!r} is declared by {seen[name]} and {family.name}")
            seen[name] = family.name
    return found


FAMILIES: dict[str, FeatureFamily] = _discover()


def feature_kinds() -> dict[str, str]:
    """Every feature of every family and its kind (``number`` or ``category``)."""
    return {f.name: f.kind for family in FAMILIES.values() for f in family.features}


__all__ = ["FAMILIES", "Feature", "FeatureFamily", "feature_kinds"]
