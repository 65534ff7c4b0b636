"""Pure status computation for BuildConfigs and Builds (ImageStreams: :mod:`headwater.imports`).

For now both only report that their reconciliation is not implemented yet:
``observedGeneration`` plus one condition of status Unknown. The shape is the
one later work fills in: a function from the object (spec, metadata,
current status) and the time to the status it should have, and
:func:`status_patch` to find the fields that differ, so an object that is
already right costs no API write.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from headwater.conditions import set_condition

NOT_IMPLEMENTED = "NotImplemented"


@dataclass(frozen=True)
class KindStatus:
    """What the placeholder reconciliation of one kind reports."""

    kind: str
    """The Kubernetes kind."""
    condition_type: str
    """The summary condition: Ready, or Succeeded for Builds."""
    message: str
    """Which piece of work will implement the reconciliation."""


BUILDCONFIG = KindStatus(
    kind="BuildConfig",
    condition_type="Ready",
    message=(
        "BuildConfig reconciliation is not implemented yet: build instantiation and "
        "triggers arrive with the BuildConfig/Build execution issue"
    ),
)
BUILD = KindStatus(
    kind="Build",
    condition_type="Succeeded",
    message=(
        "Build execution is not implemented yet: build Jobs with buildah arrive with "
        "the BuildConfig/Build execution issue"
    ),
)


def placeholder_status(
    kind: KindStatus,
    generation: int,
    status: Mapping[str, Any] | None,
    now: datetime,
) -> dict[str, Any]:
    """The full status the object should have, keeping fields this code does not own."""
    current = dict(status or {})
    current["observedGeneration"] = generation
    current["conditions"] = set_condition(
        current.get("conditions"),
        kind.condition_type,
        "Unknown",
        NOT_IMPLEMENTED,
        kind.message,
        generation,
        now,
    )
    return current


def status_patch(current: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> dict[str, Any]:
    """The top-level status fields of ``desired`` that differ from ``current``.

    Empty means nothing to write. Lists (conditions) are replaced whole, as a
    JSON merge patch does.
    """
    existing = current or {}
    return {key: value for key, value in desired.items() if existing.get(key) != value}


def reconcile_status(kind: KindStatus, body: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """The status patch for one object body; empty when its status is already right."""
    metadata = body.get("metadata") or {}
    generation = int(metadata.get("generation") or 0)
    status = body.get("status")
    return status_patch(status, placeholder_status(kind, generation, status, now))
