"""Tags that follow other tags: references, aliases (ImageStreamTag) and pins (ImageStreamImage).

A reference tag (``reference: true``) records its DockerImage as it is; an
alias takes the newest image of another stream's tag, a pin one image of
another stream's history. Aliases within the stream settle in one pass; an
alias of another namespace's stream is honoured only when the service accounts
of the alias's namespace may read that stream (OpenShift's image-puller model).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from lightkube import AsyncClient
from lightkube.resources.authorization_v1 import SubjectAccessReview

from headwater import access
from headwater.config import Config
from headwater.imports.history import Failed, Imported, Outcome, Recorded, TagResult, apply_results
from headwater.imports.model import (
    SpecTag,
    StreamRef,
    newest_item,
    source_stream,
    split_stream_image,
    split_stream_tag,
    status_tag,
    tag_condition,
)
from headwater.imports.plan import IMPORT_SUCCESS, due_time, effective_generation
from headwater.kube import get_or_none
from headwater.registry.reference import ReferenceError, parse_reference
from headwater.resources import ImageStream

ALIAS_DEPTH = 10
"""Passes over a stream's aliases in one reconcile: the longest same-stream chain settled."""


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


class References:
    """Results for a stream's reference, alias and pinned tags.

    ``bodies`` is the runner's cache of the streams it watches (read here,
    never written): a source stream in it costs no API read.
    """

    def __init__(
        self, kube: AsyncClient, config: Config, bodies: Mapping[StreamRef, Mapping[str, Any]]
    ) -> None:
        self.kube = kube
        self.config = config
        self.bodies = bodies

    async def follow(
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
                outcome = await self._outcome(ref, tag, status)
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
                interim, list(results.values()), datetime.now(UTC), self.config.tag_history_limit
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

    async def _outcome(
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
            body = await get_or_none(self.kube, ImageStream, source.name, source.namespace)
            if body is None:
                return None
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


def _find_image(status: Mapping[str, Any] | None, digest: str) -> Mapping[str, Any] | None:
    for entry in (status or {}).get("tags") or []:
        for item in entry.get("items") or []:
            if item.get("image") == digest:
                return dict(item)
    return None
