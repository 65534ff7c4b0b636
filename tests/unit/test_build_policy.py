"""operator/headwater/builds/policy.py: run policies and history pruning."""

from __future__ import annotations

import pytest

from headwater.builds.model import (
    CANCELLED,
    COMPLETE,
    ERROR,
    FAILED,
    NEW,
    PARALLEL,
    PENDING,
    RUNNING,
    SERIAL,
    SERIAL_LATEST_ONLY,
    BuildSummary,
    summarize,
)
from headwater.builds.policy import RunPlan, builds_to_prune, plan_runs


def b(number: int, phase: str = NEW, *, job: bool = False, cancel: bool = False) -> BuildSummary:
    return BuildSummary(
        name=f"web-{number}", number=number, phase=phase, cancel_requested=cancel, has_job=job
    )


def names(*numbers: int) -> tuple[str, ...]:
    return tuple(f"web-{n}" for n in numbers)


def shuffled(builds: list[BuildSummary], seed: int) -> list[BuildSummary]:
    """A fixed reordering per seed: rotated by ``seed``, reversed for odd seeds."""
    rotated = builds[seed % len(builds) :] + builds[: seed % len(builds)]
    return rotated[::-1] if seed % 2 else rotated


# --- plan_runs: nothing queued -------------------------------------------------------


@pytest.mark.parametrize("policy", [SERIAL, PARALLEL, SERIAL_LATEST_ONLY])
def test_nothing_queued_is_an_empty_plan(policy: str) -> None:
    assert plan_runs([], policy) == RunPlan()
    builds = [b(1, COMPLETE), b(2, RUNNING, job=True), b(3, NEW, job=True), b(4, NEW, cancel=True)]
    assert plan_runs(builds, policy) == RunPlan()


# --- Serial ------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_serial_starts_the_lowest_numbered_when_idle(seed: int) -> None:
    builds = shuffled([b(1, COMPLETE), b(2, FAILED), b(5), b(3), b(4)], seed)
    plan = plan_runs(builds, SERIAL)
    assert plan.start == names(3)
    assert plan.cancel == ()
    assert dict(plan.waiting) == {
        "web-4": "waiting for web-3 to finish (runPolicy Serial)",
        "web-5": "waiting for web-3 to finish (runPolicy Serial)",
    }


@pytest.mark.parametrize("active", [b(2, PENDING), b(2, RUNNING), b(2, NEW, job=True)])
def test_serial_waits_for_the_active_build(active: BuildSummary) -> None:
    plan = plan_runs([b(1, COMPLETE), active, b(3), b(4)], SERIAL)
    assert plan.start == ()
    assert plan.cancel == ()
    assert dict(plan.waiting) == {
        "web-3": "waiting for web-2 to finish (runPolicy Serial)",
        "web-4": "waiting for web-2 to finish (runPolicy Serial)",
    }


def test_serial_blocker_is_the_lowest_numbered_active() -> None:
    plan = plan_runs([b(7, RUNNING, job=True), b(5, PENDING, job=True), b(9)], SERIAL)
    assert dict(plan.waiting) == {"web-9": "waiting for web-5 to finish (runPolicy Serial)"}


def test_serial_a_higher_numbered_running_build_still_blocks() -> None:
    # Builds can end up out of order (a hand-made Build, a re-run): running is running.
    plan = plan_runs([b(2), b(3, RUNNING, job=True)], SERIAL)
    assert plan.start == ()
    assert dict(plan.waiting) == {"web-2": "waiting for web-3 to finish (runPolicy Serial)"}


@pytest.mark.parametrize("phase", [COMPLETE, FAILED, ERROR, CANCELLED])
def test_serial_terminal_builds_never_block(phase: str) -> None:
    # A finished build keeps its jobName: it must still not hold the slot.
    plan = plan_runs([b(1, phase, job=True), b(2)], SERIAL)
    assert plan.start == names(2)
    assert dict(plan.waiting) == {}


def test_serial_cancel_requested_new_builds_neither_start_nor_wait() -> None:
    plan = plan_runs([b(1, cancel=True), b(2), b(3, cancel=True)], SERIAL)
    assert plan.start == names(2)
    assert dict(plan.waiting) == {}


def test_serial_cancel_requested_build_with_a_job_still_blocks() -> None:
    # Its pod is still being torn down: the next build waits for the Cancelled phase.
    plan = plan_runs([b(1, RUNNING, job=True, cancel=True), b(2)], SERIAL)
    assert plan.start == ()
    assert dict(plan.waiting) == {"web-2": "waiting for web-1 to finish (runPolicy Serial)"}


def test_serial_new_build_with_a_job_is_not_started_twice() -> None:
    plan = plan_runs([b(1, NEW, job=True), b(2)], SERIAL)
    assert "web-1" not in plan.start
    assert "web-1" not in plan.waiting
    assert plan.waiting["web-2"] == "waiting for web-1 to finish (runPolicy Serial)"


@pytest.mark.parametrize("policy", ["", "Bogus"])
def test_unknown_policy_behaves_serially(policy: str) -> None:
    plan = plan_runs([b(1), b(2)], policy)
    assert plan.start == names(1)
    assert set(plan.waiting) == {"web-2"}
    assert plan.cancel == ()


# --- Parallel ----------------------------------------------------------------------


def test_parallel_starts_every_queued_build_in_order() -> None:
    builds = [b(4), b(1, RUNNING, job=True), b(2), b(3, cancel=True), b(5, COMPLETE), b(6)]
    plan = plan_runs(builds, PARALLEL)
    assert plan == RunPlan(start=names(2, 4, 6))


# --- SerialLatestOnly ----------------------------------------------------------------


def test_latest_only_idle_starts_newest_and_cancels_older_queued() -> None:
    plan = plan_runs([b(1, COMPLETE), b(4), b(2), b(3)], SERIAL_LATEST_ONLY)
    assert plan.start == names(4)
    assert plan.cancel == names(2, 3)
    assert dict(plan.waiting) == {}


def test_latest_only_busy_newest_waits_and_older_queued_are_cancelled() -> None:
    plan = plan_runs([b(1, RUNNING, job=True), b(2), b(3), b(4)], SERIAL_LATEST_ONLY)
    assert plan.start == ()
    assert plan.cancel == names(2, 3)
    assert dict(plan.waiting) == {
        "web-4": "waiting for web-1 to finish (runPolicy SerialLatestOnly)"
    }


def test_latest_only_single_queued_build_is_not_cancelled() -> None:
    plan = plan_runs([b(1, PENDING, job=True), b(2)], SERIAL_LATEST_ONLY)
    assert plan.cancel == ()
    assert set(plan.waiting) == {"web-2"}


def test_latest_only_never_cancels_active_builds() -> None:
    plan = plan_runs([b(1, RUNNING, job=True), b(2, NEW, job=True), b(3), b(4)], SERIAL_LATEST_ONLY)
    assert plan.cancel == names(3)
    assert plan.waiting == {"web-4": "waiting for web-1 to finish (runPolicy SerialLatestOnly)"}


def test_plans_use_the_summary_of_real_build_bodies() -> None:
    def body(number: int, status: dict[str, object]) -> dict[str, object]:
        return {"metadata": {"name": f"web-{number}"}, "status": status}

    builds = [
        summarize(body(1, {"phase": "Running", "jobName": "web-1-build"})),
        summarize(body(2, {})),
        summarize(body(3, {"phase": "New", "cancelled": True})),
    ]
    plan = plan_runs(builds, SERIAL)
    assert plan.start == ()
    assert dict(plan.waiting) == {"web-2": "waiting for web-1 to finish (runPolicy Serial)"}


# --- builds_to_prune ----------------------------------------------------------------


HISTORY = [
    b(1, COMPLETE),
    b(2, FAILED),
    b(3, COMPLETE),
    b(4, ERROR),
    b(5, CANCELLED),
    b(6, COMPLETE),
    b(7, FAILED),
    b(8, COMPLETE),
    b(9, RUNNING, job=True),
    b(10, NEW),
    b(11, PENDING, job=True),
]


def test_none_keeps_everything() -> None:
    assert builds_to_prune(HISTORY, None, None) == []


def test_zero_prunes_every_finished_build_of_that_kind() -> None:
    assert builds_to_prune(HISTORY, 0, None) == list(names(1, 3, 6, 8))
    assert builds_to_prune(HISTORY, None, 0) == list(names(2, 4, 5, 7))
    assert builds_to_prune(HISTORY, 0, 0) == list(names(1, 2, 3, 4, 5, 6, 7, 8))


def test_negative_limit_is_zero() -> None:
    assert builds_to_prune(HISTORY, -3, None) == list(names(1, 3, 6, 8))


def test_keeps_the_newest_n_of_each_kind_separately() -> None:
    # Successful: 8, 6 kept; 3, 1 go. Failed (Failed/Error/Cancelled): 7, 5, 4 kept; 2 goes.
    assert builds_to_prune(HISTORY, 2, 3) == list(names(1, 2, 3))


def test_result_is_oldest_first_whatever_the_input_order() -> None:
    for seed in range(5):
        assert builds_to_prune(shuffled(HISTORY, seed), 1, 1) == list(names(1, 2, 3, 4, 5, 6))


def test_cancelled_and_error_count_as_failed() -> None:
    history = [b(1, CANCELLED), b(2, ERROR), b(3, FAILED), b(4, COMPLETE)]
    assert builds_to_prune(history, 5, 1) == list(names(1, 2))
    assert builds_to_prune(history, 0, 5) == list(names(4))


def test_limits_above_the_count_prune_nothing() -> None:
    assert builds_to_prune(HISTORY, 4, 4) == []
    assert builds_to_prune(HISTORY, 100, 100) == []


@pytest.mark.parametrize("phase", [NEW, PENDING, RUNNING])
def test_unfinished_builds_are_never_pruned(phase: str) -> None:
    history = [b(n, phase, job=phase != NEW) for n in range(1, 6)]
    assert builds_to_prune(history, 0, 0) == []


def test_ordering_is_by_number_not_name() -> None:
    history = [b(9, COMPLETE), b(10, COMPLETE), b(100, COMPLETE), b(2, COMPLETE)]
    # "web-10" < "web-9" as text: the newest two are 100 and 10.
    assert builds_to_prune(history, 2, None) == list(names(2, 9))
