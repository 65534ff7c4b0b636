"""The build webhooks' HTTP side: read what :mod:`headwater.builds.webhooks` decides on.

A call goes: rate limit by source address → the checks that need nothing
(method, type, size) → the BuildConfig and its trigger Secrets read through
the API → :func:`~headwater.builds.webhooks.decide` → the build controller's
``instantiate``. The reads go through injected callables, so the handler is
tested without a cluster; :meth:`BuildWebhooks.for_operator` wires them to
lightkube and the operator's :class:`~headwater.builds.controller.BuildController`.

Logs name calls by the redacted path: the URL secret is a credential and
never reaches a log line, an exception message or a response.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web
from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.resources.core_v1 import Secret

from headwater.builds.instantiate import RequestError, StartRequest
from headwater.builds.webhooks import (
    MAX_BODY_BYTES,
    PATH_TEMPLATE,
    WEBHOOK_SECRET_KEY,
    HookCall,
    HookResult,
    RateLimiter,
    decide,
    precheck,
    referenced_secrets,
    refusal,
    shared_secret,
    too_many,
)
from headwater.kube import Failure, classify, is_gone, plain_dict
from headwater.resources import BuildConfig

logger = logging.getLogger(__name__)

ReadBuildConfig = Callable[[str, str], Awaitable[Mapping[str, Any] | None]]
"""(namespace, name) -> the BuildConfig, or None when it cannot be read."""
ReadSecret = Callable[[str, str], Awaitable[bytes | None]]
"""(namespace, Secret name) -> its WebHookSecretKey value, or None."""
Instantiate = Callable[[str, str, StartRequest], Awaitable[str | None]]
"""(namespace, BuildConfig, request) -> the Build's name, or None when the request is
written for the leader and its Build not made yet (a standby replica)."""


def _respond(result: HookResult, **extra: Any) -> web.Response:
    headers = {"Retry-After": str(result.retry_after)} if result.retry_after else None
    return web.json_response({**result.body, **extra}, status=result.status, headers=headers)


async def _read_limited(request: web.Request, limit: int) -> bytes:
    """The body, cut at ``limit + 1`` bytes: enough for the size check to see it is too big."""
    if request.content_length is not None and request.content_length > limit:
        return b"\0" * (limit + 1)  # refused unread
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = await request.content.read(min(65536, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


class BuildWebhooks:
    """The aiohttp handler of the build webhook URLs."""

    def __init__(
        self,
        read_buildconfig: ReadBuildConfig,
        read_secret: ReadSecret,
        instantiate: Instantiate,
        *,
        namespaces: tuple[str, ...] = (),
        limiter: RateLimiter | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.read_buildconfig = read_buildconfig
        self.read_secret = read_secret
        self.instantiate = instantiate
        self.namespaces = namespaces
        """The namespaces the operator serves (empty: all)."""
        self.limiter = limiter if limiter is not None else RateLimiter()
        self.clock = clock

    @classmethod
    def for_operator(
        cls, kube: AsyncClient, instantiate: Instantiate, namespaces: tuple[str, ...]
    ) -> BuildWebhooks:
        """Reads through the operator's client; builds through ``instantiate`` (the
        build controller on the leader, a start request on a standby)."""

        async def read_buildconfig(ns: str, name: str) -> Mapping[str, Any] | None:
            try:
                return plain_dict(await kube.get(BuildConfig, name, namespace=ns))
            except ApiError as exc:
                if classify(exc) in (Failure.GONE, Failure.FORBIDDEN):
                    return None
                raise

        async def read_secret(ns: str, name: str) -> bytes | None:
            try:
                secret = await kube.get(Secret, name, namespace=ns)
            except ApiError as exc:
                if classify(exc) in (Failure.GONE, Failure.FORBIDDEN):
                    return None
                raise
            encoded = (secret.data or {}).get(WEBHOOK_SECRET_KEY)
            if not encoded:
                return None
            try:
                return shared_secret(base64.b64decode(encoded, validate=True)) or None
            except (binascii.Error, ValueError):
                return None

        return cls(read_buildconfig, read_secret, instantiate, namespaces=namespaces)

    def routes(self) -> list[web.RouteDef]:
        """The route table entry (every method: a GET gets a 405 from the decision)."""
        return [web.route("*", PATH_TEMPLATE, self.handle)]

    async def handle(self, request: web.Request) -> web.Response:
        info = request.match_info
        call = HookCall(
            namespace=info["namespace"],
            name=info["name"],
            secret=info["secret"],
            hook=info["hook"],
            method=request.method,
            headers=dict(request.headers),
        )
        where = call.redacted_path
        allowed, retry_after = self.limiter.take(request.remote or "unknown", self.clock())
        if not allowed:
            # Debug only: a flood must not flood the log too.
            logger.debug("webhook %s: rate limited (%s)", where, request.remote)
            return _respond(too_many(retry_after))
        early = precheck(call)
        if early is not None:
            return _respond(early)
        call = dataclasses.replace(call, body=await _read_limited(request, MAX_BODY_BYTES))
        try:
            result = await self._decide(call)
            if result.request is None:
                if result.status >= 400:
                    logger.info("webhook %s: %s %s", where, result.status, result.body["message"])
                return _respond(result)
            try:
                build = await self.instantiate(call.namespace, call.name, result.request)
            except RequestError as exc:
                logger.warning("webhook %s: build not started: %s", where, exc)
                return _respond(
                    HookResult(422, {"status": "Failure", "code": 422, "message": str(exc)})
                )
            except ApiError as exc:
                if is_gone(exc):  # deleted since it was read
                    return _respond(refusal(call))
                raise
        except Exception:
            # Logged under the redacted path; the caller learns nothing of the cause.
            logger.exception("webhook %s: failed", where)
            return web.json_response(
                {"status": "Failure", "code": 500, "message": "could not start a build"},
                status=500,
            )
        if build is None:
            logger.info("webhook %s: request %s passed to the leader", where, result.request.id)
            accepted = HookResult(
                202,
                {
                    "status": "Success",
                    "code": 202,
                    "message": "build requested; the leader starts it",
                },
            )
            return _respond(accepted, request=result.request.id)
        logger.info("webhook %s: request %s is build %s", where, result.request.id, build)
        return _respond(result, build=build)

    async def _decide(self, call: HookCall) -> HookResult:
        early = precheck(call)  # again, now that the body's size is known
        if early is not None:
            return early
        if self.namespaces and call.namespace not in self.namespaces:
            return refusal(call)  # outside what this operator serves: as if absent
        bc = await self.read_buildconfig(call.namespace, call.name)
        secrets: dict[str, bytes | None] = {}
        if bc is not None:
            for name in referenced_secrets(bc, call.hook):
                secrets[name] = await self.read_secret(call.namespace, name)
        return decide(call, bc, secrets)
