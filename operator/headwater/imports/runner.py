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

The parts it composes: :mod:`~headwater.imports.throttle` (per-host token
buckets and backoff, per-repository locks), :mod:`~headwater.imports.credentials`
(pull secrets, registry CAs, the logins tried) and
:mod:`~headwater.imports.references` (aliases and references to other tags).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.types import PatchType

from headwater.config import Config
from headwater.events import post_event
from headwater.imports import credentials
from headwater.imports.credentials import Keyring
from headwater.imports.history import (
    Deferred,
    Failed,
    Imported,
    Outcome,
    TagResult,
    Transition,
    Unchanged,
    apply_results,
    ready_condition,
    transitions,
)
from headwater.imports.model import SpecTag, StreamRef, source_stream, spec_tags, tag_condition
from headwater.imports.notifications import (
    Push,
    RepositoryIndex,
    pushed_digests,
    tags_to_import,
)
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
from headwater.imports.references import References
from headwater.imports.schedule import Schedule
from headwater.imports.throttle import HostBackoff, HostBuckets, Lane, RepositoryLocks
from headwater.imports.verification import (
    VERIFIED,
    PolicyError,
    Verdict,
    tag_policies,
    verified_conditions,
)
from headwater.imports.verifier import Verifier
from headwater.kube import (
    compact_body,
    get_or_none,
    is_conflict,
    is_gone,
    older,
    patch_status,
    plain_dict,
)
from headwater.metrics import (
    IMPORT_DURATION,
    IMPORT_ERRORS,
    IMPORTS,
    registry_label,
)
from headwater.registry.client import Platform, RegistryClient
from headwater.registry.reference import ReferenceError, parse_reference
from headwater.resources import ImageStream
from headwater.status import status_patch
from headwater.timefmt import format_time
from headwater.workqueue import WorkQueue

logger = logging.getLogger(__name__)

EARLY_PUSHES = 1000
"""Pushes kept while no stream follows them yet (right after a start)."""
EARLY_PUSH_SECONDS = 120.0
"""How long after a start such pushes are kept, and for how long each."""
PUSH_RECHECK_SECONDS = 0.1
PUSH_RECHECKS = 20


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
        self.started_monotonic = time.monotonic()
        self.bodies: dict[StreamRef, Mapping[str, Any]] = {}
        self.checked: dict[str, datetime] = {}
        self.sources: dict[StreamRef, set[StreamRef]] = {}
        self.dependents: defaultdict[StreamRef, set[StreamRef]] = defaultdict(set)
        self.locks: defaultdict[StreamRef, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.keyrings: dict[str, tuple[float, Keyring]] = {}
        self.reference_digests: dict[str, str] = {}
        self.pending: dict[StreamRef, set[str]] = {}
        self.repositories = RepositoryIndex()
        """Repository path -> the streams importing from it (what a push looks at)."""
        self.expected: dict[tuple[StreamRef, str], tuple[str, int]] = {}
        """The digest a push notification named for a tag, and the imports tried since:
        distribution notifies before it moves the tag, so an import at once may still
        see the old image and is tried again shortly."""
        """Tags registry notifications asked to import, until the stream's next reconcile."""
        self.buckets = HostBuckets(config.import_rate_per_minute, rates=config.import_rates)
        self.schedule = Schedule(config.import_interval_seconds, self.buckets.rate)
        """Scheduled tags per registry host, and whether each host's rate lets them all
        be checked within the interval."""
        self._tasks: defaultdict[StreamRef, set[asyncio.Task[Any]]] = defaultdict(set)
        """The reconciles running for each stream: cancelled when it goes."""
        self._prepaid: dict[StreamRef, collections.Counter[str]] = {}
        """Per stream, while its imports run: the scheduled lane's tokens waited for
        before its lock was taken, per host."""
        self.backoff = HostBackoff()
        self.repository_locks = RepositoryLocks()
        self.references = References(kube, config, self.bodies)
        self._streams_in: collections.Counter[str] = collections.Counter()
        """Streams known per namespace: its keyring goes with its last stream."""
        self.scheduler: WorkQueue[StreamRef] = WorkQueue(
            "imports", self.reconcile, concurrency=concurrency, kind="ImageStream"
        )
        """Every stream's next reconcile: watch events, pushes, aliases and the import
        schedule add it; a reconcile that raises is retried with backoff."""
        self.urgent: WorkQueue[StreamRef] = WorkQueue(
            "imports-now",
            self.reconcile_now,
            concurrency=max(2, concurrency // 4),
            kind="ImageStream",
        )
        """Streams with imports someone waits for (registry pushes, import requests): a
        lane of its own, so they never queue behind the schedule's slots or tokens."""
        self.own_writes: dict[StreamRef, str] = {}
        """The resourceVersion each stream's last write by this runner got back."""
        self.early_pushes: collections.deque[tuple[float, Push]] = collections.deque(
            maxlen=EARLY_PUSHES
        )
        """Registry pushes that matched no stream seen yet (before the first watch events
        after a start): kept a while, and matched again as streams are seen."""
        self.verifier: Verifier | None = None
        """Checks the images of tags with a verification policy (set at start-up)."""
        self._verifying: dict[str, set[StreamRef]] = {}
        """Digest -> the streams whose tags with a policy point at it: a changed
        verdict (found by a workload's check, or a retry) brings them up to date."""
        self._digests_of: dict[StreamRef, set[str]] = {}
        """The reverse of ``_verifying``: what to drop when a stream is looked at again."""
        self.on_status: Callable[[Mapping[str, Any]], Awaitable[object]] | None = None
        """Called with the stream after each status write of this runner, so tag moves
        reach triggers without waiting for the watch event."""

    # --- events -------------------------------------------------------------

    async def observe(self, body: Mapping[str, Any]) -> None:
        """A watch event: remember the stream and reconcile it."""
        metadata = body.get("metadata") or {}
        ref = StreamRef(str(metadata["namespace"]), str(metadata["name"]))
        version = metadata.get("resourceVersion")
        if version is not None and str(version) == self.own_writes.get(ref):
            # Our own write coming back (this runner keeps what it wrote): nothing
            # in it is new, so no reconcile. Any other event is reconciled, even
            # one older than what is kept: a reconcile that wrote after it may
            # have computed its status before seeing it.
            return
        if metadata.get("deletionTimestamp"):
            # Going (a finalizer still holds it, or its namespace is being deleted):
            # no more imports for it, from now.
            self._abort(ref)
        first = ref not in self.bodies
        self._remember(ref, body)
        if first and self.early_pushes:
            self._match_early_pushes(ref)
        if requested_tags(metadata.get("annotations")) is not None:
            self._wake_now(ref)
        self.scheduler.add(ref)

    def _wake_now(self, ref: StreamRef, when: datetime | None = None) -> None:
        """Reconcile ``ref`` in the lane of imports someone waits for."""
        with contextlib.suppress(RuntimeError):  # no running loop (a synchronous test)
            self.urgent.start()
        if when is None:
            self.urgent.add(ref)
        else:
            self.urgent.at(ref, when)

    def _abort(self, ref: StreamRef) -> None:
        """Stop all import work for ``ref``: its queued plans and its running reconciles
        (a reconcile waiting for a registry token gives it back and asks nothing)."""
        self.scheduler.cancel(ref)
        self.urgent.cancel(ref)
        current = asyncio.current_task() if _loop_running() else None
        for task in self._tasks.pop(ref, set()):
            if task is not current:
                task.cancel()

    def import_now(self, pushes: list[Push]) -> tuple[int, int]:
        """Import at once the tags these registry pushes moved; (streams, tags) affected.

        Right after a start, when the streams arrive with the first watch events,
        each push is also kept for a while, for the streams not seen yet that
        follow it (several streams may follow one repository).
        """
        now = time.monotonic()
        if now - self.started_monotonic < EARLY_PUSH_SECONDS:
            self.early_pushes.extend((now, push) for push in pushes)
        followers = self.repositories.streams(pushes)
        return self._import_pushes(
            pushes, {r: self.bodies[r] for r in followers if r in self.bodies}
        )

    def _match_early_pushes(self, ref: StreamRef) -> None:
        """A stream seen for the first time: import its tags the kept pushes moved.

        Only this stream is matched (the others were when they were first seen),
        so start-up costs one pass per stream, not one over all streams. A push
        stays kept until it expires: another stream seen later may follow it too.
        """
        now = time.monotonic()
        while self.early_pushes and now - self.early_pushes[0][0] >= EARLY_PUSH_SECONDS:
            self.early_pushes.popleft()
        if self.early_pushes:
            self._import_pushes([p for _, p in self.early_pushes], {ref: self.bodies[ref]})

    def _import_pushes(
        self, pushes: list[Push], bodies: Mapping[StreamRef, Mapping[str, Any]]
    ) -> tuple[int, int]:
        found = tags_to_import(pushes, bodies)
        for key, digest in pushed_digests(pushes, bodies).items():
            self.expected[key] = (digest, 0)
        for ref, tags in found.items():
            self.pending.setdefault(ref, set()).update(tags)
            self._wake_now(ref)
        return len(found), sum(len(tags) for tags in found.values())

    def forget(self, namespace: str, name: str) -> None:
        """The stream is gone: drop what is kept for it, its schedule and alias edges;
        wake its aliases. Its namespace's keyring goes with the namespace's last stream."""
        ref = StreamRef(namespace, name)
        body = self.bodies.pop(ref, None)
        self._unverify(ref)
        self.repositories.remove(ref)
        self.pending.pop(ref, None)
        self.own_writes.pop(ref, None)
        self._abort(ref)
        self.schedule.forget(ref)
        for source in self.sources.pop(ref, set()):
            dependents = self.dependents.get(source)
            if dependents is not None:
                dependents.discard(ref)
                if not dependents:
                    del self.dependents[source]
        for dependent in list(self.dependents.pop(ref, set())):
            self.scheduler.add(dependent)
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
                body = await get_or_none(self.kube, ImageStream, ref.name, ref.namespace)
                if body is None:
                    return False
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
                    updated = await patch_status(
                        self.kube,
                        ImageStream.Status,
                        ref.name,
                        ref.namespace,
                        {"tags": tags},
                        resource_version=metadata.get("resourceVersion"),
                    )
                except ApiError as exc:
                    if is_conflict(exc):
                        continue
                    raise
                if updated is None:
                    return False
                self._remember(ref, updated)
                self._wrote(ref, updated)
                # Its watch event is our own write (skipped): the rest of the
                # status (conditions, aliases of the tag) is brought up to date here.
                self.scheduler.add(ref)
                if self.on_status is not None:
                    await self.on_status(self.bodies[ref])
                for dependent in self.dependents.get(ref, set()):
                    self.scheduler.add(dependent)
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
        if older(body, self.bodies.get(ref)):
            # A watch event delivered after this runner's own newer write: keeping
            # it would compute the next status from an old one.
            return
        self.bodies[ref] = compact_body(body)
        self.repositories.update(ref, body)
        sources: set[StreamRef] = set()
        tags = spec_tags(body.get("spec"))
        self.schedule.observe(ref, tags)
        for tag in tags:
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
        """Bring one stream's status up to date with its spec, registries and sources.

        The registry tokens its scheduled checks need are waited for first, without
        the stream's lock, so an import someone waits for (:meth:`reconcile_now`) is
        never held up by this stream's place in the schedule.
        """
        task = asyncio.current_task()
        assert task is not None
        self._tasks[ref].add(task)
        try:
            prepaid = await self._prepay(ref)
            if ref not in self.bodies:
                return
            await self._reconcile(ref, urgent=False, prepaid=prepaid)
        finally:
            self._untrack(ref, task)

    async def reconcile_now(self, ref: StreamRef) -> None:
        """The imports someone waits for (pushes, requests, new tags), without the
        stream's scheduled checks (the schedule's lane does those)."""
        task = asyncio.current_task()
        assert task is not None
        self._tasks[ref].add(task)
        try:
            await self._reconcile(ref, urgent=True, prepaid=collections.Counter())
        finally:
            self._untrack(ref, task)

    def _untrack(self, ref: StreamRef, task: asyncio.Task[Any]) -> None:
        tasks = self._tasks.get(ref)
        if tasks is not None:
            tasks.discard(task)
            if not tasks:
                del self._tasks[ref]

    async def _prepay(self, ref: StreamRef) -> collections.Counter[str]:
        """The scheduled lane's tokens for the checks due now, per host: one waited for
        (in turn with the other namespaces), and as many more as are free at once.

        Waited for without the stream's lock, so an import someone waits for
        (:meth:`reconcile_now`) is not held up by the stream's place in the schedule;
        checks still due after these run in the next turn.
        """
        body = self.bodies.get(ref)
        prepaid: collections.Counter[str] = collections.Counter()
        if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
            return prepaid
        tags = spec_tags(body.get("spec"))
        jobs = plan_imports(
            ref,
            tags,
            body.get("status") or {},
            int((body.get("metadata") or {}).get("generation") or 0),
            self.clock(),
            interval=self.config.import_interval_seconds,
            checked=self._checked_for(ref, tags),
        )
        due: collections.Counter[str] = collections.Counter()
        for job in jobs:
            host = _scheduled_host(job)
            if host is not None and self.backoff.remaining(host) <= 0:
                due[host] += 1
        if not due:
            return prepaid
        await asyncio.gather(*(self.buckets.acquire(host, ref.namespace) for host in due))
        for host, count in due.items():
            prepaid[host] = 1 + self.buckets.bucket(host).take(count - 1)
        return prepaid

    async def _reconcile(
        self, ref: StreamRef, *, urgent: bool, prepaid: collections.Counter[str]
    ) -> None:
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
            if urgent:
                jobs = [job for job in jobs if job.reason not in SCHEDULED_REASONS]
            else:
                jobs = _within(jobs, prepaid, self.backoff)
            keys = [tag_key(ref, job.tag.name) for job in jobs]
            digests = {key: self.reference_digests.get(key) for key in keys}
            try:
                await self._reconcile_imports(ref, body, tags, jobs, asked, now, prepaid)
            except BaseException:
                # Nothing of this attempt was recorded: the pushes it took are
                # asked for again by the retry (the queue's backoff), not lost,
                # and the digests it saw are forgotten (the retry must find the
                # tags moved, or it would write nothing).
                if pushed:
                    self.pending.setdefault(ref, set()).update(pushed)
                for key, digest in digests.items():
                    if digest is None:
                        self.reference_digests.pop(key, None)
                    else:
                        self.reference_digests[key] = digest
                raise

    async def _reconcile_imports(
        self,
        ref: StreamRef,
        body: Mapping[str, Any],
        tags: list[SpecTag],
        jobs: list[ImportJob],
        asked: frozenset[str] | None,
        now: datetime,
        prepaid: collections.Counter[str],
    ) -> None:
        """Import ``jobs``, follow references and write the status; raises on API errors."""
        metadata = body.get("metadata") or {}
        generation = int(metadata.get("generation") or 0)
        status = body.get("status") or {}
        results = await self._import_all(ref, jobs, generation, status, prepaid)
        # A notified push the registry does not show under its tag yet (it
        # notifies first) is tried again shortly, and nothing is recorded now.
        results = [self._defer_unseen_push(ref, r, now) for r in results]
        # When each tag was looked at: kept only once the status that records
        # what was found is written (a failed write imports them again).
        fresh = {
            tag_key(ref, job.tag.name): now
            for job, result in zip(jobs, results, strict=True)
            if not isinstance(result.outcome, Deferred)
        }
        interim = {**status, "tags": apply_results(status, results, now, self._limit)}
        results += await self.references.follow(ref, tags, generation, interim, status, now)
        desired = self._desired_status(ref, body, tags, status, results, generation, now)
        verify_due = await self._verify_tags(ref, body, desired, asked, now)
        forget = forgotten_tags(metadata.get("annotations"))
        if forget:
            # `headwater tag -d`: the tag left the spec; its history goes too.
            # Status-only tags (build outputs) are kept unless named here.
            in_spec = {t.name for t in tags}
            desired["tags"] = [e for e in desired["tags"] if e.get("tag") not in forget - in_spec]
        patch = status_patch(status, desired)
        if patch:
            # Next import times ride along with writes that happen anyway:
            # writing them on their own would cost a write per tag per cycle.
            self._stamp_next_imports(ref, tags, desired, fresh)
            patch = status_patch(status, desired)
            updated = await self._patch_status(ref, patch)
            self.checked.update(fresh)
            if updated is not None:
                self._wrote(ref, updated)
                if self.on_status is not None:
                    await self.on_status(updated)
            if status.get("tags") != desired.get("tags"):
                for dependent in self.dependents.get(ref, set()):
                    self.scheduler.add(dependent)
                for transition in transitions(status.get("tags"), desired["tags"]):
                    await self._post_event(ref, body, transition, now)
        else:
            self.checked.update(fresh)
        if asked is not None or forget is not None:
            annotations = metadata.get("annotations") or {}
            await self._clear_request(
                ref, {key: annotations.get(key) for key in (REQUEST_ANNOTATION, FORGET_ANNOTATION)}
            )
        rechecked = {
            r.tag.name
            for r in results
            if isinstance(r.outcome, Deferred) and (ref, r.tag.name) in self.expected
        }
        # A deferred tag is due at its ``until``, not at its own due time: that one
        # is past (it was due now), and would run this reconcile again at once, in
        # a loop with no I/O for as long as its registry host backs off.
        wakeups = [
            r.outcome.until
            for r in results
            if isinstance(r.outcome, Deferred) and r.tag.name not in rechecked
        ]
        deferred = {r.tag.name for r in results if isinstance(r.outcome, Deferred)}
        following = next_wakeup(
            ref,
            [tag for tag in tags if tag.name not in deferred],
            self.bodies.get(ref, body).get("status"),
            self.config.import_interval_seconds,
            self._checked_for(ref, tags),
        )
        if following is not None:
            wakeups.append(following)
        if verify_due is not None:
            wakeups.append(verify_due)
        if ref not in self.bodies:  # forgotten (deleted) while this ran
            return
        if set(self.pending.get(ref, ())) - rechecked:
            # A push arrived while this reconcile ran: its wake-up (made then, in
            # the lane of imports someone waits for) must not be lost.
            self._wake_now(ref)
        elif rechecked:
            # A notified push the registry does not show yet: looked at again
            # shortly, in the same lane.
            self._wake_now(
                ref,
                min(r.outcome.until for r in results
                    if isinstance(r.outcome, Deferred) and r.tag.name in rechecked),
            )  # fmt: skip
        self.scheduler.at(ref, min(wakeups) if wakeups else None)

    async def _verify_tags(
        self,
        ref: StreamRef,
        body: Mapping[str, Any],
        desired: dict[str, Any],
        asked: frozenset[str] | None,
        now: datetime,
    ) -> datetime | None:
        """Set the ``Verified`` condition of each tag with a verification policy (in
        ``desired``); when an unverified one is due to be looked at again.

        Answers come from the verifier's cache in the steady state (no request);
        ``headwater import-image`` (``asked``) looks again at once.
        """
        policies = tag_policies(body.get("spec"))
        insecure = {tag.name: tag.insecure for tag in spec_tags(body.get("spec"))}
        self._unverify(ref)
        entries = desired.get("tags") or []
        if not policies and not any(tag_condition(e, VERIFIED) for e in entries):
            return None  # the common case: no policy, nothing to add or take away
        due: list[float] = []
        generation = int((body.get("metadata") or {}).get("generation") or 0)
        for position, entry in enumerate(entries):
            name = str(entry.get("tag"))
            policy = policies.get(name)
            items = entry.get("items") or []
            verdict: Verdict | None = None
            if isinstance(policy, PolicyError):
                verdict = Verdict("False", "InvalidPolicy", str(policy))
            elif policy is not None and items and items[0].get("image"):
                digest = str(items[0]["image"])
                reference = str(items[0].get("dockerImageReference") or "")
                if self.verifier is None:
                    verdict = Verdict("Unknown", "Verifying", "no verifier configured")
                else:
                    if asked is not None and ("*" in asked or name in asked):
                        self.verifier.recheck(digest)
                    old = tag_condition(entry, VERIFIED)
                    lane: Lane = "scheduled" if old is not None else "now"
                    verdict = await self.verifier.verify(
                        reference, digest, policy.keys, namespace=ref.namespace, lane=lane,
                        insecure=insecure.get(name, False),
                    )  # fmt: skip
                    self._verifying.setdefault(digest, set()).add(ref)
                    self._digests_of.setdefault(ref, set()).add(digest)
                    if not verdict.verified:
                        wait = self.verifier.next_check(digest, policy.keys)
                        if wait is not None:
                            due.append(wait)
            conditions = verified_conditions(entry, verdict, generation, now)
            if conditions != list(entry.get("conditions") or []):
                entries[position] = {**entry, "conditions": conditions}
        return now + timedelta(seconds=min(due)) if due else None

    def _unverify(self, ref: StreamRef) -> None:
        for digest in self._digests_of.pop(ref, ()):
            refs = self._verifying.get(digest)
            if refs is not None:
                refs.discard(ref)
                if not refs:
                    del self._verifying[digest]

    async def on_verdict(self, digest: str) -> None:
        """The verifier's answer for ``digest`` changed: the streams showing it look again."""
        for ref in sorted(self._verifying.get(digest, ()), key=str):
            self._wake_now(ref)

    def _stamp_next_imports(
        self,
        ref: StreamRef,
        tags: list[SpecTag],
        desired: dict[str, Any],
        fresh: Mapping[str, datetime],
    ) -> None:
        checked = {**self._checked_for(ref, tags), **fresh}
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
            if due is None or not _failing(entry):
                # A scheduled check that finds nothing new writes nothing, so a time
                # stamped for it would be in the past after it: only a retry's time
                # (written with each failed attempt) stays true.
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
        desired["conditions"] = self.schedule.condition(ref, desired["conditions"], generation, now)
        return desired

    # --- registry imports ---------------------------------------------------

    async def _import_all(
        self,
        ref: StreamRef,
        jobs: list[ImportJob],
        generation: int,
        status: Mapping[str, Any],
        prepaid: collections.Counter[str] | None = None,
    ) -> list[TagResult]:
        if not jobs:
            return []
        keyring = await credentials.keyring(
            self.kube, ref.namespace, self.config.import_pull_secrets, self.keyrings
        )
        if prepaid:
            self._prepaid[ref] = prepaid
        try:
            outcomes = await asyncio.gather(*(self._import_one(ref, job, keyring) for job in jobs))
        finally:
            self._prepaid.pop(ref, None)
        return [
            TagResult(
                tag=job.tag,
                outcome=outcome,
                generation=effective_generation(job.tag, generation),
            )
            for job, outcome in zip(jobs, outcomes, strict=True)
        ]

    async def _import_one(
        self,
        ref: StreamRef,
        job: ImportJob,
        keyring: Keyring,
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
        expected = self.expected.get((ref, tag.name))
        pushed_digest = expected[0] if expected is not None else None
        if pushed_digest is not None and known is None:
            # A notified push with its digest: one HEAD confirms it (or finds the
            # tag not moved yet), no manifest fetched.
            known = self.reference_digests.get(key)
        waiting = self.backoff.remaining(image.api_host)
        if waiting > 0:
            return Deferred(self.clock() + timedelta(seconds=waiting))
        started = time.perf_counter()
        prepaid = self._prepaid.get(ref)
        if job.reason in SCHEDULED_REASONS and prepaid and prepaid[image.api_host] > 0:
            prepaid[image.api_host] -= 1  # its token was waited for before the lock
        else:
            lane: Lane = "scheduled" if job.reason in SCHEDULED_REASONS else "now"
            await self.buckets.acquire(image.api_host, ref.namespace, lane)
        if ref not in self.bodies:
            # Deleted while it waited its turn (a namespace of streams going away):
            # no request for it.
            return Deferred(self.clock())
        try:
            # While a notified push is being waited for, the registry may answer
            # 5xx for the tag it is still writing: not a reason to back off the host.
            pushed = expected is not None
            outcome = await credentials.resolve(
                self.registry,
                image,
                tag,
                known,
                keyring,
                platform=self.platform,
                ca_file=credentials.ca_file(self.config.registry_certs_dir, image.domain),
                locks=self.repository_locks,
                backoff=self.backoff,
                back_off=not pushed,
                namespace=ref.namespace,
                pushed=pushed_digest,
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

    # --- writes ---------------------------------------------------------------

    async def _patch_status(
        self, ref: StreamRef, patch: Mapping[str, Any]
    ) -> Mapping[str, Any] | None:
        return await patch_status(self.kube, ImageStream.Status, ref.name, ref.namespace, patch)

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

    async def _clear_request(self, ref: StreamRef, handled: Mapping[str, str | None]) -> None:
        """Remove the request annotations this reconcile acted on (``handled``: their values).

        Only if they are still what it saw, on the version of the stream known now:
        a request made meanwhile (a second `import-image`, a `tag -d`) stays for the
        reconcile its watch event queues.
        """
        known = self.bodies.get(ref) or {}
        metadata = known.get("metadata") or {}
        current = metadata.get("annotations") or {}
        if any(current.get(key) != value for key, value in handled.items()):
            return
        try:
            obj = await self.kube.patch(
                ImageStream,
                ref.name,
                {
                    "metadata": {
                        "annotations": dict.fromkeys(handled),
                        "resourceVersion": metadata.get("resourceVersion"),
                    }
                },
                namespace=ref.namespace,
                patch_type=PatchType.MERGE,
            )
        except ApiError as exc:
            if is_gone(exc) or is_conflict(exc):
                return  # gone, or changed since: its watch event queues the stream again
            raise
        self._wrote(ref, plain_dict(obj))

    def _wrote(self, ref: StreamRef, body: Mapping[str, Any]) -> None:
        """Keep what our write got back, unless a newer version was seen meanwhile (the
        answer can arrive after the watch events of later writes by others), and remember
        its resourceVersion: its own watch event is ours, and queues nothing."""
        if ref in self.bodies and not older(body, self.bodies[ref]):
            self.bodies[ref] = compact_body(body)
        version = (body.get("metadata") or {}).get("resourceVersion")
        if version is not None:
            self.own_writes[ref] = str(version)


SCHEDULED_REASONS = frozenset({"scheduled", "retry"})
"""Plan reasons of the schedule's lane; the others (new tags, spec changes, pushes,
requests) are imports someone waits for."""


def _scheduled_host(job: ImportJob) -> str | None:
    """The registry host a scheduled check asks; None for other jobs."""
    if job.reason not in SCHEDULED_REASONS:
        return None
    try:
        return parse_reference(job.tag.from_name).api_host
    except ReferenceError:
        return None


def _within(
    jobs: list[ImportJob], prepaid: Mapping[str, int], backoff: HostBackoff
) -> list[ImportJob]:
    """``jobs`` without the scheduled checks no token was waited for (their turn comes
    next); checks of a host backing off stay (they are deferred without a request)."""
    left = collections.Counter(prepaid)
    kept = []
    for job in jobs:
        host = _scheduled_host(job)
        if host is not None and backoff.remaining(host) <= 0:
            if left[host] <= 0:
                continue
            left[host] -= 1
        kept.append(job)
    return kept


def _failing(entry: Mapping[str, Any]) -> bool:
    condition = tag_condition(entry, IMPORT_SUCCESS)
    return condition is not None and condition.get("status") == "False"


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


FORGET_ANNOTATION = "image.headwater.dev/forget-tags"
"""Comma-separated tags whose status history goes with them (written by `headwater tag -d`,
which may not write status itself)."""


def forgotten_tags(annotations: Mapping[str, str] | None) -> set[str] | None:
    """The tags the annotation names; None without the annotation."""
    value = (annotations or {}).get(FORGET_ANNOTATION)
    if value is None:
        return None
    return {t.strip() for t in str(value).split(",") if t.strip()}
