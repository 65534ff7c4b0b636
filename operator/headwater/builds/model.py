"""Names, labels and typed views shared by everything that handles builds.

A Build's identity lives in its metadata: the BuildConfig it came from, its
number (``<bc>-<n>``), the run policy it was queued under, and the start
request that made it. Those are what the run policy, pruning and the CLI
select on, so they are written once here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

GROUP = "build.headwater.dev"
API_VERSION = f"{GROUP}/v1"

LABEL_BUILDCONFIG = f"{GROUP}/buildconfig"
"""On Builds: the BuildConfig's name (selects a BuildConfig's builds)."""
LABEL_BUILD = f"{GROUP}/build"
"""On build Jobs and pods: the Build's name (as a label value, see :func:`label_value`)."""
ANNOTATION_BUILD = f"{GROUP}/build"
"""On build Jobs and pods: the Build's full name."""
LABEL_REQUEST = f"{GROUP}/request"
"""On Builds: the start request that made it, so a request never makes two builds."""
ANNOTATION_NUMBER = f"{GROUP}/build-number"
ANNOTATION_BUILDCONFIG = f"{GROUP}/buildconfig"
ANNOTATION_RUN_POLICY = f"{GROUP}/run-policy"
OPENSHIFT_BUILDCONFIG_LABEL = "openshift.io/build-config.name"
"""Also set, so selectors written for OpenShift keep working."""
OPENSHIFT_LEGACY_BUILDCONFIG_LABEL = "buildconfig"
OPENSHIFT_START_POLICY_LABEL = "openshift.io/build.start-policy"
OPENSHIFT_NUMBER_ANNOTATION = "openshift.io/build.number"

NEW, PENDING, RUNNING = "New", "Pending", "Running"
COMPLETE, FAILED, ERROR, CANCELLED = "Complete", "Failed", "Error", "Cancelled"
TERMINAL = frozenset({COMPLETE, FAILED, ERROR, CANCELLED})
UNSUCCESSFUL = frozenset({FAILED, ERROR, CANCELLED})
_RANK = {NEW: 0, PENDING: 1, RUNNING: 2, COMPLETE: 3, FAILED: 3, ERROR: 3, CANCELLED: 3}

SERIAL, PARALLEL, SERIAL_LATEST_ONLY = "Serial", "Parallel", "SerialLatestOnly"

# Containers of the build pod, in the order they run.
FETCH_CONTAINER = "fetch-source"
BUILD_CONTAINER = "build"


def phase_rank(phase: str | None) -> int:
    """Phases only move forward: New < Pending < Running < any terminal phase."""
    return _RANK.get(phase or NEW, 0)


LABEL_VALUE_MAX = 63


def label_value(name: str) -> str:
    """``name`` as a label value: object names may be longer than the 63 characters a
    label value may hold; a long one keeps its start and gets a hash of the whole."""
    if len(name) <= LABEL_VALUE_MAX:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: LABEL_VALUE_MAX - 9].rstrip('-.')}-{digest}"


def build_name(buildconfig: str, number: int) -> str:
    return f"{buildconfig}-{number}"


def job_name(build: str) -> str:
    """The build's Job, named like OpenShift's build pod (``<build>-build``).

    The Job controller puts the Job's name in a label of its pods, so it is
    kept within a label value's 63 characters.
    """
    return label_value(f"{build}-build")


@dataclass(frozen=True)
class BuildSummary:
    """What the run policy and pruning need to know of one Build."""

    name: str
    number: int
    phase: str
    cancel_requested: bool = False
    has_job: bool = False
    completion: str = ""
    """completionTimestamp (RFC 3339), empty until the build ends."""

    @property
    def terminal(self) -> bool:
        return self.phase in TERMINAL

    @property
    def active(self) -> bool:
        """Holds a slot of a Serial policy: it was started and has not ended."""
        return not self.terminal and (self.has_job or self.phase in (PENDING, RUNNING))


def build_number(body: Mapping[str, Any]) -> int:
    """The build's number from its annotation, else its name's suffix; 0 if neither parses."""
    metadata = body.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    for text in (
        annotations.get(ANNOTATION_NUMBER),
        str(metadata.get("name", "")).rsplit("-", 1)[-1],
    ):
        if text is not None and str(text).isdigit():
            return int(text)
    return 0


def summarize(body: Mapping[str, Any]) -> BuildSummary:
    metadata = body.get("metadata") or {}
    status = body.get("status") or {}
    return BuildSummary(
        name=str(metadata.get("name", "")),
        number=build_number(body),
        phase=str(status.get("phase") or NEW),
        cancel_requested=bool(status.get("cancelled")),
        has_job=bool(status.get("jobName")),
        completion=str(status.get("completionTimestamp") or ""),
    )


def buildconfig_of(body: Mapping[str, Any]) -> str | None:
    """The BuildConfig a Build belongs to (label, then annotation), or None for a lone Build."""
    metadata = body.get("metadata") or {}
    labels = metadata.get("labels") or {}
    annotations = metadata.get("annotations") or {}
    # Headwater's own keys first, then the ones OpenShift writes, so Builds
    # migrated from OpenShift still belong to their BuildConfig.
    # Annotations hold full names; labels may be shortened (see label_value).
    name = (
        annotations.get(ANNOTATION_BUILDCONFIG)
        or annotations.get(OPENSHIFT_BUILDCONFIG_LABEL)
        or labels.get(LABEL_BUILDCONFIG)
        or labels.get(OPENSHIFT_BUILDCONFIG_LABEL)
    )
    return str(name) if name else None


def build_of_child(metadata: Mapping[str, Any]) -> str | None:
    """The Build a Job or pod belongs to (annotation, else label), or None."""
    annotations = metadata.get("annotations") or {}
    labels = metadata.get("labels") or {}
    name = annotations.get(ANNOTATION_BUILD) or labels.get(LABEL_BUILD)
    return str(name) if name else None


def controlled_by(obj: Mapping[str, Any], kind: str, uid: object) -> bool:
    """Is ``obj`` controlled (controller owner reference) by the ``kind`` object with ``uid``?"""
    if not uid:
        return False
    return any(
        isinstance(ref, Mapping)
        and ref.get("kind") == kind
        and ref.get("uid") == uid
        and ref.get("controller") is True
        for ref in (obj.get("metadata") or {}).get("ownerReferences") or []
    )


def job_pod(pods: Sequence[Mapping[str, Any]], job: Mapping[str, Any]) -> dict[str, Any] | None:
    """The build's pod among ``pods``: the newest one ``job`` controls, else None.

    Labels say nothing about who made a pod; only the Job controller's owner
    reference (with the Job's uid) does.
    """
    uid = (job.get("metadata") or {}).get("uid")
    owned = [dict(p) for p in pods if controlled_by(p, "Job", uid)]
    if not owned:
        return None
    # backoffLimit 0: at most one pod, unless one is being replaced after deletion.
    owned.sort(key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp") or ""))
    return owned[-1]
