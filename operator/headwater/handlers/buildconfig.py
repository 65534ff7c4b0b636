"""BuildConfig handlers (buildconfigs.v1.build.headwater.dev).

Every watch event queues the BuildConfig on the build controller's work
queue, which turns its start requests (``start.build.headwater.dev/<id>``
annotations) and triggers into Builds and keeps its status current.
"""

from __future__ import annotations

import copy
from typing import Any

import kopf

from headwater.handlers.lifecycle import memo_build_controller


@kopf.on.event(group="build.headwater.dev", version="v1", plural="buildconfigs")
async def reconcile_buildconfig(
    type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any
) -> None:
    """Queue the BuildConfig: start requested builds; write observedGeneration and Ready."""
    metadata = body.get("metadata") or {}
    if type == "DELETED":
        memo_build_controller(memo).deleted_buildconfig(
            str(metadata.get("namespace")), str(metadata.get("name"))
        )
        return
    # kopf's body is a view over the event; the controller keeps it past this event.
    memo_build_controller(memo).observe_buildconfig(copy.deepcopy(dict(body)))
