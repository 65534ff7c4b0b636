"""Admission: short image names resolve through ImageStreams with ``lookupPolicy.local``.

A mutating webhook on workloads and bare Pods; the work is in
:mod:`headwater.imports.lookup`. It never blocks admission: it is registered
with ``failurePolicy: Ignore``, a stream that cannot be read counts as absent,
and anything unresolvable is left as is with a warning in the API response.
Every replica serves it, so the streams a short name may mean are read from
the API server (one GET each, only for images written as short names), not
from the leader's cache.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import kopf
from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError

from headwater.handlers.admission import memo_admission
from headwater.imports.lookup import (
    CONTAINER_LISTS,
    POD_SPEC_PATHS,
    pod_spec,
    resolve_pod_spec,
    short_name,
)
from headwater.kube import get_or_none
from headwater.resources import ImageStream

logger = logging.getLogger(__name__)

WORKLOADS = {
    "Pod": ("", "v1", "pods"),
    "Deployment": ("apps", "v1", "deployments"),
    "StatefulSet": ("apps", "v1", "statefulsets"),
    "DaemonSet": ("apps", "v1", "daemonsets"),
    "Job": ("batch", "v1", "jobs"),
    "CronJob": ("batch", "v1", "cronjobs"),
}
assert set(WORKLOADS) == set(POD_SPEC_PATHS)


async def read_streams(
    kube: AsyncClient, namespace: str, names: Iterable[str]
) -> dict[str, dict[str, Any]]:
    """The ImageStreams among ``names`` in ``namespace``; one that cannot be read is left out."""
    streams = {}
    for name in sorted(names):
        try:
            stream = await get_or_none(kube, ImageStream, name, namespace)
        except ApiError as exc:  # e.g. a namespace the namespaced install may not read
            logger.debug("lookup: cannot read imagestream %s/%s: %s", namespace, name, exc)
            continue
        if stream is not None:
            streams[name] = stream
    return streams


async def resolve_short_names(
    kind: str,
    body: kopf.Body,
    patch: kopf.Patch,
    warnings: list[str],
    memo: kopf.Memo,
) -> None:
    """Put resolved images into ``patch``; warn about short names that did not resolve."""
    if kind == "Pod" and (body.get("metadata") or {}).get("ownerReferences"):
        return  # its controller's template was resolved already
    spec = pod_spec(kind, body)
    if spec is None:
        return
    names = {
        found[0]
        for field in CONTAINER_LISTS
        for container in spec.get(field) or []
        if (found := short_name(str(container.get("image") or ""))) is not None
    }
    if not names:
        return  # every pod admission passes here: most name full references
    namespace = str((body.get("metadata") or {}).get("namespace") or "")
    context = memo_admission(memo)
    streams = await read_streams(context.kube, namespace, names)
    changed = resolve_pod_spec(spec, streams, context.registry, namespace)
    if changed:
        target: Any = patch
        for key in POD_SPEC_PATHS[kind]:
            target = target.setdefault(key, {})
        target.update(changed)
    # What is still a short name of a stream that allows lookup did not resolve:
    # its tag has no image yet. Say so; admission goes on with the name as written.
    for field in CONTAINER_LISTS:
        for container in changed.get(field) or spec.get(field) or []:
            image = str(container.get("image") or "")
            name = short_name(image)
            stream = streams.get(name[0]) if name else None
            if stream and ((stream.get("spec") or {}).get("lookupPolicy") or {}).get("local"):
                warnings.append(
                    f"container {container.get('name')}: {image}: the ImageStreamTag has no"
                    " image yet; left unchanged"
                )


def register(registry: kopf.OperatorRegistry) -> None:
    """Register the mutating handlers (into the admission server's registry)."""
    for kind, (group, version, plural) in WORKLOADS.items():

        async def handler(
            body: kopf.Body,
            patch: kopf.Patch,
            warnings: list[str],
            memo: kopf.Memo,
            kind: str = kind,
            **_: Any,
        ) -> None:
            await resolve_short_names(kind, body, patch, warnings, memo)

        kopf.on.mutate(
            group,
            version,
            plural,
            id=f"lookup-{plural}",
            operations=["CREATE", "UPDATE"],
            ignore_failures=True,
            side_effects=False,
            registry=registry,
        )(handler)
