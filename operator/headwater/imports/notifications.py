"""Registry push notifications: which tags of which streams to import at once.

Two body shapes are accepted:

- CNCF distribution's notification envelope
  (``application/vnd.docker.distribution.events.v1+json``):
  ``{"events": [{"action": "push", "target": {"repository", "tag", ...},
  "request": {"host": ...}}]}``; only ``push`` events of manifests count.
- A generic form for other registries and CI: ``{"repository":
  "host[:port]/path", "tag": "1.2.0"}`` (``tag`` optional), or a list of those
  under ``"events"``.

Matching is by repository path, and by host when the notification names one:
a push of ``shop/web:1.2.0`` imports every importable tag whose source is
``<that host>/shop/web:1.2.0`` (or any tag of ``shop/web`` when no tag is
given). Digest references never move and are skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from headwater.documents import DocumentError, Limits, load_json
from headwater.imports.model import StreamRef, spec_tags
from headwater.registry.reference import Reference, ReferenceError, parse_reference

MAX_BODY_BYTES = 1 << 20
MAX_EVENTS = 1000
LIMITS = Limits(max_bytes=MAX_BODY_BYTES, max_nodes=100_000, max_depth=16)
"""distribution's envelope: events of a few dozen values each, four levels deep."""


class NotificationError(ValueError):
    """The body is not a notification; the message says why (answered with 400)."""


@dataclass(frozen=True)
class Push:
    """A manifest pushed to ``repository`` (under ``tag``, when known) at ``host``."""

    host: str | None
    repository: str
    tag: str | None
    digest: str | None = None
    """The manifest pushed, when the notification says (distribution's events do)."""


def parse_notification(body: bytes) -> list[Push]:
    """The pushes a notification body reports."""
    if len(body) > MAX_BODY_BYTES:
        raise NotificationError(f"body larger than {MAX_BODY_BYTES} bytes")
    try:
        data = load_json(body, LIMITS)
    except DocumentError as exc:
        raise NotificationError(str(exc)) from None
    if not isinstance(data, dict):
        raise NotificationError("body must be a JSON object")
    events = data.get("events")
    if events is None:
        return [_generic(data)]
    if not isinstance(events, list):
        raise NotificationError("events must be a list")
    if len(events) > MAX_EVENTS:
        raise NotificationError(f"more than {MAX_EVENTS} events")
    pushes: list[Push] = []
    for event in events:
        if not isinstance(event, dict):
            raise NotificationError("each event must be an object")
        if "target" in event or "action" in event:
            push = _distribution(event)
            if push is not None:
                pushes.append(push)
        else:
            pushes.append(_generic(event))
    return pushes


def _text(value: Any, where: str, *, required: bool) -> str | None:
    if value is None or value == "":
        if required:
            raise NotificationError(f"{where} is required")
        return None
    if not isinstance(value, str) or len(value) > 512:
        raise NotificationError(f"{where} must be a string of at most 512 characters")
    return value


def _distribution(event: Mapping[str, Any]) -> Push | None:
    if event.get("action") != "push":
        return None
    target = event.get("target")
    if not isinstance(target, dict):
        raise NotificationError("event.target must be an object")
    media_type = str(target.get("mediaType") or "")
    if "manifest" not in media_type and "index" not in media_type and media_type:
        return None  # a blob push: no tag moved
    request = event.get("request") if isinstance(event.get("request"), dict) else {}
    repository = _text(target.get("repository"), "event.target.repository", required=True)
    assert repository is not None
    return Push(
        host=_text((request or {}).get("host"), "event.request.host", required=False),
        repository=repository,
        tag=_text(target.get("tag"), "event.target.tag", required=False),
        digest=_text(target.get("digest"), "event.target.digest", required=False),
    )


def _generic(data: Mapping[str, Any]) -> Push:
    name = _text(data.get("repository"), "repository", required=True)
    assert name is not None
    try:
        reference = parse_reference(name)
    except ReferenceError as exc:
        raise NotificationError(f"repository: {exc}") from None
    tag = _text(data.get("tag"), "tag", required=False) or reference.tag
    return Push(host=reference.domain, repository=reference.path, tag=tag)


def _matches(push: Push, source: Reference) -> bool:
    if source.digest is not None or source.path != push.repository:
        return False
    if push.host is not None and push.host not in (source.domain, source.api_host):
        return False
    return push.tag is None or push.tag == (source.tag or "latest")


def _moved(
    pushes: Iterable[Push], bodies: Mapping[StreamRef, Mapping[str, Any]]
) -> Iterator[tuple[StreamRef, str, Push]]:
    """(stream, tag, push) for each importable tag a push moved.

    Pushes are indexed by repository and each tag's source parsed once, so a
    body of 1000 events costs one pass over the tags, not 1000.
    """
    by_repository: dict[str, list[Push]] = {}
    for push in pushes:
        by_repository.setdefault(push.repository, []).append(push)
    for ref, body in bodies.items():
        for tag in spec_tags(body.get("spec")):
            if not tag.importable:
                continue
            try:
                source = parse_reference(tag.from_name)
            except ReferenceError:
                continue
            for push in by_repository.get(source.path, ()):
                if _matches(push, source):
                    yield ref, tag.name, push


def tags_to_import(
    pushes: Iterable[Push], bodies: Mapping[StreamRef, Mapping[str, Any]]
) -> dict[StreamRef, set[str]]:
    """For each stream, its importable tags that one of ``pushes`` moved."""
    found: dict[StreamRef, set[str]] = {}
    for ref, tag, _ in _moved(pushes, bodies):
        found.setdefault(ref, set()).add(tag)
    return found


def pushed_digests(
    pushes: Iterable[Push], bodies: Mapping[StreamRef, Mapping[str, Any]]
) -> dict[tuple[StreamRef, str], str]:
    """For each (stream, tag) a push moved, the digest pushed, when the push names one."""
    found: dict[tuple[StreamRef, str], str] = {}
    for ref, tag, push in _moved([p for p in pushes if p.digest], bodies):
        assert push.digest is not None
        found[(ref, tag)] = push.digest
    return found


def repository_paths(body: Mapping[str, Any]) -> frozenset[str]:
    """The repository paths the stream's importable tags come from."""
    paths = set()
    for tag in spec_tags(body.get("spec")):
        if not tag.importable:
            continue
        try:
            paths.add(parse_reference(tag.from_name).path)
        except ReferenceError:
            continue
    return frozenset(paths)


class RepositoryIndex:
    """Which streams import from which repository path, so that a push looks at the
    streams following its repository only: a pass over every stream's tags for each
    notification cost about 0.1 s of CPU per push at 1,000 streams (bench/scale.py)."""

    def __init__(self) -> None:
        self._streams: dict[str, set[StreamRef]] = {}
        self._paths: dict[StreamRef, frozenset[str]] = {}

    def update(self, ref: StreamRef, body: Mapping[str, Any]) -> None:
        paths = repository_paths(body)
        old = self._paths.get(ref, frozenset())
        if paths == old:
            return
        for path in old - paths:
            streams = self._streams.get(path)
            if streams is not None:
                streams.discard(ref)
                if not streams:
                    del self._streams[path]
        for path in paths - old:
            self._streams.setdefault(path, set()).add(ref)
        if paths:
            self._paths[ref] = paths
        else:
            self._paths.pop(ref, None)

    def remove(self, ref: StreamRef) -> None:
        self.update(ref, {})

    def streams(self, pushes: Iterable[Push]) -> set[StreamRef]:
        """The streams with an importable tag from a repository one of ``pushes`` names."""
        found: set[StreamRef] = set()
        for push in pushes:
            found |= self._streams.get(push.repository, set())
        return found
