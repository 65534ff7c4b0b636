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
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

import httpx2 as httpx
from lightkube import AsyncClient
from lightkube.codecs import from_dict
from lightkube.core.exceptions import ApiError
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import Namespace, Pod, Secret, ServiceAccount
from lightkube.types import CascadeType, PatchType

from headwater import access
from headwater.builds import s2i, strategies, triggers
from headwater.builds.instantiate import (
    REQUEST_PREFIX,
    RequestError,
    StartRequest,
    pending_requests,
    render_build,
)
from headwater.builds.job import (
    PRIVILEGED_BUILDS_LABEL,
    JobSettings,
    RenderError,
    Resolved,
    render_job,
    wants_privileged,
)
from headwater.builds.model import (
    ANNOTATION_RUN_POLICY,
    API_VERSION,
    CANCELLED,
    COMPLETE,
    ERROR,
    FAILED,
    LABEL_BUILD,
    LABEL_BUILDCONFIG,
    LABEL_REQUEST,
    NEW,
    OPENSHIFT_BUILDCONFIG_LABEL,
    PENDING,
    RUNNING,
    SERIAL,
    TERMINAL,
    build_name,
    build_number,
    buildconfig_of,
    controlled_by,
    job_name,
    job_pod,
    label_value,
    phase_rank,
    summarize,
)
from headwater.builds.observe import Observation, observe
from headwater.builds.policy import builds_to_prune, plan_runs
from headwater.builds.webhooks import inline_secret_fields, inline_secret_warning
from headwater.conditions import get_condition, remove_condition, set_condition
from headwater.config import Config
from headwater.events import post_event
from headwater.imports.model import StreamRef, newest_item, split_stream_tag
from headwater.imports.runner import ImportRunner, plain_dict
from headwater.imports.tagfeed import TagFeed, TagImage
from headwater.metrics import BUILD_DURATION, BUILD_QUEUE_WAIT, BUILDS, BUILDS_FINISHED
from headwater.registry import client as registry_client
from headwater.registry.client import ImageConfig, RegistryClient, RegistryError
from headwater.registry.credentials import (
    PULL_SECRET_TYPES,
    Credentials,
    CredentialsError,
    credentials_for,
    parse_docker_config_secret,
)
from headwater.registry.reference import Reference, ReferenceError, parse_reference
from headwater.resources import Build, BuildConfig, ImageStream
from headwater.status import status_patch
from headwater.timefmt import format_time, parse_time

logger = logging.getLogger(__name__)

CANCEL_ANNOTATION = "build.headwater.dev/cancel-requested"
INLINE_WEBHOOK_SECRET = "InlineWebhookSecret"  # noqa: S105 - a condition type and Event reason
"""Condition type and Event reason: a webhook trigger's secret is written in the spec."""
OUTPUT_BEFORE_ANNOTATION = "build.headwater.dev/output-digest-before"
"""On Custom builds: what the output tag pointed at when the build started."""
RESYNC_SECONDS = 10.0
_STRATEGY_KEYS = {
    "Docker": "dockerStrategy",
    "Source": "sourceStrategy",
    "Custom": "customStrategy",
}


class Waiting(Exception):
    """The build cannot start yet; it stays New with this reason until the world changes."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _duration(start: str | None, end: str | None) -> tuple[str | None, float | None]:
    """A Go duration string ("1m5.25s") and seconds between two RFC 3339 times."""
    began, ended = parse_time(start), parse_time(end)
    if began is None or ended is None:
        return None, None
    seconds = max((ended - began).total_seconds(), 0.0)
    return go_duration(seconds), seconds


def go_duration(seconds: float) -> str:
    """Seconds as Go's time.Duration prints them: 1h15m0s, 1m5.25s, 3s."""
    hours, rest = divmod(round(seconds, 3), 3600)
    minutes, rest = divmod(rest, 60)
    text = f"{rest:.3f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{int(hours)}h{int(minutes)}m{text}"
    if minutes:
        return f"{int(minutes)}m{text}"
    return text


class BuildController:
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
                    # Asked for with an annotation: admission checked the strategy then.
                    created, number = await self._instantiate(body, request, siblings, lookup)
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
            await self._write_buildconfig_status(body, newest, image_status)
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

    def _lookup(self, namespace: str, stream: str, tag: str) -> TagImage | None:
        return self.tags.current(namespace, stream, tag) if self.tags is not None else None

    async def _readable_lookup(self, bc: Mapping[str, Any]) -> triggers.Lookup:
        """The tag lookup for this BuildConfig's triggers and ``from``: tags of other
        namespaces whose images its service account may not get are hidden.

        So an ImageChange trigger on another namespace's tag neither fires nor
        records that tag's image, and a ConfigChange build waits, until an admin
        there grants ``get`` on imagestreams/layers (retried on a timer).
        """
        metadata = bc.get("metadata") or {}
        ref = (str(metadata["namespace"]), str(metadata["name"]))
        namespace = ref[0]
        spec = bc.get("spec") or {}
        account = strategies.build_service_account(spec)
        wanted: dict[str, str] = {}
        source = triggers.strategy_from(spec)
        if source and (source.get("kind") or "DockerImage") == "ImageStreamTag":
            wanted[str(source.get("namespace") or namespace)] = "strategy from"
        for watched in triggers.watched_tags(bc):
            wanted.setdefault(watched.namespace, f"ImageChange trigger on {watched.name}")
        wanted.pop(namespace, None)
        denied: dict[str, strategies.ImageAccess] = {}
        for other, what in sorted(wanted.items()):
            needed = strategies.ImageAccess(other, "get", what)
            if not await self._may(namespace, account, needed):
                denied[other] = needed
        reported = self.denied.get(ref, frozenset())
        for other in sorted(set(denied) - reported):
            message = strategies.access_refusal(namespace, account, denied[other])
            logger.info("%s/%s: %s", namespace, ref[1], message)
            await post_event(
                self.kube, self._bc_ref(bc), "Warning", "Forbidden", message, self.clock()
            )
        if denied:
            self.denied[ref] = frozenset(denied)
        else:
            self.denied.pop(ref, None)
        hidden = frozenset(denied)

        def lookup(tag_namespace: str, stream: str, tag: str) -> TagImage | None:
            return None if tag_namespace in hidden else self._lookup(tag_namespace, stream, tag)

        return lookup

    async def _may(self, namespace: str, account: str, needed: strategies.ImageAccess) -> bool:
        """May the build service account ``namespace/account`` do ``needed``?"""
        try:
            return await access.allowed(
                self.kube,
                access.Requester.service_account(namespace, account),
                access.image_layers(needed.namespace, needed.verb),
            )
        except (ApiError, httpx.HTTPError) as exc:
            logger.warning("access review for %s/%s failed: %s", namespace, account, exc)
            return False

    async def _check_requester(self, bc: Mapping[str, Any]) -> None:
        """A triggered build: may the user recorded as the spec's author use its strategy?"""
        metadata = bc.get("metadata") or {}
        namespace = str(metadata["namespace"])
        subresource = strategies.strategy_subresource(bc.get("spec"))
        value = (metadata.get("annotations") or {}).get(strategies.REQUESTER_ANNOTATION)
        found = strategies.parse_requester(value)
        if found is None:
            if not self.config.admission_host:
                return  # no admission webhook: nothing is recorded, nothing is gated
            raise RequestError(
                f"Forbidden: no user is recorded as the author of this BuildConfig's spec"
                f" ({strategies.REQUESTER_ANNOTATION}), so a triggered build cannot be checked"
                f" for builds/{subresource}; re-apply the BuildConfig as a user allowed it"
            )
        user, groups = found
        try:
            allowed = await access.allowed(
                self.kube,
                access.Requester(user, groups),
                access.build_strategy(namespace, subresource),
            )
        except (ApiError, httpx.HTTPError) as exc:
            raise RequestError(
                f"the access review for builds/{subresource} failed: {exc}"
            ) from None
        if not allowed:
            raise RequestError(
                f"Forbidden: {user}, who last changed this BuildConfig's spec, may not create"
                f" builds/{subresource} in namespace {namespace};"
                f" {strategies.strategy_grant_hint(subresource)}"
            )

    def _index_triggers(self, bc: Mapping[str, Any]) -> None:
        metadata = bc.get("metadata") or {}
        ref = (str(metadata["namespace"]), str(metadata["name"]))
        keys = {w.key for w in triggers.watched_tags(bc)}
        for old in self.watching.get(ref, set()) - keys:
            self.watchers[old].discard(ref)
        for new in keys:
            self.watchers[new].add(ref)
        self.watching[ref] = keys

    def forget_buildconfig(self, namespace: str, name: str) -> None:
        ref = (namespace, name)
        for key in self.watching.pop(ref, set()):
            self.watchers[key].discard(ref)
        self.handled.pop(ref, None)
        self.denied.pop(ref, None)

    async def on_tag_moved(self, image: TagImage) -> None:
        """A watched tag moved: reconcile the BuildConfigs whose ImageChange triggers watch it."""
        for namespace, name in sorted(
            self.watchers.get((image.namespace, image.stream, image.tag), ())
        ):
            try:
                bc = plain_dict(await self.kube.get(BuildConfig, name, namespace=namespace))
            except ApiError as exc:
                if exc.status.code == 404:
                    self.forget_buildconfig(namespace, name)
                    continue
                raise
            await self.reconcile_buildconfig(bc)

    async def _trigger_failed(
        self, bc: Mapping[str, Any], request: StartRequest, exc: RequestError, when: datetime
    ) -> None:
        """The Warning Event of a triggered request the BuildConfig could not start."""
        cause = request.causes[0].get("message") if request.causes else request.id
        await post_event(
            self.kube, self._bc_ref(bc), "Warning", "BuildConfigTriggerFailed",
            f"{cause}: {exc}", when,
        )  # fmt: skip

    async def instantiate(self, namespace: str, name: str, request: StartRequest) -> str:
        """Start a build of BuildConfig ``namespace/name`` (for triggers); its name."""
        async with self.locks[(namespace, f"requests/{name}")]:
            bc = plain_dict(await self.kube.get(BuildConfig, name, namespace=namespace))
            lookup = await self._readable_lookup(bc)
            siblings = await self._builds_of(namespace, name)
            try:
                created, number = await self._instantiate(
                    bc, request, siblings, lookup, triggered=True
                )
            except RequestError as exc:
                await self._trigger_failed(bc, request, exc, self.clock())
                raise
            image_status = triggers.image_trigger_status(bc, lookup, [], True, self.clock())
            await self._write_buildconfig_status(bc, number, image_status)
            return created

    async def _instantiate(
        self,
        bc: Mapping[str, Any],
        request: StartRequest,
        siblings: list[dict[str, Any]],
        lookup: triggers.Lookup,
        *,
        triggered: bool = False,
    ) -> tuple[str, int]:
        """The Build ``request`` made (found, or created now) and its number.

        ``siblings`` (the BuildConfig's builds) gets the new Build appended, so a
        burst of requests is numbered without listing again. A ``triggered``
        request (ConfigChange, ImageChange, webhook) has no requester of its
        own: the user recorded as the spec's author must be allowed its strategy.
        """
        metadata = bc.get("metadata") or {}
        namespace, name = str(metadata["namespace"]), str(metadata["name"])
        for sibling in siblings:
            labels = (sibling.get("metadata") or {}).get("labels") or {}
            if labels.get(LABEL_REQUEST) == request.id:
                return str(sibling["metadata"]["name"]), build_number(sibling)
        if triggered:
            await self._check_requester(bc)
        source_spec = None
        if request.from_build:
            try:
                previous = await self.kube.get(Build, request.from_build, namespace=namespace)
            except ApiError as exc:
                if exc.status.code == 404:
                    raise RequestError(f"build {request.from_build} does not exist") from None
                raise
            source_spec = plain_dict(previous).get("spec") or {}
        if request.from_image is None and source_spec is None:
            request = self._pin_from(bc, request, lookup)
        last = int(((bc.get("status") or {}).get("lastVersion")) or 0)
        number = max([last, *(build_number(s) for s in siblings)]) + 1
        for _ in range(50):
            obj = render_build(bc, number, request, source_spec)
            try:
                await self.kube.create(from_dict(obj))
            except ApiError as exc:
                if exc.status.code == 409:
                    number += 1  # taken (by a build this process has not listed yet)
                    continue
                if exc.status.code == 422:
                    raise RequestError(exc.status.message or "the Build was rejected") from None
                raise
            siblings.append(obj)
            # Start it now rather than when its watch event comes back.
            self.kick(namespace, build_name(name, number))
            return build_name(name, number), number
        raise RuntimeError(f"{namespace}/{name}: no free build number after {number}")

    def _pin_from(
        self, bc: Mapping[str, Any], request: StartRequest, lookup: triggers.Lookup
    ) -> StartRequest:
        """The request with the strategy's ImageStreamTag ``from`` pinned to its current image."""
        source = triggers.strategy_from(bc.get("spec") or {})
        if not source or source.get("kind") != "ImageStreamTag":
            return request
        stream, tag = split_stream_tag(str(source.get("name") or ""))
        namespace = str(source.get("namespace") or (bc.get("metadata") or {}).get("namespace"))
        image = lookup(namespace, stream, tag or "latest")
        return dataclasses.replace(request, from_image=image.pull_spec) if image else request

    async def _write_buildconfig_status(
        self,
        bc: Mapping[str, Any],
        last_version: int,
        image_triggers: list[dict[str, Any]] | None = None,
    ) -> None:
        """observedGeneration, Ready, and lastVersion raised to at least ``last_version``.

        One write, under optimistic concurrency: lastVersion never goes down
        and a concurrent writer is never overwritten.
        """
        metadata = bc.get("metadata") or {}
        namespace, name = str(metadata["namespace"]), str(metadata["name"])
        body = bc
        for _ in range(10):
            status = body.get("status") or {}
            generation = int((body.get("metadata") or {}).get("generation") or 0)
            last = max(int(status.get("lastVersion") or 0), last_version)
            desired = dict(status)
            desired["observedGeneration"] = generation
            if last:
                desired["lastVersion"] = last
            if image_triggers is not None:
                if image_triggers:
                    desired["imageChangeTriggers"] = image_triggers
                else:
                    desired.pop("imageChangeTriggers", None)
            desired["conditions"] = set_condition(
                status.get("conditions"),
                "Ready",
                "True",
                "Ready",
                f"last build: {build_name(name, last)}" if last else "no build yet",
                generation,
                self.clock(),
            )
            inline = inline_secret_fields(body)
            desired["conditions"] = (
                set_condition(
                    desired["conditions"], INLINE_WEBHOOK_SECRET, "True", INLINE_WEBHOOK_SECRET,
                    inline_secret_warning(inline), generation, self.clock(),
                )
                if inline
                else remove_condition(desired["conditions"], INLINE_WEBHOOK_SECRET)
            )  # fmt: skip
            patch = status_patch(status, desired)
            if not patch:
                return
            before = get_condition(status.get("conditions"), INLINE_WEBHOOK_SECRET)
            warn = bool(inline) and before != get_condition(
                desired["conditions"], INLINE_WEBHOOK_SECRET
            )
            try:
                await self.kube.patch(
                    BuildConfig.Status,
                    name,
                    {
                        "metadata": {"resourceVersion": body["metadata"]["resourceVersion"]},
                        "status": patch,
                    },
                    namespace=namespace,
                    patch_type=PatchType.MERGE,
                )
            except ApiError as exc:
                if exc.status.code == 404:
                    return
                if exc.status.code != 409:
                    raise
            else:
                if warn:  # once per change of the condition, not on every reconcile
                    await post_event(
                        self.kube, self._bc_ref(body), "Warning", INLINE_WEBHOOK_SECRET,
                        inline_secret_warning(inline), self.clock(),
                    )  # fmt: skip
                return
            body = plain_dict(await self.kube.get(BuildConfig, name, namespace=namespace))
        raise RuntimeError(f"{namespace}/{name}: status not written after 10 conflicts")

    async def _patch_annotations(
        self, namespace: str, name: str, changes: Mapping[str, str | None]
    ) -> bool:
        """Set (or, for None, remove) BuildConfig annotations in one write."""
        try:
            await self.kube.patch(
                BuildConfig,
                name,
                {"metadata": {"annotations": dict(changes)}},
                namespace=namespace,
                patch_type=PatchType.MERGE,
            )
        except ApiError as exc:
            logger.warning("%s/%s: annotations not written: %s", namespace, name, exc)
            return False
        return True

    @staticmethod
    def _bc_ref(body: Mapping[str, Any]) -> dict[str, Any]:
        return {"apiVersion": API_VERSION, "kind": "BuildConfig", **body}

    # --- Builds -----------------------------------------------------------------

    def kick(self, namespace: str, name: str) -> None:
        """Reconcile a build soon, outside the caller's lock."""
        task = asyncio.get_running_loop().create_task(self.reconcile_build(namespace, name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def reconcile_build(self, namespace: str, name: str, bc: str | None = None) -> None:
        """Bring one Build (and its Job) a step closer to done, and report where it is.

        ``bc`` names the Build's BuildConfig when the caller knows it (saves a read).
        """
        started = time.perf_counter()
        if bc is None:
            try:
                bc = buildconfig_of(
                    plain_dict(await self.kube.get(Build, name, namespace=namespace))
                )
            except ApiError as exc:
                if exc.status.code == 404:
                    self.forget(namespace, name)
                    return
                raise
        async with self.locks[(namespace, bc or f"build/{name}")]:
            # Read under the lock: another reconcile may have changed it meanwhile.
            try:
                build = plain_dict(await self.kube.get(Build, name, namespace=namespace))
            except ApiError as exc:
                if exc.status.code == 404:
                    self.forget(namespace, name)
                    return
                raise
            await self._reconcile_locked(build, buildconfig_of(build))
        logger.debug(
            "reconciled build %s/%s in %.3fs", namespace, name, time.perf_counter() - started
        )

    def forget(self, namespace: str, name: str) -> None:
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

    async def _start(self, build: dict[str, Any], bc: str | None) -> None:
        metadata = build["metadata"]
        namespace, name = str(metadata["namespace"]), str(metadata["name"])
        if bc is not None:
            # The policy the build was queued under (recorded at instantiation, as
            # OpenShift does), so no read of the BuildConfig is needed here.
            policy = str((metadata.get("annotations") or {}).get(ANNOTATION_RUN_POLICY) or "")
            if not policy:
                policy = SERIAL
                with contextlib.suppress(ApiError):
                    config = await self.kube.get(BuildConfig, bc, namespace=namespace)
                    policy = str((plain_dict(config).get("spec") or {}).get("runPolicy") or SERIAL)
            siblings = [summarize(b) for b in await self._builds_of(namespace, bc)]
            plan = plan_runs(siblings, policy)
            for superseded in plan.cancel:
                if superseded == name:
                    await self._cancel(build, "superseded by a newer build (SerialLatestOnly)")
                    return
                self.kick(namespace, superseded)
            if name not in plan.start:
                waiting = plan.waiting.get(name, "waiting to be started by the run policy")
                await self._write_build_status(build, NEW, reason="", message=waiting)
                return
        try:
            resolved = await self._resolve(build)
            if wants_privileged(build, self.settings):
                allowed = await self._privileged_builds_allowed(namespace)
                resolved = dataclasses.replace(resolved, privileged_builds=allowed)
            job = render_job(build, resolved, self.settings)
        except Waiting as exc:
            self.waiting.add((namespace, name))
            await self._write_build_status(build, NEW, reason=exc.reason, message=exc.message)
            return
        except RenderError as exc:
            await self._finish(build, bc, Observation(FAILED, exc.reason, exc.message))
            return
        self.waiting.discard((namespace, name))
        strategy = str(((build.get("spec") or {}).get("strategy") or {}).get("type") or "")
        if strategy == "Custom" and resolved.output_image:
            await self._remember_output_before(build, resolved.output_image)
        try:
            await self.kube.create(from_dict(job))
        except ApiError as exc:
            if exc.status.code != 409:
                raise
        now = format_time(self.clock())
        created = str(metadata.get("creationTimestamp") or now)
        _, queued = _duration(created, now)
        if queued is not None:
            BUILD_QUEUE_WAIT.observe(queued)
        await self._write_build_status(
            build,
            PENDING,
            extra={
                "jobName": job_name(name),
                "outputDockerImageReference": resolved.output_image,
                "config": {"kind": "BuildConfig", "name": bc, "namespace": namespace}
                if bc
                else None,
            },
        )

    async def _follow(self, build: dict[str, Any], bc: str | None) -> None:
        metadata = build["metadata"]
        namespace, name = str(metadata["namespace"]), str(metadata["name"])
        job: dict[str, Any] | None = None
        try:
            job = plain_dict(await self.kube.get(Job, job_name(name), namespace=namespace))
        except ApiError as exc:
            if exc.status.code != 404:
                raise
        if job is not None and not controlled_by(job, "Build", metadata.get("uid")):
            # Someone else's Job of that name (made before ours): never read as this build.
            await self._finish(
                build,
                bc,
                Observation(
                    ERROR,
                    "BuildPodCreationFailed",
                    f"job {job_name(name)} exists but was not created for this build",
                ),
            )
            return
        pod = await self._pod_of(namespace, name, job) if job is not None else None
        strategy = str(((build.get("spec") or {}).get("strategy") or {}).get("type") or "Docker")
        seen = observe(job, pod, custom=strategy == "Custom")
        if seen.phase == COMPLETE:
            seen = await self._verify_output(build, seen)
        if seen.phase in TERMINAL:
            await self._finish(build, bc, seen)
            return
        await self._write_build_status(
            build,
            seen.phase,
            reason=seen.reason,
            message=seen.message,
            observation=seen,
        )

    async def _finish(self, build: dict[str, Any], bc: str | None, seen: Observation) -> None:
        """Record a terminal phase, move the output tag, then prune and start what waited."""
        metadata = build["metadata"]
        namespace, name = str(metadata["namespace"]), str(metadata["name"])
        if seen.phase == COMPLETE:
            recorded = await self._record_output(build, seen)
            if recorded is not None:
                seen = recorded
        wrote = await self._write_build_status(
            build, seen.phase, reason=seen.reason, message=seen.message, observation=seen
        )
        if not wrote:
            return
        self.waiting.discard((namespace, name))
        if bc is not None:
            await self._prune(namespace, bc)
            for sibling in await self._builds_of(namespace, bc):
                if summarize(sibling).phase == NEW:
                    self.kick(namespace, str(sibling["metadata"]["name"]))

    async def _cancel(self, build: dict[str, Any], message: str) -> None:
        metadata = build["metadata"]
        namespace, name = str(metadata["namespace"]), str(metadata["name"])
        with contextlib.suppress(ApiError):
            await self.kube.delete(
                Job, job_name(name), namespace=namespace, cascade=CascadeType.BACKGROUND
            )
        await self._finish(
            build, buildconfig_of(build), Observation(CANCELLED, "CancelledBuild", message)
        )

    # --- status -------------------------------------------------------------------

    async def _write_build_status(
        self,
        build: dict[str, Any],
        phase: str,
        *,
        reason: str = "",
        message: str = "",
        observation: Observation | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> bool:
        """Write the Build's status if it changed; False when it would go backwards."""
        metadata = build["metadata"]
        namespace, name = str(metadata["namespace"]), str(metadata["name"])
        status = build.get("status") or {}
        old_phase = str(status.get("phase") or NEW)
        if old_phase in TERMINAL or phase_rank(phase) < phase_rank(old_phase):
            return False
        now = self.clock()
        desired: dict[str, Any] = dict(status)
        desired.update({k: v for k, v in (extra or {}).items() if v is not None})
        desired["phase"] = phase
        desired["observedGeneration"] = int(metadata.get("generation") or 0)
        desired["reason"] = reason or None
        desired["message"] = message or None
        if observation is not None:
            if observation.start:
                desired["startTimestamp"] = observation.start
            if observation.revision:
                desired["revision"] = dict(observation.revision)
            if observation.stages:
                desired["stages"] = [dict(s) for s in observation.stages]
            if observation.log_snippet:
                desired["logSnippet"] = observation.log_snippet
            if observation.digest and phase == COMPLETE:
                desired["output"] = {"to": {"imageDigest": observation.digest}}
        if phase in TERMINAL:
            completion = (observation.completion if observation else None) or format_time(now)
            desired["completionTimestamp"] = completion
            desired.setdefault("startTimestamp", None)
            text, seconds = _duration(desired.get("startTimestamp"), completion)
            if text:
                desired["duration"] = text
            if seconds is not None:
                BUILD_DURATION.labels(phase=phase).observe(seconds)
        if phase == CANCELLED:
            desired["cancelled"] = True
        condition_status: dict[str, Literal["True", "False", "Unknown"]] = {
            COMPLETE: "True",
            FAILED: "False",
            ERROR: "False",
            CANCELLED: "False",
        }
        desired["conditions"] = set_condition(
            status.get("conditions"),
            "Succeeded",
            condition_status.get(phase, "Unknown"),
            reason or phase,
            message or f"build is {phase}",
            desired["observedGeneration"],
            now,
        )
        desired = {k: v for k, v in desired.items() if v is not None}
        patch = status_patch(status, desired)
        for key in status:
            if key not in desired:
                patch[key] = None
        if not patch:
            return True
        updated = await self._patch_status(Build, namespace, name, patch)
        if updated is None:
            return False
        build["status"] = updated.get("status") or desired
        self._count(namespace, name, phase)
        if old_phase != phase:
            await self._announce(build, old_phase, phase, reason, message, now)
        return True

    async def _announce(
        self,
        build: Mapping[str, Any],
        old: str,
        new: str,
        reason: str,
        message: str,
        now: datetime,
    ) -> None:
        ref = {"apiVersion": API_VERSION, "kind": "Build", **build}
        name = build["metadata"]["name"]
        if new == RUNNING or (new in TERMINAL and old in (NEW, PENDING) and new != CANCELLED):
            await post_event(self.kube, ref, "Normal", "BuildStarted", f"build {name} started", now)
        if new in TERMINAL:
            BUILDS_FINISHED.labels(phase=new, reason=reason or new).inc()
        if new == COMPLETE:
            await post_event(
                self.kube, ref, "Normal", "BuildCompleted", f"build {name} completed", now
            )
        elif new in (FAILED, ERROR):
            await post_event(
                self.kube,
                ref,
                "Warning",
                "BuildFailed",
                f"build {name} failed: {reason}: {message}",
                now,
            )
        elif new == CANCELLED:
            await post_event(
                self.kube, ref, "Normal", "BuildCancelled", f"build {name} cancelled", now
            )

    def _count(self, namespace: str, name: str, phase: str) -> None:
        old = self.phases.get((namespace, name))
        if old == phase:
            return
        if old is not None:
            BUILDS.labels(phase=old).dec()
        BUILDS.labels(phase=phase).inc()
        self.phases[(namespace, name)] = phase

    async def _patch_status(
        self, resource: Any, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        try:
            obj = await self.kube.patch(
                resource.Status,
                name,
                {"status": dict(patch)},
                namespace=namespace,
                patch_type=PatchType.MERGE,
            )
        except ApiError as exc:
            if exc.status.code == 404:
                return None
            raise
        return plain_dict(obj)

    # --- outputs, inputs, secrets -----------------------------------------------------

    async def _resolve(self, build: Mapping[str, Any]) -> Resolved:
        """Output target, base image, secrets and S2I Dockerfile; Waiting or RenderError."""
        metadata = build["metadata"]
        namespace = str(metadata["namespace"])
        spec = build.get("spec") or {}
        strategy = spec.get("strategy") or {}
        kind = str(strategy.get("type") or "Docker")
        block = strategy.get(_STRATEGY_KEYS.get(kind, "dockerStrategy")) or {}
        # Nothing of another namespace is read or written without a grant there.
        account = strategies.build_service_account(spec)
        for needed in strategies.cross_namespace_access(namespace, spec):
            if not await self._may(namespace, account, needed):
                raise Waiting("Forbidden", strategies.access_refusal(namespace, account, needed))
        output = await self._output_image(namespace, spec)
        base = await self._image_of(namespace, block.get("from"), "strategy from")
        push_secret = await self._push_secret(namespace, spec, output)
        pull_name = (block.get("pullSecret") or {}).get("name")
        if pull_name:
            await self._need_secret(namespace, str(pull_name), "MissingPullSecret")
        source_secret = ((spec.get("source") or {}).get("sourceSecret") or {}).get("name")
        if source_secret:
            await self._need_secret(namespace, str(source_secret), "MissingSourceSecret")
        resolved = Resolved(
            output_image=output,
            base_image=base,
            push_secret=push_secret,
            pull_secret=str(pull_name) if pull_name else None,
        )
        if kind != "Source":
            return resolved
        if base is None:
            raise RenderError("InvalidStrategy", "sourceStrategy.from names no builder image")
        image_config = await self._image_config(namespace, base, pull_name)
        incremental_from = None
        if block.get("incremental") and output:
            incremental_from = await self._current_output(namespace, spec)
        try:
            dockerfile = s2i.s2i_dockerfile(
                base,
                image_config,
                env=self._s2i_env(block),
                scripts_url=str(block["scripts"]) if block.get("scripts") else None,
                incremental_from=incremental_from,
            )
        except s2i.S2IError as exc:
            raise RenderError(exc.reason, exc.message) from None
        return Resolved(
            output_image=output,
            base_image=base,
            s2i_dockerfile=dockerfile,
            s2i_environment_script=s2i.s2i_environment_script(),
            push_secret=push_secret,
            pull_secret=resolved.pull_secret,
        )

    async def _privileged_builds_allowed(self, namespace: str) -> bool:
        """An admin labelled the namespace for the privileged (buildah) executor."""
        try:
            ns = await self.kube.get(Namespace, namespace)
        except ApiError as exc:
            if exc.status.code in (403, 404):
                return False
            raise
        labels = (ns.metadata.labels if ns.metadata else None) or {}
        return labels.get(PRIVILEGED_BUILDS_LABEL) == "true"

    def _s2i_env(self, block: Mapping[str, Any]) -> list[tuple[str, str]]:
        merged: dict[str, str] = dict(self.settings.defaults.env)
        for entry in block.get("env") or []:
            if isinstance(entry, Mapping) and entry.get("name"):
                merged[str(entry["name"])] = str(entry.get("value") or "")
        merged.update(self.settings.overrides.env)
        return list(merged.items())

    async def _output_image(self, namespace: str, spec: Mapping[str, Any]) -> str | None:
        to = (spec.get("output") or {}).get("to") or {}
        if not to:
            return None
        kind, name = str(to.get("kind") or "ImageStreamTag"), str(to.get("name") or "")
        if kind == "DockerImage":
            try:
                parse_reference(name)
            except ReferenceError as exc:
                raise RenderError("InvalidOutputReference", f"output {name!r}: {exc}") from None
            return name
        if kind != "ImageStreamTag":
            raise RenderError("InvalidOutputReference", f"output kind {kind} is not supported")
        if not self.config.registry:
            raise RenderError(
                "InvalidOutputReference",
                "output to an ImageStreamTag needs the operator's registry setting",
            )
        stream, tag = split_stream_tag(name)
        if not stream or not tag:
            raise RenderError("InvalidOutputReference", f"output {name!r} is not <stream>:<tag>")
        stream_namespace = str(to.get("namespace") or namespace)
        try:
            await self.kube.get(ImageStream, stream, namespace=stream_namespace)
        except ApiError as exc:
            if exc.status.code == 404:
                raise Waiting(
                    "InvalidOutputReference",
                    f"output image stream {stream_namespace}/{stream} does not exist",
                ) from None
            raise
        return f"{self.config.registry}/{stream_namespace}/{stream}:{tag}"

    async def _image_of(self, namespace: str, ref: object, what: str) -> str | None:
        """A DockerImage/ImageStreamTag/ImageStreamImage reference as a pull spec."""
        if not isinstance(ref, Mapping) or not ref.get("name"):
            return None
        kind, name = str(ref.get("kind") or "DockerImage"), str(ref["name"])
        if kind == "DockerImage":
            return name
        source_ns = str(ref.get("namespace") or namespace)
        try:
            if kind == "ImageStreamImage":
                stream, _, digest = name.partition("@")
                body = plain_dict(await self.kube.get(ImageStream, stream, namespace=source_ns))
                for entry in (body.get("status") or {}).get("tags") or []:
                    for item in entry.get("items") or []:
                        if item.get("image") == digest and item.get("dockerImageReference"):
                            return str(item["dockerImageReference"])
                raise Waiting("InvalidImageReference", f"{what}: {source_ns}/{name} not found")
            stream, tag = split_stream_tag(name)
            body = plain_dict(await self.kube.get(ImageStream, stream, namespace=source_ns))
        except ApiError as exc:
            if exc.status.code == 404:
                raise Waiting(
                    "InvalidImageReference", f"{what}: image stream {source_ns}/{name} not found"
                ) from None
            raise
        item = newest_item(body.get("status"), tag)
        if not item or not item.get("dockerImageReference"):
            raise Waiting("InvalidImageReference", f"{what}: {source_ns}/{name} has no image yet")
        return str(item["dockerImageReference"])

    async def _current_output(self, namespace: str, spec: Mapping[str, Any]) -> str | None:
        """The image the output tag points at now (the previous build, for incremental S2I)."""
        to = (spec.get("output") or {}).get("to") or {}
        if to.get("kind") != "ImageStreamTag":
            return None
        try:
            return await self._image_of(namespace, to, "output")
        except (Waiting, RenderError):
            return None

    async def _need_secret(self, namespace: str, name: str, reason: str) -> dict[str, Any]:
        try:
            return plain_dict(await self.kube.get(Secret, name, namespace=namespace))
        except ApiError as exc:
            if exc.status.code == 404:
                raise Waiting(reason, f"secret {namespace}/{name} does not exist") from None
            raise

    async def _push_secret(
        self, namespace: str, spec: Mapping[str, Any], output: str | None
    ) -> str | None:
        """output.pushSecret, else a docker-config secret of the build's service account
        that holds credentials for the output registry."""
        if output is None:
            return None
        named = ((spec.get("output") or {}).get("pushSecret") or {}).get("name")
        if named:
            await self._need_secret(namespace, str(named), "MissingPushSecret")
            return str(named)
        account = str(spec.get("serviceAccount") or "default")
        try:
            sa = await self.kube.get(ServiceAccount, account, namespace=namespace)
        except ApiError as exc:
            if exc.status.code == 404:
                raise Waiting(
                    "CannotRetrieveServiceAccount",
                    f"service account {namespace}/{account} does not exist",
                ) from None
            raise
        names = [s.name for s in sa.secrets or [] if s.name]
        names += [s.name for s in sa.imagePullSecrets or [] if s.name and s.name not in names]
        image = parse_reference(output)
        for name in names:
            try:
                secret = await self.kube.get(Secret, name, namespace=namespace)
            except ApiError:
                continue
            if secret.type not in PULL_SECRET_TYPES:
                continue
            try:
                keyring = parse_docker_config_secret(secret.type, dict(secret.data or {}))
            except CredentialsError:
                continue
            if credentials_for(image, [keyring]):
                return name
        return None

    async def _credentials(
        self, namespace: str, secret_name: str | None, image_ref: str
    ) -> Credentials | None:
        if not secret_name:
            return None
        try:
            secret = await self.kube.get(Secret, secret_name, namespace=namespace)
            keyring = parse_docker_config_secret(str(secret.type), dict(secret.data or {}))
        except (ApiError, CredentialsError):
            return None
        found = credentials_for(parse_reference(image_ref), [keyring])
        return found[0] if found else None

    async def _image_config(
        self, namespace: str, image_ref: str, pull_secret: object
    ) -> ImageConfig:
        """The builder image's config (labels, user) read from its registry."""
        try:
            image = parse_reference(image_ref)
        except ReferenceError as exc:
            raise RenderError("InvalidImageReference", f"builder image: {exc}") from None
        credentials = await self._credentials(
            namespace, str(pull_secret) if pull_secret else None, image_ref
        )
        try:
            resolved = await self._resolve_image(image, image.digest, credentials)
        except RegistryError as exc:
            raise Waiting("PullBuilderImageFailed", f"builder image {image_ref}: {exc}") from None
        if resolved.image is None or resolved.image.config is None:
            raise RenderError(
                "PullBuilderImageFailed", f"builder image {image_ref} has no image config"
            )
        return resolved.image.config

    async def _resolve_image(
        self,
        image: Reference,
        reference: str | None,
        credentials: Credentials | None,
        *,
        preserve_original: bool = False,
    ) -> registry_client.Resolved:
        """``image`` at ``reference`` (a digest), else at its tag, else ``latest``."""
        return await self.registry.resolve(
            image.api_host,
            image.path,
            reference or image.tag or "latest",
            credentials=credentials,
            insecure=image.domain in self.settings.insecure_registries,
            preserve_original=preserve_original,
        )

    async def _resolve_output(
        self, build: Mapping[str, Any], output: str, reference: str | None = None
    ) -> registry_client.Resolved:
        """The build's output image (at ``reference``, else its tag) as the registry has it,
        read with the secret the build pushes with: output.pushSecret or the service account's."""
        namespace = str(build["metadata"]["namespace"])
        image = parse_reference(output)
        try:
            push_secret = await self._push_secret(namespace, build.get("spec") or {}, output)
        except Waiting:
            push_secret = None
        credentials = await self._credentials(namespace, push_secret, output)
        return await self._resolve_image(image, reference, credentials, preserve_original=True)

    async def _remember_output_before(self, build: Mapping[str, Any], output: str) -> None:
        """Note the output tag's digest before a Custom build runs ("" when it has none)."""
        annotations = build["metadata"].get("annotations") or {}
        if OUTPUT_BEFORE_ANNOTATION in annotations:
            return
        namespace = str(build["metadata"]["namespace"])
        try:
            digest = (await self._resolve_output(build, output)).digest
        except RegistryError:
            digest = ""
        await self.kube.patch(
            Build,
            str(build["metadata"]["name"]),
            {"metadata": {"annotations": {OUTPUT_BEFORE_ANNOTATION: digest}}},
            namespace=namespace,
            patch_type=PatchType.MERGE,
        )
        annotations[OUTPUT_BEFORE_ANNOTATION] = digest
        build["metadata"]["annotations"] = annotations

    async def _verify_output(self, build: Mapping[str, Any], seen: Observation) -> Observation:
        """Complete only if the registry has the manifest the build says it pushed."""
        status = build.get("status") or {}
        output = status.get("outputDockerImageReference")
        if not output:
            return seen
        try:
            resolved = await self._resolve_output(build, str(output), seen.digest)
        except RegistryError as exc:
            return Observation(
                FAILED,
                "PushImageToRegistryFailed",
                f"the pushed image could not be verified in the registry: {exc}",
                start=seen.start,
                completion=seen.completion,
                revision=seen.revision,
                stages=seen.stages,
            )
        before = (build["metadata"].get("annotations") or {}).get(OUTPUT_BEFORE_ANNOTATION)
        if not seen.digest and before is not None and resolved.digest == before:
            # A Custom builder reports nothing: the tag must have moved.
            return Observation(
                FAILED,
                "PushImageToRegistryFailed",
                f"the builder exited 0 but {output} still points at the image it had before",
                start=seen.start,
                completion=seen.completion,
                revision=seen.revision,
                stages=seen.stages,
            )
        return Observation(
            COMPLETE,
            start=seen.start,
            completion=seen.completion,
            digest=resolved.digest,
            revision=seen.revision,
            stages=seen.stages,
        )

    async def _record_output(
        self, build: Mapping[str, Any], seen: Observation
    ) -> Observation | None:
        """Move the output ImageStreamTag to the pushed digest now, not at the next import."""
        spec = build.get("spec") or {}
        to = (spec.get("output") or {}).get("to") or {}
        if to.get("kind") != "ImageStreamTag" or not seen.digest or self.imports is None:
            return None
        namespace = str(build["metadata"]["namespace"])
        stream, tag = split_stream_tag(str(to["name"]))
        stream_namespace = str(to.get("namespace") or namespace)
        if stream_namespace != namespace:
            # Checked again: a grant revoked while the build ran stops the tag moving.
            account = strategies.build_service_account(spec)
            needed = strategies.ImageAccess(stream_namespace, "update", "output.to")
            if not await self._may(namespace, account, needed):
                return Observation(
                    FAILED,
                    "Forbidden",
                    strategies.access_refusal(namespace, account, needed),
                    start=seen.start,
                    completion=seen.completion,
                    revision=seen.revision,
                    stages=seen.stages,
                )
        repository = f"{self.config.registry}/{stream_namespace}/{stream}"
        recorded = await self.imports.record_image(
            StreamRef(stream_namespace, stream),
            tag,
            seen.digest,
            f"{repository}@{seen.digest}",
            f"pushed by build {namespace}/{build['metadata']['name']}",
        )
        if recorded:
            return None
        return Observation(
            FAILED,
            "InvalidOutputReference",
            f"the image was pushed but image stream {stream_namespace}/{stream} is gone",
            start=seen.start,
            completion=seen.completion,
            digest=seen.digest,
            revision=seen.revision,
            stages=seen.stages,
        )

    # --- listing and pruning --------------------------------------------------------------

    async def _builds_of(self, namespace: str, bc: str) -> list[dict[str, Any]]:
        async def listed(label: str) -> list[dict[str, Any]]:
            return [
                plain_dict(b)
                async for b in self.kube.list(
                    Build, namespace=namespace, labels={label: label_value(bc)}
                )
            ]

        # Headwater's label, and OpenShift's for Builds migrated from OpenShift.
        found: dict[str, dict[str, Any]] = {}
        for batch in await asyncio.gather(
            listed(LABEL_BUILDCONFIG), listed(OPENSHIFT_BUILDCONFIG_LABEL)
        ):
            for body in batch:
                found[str(body["metadata"]["name"])] = body
        # A shortened label value could be shared by two long names.
        return [b for b in found.values() if buildconfig_of(b) == bc]

    async def _pod_of(
        self, namespace: str, name: str, job: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """The build's pod: one its Job controls. A pod that merely carries the build's
        labels (anyone who may create pods in the namespace can make one) is ignored."""
        pods = [
            plain_dict(p)
            async for p in self.kube.list(
                Pod, namespace=namespace, labels={LABEL_BUILD: label_value(name)}
            )
        ]
        return job_pod(pods, job)

    async def _prune(self, namespace: str, bc: str) -> None:
        try:
            config = plain_dict(await self.kube.get(BuildConfig, bc, namespace=namespace))
        except ApiError:
            return
        spec = config.get("spec") or {}
        summaries = [summarize(b) for b in await self._builds_of(namespace, bc)]
        doomed = builds_to_prune(
            summaries,
            spec.get("successfulBuildsHistoryLimit"),
            spec.get("failedBuildsHistoryLimit"),
        )
        for name in doomed:
            with contextlib.suppress(ApiError):
                await self.kube.delete(
                    Build, name, namespace=namespace, cascade=CascadeType.BACKGROUND
                )
            self.forget(namespace, name)

    # --- periodic work -----------------------------------------------------------------

    async def resync(self) -> None:
        """Retry builds held New by missing inputs, every few seconds, until cancelled."""
        while True:
            await asyncio.sleep(RESYNC_SECONDS)
            for namespace, name in sorted(self.waiting):
                try:
                    await self.reconcile_build(namespace, name)
                except Exception:
                    logger.exception("resync of build %s/%s failed", namespace, name)
            # BuildConfigs whose triggers wait for a grant in another namespace.
            for namespace, name in sorted(self.denied):
                try:
                    bc = plain_dict(await self.kube.get(BuildConfig, name, namespace=namespace))
                    await self.reconcile_buildconfig(bc)
                except ApiError as exc:
                    if exc.status.code == 404:
                        self.forget_buildconfig(namespace, name)
                        continue
                    logger.warning("resync of buildconfig %s/%s failed: %s", namespace, name, exc)
                except Exception:
                    logger.exception("resync of buildconfig %s/%s failed", namespace, name)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def start_request_key(request_id: str) -> str:
    return f"{REQUEST_PREFIX}{request_id}"
