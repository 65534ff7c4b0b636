"""operator/headwater/status.py: the placeholder status and the write-only-on-change rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from headwater.status import (
    BUILD,
    BUILDCONFIG,
    NOT_IMPLEMENTED,
    KindStatus,
    reconcile_status,
    status_patch,
)

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)


def body(generation: int, status: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"metadata": {"name": "web", "generation": generation}, "spec": {}}
    if status is not None:
        out["status"] = status
    return out


@pytest.mark.parametrize(
    ("kind", "condition_type"),
    [(BUILDCONFIG, "Ready"), (BUILD, "Succeeded")],
)
def test_fresh_object_gets_placeholder(kind: KindStatus, condition_type: str) -> None:
    patch = reconcile_status(kind, body(1), NOW)
    assert patch["observedGeneration"] == 1
    [condition] = patch["conditions"]
    assert condition["type"] == condition_type
    assert condition["status"] == "Unknown"
    assert condition["reason"] == NOT_IMPLEMENTED
    assert "issue" in condition["message"]
    assert condition["observedGeneration"] == 1


@pytest.mark.parametrize("kind", [BUILDCONFIG, BUILD])
def test_second_pass_writes_nothing(kind: KindStatus) -> None:
    first = reconcile_status(kind, body(1), NOW)
    later = NOW + timedelta(hours=1)
    assert reconcile_status(kind, body(1, first), later) == {}


def test_new_generation_updates_but_keeps_transition_time() -> None:
    first = reconcile_status(BUILDCONFIG, body(1), NOW)
    patch = reconcile_status(BUILDCONFIG, body(2, first), NOW + timedelta(minutes=1))
    assert patch["observedGeneration"] == 2
    assert patch["conditions"][0]["observedGeneration"] == 2
    assert (
        patch["conditions"][0]["lastTransitionTime"] == first["conditions"][0]["lastTransitionTime"]
    )


def test_fields_owned_by_others_are_kept_and_not_rewritten() -> None:
    first = reconcile_status(BUILD, body(1), NOW)
    status = {**first, "phase": "New"}
    assert reconcile_status(BUILD, body(1, status), NOW) == {}


def test_status_patch_only_differences() -> None:
    assert status_patch({"a": 1, "b": [1]}, {"a": 1, "b": [2]}) == {"b": [2]}
    assert status_patch(None, {"a": 1}) == {"a": 1}
