"""Running imports: the registry client, pull secrets, the API server and the schedule.

One :class:`ImportRunner` per operator run. kopf hands it every ImageStream
event (:meth:`ImportRunner.observe`); it keeps the latest body of each
stream, so the scheduler can look at a stream again without an API read, and
an index of which streams alias which, so that when a source tag moves its
aliases follow at once (event-driven, no polling).

Per stream, reconciles are serialised by a lock; across streams they run
concurrently, bounded by a number of slots of which no namespace holds more
than its share, with registry imports throttled by a token bucket per
registry host (``importRatePerMinute``) that serves waiting namespaces in
turn. So one namespace with thousands of tags, or one slow registry, delays
another namespace's imports by at most a turn, not by its whole queue.
Everything kept per stream, namespace or host is dropped when the stream
goes, or bounded.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import heapq
import logging
import random
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.resources.authorization_v1 import SubjectAccessReview
from lightkube.resources.core_v1 import Secret, ServiceAccount
from lightkube.types import PatchType

from headwater import access
from headwater.config import Config
from headwater.events import post_event
from headwater.imports.history import (
    Deferred,
    Failed,
    Imported,
    Outcome,
    Recorded,
    TagResult,
    Transition,
    Unchanged,
    apply_results,
    ready_condition,
    transitions,
)
from headwater.imports.model import (
    SpecTag,
    StreamRef,
    newest_item,
    source_stream,
    spec_tags,
    split_stream_image,
    split_stream_tag,
    status_tag,
    tag_condition,
)
from headwater.imports.notifications import Push, pushed_digests, tags_to_import
from headwater.imports.plan import (
    IMPORT_SUCCESS,
    REQUEST_ANNOTATION,
    ImportJob,
    due_time,
    effective_generation,
    next_wakeup,
    plan_imports,
    requested_tags,
    tag_key,
)
from headwater.metrics import (
    IMPORT_DURATION,
    IMPORT_ERRORS,
    IMPORTS,
    QUEUE_DEPTH,
    registry_label,
)
from headwater.registry.client import Platform, RegistryClient, RegistryError, Resolved
from headwater.registry.credentials import (
    PULL_SECRET_TYPES,
    Credentials,
    CredentialsError,
    credentials_for,
    parse_docker_config_secret,
)
from headwater.registry.reference import Reference, ReferenceError, parse_reference
from headwater.resources import ImageStream
from headwater.status import status_patch
from headwater.timefmt import format_time

logger = logging.getLogger(__name__)

KEYRING_TTL = 60.0
MAX_PULL_SECRETS = 16
"""Pull secrets read per namespace (each up to 1 MiB, parsed on the event loop)."""
PUSH_RECHECK_SECONDS = 0.1
PUSH_RECHECKS = 20
ALIAS_DEPTH = 10
EVENT_COMPONENT = "headwater-operator"


MAX_HOSTS = 1024
"""Registry hosts whose bucket and backoff are remembered; idle ones are forgotten first."""


class FairBucket:
    """At most ``rate`` acquisitions per minute, in bursts up to ``burst``, shared fairly.

    Waiters queue per namespace, and tokens go to the waiting namespaces in
    turn (round robin), so a namespace with 500 tags waiting takes one token
    in every *n* (for *n* namespaces waiting), not the next 500.
    """

    def __init__(
        self,
        rate_per_minute: int,
        burst: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate_per_minute / 60.0
        self.capacity = float(burst if burst is not None else max(1, rate_per_minute // 6))
        self.clock = clock
        self.tokens = self.capacity
        self.updated = clock()
        self._queues: dict[str, collections.deque[asyncio.Future[None]]] = {}
        """Namespace -> its waiters; dict order is the turn order."""
        self._timer: asyncio.TimerHandle | None = None

    @property
    def idle(self) -> bool:
        """Nobody waits and the bucket is full again (it can be forgotten)."""
        self._refill()
        return not self._queues and self.tokens >= self.capacity

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + max(0.0, now - self.updated) * self.rate)
        self.updated = now

    async def acquire(self, namespace: str = "") -> None:
        self._refill()
        if not self._queues and self.tokens >= 1:
            self.tokens -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queues.setdefault(namespace, collections.deque()).append(waiter)
        self._pump()
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.tokens += 1  # granted just as it was cancelled: give it back
            self._discard(namespace, waiter)
            raise

    def _discard(self, namespace: str, waiter: asyncio.Future[None]) -> None:
        queue = self._queues.get(namespace)
        if queue is not None:
            with contextlib.suppress(ValueError):
                queue.remove(waiter)
            if not queue:
                del self._queues[namespace]

    def _pump(self) -> None:
        self._timer = None
        self._refill()
        while self._queues and self.tokens >= 1:
            namespace = next(iter(self._queues))
            queue = self._queues.pop(namespace)
            waiter = queue.popleft()
            if queue:
                self._queues[namespace] = queue  # to the back of the turn
            if waiter.done():
                continue
            self.tokens -= 1
            waiter.set_result(None)
        if self._queues and self._timer is None:
            delay = (1 - self.tokens) / self.rate
            self._timer = asyncio.get_running_loop().call_later(delay, self._pump)


class HostBuckets:
    """One :class:`FairBucket` per registry host, at most ``MAX_HOSTS`` of them."""

    def __init__(self, rate_per_minute: int, max_hosts: int = MAX_HOSTS) -> None:
        self.rate_per_minute = rate_per_minute
        self.max_hosts = max_hosts
        self._buckets: collections.OrderedDict[str, FairBucket] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def bucket(self, host: str) -> FairBucket:
        bucket = self._buckets.pop(host, None) or FairBucket(self.rate_per_minute)
        self._buckets[host] = bucket  # most recently used last
        if len(self._buckets) > self.max_hosts:
            # Forget idle hosts, least recently used first (a forgotten host
            # starts again with a full bucket, which is the worst it can gain;
            # one with waiters is kept).
            for name, old in list(self._buckets.items()):
                if len(self._buckets) <= self.max_hosts:
                    break
                if old.idle:
                    del self._buckets[name]
        return bucket

    async def acquire(self, host: str, namespace: str) -> None:
        await self.bucket(host).acquire(namespace)


class HostBackoff:
    """Per registry host: after a 429, a 5xx or no answer, wait before asking again.

    Exponential with jitter (1 s doubling up to 5 minutes), never shorter than
    the host's own Retry-After; one success clears it. Tags due meanwhile are
    deferred, not failed: the host's trouble is not the tag's.
    """

    BASE = 1.0
    CAP = 300.0
    TRIGGERS = frozenset({"RateLimited", "ServerError", "Unreachable", "Timeout"})

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_hosts: int = MAX_HOSTS):
        self.clock = clock
        self.max_hosts = max_hosts
        self._until: dict[str, float] = {}
        self._failures: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._failures)

    def remaining(self, host: str) -> float:
        return max(0.0, self._until.get(host, 0.0) - self.clock())

    def failed(self, host: str, reason: str, retry_after: float | None) -> None:
        if reason not in self.TRIGGERS:
            return
        failures = self._failures.get(host, 0) + 1
        self._failures[host] = failures
        backoff = min(self.CAP, self.BASE * 2 ** (failures - 1)) * random.uniform(0.5, 1.0)  # noqa: S311 - jitter
        wait = min(max(backoff, retry_after or 0.0), 3600.0)
        self._until.pop(host, None)
        self._until[host] = self.clock() + wait  # the latest last
        if len(self._until) > self.max_hosts:
            # Forget the hosts whose wait ended longest ago (a new failure starts over).
            for name in list(self._until)[: len(self._until) - self.max_hosts]:
                self.succeeded(name)

    def succeeded(self, host: str) -> None:
        self._until.pop(host, None)
        self._failures.pop(host, None)


class Scheduler:
    """Wakes streams at their due times; one loop, a heap, no task per stream.

    Streams that are due wait in a queue per namespace; free slots go to the
    namespaces in turn (round robin), and no namespace holds more than its
    share of the slots: ``concurrency`` divided by the namespaces with work,
    and never all of them (``concurrency // 8`` stay free for namespaces
    whose work comes due later). A namespace's long reconciles (a stream of
    500 tags on a slow registry) then never keep another namespace's from
    starting.
    """

    def __init__(self, wake: Callable[[StreamRef], Awaitable[None]], concurrency: int) -> None:
        self._wake = wake
        self.concurrency = max(1, concurrency)
        self._reserve = self.concurrency // 8
        self._heap: list[tuple[float, int, StreamRef]] = []
        self._due: dict[StreamRef, float] = {}
        self._ready: dict[str, dict[StreamRef, None]] = {}
        """Namespace -> its due streams, oldest first; dict order is the turn order."""
        self._ready_count = 0
        self._running: collections.Counter[str] = collections.Counter()
        self._in_flight = 0
        self._seq = 0
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    def _count(self) -> None:
        QUEUE_DEPTH.labels(queue="imports").set(len(self._due) + self._ready_count)

    def running(self, namespace: str) -> int:
        """Reconciles of ``namespace`` running now."""
        return self._running[namespace]

    def _unready(self, ref: StreamRef) -> None:
        queue = self._ready.get(ref.namespace)
        if queue is not None and ref in queue:
            del queue[ref]
            self._ready_count -= 1
            if not queue:
                del self._ready[ref.namespace]

    def at(self, ref: StreamRef, when: datetime | None) -> None:
        """Wake ``ref`` at ``when`` (replacing an earlier plan); None cancels."""
        self._unready(ref)
        if when is None:
            self._due.pop(ref, None)
            self._count()
            return
        moment = when.timestamp()
        self._due[ref] = moment
        self._count()
        self._seq += 1
        heapq.heappush(self._heap, (moment, self._seq, ref))
        self._changed.set()

    def now(self, ref: StreamRef) -> None:
        self.at(ref, datetime.now(UTC))

    def _share(self) -> int:
        """The most slots one namespace may hold now."""
        busy = set(self._ready) | {ns for ns, n in self._running.items() if n > 0}
        share = self.concurrency // max(1, len(busy))
        return max(1, min(share, self.concurrency - self._reserve))

    def _promote(self, now: float) -> None:
        """Move streams whose time has come from the heap to their namespace's queue."""
        while self._heap:
            moment, _, ref = self._heap[0]
            if self._due.get(ref) != moment:
                heapq.heappop(self._heap)  # replaced or cancelled
                continue
            if moment > now:
                break
            heapq.heappop(self._heap)
            del self._due[ref]
            self._ready.setdefault(ref.namespace, {})[ref] = None
            self._ready_count += 1

    def _dispatch(self) -> None:
        """Start due streams while slots are free, namespaces in turn, each within its share."""
        while self._in_flight < self.concurrency and self._ready:
            share = self._share()
            namespace = next((ns for ns in self._ready if self._running[ns] < share), None)
            if namespace is None:
                return
            queue = self._ready.pop(namespace)
            ref = next(iter(queue))
            del queue[ref]
            self._ready_count -= 1
            if queue:
                self._ready[namespace] = queue  # to the back of the turn
            self._running[namespace] += 1
            self._in_flight += 1
            task = asyncio.create_task(self._run_one(ref))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._count()

    async def run(self) -> None:
        while True:
            self._changed.clear()
            self._promote(time.time())
            self._dispatch()
            self._count()
            delay = self._heap[0][0] - time.time() if self._heap else 3600.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=max(delay, 0.0))

    async def _run_one(self, ref: StreamRef) -> None:
        try:
            await self._wake(ref)
        except Exception:  # one stream's bug must not stop the schedule
            logger.exception("scheduled reconcile of ImageStream %s failed", ref)
        finally:
            self._in_flight -= 1
            self._running[ref.namespace] -= 1
            if self._running[ref.namespace] <= 0:
                del self._running[ref.namespace]
            self._changed.set()

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def sar_for_namespace_service_accounts(namespace: str, source: str) -> SubjectAccessReview:
    """May the service accounts of ``namespace`` get ImageStreams in ``source``?

    OpenShift's image-puller model: a cross-namespace reference is honoured
    when the referencing namespace's service accounts were granted read access
    to the source namespace's streams (e.g. a RoleBinding of ``headwater-view``
    to the group ``system:serviceaccounts:<namespace>``).
    """
    return access.review(
        access.Requester.service_account(namespace),
        access.Permission(source, "get", access.IMAGE_GROUP, "imagestreams"),
    )


class ImportRunner:
    """Imports tags, follows aliases and writes ImageStream status."""

    def __init__(
        self,
        kube: AsyncClient,
        registry: RegistryClient,
        config: Config,
        *,
        concurrency: int = 32,
        platform: Platform | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.kube = kube
        self.registry = registry
        self.config = config
        self.platform = platform or Platform.parse(config.import_platform)
        self.clock = clock
        """Where "now" comes from: the benchmark moves it forward by an interval."""
        self.started = clock()
        self.bodies: dict[StreamRef, Mapping[str, Any]] = {}
        self.checked: dict[str, datetime] = {}
        self.sources: dict[StreamRef, set[StreamRef]] = {}
        self.dependents: defaultdict[StreamRef, set[StreamRef]] = defaultdict(set)
        self.locks: defaultdict[StreamRef, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.keyrings: dict[str, tuple[float, list[Mapping[str, Credentials]]]] = {}
        self.reference_digests: dict[str, str] = {}
        self.pending: dict[StreamRef, set[str]] = {}
        self.expected: dict[tuple[StreamRef, str], tuple[str, int]] = {}
        """The digest a push notification named for a tag, and the imports tried since:
        distribution notifies before it moves the tag, so an import at once may still
        see the old image and is tried again shortly."""
        """Tags registry notifications asked to import, until the stream's next reconcile."""
        self.buckets = HostBuckets(config.import_rate_per_minute)
        self.backoff = HostBackoff()
        # One request at a time per (host, repository, login, namespace):
        # politeness to registries, and no duplicate token fetches for one
        # scope; per namespace, so one namespace's queue for a repository
        # never holds up another's. Dropped when unused.
        self.repository_locks: dict[tuple[str, str, str, str], asyncio.Lock] = {}
        self._lock_users: collections.Counter[tuple[str, str, str, str]] = collections.Counter()
        self._streams_in: collections.Counter[str] = collections.Counter()
        """Streams known per namespace: its keyring goes with its last stream."""
        self.scheduler = Scheduler(self.reconcile, concurrency)
        self.on_status: Callable[[Mapping[str, Any]], Awaitable[object]] | None = None
        """Called with the stream after each status write of this runner, so tag moves
        reach triggers without waiting for the watch event."""

    # --- events -------------------------------------------------------------

    async def observe(self, body: Mapping[str, Any]) -> None:
        """A watch event: remember the stream and reconcile it."""
        metadata = body.get("metadata") or {}
        ref = StreamRef(str(metadata["namespace"]), str(metadata["name"]))
        self._remember(ref, body)
        await self.reconcile(ref)

    def import_now(self, pushes: list[Push]) -> tuple[int, int]:
        """Import at once the tags these registry pushes moved; (streams, tags) affected."""
        found = tags_to_import(pushes, self.bodies)
        for key, digest in pushed_digests(pushes, self.bodies).items():
            self.expected[key] = (digest, 0)
        for ref, tags in found.items():
            self.pending.setdefault(ref, set()).update(tags)
            self.scheduler.now(ref)
        return len(found), sum(len(tags) for tags in found.values())

    def forget(self, namespace: str, name: str) -> None:
        """The stream is gone: drop what is kept for it, its schedule and alias edges;
        wake its aliases. Its namespace's keyring goes with the namespace's last stream."""
        ref = StreamRef(namespace, name)
        body = self.bodies.pop(ref, None)
        self.pending.pop(ref, None)
        self.scheduler.at(ref, None)
        for source in self.sources.pop(ref, set()):
            dependents = self.dependents.get(source)
            if dependents is not None:
                dependents.discard(ref)
                if not dependents:
                    del self.dependents[source]
        for dependent in list(self.dependents.pop(ref, set())):
            self.scheduler.now(dependent)
        if body is not None:
            names = {t.name for t in spec_tags(body.get("spec"))}
            names |= {str(e.get("tag")) for e in (body.get("status") or {}).get("tags") or []}
            for tag in names:
                self.checked.pop(tag_key(ref, tag), None)
                self.reference_digests.pop(tag_key(ref, tag), None)
                self.expected.pop((ref, tag), None)
            self._streams_in[namespace] -= 1
            if self._streams_in[namespace] <= 0:
                del self._streams_in[namespace]
                self.keyrings.pop(namespace, None)
        lock = self.locks.get(ref)
        if lock is not None and not lock.locked():
            del self.locks[ref]

    @contextlib.asynccontextmanager
    async def _repository_lock(self, key: tuple[str, str, str, str]) -> AsyncIterator[None]:
        """The lock of one (host, repository, login, namespace), dropped when nobody uses it."""
        self._lock_users[key] += 1
        lock = self.repository_locks.setdefault(key, asyncio.Lock())
        try:
            async with lock:
                yield
        finally:
            self._lock_users[key] -= 1
            if self._lock_users[key] <= 0:
                del self._lock_users[key]
                self.repository_locks.pop(key, None)

    async def record_image(
        self, ref: StreamRef, tag: str, image: str, reference: str, message: str
    ) -> bool:
        """A build pushed ``reference`` for ``tag``: make it the tag's newest item now.

        Done under the stream's lock, on a fresh read, with the resourceVersion
        as a precondition, so a concurrent import can neither lose this item
        nor be lost by it. False when the stream does not exist.
        """
        async with self.locks[ref]:
            for _ in range(5):
                try:
                    obj = await self.kube.get(ImageStream, ref.name, namespace=ref.namespace)
                except ApiError as exc:
                    if exc.status.code == 404:
                        return False
                    raise
                body = plain_dict(obj)
                metadata = body.get("metadata") or {}
                status = body.get("status") or {}
                now = self.clock()
                result = TagResult(
                    tag=SpecTag(
                        name=tag,
                        from_kind=None,
                        from_name="",
                        from_namespace=None,
                        reference=False,
                        generation=None,
                        insecure=False,
                        scheduled=False,
                        import_mode="Legacy",
                        reference_policy="Source",
                    ),
                    outcome=Imported(
                        image=image, docker_image_reference=reference, message=message
                    ),
                    generation=int(metadata.get("generation") or 0),
                    attempted=False,
                )
                tags = apply_results(status, [result], now, self._limit)
                if tags == status.get("tags"):
                    return True
                try:
                    updated = await self.kube.patch(
                        ImageStream.Status,
                        ref.name,
                        {
                            "metadata": {"resourceVersion": metadata.get("resourceVersion")},
                            "status": {"tags": tags},
                        },
                        namespace=ref.namespace,
                        patch_type=PatchType.MERGE,
                    )
                except ApiError as exc:
                    if exc.status.code == 409:
                        continue
                    if exc.status.code == 404:
                        return False
                    raise
                self._remember(ref, plain_dict(updated))
                if self.on_status is not None:
                    await self.on_status(self.bodies[ref])
                for dependent in self.dependents.get(ref, set()):
                    self.scheduler.now(dependent)
                for transition in transitions(status.get("tags"), tags):
                    await self._post_event(ref, body, transition, now)
                return True
            raise RuntimeError(f"{ref}: tag {tag} not recorded after 5 conflicting writes")

    def _defer_unseen_push(self, ref: StreamRef, result: TagResult, now: datetime) -> TagResult:
        """``result``, or Deferred when a notified push's digest is not (yet) what the
        import found, while tries remain."""
        key = (ref, result.tag.name)
        expected = self.expected.get(key)
        if expected is None or isinstance(result.outcome, Deferred):
            return result
        digest, tries = expected
        outcome = result.outcome
        found = (
            (outcome.reference_digest or outcome.image) if isinstance(outcome, Imported) else None
        )
        if found == digest or tries + 1 >= PUSH_RECHECKS:
            del self.expected[key]
            return result
        self.expected[key] = (digest, tries + 1)
        self.pending.setdefault(ref, set()).add(result.tag.name)
        until = now + timedelta(seconds=PUSH_RECHECK_SECONDS)
        return dataclasses.replace(result, outcome=Deferred(until))

    def _remember(self, ref: StreamRef, body: Mapping[str, Any]) -> None:
        if ref not in self.bodies:
            self._streams_in[ref.namespace] += 1
        if _older(body, self.bodies.get(ref)):
            # A watch event delivered after this runner's own newer write: keeping
            # it would compute the next status from an old one.
            return
        self.bodies[ref] = body
        sources: set[StreamRef] = set()
        for tag in spec_tags(body.get("spec")):
            source = None if tag.reference else source_stream(tag, ref.namespace)
            if source is not None and source != ref:
                sources.add(source)
        for old in self.sources.get(ref, set()) - sources:
            self.dependents[old].discard(ref)
        for new in sources:
            self.dependents[new].add(ref)
        self.sources[ref] = sources

    # --- reconcile ----------------------------------------------------------

    async def reconcile(self, ref: StreamRef) -> None:
        """Bring one stream's status up to date with its spec, registries and sources."""
        async with self.locks[ref]:
            body = self.bodies.get(ref)
            if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
                return
            now = self.clock()
            metadata = body.get("metadata") or {}
            generation = int(metadata.get("generation") or 0)
            status = body.get("status") or {}
            tags = spec_tags(body.get("spec"))
            asked = requested_tags(metadata.get("annotations"))
            pushed = self.pending.pop(ref, None)
            requested = (asked or set()) | pushed if pushed else asked
            jobs = plan_imports(
                ref,
                tags,
                status,
                generation,
                now,
                interval=self.config.import_interval_seconds,
                checked=self._checked_for(ref, tags),
                requested=requested,
            )
            results = await self._import_all(ref, jobs, generation, status)
            # A notified push the registry does not show under its tag yet (it
            # notifies first) is tried again shortly, and nothing is recorded now.
            results = [self._defer_unseen_push(ref, r, now) for r in results]
            for job, result in zip(jobs, results, strict=True):
                if not isinstance(result.outcome, Deferred):
                    self.checked[tag_key(ref, job.tag.name)] = now
            interim = {**status, "tags": apply_results(status, results, now, self._limit)}
            results += await self._follow_references(ref, tags, generation, interim, status, now)
            desired = self._desired_status(ref, body, tags, status, results, generation, now)
            forget = forgotten_tags(metadata.get("annotations"))
            if forget:
                # `headwater tag -d`: the tag left the spec; its history goes too.
                # Status-only tags (build outputs) are kept unless named here.
                in_spec = {t.name for t in tags}
                desired["tags"] = [
                    e for e in desired["tags"] if e.get("tag") not in forget - in_spec
                ]
            patch = status_patch(status, desired)
            if patch:
                # Next import times ride along with writes that happen anyway:
                # writing them on their own would cost a write per tag per cycle.
                self._stamp_next_imports(ref, tags, desired)
                patch = status_patch(status, desired)
                updated = await self._patch_status(ref, patch)
                if updated is not None:
                    self.bodies[ref] = updated
                    if self.on_status is not None:
                        await self.on_status(updated)
                if status.get("tags") != desired.get("tags"):
                    for dependent in self.dependents.get(ref, set()):
                        self.scheduler.now(dependent)
                    for transition in transitions(status.get("tags"), desired["tags"]):
                        await self._post_event(ref, body, transition, now)
            if asked is not None or forget is not None:
                await self._clear_request(ref)
            wakeups = [r.outcome.until for r in results if isinstance(r.outcome, Deferred)]
            following = next_wakeup(
                ref,
                tags,
                self.bodies.get(ref, body).get("status"),
                self.config.import_interval_seconds,
                self._checked_for(ref, tags),
            )
            if following is not None:
                wakeups.append(following)
            rechecked = {
                r.tag.name
                for r in results
                if isinstance(r.outcome, Deferred) and (ref, r.tag.name) in self.expected
            }
            if set(self.pending.get(ref, ())) - rechecked:
                # A push arrived while this reconcile ran: its wake-up (scheduled
                # then) must not be replaced by this reconcile's plan.
                wakeups.append(self.clock())
            self.scheduler.at(ref, min(wakeups) if wakeups else None)

    def _stamp_next_imports(
        self, ref: StreamRef, tags: list[SpecTag], desired: dict[str, Any]
    ) -> None:
        checked = self._checked_for(ref, tags)
        by_name = {t.name: t for t in tags}
        for entry in desired.get("tags") or []:
            tag = by_name.get(entry.get("tag"))
            if tag is None:
                continue
            due = due_time(
                ref,
                tag,
                desired,
                self.config.import_interval_seconds,
                checked.get(tag_key(ref, tag.name)),
            )
            if due is None:
                entry.pop("nextImportTime", None)
            else:
                entry["nextImportTime"] = format_time(due)

    @property
    def _limit(self) -> int:
        return self.config.tag_history_limit

    def _checked_for(self, ref: StreamRef, tags: list[SpecTag]) -> dict[str, datetime]:
        # A tag this process has not looked at yet counts as checked at start:
        # after a restart the ring resumes at each tag's next slot, not all at once.
        return {
            key: self.checked.get(key, self.started) for key in (tag_key(ref, t.name) for t in tags)
        }

    def _desired_status(
        self,
        ref: StreamRef,
        body: Mapping[str, Any],
        tags: list[SpecTag],
        status: Mapping[str, Any],
        results: list[TagResult],
        generation: int,
        now: datetime,
    ) -> dict[str, Any]:
        desired = dict(status)
        desired["observedGeneration"] = generation
        desired["tags"] = apply_results(status, results, now, self._limit)
        if self.config.registry:
            desired["dockerImageRepository"] = f"{self.config.registry}/{ref.namespace}/{ref.name}"
        desired["conditions"] = ready_condition(
            status.get("conditions"), tags, desired["tags"], generation, now
        )
        return desired

    # --- registry imports ---------------------------------------------------

    async def _import_all(
        self,
        ref: StreamRef,
        jobs: list[ImportJob],
        generation: int,
        status: Mapping[str, Any],
    ) -> list[TagResult]:
        if not jobs:
            return []
        keyring = await self._keyring(ref.namespace)
        outcomes = await asyncio.gather(*(self._import_one(ref, job, keyring) for job in jobs))
        return [
            TagResult(
                tag=job.tag,
                outcome=outcome,
                generation=effective_generation(job.tag, generation),
            )
            for job, outcome in zip(jobs, outcomes, strict=True)
        ]

    async def _import_one(
        self, ref: StreamRef, job: ImportJob, keyring: list[Mapping[str, Credentials]]
    ) -> Outcome:
        tag = job.tag
        try:
            image = parse_reference(tag.from_name)
        except ReferenceError as exc:
            return Failed("InvalidImageReference", str(exc))
        key = tag_key(ref, tag.name)
        known = None
        if job.known_digest is not None:
            # What the tag named last time (an index, for a multi-platform
            # Legacy tag): the registry's HEAD answers with that digest.
            known = self.reference_digests.get(key, job.known_digest)
        waiting = self.backoff.remaining(image.api_host)
        if waiting > 0:
            return Deferred(self.clock() + timedelta(seconds=waiting))
        started = time.perf_counter()
        await self.buckets.acquire(image.api_host, ref.namespace)
        try:
            # While a notified push is being waited for, the registry may answer
            # 5xx for the tag it is still writing: not a reason to back off the host.
            pushed = (ref, tag.name) in self.expected
            outcome = await self._resolve(
                image, tag, known, keyring, back_off=not pushed, namespace=ref.namespace
            )
        except Exception as exc:  # never let one tag's surprise crash the stream
            logger.exception("import of %s failed unexpectedly", tag.from_name)
            outcome = Failed("InternalError", f"unexpected error: {type(exc).__name__}")
        host = registry_label(image.domain)
        IMPORT_DURATION.labels(registry=host).observe(time.perf_counter() - started)
        if isinstance(outcome, Failed):
            if outcome.reason in ("Unauthorized", "Forbidden"):
                # Perhaps a pull secret was just linked: read them afresh next time.
                self.keyrings.pop(ref.namespace, None)
            IMPORTS.labels(registry=host, result="failed").inc()
            IMPORT_ERRORS.labels(registry=host, reason=outcome.reason).inc()
        else:
            result = "unchanged" if isinstance(outcome, Unchanged) else "imported"
            IMPORTS.labels(registry=host, result=result).inc()
        if isinstance(outcome, Imported) and outcome.reference_digest:
            self.reference_digests[key] = outcome.reference_digest
        return outcome

    async def _resolve(
        self,
        image: Reference,
        tag: SpecTag,
        known: str | None,
        keyring: list[Mapping[str, Credentials]],
        *,
        back_off: bool = True,
        namespace: str = "",
    ) -> Outcome:
        """Resolve with each matching credential in turn (as the kubelet does), then anonymously."""
        candidates: list[Credentials | None] = [*credentials_for(image, keyring)[:3], None]
        error: RegistryError | None = None
        for credentials in candidates:
            login = credentials.username if credentials is not None else ""
            try:
                async with self._repository_lock((image.api_host, image.path, login, namespace)):
                    resolved = await self.registry.resolve(
                        image.api_host,
                        image.path,
                        image.digest or image.tag or "latest",
                        credentials=credentials,
                        insecure=tag.insecure,
                        ca_file=self._ca_file(image.domain),
                        platform=self.platform,
                        preserve_original=tag.import_mode == "PreserveOriginal",
                        known_digest=known,
                    )
            except RegistryError as exc:
                error = exc
                if exc.reason == "NotAllowed":
                    break  # the admin's policy, not the registry: no other login helps
                if exc.reason in ("Unauthorized", "Forbidden"):
                    continue
                if back_off:
                    self.backoff.failed(image.api_host, exc.reason, exc.retry_after)
                break
            except ValueError as exc:
                return Failed("InvalidImageReference", str(exc))
            self.backoff.succeeded(image.api_host)
            if resolved.unchanged:
                return Unchanged()
            return Imported(
                image=resolved.digest,
                docker_image_reference=f"{image.name}@{resolved.digest}",
                platforms=_platforms(resolved) if tag.import_mode == "PreserveOriginal" else (),
                message=f"imported {tag.from_name}",
                reference_digest=resolved.reference_digest or resolved.digest,
            )
        assert error is not None
        return Failed(error.reason, error.message)

    def _ca_file(self, domain: str) -> str | None:
        """``<registryCertsDir>/<host[:port]>/ca.crt`` when the admin put one there."""
        if not self.config.registry_certs_dir:
            return None
        path = Path(self.config.registry_certs_dir) / domain / "ca.crt"
        return str(path) if path.is_file() else None

    async def _keyring(self, namespace: str) -> list[Mapping[str, Credentials]]:
        """Pull secrets of the namespace's default service account, cached briefly."""
        cached = self.keyrings.get(namespace)
        if cached is not None and time.monotonic() - cached[0] < KEYRING_TTL:
            return cached[1]
        keyring: list[Mapping[str, Credentials]] = []
        try:
            account = await self.kube.get(ServiceAccount, "default", namespace=namespace)
            names = [s.name for s in account.imagePullSecrets or [] if s.name]
        except ApiError as exc:
            logger.warning("no default service account in %s: %s", namespace, exc.status.reason)
            names = []
        names += [n for n in self.config.import_pull_secrets if n not in names]
        if len(names) > MAX_PULL_SECRETS:
            logger.warning(
                "namespace %s: %d pull secrets, only the first %d are read",
                namespace, len(names), MAX_PULL_SECRETS,
            )  # fmt: skip
            names = names[:MAX_PULL_SECRETS]
        for name in names:
            try:
                secret = await self.kube.get(Secret, name, namespace=namespace)
            except ApiError as exc:
                logger.warning("pull secret %s/%s: %s", namespace, name, exc.status.reason)
                continue
            if secret.type not in PULL_SECRET_TYPES:
                continue
            try:
                keyring.append(parse_docker_config_secret(secret.type, dict(secret.data or {})))
            except CredentialsError as exc:
                logger.warning("pull secret %s/%s ignored: %s", namespace, name, exc)
        self.keyrings[namespace] = (time.monotonic(), keyring)
        return keyring

    # --- references to other tags -------------------------------------------

    async def _follow_references(
        self,
        ref: StreamRef,
        tags: list[SpecTag],
        generation: int,
        interim: Mapping[str, Any],
        original: Mapping[str, Any],
        now: datetime,
    ) -> list[TagResult]:
        """Results for reference, alias (ImageStreamTag) and pinned (ImageStreamImage) tags.

        Same-stream aliases are resolved against ``interim`` (this reconcile's
        imports included), repeatedly, so chains settle in one pass.
        """
        results: dict[str, TagResult] = {}
        status = dict(interim)
        for _ in range(ALIAS_DEPTH):
            changed = False
            for tag in tags:
                outcome = await self._reference_outcome(ref, tag, status)
                if outcome is None:
                    continue
                result = TagResult(
                    tag=tag,
                    outcome=outcome,
                    generation=effective_generation(tag, generation),
                    attempted=self._record_attempt(ref, tag, outcome, original, now),
                )
                if results.get(tag.name) != result:
                    results[tag.name] = result
                    changed = True
            if not changed:
                break
            status["tags"] = apply_results(
                interim, list(results.values()), datetime.now(UTC), self._limit
            )
        return list(results.values())

    def _record_attempt(
        self,
        ref: StreamRef,
        tag: SpecTag,
        outcome: Outcome,
        original: Mapping[str, Any],
        now: datetime,
    ) -> bool:
        """Whether a reference outcome stamps lastImportTime (which schedules a retry).

        A failure is stamped when it is new or its retry time has come; stamping
        the same failure on every event would make each status write cause the next.
        """
        if not isinstance(outcome, Failed):
            return False
        previous = tag_condition(status_tag(original, tag.name), IMPORT_SUCCESS)
        same = (
            previous is not None
            and previous.get("status") == "False"
            and previous.get("reason") == outcome.reason
            and previous.get("message") == outcome.message
        )
        if not same:
            return True
        due = due_time(ref, tag, original, self.config.import_interval_seconds)
        return due is not None and due <= now

    async def _reference_outcome(
        self, ref: StreamRef, tag: SpecTag, status: Mapping[str, Any]
    ) -> Outcome | None:
        if tag.from_kind == "DockerImage" and tag.reference:
            try:
                image = parse_reference(tag.from_name)
            except ReferenceError as exc:
                return Failed("InvalidImageReference", str(exc))
            return Recorded(docker_image_reference=str(image), image=image.digest or "")
        source = source_stream(tag, ref.namespace)
        if source is None:
            return None
        if source == ref:
            source_status: Mapping[str, Any] | None = status
        else:
            denied = await self._cross_namespace_denied(ref, source)
            if denied:
                return Failed("Forbidden", denied)
            source_status = await self._status_of(source)
            if source_status is None:
                return Failed("NotFound", f"ImageStream {source} does not exist")
        if tag.from_kind == "ImageStreamTag":
            source_tag = split_stream_tag(tag.from_name)[1]
            item = newest_item(source_status, source_tag)
            if item is None:
                return Failed("NotFound", f"ImageStreamTag {source}:{source_tag} has no image yet")
        else:
            digest = split_stream_image(tag.from_name)[1]
            item = _find_image(source_status, digest)
            if item is None:
                return Failed("NotFound", f"ImageStream {source} has no image {digest}")
        return Imported(
            image=str(item.get("image") or ""),
            docker_image_reference=str(item.get("dockerImageReference") or ""),
            platforms=tuple(item.get("platforms") or ()),
            message=f"follows {tag.from_kind} {tag.from_name}",
        )

    async def _status_of(self, source: StreamRef) -> Mapping[str, Any] | None:
        body = self.bodies.get(source)
        if body is None:
            try:
                obj = await self.kube.get(ImageStream, source.name, namespace=source.namespace)
            except ApiError as exc:
                if exc.status.code == 404:
                    return None
                raise
            body = plain_dict(obj)
        return dict(body.get("status") or {})

    async def _cross_namespace_denied(self, ref: StreamRef, source: StreamRef) -> str | None:
        if source.namespace == ref.namespace:
            return None
        review = await self.kube.create(
            sar_for_namespace_service_accounts(ref.namespace, source.namespace)
        )
        if review.status is not None and review.status.allowed:
            return None
        return (
            f"service accounts of namespace {ref.namespace} may not get ImageStreams in "
            f"{source.namespace}; grant them headwater-view there to follow {source}"
        )

    # --- writes ---------------------------------------------------------------

    async def _patch_status(
        self, ref: StreamRef, patch: Mapping[str, Any]
    ) -> Mapping[str, Any] | None:
        try:
            obj = await self.kube.patch(
                ImageStream.Status,
                ref.name,
                {"status": dict(patch)},
                namespace=ref.namespace,
                patch_type=PatchType.MERGE,
            )
        except ApiError as exc:
            if exc.status.code == 404:
                return None
            raise
        return plain_dict(obj)

    async def _post_event(
        self, ref: StreamRef, body: Mapping[str, Any], transition: Transition, now: datetime
    ) -> None:
        """An Event on the stream (what `kubectl describe is` shows); best effort."""
        involved = {"apiVersion": "image.headwater.dev/v1", "kind": "ImageStream", **body}
        involved["metadata"] = {
            **(body.get("metadata") or {}), "name": ref.name, "namespace": ref.namespace,
        }  # fmt: skip
        await post_event(
            self.kube, involved, transition.type, transition.reason, transition.message, now
        )

    async def _clear_request(self, ref: StreamRef) -> None:
        try:
            obj = await self.kube.patch(
                ImageStream,
                ref.name,
                {"metadata": {"annotations": {REQUEST_ANNOTATION: None, FORGET_ANNOTATION: None}}},
                namespace=ref.namespace,
                patch_type=PatchType.MERGE,
            )
        except ApiError as exc:
            if exc.status.code != 404:
                raise
            return
        self.bodies[ref] = plain_dict(obj)


FORGET_ANNOTATION = "image.headwater.dev/forget-tags"
"""Comma-separated tags whose status history goes with them (written by `headwater tag -d`,
which may not write status itself)."""


def forgotten_tags(annotations: Mapping[str, str] | None) -> set[str] | None:
    """The tags the annotation names; None without the annotation."""
    value = (annotations or {}).get(FORGET_ANNOTATION)
    if value is None:
        return None
    return {t.strip() for t in str(value).split(",") if t.strip()}


def _older(body: Mapping[str, Any], than: Mapping[str, Any] | None) -> bool:
    """True when ``body`` is an older version of ``than`` (numeric resourceVersions)."""
    if than is None:
        return False
    new = str((body.get("metadata") or {}).get("resourceVersion") or "")
    old = str((than.get("metadata") or {}).get("resourceVersion") or "")
    return new.isdigit() and old.isdigit() and int(new) < int(old)


def plain_dict(obj: Any) -> dict[str, Any]:
    """A lightkube generic object as the plain dict kopf bodies are (its metadata included)."""
    to_dict = cast(Callable[[], dict[str, Any]], obj.to_dict)
    return to_dict()


def _platforms(resolved: Resolved) -> tuple[Mapping[str, str], ...]:
    """An index's entries as status ``platforms`` (os, architecture, variant, digest)."""
    entries = []
    for entry in resolved.platforms:
        platform = entry.platform
        fields = {
            "os": platform.os if platform else "",
            "architecture": platform.architecture if platform else "",
            "variant": (platform.variant or "") if platform else "",
            "digest": entry.digest,
        }
        entries.append({k: v for k, v in fields.items() if v})
    return tuple(entries)


def _find_image(status: Mapping[str, Any] | None, digest: str) -> Mapping[str, Any] | None:
    for entry in (status or {}).get("tags") or []:
        for item in entry.get("items") or []:
            if item.get("image") == digest:
                return dict(item)
    return None
