"""BuildConfig handlers (buildconfigs.v1.build.headwater.dev)."""

from __future__ import annotations

from typing import Any

import kopf

from headwater.handlers._reconcile import reconcile_placeholder
from headwater.status import BUILDCONFIG


@kopf.on.event(group="build.headwater.dev", version="v1", plural="buildconfigs")
def reconcile_buildconfig(type: str | None, body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    """Converge the BuildConfig's status (placeholder until its reconciliation lands)."""
    reconcile_placeholder(BUILDCONFIG, type, body, patch)
