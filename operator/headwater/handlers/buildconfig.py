"""BuildConfig handlers (buildconfigs.v1.build.headwater.dev).

Every watch event hands the BuildConfig to the build controller, which turns
its start requests (``start.build.headwater.dev/<id>`` annotations) into
Builds and keeps its status current.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import kopf

from headwater.handlers.lifecycle import memo_build_controller
from headwater.metrics import RECONCILE_DURATION


@kopf.on.event(group="build.headwater.dev", version="v1", plural="buildconfigs")
async def reconcile_buildconfig(
    type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any
) -> None:
    """Start requested builds; write observedGeneration and Ready."""
    if type == "DELETED":
        metadata = body.get("metadata") or {}
        memo_build_controller(memo).forget_buildconfig(
            str(metadata.get("namespace")), str(metadata.get("name"))
        )
        return
    started = time.perf_counter()
    await memo_build_controller(memo).reconcile_buildconfig(copy.deepcopy(dict(body)))
    RECONCILE_DURATION.labels(kind="BuildConfig").observe(time.perf_counter() - started)
