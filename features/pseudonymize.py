"""Keyed pseudonyms for ids and PII.

A value becomes ``HMAC-SHA256(key, kind + ":" + value)``, truncated to 20 hex characters
(80 bits: collisions are negligible for billions of customers). The same value and key
always give the same pseudonym, so joins across tables and runs still work; without the
key, a pseudonym cannot be traced back by trying candidate emails or ids.
"""

from __future__ import annotations

import hashlib
import hmac

import numpy as np
import pandas as pd

PSEUDONYM_HEX = 20


def pseudonym(value: str, key: bytes, kind: str) -> str:
    """The keyed pseudonym of one value (trimmed), as :func:`pseudonymize` gives it."""
    message = f"{kind}:{value.strip()}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:PSEUDONYM_HEX]


def pseudonymize(values: pd.Series, key: bytes, kind: str) -> pd.Series:
    """Replace each non-null value by its keyed pseudonym; nulls stay null.

    Args:
        values: Raw values (ids, emails, phones, names); compared as trimmed strings.
        key: The secret HMAC key.
        kind: What the values are (``"customer"``, ``"email"``); part of the message, so
            equal strings of different kinds get different pseudonyms.
    """
    present = values.notna()
    text = values[present].astype(str).str.strip()
    uniques, inverse = np.unique(text.to_numpy(dtype=str), return_inverse=True)
    digests = np.array([pseudonym(u, key, kind) for u in uniques], dtype=object)
    out = pd.Series(None, index=values.index, dtype=object)
    out[present] = digests[inverse] if len(uniques) else []
    return out


def normalize_email(values: pd.Series) -> pd.Series:
    """Lower-case and trim, so one mailbox gets one pseudonym."""
    return values.str.strip().str.lower()


def normalize_phone(values: pd.Series) -> pd.Series:
    """Digits only (a leading + kept), so formatting does not split one number in two."""
    return values.str.replace(r"(?!^\+)[^\d]", "", regex=True)
