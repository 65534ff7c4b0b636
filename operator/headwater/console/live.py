"""Live updates: one watch per (kind, namespace) shown, fanned out to SSE streams.

An :class:`Informer` lists a kind once, then watches it from the list's
resourceVersion, keeping the objects by name and bumping a version on every
change; it runs while at least one stream uses it, and for
:data:`LINGER_SECONDS` after the last one leaves (or after a page was rendered
from it), so the next page of that namespace is rendered from memory. The
:class:`Hub` bounds how many streams and watches run at once, and says when an
informer's objects may be served (:meth:`Hub.current`): only while it is synced
(listed, and its watch running since) and has no problem.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from headwater.console.source import Kind, Problem, Source, is_problem, problem

log = logging.getLogger("headwater.console")

MAX_STREAMS = 64
"""Open SSE streams at once (each browser tab holds one or two)."""
MAX_WATCHES = 32
"""Watches at once (kind x namespace), shared by the streams that show them."""
RETRY_SECONDS = 2.0
MAX_RETRY_SECONDS = 60.0
KEEPALIVE_SECONDS = 15.0
LINGER_SECONDS = 300.0
"""An informer no stream uses is kept this long (the console is one user's process:
the watches of the namespace being looked at are worth keeping between pages)."""


def sse_frame(event: str, data: str) -> bytes:
    """One server-sent event: each line of ``data`` a ``data:`` field (so a newline in the
    data cannot end the event or start a field), the event name on one line."""
    name = "".join(ch for ch in event if ch not in "\r\n")
    lines = data.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    body = "".join(f"data: {line}\n" for line in lines)
    return f"event: {name}\n{body}\n".encode()


def sse_comment(text: str = "") -> bytes:
    return f": {text}\n\n".encode()


class Busy(Exception):
    """Too many streams or watches: the page says so and keeps its last state."""


class Informer:
    """The objects of one kind in one namespace, kept current by a watch."""

    def __init__(self, source: Source, kind: Kind, namespace: str) -> None:
        self.source = source
        self.kind = kind
        self.namespace = namespace
        self.objects: dict[str, dict[str, Any]] = {}
        self.version = 0
        self.synced = False
        """Listed, and watching since: ``objects`` are current. False from the moment the
        watch ends or fails until the next list has replaced them."""
        self.problem: Problem | None = None
        self.users = 0
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._expiry: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"console-watch-{self.kind.key}")

    async def stop(self) -> None:
        if self._expiry is not None and self._expiry is not asyncio.current_task():
            self._expiry.cancel()
        self._expiry = None
        self.synced = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def _bump(self) -> None:
        self.version += 1
        self._changed.set()
        self._changed = asyncio.Event()

    async def changed(self, since: int, wait_seconds: float) -> bool:
        """Wait until the version passes ``since``; False on timeout."""
        if self.version > since:
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), wait_seconds)
        return self.version > since

    async def ready(self, wait_seconds: float) -> bool:
        """Wait (up to ``wait_seconds``) until the first list is in or has failed; True
        when the objects may be served (synced, no problem)."""
        deadline = asyncio.get_running_loop().time() + wait_seconds
        while not self.synced and self.problem is None and self.running:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            await self.changed(self.version, left)
        return self.usable

    @property
    def usable(self) -> bool:
        """Its objects are current: running, listed and watching since, no problem."""
        return self.running and self.synced and self.problem is None

    def values(self) -> list[dict[str, Any]]:
        return list(self.objects.values())

    async def _run(self) -> None:
        from headwater.kube import Failure, classify

        failures = 0
        while True:
            watching = False
            try:
                items, version = await self.source.list(self.kind, self.namespace)
                self.objects = {_key(o): o for o in items}
                self.synced, self.problem, failures = True, None, 0
                self._bump()
                watching = True
                async for event, obj in self.source.watch(self.kind, self.namespace, version):
                    if event == "DELETED":
                        self.objects.pop(_key(obj), None)
                    elif event in ("ADDED", "MODIFIED"):
                        self.objects[_key(obj)] = obj
                    else:
                        continue
                    self._bump()
                self.synced = False  # the watch ended: nothing says what changed since
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.synced = False
                if watching and classify(exc) is Failure.GONE:
                    continue  # 410: the watch's version expired; list again at once
                failures += 1
                if not is_problem(exc):
                    log.exception("watch of %s in %s failed", self.kind.key, self.namespace)
                    self.problem = Problem("Watch failed", f"{type(exc).__name__}: {exc}")
                else:
                    self.problem = problem(exc, f"watching {self.kind.label}")
                self._bump()
            # The watch ended or failed: list again, after a pause growing with the
            # failures (a Forbidden or a missing kind does not spin).
            if failures:
                await asyncio.sleep(min(RETRY_SECONDS * 2 ** (failures - 1), MAX_RETRY_SECONDS))


def _key(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return str(meta.get("uid") or meta.get("name") or "")


@dataclass(frozen=True)
class Budget:
    """Watches shared by several hubs (token mode: every user's together)."""

    limit: int
    hubs: Callable[[], Iterable[Hub]]

    def used(self) -> int:
        return sum(len(hub.informers) for hub in self.hubs())


class Hub:
    """Shares informers between streams; bounds streams and watches."""

    def __init__(
        self,
        source: Source,
        max_streams: int = MAX_STREAMS,
        max_watches: int = MAX_WATCHES,
        linger_seconds: float = LINGER_SECONDS,
        budget: Budget | None = None,
    ) -> None:
        self.source = source
        self.budget = budget
        """Watches this hub shares with others, if any (besides its own ``max_watches``)."""
        self.max_streams = max_streams
        self.max_watches = max_watches
        self.linger_seconds = linger_seconds
        self.streams = 0
        self.informers: dict[tuple[str, str], Informer] = {}
        self.closed = False
        """Closed (its user was dropped, or the console stops): streams end."""

    def _room(self, kinds: list[Kind], namespace: str) -> None:
        """Make room for the informers of ``kinds`` not running yet: idle ones (no stream)
        are stopped first, oldest first; Busy when that is not enough."""
        new = [k for k in kinds if (k.key, namespace) not in self.informers]
        idle = [
            key
            for key, i in self.informers.items()
            if i.users == 0 and key[1] != namespace  # dict order: the oldest first
        ]

        def shared_over() -> bool:
            return self.budget is not None and self.budget.used() + len(new) > self.budget.limit

        while (len(self.informers) + len(new) > self.max_watches or shared_over()) and idle:
            informer = self.informers.pop(idle.pop(0))
            self._stop_later(informer, 0)
        if len(self.informers) + len(new) > self.max_watches:
            raise Busy(f"{len(self.informers)} watches already running")
        if shared_over():
            raise Busy("the console's watches for all its users are running")

    def _take(self, kind: Kind, namespace: str) -> Informer:
        informer = self.informers.get((kind.key, namespace))
        if informer is None:
            informer = Informer(self.source, kind, namespace)
            self.informers[(kind.key, namespace)] = informer
        if informer._expiry is not None:
            informer._expiry.cancel()
            informer._expiry = None
        informer.start()
        return informer

    def _stop_later(self, informer: Informer, seconds: float) -> None:
        """Stop ``informer`` after ``seconds`` unless a stream or a page took it again."""

        async def expire() -> None:
            if seconds > 0:
                await asyncio.sleep(seconds)
            key = (informer.kind.key, informer.namespace)
            if informer.users == 0:
                if self.informers.get(key) is informer:
                    self.informers.pop(key)
                await informer.stop()

        if informer._expiry is not None:
            informer._expiry.cancel()
        informer._expiry = asyncio.create_task(expire(), name="console-watch-expiry")

    def keep(self, kinds: Iterable[Kind], namespace: str) -> list[Informer]:
        """The informers of ``kinds`` in ``namespace``, started if need be and kept for
        :attr:`linger_seconds` more (a page rendered from them is followed by its stream,
        and often by another page). Busy when there is no room."""
        wanted = list(kinds)
        self._room(wanted, namespace)
        taken = [self._take(kind, namespace) for kind in wanted]
        for informer in taken:
            if informer.users == 0:
                self._stop_later(informer, self.linger_seconds)
        return taken

    def current(self, kind: Kind, namespace: str) -> list[dict[str, Any]] | None:
        """The objects of ``kind`` in ``namespace`` from a running watch, when they are
        current (:attr:`Informer.usable`); None otherwise: the caller lists."""
        informer = self.informers.get((kind.key, namespace))
        if informer is None or not informer.usable:
            return None
        return informer.values()

    @contextlib.asynccontextmanager
    async def subscribe(
        self, kinds: Iterable[Kind], namespace: str
    ) -> AsyncIterator[list[Informer]]:
        """The informers of ``kinds`` in ``namespace`` for one stream's lifetime."""
        wanted = list(kinds)
        if self.streams >= self.max_streams:
            raise Busy(f"{self.streams} live streams already open")
        self._room(wanted, namespace)
        self.streams += 1
        taken: list[Informer] = []
        try:
            for kind in wanted:
                informer = self._take(kind, namespace)
                informer.users += 1
                taken.append(informer)
            yield taken
        finally:
            self.streams -= 1
            for informer in taken:
                informer.users -= 1
                if informer.users == 0:
                    if self.linger_seconds > 0:
                        self._stop_later(informer, self.linger_seconds)
                    else:
                        self.informers.pop((informer.kind.key, namespace), None)
                        await informer.stop()

    async def close(self) -> None:
        self.closed = True
        for informer in list(self.informers.values()):
            informer.users = 0
            await informer.stop()
        self.informers.clear()


async def wait_any(
    informers: list[Informer], seen: dict[str, int], wait_seconds: float
) -> set[str]:
    """The keys of the informers that changed since ``seen`` (waiting up to ``wait_seconds``)."""
    changed = {i.kind.key for i in informers if i.version > seen.get(i.kind.key, -1)}
    if changed:
        return changed
    waits = [
        asyncio.create_task(i.changed(seen.get(i.kind.key, -1), wait_seconds)) for i in informers
    ]
    try:
        await asyncio.wait(waits, timeout=wait_seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waits:
            task.cancel()
        await asyncio.gather(*waits, return_exceptions=True)
    return {i.kind.key for i in informers if i.version > seen.get(i.kind.key, -1)}
