"""API keys with scopes: who may score, who may read the service's state.

Keys come from ``CUSTLAB_API_KEYS`` or the file ``CUSTLAB_API_KEYS_FILE`` names, one
``name:scope[+scope]:secret`` per line or comma (scopes ``scoring`` and ``admin``). A
request carries its key as ``Authorization: Bearer <secret>`` or ``X-API-Key``; it is
compared with every configured key in constant time (digests of equal length, no early
exit), so timing tells nothing about how close a guess was. With no keys configured, every
route is open: the embedded default on one machine; the service says so at start.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from custlab.settings import Settings
from features.errors import CustlabError

SCOPES = ("scoring", "admin")


@dataclass(frozen=True)
class Caller:
    name: str
    scopes: frozenset[str]


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


class ApiKeys:
    """The configured keys, as digests."""

    def __init__(self, entries: list[tuple[str, frozenset[str], str]]) -> None:
        self._keys = [(_digest(secret), Caller(name, scopes)) for name, scopes, secret in entries]

    @property
    def open(self) -> bool:
        return not self._keys

    def caller(self, secret: str | None) -> Caller | None:
        """The caller a secret belongs to, None when it belongs to none."""
        given = _digest(secret or "")
        found = None
        for digest, caller in self._keys:  # every key compared, whatever matches
            if hmac.compare_digest(digest, given) and secret:
                found = caller
        return found

    @classmethod
    def parse(cls, text: str) -> ApiKeys:
        """Keys from ``name:scope[+scope]:secret`` lines or comma-separated entries.

        Raises:
            CustlabError: An entry is malformed, names an unknown scope, or repeats a name;
                the message names the entry by its position and name, never its secret.
        """
        entries: list[tuple[str, frozenset[str], str]] = []
        raw = [e.strip() for line in text.splitlines() for e in line.split(",")]
        for position, entry in enumerate((e for e in raw if e and not e.startswith("#")), 1):
            parts = entry.split(":", 2)
            if len(parts) != 3 or not all(parts):
                raise CustlabError(f"API key entry {position} is not name:scope[+scope]:secret")
            name, scope_text, secret = parts
            scopes = frozenset(scope_text.split("+"))
            if unknown := scopes - set(SCOPES):
                raise CustlabError(
                    f"API key {name!r} has unknown scope(s) {', '.join(sorted(unknown))}; "
                    f"scopes are {', '.join(SCOPES)}"
                )
            if len(secret) < 16:
                raise CustlabError(f"API key {name!r} is shorter than 16 characters")
            if any(name == known for known, _, _ in entries):
                raise CustlabError(f"API key name {name!r} is given twice")
            entries.append((name, scopes, secret))
        return cls(entries)


def load_keys(settings: Settings) -> ApiKeys:
    """The keys of the environment and of the key file together.

    Raises:
        CustlabError: The key file is missing or an entry is malformed.
    """
    text = settings.api_keys.get_secret_value() if settings.api_keys else ""
    if settings.api_keys_file is not None:
        if not settings.api_keys_file.is_file():
            raise CustlabError(f"API key file {settings.api_keys_file} does not exist")
        text += "\n" + settings.api_keys_file.read_text()
    return ApiKeys.parse(text)
