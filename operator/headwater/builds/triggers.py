"""ConfigChange and ImageChange triggers of a BuildConfig (pure): which builds they ask for.

A trigger's request gets an id derived from what fired it (the generation
for ConfigChange, the tag and image for ImageChange), so the instantiation
path's idempotency (one Build per request id) also means one build per
trigger firing, however many events or restarts deliver it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from headwater.builds.instantiate import StartRequest
from headwater.imports.model import split_stream_tag
from headwater.imports.tagfeed import TagImage
from headwater.timefmt import format_time

CONFIG_CHANGE_ID = "configchange"
REBUILD_ANNOTATION = "build.headwater.dev/rebuild-on-config-change"
"""Opt-in: "true" makes a ConfigChange trigger build on every spec change too, not
only when the BuildConfig is created (OpenShift's behaviour)."""
CONFIG_GENERATION_ANNOTATION = "build.headwater.dev/config-change-generation"
"""The generation the last ConfigChange build was made for (opt-in rebuilds)."""
_STRATEGY_KEYS = {
    "Docker": "dockerStrategy",
    "Source": "sourceStrategy",
    "Custom": "customStrategy",
}

Lookup = Callable[[str, str, str], TagImage | None]


@dataclass(frozen=True)
class WatchedTag:
    """An ImageStreamTag an ImageChange trigger watches."""

    namespace: str
    stream: str
    tag: str
    paused: bool = False

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.namespace, self.stream, self.tag)

    @property
    def name(self) -> str:
        return f"{self.stream}:{self.tag}"


def strategy_from(spec: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The strategy's ``from`` reference (builder or base image), if any."""
    strategy = spec.get("strategy") or {}
    block = strategy.get(_STRATEGY_KEYS.get(str(strategy.get("type")), "dockerStrategy")) or {}
    found = block.get("from")
    return found if isinstance(found, Mapping) else None


def watched_tags(bc: Mapping[str, Any]) -> list[WatchedTag]:
    """The tags the BuildConfig's ImageChange triggers watch (default: the strategy's from)."""
    namespace = str((bc.get("metadata") or {}).get("namespace"))
    spec = bc.get("spec") or {}
    found: list[WatchedTag] = []
    for trigger in spec.get("triggers") or []:
        if trigger.get("type") != "ImageChange":
            continue
        block = trigger.get("imageChange") or {}
        source = block.get("from") or strategy_from(spec)
        if not source or (source.get("kind") or "ImageStreamTag") != "ImageStreamTag":
            continue
        stream, tag = split_stream_tag(str(source.get("name") or ""))
        if not stream:
            continue
        found.append(
            WatchedTag(
                namespace=str(source.get("namespace") or namespace),
                stream=stream,
                tag=tag or "latest",
                paused=bool(block.get("paused")),
            )
        )
    return found


def has_config_change(bc: Mapping[str, Any]) -> bool:
    return any(
        t.get("type") == "ConfigChange" for t in (bc.get("spec") or {}).get("triggers") or []
    )


def config_change_request(
    bc: Mapping[str, Any], lookup: Lookup | None = None
) -> StartRequest | None:
    """A ConfigChange build: when the BuildConfig is new, or (opt-in) its spec changed.

    A new BuildConfig whose ImageChange triggers watch tags without an image yet
    waits for them (as OpenShift does): building now would resolve nothing, and
    the tag's first image would then start a second build.
    """
    if not has_config_change(bc):
        return None
    if lookup is not None and config_change_waits(bc, lookup):
        return None
    metadata = bc.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    generation = int(metadata.get("generation") or 0)
    last_version = int(((bc.get("status") or {}).get("lastVersion")) or 0)
    cause = ({"message": "Build configuration change"},)
    if last_version == 0:
        return StartRequest(id=CONFIG_CHANGE_ID, causes=cause)
    if str(annotations.get(REBUILD_ANNOTATION, "")).lower() != "true":
        return None
    built = str(annotations.get(CONFIG_GENERATION_ANNOTATION) or "")
    if not built.isdigit():
        # Opted in after builds existed: the current spec counts as built.
        return None
    if generation > int(built):
        return StartRequest(id=f"{CONFIG_CHANGE_ID}-g{generation}", causes=cause)
    return None


def missing_images(bc: Mapping[str, Any], lookup: Lookup) -> list[str]:
    """The unpaused ImageChange tags (by default the builder image) with no image yet:
    a build of this BuildConfig cannot start until they have one."""
    return [w.name for w in watched_tags(bc) if not w.paused and lookup(*w.key) is None]


def config_change_waits(bc: Mapping[str, Any], lookup: Lookup) -> bool:
    """A ConfigChange build is due but waits: an unpaused ImageChange tag has no image yet."""
    return bool(missing_images(bc, lookup))


def _last_triggered(status: Mapping[str, Any] | None, watched: WatchedTag) -> str:
    for entry in (status or {}).get("imageChangeTriggers") or []:
        source = entry.get("from") or {}
        if (
            source.get("name") == watched.name
            and (source.get("namespace") or watched.namespace) == watched.namespace
        ):
            return str(entry.get("lastTriggeredImageID") or "")
    return ""


def _is_strategy_from(bc: Mapping[str, Any], watched: WatchedTag) -> bool:
    source = strategy_from(bc.get("spec") or {})
    if not source or (source.get("kind") or "ImageStreamTag") != "ImageStreamTag":
        return False
    stream, tag = split_stream_tag(str(source.get("name") or ""))
    namespace = str(source.get("namespace") or (bc.get("metadata") or {}).get("namespace"))
    return (namespace, stream, tag or "latest") == watched.key


def image_change_id(watched: WatchedTag, image: TagImage) -> str:
    digest = hashlib.sha256(f"{watched.key}@{image.image}".encode()).hexdigest()[:20]
    return f"imagechange-{digest}"


def image_change_requests(
    bc: Mapping[str, Any], lookup: Lookup
) -> list[tuple[StartRequest, WatchedTag, TagImage]]:
    """A build for each unpaused ImageChange trigger whose tag moved since it last fired."""
    status = bc.get("status") or {}
    requests = []
    for watched in watched_tags(bc):
        if watched.paused:
            continue
        image = lookup(*watched.key)
        if image is None or _last_triggered(status, watched) == image.pull_spec:
            continue
        cause = {
            "message": f"Image change: {watched.namespace}/{watched.name}",
            "imageChangeBuild": {
                "imageID": image.pull_spec,
                "fromRef": {
                    "kind": "ImageStreamTag",
                    "name": watched.name,
                    "namespace": watched.namespace,
                },
            },
        }
        # The image that fired is the build's own `from` only when the trigger watches
        # the strategy's tag; a trigger on another tag must not swap the builder.
        pinned = image.pull_spec if _is_strategy_from(bc, watched) else None
        request = StartRequest(
            id=image_change_id(watched, image), causes=(cause,), from_image=pinned
        )
        requests.append((request, watched, image))
    return requests


def image_trigger_status(
    bc: Mapping[str, Any],
    lookup: Lookup,
    fired: Sequence[tuple[WatchedTag, TagImage]],
    built: bool,
    now: datetime,
) -> list[dict[str, Any]]:
    """``status.imageChangeTriggers`` after this reconcile.

    A trigger that fired records its image. When any build was made, every
    unpaused trigger records the image its tag has now, as OpenShift does: that
    build used it, so it must not fire a second build.
    """
    status = bc.get("status") or {}
    fired_by_key = {w.key: i for w, i in fired}
    entries = []
    for watched in watched_tags(bc):
        last = _last_triggered(status, watched)
        previous: Mapping[str, Any] = next(
            (
                e
                for e in status.get("imageChangeTriggers") or []
                if (e.get("from") or {}).get("name") == watched.name
                and ((e.get("from") or {}).get("namespace") or watched.namespace)
                == watched.namespace
            ),
            {},
        )
        entry: dict[str, Any] = {
            "from": {"name": watched.name, "namespace": watched.namespace},
        }
        image = fired_by_key.get(watched.key)
        if image is None and built and not watched.paused:
            image = lookup(*watched.key)
        if image is not None and image.pull_spec != last:
            entry["lastTriggeredImageID"] = image.pull_spec
            entry["lastTriggerTime"] = format_time(now)
        else:
            if last:
                entry["lastTriggeredImageID"] = last
            if previous.get("lastTriggerTime"):
                entry["lastTriggerTime"] = previous["lastTriggerTime"]
        entries.append(entry)
    return entries
