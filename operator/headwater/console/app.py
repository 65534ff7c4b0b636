"""The aiohttp application: guards, pages, fragments and live streams."""

from __future__ import annotations

import asyncio
import html
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, cast

import jinja2
from aiohttp import web

from headwater.console import actions, security, views
from headwater.console.live import (
    KEEPALIVE_SECONDS,
    LINGER_SECONDS,
    MAX_WATCHES,
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
    CRONJOBS,
    DAEMONSETS,
    DEPLOYMENTS,
    IMAGESTREAMS,
    NAMESPACES,
    PODS,
    REPLICASETS,
    STATEFULSETS,
    UNAUTHORIZED,
    Kind,
    Problem,
    Source,
    is_problem,
    problem,
)
from headwater.console.users import Users, Viewer

HERE = Path(__file__).parent
log = logging.getLogger("headwater.console")
NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
DEBOUNCE_SECONDS = 0.25
"""Changes arriving within this time are sent as one update."""
REFRESH_SECONDS = 60.0
"""A live section is sent again after this long without changes: its ages move on."""
FINISH_WAIT_SECONDS = 300.0
"""How long a followed log, once ended, waits for its build to record how it ended."""
FINISH_POLL_SECONDS = 1.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Settings:
    address: str = "127.0.0.1"
    port: int = 8090
    context_name: str = ""
    token: str = ""
    linger_seconds: float = LINGER_SECONDS
    """How long the watches of a namespace no page shows any more are kept."""
    token_auth: bool = False
    """Token mode: every request carries its user's own bearer token and acts with it."""
    allowed_hosts: tuple[str, ...] = ()
    """Host header values allowed besides the bound address and loopback (the proxy's)."""


SOURCE = web.AppKey("source", Source)
SETTINGS = web.AppKey("settings", Settings)
HUB = web.AppKey("hub", Hub)
TEMPLATES = web.AppKey("templates", jinja2.Environment)
ALLOWED = web.AppKey("allowed_hosts", frozenset)
LOCAL = web.AppKey("local_viewer", Viewer)
"""The one user of a local console (its SOURCE, HUB and RENDERED are this one's)."""
USERS = web.AppKey("users", Users)
"""The users of a token-mode console."""
VIEWER = web.RequestKey("viewer", Viewer)
"""Who this request is for: their source, hub, cache and CSRF token."""


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


UNAUTHENTICATED_TEXT = (
    "401 Unauthorized: this console acts with your own Kubernetes token, and this request "
    "carried none. It is meant to be reached through the proxy that signs you in and "
    "passes your token (Authorization: Bearer).\n"
)


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Host check (DNS rebinding), who the request is for (token mode: its bearer token,
    else 401), CSRF on POST, security headers on every answer."""
    allowed = request.app[ALLOWED]
    if not security.host_ok(request.headers.get("Host"), allowed):
        return _with_headers(
            web.Response(status=421, text="refused: unexpected Host header (DNS rebinding?)\n")
        )
    if request.method not in ("GET", "HEAD", "POST"):
        return _with_headers(web.Response(status=405, text="method not allowed\n"))
    users = request.app.get(USERS)
    if users is None:
        request[VIEWER] = request.app[LOCAL]
        return await _guarded(request, handler)
    token = security.bearer_token(request.headers.get("Authorization"))
    if token is None:
        return _with_headers(
            web.Response(
                status=401, text=UNAUTHENTICATED_TEXT,
                headers={"WWW-Authenticate": 'Bearer realm="headwater-console"'},
            )
        )  # fmt: skip
    try:
        viewer = users.admit(token)
    except Busy as exc:
        return _with_headers(
            web.Response(status=503, text=f"busy: {exc}\n", headers={"Retry-After": "30"})
        )
    del token
    request[VIEWER] = viewer
    viewer.active += 1
    try:
        try:
            await users.ready(viewer)
        except Exception:
            log.exception("cannot make a client of the cluster for a user")
            users.drop(viewer.key)
            return _with_headers(
                web.Response(
                    status=502, text="cannot reach the cluster; the console's log has details\n"
                )
            )
        return await _guarded(request, handler)
    finally:
        users.left(viewer)


async def _guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
    """CSRF on POST (the viewer's token), the handler, its problems as pages."""
    allowed = request.app[ALLOWED]
    if request.method == "POST":
        # A browser names the page that sent a POST: it must be one of ours.
        origin = request.headers.get("Origin")
        # Behind a proxy that ends TLS, the console's pages are https:// ones.
        schemes = ("http", "https") if request.app[SETTINGS].token_auth else ("http",)
        if origin is not None and not security.origin_ok(origin, allowed, schemes):
            return _with_headers(web.Response(status=403, text="refused: cross-origin request\n"))
        token = request[VIEWER].csrf
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
        response = error_page(request, request.match_info.get("ns", ""), noted(request, exc))
    except Exception as exc:
        if not is_problem(exc):
            # A bug: logged here with its trace, the page says only that it happened.
            log.exception("%s %s failed", request.method, request.path)
            exc = Problem("Internal error", "the console failed; its log has the details", 500)
        response = error_page(
            request, request.match_info.get("ns", ""), noted(request, problem(exc))
        )
    return _with_headers(response)


def noted(request: web.Request, found: Problem) -> Problem:
    """``found``, after forgetting a token-mode user whose token the API server refused
    (401) in a call the Source did not see (the CLI functions' synchronous client)."""
    users = request.app.get(USERS)
    if users is not None and found.status == UNAUTHORIZED:
        users.refused(request[VIEWER])
    return found


def _source(request: web.Request) -> Source:
    return request[VIEWER].source


def _hub(request: web.Request) -> Hub:
    return request[VIEWER].hub


def _with_headers(response: web.StreamResponse) -> web.StreamResponse:
    if not response.prepared:
        for name, value in security.SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
    return response


# --- rendering ---------------------------------------------------------------------


def _context(request: web.Request, namespace: str, **more: Any) -> dict[str, Any]:
    settings = request.app[SETTINGS]
    csrf = request[VIEWER].csrf
    return {
        "namespace": namespace,
        "context_name": settings.context_name,
        "token_auth": settings.token_auth,
        "csrf_token": csrf,
        "csrf_headers": json.dumps({security.CSRF_HEADER: csrf}),
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
    raise web.HTTPFound(f"/ns/{_source(request).default_namespace}")


async def no_icon(request: web.Request) -> web.StreamResponse:
    """No icon (and no 404 in the browser's console on every page)."""
    return web.Response(status=204)


async def go(request: web.Request) -> web.StreamResponse:
    namespace = request.query.get("ns", "").strip()
    if not NAMESPACE.match(namespace):
        raise web.HTTPFound(f"/ns/{_source(request).default_namespace}")
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


SYNC_WAIT_SECONDS = 10.0
"""How long a page waits for a starting watch's first list before listing itself."""


async def current_or_listed(
    request: web.Request, kinds: tuple[Kind, ...], namespace: str
) -> tuple[dict[str, tuple[list[dict[str, Any]], Problem | None]], str]:
    """The objects of ``kinds`` in ``namespace``, each with why it could not be listed, and
    where they came from (for the Server-Timing header).

    From the namespace's shared watches when they are current (:meth:`Hub.current`):
    started here if need be, so a first page waits for their first list instead of
    listing once for itself and once more for its stream. A kind whose watch is not
    synced or failed (Forbidden, ...) is listed, so the page says why as it always did.
    """
    hub = _hub(request)
    try:
        informers = hub.keep(kinds, namespace)
    except Busy:
        informers = []
    await asyncio.gather(*(i.ready(SYNC_WAIT_SECONDS) for i in informers))
    found: dict[str, tuple[list[dict[str, Any]], Problem | None]] = {}
    missing = []
    for kind in kinds:
        items = hub.current(kind, namespace)
        if items is None:
            missing.append(kind)
        else:
            found[kind.key] = (items, None)
    source = _source(request)
    results = await asyncio.gather(*(_listed(source, k, namespace) for k in missing))
    found.update({k.key: r for k, r in zip(missing, results, strict=True)})
    origin = "watch" if not missing else "list" if len(missing) == len(kinds) else "watch+list"
    return found, origin


async def overview_page(request: web.Request) -> web.StreamResponse:
    namespace = _namespace(request)
    started = time.perf_counter()
    found, origin = await current_or_listed(request, OVERVIEW_KINDS, namespace)
    refused = next((p for _, p in found.values() if p and p.status == UNAUTHORIZED), None)
    if refused is not None:
        raise refused  # not a section's message: the whole page is refused
    read = time.perf_counter()
    response = render(
        request,
        "overview.html",
        **_context(request, namespace, **overview_context(namespace, found)),
    )
    done = time.perf_counter()
    response.headers["Server-Timing"] = (
        f'read;desc="{origin}";dur={(read - started) * 1000:.1f},'
        f" render;dur={(done - read) * 1000:.1f}"
    )
    return response


SECTIONS = {
    "imagestreams": ("_overview_streams.html", ("imagestreams",)),
    "buildconfigs": ("_overview_buildconfigs.html", ("buildconfigs", "builds")),
    "builds": ("_overview_builds.html", ("builds",)),
}
"""Each live section of the overview: its template and the kinds it is made of."""


async def overview_events(request: web.Request) -> web.StreamResponse:
    namespace = _namespace(request)

    cache = request[VIEWER].rendered

    async def send(response: web.StreamResponse, informers: list[Informer], keys: set[str]) -> None:
        # Every tab on this namespace shows the same sections: render once per change
        # (and per refresh of the ages), not once per stream.
        versions = (tuple(i.version for i in informers), int(time.monotonic() // REFRESH_SECONDS))
        cached = cache.get(namespace)
        if cached is None or cached[0] != versions:
            by_key = {i.kind.key: i for i in informers}
            found = {k: (i.values(), i.problem) for k, i in by_key.items()}
            context = _context(request, namespace, **overview_context(namespace, found))
            sections = {
                section: fragment(request, template, **context)
                for section, (template, _) in SECTIONS.items()
            }
            cached = (versions, sections)
            cache.pop(namespace, None)
            cache[namespace] = cached
            while len(cache) > MAX_WATCHES:  # the oldest namespace shown goes first
                cache.pop(next(iter(cache)))
        for section, (_, kinds) in SECTIONS.items():
            if keys & set(kinds):
                await response.write(sse_frame(section, cached[1][section]))
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
    hub = _hub(request)
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"}
    )
    _with_headers(response)
    try:
        async with hub.subscribe(kinds, namespace) as informers:
            await response.prepare(request)
            await response.write(sse_comment("connected"))
            seen: dict[str, int] = {}
            refreshed = time.monotonic()
            while not hub.closed:
                changed = await wait_any(informers, seen, KEEPALIVE_SECONDS)
                if not changed and time.monotonic() - refreshed >= REFRESH_SECONDS:
                    # Nothing moved, but ages ("5m ago") and running durations did.
                    changed = {i.kind.key for i in informers if i.synced}
                if not changed:
                    await response.write(sse_comment("keepalive"))
                    continue
                refreshed = time.monotonic()
                await asyncio.sleep(DEBOUNCE_SECONDS)
                for informer in informers:
                    if not informer.synced and informer.problem is None:
                        changed.discard(informer.kind.key)
                        continue
                    # What changed during the debounce is sent too: marking it seen
                    # without sending it would drop it until its next change.
                    if informer.version > seen.get(informer.kind.key, -1):
                        changed.add(informer.kind.key)
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


# --- an ImageStream ----------------------------------------------------------------


def _name_param(request: web.Request) -> str:
    name = request.match_info["name"]
    if not NAME.match(name):
        raise web.HTTPNotFound(text="not an object name\n")
    return name


async def _get(request: web.Request, kind: Kind, namespace: str, name: str) -> dict[str, Any]:
    try:
        return await _source(request).get(kind, name, namespace)
    except Exception as exc:
        if not is_problem(exc):
            raise
        raise problem(exc, f"{kind.label[:-1]} {namespace}/{name}") from None


async def imagestream_page(request: web.Request) -> web.StreamResponse:
    namespace, name = _namespace(request), _name_param(request)
    stream_obj = await _get(request, IMAGESTREAMS, namespace, name)
    view = views.stream_view(stream_obj, now())
    return render(
        request, "imagestream.html", **_context(request, namespace, view=view, problem=None)
    )


async def imagestream_events(request: web.Request) -> web.StreamResponse:
    namespace, name = _namespace(request), _name_param(request)

    async def send(response: web.StreamResponse, informers: list[Informer], keys: set[str]) -> None:
        (informer,) = informers
        found = next((o for o in informer.values() if _obj_name(o) == name), None)
        gone: Problem | None
        if found is None:
            view = views.StreamView(namespace, name, "", False, [])
            gone = informer.problem or Problem("Not found", f"ImageStream {name} is gone", 404)
        else:
            view, gone = views.stream_view(found, now()), informer.problem
        context = _context(request, namespace, view=view, problem=gone)
        await response.write(sse_frame("tags", fragment(request, "_stream_tags.html", **context)))

    return await stream(request, (IMAGESTREAMS,), namespace, send)


def _obj_name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


MAX_FOLLOWER_NAMESPACES = 30
FOLLOWER_KINDS = (DEPLOYMENTS, STATEFULSETS, DAEMONSETS, CRONJOBS, BUILDCONFIGS, IMAGESTREAMS)


async def followers_fragment(request: web.Request) -> web.StreamResponse:
    """Who follows a tag, across the namespaces the user may list (lazily, on demand)."""
    namespace, name = _namespace(request), _name_param(request)
    tag = request.query.get("tag", "latest")
    source = _source(request)
    notes: list[str] = []
    try:
        listed, _ = await source.list(NAMESPACES, None)
        names = sorted(_obj_name(n) for n in listed)
    except Exception as exc:
        if not is_problem(exc):
            raise
        names = [namespace]
        notes.append(f"Only {namespace} was searched: {problem(exc, 'listing namespaces').message}")
    if namespace in names:
        names.remove(namespace)
    names.insert(0, namespace)
    if len(names) > MAX_FOLLOWER_NAMESPACES:
        notes.append(
            f"Only the first {MAX_FOLLOWER_NAMESPACES} of {len(names)} namespaces were searched."
        )
        names = names[:MAX_FOLLOWER_NAMESPACES]
    limit = asyncio.Semaphore(8)

    async def one(kind: Kind, ns: str) -> tuple[Kind, str, list[dict[str, Any]], Problem | None]:
        async with limit:
            items, found = await _listed(source, kind, ns)
        return kind, ns, items, found

    results = await asyncio.gather(*(one(k, ns) for ns in names for k in FOLLOWER_KINDS))
    objects: dict[str, dict[str, list[dict[str, Any]]]] = {}
    skipped: dict[str, list[str]] = {}
    for kind, ns, items, found in results:
        if found is not None:
            skipped.setdefault(ns, []).append(f"{kind.label} ({found.title})")
            continue
        objects.setdefault(kind.key, {})[ns] = items
    for ns, what in skipped.items():
        if len(what) == len(FOLLOWER_KINDS):
            notes.append(f"Skipped namespace {ns}: you may not list there.")
        else:
            notes.append(f"In {ns}, skipped {', '.join(what)}.")
    found_followers = views.followers(namespace, name, tag, objects)
    context = _context(
        request, namespace, stream=name, tag=tag, found=found_followers, notes=notes,
        image=f"{name}:{tag}",
    )  # fmt: skip
    if request.headers.get("HX-Request"):
        return render(request, "_followers.html", **context)
    return render(request, "followers.html", **context)


# --- a BuildConfig and a Build -------------------------------------------------------


async def _builds_of(request: web.Request, namespace: str, bc: str) -> list[dict[str, Any]]:
    from headwater.builds.model import LABEL_BUILDCONFIG, label_value

    try:
        items, _ = await _source(request).list(
            BUILDS, namespace, labels={LABEL_BUILDCONFIG: label_value(bc)}
        )
    except Exception as exc:
        if not is_problem(exc):
            raise
        raise problem(exc, f"listing the builds of {bc}") from None
    return items


async def buildconfig_page(request: web.Request) -> web.StreamResponse:
    namespace, name = _namespace(request), _name_param(request)
    bc = await _get(request, BUILDCONFIGS, namespace, name)
    builds = await _builds_of(request, namespace, name)
    view = views.buildconfig_view(bc, builds, now())
    return render(
        request, "buildconfig.html", **_context(request, namespace, view=view, problem=None)
    )


async def buildconfig_events(request: web.Request) -> web.StreamResponse:
    namespace, name = _namespace(request), _name_param(request)
    bc = await _get(request, BUILDCONFIGS, namespace, name)

    async def send(response: web.StreamResponse, informers: list[Informer], keys: set[str]) -> None:
        (informer,) = informers
        view = views.buildconfig_view(bc, informer.values(), now())
        context = _context(request, namespace, view=view, problem=informer.problem)
        await response.write(sse_frame("builds", fragment(request, "_bc_builds.html", **context)))

    return await stream(request, (BUILDS,), namespace, send)


async def build_page(request: web.Request) -> web.StreamResponse:
    namespace, name = _namespace(request), _name_param(request)
    build = await _get(request, BUILDS, namespace, name)
    view = views.build_view(build, now())
    return render(request, "build.html", **_context(request, namespace, view=view, problem=None))


async def build_events(request: web.Request) -> web.StreamResponse:
    namespace, name = _namespace(request), _name_param(request)
    last: list[dict[str, Any] | None] = [None]
    cancellable: list[bool | None] = [None]

    async def send(response: web.StreamResponse, informers: list[Informer], keys: set[str]) -> None:
        (informer,) = informers
        found = next((o for o in informer.values() if _obj_name(o) == name), None)
        if found is None or found == last[0]:
            return
        last[0] = found
        view = views.build_view(found, now())
        context = _context(request, namespace, view=view, problem=informer.problem)
        await response.write(sse_frame("build", fragment(request, "_build_facts.html", **context)))
        if view.cancellable != cancellable[0]:
            # Only when it changes: the buttons are not replaced under the reader's focus.
            cancellable[0] = view.cancellable
            await response.write(
                sse_frame("actions", fragment(request, "_build_actions.html", **context))
            )

    return await stream(request, (BUILDS,), namespace, send)


MAX_LOG_FOLLOWERS = 16
"""Logs followed at once by the whole console (each is a thread reading a pod's log)."""
MAX_LOG_FOLLOWERS_PER_USER = 4
"""Of those, by one user of a token-mode console: one user cannot take them all."""
LOG_BATCH = 200
"""Log lines sent in one event when they arrive faster than the browser takes them."""
LOGS = web.AppKey("log_followers", list)
RENDERED = web.AppKey("rendered_overviews", dict)
"""namespace -> ((informer versions, refresh period), section -> HTML), shared by streams."""


class _Closed(Exception):
    """The browser left: the log reader stops at its next line."""


async def build_log(request: web.Request) -> web.StreamResponse:
    """The build's log as SSE, read by the same code as ``headwater logs -f``."""
    import io
    import threading

    import click

    from headwater.builds.model import NEW, TERMINAL
    from headwater.cli.builds import get_build, stream_logs

    namespace, name = _namespace(request), _name_param(request)
    followers = request.app[LOGS]
    user = request[VIEWER].key
    mine = sum(1 for key, _ in followers if key == user)
    if len(followers) >= MAX_LOG_FOLLOWERS or (user and mine >= MAX_LOG_FOLLOWERS_PER_USER):
        return _with_headers(
            web.Response(
                status=503, text="busy: too many logs followed\n", headers={"Retry-After": "5"}
            )
        )
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    closed = threading.Event()
    client = _source(request).sync_client()

    def put(event: str, text: str) -> None:
        if closed.is_set():
            raise _Closed
        loop.call_soon_threadsafe(queue.put_nowait, (event, text))

    class Out(io.TextIOBase):
        def write(self, text: str) -> int:
            put("line", text)
            return len(text)

    def follow() -> None:
        end = "The log ended."
        try:
            out = cast(IO[str], Out())
            stream_logs(client, namespace, name, True, out, say=lambda line: put("waiting", line))
            # The build step's log ends before the operator has recorded the end (it
            # signs, records the image and moves the tag first): wait for the phase
            # the build ends in, saying so, rather than report "Running".
            deadline, waited = time.monotonic() + FINISH_WAIT_SECONDS, False
            while True:
                phase = str(
                    (get_build(client, namespace, name).get("status") or {}).get("phase") or NEW
                )
                if phase in TERMINAL or time.monotonic() >= deadline:
                    break
                if not waited:  # the end clears it
                    put("waiting", f"the log ended; waiting for build {name} to finish")
                    waited = True
                time.sleep(FINISH_POLL_SECONDS)
            end = f"The log ended: the build is {phase}."
        except _Closed:
            return
        except click.ClickException as exc:
            end = exc.format_message()
        except Exception as exc:
            if not is_problem(exc):
                log.exception("following the log of %s/%s failed", namespace, name)
                end = "Following the log failed; the console's log has the details."
            else:
                found = problem(exc, "reading the log")
                loop.call_soon_threadsafe(noted, request, found)
                end = found.message
        if not closed.is_set():
            loop.call_soon_threadsafe(queue.put_nowait, ("end", end))

    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"}
    )
    _with_headers(response)
    follower = (user, name)
    followers.append(follower)
    # A thread of its own, a daemon: a log that prints nothing more must not hold up
    # the console's exit (the default executor is joined at exit); the reader ends at
    # its next line once ``closed`` is set.
    threading.Thread(target=follow, name=f"console-log-{name}", daemon=True).start()
    try:
        await response.prepare(request)
        # The log starts again from its first line: a reconnected page clears what it has.
        await response.write(sse_frame("reset", ""))
        # The page shows "Following the log…" (or what the reader waits for) until the
        # first line, and again when the next step waits: each line or the end clears it.
        waiting = True
        pending: tuple[str, str] | None = None
        while True:
            if pending is not None:
                (event, text), pending = pending, None
            else:
                try:
                    event, text = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    await response.write(sse_comment("keepalive"))
                    continue
            if event == "line":
                lines = [text]
                while len(lines) < LOG_BATCH and not queue.empty():
                    more = queue.get_nowait()
                    if more[0] != "line":
                        # Next, before anything queued after it: put back at the queue's
                        # end, a "waiting" came after the next step's lines and stayed.
                        pending = more
                        break
                    lines.append(more[1])
                if waiting:
                    await response.write(sse_frame("waiting", ""))
                    waiting = False
                text = views.strip_ansi("".join(lines))
                await response.write(sse_frame("line", html.escape(text)))
            else:
                if event == "end" and waiting:
                    await response.write(sse_frame("waiting", ""))
                if event == "waiting":
                    waiting = bool(text)
                await response.write(sse_frame(event, html.escape(text)))
                if event == "end":
                    break
    except ConnectionResetError:
        pass
    finally:
        closed.set()
        followers.remove(follower)
    return response


# --- actions -------------------------------------------------------------------------


async def _act(
    request: web.Request, namespace: str, back: str, fn: Callable[..., str], *args: Any
) -> web.StreamResponse:
    """Run one action (a CLI function) in a thread with the user's client; its sentence,
    or why it was refused, as a fragment (htmx) or a page."""
    client = _source(request).sync_client()
    message, found = "", None
    try:
        message = await asyncio.to_thread(fn, client, namespace, *args)
    except Exception as exc:
        if not is_problem(exc):
            raise
        found = noted(request, problem(exc))
    if request.headers.get("HX-Request"):
        if found is not None:
            return render(request, "_problem.html", problem=found)
        return render(request, "_notice.html", message=message)
    return render(
        request, "action.html", status=200 if found is None else found.status,
        **_context(request, namespace, message=message, problem=found, back=back),
    )  # fmt: skip


def _field(form: Mapping[str, Any], key: str, required: bool = True) -> str:
    value = form.get(key)
    text = value if isinstance(value, str) else ""
    if required and not text.strip():
        raise Problem("Invalid", f"{key} is required", 422)
    return text


async def action_import(request: web.Request) -> web.StreamResponse:
    namespace, name = _namespace(request), _name_param(request)
    form = await request.post()
    back = f"/ns/{namespace}/imagestreams/{name}"
    return await _act(request, namespace, back, actions.import_now, name, _field(form, "tag"))


async def action_tag(request: web.Request) -> web.StreamResponse:
    namespace, name = _namespace(request), _name_param(request)
    form = await request.post()
    back = f"/ns/{namespace}/imagestreams/{name}"
    return await _act(
        request, namespace, back, actions.tag, _field(form, "source"),
        _field(form, "destination"), bool(form.get("alias")),
    )  # fmt: skip


async def action_trigger(request: web.Request) -> web.StreamResponse:
    namespace = _namespace(request)
    form = await request.post()
    kind, name = _field(form, "kind"), _field(form, "name")
    back = f"/ns/{namespace}"
    return await _act(
        request, namespace, back, actions.set_trigger_paused, kind, name,
        _field(form, "image"), _field(form, "paused") == "1",
    )  # fmt: skip


async def action_start(request: web.Request) -> web.StreamResponse:
    namespace, name = _namespace(request), _name_param(request)
    form = await request.post()
    back = f"/ns/{namespace}/buildconfigs/{name}"
    try:
        env = actions.parse_env(_field(form, "env", required=False))
    except Exception as exc:
        raise problem(exc) from None
    return await _act(
        request, namespace, back, actions.start_build, name,
        _field(form, "commit", required=False), env,
    )  # fmt: skip


async def action_cancel(request: web.Request) -> web.StreamResponse:
    namespace, name = _namespace(request), _name_param(request)
    back = f"/ns/{namespace}/builds/{name}"
    return await _act(request, namespace, back, actions.cancel_build, name)


async def action_rebuild(request: web.Request) -> web.StreamResponse:
    namespace, name = _namespace(request), _name_param(request)
    back = f"/ns/{namespace}/builds/{name}"
    return await _act(request, namespace, back, actions.rebuild, name)


# --- the trace -----------------------------------------------------------------------

TRACE_KINDS = (IMAGESTREAMS, BUILDS, DEPLOYMENTS, REPLICASETS, PODS)


def trace_of(
    namespace: str, query: Mapping[str, str], found: Mapping[str, list[dict[str, Any]]]
) -> tuple[str, views.Trace | None, Problem | None]:
    """(subject, trace, why not) for ``?tag=stream:tag[&image=digest]`` or ``?deployment=``."""
    from headwater.workloads.triggers import TriggerError, parse_triggers, trigger_annotation

    streams = {_obj_name(s): s for s in found["imagestreams"]}
    deployment_name = query.get("deployment", "")
    if deployment_name:
        subject = f"deployment/{deployment_name}"
        deployment = next(
            (d for d in found["deployments"] if _obj_name(d) == deployment_name), None
        )
        if deployment is None:
            return subject, None, Problem("Not found", f"Deployment {deployment_name}", 404)
        annotation = trigger_annotation(deployment)
        try:
            triggers = parse_triggers(annotation[1], "Deployment", namespace) if annotation else ()
        except TriggerError as exc:
            return subject, None, Problem("Invalid", f"its trigger annotation: {exc}", 422)
        local = [t for t in triggers if t.namespace == namespace]
        if not local:
            return (
                subject,
                None,
                Problem(
                    "No trigger",
                    f"{deployment_name} follows no ImageStream tag in {namespace}",
                    404,
                ),
            )
        trigger = local[0]
        stream_obj = streams.get(trigger.stream)
        if stream_obj is None:
            return subject, None, Problem("Not found", f"ImageStream {trigger.stream}", 404)
        container = trigger.name
        digest = views.current_digest(deployment, found["replicasets"], container)
        tag = trigger.tag
    else:
        stream_name, _, tag = query.get("tag", "").partition(":")
        tag = tag or "latest"
        subject = f"{stream_name}:{tag}"
        stream_obj = streams.get(stream_name)
        if stream_obj is None:
            return subject, None, Problem("Not found", f"ImageStream {stream_name}", 404)
        digest = query.get("image", "")
        if not digest:
            newest: Mapping[str, Any] = next(
                (
                    (e.get("items") or [{}])[0]
                    for e in (stream_obj.get("status") or {}).get("tags") or []
                    if e.get("tag") == tag
                ),
                {},
            )
            digest = str(newest.get("image") or "")
    result = views.trace(
        namespace, stream_obj, tag, digest, found["builds"], found["deployments"],
        found["replicasets"], found["pods"], now(),
    )  # fmt: skip
    return subject, result, None


async def trace_page(request: web.Request) -> web.StreamResponse:
    namespace = _namespace(request)
    source = _source(request)
    results = await asyncio.gather(*(_listed(source, k, namespace) for k in TRACE_KINDS))
    for _, failed in results:
        if failed is not None:
            raise failed
    found = {k.key: items for k, (items, _) in zip(TRACE_KINDS, results, strict=True)}
    subject, result, why = trace_of(namespace, request.query, found)
    return render(
        request, "trace.html", **_context(
            request, namespace, subject=subject, trace=result, problem=why,
            request_path=request.path_qs,
            events_path=f"/ns/{namespace}/trace/events?{request.query_string}",
        ),
    )  # fmt: skip


async def trace_events(request: web.Request) -> web.StreamResponse:
    namespace = _namespace(request)

    async def send(response: web.StreamResponse, informers: list[Informer], keys: set[str]) -> None:
        found = {i.kind.key: i.values() for i in informers}
        failed = next((i.problem for i in informers if i.problem), None)
        subject, result, why = trace_of(namespace, request.query, found)
        context = _context(request, namespace, subject=subject, trace=result, problem=failed or why)
        await response.write(sse_frame("trace", fragment(request, "_trace.html", **context)))

    return await stream(request, TRACE_KINDS, namespace, send)


# --- the application ---------------------------------------------------------------


def make_app(source: Source, settings: Settings) -> web.Application:
    """The console of one user, the owner of ``source``'s credentials (local mode)."""
    if not settings.token:
        from dataclasses import replace

        settings = replace(settings, token=security.new_token())
    app = _application(settings)
    viewer = Viewer("", source, Hub(source, linger_seconds=settings.linger_seconds), settings.token)
    app[LOCAL] = viewer
    app[SOURCE] = source
    app[HUB] = viewer.hub
    app[RENDERED] = viewer.rendered

    async def closing(app: web.Application) -> None:
        await app[HUB].close()
        close = getattr(app[SOURCE], "close", None)
        if close is not None:
            await close()

    app.on_cleanup.append(closing)
    return app


def make_token_app(make_source: Callable[[str], Source], settings: Settings) -> web.Application:
    """The console of many users behind a proxy (token mode): each request acts with its
    own bearer token, through ``make_source(token)``, and with nothing of anyone else's."""
    from dataclasses import replace

    settings = replace(settings, token_auth=True, token="")
    users = Users(make_source, linger_seconds=settings.linger_seconds)
    return make_users_app(users, settings)


def make_users_app(users: Users, settings: Settings) -> web.Application:
    """:func:`make_token_app` with ``users`` made by the caller (tests bound them)."""
    app = _application(settings)
    app[USERS] = users

    async def starting(app: web.Application) -> None:
        app[USERS].start()

    async def closing(app: web.Application) -> None:
        await app[USERS].close()

    app.on_startup.append(starting)
    app.on_cleanup.append(closing)
    return app


def _application(settings: Settings) -> web.Application:
    app = web.Application(middlewares=[guard], client_max_size=256 * 1024)
    app[SETTINGS] = settings
    app[TEMPLATES] = templates()
    app[ALLOWED] = security.with_hosts(
        security.allowed_hosts(settings.address, settings.port), settings.allowed_hosts
    )
    app[LOGS] = []
    app.router.add_get("/", index)
    app.router.add_get("/go", go)
    app.router.add_get("/favicon.ico", no_icon)
    app.router.add_get("/ns/{ns}", overview_page)
    app.router.add_get("/ns/{ns}/overview/events", overview_events)
    app.router.add_get("/ns/{ns}/imagestreams/{name}", imagestream_page)
    app.router.add_get("/ns/{ns}/imagestreams/{name}/events", imagestream_events)
    app.router.add_get("/ns/{ns}/imagestreams/{name}/followers", followers_fragment)
    app.router.add_post("/ns/{ns}/imagestreams/{name}/import", action_import)
    app.router.add_post("/ns/{ns}/imagestreams/{name}/tag", action_tag)
    app.router.add_post("/ns/{ns}/triggers", action_trigger)
    app.router.add_get("/ns/{ns}/buildconfigs/{name}", buildconfig_page)
    app.router.add_get("/ns/{ns}/buildconfigs/{name}/events", buildconfig_events)
    app.router.add_post("/ns/{ns}/buildconfigs/{name}/start", action_start)
    app.router.add_get("/ns/{ns}/builds/{name}", build_page)
    app.router.add_get("/ns/{ns}/builds/{name}/events", build_events)
    app.router.add_get("/ns/{ns}/builds/{name}/log", build_log)
    app.router.add_post("/ns/{ns}/builds/{name}/cancel", action_cancel)
    app.router.add_post("/ns/{ns}/builds/{name}/rebuild", action_rebuild)
    app.router.add_get("/ns/{ns}/trace", trace_page)
    app.router.add_get("/ns/{ns}/trace/events", trace_events)
    app.router.add_static("/static/", HERE / "static", append_version=False)
    return app
