"""Which tags of a stream need a registry import now, and when to look again.

A tag is imported when it is new, when its spec generation is newer than the
generation its ImportSuccess condition records, when someone asked (the
request annotation), when its scheduled slot has come, or, after a failure,
when its retry time has come. Nothing else causes registry traffic: a status
write (ours or anyone's) re-runs the plan and finds nothing to do.

Scheduled imports are placed on a ring, as OpenShift does with buckets: each
tag gets a fixed offset inside the interval from a hash of its name, so a
fleet of streams spreads evenly over the interval, a restarted operator keeps
the same slots (no thundering herd, nothing stored), and an unchanged tag
costs no status write.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from headwater.imports.model import SpecTag, StreamRef, newest_item, status_tag, tag_condition
from headwater.timefmt import parse_time

IMPORT_SUCCESS = "ImportSuccess"
REQUEST_ANNOTATION = "image.headwater.dev/import-requested"
"""Set by ``headwater import-image`` (or by hand) to import now: ``*`` or tag names, comma
separated. The operator removes it once the import is recorded."""
MIN_RETRY = timedelta(seconds=30)

Reason = Literal["new", "generation", "requested", "scheduled", "retry"]


@dataclass(frozen=True)
class ImportJob:
    """One tag to fetch from its registry."""

    tag: SpecTag
    reason: Reason
    known_digest: str | None
    """The tag's current image, when only a change is of interest (scheduled checks):
    the client then stops after one HEAD request if the registry says the same."""


def effective_generation(tag: SpecTag, stream_generation: int) -> int:
    """The tag's generation: its own when set, else the stream's."""
    # Without a mutating webhook nobody bumps spec.tags[].generation, so the
    # stream's generation stands in: any spec change re-checks every tag, at
    # the price of one HEAD request each when nothing moved.
    return tag.generation if tag.generation else stream_generation


def requested_tags(annotations: Mapping[str, str] | None) -> frozenset[str] | None:
    """Tags the request annotation names (``*`` for all), or None without the annotation."""
    value = (annotations or {}).get(REQUEST_ANNOTATION)
    if value is None:
        return None
    return frozenset(part.strip() for part in value.split(",") if part.strip()) or frozenset("*")


def is_digest_reference(name: str) -> bool:
    return "@" in name


def slot_offset(key: str, interval: int) -> int:
    """A tag's fixed place on the ring, in seconds from the start of each interval."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % interval


def next_slot(after: datetime, key: str, interval: int) -> datetime:
    """The first scheduled time of ``key`` strictly after ``after``."""
    seconds = int(after.timestamp())
    offset = slot_offset(key, interval)
    start = seconds - ((seconds - offset) % interval)
    return datetime.fromtimestamp(start + interval, UTC)


def retry_at(last_attempt: datetime, failing_since: datetime, interval: int) -> datetime:
    """When a failing tag is tried again: backing off with how long it has failed, capped."""
    failing_for = max(last_attempt - failing_since, MIN_RETRY)
    return last_attempt + min(failing_for, timedelta(seconds=interval))


def tag_key(stream: StreamRef, tag: str) -> str:
    return f"{stream}:{tag}"


def due_time(
    stream: StreamRef,
    tag: SpecTag,
    status: Mapping[str, Any] | None,
    interval: int,
    checked: datetime | None = None,
) -> datetime | None:
    """When this importable tag should next be looked at without a spec change, if ever.

    ``checked`` is when this process last looked (or started): an unchanged
    scheduled tag is not written back, so status alone cannot say.
    """
    entry = status_tag(status, tag.name) or {}
    condition = tag_condition(entry, IMPORT_SUCCESS)
    last = parse_time(entry.get("lastImportTime"))
    if condition is not None and condition.get("status") == "False" and last is not None:
        since = parse_time(condition.get("lastTransitionTime")) or last
        return retry_at(last, since, interval)
    if not tag.importable or not tag.scheduled or is_digest_reference(tag.from_name):
        return None  # OpenShift imports digest references once
    epoch = datetime.fromtimestamp(0, UTC)
    return next_slot(max(last or epoch, checked or epoch), tag_key(stream, tag.name), interval)


def plan_imports(
    stream: StreamRef,
    tags: list[SpecTag],
    status: Mapping[str, Any] | None,
    stream_generation: int,
    now: datetime,
    *,
    interval: int,
    checked: Mapping[str, datetime] | None = None,
    requested: Collection[str] | None = None,
) -> list[ImportJob]:
    """The registry imports this stream needs at ``now``."""
    jobs: list[ImportJob] = []
    for tag in tags:
        if not tag.importable:
            continue
        entry = status_tag(status, tag.name) or {}
        condition = tag_condition(entry, IMPORT_SUCCESS)
        newest = newest_item(status, tag.name)
        reason: Reason | None = None
        if condition is None:
            reason = "new"
        elif int(condition.get("generation") or 0) < effective_generation(tag, stream_generation):
            reason = "generation"
        elif requested is not None and ("*" in requested or tag.name in requested):
            reason = "requested"
        else:
            due = due_time(
                stream, tag, status, interval, (checked or {}).get(tag_key(stream, tag.name))
            )
            if due is not None and due <= now:
                reason = "retry" if condition.get("status") == "False" else "scheduled"
        if reason is None:
            continue
        known = str(newest.get("image") or "") if newest and reason == "scheduled" else None
        jobs.append(ImportJob(tag=tag, reason=reason, known_digest=known or None))
    return jobs


def next_wakeup(
    stream: StreamRef,
    tags: list[SpecTag],
    status: Mapping[str, Any] | None,
    interval: int,
    checked: Mapping[str, datetime] | None = None,
) -> datetime | None:
    """The earliest time any tag of the stream is due, for the scheduler."""
    seen = checked or {}
    # Failing aliases are looked at again too: a grant or a new source tag
    # raises no event on this stream.
    times = [
        due
        for tag in tags
        if (due := due_time(stream, tag, status, interval, seen.get(tag_key(stream, tag.name))))
        is not None
    ]
    return min(times) if times else None
