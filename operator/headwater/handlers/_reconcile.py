"""The shared shape of a level-based status reconcile.

Handlers are ``@kopf.on.event`` handlers: every watch event (including the
initial listing at start-up and status edits made by others) recomputes the
status from the object and writes only the fields that differ. Nothing is
written when the status is already right, so an idle cluster costs no API
writes; and since no change-detecting handlers are registered, kopf keeps no
progress or diff-base annotations on the objects either.

Status goes through ``patch.status``: kopf sends it to the ``/status``
subresource. Returning a value from a handler would land under
``status.<handler-id>``, which the CRD schemas prune.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import kopf

from headwater.metrics import RECONCILE_DURATION
from headwater.status import KindStatus, reconcile_status


def reconcile_placeholder(
    kind: KindStatus, event_type: str | None, body: Mapping[str, Any], patch: kopf.Patch
) -> None:
    """Put the status patch of ``body`` into kopf's ``patch`` (nothing if already right)."""
    if event_type == "DELETED" or (body.get("metadata") or {}).get("deletionTimestamp"):
        return
    started = time.perf_counter()
    changes = reconcile_status(kind, body, datetime.now(UTC))
    for key, value in changes.items():
        patch.status[key] = value
    RECONCILE_DURATION.labels(kind=kind.kind).observe(time.perf_counter() - started)
