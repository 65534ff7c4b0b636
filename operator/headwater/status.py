"""The write-only-on-change rule every status writer follows.

Each reconcile computes the status an object should have and writes only the
top-level fields that differ, so an object that is already right costs no API
write and an idle cluster costs none at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def status_patch(current: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> dict[str, Any]:
    """The top-level status fields of ``desired`` that differ from ``current``.

    Empty means nothing to write. Lists (conditions) are replaced whole, as a
    JSON merge patch does.
    """
    existing = current or {}
    return {key: value for key, value in desired.items() if existing.get(key) != value}
