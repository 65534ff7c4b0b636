"""Build handlers (builds.v1.build.headwater.dev), and the Jobs and pods that run them.

A change to a Build, to its Job or to its pod queues the Build on the build
controller's work queue: start it when its run policy allows, follow its
pod, finish it. The Job and pod handlers only map the object to its Build
(by the ``build.headwater.dev/build`` label), and skip events that change
nothing the controller reads (:func:`~headwater.builds.observe.child_state`).
"""

from __future__ import annotations

from typing import Any

import kopf

from headwater.builds.model import (
    ANNOTATION_BUILDCONFIG,
    LABEL_BUILD,
    build_of_child,
    buildconfig_of,
)
from headwater.builds.observe import child_state
from headwater.handlers.lifecycle import memo_build_controller


@kopf.on.event(group="build.headwater.dev", version="v1", plural="builds")
async def reconcile_build(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Queue the Build: start, follow or finish it."""
    metadata = body.get("metadata") or {}
    namespace, name = str(metadata.get("namespace")), str(metadata.get("name"))
    controller = memo_build_controller(memo)
    if type == "DELETED":
        controller.forget(namespace, name)
        return
    version = metadata.get("resourceVersion")
    controller.observe_build(
        namespace, name, buildconfig_of(body), str(version) if version else None
    )


def _queue_owner(type: str | None, body: kopf.Body, memo: kopf.Memo) -> None:
    metadata = body.get("metadata") or {}
    build = build_of_child(metadata)
    if not build:
        return
    controller = memo_build_controller(memo)
    namespace, uid = str(metadata.get("namespace")), str(metadata.get("uid"))
    if not controller.child_changed(
        namespace, build, uid, child_state(body), deleted=type == "DELETED"
    ):
        return
    # The Job and pod carry the BuildConfig's name too (annotation).
    bc = (metadata.get("annotations") or {}).get(ANNOTATION_BUILDCONFIG)
    controller.observe_build(namespace, build, str(bc) if bc else None)


@kopf.on.event("batch", "v1", "jobs", labels={LABEL_BUILD: kopf.PRESENT})
async def build_job_changed(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A build Job changed (created, failed on its deadline, deleted)."""
    _queue_owner(type, body, memo)


@kopf.on.event("", "v1", "pods", labels={LABEL_BUILD: kopf.PRESENT})
async def build_pod_changed(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A build pod changed (a container started or ended, evicted, deleted)."""
    _queue_owner(type, body, memo)
