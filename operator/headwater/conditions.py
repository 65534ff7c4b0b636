"""Pure helpers for ``status.conditions`` lists in the metav1.Condition shape.

Conditions are plain dicts (what kopf bodies and JSON patches hold), typed with
a TypedDict. Every function returns new lists and never mutates its input, so a
handler can compare the result with what the object has and skip the write.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Literal, TypeAlias, TypedDict

from headwater.timefmt import format_time

ConditionStatus: TypeAlias = Literal["True", "False", "Unknown"]


class Condition(TypedDict):
    """metav1.Condition: one aspect of an object's state."""

    type: str
    status: ConditionStatus
    reason: str
    message: str
    lastTransitionTime: str
    observedGeneration: int


def get_condition(conditions: Iterable[Mapping[str, Any]] | None, type_: str) -> Condition | None:
    """The condition of that type, or None."""
    for condition in conditions or ():
        if condition.get("type") == type_:
            return _normalise(condition)
    return None


def _normalise(condition: Mapping[str, Any]) -> Condition:
    return Condition(
        type=str(condition.get("type", "")),
        status=condition.get("status", "Unknown"),
        reason=str(condition.get("reason", "")),
        message=str(condition.get("message", "")),
        lastTransitionTime=str(condition.get("lastTransitionTime", "")),
        observedGeneration=int(condition.get("observedGeneration", 0)),
    )


def set_condition(
    conditions: Iterable[Mapping[str, Any]] | None,
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    observed_generation: int,
    now: datetime,
) -> list[Condition]:
    """A copy of ``conditions`` with the ``type_`` condition set.

    ``lastTransitionTime`` moves to ``now`` only when the status changes (or the
    condition is new): a reason or message change is not a transition. The
    position of an existing condition is kept so unchanged lists compare equal.
    """
    if status not in ("True", "False", "Unknown"):
        raise ValueError(f"condition status must be True, False or Unknown, not {status!r}")
    result: list[Condition] = []
    found = False
    for existing in conditions or ():
        current = _normalise(existing)
        if current["type"] != type_:
            result.append(current)
            continue
        found = True
        transition = (
            current["lastTransitionTime"]
            if current["status"] == status and current["lastTransitionTime"]
            else format_time(now)
        )
        result.append(
            Condition(
                type=type_,
                status=status,
                reason=reason,
                message=message,
                lastTransitionTime=transition,
                observedGeneration=observed_generation,
            )
        )
    if not found:
        result.append(
            Condition(
                type=type_,
                status=status,
                reason=reason,
                message=message,
                lastTransitionTime=format_time(now),
                observedGeneration=observed_generation,
            )
        )
    return result


def remove_condition(conditions: Iterable[Mapping[str, Any]] | None, type_: str) -> list[Condition]:
    """A copy of ``conditions`` without the ``type_`` condition."""
    return [_normalise(c) for c in conditions or () if c.get("type") != type_]
