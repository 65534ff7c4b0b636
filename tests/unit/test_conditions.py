"""operator/headwater/conditions.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from headwater.conditions import get_condition, remove_condition, set_condition
from headwater.timefmt import format_time

T0 = datetime(2025, 1, 2, 3, 4, 5, 678, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)


def test_new_condition() -> None:
    result = set_condition([], "Ready", "True", "Imported", "all tags imported", 3, T0)
    assert result == [
        {
            "type": "Ready",
            "status": "True",
            "reason": "Imported",
            "message": "all tags imported",
            "lastTransitionTime": "2025-01-02T03:04:05Z",
            "observedGeneration": 3,
        }
    ]


def test_same_status_keeps_transition_time() -> None:
    first = set_condition(None, "Ready", "False", "Pending", "waiting", 1, T0)
    second = set_condition(first, "Ready", "False", "Failed", "registry down", 2, T1)
    assert second[0]["lastTransitionTime"] == format_time(T0)
    assert second[0]["reason"] == "Failed"
    assert second[0]["observedGeneration"] == 2


def test_status_change_moves_transition_time() -> None:
    first = set_condition(None, "Ready", "False", "Pending", "", 1, T0)
    second = set_condition(first, "Ready", "True", "Imported", "", 1, T1)
    assert second[0]["lastTransitionTime"] == format_time(T1)


def test_other_conditions_and_order_kept_input_untouched() -> None:
    conditions = [
        {"type": "Importing", "status": "True", "reason": "X", "message": "",
         "lastTransitionTime": "2020-01-01T00:00:00Z", "observedGeneration": 1},
        {"type": "Ready", "status": "True", "reason": "Y", "message": "",
         "lastTransitionTime": "2020-01-01T00:00:00Z", "observedGeneration": 1},
    ]  # fmt: skip
    snapshot = [dict(c) for c in conditions]
    result = set_condition(conditions, "Importing", "False", "Done", "", 2, T1)
    assert [c["type"] for c in result] == ["Importing", "Ready"]
    assert result[1] == snapshot[1]
    assert conditions == snapshot


def test_idempotent() -> None:
    once = set_condition(None, "Ready", "Unknown", "NotImplemented", "m", 1, T0)
    assert set_condition(once, "Ready", "Unknown", "NotImplemented", "m", 1, T1) == once


def test_get_and_remove() -> None:
    conditions = set_condition(None, "Ready", "True", "R", "", 1, T0)
    assert get_condition(conditions, "Ready") == conditions[0]
    assert get_condition(conditions, "Stalled") is None
    assert get_condition(None, "Ready") is None
    assert remove_condition(conditions, "Ready") == []


def test_rejects_bad_status_and_naive_time() -> None:
    with pytest.raises(ValueError, match="True, False or Unknown"):
        set_condition(None, "Ready", "Yes", "R", "", 1, T0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="naive"):
        set_condition(None, "Ready", "True", "R", "", 1, datetime(2025, 1, 1))
