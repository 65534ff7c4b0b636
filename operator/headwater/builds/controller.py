"""Running builds: start requests, run policies, Jobs, status, output tags, pruning.

Level-based like the rest of the operator: every entry point re-reads what
it acts on and converges, so a restart, a missed event or a second call
changes nothing that is already right. What makes it safe to kill at any
moment:

- a Build's number is claimed by creating ``<bc>-<n>`` (names are unique),
  and a start request's id is a label on the Build it made, so replaying a
  request finds its Build instead of making another;
- a Build's Job has a fixed name, so creating it twice fails the second time;
- status only moves forward (New → Pending → Running → terminal).

All work on one BuildConfig's builds is serialised by a lock, so a run
policy decision never races another.

This module holds the entry points (what kopf, the tag feed, webhooks and
timers call) and the state they share; the work is in
:mod:`~headwater.builds.buildconfigs` (requests, triggers, BuildConfig status),
:mod:`~headwater.builds.runs` (a Build's Job, progress and status),
:mod:`~headwater.builds.outputs` (images and secrets in, the pushed image out)
and :mod:`~headwater.builds.prune` (a BuildConfig's builds, and its history limits).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Hashable, Mapping
from datetime import UTC, datetime
from typing import Any

from lightkube import AsyncClient

from headwater.builds import triggers
from headwater.builds.attest import Attester
from headwater.builds.attestations import Attestations
from headwater.builds.buildconfigs import BuildConfigReconcile
from headwater.builds.instantiate import REQUEST_PREFIX, RequestError, pending_requests
from headwater.builds.job import JobSettings
from headwater.builds.model import NEW, TERMINAL, buildconfig_of
from headwater.builds.outputs import Outputs
from headwater.builds.runs import BuildRuns
from headwater.config import Config
from headwater.events import post_event
from headwater.imports.runner import ImportRunner
from headwater.imports.tagfeed import TagFeed, TagImage
from headwater.kube import get_or_none
from headwater.metrics import BUILDS
from headwater.registry.client import RegistryClient
from headwater.resources import Build, BuildConfig
from headwater.workqueue import ObjectRef, WorkQueue

logger = logging.getLogger(__name__)

CANCEL_ANNOTATION = "build.headwater.dev/cancel-requested"
RESYNC_SECONDS = 10.0


class BuildController(BuildConfigReconcile, BuildRuns):
    """Turns start requests into Builds and Builds into Jobs, and reports on them."""

    def __init__(
        self,
        kube: AsyncClient,
        registry: RegistryClient,
        config: Config,
        settings: JobSettings,
        imports: ImportRunner | None = None,
        clock: Any = None,
        tags: TagFeed | None = None,
    ) -> None:
        self.kube = kube
        self.registry = registry
        self.config = config
        self.settings = settings
        self.imports = imports
        self.outputs = Outputs(kube, registry, config, settings, imports)
        self.attester = Attester(kube, registry, config, self.outputs)
        self.attestations = Attestations(kube, registry, settings, self.outputs, self.attester)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.locks: defaultdict[tuple[str, str], asyncio.Lock] = defaultdict(asyncio.Lock)
        self.waiting: set[tuple[str, str]] = set()
        """Builds held New by something outside (a missing secret or stream), retried on a timer."""
        self.phases: dict[tuple[str, str], str] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.tags = tags
        """Where ImageChange triggers and strategy ``from`` tags are looked up."""
        self.watchers: defaultdict[tuple[str, str, str], set[tuple[str, str]]] = defaultdict(set)
        """ImageStreamTag -> the BuildConfigs whose ImageChange triggers watch it."""
        self.watching: dict[tuple[str, str], set[tuple[str, str, str]]] = {}
        self.handled: dict[tuple[str, str], set[str]] = {}
        """Request annotations this process removed, per BuildConfig: the watch
        event that still shows them (it was sent before the removal) is skipped."""
        self.denied: dict[tuple[str, str], frozenset[str]] = {}
        """BuildConfigs whose service account may not read the images of these other
        namespaces (their tags are hidden from its triggers), retried on a timer."""
        self.buildconfigs: WorkQueue[ObjectRef] = WorkQueue(
            "buildconfigs", self.reconcile_buildconfig_ref, kind="BuildConfig"
        )
        self.builds: WorkQueue[ObjectRef] = WorkQueue(
            "builds", self.reconcile_build_ref, kind="Build"
        )
        self._bc_bodies: dict[ObjectRef, Mapping[str, Any]] = {}
        """BuildConfig watch events not yet reconciled (the newest per BuildConfig)."""
        self._bc_of: dict[ObjectRef, str] = {}
        """Build -> its BuildConfig's name, as its events showed (saves a read)."""
        self.own_writes: dict[tuple[str, str], str] = {}
        """Build -> the resourceVersion our last status write got back: its watch event
        (ours) queues nothing."""
        self._children: dict[tuple[str, str], dict[str, Hashable]] = {}
        """Build -> its Job's and pod's uid -> what the controller read of its last
        event. Dropped with the Build (:meth:`forget`), even when a child's DELETED
        event was missed."""

    # --- BuildConfigs ---------------------------------------------------------

    async def reconcile_buildconfig(self, body: Mapping[str, Any]) -> None:
        """Honour start requests and triggers; keep the BuildConfig's status current.

        Crash-safe order: Builds first (each carries its request id), then
        status (``lastVersion``, ImageChange triggers), then the request
        annotations go; a replay after a crash at any point finds the Builds
        already made.
        """
        metadata = body.get("metadata") or {}
        namespace, name = str(metadata["namespace"]), str(metadata["name"])
        if metadata.get("deletionTimestamp"):
            return
        self._index_triggers(body)
        lookup = await self._readable_lookup(body)
        async with self.locks[(namespace, f"requests/{name}")]:
            handled = self.handled.get((namespace, name), set())
            annotations = {
                k: v for k, v in (metadata.get("annotations") or {}).items() if k not in handled
            }
            # What this body no longer shows is gone for good: forget it.
            self.handled[(namespace, name)] = handled & set(metadata.get("annotations") or {})
            good, bad = pending_requests(annotations)
            now = self.clock()
            done: list[str] = []
            for key, error in bad:
                await post_event(
                    self.kube, self._bc_ref(body), "Warning", "InvalidBuildRequest",
                    f"{key}: {error}", now,
                )  # fmt: skip
                done.append(key)
            config_change = triggers.config_change_request(body, lookup)
            # A ConfigChange build uses the tags' current images, and records them
            # as triggered: the ImageChange triggers have nothing left to start.
            image_changes = (
                [] if config_change is not None else triggers.image_change_requests(body, lookup)
            )
            implied = [r for r, _, _ in image_changes]
            if config_change is not None:
                implied.insert(0, config_change)
            siblings = await self._builds_of(namespace, name) if good or implied else []
            newest = 0
            for request in implied:
                try:
                    created, number = await self._instantiate(
                        body, request, siblings, lookup, triggered=True
                    )
                except RequestError as exc:
                    await self._trigger_failed(body, request, exc, now)
                    continue
                newest = max(newest, number)
                logger.info("%s/%s: trigger %s is build %s", namespace, name, request.id, created)
            for key, request in good:
                try:
                    # Asked for with an annotation: admission checked the strategy then
                    # (of the writer); a triggered request is checked as the spec's author too.
                    created, number = await self._instantiate(
                        body, request, siblings, lookup, triggered=request.triggered
                    )
                except RequestError as exc:
                    await post_event(
                        self.kube, self._bc_ref(body), "Warning", "BuildConfigInstantiateFailed",
                        f"request {request.id}: {exc}", now,
                    )  # fmt: skip
                else:
                    newest = max(newest, number)
                    logger.info("%s/%s: request %s is build %s", namespace, name, key, created)
                done.append(key)
            image_status = triggers.image_trigger_status(
                body, lookup, [(w, i) for _, w, i in image_changes], newest > 0, now
            )
            await self._write_buildconfig_status(
                body, newest, image_status, triggers.missing_images(body, lookup)
            )
            changes: dict[str, str | None] = dict.fromkeys(done)
            generation = str(metadata.get("generation") or 0)
            recorded = (metadata.get("annotations") or {}).get(
                triggers.CONFIG_GENERATION_ANNOTATION
            )
            waiting = triggers.config_change_waits(body, lookup)
            if (
                triggers.has_config_change(body)
                and recorded != generation
                and (newest or (config_change is None and not waiting))
            ):
                # The generation the builds are current with: one that was built, or
                # (without the opt-in) every generation, so that opting in later
                # does not rebuild for edits made before.
                changes[triggers.CONFIG_GENERATION_ANNOTATION] = generation
            if changes and await self._patch_annotations(namespace, name, changes):
                self.handled.setdefault((namespace, name), set()).update(done)

    def forget_buildconfig(self, namespace: str, name: str) -> None:
        ref = (namespace, name)
        for key in self.watching.pop(ref, set()):
            self.watchers[key].discard(ref)
        self.handled.pop(ref, None)
        self.denied.pop(ref, None)

    async def on_tag_moved(self, image: TagImage) -> None:
        """A watched tag moved: queue the BuildConfigs whose ImageChange triggers watch it."""
        for namespace, name in sorted(
            self.watchers.get((image.namespace, image.stream, image.tag), ())
        ):
            self._add(self.buildconfigs, ObjectRef(namespace, name))

    def observe_buildconfig(self, body: Mapping[str, Any]) -> None:
        """A BuildConfig's watch event: queue it, with this body to start from."""
        metadata = body.get("metadata") or {}
        ref = ObjectRef(str(metadata.get("namespace")), str(metadata.get("name")))
        self._bc_bodies[ref] = body
        self._add(self.buildconfigs, ref)

    def deleted_buildconfig(self, namespace: str, name: str) -> None:
        ref = ObjectRef(namespace, name)
        self._bc_bodies.pop(ref, None)
        self.buildconfigs.cancel(ref)
        self.forget_buildconfig(namespace, name)

    async def reconcile_buildconfig_ref(self, ref: ObjectRef) -> None:
        """The BuildConfig queue's worker: from its watch event's body, else read afresh
        (a tag move, a retry, a resync). Raising requeues it with backoff."""
        body = self._bc_bodies.pop(ref, None)
        if body is None:
            body = await get_or_none(self.kube, BuildConfig, ref.name, ref.namespace)
            if body is None:
                self.forget_buildconfig(ref.namespace, ref.name)
                return
        await self.reconcile_buildconfig(body)

    @staticmethod
    def _add(queue: WorkQueue[ObjectRef], ref: ObjectRef) -> None:
        queue.start()
        queue.add(ref)

    # --- Builds -----------------------------------------------------------------

    def kick(self, namespace: str, name: str) -> None:
        """Reconcile a build soon, outside the caller's lock."""
        self._add(self.builds, ObjectRef(namespace, name))

    def observe_build(
        self, namespace: str, name: str, bc: str | None, version: str | None = None
    ) -> None:
        """A change to a Build (at ``version``), its Job or its pod: queue the Build."""
        if version is not None and self.own_writes.get((namespace, name)) == version:
            return  # our own status write coming back
        ref = ObjectRef(namespace, name)
        if bc:
            self._bc_of[ref] = bc
        self._add(self.builds, ref)

    def child_changed(
        self, namespace: str, build: str, uid: str, seen: Hashable, *, deleted: bool = False
    ) -> bool:
        """Whether an event of ``build``'s Job or pod shows something the controller
        reads (:func:`~headwater.builds.observe.child_state`) that the last one did not."""
        key = (namespace, build)
        children = self._children.get(key)
        if deleted:
            if children is not None:
                children.pop(uid, None)
                if not children:
                    del self._children[key]
            return True
        if children is not None and children.get(uid) == seen:
            return False
        self._children.setdefault(key, {})[uid] = seen
        return True

    async def reconcile_build_ref(self, ref: ObjectRef) -> None:
        """The Build queue's worker. Raising requeues the Build with backoff."""
        await self.reconcile_build(ref.namespace, ref.name, self._bc_of.get(ref))

    async def reconcile_build(self, namespace: str, name: str, bc: str | None = None) -> None:
        """Bring one Build (and its Job) a step closer to done, and report where it is.

        ``bc`` names the Build's BuildConfig when the caller knows it (saves a read).
        """
        started = time.perf_counter()
        if bc is None:
            found = await get_or_none(self.kube, Build, name, namespace)
            if found is None:
                self.forget(namespace, name)
                return
            bc = buildconfig_of(found)
        async with self.locks[(namespace, bc or f"build/{name}")]:
            # Read under the lock: another reconcile may have changed it meanwhile.
            build = await get_or_none(self.kube, Build, name, namespace)
            if build is None:
                self.forget(namespace, name)
                return
            await self._reconcile_locked(build, buildconfig_of(build))
        logger.debug(
            "reconciled build %s/%s in %.3fs", namespace, name, time.perf_counter() - started
        )

    def forget(self, namespace: str, name: str) -> None:
        ref = ObjectRef(namespace, name)
        self.own_writes.pop((namespace, name), None)
        self._bc_of.pop(ref, None)
        self._children.pop((namespace, name), None)
        self.builds.cancel(ref)
        self.waiting.discard((namespace, name))
        phase = self.phases.pop((namespace, name), None)
        if phase is not None:
            BUILDS.labels(phase=phase).dec()

    async def _reconcile_locked(self, build: dict[str, Any], bc: str | None) -> None:
        metadata = build["metadata"]
        namespace, name = str(metadata["namespace"]), str(metadata["name"])
        status = build.get("status") or {}
        phase = str(status.get("phase") or NEW)
        self._count(namespace, name, phase)
        if metadata.get("deletionTimestamp"):
            return
        if phase in TERMINAL:
            self.waiting.discard((namespace, name))
            return
        annotations = metadata.get("annotations") or {}
        if status.get("cancelled") or annotations.get(CANCEL_ANNOTATION) == "true":
            await self._cancel(build, "the build was cancelled")
            return
        if not status.get("jobName"):
            await self._start(build, bc)
            return
        await self._follow(build, bc)

    # --- periodic work -----------------------------------------------------------------

    async def resync(self) -> None:
        """Queue builds held New by missing inputs, and BuildConfigs whose triggers wait
        for a grant in another namespace, every few seconds, until cancelled."""
        while True:
            await asyncio.sleep(RESYNC_SECONDS)
            for namespace, name in sorted(self.waiting):
                self._add(self.builds, ObjectRef(namespace, name))
            for namespace, name in sorted(self.denied):
                self._add(self.buildconfigs, ObjectRef(namespace, name))

    async def settle(self) -> None:
        """Wait until nothing queued is due now or running (tests, benchmarks)."""
        for queue in (self.buildconfigs, self.builds, self.buildconfigs):
            if queue.started:
                await queue.settle()

    async def stop(self) -> None:
        await self.buildconfigs.stop()
        await self.builds.stop()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def start_request_key(request_id: str) -> str:
    return f"{REQUEST_PREFIX}{request_id}"
