"""Typed views of an ImageStream's spec tags and status tags."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

FromKind = Literal["DockerImage", "ImageStreamTag", "ImageStreamImage"]
ImportMode = Literal["Legacy", "PreserveOriginal"]

STREAM_NAME_PATTERN = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*"
"""An ImageStream name (a DNS-1123 subdomain, like every object name), unanchored."""


@dataclass(frozen=True)
class SpecTag:
    """One ``spec.tags[]`` entry, with OpenShift's defaults applied."""

    name: str
    from_kind: FromKind | None
    from_name: str
    from_namespace: str | None
    reference: bool
    generation: int | None
    insecure: bool
    scheduled: bool
    import_mode: ImportMode
    reference_policy: str

    @property
    def importable(self) -> bool:
        """Fetched from a registry (OpenShift: DockerImage and not ``reference``)."""
        return self.from_kind == "DockerImage" and not self.reference


@dataclass(frozen=True)
class StreamRef:
    """An ImageStream by namespace and name."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


def spec_tags(spec: Mapping[str, Any] | None) -> list[SpecTag]:
    """The spec tags in order; schema defaults are re-applied for objects admitted without them."""
    tags: list[SpecTag] = []
    for raw in (spec or {}).get("tags") or []:
        source = raw.get("from") or {}
        policy = raw.get("importPolicy") or {}
        tags.append(
            SpecTag(
                name=str(raw["name"]),
                from_kind=source.get("kind"),
                from_name=str(source.get("name") or ""),
                from_namespace=source.get("namespace") or None,
                reference=bool(raw.get("reference")),
                generation=raw.get("generation"),
                insecure=bool(policy.get("insecure")),
                scheduled=bool(policy.get("scheduled")),
                import_mode=policy.get("importMode") or "Legacy",
                reference_policy=(raw.get("referencePolicy") or {}).get("type") or "Source",
            )
        )
    return tags


def status_tag(status: Mapping[str, Any] | None, name: str) -> Mapping[str, Any] | None:
    """The ``status.tags[]`` entry of that tag, or None."""
    for entry in (status or {}).get("tags") or []:
        if entry.get("tag") == name:
            return dict(entry)
    return None


def newest_item(status: Mapping[str, Any] | None, name: str) -> Mapping[str, Any] | None:
    """The tag's current image: the first history item."""
    entry = status_tag(status, name)
    items: Sequence[Mapping[str, Any]] = (entry or {}).get("items") or []
    return items[0] if items else None


def split_stream_tag(name: str) -> tuple[str, str]:
    """``web:latest`` -> (``web``, ``latest``); the CRD's CEL rule guarantees the shape."""
    stream, _, tag = name.partition(":")
    return stream, tag


def split_stream_image(name: str) -> tuple[str, str]:
    """``web@sha256:...`` -> (``web``, ``sha256:...``)."""
    stream, _, digest = name.partition("@")
    return stream, digest


def source_stream(tag: SpecTag, namespace: str) -> StreamRef | None:
    """The stream an ImageStreamTag/ImageStreamImage tag points into (default: ``namespace``)."""
    if tag.from_kind == "ImageStreamTag":
        stream = split_stream_tag(tag.from_name)[0]
    elif tag.from_kind == "ImageStreamImage":
        stream = split_stream_image(tag.from_name)[0]
    else:
        return None
    return StreamRef(tag.from_namespace or namespace, stream)


def tag_condition(entry: Mapping[str, Any] | None, type_: str) -> Mapping[str, Any] | None:
    """A condition of a status tag (OpenShift's TagEventCondition: it has ``generation``)."""
    for condition in (entry or {}).get("conditions") or []:
        if condition.get("type") == type_:
            return dict(condition)
    return None


def new_cross_namespace_sources(
    spec: Mapping[str, Any] | None, namespace: str, old_spec: Mapping[str, Any] | None
) -> dict[str, list[str]]:
    """Source namespace -> tags that newly reference a stream there (absent from ``old_spec``).

    Only references a request adds are checked at admission, so an unrelated
    edit by someone else never fails on a reference a granted user made.
    """

    def cross(tags: list[SpecTag]) -> set[tuple[str, str, str]]:
        return {
            (t.name, t.from_namespace, t.from_name)
            for t in tags
            if t.from_kind in ("ImageStreamTag", "ImageStreamImage")
            and t.from_namespace
            and t.from_namespace != namespace
        }

    added = cross(spec_tags(spec)) - cross(spec_tags(old_spec))
    sources: dict[str, list[str]] = {}
    for tag, source, _ in sorted(added):
        sources.setdefault(source, []).append(tag)
    return sources
