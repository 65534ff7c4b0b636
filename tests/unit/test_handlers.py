"""The kopf handlers register for the right resources and patch status only on change."""

from __future__ import annotations

from typing import Any

import kopf

import headwater.handlers  # noqa: F401  (registers the handlers)
from headwater.handlers._reconcile import reconcile_placeholder
from headwater.handlers.lifecycle import FINALIZER, configure_settings
from headwater.status import IMAGESTREAM


def test_handlers_registered_for_the_three_kinds() -> None:
    registry = kopf.get_default_registry()
    resources = registry._watching.get_all_handlers()
    selectors = {
        (h.selector.group, h.selector.version, h.selector.plural)
        for h in resources
        if h.selector is not None
    }
    assert {
        ("image.headwater.dev", "v1", "imagestreams"),
        ("build.headwater.dev", "v1", "buildconfigs"),
        ("build.headwater.dev", "v1", "builds"),
    } <= selectors


def obj(status: dict[str, Any] | None = None, **meta: Any) -> kopf.Body:
    raw: dict[str, Any] = {"metadata": {"name": "web", "generation": 1, **meta}, "spec": {}}
    if status is not None:
        raw["status"] = status
    return kopf.Body(raw)  # type: ignore[arg-type]


def test_status_patched_then_left_alone() -> None:
    patch = kopf.Patch()
    reconcile_placeholder(IMAGESTREAM, "ADDED", obj(), patch)
    status = dict(patch["status"])
    assert status["observedGeneration"] == 1
    again = kopf.Patch()
    reconcile_placeholder(IMAGESTREAM, "MODIFIED", obj(status), again)
    assert not again  # idle: no API write


def test_deleting_objects_are_not_patched() -> None:
    patch = kopf.Patch()
    reconcile_placeholder(IMAGESTREAM, "DELETED", obj(), patch)
    reconcile_placeholder(IMAGESTREAM, None, obj(deletionTimestamp="2025-01-01T00:00:00Z"), patch)
    assert not patch


def test_settings() -> None:
    settings = kopf.OperatorSettings()
    configure_settings(settings, "pod-1")
    assert settings.persistence.finalizer == FINALIZER == "headwater.dev/finalizer"
    assert isinstance(settings.persistence.progress_storage, kopf.AnnotationsProgressStorage)
    assert isinstance(settings.persistence.diffbase_storage, kopf.AnnotationsDiffBaseStorage)
    assert settings.watching.server_timeout
    assert settings.watching.client_timeout
    assert settings.posting.reporting_instance == "pod-1"
