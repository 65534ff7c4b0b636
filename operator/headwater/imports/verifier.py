"""Verifying images against named keys: the cache, the retry schedule and the registry budget.

:meth:`Verifier.verify` answers "does this image (a digest in a repository)
carry a signature made by one of these keys?" as a
:class:`~headwater.imports.verification.Verdict`. The answer per
(digest, key fingerprint) is kept: a verified image stays verified (a digest
cannot change), so the steady state costs no registry request; an unverified
one is looked at again on a bounded backoff (5 s doubling to 5 minutes,
:func:`~headwater.imports.verification.retry_delay`), so an image signed later
is found without anyone asking, and :meth:`Verifier.recheck` (``headwater
import-image``) looks again at once.

Signature fetches share the import budget: a token of the registry host's
bucket (:class:`~headwater.imports.throttle.HostBuckets`, in the lane the
caller names), no request while the host backs off, and one fetch at a time
per digest (concurrent callers wait for it and share its answer).

Who hears of a changed answer: :meth:`subscribe` callbacks get the digest
(the ImageStream runner updates the tags' ``Verified`` conditions, the
workload controller re-plans the workloads following tags at that image).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from headwater.imports.keys import KeyProblem, KeyStore, PublicKey
from headwater.imports.throttle import HostBackoff, HostBuckets, Lane
from headwater.imports.verification import (
    REASON_MISMATCH,
    REASON_NO_SIGNATURE,
    REASON_REGISTRY_ERROR,
    REASON_VERIFIED,
    Verdict,
    combine,
    retry_delay,
)
from headwater.metrics import SIGNATURE_FETCHES, registry_label
from headwater.registry.reference import ReferenceError, parse_reference

logger = logging.getLogger(__name__)

MAX_CACHED = 20_000
"""(digest, key) answers kept; the least recently used go first."""


@dataclass(frozen=True)
class Signatures:
    """What the registry holds for a digest: the signatures found (possibly none)."""

    items: tuple[object, ...]
    """Opaque to this module: handed to the ``check`` function with each key."""


@dataclass(frozen=True)
class FetchFailed:
    """The registry did not answer usefully; nothing is known about the signatures."""

    message: str
    reason: str = "Unreachable"
    retry_after: float | None = None


Fetch = Callable[[str, str, str, bool], Awaitable[Signatures | FetchFailed]]
"""(image reference pinned by digest, digest, namespace, plain HTTP allowed) -> the signatures
of that digest."""
Check = Callable[[object, PublicKey, str], bool]
"""(one signature, a key, the digest) -> whether that key made it over that digest."""
Listener = Callable[[str], Awaitable[None]]


@dataclass
class _Entry:
    verdict: Verdict
    attempts: int
    due: float
    """When a negative answer is looked at again (monotonic); inf for a positive one."""


class Verifier:
    """Verdicts per (digest, key), fetched within the registry budget and kept."""

    def __init__(
        self,
        keys: KeyStore,
        fetch: Fetch,
        check: Check,
        *,
        buckets: HostBuckets | None = None,
        backoff: HostBackoff | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        max_cached: int = MAX_CACHED,
    ) -> None:
        self.keys = keys
        self.fetch = fetch
        self.check = check
        self.buckets = buckets
        self.backoff = backoff
        self.monotonic = monotonic
        self.max_cached = max_cached
        self._cache: collections.OrderedDict[tuple[str, str], _Entry] = collections.OrderedDict()
        self._keys_of: dict[str, set[str]] = {}
        """Digest -> the key fingerprints cached for it (next_check and recheck look at
        one digest's entries, not the whole cache)."""
        self._inflight: dict[str, asyncio.Future[Signatures | FetchFailed]] = {}
        self._listeners: list[Listener] = []
        self.fetches = 0
        """Signature fetches made (one registry round per digest: a figure for tests)."""

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def __len__(self) -> int:
        return len(self._cache)

    async def verify(
        self,
        reference: str,
        digest: str,
        keys: Sequence[str],
        *,
        namespace: str = "",
        lane: Lane = "scheduled",
        insecure: bool = False,
    ) -> Verdict:
        """Whether ``digest`` (pulled as ``reference``) is signed by one of ``keys``.

        Answered from the cache while it holds an answer for every key (a negative
        one until it is due again). Raises only on API errors reading a key.
        """
        outcomes: dict[str, Verdict] = {}
        usable: dict[str, PublicKey] = {}
        for name in keys:
            found = await self.keys.get(name)
            if isinstance(found, KeyProblem):
                outcomes[name] = Verdict("False", found.reason, found.message)
            else:
                usable[name] = found
        now = self.monotonic()
        stale = [
            name
            for name, key in usable.items()
            if (entry := self._cached(digest, key)) is None or entry.due <= now
        ]
        if stale and not any(self._known_good(digest, usable[n]) for n in usable):
            result = await self._signatures(reference, digest, namespace, lane, insecure)
            changed = False
            for name in stale:
                changed |= self._record(digest, usable[name], name, reference, result)
            if changed:
                await self._announce(digest)
        for name, key in usable.items():
            entry = self._cached(digest, key)
            if entry is not None:
                outcomes[name] = entry.verdict
        return combine(outcomes, list(keys), reference)

    def next_check(self, digest: str, keys: Sequence[str]) -> float | None:
        """Seconds until an unverified answer for ``digest`` is due again (None: nothing due)."""
        dues = [entry.due for entry in self._entries(digest) if not entry.verdict.verified]
        if not dues:
            return None
        return max(0.0, min(dues) - self.monotonic())

    def recheck(self, digest: str) -> None:
        """Look at ``digest``'s unverified answers again at the next verify (and its keys)."""
        self.keys.forget()
        for entry in self._entries(digest):
            if not entry.verdict.verified:
                entry.due = 0.0

    # --- internals --------------------------------------------------------------

    def _entries(self, digest: str) -> list[_Entry]:
        found = (self._cache.get((digest, f)) for f in self._keys_of.get(digest, ()))
        return [entry for entry in found if entry is not None]

    def _cached(self, digest: str, key: PublicKey) -> _Entry | None:
        entry = self._cache.get((digest, key.fingerprint))
        if entry is not None:
            self._cache.move_to_end((digest, key.fingerprint))
        return entry

    def _known_good(self, digest: str, key: PublicKey) -> bool:
        entry = self._cache.get((digest, key.fingerprint))
        return entry is not None and entry.verdict.verified

    def _record(
        self,
        digest: str,
        key: PublicKey,
        name: str,
        reference: str,
        result: Signatures | FetchFailed,
    ) -> bool:
        """Keep the answer for (digest, key); True when its status changed."""
        previous = self._cache.get((digest, key.fingerprint))
        attempts = (previous.attempts if previous is not None else 0) + 1
        if isinstance(result, FetchFailed):
            verdict = Verdict(
                "Unknown",
                REASON_REGISTRY_ERROR,
                f"key {name}: signatures of {reference} could not be read: {result.message}",
            )
            delay = max(retry_delay(attempts), result.retry_after or 0.0)
        elif any(self._check(sig, key, digest) for sig in result.items):
            verdict = Verdict(
                "True", REASON_VERIFIED, f"signed by key {name} ({key.fingerprint[:19]})", name
            )
            delay = float("inf")
        elif result.items:
            verdict = Verdict(
                "False",
                REASON_MISMATCH,
                f"key {name}: {len(result.items)} signature(s) of {reference}, none made"
                f" by this key",
            )
            delay = retry_delay(attempts)
        else:
            verdict = Verdict(
                "False", REASON_NO_SIGNATURE, f"key {name}: {reference} has no signature"
            )
            delay = retry_delay(attempts)
        self._cache[(digest, key.fingerprint)] = _Entry(verdict, attempts, self.monotonic() + delay)
        self._cache.move_to_end((digest, key.fingerprint))
        self._keys_of.setdefault(digest, set()).add(key.fingerprint)
        while len(self._cache) > self.max_cached:
            (old, fingerprint), _ = self._cache.popitem(last=False)
            kept = self._keys_of.get(old)
            if kept is not None:
                kept.discard(fingerprint)
                if not kept:
                    del self._keys_of[old]
        return previous is None or previous.verdict.status != verdict.status

    def _check(self, signature: object, key: PublicKey, digest: str) -> bool:
        try:
            return self.check(signature, key, digest)
        except Exception:  # a malformed signature is not one made by this key
            logger.debug("signature check failed", exc_info=True)
            return False

    async def _signatures(
        self, reference: str, digest: str, namespace: str, lane: Lane, insecure: bool
    ) -> Signatures | FetchFailed:
        """One fetch per digest at a time; callers meanwhile share its answer."""
        running = self._inflight.get(digest)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[Signatures | FetchFailed] = (
            asyncio.get_running_loop().create_future()
        )
        self._inflight[digest] = future
        try:
            result = await self._fetch(reference, digest, namespace, lane, insecure)
            future.set_result(result)
            return result
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters get it through shield
            raise
        finally:
            del self._inflight[digest]

    async def _fetch(
        self, reference: str, digest: str, namespace: str, lane: Lane, insecure: bool
    ) -> Signatures | FetchFailed:
        try:
            image = parse_reference(reference)
        except ReferenceError as exc:
            return FetchFailed(str(exc), reason="InvalidImageReference")
        host = image.api_host
        if self.backoff is not None:
            waiting = self.backoff.remaining(host)
            if waiting > 0:
                return FetchFailed(
                    f"{host} asked to back off", reason="Deferred", retry_after=waiting
                )
        if self.buckets is not None:
            await self.buckets.acquire(host, namespace, lane)
        self.fetches += 1
        result = await self.fetch(reference, digest, namespace, insecure)
        outcome = (
            "failed"
            if isinstance(result, FetchFailed)
            else ("signed" if result.items else "unsigned")
        )
        SIGNATURE_FETCHES.labels(registry=registry_label(image.domain), result=outcome).inc()
        if self.backoff is not None:
            if isinstance(result, FetchFailed):
                self.backoff.failed(host, result.reason, result.retry_after)
            else:
                self.backoff.succeeded(host)
        return result

    async def _announce(self, digest: str) -> None:
        for listener in self._listeners:
            try:
                await listener(digest)
            except Exception:
                logger.exception("a verification listener failed for %s", digest)
