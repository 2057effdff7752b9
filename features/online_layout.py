"""What custlab's online stores share: how a feature view's values sit in a customer's
row, how a frame is checked and packed into it, and how a read is put back together.

A view's numeric features travel as one packed value per customer (little-endian float32,
NaN for null; float64 when the view declares a Float64, Int or Bool, ints exact up to
2**53), decoded for a thousand customers with one ``np.frombuffer``; each String feature
is a value of its own. A :class:`Layout` records the features in packed order: a store
keeps the layout it applied beside the rows and decodes with it, and a packed value of
another length (another layout) reads as missing, never under the wrong names.

The SQLite store (``features.online_store``) and the Redis store
(``features.redis_store``) differ only in where these values live: both are a
:class:`FrameOnlineStore`, Feast's proto interface and custlab's frame interface over a
store's own read and write.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import numpy as np
import pandas as pd
from feast import FeatureView
from feast.infra.online_stores.helpers import compute_versioned_name
from feast.infra.online_stores.online_store import OnlineStore
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.repo_config import RepoConfig
from feast.types import String
from feast.value_type import ValueType

from features.contract import ENTITY_KEY, EVENT_TIMESTAMP

logger = logging.getLogger(__name__)

# Numeric value types, all packed -> their ValueProto field and cast.
NUMERIC: dict[ValueType, tuple[str, Callable[[float], Any]]] = {
    ValueType.FLOAT: ("float_val", float),
    ValueType.DOUBLE: ("double_val", float),
    ValueType.INT32: ("int32_val", int),
    ValueType.INT64: ("int64_val", int),
    ValueType.BOOL: ("bool_val", bool),
}
CREATED = "__created"  # Feast's created timestamps, in the frame its rows become
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Layout:
    """A view's name in the store (``prefix``), its numeric features ``(name, value
    type)`` in packed order and its string features."""

    prefix: str
    numbers: tuple[tuple[str, str], ...]
    strings: tuple[str, ...]

    @property
    def dtype(self) -> np.dtype:  # float32 holds Float32 exactly, float64 all the rest
        return np.dtype("<f4" if all(k == "FLOAT" for _, k in self.numbers) else "<f8")

    def holds(self, other: Layout) -> bool:
        """The same features in the same order (whatever either's prefix)."""
        return (self.numbers, self.strings) == (other.numbers, other.strings)

    def to_json(self) -> str:
        return json.dumps([self.prefix, self.numbers, self.strings])

    @staticmethod
    @cache
    def parse(text: str) -> Layout:
        prefix, numbers, strings = json.loads(text)
        return Layout(prefix, tuple(map(tuple, numbers)), tuple(strings))


def declared_layout(view: FeatureView, store: str) -> Layout:
    """The layout a view declares (no prefix yet): its features in order, numbers apart.

    Raises:
        ValueError: The view is not keyed by the one String join key ``customer_id`` or
            has a feature ``store`` cannot hold.
    """
    keys = [(f.name, f.dtype) for f in view.entity_columns]
    if keys != [(ENTITY_KEY, String)]:
        raise ValueError(
            f"view {view.name!r} is keyed by {keys or 'no entity'}; "
            f"{store} needs one String join key {ENTITY_KEY!r}"
        )
    kinds = {field.name: field.dtype.to_value_type() for field in view.features}
    for name, kind in kinds.items():
        if kind not in NUMERIC and kind != ValueType.STRING:
            raise ValueError(f"feature {view.name}.{name} ({kind.name}) cannot be stored")
    strings = tuple(name for name, kind in kinds.items() if kind == ValueType.STRING)
    return Layout("", tuple((n, k.name) for n, k in kinds.items() if n not in strings), strings)


def versioned_key(config: RepoConfig, view: FeatureView) -> str:
    """The name a view's rows are kept under (its versioned name when Feast versions
    online views)."""
    return compute_versioned_name(view, config.registry.enable_online_feature_view_versioning)


@dataclass(frozen=True)
class PackedFrame:
    """A frame of one view checked and converted: per row the id, the event and created
    times (microseconds since the epoch, UTC), the numbers packed, and the strings."""

    layout: Layout
    ids: np.ndarray  # str objects
    event_us: np.ndarray  # int64
    created_us: np.ndarray  # int64, 0 where null
    created_null: np.ndarray  # bool
    packed: np.ndarray  # (rows, numbers) in the layout's dtype
    strings: tuple[tuple[np.ndarray, np.ndarray], ...]  # per string feature: values, nulls

    def __len__(self) -> int:
        return len(self.ids)

    def blobs(self, part: slice) -> list[bytes]:
        """The packed values of the rows in ``part``: one bytes slice each."""
        data = self.packed[part].tobytes()
        width = self.packed.shape[1] * self.packed.itemsize
        if not width:
            return [b""] * len(self.ids[part])
        return [data[i : i + width] for i in range(0, len(data), width)]

    def in_key_order(self) -> PackedFrame:
        if pd.Index(self.ids).is_monotonic_increasing:
            return self
        order = np.argsort(self.ids.astype(str), kind="stable")
        return PackedFrame(
            self.layout,
            self.ids[order],
            self.event_us[order],
            self.created_us[order],
            self.created_null[order],
            self.packed[order],
            tuple((values[order], nulls[order]) for values, nulls in self.strings),
        )


def pack_frame(view: FeatureView, frame: pd.DataFrame, created: str | None) -> PackedFrame:
    """A frame of one view (``customer_id``, ``event_timestamp`` and every feature;
    ``created``, the batch source's created timestamp column, where present) checked
    and packed, before any store opens a transaction.

    Raises:
        ValueError: A column is missing or holds the wrong kind of values, a key or an
            event timestamp is null, or an integer is past 2**53.
    """
    layout = declared_layout(view, "custlab's online store")
    names = (ENTITY_KEY, EVENT_TIMESTAMP, *(field.name for field in view.features))
    if missing := [name for name in names if name not in frame]:
        raise ValueError(f"frame for view {view.name!r} lacks column(s): {', '.join(missing)}")
    numbers = np.empty((len(frame), len(layout.numbers)))
    for j, (name, kind) in enumerate(layout.numbers):
        numbers[:, j] = prepare(frame[name], name, ValueType[kind])[0]
        if kind != "FLOAT" and (np.abs(numbers[:, j]) > 2.0**53).any():
            raise ValueError(f"column {name!r} holds values past 2**53, stored inexactly")
    stamp = ValueType.UNIX_TIMESTAMP
    ids, _ = prepare(frame[ENTITY_KEY], ENTITY_KEY, ValueType.STRING, nullable=False)
    event, _ = prepare(frame[EVENT_TIMESTAMP], EVENT_TIMESTAMP, stamp, nullable=False)
    if created is not None and created in frame:
        created_us, created_null = prepare(frame[created], created, stamp)
        created_us = np.where(created_null, 0, created_us)
    else:
        created_us, created_null = np.zeros(len(frame), np.int64), np.ones(len(frame), bool)
    return PackedFrame(
        layout,
        ids,
        event,
        created_us,
        created_null,
        numbers.astype(layout.dtype),
        tuple(prepare(frame[name], name, ValueType.STRING) for name in layout.strings),
    )


def prepare(
    column: pd.Series, name: str, kind: ValueType, nullable: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """A frame column checked against its kind (a feature's value type, or UNIX_TIMESTAMP
    for tz-aware timestamps) as values (numbers as float64, NaN for null) and nulls."""
    nulls = column.isna().to_numpy()
    if not nullable and nulls.any():
        raise ValueError(f"column {name!r} has null values")
    try:
        if kind == ValueType.UNIX_TIMESTAMP:
            if not isinstance(column.dtype, pd.DatetimeTZDtype):
                raise TypeError(f"tz-aware timestamps expected, got {column.dtype}")
            return pd.DatetimeIndex(column).tz_convert("UTC").as_unit("us").asi8, nulls
        if kind == ValueType.STRING:
            if pd.api.types.infer_dtype(column, skipna=True) not in ("string", "empty"):
                raise TypeError("strings expected")
            return column.to_numpy(dtype=object), nulls
        if kind in (ValueType.FLOAT, ValueType.DOUBLE):
            # A Float32 feature is stored as Feast stores it: rounded to float32.
            dtype = np.float32 if kind == ValueType.FLOAT else np.float64
            return column.to_numpy(dtype=dtype, na_value=np.nan).astype(np.float64), nulls
        return column.astype("Int64").to_numpy(dtype=np.float64, na_value=np.nan), nulls
    except (TypeError, ValueError) as error:
        raise ValueError(f"column {name!r} does not hold {kind.name} values: {error}") from error


def as_list(values: np.ndarray, nulls: np.ndarray) -> list[Any]:
    """Python scalars (``tolist`` converts in C), None where null."""
    out = values.tolist()
    for i in np.flatnonzero(nulls):
        out[i] = None
    return out


def proto_frame(
    view: FeatureView,
    data: Sequence[tuple[EntityKeyProto, dict[str, ValueProto], datetime, datetime | None]],
) -> pd.DataFrame:
    """Feast's proto rows (``feast materialize``, ``write_to_online_store``) as the frame
    :func:`pack_frame` takes, the created times in column :data:`CREATED`."""
    names = [field.name for field in view.features]
    frame = pd.DataFrame({n: [_from_proto(row[1].get(n)) for row in data] for n in names})
    frame[ENTITY_KEY] = [customer_id(row[0]) for row in data]
    for column, at in ((EVENT_TIMESTAMP, 2), (CREATED, 3)):  # naive is UTC in Feast
        frame[column] = pd.to_datetime([row[at] for row in data], utc=True)
    return frame


def customer_id(key: EntityKeyProto) -> str:
    if list(key.join_keys) != [ENTITY_KEY] or not key.entity_values[0].HasField("string_val"):
        raise ValueError(f"entity key {list(key.join_keys)} is not one string {ENTITY_KEY!r}")
    return key.entity_values[0].string_val


def _from_proto(value: ValueProto | None) -> Any:
    kind = None if value is None else value.WhichOneof("val")
    return None if kind is None else getattr(value, kind)


def checked_ids(customer_ids: Sequence[str]) -> list[str]:
    ids = list(customer_ids)
    if not all(issubclass(kind, str) for kind in set(map(type, ids))):
        raise ValueError("customer ids must be strings")
    return ids


@dataclass(frozen=True)
class ViewRead:
    """What one read asks of one view: its layout as applied, the features asked in
    order, the packed positions of the numeric ones and the names of the string ones."""

    view: str
    layout: Layout
    names: list[str]
    index: list[int]
    strings: list[str]


def plan_read(
    view: FeatureView,
    applied: Layout | None,
    features_by_view: Mapping[str, Sequence[str]] | None,
) -> ViewRead:
    """What to read of ``view``, whose applied layout is ``applied`` (None if never).

    Raises:
        ValueError: A feature is not in the view, or not in its applied layout.
    """
    declared = [field.name for field in view.features]
    names = list((features_by_view or {}).get(view.name, declared))
    unknown = [name for name in names if name not in declared]
    if unknown:
        raise ValueError(f"view {view.name!r} has no feature(s): {', '.join(unknown)}")
    layout = applied or Layout("", (), ())
    positions = {name: j for j, (name, _) in enumerate(layout.numbers)}
    absent = [n for n in names if n not in positions and n not in layout.strings]
    if absent:
        raise ValueError(f"online store holds no {view.name}.{', '.join(absent)}; run feast apply")
    index = [positions[name] for name in names if name in positions]
    strings = [name for name in names if name not in positions]
    return ViewRead(view.name, layout, names, index, strings)


@dataclass(frozen=True)
class Rows:
    """One read's answer, one row per id in order: the names asked, the numeric ones,
    their values (float64, NaN where missing), the strings by name (None where missing)
    and per view the event microseconds (NaN where the customer has no row)."""

    names: list[str]
    numeric: list[str]
    numbers: np.ndarray
    texts: dict[str, np.ndarray]
    micros: dict[str, np.ndarray]

    def frames(self) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
        """The features as one frame, and per view the event times in epoch seconds."""
        # One float block and one object block: pandas builds them faster than 70 columns.
        frame = pd.DataFrame(self.numbers, columns=self.numeric, copy=False)
        if self.texts:
            strings = pd.DataFrame(
                np.column_stack(list(self.texts.values())), columns=list(self.texts)
            )
            frame = pd.concat([frame, strings], axis=1).reindex(columns=self.names, copy=False)
        return frame, {name: stamps / 1e6 for name, stamps in self.micros.items()}

    def protos(
        self, view: FeatureView
    ) -> list[tuple[datetime | None, dict[str, ValueProto] | None]]:
        """Feast's ``online_read`` answer of one view: ``(None, None)`` for an unknown
        customer."""
        kinds = {f.name: f.dtype.to_value_type() for f in view.features}
        protos = {
            n: [ValueProto() if v is None else ValueProto(string_val=v) for v in self.texts[n]]
            for n in self.texts
        }
        for j, name in enumerate(self.numeric):
            field, cast = NUMERIC[kinds[name]]
            protos[name] = [
                ValueProto() if v != v else ValueProto(**{field: cast(v)})
                for v in self.numbers[:, j].tolist()
            ]
        return [
            (None, None)
            if us != us
            else (_EPOCH + timedelta(microseconds=us), {n: protos[n][i] for n in self.names})
            for i, us in enumerate(self.micros[view.name].tolist())
        ]


def assemble(rows: int, plans: Sequence[ViewRead], columns: Iterator[Sequence[Any]]) -> Rows:
    """A read's :class:`Rows` from the store's columns: per view in ``plans`` order, the
    event microseconds (None where missing), the packed values, then one column per
    string feature asked, each ``rows`` long.

    Raises:
        ValueError: Two views return a feature of the same name.
    """
    names = [name for plan in plans for name in plan.names]
    if len(set(names)) < len(names):
        raise ValueError(f"views {[plan.view for plan in plans]} repeat a feature name")
    texts_of = {name for plan in plans for name in plan.strings}
    numbers = np.empty((rows, len(names) - len(texts_of)))
    texts, micros, at = {}, {}, 0
    for plan in plans:
        micros[plan.view] = np.array(next(columns), dtype=np.float64).reshape(rows)  # None: NaN
        numbers[:, at : at + len(plan.index)] = unpack(next(columns), plan.layout)[:, plan.index]
        at += len(plan.index)
        texts |= {name: np.array(next(columns), dtype=object) for name in plan.strings}
    return Rows(names, [n for n in names if n not in texts_of], numbers, texts, micros)


def unpack(blobs: Sequence[bytes | None], layout: Layout) -> np.ndarray:
    """One view's packed values as a ``(rows, features)`` matrix in one ``frombuffer``; a
    missing one, or one of another length (another layout), reads as all NaN."""
    filler = np.full(len(layout.numbers), np.nan, layout.dtype).tobytes()
    joined = [filler if blob is None else blob for blob in blobs]
    buffer = b"".join(joined)
    if len(buffer) != len(filler) * len(joined):
        buffer = b"".join(b if len(b) == len(filler) else filler for b in joined)
    return np.frombuffer(buffer, layout.dtype).reshape(len(joined), len(layout.numbers))


class FrameOnlineStore(OnlineStore):
    """Feast's proto methods and custlab's frame methods over a store's :meth:`_read`
    (one call for any views and customers) and :meth:`_write` (one view's frame)."""

    def _read(
        self,
        config: RepoConfig,
        views: Sequence[FeatureView],
        customer_ids: Sequence[str],
        features_by_view: Mapping[str, Sequence[str]] | None,
    ) -> Rows:
        raise NotImplementedError

    def _write(
        self, config: RepoConfig, view: FeatureView, frame: pd.DataFrame, created: str | None
    ) -> None:
        """Check and pack ``frame``, then write it (its created times in column
        ``created``, where given)."""
        raise NotImplementedError

    def _settle(self, config: RepoConfig) -> None:
        """After a whole frame is written: what a store does once per frame, not per
        Feast batch (nothing by default)."""

    def online_write_batch(
        self,
        config: RepoConfig,
        table: FeatureView,
        data: list[tuple[EntityKeyProto, dict[str, ValueProto], datetime, datetime | None]],
        progress: Callable[[int], Any] | None,
    ) -> None:
        """Upsert Feast's proto rows (``feast materialize``, ``write_to_online_store``)."""
        self._write(config, table, proto_frame(table, data), CREATED)
        if progress:
            progress(len(data))

    def online_read(
        self,
        config: RepoConfig,
        table: FeatureView,
        entity_keys: list[EntityKeyProto],
        requested_features: list[str] | None = None,
    ) -> list[tuple[datetime | None, dict[str, ValueProto] | None]]:
        """Rows for ``entity_keys`` in order; ``(None, None)`` for an unknown customer."""
        ids = [customer_id(key) for key in entity_keys]
        wanted = {table.name: requested_features} if requested_features else None
        return self._read(config, [table], ids, wanted).protos(table)

    def write_frame(self, config: RepoConfig, view: FeatureView, frame: pd.DataFrame) -> int:
        """Upsert a frame of one view without protos (how atomically: the store's notes).

        Args:
            config: The repo config naming this store.
            view: The feature view, as applied (``feast apply``).
            frame: ``customer_id`` (str), ``event_timestamp`` (tz-aware) and every feature
                of the view; other columns are ignored. The batch source's created
                timestamp column, when present, breaks ties between equal event times.

        Returns:
            Rows written (an older row than the stored one counts but does not replace it).

        Raises:
            ValueError: A column is missing or holds the wrong kind of values, a key or an
                event timestamp is null, or the view is not the applied one. Nothing is
                written.
        """
        created = getattr(view.batch_source, "created_timestamp_column", None)
        self._write(config, view, frame, created or None)
        self._settle(config)
        logger.info("wrote %d rows to online view %s", len(frame), view.name)
        return len(frame)

    def read_frames(
        self,
        config: RepoConfig,
        views: Sequence[FeatureView],
        customer_ids: Sequence[str],
        features_by_view: Mapping[str, Sequence[str]] | None = None,
    ) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
        """Latest features of ``customer_ids`` in several views, in one query or round trip.

        Args:
            config: The repo config naming this store.
            views: The feature views to read.
            customer_ids: Customers to read; repeated and unknown ids are fine.
            features_by_view: Per view name, the features to return in this order (a view
                not named returns all of its features).

        Returns:
            One row per id with the views' features in order (numbers and bools as float64,
            NaN where missing; strings as objects, None where missing) and, per view name,
            the event timestamps in epoch seconds (NaN where the customer has no row).

        Raises:
            ValueError: An id is not a string, a feature is not in its view or not applied,
                or two views return a feature of the same name.
            Exception: The store's own error when it cannot be read now (a locked SQLite
                file, an unreachable Redis): a retry may succeed, applying would not help.
        """
        return self._read(config, views, customer_ids, features_by_view).frames()

    def read_frame(
        self,
        config: RepoConfig,
        view: FeatureView,
        customer_ids: Sequence[str],
        features: Sequence[str] | None = None,
    ) -> tuple[pd.DataFrame, np.ndarray]:
        """:meth:`read_frames` of one view: its features and its event timestamps."""
        wanted = None if features is None else {view.name: features}
        frame, stamps = self.read_frames(config, [view], customer_ids, wanted)
        return frame, stamps[view.name]
