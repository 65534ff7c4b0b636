"""Leader election on a coordination.k8s.io/v1 Lease: only one replica acts.

Why a Lease and not kopf's peering: kopf peering is cooperative. Each
operator announces itself in a KopfPeering object and pauses when it sees a
peer of higher priority, but two replicas of *equal* priority both pause (or,
with races at start-up, both act for a moment), it needs kopf's own peering
CRDs installed, and nothing stops a paused replica's in-flight handlers. The
product promise is stricter — any replica may be killed at any moment without
duplicating a build — so Headwater uses the same algorithm as client-go's
``leaderelection`` package:

* A standby reads the Lease every ``retry_period``; it may take the Lease only
  when it is free, or when the holder has not renewed it for
  ``lease_duration`` *as measured on the standby's own monotonic clock* since
  it last saw the Lease change (clock skew between nodes does not matter).
* Every write is a ``replace`` carrying the resourceVersion that was read, so
  of two replicas racing for a free Lease exactly one succeeds (the other gets
  409 Conflict).
* The leader renews every ``retry_period``. If it has not renewed for
  ``renew_deadline`` (< ``lease_duration``), it stops kopf and the process
  exits non-zero (the pod restarts as a standby). It therefore stops acting
  before any standby may consider the Lease expired.
* On a graceful stop the leader releases the Lease so a standby takes over at
  once instead of after ``lease_duration``.
* A leader that was *stalled* (the process frozen by SIGSTOP or a cgroup
  freezer, the VM paused, the event loop blocked) may wake after a standby
  took over, with watch events and timers queued: kopf would run them at once,
  before the renewal loop gets its turn, and write as a second leader. So a
  watchdog thread, and for SIGSTOP/SIGCONT a signal handler that runs before
  any queued callback, end the process at once (:func:`stalled`) when the last
  renewal is older than halfway between ``renew_deadline`` and
  ``lease_duration``: past the point where the leader promised to have stopped,
  before any standby may take over.

The decisions are pure functions (:func:`can_acquire`, :func:`next_spec`);
:class:`LeaderElector` does the I/O with lightkube.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease

from headwater.config import LeaderElection
from headwater.kube import is_conflict, is_gone

logger = logging.getLogger(__name__)


class LeadershipLost(RuntimeError):
    """This replica could not renew its Lease in time and has stopped acting."""


@dataclass(frozen=True)
class LeaseRecord:
    """The parts of a Lease the election reads."""

    holder: str | None
    """holderIdentity; None or empty when the Lease is free."""
    duration_seconds: int
    """leaseDurationSeconds the holder promised to renew within."""
    acquire_time: datetime | None
    """When the current holder took the Lease."""
    renew_time: datetime | None
    """When the holder last renewed it."""
    transitions: int
    """leaseTransitions: how many times the holder changed."""


def record_from_spec(spec: LeaseSpec | None, default_duration: int) -> LeaseRecord:
    """A LeaseRecord from a Lease's spec (missing fields as a fresh Lease has them)."""
    if spec is None:
        return LeaseRecord(None, default_duration, None, None, 0)
    return LeaseRecord(
        holder=spec.holderIdentity or None,
        duration_seconds=spec.leaseDurationSeconds or default_duration,
        acquire_time=spec.acquireTime,
        renew_time=spec.renewTime,
        transitions=spec.leaseTransitions or 0,
    )


def can_acquire(
    record: LeaseRecord | None,
    identity: str,
    observed_at: float,
    monotonic_now: float,
) -> bool:
    """Whether ``identity`` may write the Lease now.

    ``observed_at`` is the local monotonic time at which the Lease was last seen
    to change; expiry is judged from it, never from the remote renewTime.
    """
    if record is None or not record.holder or record.holder == identity:
        return True
    return monotonic_now - observed_at >= record.duration_seconds


def next_spec(
    record: LeaseRecord | None, identity: str, duration_seconds: int, now: datetime
) -> LeaseSpec:
    """The spec that acquires (or renews, when already held) the Lease for ``identity``."""
    held = record is not None and record.holder == identity
    transitions = 0 if record is None else record.transitions
    acquire_time = record.acquire_time if held and record is not None else now
    if record is not None and record.holder and not held:
        transitions += 1
    return LeaseSpec(
        holderIdentity=identity,
        leaseDurationSeconds=duration_seconds,
        acquireTime=acquire_time,
        renewTime=now,
        leaseTransitions=transitions,
    )


def released_spec(record: LeaseRecord, now: datetime) -> LeaseSpec:
    """The spec that gives the Lease up: no holder, so standbys may take it at once."""
    return LeaseSpec(
        holderIdentity=None,
        leaseDurationSeconds=1,
        acquireTime=record.acquire_time,
        renewTime=now,
        leaseTransitions=record.transitions,
    )


def stall_limit(settings: LeaderElection) -> float:
    """Seconds without a renewal after which a leader must end at once, whatever it does.

    Halfway between ``renew_deadline`` (when the renewal loop stops kopf) and
    ``lease_duration`` (when a standby may take over): the loop gets its chance
    to stop gracefully first, and the process is gone before a standby acts.
    """
    return (settings.renew_deadline_seconds + settings.lease_duration_seconds) / 2


def stalled(renewed_at: float | None, now: float, settings: LeaderElection) -> bool:
    """Whether a leader whose last successful renewal began at ``renewed_at`` (monotonic)
    has gone too long without one (None: not leading)."""
    return renewed_at is not None and now - renewed_at >= stall_limit(settings)


def _utcnow() -> datetime:
    now = datetime.now(UTC)
    # lightkube drops a zero fraction from isoformat(), and the API server parses
    # MicroTime with exactly six fractional digits: avoid the one-in-a-million 422.
    return now if now.microsecond else now.replace(microsecond=1)


class LeaderElector:
    """Acquires and renews one Lease; runs a coroutine only while holding it."""

    def __init__(
        self,
        client: AsyncClient,
        settings: LeaderElection,
        identity: str,
        *,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self._client = client
        self._settings = settings
        self.identity = identity
        self._on_change = on_change
        self._observed: LeaseRecord | None = None
        self._observed_version: str | None = None
        self._observed_at = time.monotonic()
        self.leading = False
        self.renewed_at: float | None = None
        """Monotonic time at which the last successful acquire/renew round began; None
        when not leading (a round began before the write, so this errs early)."""

    def _observe(self, record: LeaseRecord | None, version: str | None) -> None:
        if record != self._observed or version != self._observed_version:
            self._observed, self._observed_version = record, version
            self._observed_at = time.monotonic()

    def stalled(self) -> bool:
        """Whether this replica leads but has gone too long without renewing (see
        :func:`stalled`); safe to call from another thread or a signal handler."""
        return stalled(self.renewed_at, time.monotonic(), self._settings)

    def _set_leading(self, leading: bool) -> None:
        if not leading:
            self.renewed_at = None
        if leading != self.leading:
            self.leading = leading
            if self._on_change is not None:
                self._on_change(leading)

    async def try_acquire_or_renew(self) -> bool:
        """One round: True when this replica holds the Lease afterwards."""
        s = self._settings
        try:
            lease = await self._client.get(Lease, s.lease_name, namespace=s.lease_namespace)
        except ApiError as exc:
            if not is_gone(exc):
                raise
            new = Lease(
                metadata=ObjectMeta(name=s.lease_name, namespace=s.lease_namespace),
                spec=next_spec(None, self.identity, s.lease_duration_seconds, _utcnow()),
            )
            try:
                created = await self._client.create(new)
            except ApiError as create_exc:
                if is_conflict(create_exc):  # another replica created it first
                    return False
                raise
            self._observe(record_from_spec(created.spec, s.lease_duration_seconds), None)
            return True

        version = lease.metadata.resourceVersion if lease.metadata else None
        record = record_from_spec(lease.spec, s.lease_duration_seconds)
        self._observe(record, version)
        if not can_acquire(record, self.identity, self._observed_at, time.monotonic()):
            return False
        # replace() sends the resourceVersion we read: a concurrent writer makes it 409.
        lease.spec = next_spec(record, self.identity, s.lease_duration_seconds, _utcnow())
        try:
            updated = await self._client.replace(lease)
        except ApiError as exc:
            if is_conflict(exc):
                return False
            raise
        new_version = updated.metadata.resourceVersion if updated.metadata else None
        self._observe(record_from_spec(updated.spec, s.lease_duration_seconds), new_version)
        return True

    async def release(self) -> None:
        """Give the Lease up if this replica holds it; errors are logged, not raised."""
        s = self._settings
        try:
            lease = await self._client.get(Lease, s.lease_name, namespace=s.lease_namespace)
            record = record_from_spec(lease.spec, s.lease_duration_seconds)
            if record.holder != self.identity:
                return
            lease.spec = released_spec(record, _utcnow())
            await self._client.replace(lease)
            logger.info("released lease %s/%s", s.lease_namespace, s.lease_name)
        except Exception as exc:  # shutting down anyway; the Lease expires on its own
            logger.warning("could not release the lease: %s", exc)
        finally:
            self._set_leading(False)

    def _jitter(self, seconds: float) -> float:
        # Keep standbys from polling in lock-step.
        return seconds * (1.0 + 0.2 * random.random())  # noqa: S311 (not cryptographic)

    async def wait_for_leadership(self, stopping: asyncio.Event) -> bool:
        """Poll until this replica holds the Lease (True) or ``stopping`` is set (False)."""
        s = self._settings
        announced = False
        while not stopping.is_set():
            try:
                began = time.monotonic()
                if await self.try_acquire_or_renew():
                    self.renewed_at = began
                    self._set_leading(True)
                    logger.info(
                        "acquired lease %s/%s as %s", s.lease_namespace, s.lease_name, self.identity
                    )
                    return True
            except Exception as exc:  # API errors and transport errors alike: retry
                logger.warning("lease %s/%s: %s", s.lease_namespace, s.lease_name, exc)
            if not announced:
                holder = (self._observed.holder if self._observed else None) or "(unknown)"
                logger.info("standing by; lease %s/%s held by %s", s.lease_namespace,
                            s.lease_name, holder)  # fmt: skip
                announced = True
            await _wait(stopping, self._jitter(s.retry_period_seconds))
        return False

    def _watch_for_stalls(self, on_stall: Callable[[], None], done: threading.Event) -> None:
        tick = min(0.25, self._settings.retry_period_seconds / 4)
        while not done.wait(tick):
            if self.stalled():
                on_stall()
                return

    async def lead(
        self,
        work: Callable[[asyncio.Event], Coroutine[Any, Any, Any]],
        on_stall: Callable[[], None] | None = None,
    ) -> None:
        """Run ``work(stop_flag)`` while renewing; stop it and raise LeadershipLost on loss.

        ``work`` returning on its own (a signal stopped kopf) ends the term
        normally and releases the Lease. ``on_stall`` is called from a watchdog
        thread when the renewals stopped for :func:`stall_limit` seconds (the event
        loop blocked, the process frozen): it must end the process at once.
        """
        s = self._settings
        stop_flag = asyncio.Event()
        task = asyncio.create_task(work(stop_flag), name="headwater-leader-work")
        if self.renewed_at is None:
            self.renewed_at = time.monotonic()
        last_renewal = self.renewed_at
        lost = False
        watchdog_done = threading.Event()
        if on_stall is not None:
            threading.Thread(
                target=self._watch_for_stalls,
                args=(on_stall, watchdog_done),
                name="headwater-leader-watchdog",
                daemon=True,
            ).start()
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=s.retry_period_seconds)
                if task.done():
                    break
                remaining = s.renew_deadline_seconds - (time.monotonic() - last_renewal)
                began = time.monotonic()
                try:
                    renewed = await asyncio.wait_for(
                        self.try_acquire_or_renew(), timeout=max(remaining, 0.1)
                    )
                except Exception as exc:  # API, transport, timeout: retry until the deadline
                    logger.warning("renewing the lease failed: %s", exc)
                    renewed = False
                if renewed:
                    last_renewal = self.renewed_at = began
                elif time.monotonic() - last_renewal >= s.renew_deadline_seconds:
                    lost = True
                    logger.error(
                        "lost lease %s/%s (not renewed for %ss); stopping",
                        s.lease_namespace,
                        s.lease_name,
                        s.renew_deadline_seconds,
                    )
                    break
        finally:
            if not task.done():
                stop_flag.set()
                await asyncio.wait({task})
            watchdog_done.set()
        if lost:
            self._set_leading(False)
            raise LeadershipLost(f"lease {s.lease_namespace}/{s.lease_name} lost")
        await self.release()
        task.result()  # re-raise a crash of the work itself


async def _wait(event: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout=seconds)
