"""The Feast feature store of the active profile: publishing family snapshots, reading
training frames (offline, point in time) and serving rows (online).

This is the one place that binds a profile's paths. The repo in ``feature_repo/`` is
opened by path, as ``feast apply`` opens it; its config gets its placeholders filled from
:class:`custlab.settings.Settings` and its sources are bound to the profile's offline
folder on copies, so the declared definitions are never rewritten.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import io
import json
import logging
import string
from collections.abc import Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml
from feast import Entity, FeatureService, FeatureStore, FeatureView, Field, FileSource, RepoConfig
from feast.types import Float32, String

from custlab.settings import Settings
from features.cluster import ensure_schemas, ping_redis, redis_failure
from features.contract import ENTITY_KEY, EVENT_TIMESTAMP
from features.errors import CustlabError
from features.families import FAMILIES
from features.labelled import (
    LabelledTable,
    features_path,
    labelled_tables,
    read_labelled_features,
)
from features.tables import write_parquet_atomic

logger = logging.getLogger(__name__)

REPO_DIR = Path(__file__).resolve().parent.parent / "feature_repo"
# What the last publish wrote: the families present and the as-of dates they cover.
MANIFEST = "families.json"
_ROW = "__row"
# The family tag of a labelled table's view.
LABELLED_FAMILY = "labelled"


def repo_config(settings: Settings) -> RepoConfig:
    """Read the profile's ``feature_store.yaml`` and fill its placeholders from settings."""
    name = (
        "feature_store.yaml"
        if settings.profile == "local"
        else f"feature_store.{settings.profile}.yaml"
    )
    template = (REPO_DIR / name).read_text()
    text = string.Template(template).substitute(
        CUSTLAB_FEAST_DIR=str(settings.feast_dir.resolve()),
        CUSTLAB_OFFLINE_DIR=str(settings.offline_dir.resolve()),
        # A URL goes in as a JSON string, which YAML reads back as it was: a password
        # may hold the characters YAML gives meaning to (#, :, quotes).
        CUSTLAB_FEAST_REGISTRY_URL=json.dumps(settings.postgres_url("feast")),
        CUSTLAB_REDIS_URL=json.dumps(settings.redis_url.get_secret_value()),
        CUSTLAB_REDIS_PREFIX=json.dumps(settings.redis_prefix),
        CUSTLAB_CONNECT_TIMEOUT=str(float(settings.connect_timeout_seconds)),
    )
    config = RepoConfig(**yaml.safe_load(text))
    config.repo_path = settings.offline_dir.resolve()
    return config


def open_store(settings: Settings) -> FeatureStore:
    """The profile's feature store (creates its folder and, in the cluster profile, the
    deployment's PostgreSQL schemas, nothing else).

    Raises:
        ServiceUnavailable: The cluster profile's PostgreSQL cannot be used.
    """
    if settings.profile == "cluster":
        ensure_schemas(settings)
    settings.feast_dir.mkdir(parents=True, exist_ok=True)
    config = repo_config(settings)
    return FeatureStore(config=config, repo_path=str(config.repo_path))


@cache
def _repo_module(repo_dir: Path) -> ModuleType:
    """The repo's definitions, loaded from its folder (not imported as a package)."""
    spec = importlib.util.spec_from_file_location(
        "custlab_feature_definitions", repo_dir / "definitions.py"
    )
    if spec is None or spec.loader is None:
        raise CustlabError(f"no Feast definitions at {repo_dir}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def repo_definitions(repo_dir: Path = REPO_DIR) -> list[Entity | FeatureView | FeatureService]:
    """The entities, feature views and feature services the repo declares."""
    return [
        value
        for value in vars(_repo_module(repo_dir)).values()
        if isinstance(value, (Entity, FeatureView, FeatureService))
    ]


def bound_definitions(offline_dir: Path, repo_dir: Path = REPO_DIR) -> list[object]:
    """The repo's objects, each view's source bound to its table in ``offline_dir``.

    The DuckDB offline store reads a source path as given, so the registry must hold the
    absolute one. Views are copied before binding: the declared objects stay as written.
    """
    bound: list[object] = []
    for obj in repo_definitions(repo_dir):
        if isinstance(obj, FeatureView) and isinstance(obj.batch_source, FileSource):
            source = obj.batch_source
            view = copy.copy(obj)
            view.batch_source = FileSource(
                name=source.name,
                path=str(offline_dir.resolve() / Path(source.path).name),
                timestamp_field=source.timestamp_field,
                description=source.description,
            )
            bound.extend([view, view.batch_source])
        else:
            bound.append(obj)
    return bound


# A labelled table is a snapshot of its as-of date(s); it does not age by the weekly
# clock of the families, so its view keeps rows for ten years.
LABELLED_TTL = timedelta(days=3650)


def labelled_definitions(settings: Settings, table: LabelledTable) -> list[object]:
    """The Feast source, view and service of one labelled table (with the customer
    entity): every feature with its kind, tagged family ``labelled``."""
    (entity,) = [obj for obj in repo_definitions() if isinstance(obj, Entity)]
    source = FileSource(
        name=table.feature_view,
        path=str(features_path(settings, table.name).resolve()),
        timestamp_field=EVENT_TIMESTAMP,
        description=f"Labelled customer table {table.name} from {table.source}.",
    )
    view = FeatureView(
        name=table.feature_view,
        entities=[entity],
        ttl=LABELLED_TTL,
        schema=[
            Field(
                name=f.name,
                dtype=Float32 if f.kind == "number" else String,
                description=f"{f.kind} column {f.name} of {table.source}"
                + (" (kind inferred)" if f.inferred else ""),
            )
            for f in table.features
        ],
        source=source,
        online=True,
        description=f"Features of the labelled table {table.name} ({table.task}).",
        owner="custlab",
        tags={"family": LABELLED_FAMILY, "owner": "custlab", "source_table": table.name},
    )
    service = FeatureService(
        name=table.feature_service,
        features=[view],
        description=f"Inputs of the {table.task} model on labelled table {table.name}.",
        tags={"task": table.task},
    )
    return [entity, source, view, service]


def publish_labelled(settings: Settings, store: FeatureStore | None = None) -> FeatureStore:
    """Apply every labelled table's definitions and load each customer's newest row into
    the online store."""
    store = store or open_store(settings)
    for table in labelled_tables(settings):
        definitions = labelled_definitions(settings, table)
        store.apply(definitions)
        frame = read_labelled_features(settings, table)
        latest = frame.sort_values(EVENT_TIMESTAMP).drop_duplicates(ENTITY_KEY, keep="last")
        _materialize(store, store.get_feature_view(table.feature_view), latest)
    return store


def _online_reachable(settings: Settings) -> None:
    """Raises ServiceUnavailable (naming the setting) when the profile's online server
    does not answer; the local profile's store is a file and always there."""
    if settings.profile == "cluster":
        ping_redis(settings)


@contextlib.contextmanager
def _online_errors(settings: Settings) -> Iterator[None]:
    """A Redis error of the cluster profile's online store as one line naming the
    setting (a publication cut short this way is whole again once published anew)."""
    if settings.profile != "cluster":
        yield
        return
    import redis

    try:
        yield
    except redis.RedisError as error:
        raise redis_failure(settings, "failed while features were published", error) from None


def online_generation(settings: Settings, store: FeatureStore) -> Hashable:
    """A value that moves whenever the online rows, or the materialization record beside
    them, change: what serving computed from them holds while it stays.

    A server's store counts its changes itself; the local profile's files change their
    modification times (a materialization ends by folding the online store's WAL into
    its file and recording the new end time in the registry; readers touch neither).
    """
    online = store._get_provider().online_store
    if hasattr(online, "generation"):
        return online.generation(store.config)
    stamps = []
    for path in (settings.feast_dir / "registry.db", settings.feast_dir / "online.db"):
        try:
            stamps.append(path.stat().st_mtime_ns)
        except FileNotFoundError:
            stamps.append(0)
    return tuple(stamps)


def generation_is_local(store: FeatureStore) -> bool:
    """Whether :func:`online_generation` only looks at local files (two ``stat`` calls,
    which never wait), not at a server over the network."""
    return not hasattr(store._get_provider().online_store, "generation")


def view_family(view: FeatureView) -> str:
    """The feature family a view holds (its ``family`` tag)."""
    return view.tags["family"]


def _materialize(store: FeatureStore, view: FeatureView, latest: pd.DataFrame) -> None:
    """Load one family's newest snapshot into the online store.

    custlab's online store takes the whole frame in one transaction; any other online
    store goes through Feast's own materialization of the same window.
    """
    stamp: datetime = latest[EVENT_TIMESTAMP].max().to_pydatetime()
    online = store._get_provider().online_store
    if hasattr(online, "write_frame"):
        online.write_frame(store.config, view, latest)
        # Record the interval as Feast's own materialization would.
        store.registry.apply_materialization(
            view, store.project, stamp - timedelta(days=1), stamp + timedelta(seconds=1)
        )
        if hasattr(online, "touch"):  # the registry changed after the rows: say so
            online.touch(store.config)
        return
    with contextlib.redirect_stdout(io.StringIO()):  # Feast prints its own progress bars
        store.materialize(
            start_date=stamp - timedelta(days=1),
            end_date=stamp + timedelta(seconds=1),
            feature_views=[view.name],
        )


def publish_snapshots(settings: Settings, snapshots: Mapping[str, pd.DataFrame]) -> FeatureStore:
    """Write each family's snapshots as its offline table, apply the repo, and load the
    newest snapshot of every present family into the online store.

    The published set replaces the previous one whole: tables of families absent now are
    removed offline and online, so a new source never mixes with an old one.

    Raises:
        CustlabError: There is nothing to publish.
    """
    if not snapshots or all(frame.empty for frame in snapshots.values()):
        raise CustlabError("no feature snapshots to publish: the order history is empty")
    # Opened before anything is written: a registry or online server that refuses
    # leaves the previous publication whole, not new tables beside an old registry.
    store = open_store(settings)
    _online_reachable(settings)
    offline = settings.offline_dir
    for name, frame in snapshots.items():
        write_parquet_atomic(frame, offline / FAMILIES[name].table_file)
    for name, family in FAMILIES.items():
        if name not in snapshots:
            (offline / family.table_file).unlink(missing_ok=True)
    stamps = pd.concat([frame[EVENT_TIMESTAMP] for frame in snapshots.values()])
    manifest = {
        "families": list(snapshots),
        "first_as_of": stamps.min().isoformat(),
        "last_as_of": stamps.max().isoformat(),
    }
    (offline / MANIFEST).write_text(json.dumps(manifest, indent=2))

    with _online_errors(settings):
        # A clean online store: rows of an earlier source must not answer for this one.
        store.teardown()
        store = open_store(settings)
        store.apply(bound_definitions(offline))
        for view in store.list_feature_views():
            frame = snapshots.get(view_family(view))
            if frame is not None:
                newest = frame[frame[EVENT_TIMESTAMP] == frame[EVENT_TIMESTAMP].max()]
                _materialize(store, view, newest)
        # The teardown emptied the labelled tables' online rows too.
        publish_labelled(settings, store)
    logger.info("published %s; online as of %s", ", ".join(snapshots), manifest["last_as_of"])
    return store


def published_families(settings: Settings) -> list[str]:
    """The families the last publish wrote.

    Raises:
        CustlabError: Nothing has been published yet.
    """
    path = settings.offline_dir / MANIFEST
    if not path.exists():
        raise CustlabError(
            f"no feature snapshots in {settings.offline_dir}; run 'custlab features' first"
        )
    return json.loads(path.read_text())["families"]


def feature_refs(
    store: FeatureStore, service: str, families: Sequence[str] | None = None
) -> list[str]:
    """``view:feature`` references of a feature service, for the families present
    (default: every view the service names).

    A service names every view its model may use; a source without, say, events has no
    engagement data, and its model is trained and served on the rest.
    """
    refs = []
    for projection in store.get_feature_service(service).feature_view_projections:
        view = store.get_feature_view(projection.name)
        if families is None or view_family(view) in families:
            refs.extend(f"{projection.name}:{f.name}" for f in projection.features)
    return refs


def historical_features(
    store: FeatureStore, entity_df: pd.DataFrame, refs: Sequence[str]
) -> pd.DataFrame:
    """Point-in-time join of the features ``refs`` onto ``entity_df`` (customer_id,
    event_timestamp, anything else passes through), in the input's row order.

    Every input row comes back; a customer without a snapshot within a view's ttl gets
    empty features of that view.
    """
    missing = {ENTITY_KEY, EVENT_TIMESTAMP} - set(entity_df.columns)
    if missing:
        raise CustlabError(f"entity frame lacks column(s) {', '.join(sorted(missing))}")
    keyed = entity_df.assign(**{_ROW: np.arange(len(entity_df))})
    joined = store.get_historical_features(entity_df=keyed, features=list(refs)).to_df()
    passthrough = set(keyed.columns) - {_ROW}
    features = joined.drop(columns=[c for c in joined.columns if c in passthrough])
    out = keyed.merge(features, on=_ROW, how="left").sort_values(_ROW)
    return out.drop(columns=_ROW).reset_index(drop=True)


def read_snapshots(
    settings: Settings,
    family: str = "orders",
    columns: list[str] | None = None,
    dates: Sequence[pd.Timestamp] | None = None,
) -> pd.DataFrame:
    """One family's offline snapshot table as last published (only ``columns`` and the
    as-of ``dates``, when given; the dates are filtered while reading).

    Raises:
        CustlabError: The family has not been published.
    """
    path = settings.offline_dir / FAMILIES[family].table_file
    if not path.exists():
        raise CustlabError(f"no feature snapshots at {path}; run 'custlab features' first")
    if dates is None:
        return pd.read_parquet(path, columns=columns)
    kind = pq.read_schema(path).field(EVENT_TIMESTAMP).type
    index = pd.DatetimeIndex(dates)
    if kind.tz is not None and index.tz is None:
        index = index.tz_localize(kind.tz)
    wanted = pa.array(index).cast(kind)
    table = pq.read_table(path, columns=columns, filters=pc.field(EVENT_TIMESTAMP).isin(wanted))
    return table.to_pandas()


def latest_as_of(settings: Settings) -> pd.Timestamp:
    """The newest as-of date published: what the online store answers for."""
    published_families(settings)
    manifest = json.loads((settings.offline_dir / MANIFEST).read_text())
    return pd.Timestamp(manifest["last_as_of"])


def read_features(
    settings: Settings,
    names: Sequence[str] | None = None,
    dates: Sequence[pd.Timestamp] | None = None,
) -> pd.DataFrame:
    """Snapshot rows with the features ``names`` (default every published one) of
    whichever families hold them, at ``dates`` (default all): batch scoring and
    monitoring read the offline tables as published, the same rows the training join saw.

    Raises:
        CustlabError: Nothing is published, or a feature is not.
    """
    keys = [ENTITY_KEY, EVENT_TIMESTAMP]
    if names is None:
        names = [
            n for family in published_families(settings) for n in FAMILIES[family].feature_names
        ]
    wanted = set(names)
    frame: pd.DataFrame | None = None
    for family in published_families(settings):
        columns = [n for n in FAMILIES[family].feature_names if n in wanted]
        if not columns and frame is not None:
            continue
        part = read_snapshots(settings, family, keys + columns, dates)
        frame = part if frame is None else frame.merge(part, on=keys, how="left")
        wanted -= set(columns)
    if wanted:
        raise CustlabError(f"features not published: {', '.join(sorted(wanted))}")
    assert frame is not None
    return frame.reset_index(drop=True)


@dataclass(frozen=True)
class OnlineRows:
    """Online features of some customers, in the order asked.

    Attributes:
        features: One row per customer, one column per feature (NaN/None unknown).
        known: Per customer, whether the store holds any row of it.
        stale_days: Per customer, how many days its oldest view row is past that view's
            ttl, counted from the newest materialization; 0 when all are fresh.
        feature_time: Per customer, the newest event timestamp of its rows (epoch
            seconds; NaN when unknown).
    """

    features: pd.DataFrame
    known: np.ndarray
    stale_days: np.ndarray
    feature_time: np.ndarray


class OnlineReader:
    """Reads feature vectors from the online store, and judges their freshness by each
    view's own ttl (Feast returns rows past their ttl as present on online reads).

    Args:
        store: The feature store.
        refs: ``view:feature`` references to read, in the order the model takes them.
    """

    def __init__(self, store: FeatureStore, refs: Sequence[str]) -> None:
        self.store = store
        self.names = [ref.split(":", 1)[1] for ref in refs]
        self._views: dict[str, list[str]] = {}
        for ref in refs:
            view, name = ref.split(":", 1)
            self._views.setdefault(view, []).append(name)
        views = {name: store.get_feature_view(name) for name in self._views}
        self._ttl = {name: view.ttl.total_seconds() for name, view in views.items()}
        self._views_bound = views
        ends = [
            v.most_recent_end_time for v in store.list_feature_views() if v.most_recent_end_time
        ]
        # The newest materialization: a row more than a view's ttl older missed refreshes.
        self.as_of = max(ends).timestamp() if ends else None
        self._online = store._get_provider().online_store

    def read(self, customer_ids: Sequence[str]) -> OnlineRows:
        views = [self._views_bound[name] for name in self._views]
        if hasattr(self._online, "read_frames"):
            features, stamps = self._online.read_frames(
                self.store.config, views, customer_ids, self._views
            )
        else:
            parts = {
                view.name: self._read_with_sdk(view.name, self._views[view.name], customer_ids)
                for view in views
            }
            features = pd.concat([frame for frame, _ in parts.values()], axis=1)
            stamps = {name: at for name, (_, at) in parts.items()}
        known = np.zeros(len(customer_ids), dtype=bool)
        stale = np.zeros(len(customer_ids))
        newest = np.full(len(customer_ids), np.nan)
        for view_name, at in stamps.items():
            present = np.isfinite(at)
            known |= present
            newest = np.fmax(newest, at)
            if self.as_of is not None:
                late = (self.as_of - self._ttl[view_name]) - at
                stale = np.fmax(stale, np.where(present & (late > 0), late / 86_400, 0.0))
        if list(features.columns) != self.names:
            features = features[self.names]
        return OnlineRows(features.reset_index(drop=True), known, stale, newest)

    def customers(self, limit: int) -> list[str] | None:
        """Up to ``limit`` ids the online store holds, None where it cannot list them."""
        if not hasattr(self._online, "customer_ids"):
            return None
        return self._online.customer_ids(self.store.config, limit)

    def _read_with_sdk(
        self, view: str, names: list[str], customer_ids: Sequence[str]
    ) -> tuple[pd.DataFrame, np.ndarray]:
        response = self.store.get_online_features(
            features=[f"{view}:{n}" for n in names],
            entity_rows=[{ENTITY_KEY: c} for c in customer_ids],
        ).to_dict(include_event_timestamps=True)
        stamps = [
            np.nan if ts is None else pd.Timestamp(ts).timestamp()
            for ts in response[f"{names[0]}__ts"]
        ]
        return pd.DataFrame({n: response[n] for n in names}), np.asarray(stamps, dtype=float)
