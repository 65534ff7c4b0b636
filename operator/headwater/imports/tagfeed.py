"""Which image each ImageStream tag points at, and who wants to know when it moves.

Every ImageStream the operator sees (watch events, and its own status writes
straight after they succeed) passes through :meth:`TagFeed.observe`; the feed
compares each tag's newest history item with what it saw before and queues
a delivery to each subscriber for the tags that moved, retried until taken.
The first sight of a tag counts as a move, so subscribers converge after a
restart (they compare with their own record — an ImageChange trigger's
lastTriggeredImageID, a container's image — and do nothing when it already
matches).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from headwater.imports.model import spec_tags
from headwater.imports.verification import Policy, PolicyError, tag_policies
from headwater.kube import resource_version
from headwater.workqueue import WorkQueue

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TagImage:
    """An ImageStream tag and the image it points at now."""

    namespace: str
    stream: str
    tag: str
    image: str
    """The image digest (``sha256:...``)."""
    reference: str
    """Where the image is pulled from, pinned by digest (the history item's
    ``dockerImageReference``)."""
    local_reference: str | None = None
    """The same image through the configured registry (``referencePolicy: Local``),
    when a registry is configured."""
    reference_policy: str = "Source"
    verification: Policy | None = None
    """The tag's verification policy (an invalid one: required, with no keys, so
    nothing rolls out from it until it is fixed)."""

    @property
    def pull_spec(self) -> str:
        """What a consumer should pull: per the tag's referencePolicy."""
        if self.reference_policy == "Local" and self.local_reference:
            return self.local_reference
        return self.reference


Subscriber = Callable[[TagImage], Awaitable[None]]
Key = tuple[str, str, str]


def tag_images(body: Mapping[str, Any], registry: str | None) -> list[TagImage]:
    """The newest image of every status tag of an ImageStream body."""
    metadata = body.get("metadata") or {}
    namespace, stream = str(metadata.get("namespace")), str(metadata.get("name"))
    policies = {t.name: t.reference_policy for t in spec_tags(body.get("spec"))}
    verification = {
        name: Policy((), required=True) if isinstance(policy, PolicyError) else policy
        for name, policy in tag_policies(body.get("spec")).items()
    }
    found = []
    for entry in (body.get("status") or {}).get("tags") or []:
        items = entry.get("items") or []
        if not items or not items[0].get("image"):
            continue
        item, tag = items[0], str(entry.get("tag"))
        image = str(item["image"])
        local = f"{registry}/{namespace}/{stream}@{image}" if registry else None
        found.append(
            TagImage(
                namespace=namespace,
                stream=stream,
                tag=tag,
                image=image,
                reference=str(item.get("dockerImageReference") or local or ""),
                local_reference=local,
                reference_policy=policies.get(tag, "Source"),
                verification=verification.get(tag),
            )
        )
    return found


@dataclass(frozen=True)
class Delivery:
    """One subscriber's news of one tag: the work queue's key."""

    subscriber: int
    namespace: str
    stream: str
    tag: str


class TagFeed:
    """The newest image of every tag seen; every subscriber hears of each move at least once.

    Deliveries run on a work queue keyed by (subscriber, tag): a subscriber
    that raises gets the tag's current image again, with backoff, until it
    takes it; a move superseded meanwhile is delivered as the newer image
    (subscribers are level-based and idempotent: they derive their request
    ids from the tag and the image).
    """

    def __init__(self, registry: str | None = None, *, concurrency: int = 16) -> None:
        self.registry = registry
        self._current: dict[Key, TagImage] = {}
        self._subscribers: list[Subscriber] = []
        self._versions: dict[tuple[str, str], int] = {}
        self._tags_of: dict[tuple[str, str], set[str]] = {}
        """The tags kept per stream, so a deleted stream's entries go in O(its tags)."""
        self._delivered: dict[Delivery, TagImage] = {}
        self.queue: WorkQueue[Delivery] = WorkQueue(
            "tag-moves", self._deliver, concurrency=concurrency
        )

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def current(self, namespace: str, stream: str, tag: str) -> TagImage | None:
        return self._current.get((namespace, stream, tag))

    async def observe(self, body: Mapping[str, Any]) -> list[TagImage]:
        """Record an ImageStream's tags; queue news of those that moved for each subscriber.

        A body older than one already seen (a watch event delivered after the
        runner reported its own newer write) is ignored: it would move tags back.
        """
        metadata = body.get("metadata") or {}
        stream = (str(metadata.get("namespace")), str(metadata.get("name")))
        version = resource_version(body)
        seen = self._versions.get(stream)
        if version is not None and seen is not None and version < seen:
            return []
        if version is not None:
            self._versions[stream] = version
        moved = []
        for image in tag_images(body, self.registry):
            key = (image.namespace, image.stream, image.tag)
            if self._current.get(key) != image:
                self._current[key] = image
                self._tags_of.setdefault(stream, set()).add(image.tag)
                moved.append(image)
        if moved:
            self.queue.start()
        for image in moved:
            for index in range(len(self._subscribers)):
                self.queue.add(Delivery(index, image.namespace, image.stream, image.tag))
        return moved

    async def settle(self) -> None:
        """Wait until every delivery due so far has been made (or is waiting for a retry)."""
        if self.queue.started:
            await self.queue.settle()

    def __len__(self) -> int:
        return len(self._current)

    def forget(self, namespace: str, stream: str) -> None:
        """The stream is gone: its tags, deliveries and version go with it."""
        for tag in self._tags_of.pop((namespace, stream), set()):
            self._current.pop((namespace, stream, tag), None)
            for index in range(len(self._subscribers)):
                delivery = Delivery(index, namespace, stream, tag)
                self._delivered.pop(delivery, None)
                self.queue.cancel(delivery)
        self._versions.pop((namespace, stream), None)

    async def _deliver(self, delivery: Delivery) -> None:
        image = self._current.get((delivery.namespace, delivery.stream, delivery.tag))
        if image is None or self._delivered.get(delivery) == image:
            return
        await self._subscribers[delivery.subscriber](image)
        self._delivered[delivery] = image

    async def stop(self) -> None:
        await self.queue.stop()
