"""Point-in-time feature families: one module each, found by discovery.

A family is a module of this package that defines ``FAMILY``, a
:class:`~features.families.base.FeatureFamily`: its source table, its features with
their descriptions, and the function that fills them for a snapshot grid. Adding a
family is one new module here plus its feature view in ``feature_repo/``; nothing else
lists the families.
"""

from __future__ import annotations

import importlib
import pkgutil

from features.families.base import Feature, FeatureFamily

# The families every source has come first; then alphabetical.
_FIRST = ("orders", "segments")


def _discover() -> dict[str, FeatureFamily]:
    found: dict[str, FeatureFamily] = {}
    for module in pkgutil.iter_modules(__path__):
        family = getattr(importlib.import_module(f"{__name__}.{module.name}"), "FAMILY", None)
        if isinstance(family, FeatureFamily):
            found[family.name] = family
    seen: dict[str, str] = {}
    for family in found.values():
        for name in family.feature_names:
            if name in seen:
                raise ValueError(f"feature {name!r} is declared by {seen[name]} and {family.name}")
            seen[name] = family.name
    first = [name for name in _FIRST if name in found]
    return {name: found[name] for name in first + sorted(set(found) - set(first))}


FAMILIES: dict[str, FeatureFamily] = _discover()


def feature_kinds() -> dict[str, str]:
    """Every feature of every family and its kind (``number`` or ``category``)."""
    return {f.name: f.kind for family in FAMILIES.values() for f in family.features}


__all__ = ["FAMILIES", "Feature", "FeatureFamily", "feature_kinds"]
