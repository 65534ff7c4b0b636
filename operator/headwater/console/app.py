"""The aiohttp application: guards, pages, fragments and live streams."""

from __future__ import annotations

import asyncio
import html
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from headwater.console import security, views
from headwater.console.live import (
    KEEPALIVE_SECONDS,
    Busy,
    Hub,
    Informer,
    sse_comment,
    sse_frame,
    wait_any,
)
from headwater.console.source import (
    BUILDCONFIGS,
    BUILDS,
    IMAGESTREAMS,
    Kind,
    Problem,
    Source,
    is_problem,
    problem,
)

HERE = Path(__file__).parent
log = logging.getLogger("headwater.console")
NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
DEBOUNCE_SECONDS = 0.25
"""Changes arriving within this time are sent as one update."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Settings:
    address: str = "127.0.0.1"
    port: int = 8090
    context_name: str = ""
    token: str = ""


SOURCE = web.AppKey("source", Source)
SETTINGS = web.AppKey("settings", Settings)
HUB = web.AppKey("hub", Hub)
TEMPLATES = web.AppKey("templates", jinja2.Environment)
ALLOWED = web.AppKey("allowed_hosts", frozenset)


def templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env


def now() -> datetime:
    return datetime.now(UTC)


# --- guards ------------------------------------------------------------------------


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Host check (DNS rebinding), CSRF on POST, security headers on every answer."""
    allowed = request.app[ALLOWED]
    if not security.host_ok(request.headers.get("Host"), allowed):
        return _with_headers(
            web.Response(status=421, text="refused: unexpected Host header (DNS rebinding?)\n")
        )
    if request.method not in ("GET", "HEAD", "POST"):
        return _with_headers(web.Response(status=405, text="method not allowed\n"))
    if request.method == "POST":
        token = request.app[SETTINGS].token
        given = request.headers.get(security.CSRF_HEADER)
        if given is None:
            form = await request.post()
            value = form.get(security.CSRF_FIELD)
            given = value if isinstance(value, str) else None
        if not security.token_ok(token, given):
            return _with_headers(
                web.Response(status=403, text="refused: missing or bad CSRF token\n")
            )
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        _with_headers(exc)
        raise
    except Problem as exc:
        response = error_page(request, request.match_info.get("ns", ""), exc)
    except Exception as exc:
        if not is_problem(exc):
            # A bug: logged here with its trace, the page says only that it happened.
            log.exception("%s %s failed", request.method, request.path)
            exc = Problem("Internal error", "the console failed; its log has the details", 500)
        response = error_page(request, request.match_info.get("ns", ""), problem(exc))
    return _with_headers(response)


def _with_headers(response: web.StreamResponse) -> web.StreamResponse:
    if not response.prepared:
        for name, value in security.SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
    return response


# --- rendering ---------------------------------------------------------------------


def _context(request: web.Request, namespace: str, **more: Any) -> dict[str, Any]:
    settings = request.app[SETTINGS]
    return {
        "namespace": namespace,
        "context_name": settings.context_name,
        "csrf_token": settings.token,
        "csrf_headers": json.dumps({security.CSRF_HEADER: settings.token}),
        **more,
    }


def render(request: web.Request, name: str, status: int = 200, **context: Any) -> web.Response:
    html = request.app[TEMPLATES].get_template(name).render(**context)
    return web.Response(text=html, status=status, content_type="text/html")


def fragment(request: web.Request, name: str, **context: Any) -> str:
    return str(request.app[TEMPLATES].get_template(name).render(**context))


def error_page(request: web.Request, namespace: str, found: Problem) -> web.Response:
    if request.headers.get("HX-Request"):
        return render(request, "_problem.html", status=200, problem=found)
    return render(
        request, "error.html", status=found.status, **_context(request, namespace, problem=found)
    )


def _namespace(request: web.Request) -> str:
    namespace = request.match_info["ns"]
    if not NAMESPACE.match(namespace):
        raise web.HTTPNotFound(text="not a namespace name\n")
    return namespace


async def _listed(
    source: Source, kind: Kind, namespace: str
) -> tuple[list[dict[str, Any]], Problem | None]:
    try:
        items, _ = await source.list(kind, namespace)
    except Exception as exc:
        if not is_problem(exc):
            raise
        return [], problem(exc, f"listing {kind.label} in {namespace}")
    return items, None


# --- pages -------------------------------------------------------------------------


async def index(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound(f"/ns/{request.app[SOURCE].default_namespace}")


async def go(request: web.Request) -> web.StreamResponse:
    namespace = request.query.get("ns", "").strip()
    if not NAMESPACE.match(namespace):
        raise web.HTTPFound(f"/ns/{request.app[SOURCE].default_namespace}")
    raise web.HTTPFound(f"/ns/{namespace}")


OVERVIEW_KINDS = (IMAGESTREAMS, BUILDCONFIGS, BUILDS)


def overview_context(
    namespace: str, found: Mapping[str, tuple[list[dict[str, Any]], Problem | None]]
) -> dict[str, Any]:
    view = views.overview(
        namespace,
        found["imagestreams"][0],
        found["buildconfigs"][0],
        found["builds"][0],
        now(),
    )
    problems = {key: p for key, (_, p) in found.items()}
    return {"view": view, "problems": problems}


async def overview_page(request: web.Request) -> web.StreamResponse:
    namespace = _namespace(request)
    source = request.app[SOURCE]
    results = await asyncio.gather(*(_listed(source, k, namespace) for k in OVERVIEW_KINDS))
    found = {k.key: r for k, r in zip(OVERVIEW_KINDS, results, strict=True)}
    return render(
        request,
        "overview.html",
        **_context(request, namespace, **overview_context(namespace, found)),
    )


SECTIONS = {
    "imagestreams": ("_overview_streams.html", ("imagestreams",)),
    "buildconfigs": ("_overview_buildconfigs.html", ("buildconfigs", "builds")),
    "builds": ("_overview_builds.html", ("builds",)),
}
"""Each live section of the overview: its template and the kinds it is made of."""


async def overview_events(request: web.Request) -> web.StreamResponse:
    namespace = _namespace(request)

    async def send(response: web.StreamResponse, informers: list[Informer], keys: set[str]) -> None:
        by_key = {i.kind.key: i for i in informers}
        found = {k: (i.values(), i.problem) for k, i in by_key.items()}
        context = _context(request, namespace, **overview_context(namespace, found))
        for section, (template, kinds) in SECTIONS.items():
            if keys & set(kinds):
                await response.write(sse_frame(section, fragment(request, template, **context)))
        state = "; ".join(i.problem.message for i in informers if i.problem) or "live"
        await response.write(sse_frame("state", html.escape(state)))

    return await stream(request, OVERVIEW_KINDS, namespace, send)


async def stream(
    request: web.Request,
    kinds: tuple[Kind, ...],
    namespace: str,
    send: Callable[[web.StreamResponse, list[Informer], set[str]], Awaitable[None]],
) -> web.StreamResponse:
    """An SSE stream that calls ``send`` with the kinds that changed, debounced."""
    hub = request.app[HUB]
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"}
    )
    _with_headers(response)
    try:
        async with hub.subscribe(kinds, namespace) as informers:
            await response.prepare(request)
            await response.write(sse_comment("connected"))
            seen: dict[str, int] = {}
            while True:
                changed = await wait_any(informers, seen, KEEPALIVE_SECONDS)
                if not changed:
                    await response.write(sse_comment("keepalive"))
                    continue
                await asyncio.sleep(DEBOUNCE_SECONDS)
                for informer in informers:
                    if not informer.synced and informer.problem is None:
                        changed.discard(informer.kind.key)
                        continue
                    seen[informer.kind.key] = informer.version
                if changed:
                    await send(response, informers, changed)
    except Busy as exc:
        return _with_headers(
            web.Response(status=503, text=f"busy: {exc}\n", headers={"Retry-After": "5"})
        )
    except ConnectionResetError:
        pass
    return response


# --- the application ---------------------------------------------------------------


def make_app(source: Source, settings: Settings) -> web.Application:
    if not settings.token:
        from dataclasses import replace

        settings = replace(settings, token=security.new_token())
    app = web.Application(middlewares=[guard], client_max_size=256 * 1024)
    app[SOURCE] = source
    app[SETTINGS] = settings
    app[HUB] = Hub(source)
    app[TEMPLATES] = templates()
    app[ALLOWED] = security.allowed_hosts(settings.address, settings.port)
    app.router.add_get("/", index)
    app.router.add_get("/go", go)
    app.router.add_get("/ns/{ns}", overview_page)
    app.router.add_get("/ns/{ns}/overview/events", overview_events)
    app.router.add_static("/static/", HERE / "static", append_version=False)

    async def closing(app: web.Application) -> None:
        await app[HUB].close()
        close = getattr(app[SOURCE], "close", None)
        if close is not None:
            await close()

    app.on_cleanup.append(closing)
    return app
