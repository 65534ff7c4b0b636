"""Run policies and history pruning (pure): which builds start, which wait, which go."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from headwater.builds.model import (
    COMPLETE,
    NEW,
    PARALLEL,
    SERIAL_LATEST_ONLY,
    UNSUCCESSFUL,
    BuildSummary,
)


@dataclass(frozen=True)
class RunPlan:
    """What to do with a BuildConfig's queued builds now."""

    start: tuple[str, ...] = ()
    cancel: tuple[str, ...] = ()
    """Queued builds a newer one supersedes (SerialLatestOnly)."""
    waiting: Mapping[str, str] = field(default_factory=dict)
    """Queued build name to the reason it waits, for its status."""


def plan_runs(builds: Sequence[BuildSummary], policy: str) -> RunPlan:
    """Which New builds of one BuildConfig may start under ``policy``.

    Serial: the lowest-numbered New build starts when none is active.
    SerialLatestOnly: the same, but only the newest queued build survives; the
    older queued ones are cancelled. Parallel: every New build starts.
    """
    queued = sorted(
        (b for b in builds if b.phase == NEW and not b.has_job and not b.cancel_requested),
        key=lambda b: b.number,
    )
    if not queued:
        return RunPlan()
    if policy == PARALLEL:
        return RunPlan(start=tuple(b.name for b in queued))
    cancel: tuple[str, ...] = ()
    if policy == SERIAL_LATEST_ONLY:
        cancel = tuple(b.name for b in queued[:-1])
        queued = queued[-1:]
    active = sorted((b for b in builds if b.active), key=lambda b: b.number)
    if active:
        blocker = active[0].name
        reason = f"waiting for {blocker} to finish (runPolicy {policy})"
        return RunPlan(cancel=cancel, waiting={b.name: reason for b in queued})
    first = queued[0]
    reason = f"waiting for {first.name} to finish (runPolicy {policy})"
    return RunPlan(
        start=(first.name,),
        cancel=cancel,
        waiting={b.name: reason for b in queued[1:]},
    )


def builds_to_prune(
    builds: Sequence[BuildSummary], successful_limit: int | None, failed_limit: int | None
) -> list[str]:
    """Finished builds beyond the history limits, oldest first; None means keep all."""
    doomed: list[BuildSummary] = []
    for phases, limit in (({COMPLETE}, successful_limit), (UNSUCCESSFUL, failed_limit)):
        if limit is None:
            continue
        done = sorted((b for b in builds if b.phase in phases), key=lambda b: -b.number)
        doomed += done[max(limit, 0) :]
    return [b.name for b in sorted(doomed, key=lambda b: b.number)]
