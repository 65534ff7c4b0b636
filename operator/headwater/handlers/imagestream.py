"""ImageStream handlers (imagestreams.v1.image.headwater.dev)."""

from __future__ import annotations

from typing import Any

import kopf

from headwater.handlers._reconcile import reconcile_placeholder
from headwater.status import IMAGESTREAM


@kopf.on.event(group="image.headwater.dev", version="v1", plural="imagestreams")
def reconcile_imagestream(type: str | None, body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    """Converge the ImageStream's status (placeholder until its reconciliation lands)."""
    reconcile_placeholder(IMAGESTREAM, type, body, patch)
