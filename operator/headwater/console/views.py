"""What each page shows, from plain dicts (pure: no I/O, no templates).

The templates only lay these out; every choice of what to show (which builds
are "recent", how a duration reads, which tags moved last) is made here,
where unit tests reach it.
"""

from __future__ import annotations

import re
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


ANSI_ESCAPE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours (ESC[36m), cursor moves, erases
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC: titles, hyperlinks (to BEL or ST)
    r"|\x1b[@-Z\\-_]"  # any other two-byte escape
    r"|\x1b"  # a lone ESC (a sequence cut short)
)


def strip_ansi(text: str) -> str:
    """``text`` without terminal escape sequences: kaniko colours its log
    (``ESC[36mINFO ESC[0m``), which a page would show as ``[36mINFO[0m``."""
    return ANSI_ESCAPE.sub("", text)


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


def stage_duration(milliseconds: object) -> str:
    """A stage's ``durationMilliseconds``; 0 is a stage timed by its container's
    start and end, which the kubelet gives to the second: under a second."""
    if isinstance(milliseconds, bool) or not isinstance(milliseconds, int) or milliseconds < 0:
        return ""
    return seconds_text(milliseconds / 1000) if milliseconds else "<1s"


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


# --- an ImageStream ----------------------------------------------------------------


@dataclass(frozen=True)
class HistoryItem:
    reference: str
    image: str
    created: str
    ago: str
    current: bool


@dataclass(frozen=True)
class ConditionRow:
    type: str
    status: str
    reason: str
    message: str
    since: str
    bad: bool


@dataclass(frozen=True)
class TagView:
    name: str
    source: str
    """Where it comes from: an image, another tag, or pushed/built here."""
    source_kind: str
    importable: bool
    scheduled: bool
    reference: str
    digest: str
    history: tuple[HistoryItem, ...]
    conditions: tuple[ConditionRow, ...]
    last_import: str
    next_import: str


@dataclass
class StreamView:
    namespace: str
    name: str
    repository: str
    lookup_local: bool
    tags: list[TagView]


def _condition_rows(
    conditions: Iterable[Mapping[str, Any]], now: datetime
) -> tuple[ConditionRow, ...]:
    out = []
    for c in conditions:
        status = str(c.get("status") or "")
        kind = str(c.get("type") or "")
        out.append(
            ConditionRow(
                type=kind,
                status=status,
                reason=str(c.get("reason") or ""),
                message=str(c.get("message") or ""),
                since=ago(c.get("lastTransitionTime"), now),
                bad=(status == "False" and kind in ("ImportSuccess", "Verified"))
                or (status == "True" and kind in ("Failed", "Degraded")),
            )
        )
    return tuple(out)


def stream_view(stream: Mapping[str, Any], now: datetime) -> StreamView:
    """Every tag of a stream: its source, image, history, conditions and next import."""
    from headwater.imports.model import spec_tags

    meta, spec, status = _meta(stream), _spec(stream), _status(stream)
    namespace = str(meta.get("namespace") or "")
    by_spec = {t.name: t for t in spec_tags(spec)}
    by_status = {str(e.get("tag") or ""): e for e in status.get("tags") or []}
    tags = []
    for name in sorted(set(by_spec) | set(by_status)):
        entry, spec_tag = by_status.get(name) or {}, by_spec.get(name)
        if spec_tag is None:
            source, kind = "pushed or built here (no spec tag)", "Local"
        elif spec_tag.from_kind == "DockerImage":
            verb = "reference to" if spec_tag.reference else "imported from"
            source, kind = f"{verb} {spec_tag.from_name}", "DockerImage"
        elif spec_tag.from_kind:
            where = (
                f"{spec_tag.from_namespace}/"
                if spec_tag.from_namespace and spec_tag.from_namespace != namespace
                else ""
            )
            follows = "follows" if spec_tag.from_kind == "ImageStreamTag" else "pinned to"
            source, kind = f"{follows} {where}{spec_tag.from_name}", str(spec_tag.from_kind)
        else:
            source, kind = "no source", ""
        items = entry.get("items") or []
        history = tuple(
            HistoryItem(
                reference=str(item.get("dockerImageReference") or ""),
                image=str(item.get("image") or ""),
                created=str(item.get("created") or ""),
                ago=ago(item.get("created"), now),
                current=index == 0,
            )
            for index, item in enumerate(items)
        )
        next_import = ""
        if entry.get("nextImportTime"):
            next_import = f"{entry['nextImportTime']} (in {_until(entry['nextImportTime'], now)})"
        tags.append(
            TagView(
                name=name,
                source=source,
                source_kind=kind,
                importable=bool(spec_tag and spec_tag.importable),
                scheduled=bool(spec_tag and spec_tag.scheduled),
                reference=history[0].reference if history else "",
                digest=history[0].image if history else "",
                history=history,
                conditions=_condition_rows(entry.get("conditions") or [], now),
                last_import=ago(entry.get("lastImportTime"), now),
                next_import=next_import,
            )
        )
    return StreamView(
        namespace=namespace,
        name=str(meta.get("name") or ""),
        repository=str(
            status.get("publicDockerImageRepository") or status.get("dockerImageRepository") or ""
        ),
        lookup_local=bool((spec.get("lookupPolicy") or {}).get("local")),
        tags=tags,
    )


def _until(value: object, now: datetime) -> str:
    moment = parse_time(value)
    if moment is None:
        return ""
    return seconds_text(max(0.0, (moment - now).total_seconds())) or "0s"


@dataclass(frozen=True)
class Follower:
    """Something that moves when a tag moves."""

    kind: str
    namespace: str
    name: str
    detail: str
    """The container it sets, the trigger's target, or the alias's tag."""
    paused: bool
    pausable: bool
    """A trigger the console can pause or resume (BuildConfig and workload triggers)."""


WORKLOAD_KINDS = {
    "deployments": "Deployment",
    "statefulsets": "StatefulSet",
    "daemonsets": "DaemonSet",
    "cronjobs": "CronJob",
}


def followers(
    namespace: str,
    stream: str,
    tag: str,
    objects: Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]],
) -> list[Follower]:
    """Who follows ``namespace/stream:tag`` among ``objects`` (kind key -> namespace -> list):
    workloads with trigger annotations, BuildConfigs with ImageChange triggers on it, and
    tags of streams that follow it (aliases and references)."""
    from headwater.cli.triggers import watched_image
    from headwater.imports.model import spec_tags
    from headwater.workloads.triggers import TriggerError, parse_triggers, trigger_annotation

    key = (namespace, stream, tag)
    found: list[Follower] = []
    for kind_key, kind in WORKLOAD_KINDS.items():
        for ns, items in (objects.get(kind_key) or {}).items():
            for obj in items:
                annotation = trigger_annotation(obj)
                if annotation is None:
                    continue
                try:
                    triggers = parse_triggers(annotation[1], kind, ns)
                except TriggerError:
                    continue
                for trigger in triggers:
                    if trigger.key == key:
                        found.append(
                            Follower(
                                kind, ns, _name(obj),
                                f"container {trigger.name or trigger.index} ({trigger.field_path})",
                                trigger.paused, True,
                            )
                        )  # fmt: skip
    for ns, items in (objects.get("buildconfigs") or {}).items():
        for bc in items:
            spec = _spec(bc)
            for trigger in spec.get("triggers") or []:
                if trigger.get("type") != "ImageChange":
                    continue
                watched = watched_image(trigger, spec) or {}
                if watched.get("kind") != "ImageStreamTag":
                    continue
                if (str(watched.get("namespace") or ns), *_stream_tag(watched)) == key:
                    paused = (trigger.get("imageChange") or {}).get("paused") in (True, "true")
                    found.append(
                        Follower("BuildConfig", ns, _name(bc), "ImageChange trigger", paused, True)
                    )
    for ns, items in (objects.get("imagestreams") or {}).items():
        for other in items:
            for spec_tag in spec_tags(_spec(other)):
                if spec_tag.from_kind != "ImageStreamTag":
                    continue
                source_ns = spec_tag.from_namespace or ns
                if (source_ns, *_split(spec_tag.from_name, stream)) == key and not (
                    ns == namespace and _name(other) == stream and spec_tag.name == tag
                ):
                    found.append(
                        Follower(
                            "ImageStreamTag", ns, f"{_name(other)}:{spec_tag.name}",
                            "alias" if not spec_tag.reference else "reference", False, False,
                        )
                    )  # fmt: skip
    found.sort(key=lambda f: (f.namespace != namespace, f.namespace, f.kind, f.name))
    return found


def _stream_tag(ref: Mapping[str, Any]) -> tuple[str, str]:
    return _split(str(ref.get("name") or ""), "")


def _split(name: str, default_stream: str) -> tuple[str, str]:
    stream, sep, tag = name.partition(":")
    if not sep:
        return stream or default_stream, "latest"
    return stream or default_stream, tag


# --- a BuildConfig and its Builds ---------------------------------------------------


@dataclass
class BuildConfigView:
    namespace: str
    name: str
    strategy: str
    source: str
    git_uri: str
    output: str
    run_policy: str
    triggers: list[tuple[str, str, bool]]
    """(type, value, active) as ``set triggers`` lists them."""
    builds: list[BuildRow]


def buildconfig_view(
    bc: Mapping[str, Any], builds: Iterable[Mapping[str, Any]], now: datetime
) -> BuildConfigView:
    from headwater.cli.triggers import TriggerError, buildconfig_rows

    spec = _spec(bc)
    name = _name(bc)
    mine = [build_row(b, now) for b in builds if buildconfig_of(b) == name]
    mine.sort(key=lambda r: (r.number, r.created), reverse=True)
    try:
        triggers = [(row[0], row[1], row[2] == "true") for row in buildconfig_rows(bc)]
    except TriggerError:
        triggers = []
    return BuildConfigView(
        namespace=str(_meta(bc).get("namespace") or ""),
        name=name,
        strategy=str((spec.get("strategy") or {}).get("type") or ""),
        source=source_short(spec),
        git_uri=str(((spec.get("source") or {}).get("git") or {}).get("uri") or ""),
        output=_output(spec),
        run_policy=str(spec.get("runPolicy") or "Serial"),
        triggers=triggers,
        builds=mine,
    )


@dataclass(frozen=True)
class Stage:
    name: str
    started: str
    duration: str


@dataclass
class BuildView:
    row: BuildRow
    namespace: str
    finished: bool
    reason: str
    message: str
    log_snippet: str
    commit: str
    commit_message: str
    author: str
    pushed: str
    stages: list[Stage]
    spec_yaml: str
    cancellable: bool


def build_view(build: Mapping[str, Any], now: datetime) -> BuildView:
    import yaml

    status = _status(build)
    row = build_row(build, now)
    git = (status.get("revision") or {}).get("git") or {}
    stages = [
        Stage(
            name=str(s.get("name") or ""),
            started=ago(s.get("startTime"), now),
            duration=stage_duration(s.get("durationMilliseconds")),
        )
        for s in status.get("stages") or []
    ]
    pushed = str(status.get("outputDockerImageReference") or "")
    if row.digest:
        pushed = f"{pushed} ({row.digest})" if pushed else row.digest
    return BuildView(
        row=row,
        namespace=str(_meta(build).get("namespace") or ""),
        finished=row.phase in TERMINAL,
        reason=str(status.get("reason") or ""),
        message=str(status.get("message") or ""),
        log_snippet=strip_ansi(str(status.get("logSnippet") or "")),
        commit=str(git.get("commit") or ""),
        commit_message=str(git.get("message") or ""),
        author=str((git.get("author") or {}).get("name") or ""),
        pushed=pushed,
        stages=stages,
        spec_yaml=yaml.safe_dump(dict(_spec(build)), sort_keys=True, default_flow_style=False),
        cancellable=row.phase not in TERMINAL,
    )


# --- the trace: commit -> Build -> digest -> tag move -> rollout ------------------------


@dataclass(frozen=True)
class TraceStep:
    label: str
    at: str
    """RFC 3339, empty when the step has not happened (or its time is not known)."""
    after: str
    """Time since the previous step with a time."""
    detail: str
    done: bool


@dataclass
class Trace:
    title: str
    steps: list[TraceStep]
    notes: list[str]
    complete: bool
    total: str
    """From the first step with a time to the last."""


def _digest_of(reference: str) -> str:
    _, sep, digest = reference.partition("@")
    return digest if sep else ""


def _containers(template_spec: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [*(template_spec.get("initContainers") or []), *(template_spec.get("containers") or [])]


def _pod_spec(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}


def _owned_by(obj: Mapping[str, Any], uid: object) -> bool:
    return any(ref.get("uid") == uid for ref in _meta(obj).get("ownerReferences") or [])


def _revision(rs: Mapping[str, Any]) -> int:
    value = str((_meta(rs).get("annotations") or {}).get("deployment.kubernetes.io/revision") or "")
    return int(value) if value.isdigit() else 0


def rollout_of(
    deployment: Mapping[str, Any],
    digest: str,
    replicasets: Iterable[Mapping[str, Any]],
    pods: Iterable[Mapping[str, Any]],
) -> tuple[Mapping[str, Any] | None, list[Mapping[str, Any]]]:
    """The Deployment's ReplicaSet whose pods run ``digest`` (the newest such), and its pods."""
    uid = _meta(deployment).get("uid")
    mine = [rs for rs in replicasets if _owned_by(rs, uid)]
    running = [
        rs
        for rs in mine
        if any(_digest_of(str(c.get("image") or "")) == digest for c in _containers(_pod_spec(rs)))
    ]
    if not running:
        return None, []
    rs = max(running, key=_revision)
    rs_uid = _meta(rs).get("uid")
    return rs, [p for p in pods if _owned_by(p, rs_uid)]


def _ready_since(pod: Mapping[str, Any]) -> datetime | None:
    for condition in _status(pod).get("conditions") or []:
        if condition.get("type") == "Ready" and condition.get("status") == "True":
            return parse_time(condition.get("lastTransitionTime"))
    return None


def current_digest(
    deployment: Mapping[str, Any], replicasets: Iterable[Mapping[str, Any]], container: str | None
) -> str:
    """The digest the Deployment's newest ReplicaSet runs (in ``container``, else the first
    container whose image is pinned by digest)."""
    uid = _meta(deployment).get("uid")
    mine = [rs for rs in replicasets if _owned_by(rs, uid)]
    if not mine:
        candidates = _containers(_pod_spec(deployment))
    else:
        newest = max(mine, key=_revision)
        candidates = _containers(
            ((newest.get("spec") or {}).get("template") or {}).get("spec") or {}
        )
    for c in candidates:
        if container is None or c.get("name") == container:
            digest = _digest_of(str(c.get("image") or ""))
            if digest:
                return digest
    return ""


def trace(
    namespace: str,
    stream: Mapping[str, Any],
    tag: str,
    digest: str,
    builds: Iterable[Mapping[str, Any]],
    deployments: Iterable[Mapping[str, Any]],
    replicasets: Sequence[Mapping[str, Any]],
    pods: Sequence[Mapping[str, Any]],
    now: datetime,
) -> Trace:
    """The chain of ``digest`` in ``stream:tag``: the commit and Build that made it, the tag
    move that recorded it, and the rollout of each Deployment that follows the tag.

    Times come from the objects themselves: the Build's start and completion, the tag's
    history item (``created``: when the tag moved), the ReplicaSet's creation (the
    rollout began) and its pods' Ready conditions (the rollout finished).
    """
    name = _name(stream)
    notes: list[str] = []
    entry: Mapping[str, Any] = next(
        (e for e in _status(stream).get("tags") or [] if str(e.get("tag") or "") == tag), {}
    )
    items = entry.get("items") or []
    item = next((i for i in items if str(i.get("image") or "") == digest), None)
    raw: list[tuple[str, datetime | None, str, bool]] = []
    made_by = [
        b
        for b in builds
        if str(((_status(b).get("output") or {}).get("to") or {}).get("imageDigest") or "")
        == digest
    ]
    if made_by:
        build = max(made_by, key=lambda b: _meta(b).get("creationTimestamp") or "")
        status = _status(build)
        git = (status.get("revision") or {}).get("git") or {}
        commit = str(git.get("commit") or "")
        message = str(git.get("message") or "").splitlines()[0] if git.get("message") else ""
        raw.append(
            (
                "Commit",
                None,
                f"{commit[:12]} {message}".strip() if commit else "not a Git build",
                bool(commit),
            )
        )
        raw.append(
            (
                "Build started",
                parse_time(status.get("startTimestamp"))
                or parse_time(_meta(build).get("creationTimestamp")),
                _name(build),
                True,
            )
        )
        raw.append(
            (
                "Image pushed",
                parse_time(status.get("completionTimestamp")),
                f"{_name(build)} {status.get('phase') or NEW}: {digest}",
                str(status.get("phase") or "") == "Complete",
            )
        )
    else:
        notes.append(
            "No Build in this namespace pushed this image:"
            " it was imported or pushed from elsewhere."
        )
        raw.append(("Image", None, digest, bool(digest)))
    raw.append(
        (
            f"Tag {name}:{tag} moved",
            parse_time(item.get("created")) if item else None,
            str(item.get("dockerImageReference") or "") if item else "not in the tag's history",
            item is not None,
        )
    )
    followers_found = followers(
        namespace, name, tag, {"deployments": {namespace: list(deployments)}}
    )
    by_name = {_name(d): d for d in deployments}
    if not followers_found:
        notes.append(f"No Deployment in {namespace} follows {name}:{tag} (trigger annotation).")
    for follower in followers_found:
        deployment = by_name.get(follower.name)
        if deployment is None:
            continue
        rs, rs_pods = rollout_of(deployment, digest, replicasets, pods)
        label = f"Deployment {follower.name}"
        if rs is None:
            state = "paused trigger" if follower.paused else "not rolled out (yet)"
            raw.append((f"{label}: rollout", None, state, False))
            continue
        raw.append(
            (
                f"{label}: ReplicaSet created",
                parse_time(_meta(rs).get("creationTimestamp")),
                _name(rs),
                True,
            )
        )
        wanted = int((rs.get("spec") or {}).get("replicas") or 0)
        ready_times = [t for t in (_ready_since(p) for p in rs_pods) if t is not None]
        ready = len(ready_times) >= wanted and wanted > 0
        raw.append(
            (
                f"{label}: pods ready",
                max(ready_times) if ready and ready_times else None,
                f"{len(ready_times)}/{wanted} ready",
                ready,
            )
        )
    steps: list[TraceStep] = []
    previous: datetime | None = None
    first: datetime | None = None
    for label, at, detail, done in raw:
        after = ""
        if at is not None:
            if previous is not None:
                after = "+" + (seconds_text((at - previous).total_seconds()) or "0s")
            previous = at
            first = first or at
        steps.append(TraceStep(label, _iso(at), after, detail, done))
    total = seconds_text((previous - first).total_seconds()) if previous and first else ""
    return Trace(
        title=f"{namespace}/{name}:{tag} @ {digest[:19]}"
        if digest
        else f"{namespace}/{name}:{tag}",
        steps=steps,
        notes=notes,
        complete=all(s.done for s in steps),
        total=total,
    )


def _iso(moment: datetime | None) -> str:
    from headwater.timefmt import format_time

    return format_time(moment) if moment is not None else ""
