"""custlab's Feast online store on Redis (the cluster profile): one hash per customer
holding every feature view, so serving replicas on several machines read the same rows.

Key ``{key_prefix}{project}:customer:{customer_id}`` is a hash with, per view (its
versioned name ``v``), fields ``v:event_ts`` and ``v:created_ts`` (microseconds since the
epoch, UTC, in decimal; created 0 where unknown), ``v:numbers`` (the numeric features
packed as ``features.online_layout`` says) and ``v.{feature}`` per String feature
(absent while null). Hash ``{key_prefix}{project}:layout`` holds each applied view's
layout: reads decode with it, writes check it. Key ``{key_prefix}{project}:generation``
counts the changes (every write, apply and teardown): serving keeps answers until it moves.

* A read of any number of customers and views is one script call, one round trip: the
  script runs ``HMGET`` per customer inside Redis and answers with one nested array.
* A write sets a view's fields only where the incoming ``(event_ts, created_ts)`` is at
  least the stored one of that view, as the SQLite store does; a script checks and sets
  for a chunk of customers at once, so no other writer comes between the check and the
  set. A write is whole per customer, not per frame: should it fail half-way, some
  customers hold the new row and the others the one before (each whole), and writing
  the frame again completes it.
* A view whose layout changes is emptied online (a warning says so) until it is written
  again: its old packed values are never read under the new names.

The scripts name many keys, which Redis Cluster spreads over slots: this store needs one
Redis server (replicas may serve reads), not Redis Cluster.

``feature_store.yaml`` names it ``online_store: {type:
features.redis_store.CustomerRedisOnlineStore, url: redis://host:port/db, key_prefix: ...}``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import redis
from feast import Entity, FeatureView
from feast.repo_config import FeastConfigBaseModel, RepoConfig
from feast.value_type import ValueType
from pydantic import PositiveFloat, StrictStr

from features.online_layout import (
    FrameOnlineStore,
    Layout,
    Rows,
    assemble,
    checked_ids,
    declared_layout,
    pack_frame,
    plan_read,
    versioned_key,
)

logger = logging.getLogger(__name__)

_STORE = "CustomerRedisOnlineStore"
# Customers per write script: large enough that a round trip is a small part of it,
# small enough that Redis answers other clients within milliseconds meanwhile.
_WRITE_CHUNK = 2_000
_SCAN_COUNT = 5_000

# KEYS[1]: the layout hash; KEYS[2..]: customers. ARGV: the number n of views, their
# names, then the fields to read. Answers the views' layouts, then one HMGET a customer.
_READ = """
local n = tonumber(ARGV[1])
local views, fields = {}, {}
for j = 1, n do views[j] = ARGV[1 + j] end
for j = n + 2, #ARGV do fields[#fields + 1] = ARGV[j] end
local out = {redis.call('HMGET', KEYS[1], unpack(views))}
for i = 2, #KEYS do
  out[i] = redis.call('HMGET', KEYS[i], unpack(fields))
end
return out
"""

# KEYS[1]: the layout hash; KEYS[2..]: customers. ARGV: the view's name, its layout as
# applied (checked first), the number s of string features and their names, then per
# customer: event_ts, created_ts, packed numbers, a mask of s '0'/'1' (1: null) and the
# s strings. Sets a customer's fields of the view only where the incoming times are not
# older than the stored ones; answers how many customers it set.
_WRITE = """
local view = ARGV[1]
if redis.call('HGET', KEYS[1], view) ~= ARGV[2] then
  return redis.error_reply('NOTAPPLIED view ' .. view .. ' is not applied as declared')
end
local s = tonumber(ARGV[3])
local names = {}
for j = 1, s do names[j] = view .. '.' .. ARGV[3 + j] end
local f_event, f_created, f_numbers = view .. ':event_ts', view .. ':created_ts', view .. ':numbers'
local stride, base, written = 4 + s, 4 + s, 0
for i = 2, #KEYS do
  local key, at = KEYS[i], base + (i - 2) * stride
  local event, created = tonumber(ARGV[at]), tonumber(ARGV[at + 1])
  local stored = redis.call('HMGET', key, f_event, f_created)
  local newer = true
  if stored[1] then
    local old_event, old_created = tonumber(stored[1]), tonumber(stored[2] or '0')
    newer = event > old_event or (event == old_event and created >= old_created)
  end
  if newer then
    local set = {f_event, ARGV[at], f_created, ARGV[at + 1], f_numbers, ARGV[at + 2]}
    local mask = ARGV[at + 3]
    for j = 1, s do
      if string.sub(mask, j, j) == '1' then
        redis.call('HDEL', key, names[j])
      else
        set[#set + 1] = names[j]
        set[#set + 1] = ARGV[at + 3 + j]
      end
    end
    redis.call('HSET', key, unpack(set))
    written = written + 1
  end
end
return written
"""

# KEYS: customers. ARGV: fields to delete from each.
_FORGET = """
for _, key in ipairs(KEYS) do
  redis.call('HDEL', key, unpack(ARGV))
  if redis.call('HLEN', key) == 0 then redis.call('DEL', key) end
end
return #KEYS
"""


class CustomerRedisOnlineStoreConfig(FeastConfigBaseModel):
    """The ``online_store`` block of ``feature_store.yaml`` (unknown keys are refused)."""

    type: Literal["features.redis_store.CustomerRedisOnlineStore"] = (
        "features.redis_store.CustomerRedisOnlineStore"
    )
    url: StrictStr = "redis://127.0.0.1:6379/0"
    """The server, ``redis://[:password@]host:port/db`` (or ``rediss://``, ``unix://``)."""
    key_prefix: StrictStr = "custlab:"
    """Put before every key, so deployments (and test runs) sharing a server stay apart."""
    timeout_seconds: PositiveFloat = 2.0
    """How long a connect or a command may take before it fails."""


class CustomerRedisOnlineStore(FrameOnlineStore):
    """Feast online store on Redis with a hash per customer for all views, plus a bulk
    path. A frame is written whole per customer (see the module's notes)."""

    def _read(
        self,
        config: RepoConfig,
        views: Sequence[FeatureView],
        customer_ids: Sequence[str],
        features_by_view: Mapping[str, Sequence[str]] | None,
    ) -> Rows:
        return _read(config, views, customer_ids, features_by_view)

    def _write(
        self, config: RepoConfig, view: FeatureView, frame: pd.DataFrame, created: str | None
    ) -> None:
        _write(config, view, frame, created)
        self.touch(config)

    def update(
        self,
        config: RepoConfig,
        tables_to_delete: Sequence[FeatureView],
        tables_to_keep: Sequence[FeatureView],
        entities_to_delete: Sequence[Entity],
        entities_to_keep: Sequence[Entity],
        partial: bool,
    ) -> None:
        """Record a new view's layout; empty a changed view's fields (they would read
        under other names) and a deleted view's.

        Raises:
            ValueError: A view is not keyed by the one String join key ``customer_id`` or
                has a feature the store cannot hold.
        """
        keep = {versioned_key(config, view): _layout(config, view) for view in tables_to_keep}
        client, layouts = _client(config), _layouts_key(config)
        stored = _stored(config)
        for view in tables_to_delete:
            if (key := versioned_key(config, view)) in stored and key not in keep:
                _forget(config, {key: stored.pop(key)})
        for key, layout in keep.items():
            old = stored.get(key)
            if old == layout:
                continue
            if old is not None:
                logger.warning(
                    "online view %s changed schema; its rows are empty until written again", key
                )
                _forget(config, {key: old})
            client.hset(layouts, key, layout.to_json())
        self.touch(config)

    def teardown(
        self, config: RepoConfig, tables: Sequence[FeatureView], entities: Sequence[Entity]
    ) -> None:
        """Delete the views' fields, or every key of the project once no view is left."""
        stored = _stored(config)
        gone = {versioned_key(config, view) for view in tables} & set(stored)
        if gone == set(stored):
            client = _client(config)
            for keys in _batches(_scan(config, _customer_key(config, "*"))):
                client.unlink(*keys)
            client.unlink(_layouts_key(config))
        else:
            _forget(config, {key: stored[key] for key in gone})
        self.touch(config)

    def generation(self, config: RepoConfig) -> int:
        """How many times the store's rows or layouts changed (0 if never, or since the
        server lost its data): answers computed at one generation hold until it moves."""
        return int(_client(config).get(_generation_key(config)) or 0)

    def touch(self, config: RepoConfig) -> None:
        """Count a change made beside the rows (a materialization recorded in the
        registry): what was computed from the store before is out of date."""
        _client(config).incr(_generation_key(config))

    def customer_ids(self, config: RepoConfig, limit: int) -> list[str]:
        """Up to ``limit`` customers the store holds rows of (in no set order)."""
        start = len(_customer_key(config, ""))
        ids: dict[str, None] = {}  # SCAN may return a key twice
        for key in _scan(config, _customer_key(config, "*")):
            ids[key[start:].decode()] = None
            if len(ids) >= limit:
                break
        return list(ids)


def _read(
    config: RepoConfig,
    views: Sequence[FeatureView],
    customer_ids: Sequence[str],
    features_by_view: Mapping[str, Sequence[str]] | None,
) -> Rows:
    """The views' rows of the ids, one per id in order, and the layouts they were read
    with, from one script call: the fields asked are known from the views' declarations,
    and a layout applied otherwise is refused after the read."""
    ids = checked_ids(customer_ids)
    names = [versioned_key(config, view) for view in views]
    asked = [_strings_asked(view, features_by_view) for view in views]
    fields = []
    for name, strings in zip(names, asked, strict=True):
        fields += [f"{name}:event_ts", f"{name}:numbers", *(f"{name}.{s}" for s in strings)]
    keys = [_layouts_key(config), *(_customer_key(config, i) for i in ids)]
    layouts, *rows = _script(config, _READ)(keys=keys, args=[len(names), *names, *fields])
    plans = []
    for view, text, strings in zip(views, layouts, asked, strict=True):
        plan = plan_read(view, text and Layout.parse(text.decode()), features_by_view)
        if plan.strings != strings:
            raise ValueError(f"view {view.name!r} is not applied as declared; run feast apply")
        plans.append(plan)
    columns = iter(list(zip(*rows, strict=True)) if rows else [()] * len(fields))
    decoded = []
    for plan in plans:
        decoded.append([None if v is None else int(v) for v in next(columns)])
        decoded.append(next(columns))
        decoded += ([None if v is None else v.decode() for v in next(columns)]
                    for _ in plan.strings)  # fmt: skip
    return assemble(len(ids), plans, iter(decoded))


def _strings_asked(
    view: FeatureView, features_by_view: Mapping[str, Sequence[str]] | None
) -> list[str]:
    """The String features a read asks of ``view``, in the order asked."""
    declared = {f.name for f in view.features if f.dtype.to_value_type() == ValueType.STRING}
    names = (features_by_view or {}).get(view.name, [f.name for f in view.features])
    return [name for name in names if name in declared]


def _write(config: RepoConfig, view: FeatureView, frame: pd.DataFrame, created: str | None) -> None:
    """Check and pack the frame, then set it chunk by chunk (see the module's notes)."""
    packed = pack_frame(view, frame, created)
    layout = _layout(config, view)
    if not packed.layout.holds(layout):  # pack_frame and update agree on the order
        raise AssertionError(f"view {view.name!r}: two layouts of one declaration")
    write = _script(config, _WRITE)
    head = [layout.prefix, layout.to_json(), len(layout.strings), *layout.strings]
    strings = [(values.tolist(), nulls) for values, nulls in packed.strings]
    masks = (
        np.column_stack([nulls for _, nulls in packed.strings]).astype("u1") + ord("0")
        if strings
        else np.zeros((len(packed), 0), "u1")
    )
    events, createds = packed.event_us.tolist(), packed.created_us.tolist()
    layouts = _layouts_key(config)
    for start in range(0, len(packed), _WRITE_CHUNK):
        part = slice(start, start + _WRITE_CHUNK)
        blobs = packed.blobs(part)
        args: list[Any] = list(head)
        for k, i in enumerate(range(*part.indices(len(packed)))):
            args += (events[i], createds[i], blobs[k], masks[i].tobytes())
            args += (values[i] if not nulls[i] else "" for values, nulls in strings)
        keys = [layouts, *(_customer_key(config, c) for c in packed.ids[part].tolist())]
        try:
            write(keys=keys, args=args)
        except redis.ResponseError as error:
            if "NOTAPPLIED" in str(error):
                raise ValueError(
                    f"view {view.name!r} is not applied as declared; run feast apply"
                ) from None
            raise


def _forget(config: RepoConfig, views: Mapping[str, Layout]) -> None:
    """Delete the views' fields from every customer (a customer left with none is
    deleted) and their layouts."""
    if not views:
        return
    fields = []
    for layout in views.values():
        fields += [f"{layout.prefix}:{suffix}" for suffix in ("event_ts", "created_ts", "numbers")]
        fields += (f"{layout.prefix}.{name}" for name in layout.strings)
    forget = _script(config, _FORGET)
    for keys in _batches(_scan(config, _customer_key(config, "*"))):
        forget(keys=keys, args=fields)
    _client(config).hdel(_layouts_key(config), *views)


def _layout(config: RepoConfig, view: FeatureView) -> Layout:
    declared = declared_layout(view, _STORE)
    return Layout(versioned_key(config, view), declared.numbers, declared.strings)


def _stored(config: RepoConfig) -> dict[str, Layout]:
    """The applied layouts of the project's views, by (versioned) view name."""
    stored = _client(config).hgetall(_layouts_key(config))
    return {key.decode(): Layout.parse(text.decode()) for key, text in stored.items()}


def _customer_key(config: RepoConfig, customer: str) -> str:
    return f"{config.online_store.key_prefix}{config.project}:customer:{customer}"


def _layouts_key(config: RepoConfig) -> str:
    return f"{config.online_store.key_prefix}{config.project}:layout"


def _generation_key(config: RepoConfig) -> str:
    return f"{config.online_store.key_prefix}{config.project}:generation"


def _scan(config: RepoConfig, match: str) -> Iterator[bytes]:
    return _client(config).scan_iter(match=_glob_escaped(match), count=_SCAN_COUNT)


def _glob_escaped(pattern: str) -> str:
    """``pattern`` with the glob characters of its prefix escaped, its final ``*`` kept."""
    head = pattern.removesuffix("*")
    for char in "\\[]?*":
        head = head.replace(char, "\\" + char)
    return head + ("*" if pattern.endswith("*") else "")


def _batches(keys: Iterator[bytes], size: int = 1_000) -> Iterator[list[bytes]]:
    batch: list[bytes] = []
    for key in keys:
        batch.append(key)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


_CLIENTS: dict[tuple[int, str, float], redis.Redis] = {}
_SCRIPTS: dict[tuple[int, str, str], Any] = {}
_LOCK = threading.Lock()


def _client(config: RepoConfig) -> redis.Redis:
    """This process's client of the store's server (a pool, safe to share by threads;
    a broken connection is replaced on the next command, so a restarted server is
    used again without restarting anything)."""
    settings = config.online_store
    key = (os.getpid(), settings.url, settings.timeout_seconds)
    with _LOCK:
        if key not in _CLIENTS:
            _CLIENTS[key] = redis.Redis.from_url(
                settings.url,
                socket_timeout=settings.timeout_seconds,
                socket_connect_timeout=settings.timeout_seconds,
                health_check_interval=30,
            )
        return _CLIENTS[key]


def _script(config: RepoConfig, source: str) -> Any:
    """A registered script (``EVALSHA``, loaded again by redis-py when the server lost
    its scripts, after a restart)."""
    client = _client(config)
    key = (os.getpid(), config.online_store.url, source)
    with _LOCK:
        if key not in _SCRIPTS:
            _SCRIPTS[key] = client.register_script(source)
        return _SCRIPTS[key]
