"""Politeness to registries: a fair token bucket per host, backoff per host, a lock per repository.

Imports to one registry host share its rate (``importRates``, else
``importRatePerMinute``; :class:`HostBuckets`), in two lanes (scheduled checks, and
imports someone is waiting for), each served to the namespaces waiting in turn
(:class:`FairBucket`), so one namespace with thousands of tags delays another's
imports by at most a turn, and no push waits behind the schedule. A host that
answered 429, 5xx or nothing is left alone for a while (:class:`HostBackoff`).
One request at a time goes to a repository per login and namespace
(:class:`RepositoryLocks`). Everything kept per host or repository is bounded
or dropped when unused.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Literal

MAX_HOSTS = 1024
"""Registry hosts whose bucket and backoff are remembered; idle ones are forgotten first."""


class FairBucket:
    """At most ``rate`` acquisitions per minute, in bursts up to ``burst``, shared fairly.

    Waiters queue per namespace, and tokens go to the waiting namespaces in
    turn (round robin), so a namespace with 500 tags waiting takes one token
    in every *n* (for *n* namespaces waiting), not the next 500.
    """

    def __init__(
        self,
        rate_per_minute: int,
        burst: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate_per_minute / 60.0
        self.capacity = float(burst if burst is not None else max(1, rate_per_minute // 6))
        self.clock = clock
        self.tokens = self.capacity
        self.updated = clock()
        self._queues: dict[str, collections.deque[asyncio.Future[None]]] = {}
        """Namespace -> its waiters; dict order is the turn order."""
        self._timer: asyncio.TimerHandle | None = None

    @property
    def idle(self) -> bool:
        """Nobody waits and the bucket is full again (it can be forgotten)."""
        self._refill()
        return not self._queues and self.tokens >= self.capacity

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + max(0.0, now - self.updated) * self.rate)
        self.updated = now

    async def acquire(self, namespace: str = "") -> None:
        self._refill()
        if not self._queues and self.tokens >= 1:
            self.tokens -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queues.setdefault(namespace, collections.deque()).append(waiter)
        self._pump()
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.tokens += 1  # granted just as it was cancelled: give it back
            self._discard(namespace, waiter)
            raise

    def take(self, count: int) -> int:
        """Up to ``count`` tokens at once, without waiting; none while others wait."""
        self._refill()
        if self._queues or count <= 0:
            return 0
        taken = min(count, int(self.tokens))
        self.tokens -= taken
        return taken

    def _discard(self, namespace: str, waiter: asyncio.Future[None]) -> None:
        queue = self._queues.get(namespace)
        if queue is not None:
            with contextlib.suppress(ValueError):
                queue.remove(waiter)
            if not queue:
                del self._queues[namespace]

    def _pump(self) -> None:
        self._timer = None
        self._refill()
        while self._queues and self.tokens >= 1:
            namespace = next(iter(self._queues))
            queue = self._queues.pop(namespace)
            waiter = queue.popleft()
            if queue:
                self._queues[namespace] = queue  # to the back of the turn
            if waiter.done():
                continue
            self.tokens -= 1
            waiter.set_result(None)
        if self._queues and self._timer is None:
            delay = (1 - self.tokens) / self.rate
            self._timer = asyncio.get_running_loop().call_later(delay, self._pump)


Lane = Literal["scheduled", "now"]
"""Which budget an import draws on: ``scheduled`` (the import schedule and retries) or
``now`` (pushes, requests, new tags and spec changes). Each has the host's rate, so a
notified import never queues behind the schedule, and neither can starve the other."""

DOCKER_HUB_NAMES = ("docker.io", "index.docker.io", "registry-1.docker.io")


class HostBuckets:
    """One :class:`FairBucket` per registry host and lane, at most ``MAX_HOSTS`` of them.

    ``rates`` gives a host its own rate per minute (``importRates``); every other
    host gets ``rate_per_minute`` (``importRatePerMinute``).
    """

    def __init__(
        self,
        rate_per_minute: int,
        max_hosts: int = MAX_HOSTS,
        rates: Mapping[str, int] | None = None,
    ) -> None:
        self.rate_per_minute = rate_per_minute
        self.max_hosts = max_hosts
        self.rates: dict[str, int] = {}
        for host, rate in (rates or {}).items():
            names = DOCKER_HUB_NAMES if host.lower() in DOCKER_HUB_NAMES else (host,)
            self.rates.update(dict.fromkeys((n.lower() for n in names), rate))
        self._buckets: collections.OrderedDict[tuple[str, str], FairBucket] = (
            collections.OrderedDict()
        )

    def __len__(self) -> int:
        return len(self._buckets)

    def rate(self, host: str) -> int:
        """Requests per minute allowed to ``host`` (per lane)."""
        return self.rates.get(host.lower(), self.rate_per_minute)

    def bucket(self, host: str, lane: Lane = "scheduled") -> FairBucket:
        key = (lane, host)
        bucket = self._buckets.pop(key, None) or FairBucket(self.rate(host))
        self._buckets[key] = bucket  # most recently used last
        if len(self._buckets) > self.max_hosts:
            # Forget idle hosts, least recently used first (a forgotten host
            # starts again with a full bucket, which is the worst it can gain;
            # one with waiters is kept).
            for name, old in list(self._buckets.items()):
                if len(self._buckets) <= self.max_hosts:
                    break
                if old.idle:
                    del self._buckets[name]
        return bucket

    async def acquire(self, host: str, namespace: str, lane: Lane = "scheduled") -> None:
        await self.bucket(host, lane).acquire(namespace)


class HostBackoff:
    """Per registry host: after a 429, a 5xx or no answer, wait before asking again.

    Exponential with jitter (1 s doubling up to 5 minutes), never shorter than
    the host's own Retry-After; one success clears it. Tags due meanwhile are
    deferred, not failed: the host's trouble is not the tag's. Failures while
    a wait runs (requests that were in flight together) do not lengthen it.
    """

    BASE = 1.0
    CAP = 300.0
    TRIGGERS = frozenset({"RateLimited", "ServerError", "Unreachable", "Timeout"})

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_hosts: int = MAX_HOSTS):
        self.clock = clock
        self.max_hosts = max_hosts
        self._until: dict[str, float] = {}
        self._failures: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._failures)

    def remaining(self, host: str) -> float:
        return max(0.0, self._until.get(host, 0.0) - self.clock())

    def failed(self, host: str, reason: str, retry_after: float | None) -> None:
        if reason not in self.TRIGGERS:
            return
        now = self.clock()
        until = self._until.get(host, 0.0)
        if until > now:
            # The host is being waited for already: this request was in flight when
            # another failed (or raced the wait). One outage counts once; otherwise
            # N tags failing together would double the wait N times (a 15 s registry
            # restart with 20 due tags: 5 minutes without imports).
            if retry_after:
                self._until.pop(host)
                self._until[host] = max(until, now + min(retry_after, 3600.0))
            return
        failures = self._failures.get(host, 0) + 1
        self._failures[host] = failures
        backoff = min(self.CAP, self.BASE * 2 ** (failures - 1)) * random.uniform(0.5, 1.0)  # noqa: S311 - jitter
        wait = min(max(backoff, retry_after or 0.0), 3600.0)
        self._until.pop(host, None)
        self._until[host] = now + wait  # the latest last
        if len(self._until) > self.max_hosts:
            # Forget the hosts whose wait ended longest ago (a new failure starts over).
            for name in list(self._until)[: len(self._until) - self.max_hosts]:
                self.succeeded(name)

    def succeeded(self, host: str) -> None:
        self._until.pop(host, None)
        self._failures.pop(host, None)


RepositoryKey = tuple[str, str, str, str]
"""(registry host, repository, login, namespace)."""


class RepositoryLocks:
    """One request at a time per (host, repository, login, namespace).

    Politeness to registries, and no duplicate token fetches for one scope;
    per namespace, so one namespace's queue for a repository never holds up
    another's. A lock is dropped when nobody uses it.
    """

    def __init__(self) -> None:
        self._locks: dict[RepositoryKey, asyncio.Lock] = {}
        self._users: collections.Counter[RepositoryKey] = collections.Counter()

    def __len__(self) -> int:
        return len(self._locks)

    @contextlib.asynccontextmanager
    async def hold(self, key: RepositoryKey) -> AsyncIterator[None]:
        """The lock of ``key``, dropped when nobody uses it."""
        self._users[key] += 1
        lock = self._locks.setdefault(key, asyncio.Lock())
        try:
            async with lock:
                yield
        finally:
            self._users[key] -= 1
            if self._users[key] <= 0:
                del self._users[key]
                self._locks.pop(key, None)
