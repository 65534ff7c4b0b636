"""Workload image triggers: the controller that keeps workloads on their tags' images.

Every watch event of a Deployment, StatefulSet, DaemonSet, CronJob or Job
carrying a trigger annotation re-parses it, records which tags the workload
follows, and converges its container images to those tags' current images
(which is also what puts back a manual image edit while the trigger is not
paused). Every move of a tag (the :class:`~headwater.imports.tagfeed.TagFeed`)
converges the workloads following it, read afresh from the API server.
(A Job is only checked: its pod template cannot change once it exists.)

Writes are server-side applies by the field manager ``headwater-triggers``
with ``force``: the workload was created by someone else (kubectl, a GitOps
tool's field manager), who owns the image field; forcing moves the ownership
of exactly the image fields the triggers name, and nothing else, to Headwater.
A write happens only when an image differs, so converging twice rolls out
nothing and the watch event of our own write finds nothing to do.

Cross-namespace triggers (``from.namespace``): the operator can read every
namespace's streams, so a workload's trigger is honoured only when the
workload namespace's service accounts may get ImageStreams in the source
namespace — the same rule as an ImageStream tag following another namespace
(:func:`headwater.imports.references.sar_for_namespace_service_accounts`).
Otherwise editing a Deployment would be enough to learn another namespace's
image digests, and to run its images.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from lightkube import AsyncClient
from lightkube.resources.apps_v1 import DaemonSet, Deployment, StatefulSet
from lightkube.resources.batch_v1 import CronJob, Job
from lightkube.types import PatchType

from headwater.events import post_event
from headwater.imports.references import sar_for_namespace_service_accounts
from headwater.imports.tagfeed import Key, TagFeed, TagImage
from headwater.imports.verification import rollout_requirements
from headwater.imports.verifier import Verifier
from headwater.kube import API_ERRORS, Failure, classify, get_or_none
from headwater.workloads.triggers import (
    FIELD_MANAGER,
    WORKLOAD_KINDS,
    ImageTrigger,
    Plan,
    TriggerError,
    parse_triggers,
    plan_workload,
    trigger_annotation,
)
from headwater.workqueue import WorkQueue

logger = logging.getLogger(__name__)

RESOURCES: Mapping[str, Any] = {
    "Deployment": Deployment,
    "StatefulSet": StatefulSet,
    "DaemonSet": DaemonSet,
    "CronJob": CronJob,
    "Job": Job,
}
assert set(RESOURCES) == set(WORKLOAD_KINDS)

REASON_INVALID = "InvalidTriggerAnnotation"
REASON_FORBIDDEN = "TriggerSourceForbidden"
REASON_NOT_APPLIED = "TriggerNotApplied"
REASON_UPDATED = "ImageTriggered"
REASON_UNVERIFIED = "ImageNotVerified"
ACCESS_TTL_SECONDS = 60.0
"""How long a cross-namespace access review is trusted (a grant takes effect within it)."""
PATCH_ATTEMPTS = 3


@dataclass(frozen=True, order=True)
class WorkloadRef:
    kind: str
    namespace: str
    name: str

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> WorkloadRef:
        metadata = body.get("metadata") or {}
        return cls(str(body.get("kind")), str(metadata.get("namespace")), str(metadata.get("name")))

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


class WorkloadTriggers:
    """Which workloads follow which tags, and converging them."""

    def __init__(
        self,
        kube: AsyncClient,
        feed: TagFeed,
        *,
        verifier: Verifier | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kube = kube
        self.feed = feed
        self.verifier = verifier
        if verifier is not None:
            verifier.subscribe(self.on_verdict)
        self.clock = clock
        self.monotonic = monotonic
        self.watchers: dict[Key, set[WorkloadRef]] = defaultdict(set)
        self.following: dict[WorkloadRef, frozenset[Key]] = {}
        self._locks: dict[WorkloadRef, asyncio.Lock] = defaultdict(asyncio.Lock)
        # What was already said about each workload (Events, log lines), so a
        # state that persists is reported once, not on every watch event.
        self._reported: dict[WorkloadRef, set[str]] = defaultdict(set)
        self._access: dict[tuple[str, str], tuple[bool, float]] = {}
        # (uid, generation) each workload had right after our last write to it.
        self._written: dict[WorkloadRef, tuple[str, int]] = {}
        self._own: dict[WorkloadRef, str] = {}
        """The resourceVersion our last write to each workload got back."""
        self._fresh: dict[WorkloadRef, Mapping[str, Any]] = {}
        """Bodies of watch events not yet converged (the newest per workload)."""
        self.queue: WorkQueue[WorkloadRef] = WorkQueue("workloads", self.reconcile, kind="Workload")

    # --- entry points -----------------------------------------------------------

    async def on_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A watch event of a workload carrying a trigger annotation: queue it."""
        ref = WorkloadRef.of(body)
        if event_type == "DELETED":
            self.forget(ref)
            self.queue.cancel(ref)
            lock = self._locks.get(ref)
            if lock is not None and not lock.locked():
                del self._locks[ref]
            return
        if str((body.get("metadata") or {}).get("resourceVersion") or "") == self._own.get(ref):
            return  # our own write coming back: nothing in it is new
        self._fresh[ref] = body
        self._add(ref)

    async def on_tag_moved(self, image: TagImage) -> None:
        """A tag moved (or was first seen): queue every workload following it."""
        for ref in sorted(self.watchers.get((image.namespace, image.stream, image.tag), ())):
            self._add(ref)

    async def on_verdict(self, digest: str) -> None:
        """An image's verification answer changed: queue the workloads following tags at it."""
        for key, refs in list(self.watchers.items()):
            image = self.feed.current(*key)
            if image is not None and image.image == digest:
                for ref in sorted(refs):
                    self._add(ref)

    def _add(self, ref: WorkloadRef) -> None:
        self.queue.start()
        self.queue.add(ref)

    async def reconcile(self, ref: WorkloadRef) -> None:
        """Converge one workload: from its watch event's body, else read afresh.

        A tag move, a retry or a resync reads the workload again: its trigger
        annotation may have gone since (an event this controller does not get).
        Raising (an API error) requeues the workload with backoff.
        """
        body = self._fresh.pop(ref, None)
        if body is None:
            body = await self._get(ref)
            if body is None:
                self.forget(ref)
                return
        await self.converge(body)

    async def settle(self) -> None:
        """Wait until every queued workload has been converged (or waits for a retry)."""
        if self.queue.started:
            await self.queue.settle()

    async def stop(self) -> None:
        await self.queue.stop()

    def forget(self, ref: WorkloadRef) -> None:
        self._index(ref, frozenset())
        self._reported.pop(ref, None)
        self._written.pop(ref, None)
        self._own.pop(ref, None)
        self._fresh.pop(ref, None)

    # --- converging -------------------------------------------------------------

    async def converge(self, body: Mapping[str, Any]) -> None:
        """Give the workload's triggered containers their tags' current images."""
        ref = WorkloadRef.of(body)
        async with self._locks[ref]:
            if self._stale(ref, body):
                # Queued before our own write landed: converging it would write
                # (and announce) the same images again. Its successor follows.
                return
            found = trigger_annotation(body)
            if found is None:
                self.forget(ref)
                return
            key, value = found
            try:
                triggers = parse_triggers(value, ref.kind, ref.namespace)
            except TriggerError as exc:
                self._index(ref, frozenset())
                await self._report(body, "Warning", REASON_INVALID, f"{key}: {exc}", value)
                return
            self._index(ref, frozenset(t.key for t in triggers if not t.paused))
            denied = await self._denied_sources(
                ref.namespace, {t.namespace for t in triggers if not t.paused}
            )
            for source in sorted(denied):
                await self._report(
                    body,
                    "Warning",
                    REASON_FORBIDDEN,
                    f"service accounts of namespace {ref.namespace} may not get ImageStreams"
                    f" in {source}; grant them headwater-view there to follow its tags",
                )

            def lookup(namespace: str, stream: str, tag: str) -> TagImage | None:
                return None if namespace in denied else self.feed.current(namespace, stream, tag)

            try:
                plan = plan_workload(body, triggers, lookup)
                if any(self._requirements(c.trigger, lookup) for c in plan.changes):
                    refusals = await self._verify(plan)
                    plan = plan_workload(
                        body,
                        triggers,
                        lookup,
                        gate=lambda t, image: refusals.get((t.field_path, image.image)),
                    )
            except TriggerError as exc:
                await self._report(body, "Warning", REASON_INVALID, f"{key}: {exc}", value)
                return
            self._clear(ref, REASON_INVALID)
            await self._unverified(ref, body, plan)
            await self._apply(ref, body, plan)

    @staticmethod
    def _requirements(
        trigger: ImageTrigger, lookup: Callable[[str, str, str], TagImage | None]
    ) -> tuple[tuple[str, ...], ...]:
        image = lookup(trigger.namespace, trigger.stream, trigger.tag)
        if image is None:
            return ()
        return rollout_requirements(trigger.verify_keys, image.verification)

    async def _verify(self, plan: Plan) -> dict[tuple[str, str], str]:
        """(field path, digest) -> why that change may not roll out, for changes that must
        verify (the trigger's ``verify`` keys, the tag's ``required`` policy)."""
        refusals: dict[tuple[str, str], str] = {}
        for change in plan.changes:
            trigger = change.trigger
            image = self.feed.current(trigger.namespace, trigger.stream, trigger.tag)
            if image is None:
                continue
            requirements = rollout_requirements(trigger.verify_keys, image.verification)
            why: list[str] = []
            for keys in requirements:
                if not keys:
                    why.append(f"the verification policy of {trigger.source} is invalid")
                    continue
                if self.verifier is None:
                    why.append("image verification is not available in this operator")
                    continue
                verdict = await self.verifier.verify(
                    image.reference, image.image, keys, namespace=image.namespace, lane="now"
                )
                if not verdict.verified:
                    why.append(f"{verdict.reason}: {verdict.message}")
            if why:
                refusals[(trigger.field_path, image.image)] = "; ".join(why)
        return refusals

    async def _unverified(self, ref: WorkloadRef, body: Mapping[str, Any], plan: Plan) -> None:
        """Say why images were not rolled out, and look again when a retry is due."""
        said = [
            (
                f"{trigger.field_path}: not rolling out {image.pull_spec}"
                f" (ImageStreamTag {trigger.source}): {why}",
                trigger,
                image,
            )
            for trigger, image, why in plan.unverified
        ]
        self._clear(ref, REASON_UNVERIFIED, keep={f"\0{message}" for message, _, _ in said})
        due: list[float] = []
        for message, trigger, image in said:
            await self._report(body, "Warning", REASON_UNVERIFIED, message)
            if self.verifier is not None:
                keys = trigger.verify_keys or (
                    image.verification.keys if image.verification else ()
                )
                wait = self.verifier.next_check(image.image, keys)
                if wait is not None:
                    due.append(wait)
        if due:
            # Level-based: the retry re-plans from the tags as they are then.
            self.queue.at(ref, self.clock() + timedelta(seconds=min(due)))

    async def _apply(self, ref: WorkloadRef, body: Mapping[str, Any], plan: Plan) -> None:
        self._clear(ref, "waiting", keep={t.source for t in plan.waiting})
        for trigger in plan.waiting:
            # Not an Event: right after a start the feed has not seen every stream yet.
            if self._first_time(ref, f"waiting\0{trigger.source}"):
                logger.info("%s: %s has no image yet; waiting for it", ref, trigger.source)
        if plan.blocked:
            wanted = ", ".join(f"{c.container} → {c.new}" for c in plan.changes)
            await self._report(
                body, "Warning", REASON_NOT_APPLIED, f"{plan.blocked} (wanted: {wanted})"
            )
            return
        if plan.apply is None:
            return
        patched, refused = await self._patch(ref, plan.apply)
        if refused:
            # An admission webhook or policy said no, or the body is invalid:
            # retrying the same write would get the same answer.
            await self._report(body, "Warning", REASON_NOT_APPLIED, refused)
        if not patched:
            return
        for change in plan.changes:
            what = "init container" if change.init else "container"
            await self._event(
                body,
                "Normal",
                REASON_UPDATED,
                f"{what} {change.container}: image {change.new}"
                f" (ImageStreamTag {change.trigger.source}; was {change.old or 'unset'})",
            )

    def _stale(self, ref: WorkloadRef, body: Mapping[str, Any]) -> bool:
        written = self._written.get(ref)
        metadata = body.get("metadata") or {}
        return (
            written is not None
            and written[0] == metadata.get("uid")
            and int(metadata.get("generation") or 0) < written[1]
        )

    async def _patch(self, ref: WorkloadRef, body: Mapping[str, Any]) -> tuple[bool, str | None]:
        """Server-side apply ``body``: (written, why the API server refused it).

        A transient failure raises: the work queue converges the workload again
        with backoff, from a fresh read.
        """
        resource = RESOURCES[ref.kind]
        try:
            result = await self.kube.patch(
                resource,
                ref.name,
                dict(body),
                namespace=ref.namespace,
                patch_type=PatchType.APPLY,
                field_manager=FIELD_MANAGER,
                # The image field belongs to whoever created the workload
                # (kubectl, a GitOps tool); without force the apply fails
                # with a conflict. Only the image fields named by triggers
                # are in the body, so only those change hands.
                force=True,
            )
        except API_ERRORS as exc:
            failure = classify(exc)
            if failure is Failure.GONE:
                self.forget(ref)
                return False, None
            if failure in (Failure.INVALID, Failure.FORBIDDEN):
                # An admission webhook or policy said no, or the body is invalid:
                # retrying the same write would get the same answer.
                return False, f"the API server refused the image update: {exc}"
            raise
        logger.info("%s: images set by triggers", ref)
        metadata = getattr(result, "metadata", None)
        if metadata is not None and metadata.uid and metadata.generation:
            self._written[ref] = (str(metadata.uid), int(metadata.generation))
        version = getattr(metadata, "resourceVersion", None)
        if version:
            self._own[ref] = str(version)
        return True, None

    # --- bookkeeping ------------------------------------------------------------

    def _index(self, ref: WorkloadRef, keys: frozenset[Key]) -> None:
        for key in self.following.get(ref, frozenset()) - keys:
            refs = self.watchers.get(key)
            if refs is not None:
                refs.discard(ref)
                if not refs:
                    del self.watchers[key]
        for key in keys:
            self.watchers[key].add(ref)
        if keys:
            self.following[ref] = keys
        else:
            self.following.pop(ref, None)

    async def _denied_sources(self, namespace: str, sources: set[str]) -> set[str]:
        """The source namespaces whose streams this workload's namespace may not read."""
        denied = set()
        for source in sources - {namespace}:
            cached = self._access.get((namespace, source))
            now = self.monotonic()
            if cached is None or cached[1] <= now:
                allowed = await self._review(namespace, source)
                cached = (allowed, now + ACCESS_TTL_SECONDS)
                self._access[(namespace, source)] = cached
            if not cached[0]:
                denied.add(source)
        return denied

    async def _review(self, namespace: str, source: str) -> bool:
        """May ``namespace``'s service accounts read ``source``'s streams? An API error
        raises (the workload is converged again with backoff): it is not a denial."""
        review = await self.kube.create(sar_for_namespace_service_accounts(namespace, source))
        return bool(review.status is not None and review.status.allowed)

    async def _get(self, ref: WorkloadRef) -> dict[str, Any] | None:
        return await get_or_none(self.kube, RESOURCES[ref.kind], ref.name, ref.namespace)

    def _first_time(self, ref: WorkloadRef, what: str) -> bool:
        seen = self._reported[ref]
        if what in seen:
            return False
        seen.add(what)
        return True

    def _clear(
        self, ref: WorkloadRef, reason: str, keep: set[str] | frozenset[str] = frozenset()
    ) -> None:
        """Forget what was said for ``reason`` (but ``keep``), so it is said again if it recurs."""
        seen = self._reported.get(ref)
        if seen:
            prefix = f"{reason}\0"
            seen.difference_update(
                {s for s in seen if s.startswith(prefix) and s[len(prefix) :] not in keep}
            )

    async def _report(
        self, body: Mapping[str, Any], kind: str, reason: str, message: str, value: str = ""
    ) -> None:
        """An Event once per distinct (reason, annotation value, message) on this workload."""
        ref = WorkloadRef.of(body)
        if not self._first_time(ref, f"{reason}\0{value}\0{message}"):
            return
        logger.warning("%s: %s: %s", ref, reason, message)
        await self._event(body, kind, reason, message)

    async def _event(self, body: Mapping[str, Any], kind: str, reason: str, message: str) -> None:
        await post_event(self.kube, body, kind, reason, message, self.clock())
