"""A BuildConfig's builds: listing them, and pruning the finished ones beyond its history limits."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.types import CascadeType

from headwater.builds.model import (
    LABEL_BUILDCONFIG,
    OPENSHIFT_BUILDCONFIG_LABEL,
    buildconfig_of,
    label_value,
    summarize,
)
from headwater.builds.policy import builds_to_prune
from headwater.kube import plain_dict
from headwater.resources import Build, BuildConfig


async def builds_of(kube: AsyncClient, namespace: str, bc: str) -> list[dict[str, Any]]:
    """The Builds of BuildConfig ``namespace/bc``, by Headwater's label or OpenShift's."""

    async def listed(label: str) -> list[dict[str, Any]]:
        return [
            plain_dict(b)
            async for b in kube.list(Build, namespace=namespace, labels={label: label_value(bc)})
        ]

    # Headwater's label, and OpenShift's for Builds migrated from OpenShift.
    found: dict[str, dict[str, Any]] = {}
    for batch in await asyncio.gather(
        listed(LABEL_BUILDCONFIG), listed(OPENSHIFT_BUILDCONFIG_LABEL)
    ):
        for body in batch:
            found[str(body["metadata"]["name"])] = body
    # A shortened label value could be shared by two long names.
    return [b for b in found.values() if buildconfig_of(b) == bc]


async def prune(kube: AsyncClient, namespace: str, bc: str) -> list[str]:
    """Delete the finished Builds beyond the BuildConfig's history limits; their names."""
    try:
        config = plain_dict(await kube.get(BuildConfig, bc, namespace=namespace))
    except ApiError:
        return []
    spec = config.get("spec") or {}
    summaries = [summarize(b) for b in await builds_of(kube, namespace, bc)]
    doomed = builds_to_prune(
        summaries,
        spec.get("successfulBuildsHistoryLimit"),
        spec.get("failedBuildsHistoryLimit"),
    )
    for name in doomed:
        with contextlib.suppress(ApiError):
            await kube.delete(Build, name, namespace=namespace, cascade=CascadeType.BACKGROUND)
    return doomed
