"""Which image each ImageStream tag points at, and who wants to know when it moves.

Every ImageStream the operator sees (watch events, and its own status writes
straight after they succeed) passes through :meth:`TagFeed.observe`; the feed
compares each tag's newest history item with what it saw before and calls
its subscribers for the tags that moved. The first sight of a tag counts as
a move, so subscribers converge after a restart (they compare with their own
record — an ImageChange trigger's lastTriggeredImageID, a container's image —
and do nothing when it already matches).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from headwater.imports.model import spec_tags
from headwater.kube import resource_version

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
            )
        )
    return found


class TagFeed:
    """The newest image of every tag seen; subscribers hear about each move once."""

    def __init__(self, registry: str | None = None) -> None:
        self.registry = registry
        self._current: dict[Key, TagImage] = {}
        self._subscribers: list[Subscriber] = []
        self._locks: dict[Key, asyncio.Lock] = {}
        self._versions: dict[tuple[str, str], int] = {}
        self._tags_of: dict[tuple[str, str], set[str]] = {}
        """The tags kept per stream, so a deleted stream's entries go in O(its tags)."""
        self._tasks: set[asyncio.Task[None]] = set()

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def current(self, namespace: str, stream: str, tag: str) -> TagImage | None:
        return self._current.get((namespace, stream, tag))

    async def observe(self, body: Mapping[str, Any]) -> list[TagImage]:
        """Record an ImageStream's tags; tell subscribers about those that moved.

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
        # Subscribers run in tasks of their own: the caller may hold a lock (the
        # import runner's, for the stream) that a subscriber's work must not wait on.
        for image in moved:
            task = asyncio.get_running_loop().create_task(self._notify(image))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return moved

    async def settle(self) -> None:
        """Wait until every notification scheduled so far has been delivered."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def __len__(self) -> int:
        return len(self._current)

    def forget(self, namespace: str, stream: str) -> None:
        """The stream is gone: its tags, locks and version go with it."""
        for tag in self._tags_of.pop((namespace, stream), set()):
            key = (namespace, stream, tag)
            self._current.pop(key, None)
            lock = self._locks.get(key)
            if lock is not None and not lock.locked():
                del self._locks[key]
        self._versions.pop((namespace, stream), None)

    async def _notify(self, image: TagImage) -> None:
        key = (image.namespace, image.stream, image.tag)
        # One delivery at a time per tag, in order; a move already superseded by a
        # newer one is skipped (its subscribers will hear of the newer one).
        async with self._locks.setdefault(key, asyncio.Lock()):
            if self._current.get(key) != image:
                return
            await self._deliver(image)

    async def _deliver(self, image: TagImage) -> None:
        results = await asyncio.gather(
            *(subscriber(image) for subscriber in self._subscribers), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                logger.error(
                    "a subscriber failed on %s/%s:%s: %r",
                    image.namespace, image.stream, image.tag, result,
                )  # fmt: skip
