"""kstatus for custom resources, as Flux's and Argo CD's health checks compute it.

A port of the generic rules of kstatus (sigs.k8s.io/cli-utils
``pkg/kstatus/status``: ``checkGenericProperties``, ``checkGeneration``,
``checkReadyCondition``) for kinds it has no special rules for, which is every
Headwater kind. Only what those rules read: deletion, ``observedGeneration``
against ``generation``, the ``Reconciling``/``Stalled`` conditions, then
``Ready``. An object with none of these is taken as Current, as kstatus does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

Status = Literal["InProgress", "Failed", "Current", "Terminating"]


def compute(obj: Mapping[str, Any]) -> tuple[Status, str]:
    """(status, message) of a custom resource."""
    metadata = obj.get("metadata") or {}
    status = obj.get("status") or {}
    if metadata.get("deletionTimestamp"):
        return "Terminating", "Resource scheduled for deletion"
    generation = metadata.get("generation")
    observed = status.get("observedGeneration")
    if generation is not None and observed is not None and int(observed) != int(generation):
        kind = obj.get("kind")
        return (
            "InProgress",
            f"{kind} generation is {generation}, but latest observed generation is {observed}",
        )
    conditions = status.get("conditions") or []
    for condition in conditions:
        if condition.get("type") == "Reconciling" and condition.get("status") == "True":
            return "InProgress", str(condition.get("message") or "")
        if condition.get("type") == "Stalled" and condition.get("status") == "True":
            return "Failed", str(condition.get("message") or "")
    for condition in conditions:
        if condition.get("type") != "Ready":
            continue
        if condition.get("status") == "True":
            return "Current", "Resource is Ready"
        if condition.get("status") in ("False", "Unknown"):
            return "InProgress", str(condition.get("message") or "")
    return "Current", "Resource is current"
