"""BuildConfigs: start requests, triggers, and the BuildConfig's own status.

The BuildConfig half of :class:`~headwater.builds.controller.BuildController`
(:class:`BuildConfigReconcile`): a start request or a trigger becomes a Build
named ``<bc>-<n>`` (:meth:`BuildConfigReconcile.instantiate`), whose number is
claimed by creating it and whose request id is a label, so a replay finds it;
``status.lastVersion`` only goes up. ImageChange triggers and strategy ``from``
tags are looked up in the tag feed, hiding tags of namespaces the build's
service account may not read.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from lightkube import AsyncClient
from lightkube.codecs import from_dict
from lightkube.core.exceptions import ApiError
from lightkube.types import PatchType

from headwater import access
from headwater.builds import strategies, triggers
from headwater.builds.instantiate import RequestError, StartRequest, render_build
from headwater.builds.model import API_VERSION, LABEL_REQUEST, build_name, build_number
from headwater.builds.prune import builds_of
from headwater.builds.webhooks import inline_secret_fields, inline_secret_warning
from headwater.conditions import (
    ConditionStatus,
    get_condition,
    remove_condition,
    set_condition,
)
from headwater.config import Config
from headwater.events import post_event
from headwater.imports.model import split_stream_tag
from headwater.imports.tagfeed import TagFeed, TagImage
from headwater.kube import (
    API_ERRORS,
    Failure,
    classify,
    create_or_conflict,
    get_or_none,
    is_conflict,
    patch_status,
    plain_dict,
)
from headwater.resources import Build, BuildConfig
from headwater.status import status_patch

logger = logging.getLogger(__name__)

INLINE_WEBHOOK_SECRET = "InlineWebhookSecret"  # noqa: S105 - a condition type and Event reason
"""Condition type and Event reason: a webhook trigger's secret is written in the spec."""


async def may(
    kube: AsyncClient, namespace: str, account: str, needed: strategies.ImageAccess
) -> bool:
    """May the build service account ``namespace/account`` do ``needed``? (No, when unsure.)"""
    try:
        return await access.allowed(
            kube,
            access.Requester.service_account(namespace, account),
            access.image_layers(needed.namespace, needed.verb),
        )
    except API_ERRORS as exc:
        logger.warning("access review for %s/%s failed: %s", namespace, account, exc)
        return False


READY = "Ready"
WAITING_FOR_IMAGE = "WaitingForImage"


def ready_condition(
    name: str, last_version: int, missing: Sequence[str]
) -> tuple[ConditionStatus, str, str]:
    """The BuildConfig's Ready condition (status, reason, message).

    False while an ImageChange tag (by default the builder image) has no image:
    no build can start, and a GitOps health check (kstatus: Ready with
    ``observedGeneration`` current) must not count the BuildConfig as reconciled.
    """
    if missing:
        tags = ", ".join(f"ImageStreamTag {tag}" for tag in missing)
        return "False", WAITING_FOR_IMAGE, f"no image yet for {tags}: builds wait for it"
    return (
        "True",
        READY,
        f"last build: {build_name(name, last_version)}" if last_version else "no build yet",
    )


class BuildConfigReconcile:
    """What :class:`~headwater.builds.controller.BuildController` does for BuildConfigs
    besides its entry points: lookups, access checks, instantiation, status."""

    # Provided by the controller:
    kube: AsyncClient
    config: Config
    clock: Callable[[], datetime]
    tags: TagFeed | None
    locks: defaultdict[tuple[str, str], asyncio.Lock]
    watchers: defaultdict[tuple[str, str, str], set[tuple[str, str]]]
    watching: dict[tuple[str, str], set[tuple[str, str, str]]]
    denied: dict[tuple[str, str], frozenset[str]]
    kick: Callable[[str, str], None]

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
            if not await may(self.kube, namespace, account, needed):
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
        except API_ERRORS as exc:
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
            missing = triggers.missing_images(bc, lookup)
            await self._write_buildconfig_status(bc, number, image_status, missing)
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
            previous = await get_or_none(self.kube, Build, request.from_build, namespace)
            if previous is None:
                raise RequestError(f"build {request.from_build} does not exist")
            source_spec = previous.get("spec") or {}
        if request.from_image is None and source_spec is None:
            request = self._pin_from(bc, request, lookup)
        last = int(((bc.get("status") or {}).get("lastVersion")) or 0)
        number = max([last, *(build_number(s) for s in siblings)]) + 1
        for _ in range(50):
            obj = render_build(bc, number, request, source_spec)
            try:
                created = await create_or_conflict(self.kube, from_dict(obj))
            except ApiError as exc:
                if classify(exc) is Failure.INVALID:
                    raise RequestError(exc.status.message or "the Build was rejected") from None
                raise
            if created is None:
                number += 1  # taken (by a build this process has not listed yet)
                continue
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
        missing: Sequence[str] = (),
    ) -> None:
        """observedGeneration, Ready, and lastVersion raised to at least ``last_version``.

        ``missing`` are the ImageChange tags with no image yet (Ready is then
        False: see :func:`ready_condition`). One write, under optimistic
        concurrency: lastVersion never goes down and a concurrent writer is
        never overwritten.
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
                READY,
                *ready_condition(name, last, missing),
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
                written = await patch_status(
                    self.kube,
                    BuildConfig.Status,
                    name,
                    namespace,
                    patch,
                    resource_version=body["metadata"]["resourceVersion"],
                )
            except ApiError as exc:
                if not is_conflict(exc):
                    raise
            else:
                if written is None:
                    return  # the BuildConfig is gone
                if warn:  # once per change of the condition, not on every reconcile
                    await post_event(
                        self.kube, self._bc_ref(body), "Warning", INLINE_WEBHOOK_SECRET,
                        inline_secret_warning(inline), self.clock(),
                    )  # fmt: skip
                return
            fresh = await get_or_none(self.kube, BuildConfig, name, namespace)
            if fresh is None:
                return
            body = fresh
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

    async def _builds_of(self, namespace: str, bc: str) -> list[dict[str, Any]]:
        return await builds_of(self.kube, namespace, bc)
