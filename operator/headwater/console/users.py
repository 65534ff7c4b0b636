"""Who is asking, and each one's own state: one :class:`Viewer` per user.

Locally the console has one user, the owner of the kubeconfig: one Viewer for
the process. In token mode (``--token-auth``, a console in the cluster behind a
proxy that passes each user's own bearer token) :class:`Users` keeps a Viewer
per token, known by the token's sha256: a Source acting with that token, a watch
Hub, the overview's rendered sections and a CSRF token of its own. Nothing is
shared between users, but a bound on the watches of all of them together
(:data:`MAX_WATCHES`). At most :data:`MAX_USERS` are held; one idle for
:data:`IDLE_SECONDS` is dropped (its watches stopped, its clients closed, its
token forgotten), and so is one whose token the API server refuses (401).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from headwater.console import security
from headwater.console.live import LINGER_SECONDS, Budget, Busy, Hub
from headwater.console.source import Kind, Source, refused

MAX_USERS = 64
"""Users held at once in token mode; a new one pushes out the least recently seen idle one."""
IDLE_SECONDS = 600.0
"""A user with no request for this long is dropped (their next request starts afresh)."""
SWEEP_SECONDS = 60.0
USER_MAX_STREAMS = 16
"""Live streams of one user at once, in token mode (a tab holds one or two)."""
USER_MAX_WATCHES = 16
"""Watches of one user at once, in token mode (an overview holds 3, a trace 5)."""
MAX_WATCHES = 256
"""Watches of all users together: beyond, pages are listed and live streams wait."""


@dataclass(eq=False)
class Viewer:
    """One user's state: what they read with, what they watch, their CSRF token."""

    key: str = field(repr=False)
    """The sha256 of their token (token mode), "" locally."""
    source: Source
    hub: Hub
    csrf: str = field(repr=False)
    rendered: dict[str, Any] = field(default_factory=dict)
    """namespace -> ((informer versions, refresh period), section -> HTML), shared by
    this user's streams."""
    seen: float = field(default_factory=time.monotonic)
    active: int = 0
    """Requests (pages, streams, actions) of this user under way."""
    dropped: bool = False
    closed: bool = False
    connected: asyncio.Future[None] | None = field(default=None, repr=False)


class Refusing:
    """A :class:`Source` that reports a refused token (401) before passing the error on."""

    def __init__(self, inner: Source, on_refused: Callable[[], None]) -> None:
        self.inner = inner
        self.default_namespace = inner.default_namespace
        self.on_refused = on_refused

    def _seen(self, exc: BaseException) -> None:
        if refused(exc):
            self.on_refused()

    async def list(
        self, kind: Kind, namespace: str | None, labels: Mapping[str, str] | None = None
    ) -> tuple[list[dict[str, Any]], str]:
        try:
            return await self.inner.list(kind, namespace, labels)
        except Exception as exc:
            self._seen(exc)
            raise

    async def get(self, kind: Kind, name: str, namespace: str | None) -> dict[str, Any]:
        try:
            return await self.inner.get(kind, name, namespace)
        except Exception as exc:
            self._seen(exc)
            raise

    async def watch(
        self, kind: Kind, namespace: str, resource_version: str
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        try:
            async for item in self.inner.watch(kind, namespace, resource_version):
                yield item
        except Exception as exc:
            self._seen(exc)
            raise

    def sync_client(self) -> Any:
        return self.inner.sync_client()

    def connect(self) -> None:
        connect = getattr(self.inner, "connect", None)
        if connect is not None:
            connect()

    async def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if close is not None:
            await close()


class Users:
    """The users of a token-mode console, each a :class:`Viewer` known by their token's hash.

    ``make_source(token)`` builds a Source acting with that token; the token itself is
    kept only there (in its client's configuration), never as a key, never logged.
    """

    def __init__(
        self,
        make_source: Callable[[str], Source],
        *,
        max_users: int = MAX_USERS,
        idle_seconds: float = IDLE_SECONDS,
        linger_seconds: float = LINGER_SECONDS,
        secret: bytes | None = None,
        max_watches: int = MAX_WATCHES,
    ) -> None:
        self._make_source = make_source
        self.budget = Budget(max_watches, lambda: (v.hub for v in self.viewers.values()))
        self.max_users = max_users
        self.idle_seconds = idle_seconds
        self.linger_seconds = linger_seconds
        self._secret = secret or security.new_secret()
        self.viewers: dict[str, Viewer] = {}
        """By token hash; in the order last seen, the least recent first."""
        self._closing: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None

    def admit(self, token: str) -> Viewer:
        """The Viewer of ``token``'s user, made if need be; Busy when :attr:`max_users` are
        held and every one of them has a request under way."""
        key = security.token_key(token)
        viewer = self.viewers.pop(key, None)
        if viewer is None:
            if len(self.viewers) >= self.max_users:
                idle = next((k for k, v in self.viewers.items() if v.active == 0), None)
                if idle is None:
                    raise Busy(f"{len(self.viewers)} users already")
                self.drop(idle)
            viewer = self._new(key, token)
        self.viewers[key] = viewer
        viewer.seen = time.monotonic()
        return viewer

    async def ready(self, viewer: Viewer) -> None:
        """``viewer``'s clients made, once, in a thread (they read the CA file and build a
        TLS context: not on the event loop)."""
        if viewer.connected is None:
            connect: Callable[[], None] = getattr(viewer.source, "connect", lambda: None)
            viewer.connected = asyncio.ensure_future(asyncio.to_thread(connect))
        await asyncio.shield(viewer.connected)

    def _new(self, key: str, token: str) -> Viewer:
        def on_refused() -> None:
            if self.viewers.get(key) is viewer:
                self.drop(key)

        source = Refusing(self._make_source(token), on_refused)
        hub = Hub(
            source,
            max_streams=USER_MAX_STREAMS,
            max_watches=USER_MAX_WATCHES,
            linger_seconds=self.linger_seconds,
            budget=self.budget,
        )
        viewer = Viewer(key, source, hub, security.user_csrf(self._secret, key))
        return viewer

    def refused(self, viewer: Viewer) -> None:
        """The API server refused ``viewer``'s token: forget them (their next request, with
        a new token or the same, starts afresh)."""
        if self.viewers.get(viewer.key) is viewer:
            self.drop(viewer.key)

    def drop(self, key: str) -> None:
        """Forget a user: their watches stop now, their clients close once their last
        request has ended."""
        viewer = self.viewers.pop(key, None)
        if viewer is None:
            return
        viewer.dropped = True
        self._later(viewer.hub.close())
        self.left(viewer, entered=False)

    def left(self, viewer: Viewer, entered: bool = True) -> None:
        """A request of ``viewer`` ended: a dropped user's clients close after their last."""
        if entered:
            viewer.active -= 1
            viewer.seen = time.monotonic()
        if viewer.dropped and viewer.active == 0 and not viewer.closed:
            viewer.closed = True
            close = getattr(viewer.source, "close", None)
            if close is not None:
                self._later(close())

    def _later(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def sweep(self) -> None:
        """Drop the users idle (no request under way) for :attr:`idle_seconds`."""
        cutoff = time.monotonic() - self.idle_seconds
        for key, viewer in list(self.viewers.items()):
            if viewer.active == 0 and viewer.seen < cutoff:
                self.drop(key)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(min(SWEEP_SECONDS, self.idle_seconds))
            self.sweep()

    def start(self) -> None:
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="console-users")

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        for key in list(self.viewers):
            viewer = self.viewers[key]
            viewer.active = 0
            self.drop(key)
        await asyncio.gather(*self._closing, return_exceptions=True)
