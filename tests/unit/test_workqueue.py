"""The keyed work queue: one reconcile per key at a time, failures retried with backoff."""

from __future__ import annotations

import asyncio
import time

import pytest

from headwater.workqueue import Backoff, ObjectRef, WorkQueue
from tests.fakekube import converged, fast, running

A, B = ObjectRef("shop", "a"), ObjectRef("shop", "b")


def test_backoff_doubles_from_half_a_second_is_capped_and_jittered_within_its_upper_half() -> None:
    backoff = Backoff(base=0.5, max_delay=300.0)
    assert [backoff.delay(n, 0.0) for n in (1, 2, 3, 4)] == [0.25, 0.5, 1.0, 2.0]
    assert [backoff.delay(n, 0.999999) for n in (1, 2)] == pytest.approx([0.5, 1.0])
    assert backoff.delay(40, 0.0) == 150.0
    assert backoff.delay(10_000, 0.5) == pytest.approx(225.0)


async def test_a_failing_key_is_retried_until_it_succeeds_and_then_forgotten() -> None:
    attempts: list[ObjectRef] = []

    async def reconcile(key: ObjectRef) -> None:
        attempts.append(key)
        if len(attempts) < 4:
            raise RuntimeError("API server said 500")

    queue: WorkQueue[ObjectRef] = WorkQueue("test", reconcile)
    fast(queue)
    async with running(queue):
        queue.add(A)
        await converged(queue)
    assert attempts == [A] * 4
    assert queue.failures == {}


async def test_a_key_added_while_it_runs_runs_again_after_never_alongside() -> None:
    running_now: set[ObjectRef] = set()
    overlaps = 0
    runs = 0
    release, first = asyncio.Event(), asyncio.Event()

    async def reconcile(key: ObjectRef) -> None:
        nonlocal overlaps, runs
        overlaps += key in running_now
        running_now.add(key)
        runs += 1
        first.set()
        if runs == 1:
            await release.wait()
        running_now.discard(key)

    queue: WorkQueue[ObjectRef] = WorkQueue("test", reconcile)
    async with running(queue):
        queue.add(A)
        await first.wait()
        queue.add(A)  # arrives while the first run is in progress
        queue.add(A)
        release.set()
        await converged(queue)
    assert (runs, overlaps) == (2, 0)


async def test_a_key_cancelled_while_it_runs_is_not_run_again_even_if_it_failed() -> None:
    started = asyncio.Event()
    release = asyncio.Event()
    runs = 0

    async def reconcile(key: ObjectRef) -> None:
        nonlocal runs
        runs += 1
        started.set()
        await release.wait()
        raise RuntimeError("failed while its object was deleted")

    queue: WorkQueue[ObjectRef] = WorkQueue("test", reconcile)
    fast(queue)
    async with running(queue):
        queue.add(A)
        await started.wait()
        queue.cancel(A)
        release.set()
        await converged(queue)
        await asyncio.sleep(0.05)
    assert runs == 1
    assert len(queue) == 0


async def test_a_plan_for_later_is_replaced_cancelled_or_brought_forward() -> None:
    seen: list[ObjectRef] = []

    async def reconcile(key: ObjectRef) -> None:
        seen.append(key)

    queue: WorkQueue[ObjectRef] = WorkQueue("test", reconcile)
    async with running(queue):
        later = time.time() + 3600
        queue.at(A, later)
        queue.at(B, later)
        assert queue.planned(A) == later
        queue.at(A, None)
        assert queue.planned(A) is None
        queue.add(B)  # sooner than its plan
        await converged(queue)
    assert seen == [B]


async def test_resync_adds_the_keys_not_already_waiting() -> None:
    async def reconcile(key: ObjectRef) -> None:
        return None

    queue: WorkQueue[ObjectRef] = WorkQueue("test", reconcile)
    queue.at(A, time.time() + 3600)
    assert queue.resync([A, B]) == 1
    assert queue.resync([A, B]) == 0


async def test_a_reconcile_that_plans_nothing_more_still_runs_again_for_an_add_meanwhile() -> None:
    """The import runner ends each reconcile with at(key, next time or None): a watch event
    that arrived during the run must not be dropped by that None."""
    release, first = asyncio.Event(), asyncio.Event()
    runs = 0
    queue: WorkQueue[ObjectRef]

    async def reconcile(key: ObjectRef) -> None:
        nonlocal runs
        runs += 1
        first.set()
        if runs == 1:
            await release.wait()
        queue.at(key, None)  # nothing due later

    queue = WorkQueue("test", reconcile)
    async with running(queue):
        queue.add(A)
        await first.wait()
        queue.add(A)  # a watch event during the run
        release.set()
        await converged(queue)
    assert runs == 2
