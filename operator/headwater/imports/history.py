"""From import outcomes to ImageStream status: tag history, tag conditions, Ready.

Every function returns new data and never mutates its input, so the runner
can compare the result with the object's status and write only what differs:
an import that found nothing new changes nothing and costs no API write.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from headwater.conditions import set_condition
from headwater.imports.model import SpecTag, tag_condition
from headwater.imports.plan import IMPORT_SUCCESS
from headwater.imports.verification import VERIFIED
from headwater.timefmt import format_time

READY = "Ready"


@dataclass(frozen=True)
class Imported:
    """The tag points at this image now."""

    image: str
    """Digest: of the chosen platform's manifest (Legacy) or of the index (PreserveOriginal)."""
    docker_image_reference: str
    """Where to pull it, pinned by digest."""
    platforms: tuple[Mapping[str, str], ...] = ()
    message: str = ""
    reference_digest: str = ""
    """What the tag named in the registry (the index, for a Legacy import from one)."""


@dataclass(frozen=True)
class Unchanged:
    """A scheduled check found the image the tag already has."""


@dataclass(frozen=True)
class Deferred:
    """Not tried: the registry host asked to back off; looked at again at ``until``."""

    until: datetime


@dataclass(frozen=True)
class Failed:
    """The tag could not be resolved; its history is kept."""

    reason: str
    message: str


@dataclass(frozen=True)
class Recorded:
    """A ``reference: true`` tag: pointed at, never imported."""

    docker_image_reference: str
    image: str = ""


Outcome = Imported | Unchanged | Failed | Recorded | Deferred


@dataclass(frozen=True)
class TagResult:
    """What happened to one tag in this reconcile."""

    tag: SpecTag
    outcome: Outcome
    generation: int
    attempted: bool = True
    """A registry (or source stream) was asked; sets lastImportTime."""


def _item(outcome: Imported | Recorded, generation: int, now: datetime) -> dict[str, Any]:
    item: dict[str, Any] = {
        "created": format_time(now),
        "dockerImageReference": outcome.docker_image_reference,
        "image": outcome.image,
        "generation": generation,
    }
    if isinstance(outcome, Imported) and outcome.platforms:
        item["platforms"] = [dict(p) for p in outcome.platforms]
    return item


def _same_image(item: Mapping[str, Any], outcome: Imported | Recorded) -> bool:
    return bool(
        item.get("image") == outcome.image
        and item.get("dockerImageReference") == outcome.docker_image_reference
    )


def _tag_condition(
    entry: Mapping[str, Any],
    status: str,
    reason: str,
    message: str,
    generation: int,
    now: datetime,
) -> list[dict[str, Any]]:
    """The tag's conditions with ImportSuccess set; the transition time moves only on change."""
    current = tag_condition(entry, IMPORT_SUCCESS)
    transition = (
        current.get("lastTransitionTime")
        if current is not None and current.get("status") == status
        else None
    ) or format_time(now)
    others = [c for c in entry.get("conditions") or [] if c.get("type") != IMPORT_SUCCESS]
    condition = {
        "type": IMPORT_SUCCESS,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": transition,
        "generation": generation,
    }
    return [condition, *others]


def apply_result(
    entry: Mapping[str, Any] | None, result: TagResult, now: datetime, limit: int
) -> dict[str, Any]:
    """The tag's new status entry after ``result``."""
    new: dict[str, Any] = {"tag": result.tag.name, **dict(entry or {})}
    items: list[Mapping[str, Any]] = list(new.get("items") or [])
    outcome = result.outcome
    if isinstance(outcome, Imported | Recorded):
        if not items or not _same_image(items[0], outcome):
            items.insert(0, _item(outcome, result.generation, now))
        new["items"] = [dict(i) for i in items[:limit]]
    if isinstance(outcome, Imported | Unchanged):
        message = outcome.message if isinstance(outcome, Imported) else ""
        current = tag_condition(new, IMPORT_SUCCESS)
        if isinstance(outcome, Unchanged) and current is not None:
            message = str(current.get("message") or "")
        new["conditions"] = _tag_condition(new, "True", "Imported", message, result.generation, now)
    elif isinstance(outcome, Failed):
        new["conditions"] = _tag_condition(
            new, "False", outcome.reason, outcome.message, result.generation, now
        )
    if isinstance(outcome, Failed | Imported) and result.attempted:
        new["lastImportTime"] = format_time(now)
    # nextImportTime is left alone here: the runner stamps it only on writes
    # that happen anyway (see ImportRunner._stamp_next_imports).
    return new


def apply_results(
    status: Mapping[str, Any] | None,
    results: Sequence[TagResult],
    now: datetime,
    limit: int,
) -> list[dict[str, Any]]:
    """``status.tags`` after ``results``, in the order of the existing entries then new ones.

    Entries for tags without a result (status-only tags, such as build
    outputs) are kept unchanged.
    """
    entries = [dict(e) for e in (status or {}).get("tags") or []]
    index = {e.get("tag"): i for i, e in enumerate(entries)}
    for result in results:
        if isinstance(result.outcome, Deferred):
            continue  # nothing happened to this tag
        position = index.get(result.tag.name)
        if position is None:
            index[result.tag.name] = len(entries)
            entries.append(apply_result(None, result, now, limit))
        else:
            entries[position] = apply_result(entries[position], result, now, limit)
    return entries


def ready_condition(
    conditions: Sequence[Mapping[str, Any]] | None,
    tags: Sequence[SpecTag],
    status_tags: Sequence[Mapping[str, Any]],
    generation: int,
    now: datetime,
) -> list[dict[str, Any]]:
    """The stream's conditions with Ready derived from its tags' ImportSuccess conditions."""
    by_name = {e.get("tag"): e for e in status_tags}
    failing: list[str] = []
    pending: list[str] = []
    for tag in tags:
        if tag.reference:
            continue
        condition = tag_condition(by_name.get(tag.name), IMPORT_SUCCESS)
        if condition is None:
            pending.append(tag.name)
        elif condition.get("status") == "False":
            failing.append(f"{tag.name} ({condition.get('reason')})")
    if failing:
        status, reason = "False", "ImportFailed"
        message = f"{len(failing)} tag(s) failing: " + ", ".join(failing[:5])
        if len(failing) > 5:
            message += f", and {len(failing) - 5} more"
    elif pending:
        status, reason = "Unknown", "Importing"
        message = "waiting for: " + ", ".join(pending[:5])
    else:
        status, reason, message = "True", "TagsResolved", "every tag points at an image"
    return [
        dict(c)
        for c in set_condition(conditions, READY, status, reason, message, generation, now)  # type: ignore[arg-type]
    ]


@dataclass(frozen=True)
class Transition:
    """Something worth a Kubernetes Event: a tag moved, failed or recovered."""

    type: str
    """``Normal`` or ``Warning``."""
    reason: str
    message: str


def transitions(
    before: Sequence[Mapping[str, Any]] | None, after: Sequence[Mapping[str, Any]]
) -> list[Transition]:
    """The Events a status change deserves; none when nothing a person cares about changed."""
    old = {e.get("tag"): e for e in before or []}
    events: list[Transition] = []
    moved: list[str] = []
    for entry in after:
        name = entry.get("tag")
        previous = old.get(name) or {}
        items, old_items = entry.get("items") or [], previous.get("items") or []
        image = items[0].get("image") if items else None
        old_image = old_items[0].get("image") if old_items else None
        if image and image != old_image:
            moved.append(f"{name} now points at {items[0].get('dockerImageReference')}")
        condition = tag_condition(entry, IMPORT_SUCCESS) or {}
        old_condition = tag_condition(previous, IMPORT_SUCCESS) or {}
        status, old_status = condition.get("status"), old_condition.get("status")
        if status == "False" and (
            old_status != "False" or old_condition.get("reason") != condition.get("reason")
        ):
            events.append(
                Transition(
                    "Warning",
                    "ImportFailed",
                    f"tag {name}: {condition.get('reason')}: {condition.get('message')}",
                )
            )
        elif status == "True" and old_status == "False":
            events.append(Transition("Normal", "ImportRecovered", f"tag {name} imports again"))
        verified = tag_condition(entry, VERIFIED) or {}
        old_verified = tag_condition(previous, VERIFIED) or {}
        if verified.get("status") == "False" and (
            old_verified.get("status") != "False"
            or old_verified.get("reason") != verified.get("reason")
        ):
            events.append(
                Transition(
                    "Warning",
                    "VerificationFailed",
                    f"tag {name}: {verified.get('reason')}: {verified.get('message')}",
                )
            )
        elif verified.get("status") == "True" and old_verified.get("status") != "True":
            events.append(
                Transition("Normal", "ImageVerified", f"tag {name}: {verified.get('message')}")
            )
    # One Event for the tags one write moved (a stream's first import moves them all):
    # an Event per tag made the first import of N streams N x tags API writes.
    if len(moved) == 1:
        events.insert(0, Transition("Normal", "TagMoved", f"tag {moved[0]}"))
    elif moved:
        events.insert(
            0, Transition("Normal", "TagMoved", f"{len(moved)} tags moved: " + "; ".join(moved))
        )
    return events
