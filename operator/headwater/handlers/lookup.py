"""Admission: short image names resolve through ImageStreams with ``lookupPolicy.local``.

A mutating webhook on workloads and bare Pods; the work is in
:mod:`headwater.imports.lookup`. It never blocks admission: kopf registers
it with ``failurePolicy: Ignore``, and anything unresolvable is left as is
with a warning in the API response.
"""

from __future__ import annotations

from typing import Any

import kopf

from headwater.handlers.lifecycle import memo_config, memo_import_runner
from headwater.imports.lookup import (
    CONTAINER_LISTS,
    POD_SPEC_PATHS,
    pod_spec,
    resolve_pod_spec,
    short_name,
)
from headwater.imports.model import StreamRef

WORKLOADS = {
    "Pod": ("", "v1", "pods"),
    "Deployment": ("apps", "v1", "deployments"),
    "StatefulSet": ("apps", "v1", "statefulsets"),
    "DaemonSet": ("apps", "v1", "daemonsets"),
    "Job": ("batch", "v1", "jobs"),
    "CronJob": ("batch", "v1", "cronjobs"),
}
assert set(WORKLOADS) == set(POD_SPEC_PATHS)


def resolve_short_names(
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
    bodies = memo_import_runner(memo).bodies
    streams = {
        name: bodies[StreamRef(namespace, name)]
        for name in names
        if StreamRef(namespace, name) in bodies
    }
    changed = resolve_pod_spec(spec, streams, memo_config(memo).registry, namespace)
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
    """Register the mutating handlers (only when an admission server is configured:
    kopf refuses to run admission handlers without one)."""
    for kind, (group, version, plural) in WORKLOADS.items():

        def handler(
            body: kopf.Body,
            patch: kopf.Patch,
            warnings: list[str],
            memo: kopf.Memo,
            kind: str = kind,
            **_: Any,
        ) -> None:
            resolve_short_names(kind, body, patch, warnings, memo)

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
