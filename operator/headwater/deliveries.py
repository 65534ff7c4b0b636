"""Where the webhook port's deliveries go, on every replica.

Every replica serves the webhook port (build webhooks and registry push
notifications) for its whole life, so a Git host's or a registry's call that
the Service sends to a standby is not lost. What a call asks for is done in
one of two ways:

- **On the leader** (its kopf start-up handler :meth:`Deliveries.attach`-ed the
  build controller and the import runner), at once and in process, as before.
- **On a standby** (nothing attached), the stateless part only: the call was
  authenticated (the trigger's secret, the registry token) and decided by the
  same code, and the request is written onto the object, where the leader's
  watch finds it:

  - a build: the start request annotation
    ``start.build.headwater.dev/<request-id>`` on the BuildConfig, marked
    ``triggered`` so that the leader checks the strategy as for any triggered
    build (as the user recorded as the spec's author). The request id comes
    from the delivery, so a redelivery asks for the same build. The standby
    waits a few seconds for the Build to appear and answers with its name,
    else 202 with the request id;
  - an import: the ``image.headwater.dev/import-requested`` annotation on each
    stream a push moved, merged with the tags already requested, written
    with the resourceVersion read (a concurrent writer makes it read again).

A write that fails is answered 500 (or 503), so the sender retries: nothing
is acknowledged that is not written.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from aiohttp import web
from lightkube import ALL_NS, AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.types import PatchType

from headwater.builds.instantiate import REQUEST_PREFIX, StartRequest, request_value
from headwater.builds.model import LABEL_REQUEST, label_value
from headwater.builds.webhook_server import BuildWebhooks
from headwater.config import Config
from headwater.imports.model import StreamRef
from headwater.imports.notifications import Push, tags_to_import
from headwater.imports.plan import REQUEST_ANNOTATION, requested_tags
from headwater.kube import get_or_none, is_conflict, is_gone, plain_dict
from headwater.metrics import DELIVERIES
from headwater.resources import Build, BuildConfig, ImageStream
from headwater.servers import webhook_app

logger = logging.getLogger(__name__)

BUILD_WAIT_SECONDS = 10.0
"""How long a standby waits for the leader to make the Build it asked for."""
BUILD_POLL_SECONDS = 0.5
CONFLICT_RETRIES = 5
"""Read-modify-write rounds on an ImageStream before the call is answered 503."""


class BuildStarter(Protocol):
    async def instantiate(self, namespace: str, name: str, request: StartRequest) -> str: ...


class PushImporter(Protocol):
    def import_now(self, pushes: list[Push]) -> tuple[int, int]: ...


class Unavailable(RuntimeError):
    """The request could not be written for now; the sender should retry."""


def merged_request(annotations: Mapping[str, str] | None, tags: set[str]) -> str:
    """The import request annotation asking for ``tags`` besides what it already asks for."""
    existing = requested_tags(annotations)
    if existing is not None and "*" in existing:
        return "*"
    return ",".join(sorted(set(existing or ()) | tags))


class Deliveries:
    """The webhook port's two sinks: the leader's controllers, or requests on the objects."""

    def __init__(
        self,
        kube: AsyncClient,
        namespaces: tuple[str, ...] = (),
        *,
        build_wait_seconds: float = BUILD_WAIT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kube = kube
        self.namespaces = namespaces
        """The namespaces the operator serves (empty: all)."""
        self.build_wait_seconds = build_wait_seconds
        self.clock = clock
        self.builds: BuildStarter | None = None
        self.imports: PushImporter | None = None

    @property
    def leading(self) -> bool:
        return self.builds is not None

    def attach(self, builds: BuildStarter, imports: PushImporter) -> None:
        """This replica's kopf runs: act in process from now on."""
        self.builds, self.imports = builds, imports

    def detach(self) -> None:
        """kopf stopped (or never ran here): write requests for the leader."""
        self.builds, self.imports = None, None

    # -- builds ---------------------------------------------------------------

    async def instantiate(self, namespace: str, name: str, request: StartRequest) -> str | None:
        """Start a build of ``namespace/name``: its name, or None when the leader has not
        made it yet (the request is written; answer 202)."""
        builds = self.builds
        if builds is not None:
            DELIVERIES.labels("build", "leader").inc()
            return await builds.instantiate(namespace, name, request)
        request = dataclasses.replace(request, triggered=True)
        key = f"{REQUEST_PREFIX}{request.id}"
        patch = {"metadata": {"annotations": {key: request_value(request)}}}
        await self.kube.patch(
            BuildConfig, name, patch, namespace=namespace, patch_type=PatchType.MERGE
        )
        DELIVERIES.labels("build", "standby").inc()
        logger.info("standby: asked for build %s of %s/%s", request.id, namespace, name)
        return await self._wait_for_build(namespace, request.id)

    async def _wait_for_build(self, namespace: str, request_id: str) -> str | None:
        deadline = self.clock() + self.build_wait_seconds
        selector: dict[str, Any] = {LABEL_REQUEST: label_value(request_id)}
        while True:
            async for build in self.kube.list(Build, namespace=namespace, labels=selector):
                return str(plain_dict(build)["metadata"]["name"])
            if self.clock() >= deadline:
                return None
            await asyncio.sleep(BUILD_POLL_SECONDS)

    # -- registry pushes ------------------------------------------------------

    async def on_push(self, pushes: list[Push]) -> tuple[int, int]:
        """Import what ``pushes`` moved: (streams, tags) affected."""
        imports = self.imports
        if imports is not None:
            DELIVERIES.labels("registry", "leader").inc()
            return imports.import_now(pushes)
        bodies = await self._streams()
        found = tags_to_import(pushes, bodies)
        for ref, tags in found.items():
            await self._request_import(ref, tags, bodies[ref])
        DELIVERIES.labels("registry", "standby").inc()
        if found:
            logger.info(
                "standby: asked for imports of %d tag(s) in %d stream(s)",
                sum(len(t) for t in found.values()),
                len(found),
            )
        return len(found), sum(len(tags) for tags in found.values())

    async def _streams(self) -> dict[StreamRef, dict[str, Any]]:
        bodies: dict[StreamRef, dict[str, Any]] = {}
        scopes: tuple[str | None, ...] = self.namespaces or (None,)
        for scope in scopes:
            listed = self.kube.list(ImageStream, namespace=scope or ALL_NS, chunk_size=500)
            async for item in listed:
                body = plain_dict(item)
                metadata = body.get("metadata") or {}
                bodies[StreamRef(str(metadata["namespace"]), str(metadata["name"]))] = body
        return bodies

    async def _request_import(
        self, ref: StreamRef, tags: set[str], body: Mapping[str, Any]
    ) -> None:
        for _ in range(CONFLICT_RETRIES):
            metadata = body.get("metadata") or {}
            value = merged_request(metadata.get("annotations"), tags)
            if (metadata.get("annotations") or {}).get(REQUEST_ANNOTATION) == value:
                return  # already asked for (a redelivery, or another replica)
            patch = {
                "metadata": {
                    "resourceVersion": metadata.get("resourceVersion"),
                    "annotations": {REQUEST_ANNOTATION: value},
                }
            }
            try:
                await self.kube.patch(
                    ImageStream, ref.name, patch, namespace=ref.namespace,
                    patch_type=PatchType.MERGE,
                )  # fmt: skip
                return
            except ApiError as exc:
                if is_gone(exc):
                    return  # deleted since listed: nothing to import into
                if not is_conflict(exc):
                    raise
            found = await get_or_none(self.kube, ImageStream, ref.name, ref.namespace)
            if found is None:
                return
            body = found
        raise Unavailable(f"{ref.namespace}/{ref.name}: the import request kept conflicting")


def deliveries_app(config: Config, deliveries: Deliveries) -> web.Application:
    """The webhook port's application: registry notifications (with the token) and the
    build webhooks, both going through ``deliveries``."""
    hooks = BuildWebhooks.for_operator(deliveries.kube, deliveries.instantiate, config.namespaces)
    return webhook_app(config.registry_webhook_token, deliveries.on_push, hooks.routes())
