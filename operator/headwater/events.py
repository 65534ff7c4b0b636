"""Kubernetes Events the operator posts on transitions (what `kubectl describe` shows)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from lightkube import AsyncClient
from lightkube.models.core_v1 import EventSource, ObjectReference
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Event

from headwater.kube import API_ERRORS

logger = logging.getLogger(__name__)

EVENT_COMPONENT = "headwater-operator"
MESSAGE_MAX = 1024


async def post_event(
    kube: AsyncClient,
    body: Mapping[str, Any],
    event_type: str,
    reason: str,
    message: str,
    now: datetime,
) -> None:
    """A core/v1 Event about ``body`` (any namespaced object); best effort, never raises."""
    metadata = body.get("metadata") or {}
    name, namespace = str(metadata.get("name")), str(metadata.get("namespace"))
    event = Event(
        metadata=ObjectMeta(generateName=f"{name}.", namespace=namespace),
        involvedObject=ObjectReference(
            apiVersion=body.get("apiVersion"),
            kind=body.get("kind"),
            name=name,
            namespace=namespace,
            uid=metadata.get("uid"),
            resourceVersion=metadata.get("resourceVersion"),
        ),
        type=event_type,
        reason=reason,
        message=message[:MESSAGE_MAX],
        source=EventSource(component=EVENT_COMPONENT),
        reportingComponent=EVENT_COMPONENT,
        firstTimestamp=now,
        lastTimestamp=now,
        count=1,
    )
    try:
        await kube.create(event)
    except API_ERRORS as exc:  # a timeout too: an Event is never worth failing the caller
        logger.warning("event %s on %s/%s not posted: %s", reason, namespace, name, exc)
