"""The keyed work queue every controller runs on.

Watch events, timers, tag moves, registry notifications and start requests
only *add a key* (an object's namespace and name); a worker then reconciles
that key from the current state, level-based. So:

- one key is never reconciled twice at once; a key added while it runs is
  run again right after (nothing that arrived meanwhile is missed);
- a reconcile that raises is retried with exponential backoff and jitter
  (:class:`Backoff`), for ever: an API error is never final, and a key that
  keeps failing costs one attempt per ``max_delay``;
- a key can be due at a time (:meth:`WorkQueue.at`): the import schedule is
  "reconcile this stream at T" on the same queue;
- :meth:`WorkQueue.resync` re-adds every key its owner knows, as a safety net
  for anything missed (a lost watch event, a bug);
- free slots go to namespaces in turn, and no namespace holds more than its
  share (``concurrency`` divided by the namespaces with work, and never all of
  them: ``concurrency // 8`` stay free for namespaces whose work comes due
  later), so one tenant's slow work never starves another's.

This is client-go's workqueue (dirty/processing sets, a rate-limited requeue)
with the per-namespace fairness Headwater needs on shared clusters.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import heapq
import logging
import random
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from headwater.kube import API_ERRORS, classify
from headwater.metrics import QUEUE_DEPTH, RECONCILE_DURATION, RECONCILE_ERRORS

logger = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter: ``base * 2**(failures - 1)``, capped, and
    drawn uniformly from its upper half so that keys failing together spread out."""

    base: float = 0.5
    max_delay: float = 300.0

    def delay(self, failures: int, draw: float) -> float:
        """Seconds to wait after the ``failures``-th failure in a row; ``draw`` in [0, 1)."""
        ceiling = min(self.max_delay, self.base * 2.0 ** max(0, min(failures - 1, 30)))
        return ceiling / 2 + ceiling / 2 * draw


@dataclass(frozen=True, order=True)
class ObjectRef:
    """A namespaced object's key: what watch events, timers and requests queue."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


def _namespace_of(key: object) -> str:
    return str(getattr(key, "namespace", ""))


class WorkQueue(Generic[K]):
    """Keys due now or at a time, reconciled one at a time per key, failures retried."""

    def __init__(
        self,
        name: str,
        reconcile: Callable[[K], Awaitable[None]],
        *,
        concurrency: int = 8,
        kind: str | None = None,
        backoff: Backoff | None = None,
        namespace_of: Callable[[K], str] = _namespace_of,
        clock: Callable[[], float] = time.time,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self.name = name
        self.kind = kind or name
        """The ``kind`` label of the reconcile duration metric."""
        self._reconcile = reconcile
        self.concurrency = max(1, concurrency)
        self._reserve = self.concurrency // 8
        self.backoff = backoff or Backoff()
        self._namespace_of = namespace_of
        self._clock = clock
        self._draw = draw
        self._heap: list[tuple[float, int, K]] = []
        self._due: dict[K, float] = {}
        self._ready: dict[str, dict[K, None]] = {}
        """Namespace -> its due keys, oldest first; dict order is the turn order."""
        self._ready_count = 0
        self._running: collections.Counter[str] = collections.Counter()
        self._in_flight: set[K] = set()
        self._after: dict[K, float | None] = {}
        """Keys running now -> when to run them again (None: not again, unless failed)."""
        self._cancelled: set[K] = set()
        self.reconciles = 0
        """Reconciles started, for tests and benchmarks."""
        self.failures: dict[K, int] = {}
        """Consecutive failures per key; gone on the key's next success."""
        self._seq = 0
        self._changed = asyncio.Event()
        self._settled = asyncio.Event()
        self._settled.set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None

    # --- adding keys -------------------------------------------------------------

    def add(self, key: K) -> None:
        """Reconcile ``key`` as soon as a slot is free (sooner than any time planned)."""
        self._plan(key, self._clock(), earliest=True)

    def at(self, key: K, when: datetime | float | None) -> None:
        """Reconcile ``key`` at ``when``, replacing an earlier plan; None drops a timed plan.

        While the key runs, plans made meanwhile are combined (the earliest wins)
        and take effect when it ends; None then changes nothing (an add that came
        in meanwhile still runs it again). To drop everything, :meth:`cancel`.
        """
        if when is None:
            # No timed plan. A key added meanwhile (now) still runs: only
            # cancel() (the object is gone) drops that too.
            if key not in self._in_flight and self._due.pop(key, None) is not None:
                self._count()
            return
        moment = when.timestamp() if isinstance(when, datetime) else float(when)
        self._plan(key, moment, earliest=False)

    def cancel(self, key: K) -> None:
        """Drop ``key``'s plan and failure count (the object is gone)."""
        self._unready(key)
        self._due.pop(key, None)
        self.failures.pop(key, None)
        if key in self._in_flight:
            self._after[key] = None
            self._cancelled.add(key)
        self._count()

    def _plan(self, key: K, moment: float, *, earliest: bool) -> None:
        if key in self._in_flight:
            self._cancelled.discard(key)
            planned = self._after.get(key)
            self._after[key] = moment if planned is None else min(planned, moment)
            return
        if self._is_ready(key):
            return  # already due now: it runs at its turn
        planned = self._due.get(key)
        if earliest and planned is not None and planned <= moment:
            return
        self._due[key] = moment
        self._seq += 1
        heapq.heappush(self._heap, (moment, self._seq, key))
        self._settled.clear()
        self._count()
        self._changed.set()

    # --- state -------------------------------------------------------------------

    def running(self, namespace: str) -> int:
        """Reconciles of ``namespace`` running now."""
        return self._running[namespace]

    def planned(self, key: K) -> float | None:
        """When ``key`` is due (a timestamp), if it waits for a time."""
        return self._due.get(key)

    def __len__(self) -> int:
        return len(self._due) + self._ready_count + len(self._in_flight)

    def _is_ready(self, key: K) -> bool:
        queue = self._ready.get(self._namespace_of(key))
        return queue is not None and key in queue

    def _count(self) -> None:
        QUEUE_DEPTH.labels(queue=self.name).set(len(self._due) + self._ready_count)

    def _unready(self, key: K) -> None:
        namespace = self._namespace_of(key)
        queue = self._ready.get(namespace)
        if queue is not None and key in queue:
            del queue[key]
            self._ready_count -= 1
            if not queue:
                del self._ready[namespace]

    # --- running -----------------------------------------------------------------

    def _share(self) -> int:
        """The most slots one namespace may hold now."""
        busy = set(self._ready) | {ns for ns, n in self._running.items() if n > 0}
        share = self.concurrency // max(1, len(busy))
        return max(1, min(share, self.concurrency - self._reserve))

    def _promote(self, now: float) -> None:
        """Move keys whose time has come from the heap to their namespace's queue."""
        while self._heap:
            moment, _, key = self._heap[0]
            if self._due.get(key) != moment:
                heapq.heappop(self._heap)  # replaced or cancelled
                continue
            if moment > now:
                break
            heapq.heappop(self._heap)
            del self._due[key]
            self._ready.setdefault(self._namespace_of(key), {})[key] = None
            self._ready_count += 1

    def _dispatch(self) -> None:
        """Start due keys while slots are free, namespaces in turn, each within its share."""
        while len(self._in_flight) < self.concurrency and self._ready:
            share = self._share()
            namespace = next((ns for ns in self._ready if self._running[ns] < share), None)
            if namespace is None:
                return
            queue = self._ready.pop(namespace)
            key = next(iter(queue))
            del queue[key]
            self._ready_count -= 1
            if queue:
                self._ready[namespace] = queue  # to the back of the turn
            self._running[namespace] += 1
            self._in_flight.add(key)
            task = asyncio.create_task(self._run_one(key))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._count()

    def start(self) -> None:
        """Run the dispatch loop in a task of its own, unless it runs already."""
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.get_running_loop().create_task(self.run())

    @property
    def started(self) -> bool:
        return self._loop_task is not None and not self._loop_task.done()

    async def run(self) -> None:
        """Dispatch due keys until cancelled."""
        while True:
            self._changed.clear()
            self._promote(self._clock())
            self._dispatch()
            if not self._in_flight and not self._ready_count:
                self._settled.set()
            delay = self._heap[0][0] - self._clock() if self._heap else 3600.0
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a
            # cancellation that races the event, and the loop would never stop.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(delay, 0.0)):
                    await self._changed.wait()

    async def _run_one(self, key: K) -> None:
        failed = False
        self.reconciles += 1
        started = time.perf_counter()
        try:
            await self._reconcile(key)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failed = True
            self._failed(key, exc)
        else:
            self.failures.pop(key, None)
        finally:
            RECONCILE_DURATION.labels(kind=self.kind).observe(time.perf_counter() - started)
            namespace = self._namespace_of(key)
            self._in_flight.discard(key)
            self._running[namespace] -= 1
            if self._running[namespace] <= 0:
                del self._running[namespace]
            after = self._after.pop(key, None)
            cancelled = key in self._cancelled
            self._cancelled.discard(key)
            if cancelled:
                self.failures.pop(key, None)
            if failed and not cancelled:
                retry = self._clock() + self.backoff.delay(self.failures[key], self._draw())
                after = retry if after is None else min(after, retry)
            if after is not None and not cancelled:
                self._plan(key, after, earliest=False)
            self._changed.set()

    def _failed(self, key: K, exc: Exception) -> None:
        count = self.failures.get(key, 0) + 1
        self.failures[key] = count
        RECONCILE_ERRORS.labels(queue=self.name).inc()
        if isinstance(exc, API_ERRORS):
            logger.warning(
                "%s %s: %s API error (failure %d in a row), retrying with backoff: %s",
                self.name, key, classify(exc).value, count, exc,
            )  # fmt: skip
        else:
            logger.exception(
                "%s %s failed (failure %d in a row), retrying with backoff",
                self.name, key, count,
            )  # fmt: skip

    # --- safety net and shutdown -------------------------------------------------

    def resync(self, keys: Iterable[K]) -> int:
        """Add every key of ``keys`` not already waiting; how many were added."""
        added = 0
        for key in list(keys):
            if key in self._in_flight or self._is_ready(key) or key in self._due:
                continue
            self.add(key)
            added += 1
        return added

    async def resync_every(self, seconds: float, keys: Callable[[], Iterable[K]]) -> None:
        """Call :meth:`resync` with ``keys()`` every ``seconds`` (jittered), until cancelled."""
        while True:
            await asyncio.sleep(seconds * (0.9 + 0.2 * self._draw()))
            added = self.resync(keys())
            if added:
                logger.debug("%s: resync added %d keys", self.name, added)

    async def settle(self) -> None:
        """Wait until nothing is due now or running (future plans do not count)."""
        while True:
            self._changed.set()
            await self._settled.wait()
            await asyncio.sleep(0)
            if not self._in_flight and not self._ready_count and self._settled.is_set():
                due_now = any(moment <= self._clock() for moment in self._due.values())
                if not due_now:
                    return
                self._settled.clear()

    async def stop(self) -> None:
        """Stop the loop :meth:`start` started, and the reconciles running now."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
            self._loop_task = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
