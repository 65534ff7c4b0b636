"""What each page shows, from plain dicts (pure: no I/O, no templates).

The templates only lay these out; every choice of what to show (which builds
are "recent", how a duration reads, which tags moved last) is made here,
where unit tests reach it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from headwater.builds.model import NEW, TERMINAL, build_number, buildconfig_of
from headwater.cli.output import ago
from headwater.cli.tables import build_status_text, source_short, stream_tags_by_update
from headwater.timefmt import parse_time

RECENT_PER_BUILDCONFIG = 3
"""The overview shows each BuildConfig's newest builds (and how many it has)."""
RECENT_BUILDS = 50
"""The overview's list of recent builds across the namespace, newest first."""
_NEVER = datetime.min.replace(tzinfo=UTC)


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def _name(obj: Mapping[str, Any]) -> str:
    return str(_meta(obj).get("name") or "")


def _status(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("status") or {}


def _spec(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("spec") or {}


def seconds_text(seconds: float | None) -> str:
    """``850ms``, ``42s``, ``3m05s``, ``2h04m``; empty when unknown."""
    if seconds is None or seconds < 0:
        return ""
    if seconds < 1:
        return f"{int(seconds * 1000)}ms"
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def build_duration(build: Mapping[str, Any], now: datetime) -> str:
    """From start to completion; a running build's so far."""
    status = _status(build)
    start = parse_time(status.get("startTimestamp"))
    if start is None:
        return ""
    end = parse_time(status.get("completionTimestamp"))
    if end is None:
        if str(status.get("phase") or NEW) in TERMINAL:
            return ""
        end = now
    return seconds_text((end - start).total_seconds())


def phase_class(phase: str) -> str:
    """A CSS class per phase family (colour is never the only cue: the text says it)."""
    return {
        "Complete": "ok",
        "Failed": "bad",
        "Error": "bad",
        "Cancelled": "muted",
        "Running": "busy",
        "Pending": "busy",
        "New": "busy",
    }.get(phase, "muted")


@dataclass(frozen=True)
class BuildRow:
    name: str
    buildconfig: str
    number: int
    phase: str
    status_text: str
    phase_class: str
    source: str
    started: str
    duration: str
    age: str
    created: datetime
    digest: str


def build_row(build: Mapping[str, Any], now: datetime) -> BuildRow:
    status = _status(build)
    phase = str(status.get("phase") or NEW)
    created = parse_time(_meta(build).get("creationTimestamp")) or _NEVER
    digest = str(((status.get("output") or {}).get("to") or {}).get("imageDigest") or "")
    return BuildRow(
        name=_name(build),
        buildconfig=buildconfig_of(build) or "",
        number=build_number(build),
        phase=phase,
        status_text=build_status_text(build),
        phase_class=phase_class(phase),
        source=source_short(_spec(build), status.get("revision")),
        started=ago(status.get("startTimestamp"), now) if status.get("startTimestamp") else "",
        duration=build_duration(build, now),
        age=ago(_meta(build).get("creationTimestamp"), now),
        created=created,
        digest=digest,
    )


@dataclass(frozen=True)
class StreamRow:
    name: str
    repository: str
    tags: tuple[str, ...]
    more_tags: int
    updated: str
    failing: tuple[str, ...]
    """Tags whose last import failed."""


TAGS_SHOWN = 4


def stream_row(stream: Mapping[str, Any], now: datetime) -> StreamRow:
    by_update = stream_tags_by_update(stream)
    names = [t for t, _ in by_update]
    status = _status(stream)
    failing = tuple(
        str(entry.get("tag") or "")
        for entry in status.get("tags") or []
        if any(
            c.get("type") == "ImportSuccess" and c.get("status") == "False"
            for c in entry.get("conditions") or []
        )
    )
    return StreamRow(
        name=_name(stream),
        repository=str(
            status.get("publicDockerImageRepository") or status.get("dockerImageRepository") or ""
        ),
        tags=tuple(names[:TAGS_SHOWN]),
        more_tags=max(0, len(names) - TAGS_SHOWN),
        updated=ago(by_update[0][1], now) if by_update else "",
        failing=failing,
    )


@dataclass(frozen=True)
class BuildConfigRow:
    name: str
    strategy: str
    source: str
    output: str
    last_version: int
    build_count: int
    recent: tuple[BuildRow, ...]
    """The newest :data:`RECENT_PER_BUILDCONFIG` builds, newest first."""


@dataclass
class Overview:
    namespace: str
    streams: list[StreamRow] = field(default_factory=list)
    buildconfigs: list[BuildConfigRow] = field(default_factory=list)
    recent_builds: list[BuildRow] = field(default_factory=list)
    build_count: int = 0
    running: int = 0


def _output(spec: Mapping[str, Any]) -> str:
    to = (spec.get("output") or {}).get("to") or {}
    if not to:
        return ""
    name = str(to.get("name") or "")
    return f"{to.get('namespace')}/{name}" if to.get("namespace") else name


def stream_rows(streams: Iterable[Mapping[str, Any]], now: datetime) -> list[StreamRow]:
    return sorted((stream_row(s, now) for s in streams), key=lambda r: r.name)


def builds_by_config(
    builds: Iterable[Mapping[str, Any]], now: datetime
) -> tuple[dict[str, list[BuildRow]], list[BuildRow]]:
    """Rows of every build, grouped by BuildConfig (newest first), and all of them newest first."""
    rows = [build_row(b, now) for b in builds]
    rows.sort(key=lambda r: (r.created, r.number, r.name), reverse=True)
    grouped: dict[str, list[BuildRow]] = defaultdict(list)
    for row in rows:
        grouped[row.buildconfig].append(row)
    for group in grouped.values():
        group.sort(key=lambda r: (r.number, r.created), reverse=True)
    return grouped, rows


def buildconfig_rows(
    buildconfigs: Iterable[Mapping[str, Any]], grouped: Mapping[str, Sequence[BuildRow]]
) -> list[BuildConfigRow]:
    out = []
    for bc in buildconfigs:
        spec = _spec(bc)
        name = _name(bc)
        mine = grouped.get(name, ())
        out.append(
            BuildConfigRow(
                name=name,
                strategy=str((spec.get("strategy") or {}).get("type") or ""),
                source=source_short(spec),
                output=_output(spec),
                last_version=int(_status(bc).get("lastVersion") or 0),
                build_count=len(mine),
                recent=tuple(mine[:RECENT_PER_BUILDCONFIG]),
            )
        )
    out.sort(key=lambda r: r.name)
    return out


def overview(
    namespace: str,
    streams: Iterable[Mapping[str, Any]],
    buildconfigs: Iterable[Mapping[str, Any]],
    builds: Iterable[Mapping[str, Any]],
    now: datetime,
) -> Overview:
    """The namespace overview: every stream and BuildConfig, builds bounded and counted."""
    grouped, all_builds = builds_by_config(builds, now)
    return Overview(
        namespace=namespace,
        streams=stream_rows(streams, now),
        buildconfigs=buildconfig_rows(buildconfigs, grouped),
        recent_builds=all_builds[:RECENT_BUILDS],
        build_count=len(all_builds),
        running=sum(1 for r in all_builds if r.phase not in TERMINAL),
    )
