"""Extension points found by discovery: every module of a package that defines a given
name contributes one declaration, so adding one is adding a module."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable, Sequence
from typing import TypeVar

T = TypeVar("T")


def discover(
    package: str, path: Iterable[str], attribute: str, kind: type[T], first: Sequence[str] = ()
) -> dict[str, T]:
    """The ``attribute`` of every module in ``package`` that is a ``kind``, by its ``name``:
    the names in ``first`` come first (those present), then the rest alphabetically."""
    found: dict[str, T] = {}
    for module in pkgutil.iter_modules(path):
        value = getattr(importlib.import_module(f"{package}.{module.name}"), attribute, None)
        if isinstance(value, kind):
            found[value.name] = value  # type: ignore[attr-defined]
    leading = [name for name in first if name in found]
    return {name: found[name] for name in leading + sorted(set(found) - set(leading))}
