"""operator/headwater/status.py: the write-only-on-change rule."""

from __future__ import annotations

from headwater.status import status_patch


def test_status_patch_only_differences() -> None:
    assert status_patch({"a": 1, "b": [1]}, {"a": 1, "b": [2]}) == {"b": [2]}
    assert status_patch(None, {"a": 1}) == {"a": 1}
