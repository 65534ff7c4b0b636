"""``lookupPolicy.local``: short image names in pod templates resolve to a stream's image.

OpenShift resolves ``image: web:latest`` in a pod spec to the image the
ImageStreamTag ``web:latest`` of the same namespace points at, when that
stream has ``lookupPolicy.local: true``. Headwater does it at admission, on
the workload (Deployment, StatefulSet, DaemonSet, Job, CronJob) rather than
on its pods, so a pod template never differs from its ReplicaSet's; bare
Pods (those no controller owns) are resolved too.

Pure: the caller hands in the streams of the namespace; the result is the
new container lists for the pod spec, or nothing when no name resolves.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from headwater.imports.model import STREAM_NAME_PATTERN, newest_item
from headwater.registry.reference import TAG_PATTERN

ADMISSION_CONFIGURATION = "headwater.dev"
"""The MutatingWebhookConfiguration through which the operator applies lookup at admission
(``doctor`` checks it exists)."""

POD_SPEC_PATHS: Mapping[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
CONTAINER_LISTS = ("initContainers", "containers")

# A stream name (DNS subdomain) with an optional tag: no registry, no path, no digest.
_SHORT_NAME = re.compile(rf"^(?P<stream>{STREAM_NAME_PATTERN})(?::(?P<tag>{TAG_PATTERN}))?$")


def short_name(image: str) -> tuple[str, str] | None:
    """``web`` -> (``web``, ``latest``); ``web:1.0`` -> (``web``, ``1.0``); else None."""
    match = _SHORT_NAME.match(image)
    if match is None:
        return None
    return match["stream"], match["tag"] or "latest"


def stream_image(
    stream: Mapping[str, Any], tag: str, registry: str | None, namespace: str
) -> str | None:
    """What ``<stream>:<tag>`` resolves to for consumers, if the stream allows local lookup."""
    spec = stream.get("spec") or {}
    if not (spec.get("lookupPolicy") or {}).get("local"):
        return None
    item = newest_item(stream.get("status"), tag)
    if item is None or not item.get("dockerImageReference"):
        return None
    policy = "Source"
    for spec_tag in spec.get("tags") or []:
        if spec_tag.get("name") == tag:
            policy = (spec_tag.get("referencePolicy") or {}).get("type") or "Source"
    name = (stream.get("metadata") or {}).get("name")
    if policy == "Local" and registry and item.get("image"):
        return f"{registry}/{namespace}/{name}@{item['image']}"
    return str(item["dockerImageReference"])


def pod_spec(kind: str, obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    path = POD_SPEC_PATHS.get(kind)
    if path is None:
        return None
    node: Any = obj
    for key in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node if isinstance(node, Mapping) else None


def resolve_pod_spec(
    spec: Mapping[str, Any],
    streams: Mapping[str, Mapping[str, Any]],
    registry: str | None,
    namespace: str,
) -> dict[str, list[dict[str, Any]]]:
    """New ``containers``/``initContainers`` lists where a short name resolved; else empty."""
    changed: dict[str, list[dict[str, Any]]] = {}
    for field in CONTAINER_LISTS:
        containers: Sequence[Mapping[str, Any]] = spec.get(field) or []
        new = [dict(c) for c in containers]
        for container in new:
            name = short_name(str(container.get("image") or ""))
            if name is None or name[0] not in streams:
                continue
            image = stream_image(streams[name[0]], name[1], registry, namespace)
            if image is not None:
                container["image"] = image
        if new != [dict(c) for c in containers]:
            changed[field] = new
    return changed
