"""Build handlers (builds.v1.build.headwater.dev)."""

from __future__ import annotations

from typing import Any

import kopf

from headwater.handlers._reconcile import reconcile_placeholder
from headwater.status import BUILD


@kopf.on.event(group="build.headwater.dev", version="v1", plural="builds")
def reconcile_build(type: str | None, body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    """Converge the Build's status (placeholder until its reconciliation lands)."""
    reconcile_placeholder(BUILD, type, body, patch)
