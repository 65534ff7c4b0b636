"""operator/headwater/leader.py: the pure decisions, and the elector against a fake API."""

from __future__ import annotations

import asyncio
import copy
import os
import signal
import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from lightkube.core.exceptions import ApiError
from lightkube.models.meta_v1 import Status
from lightkube.resources.coordination_v1 import Lease

from headwater.config import LeaderElection
from headwater.leader import (
    LeaderElector,
    LeadershipLost,
    LeaseRecord,
    can_acquire,
    next_spec,
    released_spec,
    stall_limit,
    stalled,
)
from headwater.runtime import exit_when_stalled

T = datetime(2025, 1, 1, tzinfo=UTC)


def record(holder: str | None, transitions: int = 0) -> LeaseRecord:
    return LeaseRecord(holder, 15, T, T, transitions)


def test_can_acquire() -> None:
    assert can_acquire(None, "me", 0, 0)
    assert can_acquire(record(None), "me", 0, 0)
    assert can_acquire(record("me"), "me", 0, 0)
    assert not can_acquire(record("other"), "me", observed_at=100, monotonic_now=114)
    assert can_acquire(record("other"), "me", observed_at=100, monotonic_now=115)


def test_next_spec_counts_transitions_and_keeps_acquire_time() -> None:
    later = datetime(2025, 1, 1, 0, 1, tzinfo=UTC)
    fresh = next_spec(None, "me", 15, later)
    assert (fresh.holderIdentity, fresh.leaseTransitions, fresh.acquireTime) == ("me", 0, later)
    renewed = next_spec(record("me", 2), "me", 15, later)
    assert (renewed.leaseTransitions, renewed.acquireTime, renewed.renewTime) == (2, T, later)
    taken = next_spec(record("other", 2), "me", 15, later)
    assert (taken.holderIdentity, taken.leaseTransitions, taken.acquireTime) == ("me", 3, later)
    assert released_spec(record("me", 3), later).holderIdentity is None


def _api_error(code: int) -> ApiError:
    return ApiError(status=Status(code=code, message=f"fake {code}"))


class FakeApi:
    """Leases with resourceVersion checks, as the API server does them."""

    def __init__(self) -> None:
        self.leases: dict[str, Lease] = {}
        self.version = 0
        self.fail = False

    def _stamp(self, lease: Lease) -> Lease:
        self.version += 1
        assert lease.metadata is not None
        lease.metadata.resourceVersion = str(self.version)
        self.leases[str(lease.metadata.name)] = copy.deepcopy(lease)
        return copy.deepcopy(lease)

    async def get(self, _res: Any, name: str, *, namespace: str) -> Lease:
        if self.fail:
            raise _api_error(503)
        if name not in self.leases:
            raise _api_error(404)
        return copy.deepcopy(self.leases[name])

    async def create(self, lease: Lease) -> Lease:
        assert lease.metadata is not None
        if str(lease.metadata.name) in self.leases:
            raise _api_error(409)
        return self._stamp(lease)

    async def replace(self, lease: Lease) -> Lease:
        if self.fail:
            raise _api_error(503)
        assert lease.metadata is not None
        current = self.leases[str(lease.metadata.name)]
        assert current.metadata is not None
        if current.metadata.resourceVersion != lease.metadata.resourceVersion:
            raise _api_error(409)
        return self._stamp(lease)


SETTINGS = LeaderElection(
    lease_name="hw",
    lease_namespace="ns",
    lease_duration_seconds=3,
    renew_deadline_seconds=2,
    retry_period_seconds=1,
)


def elector(api: FakeApi, name: str) -> LeaderElector:
    return LeaderElector(api, SETTINGS, name)  # type: ignore[arg-type]


async def test_only_one_acquires() -> None:
    api = FakeApi()
    a, b = elector(api, "a"), elector(api, "b")
    assert await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()
    assert await a.try_acquire_or_renew()  # renewal
    assert api.leases["hw"].spec is not None
    assert api.leases["hw"].spec.holderIdentity == "a"


async def test_release_lets_standby_in_at_once() -> None:
    api = FakeApi()
    a, b = elector(api, "a"), elector(api, "b")
    assert await a.try_acquire_or_renew()
    await a.release()
    assert await b.try_acquire_or_renew()
    assert api.leases["hw"].spec is not None
    assert api.leases["hw"].spec.leaseTransitions == 0  # a free lease is no takeover


async def test_lead_runs_work_and_releases() -> None:
    api = FakeApi()
    a = elector(api, "a")
    assert await a.wait_for_leadership(asyncio.Event())
    ran: list[bool] = []

    async def work(stop_flag: asyncio.Event) -> None:
        ran.append(True)

    await a.lead(work)
    assert ran == [True]
    assert api.leases["hw"].spec is not None
    assert api.leases["hw"].spec.holderIdentity is None


async def test_lead_stops_work_when_renewal_fails() -> None:
    api = FakeApi()
    a = elector(api, "a")
    assert await a.wait_for_leadership(asyncio.Event())
    stopped = asyncio.Event()

    async def work(stop_flag: asyncio.Event) -> None:
        api.fail = True  # the API server becomes unreachable
        await stop_flag.wait()
        stopped.set()

    with pytest.raises(LeadershipLost):
        await asyncio.wait_for(a.lead(work), timeout=10)
    assert stopped.is_set()
    assert not a.leading


async def test_standby_stops_waiting_when_asked() -> None:
    api = FakeApi()
    assert await elector(api, "a").try_acquire_or_renew()
    stopping = asyncio.Event()
    stopping.set()
    assert not await elector(api, "b").wait_for_leadership(stopping)


def test_stalled_between_renew_deadline_and_lease_duration() -> None:
    assert stall_limit(SETTINGS) == 2.5
    assert not stalled(None, 1000, SETTINGS)  # not leading
    assert not stalled(100, 102.4, SETTINGS)
    assert stalled(100, 102.5, SETTINGS)


async def test_watchdog_ends_a_leader_whose_event_loop_is_blocked() -> None:
    """A blocked loop cannot run the renewal loop that would stop kopf: the watchdog
    thread must call ``on_stall`` before a standby may take over (lease duration)."""
    api = FakeApi()
    a = elector(api, "a")
    assert await a.wait_for_leadership(asyncio.Event())
    called = threading.Event()

    async def work(stop_flag: asyncio.Event) -> None:
        began = time.monotonic()
        called.wait(timeout=10)  # blocks the event loop, as a stall does
        assert called.is_set(), "on_stall was never called"
        assert time.monotonic() - began < SETTINGS.lease_duration_seconds

    await asyncio.wait_for(a.lead(work, on_stall=called.set), timeout=15)


async def test_the_watchdog_leaves_a_renewing_leader_alone() -> None:
    api = FakeApi()
    a = elector(api, "a")
    assert await a.wait_for_leadership(asyncio.Event())
    called = threading.Event()

    async def work(stop_flag: asyncio.Event) -> None:
        await asyncio.sleep(SETTINGS.lease_duration_seconds + 0.5)

    await a.lead(work, on_stall=called.set)
    assert not called.is_set()
    assert a.renewed_at is None  # released


def test_sigcont_ends_a_leader_whose_lease_ran_out_while_stopped() -> None:
    """After SIGSTOP/SIGCONT the handler runs before anything queued meanwhile."""
    a = elector(FakeApi(), "a")
    exits: list[bool] = []
    restore = exit_when_stalled(a, lambda: exits.append(True))
    try:
        os.kill(os.getpid(), signal.SIGCONT)  # not leading: nothing to do
        a.leading, a.renewed_at = True, time.monotonic()
        os.kill(os.getpid(), signal.SIGCONT)  # renewed just now
        assert exits == []
        a.renewed_at = time.monotonic() - SETTINGS.lease_duration_seconds
        os.kill(os.getpid(), signal.SIGCONT)
        assert exits == [True]
    finally:
        restore()
