"""The ``get`` tables, column for column like ``oc get`` (pure: plain dicts in, strings out).

``-o wide`` adds columns oc does not have but users ask for: the lookup
policy and scheduled imports of a stream, a BuildConfig's output and
triggers, a Build's reason and commit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from headwater.builds.model import NEW, TERMINAL, UNSUCCESSFUL, build_number, buildconfig_of
from headwater.cli.kinds import BUILD, BUILDCONFIG, IMAGESTREAM, IMAGESTREAMTAG, Kind
from headwater.cli.output import age, ago
from headwater.imports.model import spec_tags
from headwater.timefmt import parse_time

Row = tuple[str, ...]
_NEVER = datetime.min.replace(tzinfo=UTC)

TAGS_SHOWN = 3
"""oc's TAGS column lists the three most recently updated tags, then "+ N more..."."""


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def _name(obj: Mapping[str, Any]) -> str:
    return str(_meta(obj).get("name", ""))


def _status(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("status") or {}


def _spec(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("spec") or {}


# --- ImageStream -------------------------------------------------------------------


def stream_tags_by_update(stream: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(tag, newest item's created) of the tags that have an image, newest first."""
    tags = []
    for entry in _status(stream).get("tags") or []:
        items = entry.get("items") or []
        if items:
            tags.append((str(entry.get("tag", "")), str(items[0].get("created") or "")))
    # Newest first; tags updated at the same moment stay in name order.
    tags.sort(key=lambda t: t[0])
    tags.sort(key=lambda t: parse_time(t[1]) or _NEVER, reverse=True)
    return tags


def image_repository(stream: Mapping[str, Any]) -> str:
    status = _status(stream)
    return str(
        status.get("publicDockerImageRepository") or status.get("dockerImageRepository") or ""
    )


IMAGESTREAM_HEADER: Row = ("NAME", "IMAGE REPOSITORY", "TAGS", "UPDATED")
IMAGESTREAM_WIDE: Row = ("LOOKUP", "SCHEDULED", "AGE")


def imagestream_row(stream: Mapping[str, Any], now: datetime, wide: bool = False) -> Row:
    tags = stream_tags_by_update(stream)
    names = [t for t, _ in tags]
    shown = ",".join(names[:TAGS_SHOWN])
    if len(names) > TAGS_SHOWN:
        shown += f" + {len(names) - TAGS_SHOWN} more..."
    row: Row = (
        _name(stream),
        image_repository(stream),
        shown,
        ago(tags[0][1], now) if tags else "",
    )
    if wide:
        spec = _spec(stream)
        local = bool((spec.get("lookupPolicy") or {}).get("local"))
        scheduled = [t.name for t in spec_tags(spec) if t.scheduled]
        row += (
            "local" if local else "-",
            ",".join(scheduled) or "-",
            age(_meta(stream).get("creationTimestamp"), now),
        )
    return row


# --- ImageStreamTag (a view over ImageStream status) -------------------------------


def istags(stream: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The ImageStreamTags of a stream, shaped like OpenShift's virtual ImageStreamTag.

    One per status tag with an image; ``-o yaml|json`` print these.
    """
    metadata = _meta(stream)
    spec = _spec(stream)
    spec_by_name = {t.get("name"): t for t in spec.get("tags") or []}
    out = []
    for entry in _status(stream).get("tags") or []:
        items = entry.get("items") or []
        if not items:
            continue
        tag = str(entry.get("tag", ""))
        item = items[0]
        view: dict[str, Any] = {
            "apiVersion": IMAGESTREAMTAG.api_version,
            "kind": IMAGESTREAMTAG.kind,
            "metadata": {
                "name": f"{metadata.get('name')}:{tag}",
                "namespace": metadata.get("namespace"),
                "creationTimestamp": item.get("created"),
            },
            "tag": spec_by_name.get(tag),
            "generation": item.get("generation"),
            "lookupPolicy": spec.get("lookupPolicy") or {"local": False},
            "image": {
                "metadata": {"name": item.get("image")},
                "dockerImageReference": item.get("dockerImageReference"),
            },
        }
        if entry.get("conditions"):
            view["conditions"] = entry["conditions"]
        out.append(view)
    return out


ISTAG_HEADER: Row = ("NAME", "IMAGE REFERENCE", "UPDATED")
ISTAG_WIDE: Row = ("IMAGE NAME",)


def istag_row(view: Mapping[str, Any], now: datetime, wide: bool = False) -> Row:
    image = view.get("image") or {}
    row: Row = (
        _name(view),
        str(image.get("dockerImageReference") or ""),
        ago(_meta(view).get("creationTimestamp"), now),
    )
    if wide:
        row += (str((image.get("metadata") or {}).get("name") or ""),)
    return row


# --- BuildConfig -------------------------------------------------------------------


def source_short(spec: Mapping[str, Any], revision: Mapping[str, Any] | None = None) -> str:
    """oc's FROM column: the source type, ``Git@ref`` or, for a build, ``Git@<commit>``."""
    source = spec.get("source") or {}
    kind = str(source.get("type") or ("Git" if source.get("git") else "None"))
    if kind == "Git":
        commit = str(((revision or {}).get("git") or {}).get("commit") or "")
        ref = str((source.get("git") or {}).get("ref") or "")
        if commit:
            return f"Git@{commit[:7]}"
        return f"Git@{ref}" if ref else "Git"
    return kind


def reference(ref: Mapping[str, Any] | None, namespace: str | None = None) -> str:
    """An ObjectReference as oc shows it: ``ns/name`` only when outside ``namespace``."""
    if not ref:
        return ""
    name = str(ref.get("name") or "")
    other = ref.get("namespace")
    return f"{other}/{name}" if other and other != namespace else name


def trigger_summary(spec: Mapping[str, Any]) -> str:
    """``Config,ImageChange,GitHub`` (each type once, in the order they appear)."""
    seen: list[str] = []
    for trigger in spec.get("triggers") or []:
        kind = str(trigger.get("type") or "")
        label = "Config" if kind == "ConfigChange" else kind
        if label and label not in seen:
            seen.append(label)
    return ",".join(seen) or "<none>"


BUILDCONFIG_HEADER: Row = ("NAME", "TYPE", "FROM", "LATEST")
BUILDCONFIG_WIDE: Row = ("OUTPUT", "RUN POLICY", "TRIGGERS", "AGE")


def buildconfig_row(bc: Mapping[str, Any], now: datetime, wide: bool = False) -> Row:
    spec = _spec(bc)
    row: Row = (
        _name(bc),
        str((spec.get("strategy") or {}).get("type") or ""),
        source_short(spec),
        str(int(_status(bc).get("lastVersion") or 0)),
    )
    if wide:
        to = (spec.get("output") or {}).get("to")
        kind = {"ImageStreamTag": "istag", "DockerImage": "image"}.get(str((to or {}).get("kind")))
        output = f"{kind}/{reference(to, _meta(bc).get('namespace'))}" if to and kind else "<none>"
        row += (
            output,
            str(spec.get("runPolicy") or "Serial"),
            trigger_summary(spec),
            age(_meta(bc).get("creationTimestamp"), now),
        )
    return row


# --- Build -------------------------------------------------------------------------


def build_status_text(build: Mapping[str, Any]) -> str:
    """oc's STATUS: the phase, with the reason when the build failed or waits."""
    status = _status(build)
    phase = str(status.get("phase") or NEW)
    reason = status.get("reason")
    if reason and (phase in UNSUCCESSFUL or phase not in TERMINAL):
        return f"{phase} ({reason})"
    return phase


BUILD_HEADER: Row = ("NAME", "TYPE", "FROM", "STATUS", "STARTED", "DURATION")
BUILD_WIDE: Row = ("BUILDCONFIG", "OUTPUT DIGEST", "AGE")


def build_row(build: Mapping[str, Any], now: datetime, wide: bool = False) -> Row:
    spec, status = _spec(build), _status(build)
    row: Row = (
        _name(build),
        str((spec.get("strategy") or {}).get("type") or ""),
        source_short(spec, status.get("revision")),
        build_status_text(build),
        ago(status.get("startTimestamp"), now),
        str(status.get("duration") or ""),
    )
    if wide:
        digest = str(((status.get("output") or {}).get("to") or {}).get("imageDigest") or "")
        row += (
            buildconfig_of(build) or "<none>",
            digest or "<none>",
            age(_meta(build).get("creationTimestamp"), now),
        )
    return row


def build_sort_key(build: Mapping[str, Any]) -> tuple[str, int, str]:
    """A BuildConfig's builds by number (web-2 before web-10), then by name."""
    return (buildconfig_of(build) or "", build_number(build), _name(build))


# --- one table for any kind --------------------------------------------------------

_COLUMNS: Mapping[str, tuple[Row, Row]] = {
    IMAGESTREAM.kind: (IMAGESTREAM_HEADER, IMAGESTREAM_WIDE),
    IMAGESTREAMTAG.kind: (ISTAG_HEADER, ISTAG_WIDE),
    BUILDCONFIG.kind: (BUILDCONFIG_HEADER, BUILDCONFIG_WIDE),
    BUILD.kind: (BUILD_HEADER, BUILD_WIDE),
}


def header(kind: Kind, wide: bool, all_namespaces: bool) -> Row:
    base, extra = _COLUMNS[kind.kind]
    row = base + extra if wide else base
    return ("NAMESPACE", *row) if all_namespaces else row


def rows(
    kind: Kind, objs: Sequence[Mapping[str, Any]], now: datetime, wide: bool, all_namespaces: bool
) -> list[Row]:
    make = {
        IMAGESTREAM.kind: imagestream_row,
        IMAGESTREAMTAG.kind: istag_row,
        BUILDCONFIG.kind: buildconfig_row,
        BUILD.kind: build_row,
    }[kind.kind]
    out = []
    for obj in objs:
        row = make(obj, now, wide)
        out.append((str(_meta(obj).get("namespace", "")), *row) if all_namespaces else row)
    return out


def status_column(kind: Kind, all_namespaces: bool) -> int | None:
    """Index of the column to colour by build phase, if the kind has one."""
    if kind is not BUILD:
        return None
    return BUILD_HEADER.index("STATUS") + (1 if all_namespaces else 0)
