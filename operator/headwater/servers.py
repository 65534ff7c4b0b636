"""The operator's own HTTP endpoints: probes, Prometheus metrics, webhooks.

Why not kopf's ``liveness_endpoint``: it exists only while kopf runs, and with
leader election kopf runs on the leader alone. Standby replicas must still
answer their probes (or the kubelet would restart them in a loop) and export
metrics, so the process serves both from start to exit and reports kopf's
state as part of the leader's health.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from aiohttp import web

from headwater.imports.notifications import (
    MAX_BODY_BYTES,
    NotificationError,
    Push,
    parse_notification,
)
from headwater.metrics import exposition

logger = logging.getLogger(__name__)


@dataclass
class Health:
    """What the probes report; mutated by the runtime as it moves between states."""

    leading: bool = False
    """This replica runs kopf (holds the Lease, or runs standalone)."""
    kopf_ready: asyncio.Event = field(default_factory=asyncio.Event)
    """Set by kopf once its start-up handlers finished and watching began."""
    failure: str | None = None
    """Why the process is unhealthy; None while healthy."""
    admission_ready: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once this replica answers admission requests (or serves none): a replica
    behind the admission Service is not Ready before."""

    def live(self) -> tuple[bool, str]:
        if self.failure is not None:
            return False, self.failure
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        live, reason = self.live()
        if not live:
            return False, reason
        if not self.admission_ready.is_set():
            return False, "admission webhook is starting"
        if self.leading and not self.kopf_ready.is_set():
            return False, "leader: kopf is starting"
        return True, "leader" if self.leading else "standby"


def health_app(health: Health) -> web.Application:
    """``/healthz`` (liveness) and ``/readyz`` (readiness)."""

    async def healthz(_: web.Request) -> web.Response:
        ok, text = health.live()
        return web.Response(status=200 if ok else 500, text=text)

    async def readyz(_: web.Request) -> web.Response:
        ok, text = health.ready()
        return web.Response(status=200 if ok else 503, text=text)

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


def metrics_app() -> web.Application:
    """``/metrics`` in the Prometheus text format."""

    async def metrics(_: web.Request) -> web.Response:
        body, content_type = exposition()
        response = web.Response(body=body)
        # The content type carries parameters (version, charset), which
        # aiohttp's content_type argument refuses; set the raw header.
        response.headers["Content-Type"] = content_type
        return response

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    return app


REGISTRY_NOTIFICATIONS_PATH = "/registry/notifications"


def webhook_app(
    token: str | None,
    on_push: Callable[[list[Push]], Awaitable[tuple[int, int]]],
    routes: Iterable[web.AbstractRouteDef] = (),
) -> web.Application:
    """``POST /registry/notifications``: a registry (or CI) says a repository moved.

    Served only with a ``token`` (without one, anyone could make the operator
    import); ``routes`` are more endpoints on the same port (the build webhooks,
    which authenticate each call themselves). Authenticated by
    ``Authorization: Bearer <token>``, compared in constant time; a wrong or
    missing token gets 401 with no hint of which. Answers 202
    with how many streams and tags will be imported, 400 with the reason for
    a body that is not a notification, 413 beyond the size limit.
    """
    expected = f"Bearer {token}".encode()

    async def notifications(request: web.Request) -> web.Response:
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            return web.json_response({"error": "unauthorized"}, status=401)
        try:
            pushes = parse_notification(await request.read())
        except NotificationError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        try:
            streams, tags = await on_push(pushes)
        except Exception:
            # Not acknowledged, so the registry sends it again.
            logger.exception("registry notification: could not request the imports")
            return web.json_response({"error": "could not request the imports"}, status=503)
        return web.json_response({"streams": streams, "tags": tags}, status=202)

    app = web.Application(client_max_size=MAX_BODY_BYTES)
    if token:
        app.router.add_post(REGISTRY_NOTIFICATIONS_PATH, notifications)
    app.router.add_routes(list(routes))
    return app


async def start_site(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Serve ``app`` on host:port; the caller cleans the returned runner up."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError:
        await runner.cleanup()
        raise
    return runner
