"""What the service holds while it runs: every champion with the online reader of its
features, the answers already given, and the checks that say when they are out of date.

An answer depends on nothing but the customer's online features and the champion, and
those change only at a materialization or a promotion. So an answer is computed once per
customer (ahead of requests, for the online store's customers) and kept until either
changes: a materialization changes the Feast registry and the online store's file
(checked on every request: two ``stat`` calls); a promotion moves ``@champion`` in the
registry (checked every ``champion_check_seconds`` off the request path; the service then
loads the new champion and swaps to it whole, so a request sees the old models or the new
ones, never a mix).

When the online store fails a read, or does not answer within a few seconds, the reads
after it are refused at once for a few seconds (:class:`StoreBreaker`): a locked SQLite
file takes about 10 s to fail each read, and requests would otherwise queue behind one
another for that long.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

import pandas as pd
from feast import FeatureStore
from mlflow import MlflowClient

from custlab.settings import Settings
from features.errors import CustlabError
from features.store import (
    OnlineReader,
    OnlineRows,
    feature_refs,
    generation_is_local,
    online_generation,
    open_store,
)
from serving.door import Door, door_for
from serving.models import (
    challenger_version,
    champion_version,
    load_challenger_model,
    load_champion_models,
    registry_client,
)
from serving.predictions import CALLS, PredictionLog
from serving.scoring import LoadedModel, Score, score_rows
from training.tasks import TASKS

logger = logging.getLogger(__name__)

UNKNOWN_CUSTOMER = "unknown_customer: no features in the online store; not scored"
# Answers kept per task; past it the oldest go first, so memory stays bounded whatever
# ids clients send (unknown customers are never kept).
CACHE_ENTRIES = 100_000
AUDIT_DAYS = 400
# Requests waiting for their challengers' shadow scores; past it, shadow scoring drops.
SHADOW_BACKLOG = 1_000
# After a failed online read, reads are refused at once for this long (503 straight
# away) rather than each waiting out SQLite's ~10 s retry; a good readiness read ends
# it sooner.
STORE_RETRY_SECONDS = 5.0
# A read not done in this long counts as failed: inside BentoML's 10 s request timeout
# (so the answer is custlab's 503, not BentoML's 504), far above a healthy read (about
# 25 ms for 1,000 customers).
STORE_WAIT_SECONDS = 3.0
# After a failed attempt to compute answers ahead, the next comes after this wait, which
# doubles with each failure up to the maximum.
WARM_RETRY_FIRST_SECONDS = 2.0
WARM_RETRY_MAX_SECONDS = 60.0

T = TypeVar("T")


class StoreUnavailable(CustlabError):
    """The online store did not answer; the service says 503 until it does again."""


class StoreBreaker:
    """The online store's reads: one at a time, each waited for at most ``wait``
    seconds, and all refused at once for ``seconds`` after one failed.

    A locked SQLite file takes about 10 s to fail a read, longer than BentoML gives a
    request (serving/service.py), so a read runs in a thread of its own and its caller
    stops waiting after ``wait`` seconds; the read ends there unwatched. A read holds
    the turn until it ends, so reads never queue up behind a stuck one. One at a time
    costs custlab's store nothing: its reads share one connection and take turns anyway.
    """

    def __init__(self, seconds: float = STORE_RETRY_SECONDS, wait: float = STORE_WAIT_SECONDS):
        self.seconds = seconds
        self.wait = wait
        self._turn = threading.Lock()  # released by the reader thread when a read ends
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="online-read")
        self._refusing_until = 0.0
        self._failure = ""

    def call(self, read: Callable[..., T], *args: Any) -> T:
        """``read(*args)``, unless a read failed less than ``seconds`` ago.

        Raises:
            StoreUnavailable: This read failed or did not end within ``wait`` seconds,
                or one did a moment ago.
        """
        self._refuse_if_failed()
        return self._attempt(read, args, refuse=True)

    def probe(self, read: Callable[..., T], *args: Any) -> T:
        """``read(*args)`` even while refusing (readiness asks): a good read ends the
        refusals, a failed one starts them anew.

        Raises:
            StoreUnavailable: The read failed or did not end within ``wait`` seconds.
        """
        return self._attempt(read, args, refuse=False)

    def close(self) -> None:
        self._reader.shutdown(wait=False, cancel_futures=True)

    def _refuse_if_failed(self) -> None:
        if time.monotonic() < self._refusing_until:
            raise StoreUnavailable(f"refused: a read failed moments ago ({self._failure})")

    def _attempt(self, read: Callable[..., T], args: tuple[Any, ...], refuse: bool) -> T:
        deadline = time.monotonic() + self.wait
        if not self._turn.acquire(timeout=self.wait):
            raise self._fail(f"a read has not ended in {self.wait:.0f} s")
        try:
            if refuse:
                self._refuse_if_failed()  # the read this one waited for may have failed
            future = self._reader.submit(read, *args)
        except BaseException:
            self._turn.release()
            raise
        future.add_done_callback(lambda _: self._turn.release())
        try:
            result = future.result(timeout=max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            raise self._fail(f"no answer in {self.wait:.0f} s") from None
        except Exception as why:  # sqlite locked or gone, Redis down: not the client
            raise self._fail(f"{type(why).__name__}: {why}") from None
        self._refusing_until = 0.0
        return result

    def _fail(self, failure: str) -> StoreUnavailable:
        self._failure = failure
        self._refusing_until = time.monotonic() + self.seconds
        logger.warning(
            "online store read failed (%s); reads refused for %.0f s", failure, self.seconds
        )
        return StoreUnavailable(f"the online store did not answer: {failure}")


def outside_population(rule: str) -> str:
    return f"outside_population: the model is trained on {rule}"


def _stamp(seconds: float) -> str | None:
    if not math.isfinite(seconds):
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def answer_of(model: LoadedModel, score: Score, warnings: list[str]) -> dict[str, Any]:
    """One task's answer for one customer, as the API returns it (without the id)."""
    answer: dict[str, Any] = {
        "model": model.name,
        "model_version": model.version,
        "score": round(score.score, 6),
        "tier": score.tier,
        "action": score.action,
        "reasons": [vars(reason) for reason in score.reasons],
        "warnings": warnings,
    }
    if score.probabilities is not None:
        answer["probabilities"] = {k: round(v, 6) for k, v in score.probabilities.items()}
    return answer


def unknown_answer(model: LoadedModel) -> dict[str, Any]:
    return {
        "model": model.name,
        "model_version": model.version,
        "score": None,
        "tier": None,
        "action": None,
        "reasons": [],
        "feature_timestamp": None,
        "warnings": [UNKNOWN_CUSTOMER],
    }


@dataclass
class FeatureSource:
    """One online read for several champions: their features' union, and the door that
    turns application ids into this source's store ids."""

    reader: OnlineReader
    door: Door


@dataclass
class TaskScorer:
    """One task's champion, the columns of its features in its source's rows, and the
    answers it has given since the features or the champion last changed."""

    model: LoadedModel
    source: FeatureSource
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.model.task.name

    def score_online(self, store_ids: Sequence[str], online: OnlineRows) -> dict[str, dict]:
        """Answers for customers just read from the online store; known ones are kept."""
        task = self.model.task
        known, stale_days, feature_time = online.known, online.stale_days, online.feature_time
        features = online.features[self.model.feature_names]
        scores = iter(score_rows(self.model, features[known]) if known.any() else [])
        inside = task.population(features)
        out: dict[str, dict[str, Any]] = {}
        for sid, is_known, is_inside, stale, at in zip(
            store_ids, known, inside, stale_days, feature_time, strict=True
        ):
            if not is_known:
                out[sid] = unknown_answer(self.model)
                continue
            warnings = []
            if not is_inside:
                warnings.append(outside_population(task.population_rule))
            if stale > 0:
                warnings.append(f"stale_features: {stale:.0f} days past the feature view's ttl")
            answer = answer_of(self.model, next(scores), warnings)
            answer["feature_timestamp"] = _stamp(at)
            out[sid] = answer
            self.keep(sid, answer)
        return out

    def keep(self, store_id: str, answer: dict[str, Any]) -> None:
        if len(self.answers) >= CACHE_ENTRIES:
            # Another request may have evicted it first.
            with contextlib.suppress(StopIteration, KeyError, RuntimeError):
                del self.answers[next(iter(self.answers))]
        self.answers[store_id] = answer


def log_records(
    store_ids: Sequence[str | None], answers: Iterable[dict], source: str, caller: str | None
) -> list[dict[str, Any]]:
    return [
        {
            "customer_id": sid,
            "source": source,
            "caller": caller or "open",
            "model_version": answer["model_version"],
            "score": answer["score"],
            "tier": answer["tier"],
            "feature_timestamp": answer.get("feature_timestamp"),
            "unknown": answer["score"] is None,
        }
        for sid, answer in zip(store_ids, answers, strict=True)
    ]


def by_source(scorers: Iterable[TaskScorer]) -> list[list[TaskScorer]]:
    """Scorers grouped by the feature source they share: one online read a group."""
    groups: dict[int, list[TaskScorer]] = {}
    for scorer in scorers:
        groups.setdefault(id(scorer.source), []).append(scorer)
    return list(groups.values())


@dataclass(frozen=True)
class Champions:
    """Every served champion at one moment, with the challengers scored in its shadow:
    swapped whole when one moves."""

    scorers: dict[str, TaskScorer]
    unavailable: dict[str, str]
    challengers: dict[str, TaskScorer] = field(default_factory=dict)

    @property
    def versions(self) -> dict[str, str]:
        return {name: scorer.model.version for name, scorer in self.scorers.items()}

    @property
    def challenger_versions(self) -> dict[str, str]:
        return {name: scorer.model.version for name, scorer in self.challengers.items()}

    def models(self) -> tuple[dict[str, LoadedModel], dict[str, LoadedModel]]:
        """The champions' and the challengers' models, by task."""
        return (
            {name: s.model for name, s in self.scorers.items()},
            {name: s.model for name, s in self.challengers.items()},
        )


def load_champions(
    settings: Settings, store: FeatureStore, registry: MlflowClient | None
) -> Champions:
    """Load every task's champion, and its challenger where one is registered."""
    models, unavailable = load_champion_models(settings)
    return assemble(settings, store, models, unavailable, load_challengers(settings, registry))


def load_challengers(settings: Settings, registry: MlflowClient | None) -> dict[str, LoadedModel]:
    """Every task's challenger that is not its champion; one that cannot be loaded is
    left out with a warning (the champions serve regardless)."""
    challengers = {}
    for name, task in TASKS.items():
        try:
            model = load_challenger_model(settings, registry, task)
        except CustlabError as error:
            logger.warning("no shadow scoring of %s's challenger: %s", name, error)
            continue
        if model is not None:
            challengers[name] = model
    return challengers


def assemble(
    settings: Settings,
    store: FeatureStore,
    models: dict[str, LoadedModel],
    unavailable: dict[str, str],
    challengers: dict[str, LoadedModel] | None = None,
) -> Champions:
    """Give loaded champions (and challengers) their readers: the event tasks share one
    read of the union of their features; a model of a labelled table reads that table's
    view."""
    groups: dict[str | None, list[LoadedModel]] = {}
    shadowed = [m for m in (challengers or {}).values() if m.task.name in models]
    for model in [*models.values(), *shadowed]:
        groups.setdefault(model.record.labelled_table, []).append(model)
    scorers, shadows = {}, {}
    for table, group in groups.items():
        refs: dict[str, str] = {}
        for model in group:
            by_name = {r.split(":", 1)[1]: r for r in feature_refs(store, model.feature_service)}
            refs.update((n, by_name[n]) for n in model.feature_names)
        source = FeatureSource(
            OnlineReader(store, list(refs.values())), door_for(settings, table is not None)
        )
        for model in group:
            kept = shadows if model in shadowed else scorers
            kept[model.task.name] = TaskScorer(model, source)
    return Champions(scorers, unavailable, shadows)


def answer_kept_or_read(
    group: Sequence[TaskScorer], store_ids: Sequence[str], breaker: StoreBreaker | None
) -> dict[str, list[dict]] | None:
    """Per scorer of one feature source, an answer per store id in order: kept answers
    where they are, one online read through ``breaker`` for the rest (``breaker`` None:
    no read, and None when an answer is not kept).

    Raises:
        StoreUnavailable: The read failed, or the breaker refused it.
    """
    # Taken once: the warm-up thread may evict answers meanwhile.
    kept = {s.name: [s.answers.get(sid) for sid in store_ids] for s in group}
    missing = sorted(
        {
            sid
            for given in kept.values()
            for sid, a in zip(store_ids, given, strict=True)
            if a is None
        }
    )
    if not missing:
        return kept
    if breaker is None:
        return None
    online = breaker.call(group[0].source.reader.read, missing)
    fresh = {scorer.name: scorer.score_online(missing, online) for scorer in group}
    return {
        scorer.name: [
            a if a is not None else fresh[scorer.name][sid]
            for sid, a in zip(store_ids, kept[scorer.name], strict=True)
        ]
        for scorer in group
    }


class Shadow:
    """Challengers scored on the customers their champions were just asked about, in a
    thread of their own and logged as ``shadow`` beside the champions' answers; when
    requests come faster than it keeps up, it drops them (counted), never slowing an
    answer."""

    def __init__(
        self, log: PredictionLog, breaker: StoreBreaker, backlog: int = SHADOW_BACKLOG
    ) -> None:
        self._log = log
        self._breaker = breaker
        self._queue: queue.Queue[tuple[list[TaskScorer], list[str], str | None] | None]
        self._queue = queue.Queue(backlog)
        self.scored: dict[str, int] = {}
        self.dropped = 0
        self.failed = 0
        self._thread = threading.Thread(target=self._run, name="shadow", daemon=True)
        self._thread.start()

    def offer(self, challengers: list[TaskScorer], store_ids: list[str], caller: str | None):
        try:
            self._queue.put_nowait((challengers, store_ids, caller))
        except queue.Full:
            self.dropped += 1

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            challengers, store_ids, caller = item
            try:
                for group in by_source(challengers):
                    read = answer_kept_or_read(group, store_ids, self._breaker)
                    for name, given in read.items():
                        self._log.append(name, log_records(store_ids, given, "shadow", caller))
                        self.scored[name] = self.scored.get(name, 0) + len(store_ids)
            except Exception:  # the store may be down: the champions' answers say so
                self.failed += 1
                logger.warning("shadow scoring failed for %d customers", len(store_ids))
            finally:
                self._queue.task_done()
        self._queue.task_done()

    def wait(self) -> None:
        """Until every request offered so far is scored (or failed)."""
        self._queue.join()

    def close(self) -> None:
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=5)
        self._thread.join(timeout=5)


class Scoring:
    """The running service's state: champions, answers kept, the prediction log."""

    def __init__(self, settings: Settings, log: PredictionLog | None = None) -> None:
        self.settings = settings
        self.log = log or PredictionLog(
            settings.prediction_log_dir, retention_days=settings.prediction_log_days
        )
        # Who called what, with which model versions, about which (pseudonymized) ids.
        self.audit = PredictionLog(settings.audit_log_dir, AUDIT_DAYS, schema=CALLS)
        self._store = open_store(settings)
        self._lock = threading.Lock()
        self._registry = registry_client(settings)
        self.champions = load_champions(settings, self._store, self._registry)
        self.breaker = StoreBreaker()
        self.shadow = Shadow(self.log, self.breaker)
        self._generation = online_generation(settings, self._store)
        self._generation_is_local = generation_is_local(self._store)
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self.warmed: dict[str, int] = {}

    # -- what changes the answers -------------------------------------------------------

    def _online_generation(self) -> Hashable:
        """The online store's generation; the one known when the store cannot say (a
        server that is down changes nothing meanwhile, and the kept answers serve)."""
        try:
            return online_generation(self.settings, self._store)
        except Exception:  # the reads' breaker reports the outage
            return self._generation

    def current(self) -> Champions:
        """The champions to answer with, their kept answers dropped if the online
        features changed since the last request."""
        stamps = self._online_generation()
        if stamps != self._generation:
            with self._lock:
                if stamps != self._generation:
                    logger.info("online features changed: answers recomputed from now on")
                    # New readers learn the newest materialization (for staleness);
                    # new scorers start with no answers.
                    self._store = open_store(self.settings)
                    champions = self.champions
                    models, challengers = champions.models()
                    self.champions = assemble(
                        self.settings, self._store, models, champions.unavailable, challengers
                    )
                    self._generation = stamps
                    self.warmed = {}
                    self.warm_in_background()
        return self.champions

    def warm(self, chunk: int = 2_000) -> dict[str, int]:
        """Compute the answers of the online store's customers (up to
        :data:`CACHE_ENTRIES`) before anyone asks; stops early when the features or the
        champions change meanwhile. Customers already answered by every champion are
        skipped, so an attempt after a failed one goes on where that one stopped.

        Returns:
            Answers kept per task.

        Raises:
            StoreUnavailable: A read of the online store failed (or was refused).
        """
        champions = self.champions
        groups = by_source(champions.scorers.values())
        gc.unfreeze()  # the answers of the models or features before may be collected now
        for group in groups:
            reader = group[0].source.reader
            ids = self.breaker.call(reader.customers, CACHE_ENTRIES) or []
            for start in range(0, len(ids), chunk):
                if self._stop.is_set() or self.champions is not champions:
                    return self.warmed
                part = [
                    i for i in ids[start : start + chunk] if any(i not in s.answers for s in group)
                ]
                if not part:
                    continue
                online = self.breaker.call(reader.read, part)
                for scorer in group:
                    scorer.score_online(part, online)
                # Kept answers live until the next change: frozen, the collector's full
                # passes stop walking them as the kept set grows.
                gc.freeze()
        self.warmed = {name: len(s.answers) for name, s in champions.scorers.items()}
        logger.info("answers ready before any request: %s", self.warmed)
        return self.warmed

    def warm_in_background(self) -> None:
        """:meth:`warm` in a daemon thread. After a failure (the store down at start,
        say) it tries again after :data:`WARM_RETRY_FIRST_SECONDS`, doubling the wait up
        to :data:`WARM_RETRY_MAX_SECONDS`, for as long as the champions are the ones it
        began with (a change starts a warm-up of its own) and the service runs."""
        champions = self.champions

        def run() -> None:
            wait = WARM_RETRY_FIRST_SECONDS
            while True:
                try:
                    self.warm()
                    return
                except Exception as why:
                    logger.warning(
                        "could not compute answers ahead (%s); they are computed on request "
                        "until a try in %.0f s succeeds", why, wait,
                    )  # fmt: skip
                if self._stop.wait(wait) or self.champions is not champions:
                    return
                wait = min(2 * wait, WARM_RETRY_MAX_SECONDS)

        threading.Thread(target=run, name="answer-warmup", daemon=True).start()

    def status(self) -> dict[str, Any]:
        """What is served: versions, answers kept, tasks not served and why."""
        champions = self.champions
        return {
            "served": {
                name: {
                    "model": s.model.name,
                    "version": s.model.version,
                    "feature_service": s.model.feature_service,
                    "answers_kept": len(s.answers),
                }
                for name, s in champions.scorers.items()
            },
            "unavailable": champions.unavailable,
            "warmed": bool(self.warmed),
            "shadow": {
                name: {
                    "model": s.model.name,
                    "version": s.model.version,
                    "customers_scored": self.shadow.scored.get(name, 0),
                }
                for name, s in champions.challengers.items()
            },
            "shadow_requests_dropped": self.shadow.dropped,
        }

    def reload_if_promoted(self) -> bool:
        """Swap to the registry's champions and challengers if any moved; True when it
        did (answers are recomputed only when a champion moved)."""
        champions = self.champions
        moved = {
            name: version
            for name, task in TASKS.items()
            if (version := champion_version(self._registry, task)) != champions.versions.get(name)
        }
        shadow_moved = {
            name: version
            for name, task in TASKS.items()
            if (version := challenger_version(self._registry, task))
            != champions.challenger_versions.get(name)
        }
        if moved:
            fresh = load_champions(self.settings, self._store, self._registry)
        elif shadow_moved:
            models, _ = champions.models()
            challengers = load_challengers(self.settings, self._registry)
            # The champions keep their answers: the kept scorers go into the new set.
            fresh = assemble(self.settings, self._store, models, champions.unavailable, challengers)
            fresh = replace(champions, challengers=fresh.challengers)
        else:
            return False
        with self._lock:
            self.champions = fresh
            if moved:
                self.warmed = {}
        logger.info(
            "registry moved (champions %s, challengers %s): now serving %s, shadow %s",
            moved, shadow_moved, fresh.versions, fresh.challenger_versions,
        )  # fmt: skip
        if moved:
            self.warm_in_background()
        return True

    def watch(self) -> None:
        """Check for promotions every ``champion_check_seconds`` in a daemon thread."""
        every = self.settings.champion_check_seconds
        if not every:
            return

        def run() -> None:
            while not self._stop.wait(every):
                try:
                    self.reload_if_promoted()
                except Exception:  # the registry may be briefly unreachable
                    logger.warning("could not check the registry for new champions")

        self._watcher = threading.Thread(target=run, name="champion-watch", daemon=True)
        self._watcher.start()

    def ready(self) -> bool:
        """Whether every feature source answers a read (of an id no one has). It reads
        even while the breaker refuses reads, so a good read ends the refusals early."""
        sources = {id(s.source): s.source for s in self.current().scorers.values()}
        try:
            for source in sources.values():
                self.breaker.probe(source.reader.read, ["readiness-probe"])
        except StoreUnavailable:
            return False
        return True

    def close(self) -> None:
        self._stop.set()
        self.shadow.close()
        self.breaker.close()
        self.log.close()
        self.audit.close()

    # -- answers -----------------------------------------------------------------------

    def served(self, tasks: Sequence[str] | None) -> tuple[list[TaskScorer], dict[str, str]]:
        """The scorers of ``tasks`` (every served task by default) and, for tasks asked
        for without a champion, why not."""
        champions = self.current()
        names = list(tasks) if tasks else list(champions.scorers)
        unknown = [n for n in names if n not in TASKS]
        if unknown:
            raise KeyError(unknown[0])
        scorers = [champions.scorers[n] for n in names if n in champions.scorers]
        missing = {n: champions.unavailable[n] for n in names if n not in champions.scorers}
        return scorers, missing

    def answers(
        self,
        scorers: Sequence[TaskScorer],
        ids: Sequence[str],
        caller: str | None = None,
        route: str = "",
    ) -> dict[str, list[dict]]:
        """Per task, one answer per id in order: kept answers where they are, one online
        read per feature source for the rest; every answer logged, the request audited.

        Raises:
            StoreUnavailable: An online read failed, or the breaker refused it.
        """
        answers = self._answers(scorers, ids, caller, route, self.breaker)
        assert answers is not None  # with a breaker, what is not kept is read
        return answers

    def answers_at_once(
        self,
        tasks: Sequence[str] | None,
        ids: Sequence[str],
        caller: str | None = None,
        route: str = "",
    ) -> tuple[list[TaskScorer], dict[str, list[dict]]] | None:
        """The scorers of ``tasks`` (every served one by default) and their
        :meth:`answers`, when nothing need be read, reloaded or waited for: the online
        features unchanged by a check that cannot wait (the local store's file stamps; a
        server's store is asked over the network), every task served and every answer
        kept. None otherwise: then ask :meth:`served` and :meth:`answers`, which may
        wait."""
        if not self._generation_is_local:
            return None
        if online_generation(self.settings, self._store) != self._generation:
            return None
        scorers = self.champions.scorers
        names = list(tasks) if tasks else list(scorers)
        if not all(name in scorers for name in names):
            return None
        chosen = [scorers[name] for name in names]
        answers = self._answers(chosen, ids, caller, route, breaker=None)
        return None if answers is None else (chosen, answers)

    def _answers(
        self,
        scorers: Sequence[TaskScorer],
        ids: Sequence[str],
        caller: str | None,
        route: str,
        breaker: StoreBreaker | None,
    ) -> dict[str, list[dict]] | None:
        """:meth:`answers`, reading through ``breaker``; with none, None unless every
        answer is kept (and then nothing is logged)."""
        given = []
        for group in by_source(scorers):
            store_ids = group[0].source.door.store_ids(ids)
            answers = answer_kept_or_read(group, store_ids, breaker)
            if answers is None:
                return None
            given.append((group, store_ids, answers))
        out: dict[str, list[dict]] = {}
        audited: list[str] = []
        challengers = self.champions.challengers
        for group, store_ids, answers in given:
            for name, task_answers in answers.items():
                out[name] = task_answers
                self.log.append(name, log_records(store_ids, task_answers, "online", caller))
            if shadowed := [challengers[s.name] for s in group if s.name in challengers]:
                self.shadow.offer(shadowed, store_ids, caller)
            audited += store_ids
        self.record_call(caller, route, scorers, sorted(set(audited)))
        return out

    def record_call(
        self, caller: str | None, route: str, scorers: Sequence[TaskScorer], store_ids: list
    ) -> None:
        versions = {s.name: s.model.version for s in scorers}
        self.audit.append(
            "calls",
            [
                {
                    "caller": caller or "open",
                    "route": route,
                    "versions": json.dumps(versions),
                    "customers": len(store_ids),
                    "customer_ids": store_ids,
                }
            ],
        )

    def score_features(
        self, scorer: TaskScorer, rows: pd.DataFrame, caller: str | None = None, route: str = ""
    ) -> list[dict[str, Any]]:
        """Answers for feature rows given in the request (no store, nothing kept)."""
        model = scorer.model
        table = model.record.labelled_table
        if table is not None:
            raise LookupError(
                f"{scorer.name}'s champion learned from labelled table {table}: score its "
                f"customers by id at /v1/{scorer.name}"
            )
        frame = rows.reindex(columns=model.feature_names)
        warnings = feature_warnings(scorer, frame)
        answers = [
            answer_of(model, score, w) | {"feature_timestamp": None}
            for score, w in zip(score_rows(model, frame), warnings, strict=True)
        ]
        records = log_records([None] * len(answers), answers, "features", caller)
        self.record_call(caller, route, [scorer], [])
        for record, values in zip(records, frame.to_dict("records"), strict=True):
            record["features"] = json.dumps(
                {k: v for k, v in values.items() if v is not None and v == v}
            )
        self.log.append(scorer.name, records)
        return answers


def feature_warnings(scorer: TaskScorer, frame: pd.DataFrame) -> list[list[str]]:
    """What a caller should know about feature rows it sent: features it left out (the
    model reads them as unknown), values outside what the model saw in training, and
    rows outside the trained population."""
    model = scorer.model
    numbers = frame.select_dtypes("number")
    given = frame.notna().to_numpy()
    low, high = model.training_ranges
    inside = model.task.population(frame)
    out = []
    for i in range(len(frame)):
        warnings = []
        left_out = int((~given[i]).sum())
        if left_out:
            warnings.append(
                f"missing_features: {left_out} of the model's {frame.shape[1]} features not "
                "given; the model reads them as unknown"
            )
        beyond = [
            name
            for name in numbers.columns
            if name in low and (numbers.at[i, name] < low[name] or numbers.at[i, name] > high[name])
        ]
        if beyond:
            warnings.append(f"out_of_range: {', '.join(beyond)} outside the training range")
        if not inside[i]:
            warnings.append(outside_population(model.task.population_rule))
        out.append(warnings)
    return out
