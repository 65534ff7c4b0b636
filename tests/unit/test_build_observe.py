"""operator/headwater/builds/observe.py: Build status from the Job and its pod."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from headwater.builds.model import (
    BUILD_CONTAINER,
    COMPLETE,
    ERROR,
    FAILED,
    FETCH_CONTAINER,
    PENDING,
    RUNNING,
)
from headwater.builds.observe import (
    SNIPPET_BYTES,
    SNIPPET_LINES,
    Observation,
    log_needed,
    observe,
    snippet,
)
from headwater.timefmt import format_time

T_FETCH = "2025-03-04T05:06:07Z"
T_FETCH_END = "2025-03-04T05:06:19Z"  # 12 s later
T_BUILD = "2025-03-04T05:06:20Z"
T_BUILD_END = "2025-03-04T05:08:01Z"
BUILDER = "quay.io/buildah/stable:v1.37"
COMMIT = "3f2a9c1d5e7b8a6f4c2e0d1b9a8f7e6d5c4b3a21"
DIGEST = "sha256:" + "d" * 64

FETCH_REPORT = json.dumps(
    {
        "commit": COMMIT,
        "author": {"name": "Ada Lovelace", "email": "ada@example.com"},
        "committer": {"name": "GitHub", "email": "noreply@github.com"},
        "message": 'Fix "checkout" \\ flow',
        "ms": 11873,
    },
    separators=(",", ":"),
)
MS_BUILD = 1741064780000  # 2025-03-04T05:06:20Z in milliseconds
BUILD_REPORT = json.dumps(
    {
        "digest": DIGEST,
        "stages": [
            {"name": "Build", "start": MS_BUILD, "ms": 84211},
            {"name": "PostCommit", "start": MS_BUILD + 84300, "ms": 0},
            {"name": "PushImage", "start": MS_BUILD + 84400, "ms": 15602},
        ],
    },
    separators=(",", ":"),
)


def job(*conditions: dict[str, Any], active: int = 1) -> dict[str, Any]:
    status: dict[str, Any] = {"startTime": "2025-03-04T05:06:00Z", "active": active}
    if conditions:
        status["conditions"] = list(conditions)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "web-3-build", "namespace": "shop"},
        "status": status,
    }


def condition(type_: str, reason: str, when: str = "2025-03-04T05:36:00Z") -> dict[str, Any]:
    return {
        "type": type_,
        "status": "True",
        "reason": reason,
        "message": "Job was active longer than specified deadline",
        "lastProbeTime": when,
        "lastTransitionTime": when,
    }


def running(started: str) -> dict[str, Any]:
    return {"running": {"startedAt": started}}


def terminated(
    code: int,
    started: str,
    finished: str,
    *,
    message: str | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    state: dict[str, Any] = {
        "exitCode": code,
        "reason": reason or ("Completed" if code == 0 else "Error"),
        "startedAt": started,
        "finishedAt": finished,
        "containerID": "containerd://" + "c" * 64,
    }
    if message is not None:
        state["message"] = message
    return {"terminated": state}


def waiting(reason: str, message: str | None = None) -> dict[str, Any]:
    state: dict[str, Any] = {"reason": reason}
    if message is not None:
        state["message"] = message
    return {"waiting": state}


def container_status(name: str, state: dict[str, Any], image: str = BUILDER) -> dict[str, Any]:
    return {
        "name": name,
        "state": state,
        "lastState": {},
        "ready": "running" in state,
        "restartCount": 0,
        "image": image,
        "imageID": "",
        "started": "running" in state,
    }


def pod(
    fetch: dict[str, Any] | None = None,
    build: dict[str, Any] | None = None,
    *,
    phase: str = "Pending",
    deleting: bool = False,
    **status: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web-3-build-x7k2p", "namespace": "shop"},
        "status": {"phase": phase, **status},
    }
    if deleting:
        body["metadata"]["deletionTimestamp"] = "2025-03-04T05:07:00Z"
    if fetch is not None:
        body["status"]["initContainerStatuses"] = [container_status(FETCH_CONTAINER, fetch)]
    if build is not None:
        body["status"]["containerStatuses"] = [container_status(BUILD_CONTAINER, build)]
    return body


def fetched() -> dict[str, Any]:
    """A fetch-source container that cloned and reported."""
    return terminated(0, T_FETCH, T_FETCH_END, message=FETCH_REPORT)


def log_tail(*lines: str) -> str:
    # The kubelet's FallbackToLogsOnError message: the end of the log, newline-terminated.
    return "\n".join(lines) + "\n"


FETCH_STAGE = {
    "name": "FetchInputs",
    "startTime": T_FETCH,
    "durationMilliseconds": 12000,
    "steps": [{"name": "FetchSource", "startTime": T_FETCH, "durationMilliseconds": 12000}],
}
REVISION = {
    "type": "Git",
    "git": {
        "commit": COMMIT,
        "author": {"name": "Ada Lovelace", "email": "ada@example.com"},
        "committer": {"name": "GitHub", "email": "noreply@github.com"},
        "message": 'Fix "checkout" \\ flow',
    },
}


# --- the Job and the pod are missing -----------------------------------------------------


def test_job_deleted() -> None:
    seen = observe(None, pod(fetched(), running(T_BUILD), phase="Running"))
    assert (seen.phase, seen.reason) == (ERROR, "BuildPodDeleted")


def test_no_pod_yet() -> None:
    seen = observe(job(), None)
    assert seen == Observation(PENDING, message="waiting for the build pod to be created")


def test_pod_gone_after_job_failure() -> None:
    seen = observe(job(condition("Failed", "BackoffLimitExceeded"), active=0), None)
    assert (seen.phase, seen.reason) == (ERROR, "BuildPodDeleted")
    assert "BackoffLimitExceeded" in seen.message


def test_condition_that_is_not_true_is_not_a_failure() -> None:
    failed = condition("Failed", "DeadlineExceeded")
    failed["status"] = "False"
    seen = observe(job(failed), None)
    assert seen.phase == PENDING


# --- deadline ---------------------------------------------------------------------------


def test_deadline_exceeded() -> None:
    seen = observe(job(condition("Failed", "DeadlineExceeded"), active=0), None)
    assert seen.phase == FAILED
    assert seen.reason == "ExceededDeadline"
    assert "completionDeadlineSeconds" in seen.message
    assert seen.completion == "2025-03-04T05:36:00Z"


def test_deadline_wins_over_the_killed_container() -> None:
    killed = terminated(143, T_BUILD, "2025-03-04T05:36:01Z", message=log_tail("STEP 4/9"))
    deadline = job(
        condition("FailureTarget", "DeadlineExceeded"),
        condition("Failed", "DeadlineExceeded"),
        active=0,
    )
    seen = observe(deadline, pod(fetched(), killed, phase="Failed"))
    assert (seen.phase, seen.reason) == (FAILED, "ExceededDeadline")


@pytest.mark.parametrize(
    "build_state",
    [
        running(T_BUILD),
        terminated(143, T_BUILD, "2025-03-04T05:36:01Z", message=log_tail("STEP 4/9")),
    ],
    ids=["terminating", "killed"],
)
def test_deadline_failure_target_before_failed(build_state: dict[str, Any]) -> None:
    # Since Kubernetes 1.29 the Job gets FailureTarget first, kills the pod, and sets
    # Failed only once the pod is gone: the dying pod must not decide the reason.
    target = job(condition("FailureTarget", "DeadlineExceeded"), active=0)
    for deleting in (True, False):
        seen = observe(target, pod(fetched(), build_state, phase="Running", deleting=deleting))
        assert (seen.phase, seen.reason) == (FAILED, "ExceededDeadline")


def test_deadline_failure_target_without_pod() -> None:
    target = job(condition("FailureTarget", "DeadlineExceeded"), active=0)
    assert (observe(target, None).phase, observe(target, None).reason) == (
        FAILED,
        "ExceededDeadline",
    )


def test_other_failure_target_without_pod() -> None:
    target = job(condition("FailureTarget", "BackoffLimitExceeded"), active=0)
    seen = observe(target, None)
    assert (seen.phase, seen.reason) == (ERROR, "BuildPodDeleted")


# --- waiting to start --------------------------------------------------------------------


def test_pod_not_started() -> None:
    seen = observe(job(), pod(phase="Pending"))
    assert seen == Observation(PENDING, message="waiting for the build pod to start")


def test_pod_initializing() -> None:
    seen = observe(
        job(), pod(waiting("PodInitializing"), waiting("PodInitializing"), phase="Pending")
    )
    assert seen.phase == PENDING
    assert seen.reason == ""


@pytest.mark.parametrize("reason", ["ErrImagePull", "ImagePullBackOff", "InvalidImageName"])
def test_builder_image_pull_failure(reason: str) -> None:
    message = f'Back-off pulling image "{BUILDER}"'
    seen = observe(job(), pod(waiting(reason, message), waiting("PodInitializing")))
    assert seen == Observation(PENDING, "PullBuilderImageFailed", message)


def test_pull_failure_of_the_build_image_after_fetch() -> None:
    # kaniko: the fetch ran in the builder image; the executor image does not pull.
    seen = observe(job(), pod(fetched(), waiting("ImagePullBackOff")))
    assert (seen.phase, seen.reason) == (PENDING, "PullBuilderImageFailed")
    assert seen.message == "ImagePullBackOff"


def test_pull_failure_message_is_bounded() -> None:
    seen = observe(job(), pod(waiting("ErrImagePull", "x" * 5000)))
    assert seen.message == "x" * 1024


@pytest.mark.parametrize("reason", ["CreateContainerConfigError", "CreateContainerError"])
def test_pod_config_error(reason: str) -> None:
    message = 'secret "git-credentials" not found'
    seen = observe(job(), pod(waiting(reason, message)))
    assert seen == Observation(PENDING, "BuildPodConfigError", message)


# --- fetch-source failures -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "reason", "error"),
    [
        (10, "FetchSourceFailed", "could not clone https://github.com/example/missing.git"),
        (11, "InvalidContextDirectory", "context directory web does not exist in the source"),
        (12, "ManageDockerfileFailed", "no Dockerfile at web/Dockerfile"),
    ],
)
def test_fetch_failures(code: int, reason: str, error: str) -> None:
    tail = log_tail(
        'Cloning "https://github.com/example/missing.git" ...',
        "remote: Repository not found.",
        f"error: {error}",
    )
    state = terminated(code, T_FETCH, T_FETCH_END, message=tail)
    seen = observe(job(), pod(state, waiting("PodInitializing"), phase="Failed"))
    assert seen.phase == FAILED
    assert seen.reason == reason
    assert seen.message == error
    assert seen.log_snippet == tail.rstrip("\n")
    assert seen.start == T_FETCH
    assert seen.completion == T_FETCH_END
    assert seen.revision is None  # a log tail is no report
    assert list(seen.stages) == [FETCH_STAGE]


def test_fetch_unknown_exit_code_without_error_line() -> None:
    tail = log_tail("mkdir: cannot create directory '/workspace/source': Read-only file system")
    seen = observe(job(), pod(terminated(1, T_FETCH, T_FETCH_END, message=tail), phase="Failed"))
    assert seen.reason == "FetchSourceFailed"
    assert seen.message == "exit code 1"
    assert seen.log_snippet == tail.rstrip("\n")


def test_fetch_failure_without_message() -> None:
    seen = observe(job(), pod(terminated(10, T_FETCH, T_FETCH_END), phase="Failed"))
    assert (seen.reason, seen.message, seen.log_snippet) == (
        "FetchSourceFailed",
        "exit code 10",
        "",
    )


# --- build failures ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "reason", "error"),
    [
        (20, "DockerBuildFailed", "the image build failed"),
        (30, "PostCommitHookFailed", "the post-commit hook failed (exit code 1)"),
        (40, "PushImageToRegistryFailed", "could not push registry.local/shop/web:latest"),
    ],
)
def test_build_failures(code: int, reason: str, error: str) -> None:
    tail = log_tail(
        "STEP 3/5: RUN make",
        "make: *** [Makefile:3: all] Error 2",
        'Error: building at STEP "RUN make": while running runtime: exit status 2',
        "error: nothing to see here, an earlier line",
        f"error: {error}",
    )
    state = terminated(code, T_BUILD, T_BUILD_END, message=tail)
    seen = observe(job(), pod(fetched(), state, phase="Failed"))
    assert seen.phase == FAILED
    assert seen.reason == reason
    assert seen.message == error
    assert seen.log_snippet == tail.rstrip("\n")
    assert seen.start == T_FETCH
    assert seen.completion == T_BUILD_END
    assert seen.revision == REVISION
    assert list(seen.stages) == [FETCH_STAGE]


def test_build_unknown_exit_code_is_a_docker_build_failure() -> None:
    tail = log_tail("error building image: error building stage: RUN false: exit status 1")
    seen = observe(job(), pod(fetched(), terminated(1, T_BUILD, T_BUILD_END, message=tail)))
    assert (seen.phase, seen.reason) == (FAILED, "DockerBuildFailed")
    assert seen.message == "exit code 1"


@pytest.mark.parametrize("which", ["fetch", "build"])
def test_out_of_memory(which: str) -> None:
    oom = terminated(137, T_BUILD, T_BUILD_END, reason="OOMKilled", message=log_tail("STEP 2/9"))
    body = pod(oom, None) if which == "fetch" else pod(fetched(), oom)
    seen = observe(job(), body)
    assert (seen.phase, seen.reason) == (FAILED, "OutOfMemoryKilled")
    container = FETCH_CONTAINER if which == "fetch" else BUILD_CONTAINER
    assert seen.message == f"the {container} container ran out of memory"
    assert seen.log_snippet == "STEP 2/9"


def test_custom_builder_failure_is_generic() -> None:
    tail = log_tail("error: push denied")
    state = terminated(40, T_BUILD, T_BUILD_END, message=tail)
    seen = observe(job(), pod(None, state, phase="Failed"), custom=True)
    assert seen.phase == FAILED
    assert seen.reason == "GenericBuildFailed"
    assert seen.message == "the custom builder exited with code 40"
    assert seen.log_snippet == "error: push denied"
    assert seen.stages == []


def test_custom_builder_out_of_memory() -> None:
    state = terminated(137, T_BUILD, T_BUILD_END, reason="OOMKilled")
    seen = observe(job(), pod(None, state), custom=True)
    assert seen.reason == "OutOfMemoryKilled"


def test_fetch_failure_is_reported_before_build_state() -> None:
    fetch = terminated(10, T_FETCH, T_FETCH_END, message=log_tail("error: could not clone x"))
    seen = observe(job(), pod(fetch, waiting("ImagePullBackOff")))
    assert seen.reason == "FetchSourceFailed"


# --- eviction and deletion ------------------------------------------------------------------


def test_evicted_pod() -> None:
    message = "The node was low on resource: ephemeral-storage. Threshold quantity: 1Gi."
    killed = terminated(137, T_BUILD, T_BUILD_END)
    seen = observe(job(), pod(fetched(), killed, phase="Failed", reason="Evicted", message=message))
    assert seen.phase == ERROR
    assert seen.reason == "BuildPodEvicted"
    assert seen.message == message
    assert seen.start == T_FETCH
    assert seen.revision == REVISION
    assert list(seen.stages) == [FETCH_STAGE]


def test_evicted_pod_without_message() -> None:
    seen = observe(job(), pod(phase="Failed", reason="Evicted"))
    assert (seen.phase, seen.reason, seen.message) == (
        ERROR,
        "BuildPodEvicted",
        "the build pod was evicted",
    )


def test_pod_being_deleted_mid_build() -> None:
    seen = observe(job(), pod(fetched(), running(T_BUILD), phase="Running", deleting=True))
    assert (seen.phase, seen.reason) == (ERROR, "BuildPodDeleted")
    assert seen.start == T_FETCH


def test_container_killed_by_the_deletion_is_not_a_build_failure() -> None:
    killed = terminated(143, T_BUILD, "2025-03-04T05:07:02Z", message=log_tail("STEP 4/9"))
    seen = observe(job(), pod(fetched(), killed, phase="Running", deleting=True))
    assert (seen.phase, seen.reason) == (ERROR, "BuildPodDeleted")


def test_finished_build_in_a_deleted_pod_still_completes() -> None:
    done = terminated(0, T_BUILD, T_BUILD_END, message=BUILD_REPORT)
    seen = observe(job(), pod(fetched(), done, phase="Succeeded", deleting=True))
    assert (seen.phase, seen.digest) == (COMPLETE, DIGEST)


def test_job_failed_while_pod_still_running() -> None:
    seen = observe(
        job(condition("Failed", "BackoffLimitExceeded")), pod(fetched(), running(T_BUILD))
    )
    assert (seen.phase, seen.reason) == (ERROR, "BuildPodDeleted")


# --- running ------------------------------------------------------------------------------


def test_fetch_running() -> None:
    seen = observe(job(), pod(running(T_FETCH), waiting("PodInitializing")))
    assert (seen.phase, seen.reason, seen.start, seen.revision) == (RUNNING, "", T_FETCH, None)
    assert list(seen.stages) == []


def test_build_running_start_is_the_earliest_container_start() -> None:
    seen = observe(job(), pod(fetched(), running(T_BUILD), phase="Running"))
    assert seen.phase == RUNNING
    assert seen.start == T_FETCH
    assert seen.revision == REVISION
    assert list(seen.stages) == [FETCH_STAGE]


def test_start_ignores_unparseable_times() -> None:
    seen = observe(job(), pod(running("not a time"), running(T_BUILD)))
    assert seen.start == T_BUILD


def test_custom_running() -> None:
    seen = observe(job(), pod(None, running(T_BUILD), phase="Running"), custom=True)
    assert (seen.phase, seen.reason, seen.start, seen.revision) == (RUNNING, "", T_BUILD, None)
    assert list(seen.stages) == []


# --- success --------------------------------------------------------------------------------


def test_complete_with_report() -> None:
    state = terminated(0, T_BUILD, T_BUILD_END, message=BUILD_REPORT)
    seen = observe(job(), pod(fetched(), state, phase="Succeeded"))
    assert seen.phase == COMPLETE
    assert seen.reason == ""
    assert seen.digest == DIGEST
    assert seen.start == T_FETCH
    assert seen.completion == T_BUILD_END
    assert seen.revision == REVISION
    build_start = format_time(datetime.fromtimestamp(MS_BUILD / 1000, UTC))
    push_start = format_time(datetime.fromtimestamp((MS_BUILD + 84400) / 1000, UTC))
    assert build_start == T_BUILD
    assert list(seen.stages) == [
        FETCH_STAGE,
        {
            "name": "Build",
            "startTime": build_start,
            "durationMilliseconds": 84211,
            "steps": [
                {"name": "DockerBuild", "startTime": build_start, "durationMilliseconds": 84211}
            ],
        },
        # PostCommit took 0 ms (no hook): skipped.
        {
            "name": "PushImage",
            "startTime": push_start,
            "durationMilliseconds": 15602,
            "steps": [
                {"name": "PushImage", "startTime": push_start, "durationMilliseconds": 15602}
            ],
        },
    ]


def test_post_commit_stage_when_it_ran() -> None:
    report = {
        "digest": "",
        "stages": [
            {"name": "Build", "start": MS_BUILD, "ms": 1},
            {"name": "PostCommit", "start": MS_BUILD + 10, "ms": 2500},
            {"name": "PushImage", "start": MS_BUILD + 20, "ms": 0},
        ],
    }
    state = terminated(0, T_BUILD, T_BUILD_END, message=json.dumps(report))
    seen = observe(job(), pod(fetched(), state))
    names = [(s["name"], s["steps"][0]["name"]) for s in seen.stages]
    assert names == [
        ("FetchInputs", "FetchSource"),
        ("Build", "DockerBuild"),
        ("PostCommit", "RunPostCommitHook"),
    ]
    assert seen.digest is None  # an empty digest (no output) is no digest


@pytest.mark.parametrize(
    "entry",
    [
        {"name": "Unknown", "start": MS_BUILD, "ms": 5},
        {"name": "Build", "start": 0, "ms": 5},
        {"name": "Build", "start": "1741064780000", "ms": 5},
        {"name": "Build", "start": MS_BUILD, "ms": -1},
        {"name": "Build", "start": MS_BUILD, "ms": 1.5},
        {"name": "Build", "start": MS_BUILD},
        "Build",
    ],
)
def test_malformed_stages_are_skipped(entry: object) -> None:
    state = terminated(0, T_BUILD, T_BUILD_END, message=json.dumps({"stages": [entry]}))
    seen = observe(job(), pod(fetched(), state))
    assert [s["name"] for s in seen.stages] == ["FetchInputs"]


def test_kaniko_bare_digest() -> None:
    state = terminated(0, T_BUILD, T_BUILD_END, message=DIGEST + "\n")
    seen = observe(job(), pod(fetched(), state, phase="Succeeded"))
    assert seen.phase == COMPLETE
    assert seen.digest == DIGEST
    # No timings from kaniko: one Build stage spanning its container.
    build_stage = {
        "name": "Build",
        "startTime": T_BUILD,
        "durationMilliseconds": 101000,
        "steps": [{"name": "DockerBuild", "startTime": T_BUILD, "durationMilliseconds": 101000}],
    }
    assert list(seen.stages) == [FETCH_STAGE, build_stage]


@pytest.mark.parametrize("message", [None, "", "{not json", "[1, 2]", "Pushed it", '"sha256:x"'])
def test_complete_without_a_digest(message: str | None) -> None:
    state = terminated(0, T_BUILD, T_BUILD_END, message=message)
    seen = observe(job(), pod(fetched(), state))
    assert seen.phase == COMPLETE
    assert seen.digest is None


def test_custom_complete() -> None:
    state = terminated(0, T_BUILD, T_BUILD_END, message=json.dumps({"digest": DIGEST}))
    seen = observe(job(), pod(None, state), custom=True)
    assert (seen.phase, seen.digest, seen.start) == (COMPLETE, DIGEST, T_BUILD)
    assert seen.revision is None


# --- revision --------------------------------------------------------------------------------


def fetch_with(report: dict[str, Any]) -> dict[str, Any]:
    return terminated(0, T_FETCH, T_FETCH_END, message=json.dumps(report))


def test_revision_without_commit_is_none() -> None:
    # A Binary or Dockerfile source: the fetch reports an empty commit.
    empty = {"commit": "", "author": {"name": "", "email": ""}, "message": "", "ms": 3}
    seen = observe(job(), pod(fetch_with(empty), running(T_BUILD)))
    assert seen.revision is None


def test_revision_keeps_only_what_is_known() -> None:
    report = {
        "commit": COMMIT,
        "author": {"name": "", "email": "ada@example.com"},
        "committer": {"name": "", "email": ""},
        "message": "",
    }
    seen = observe(job(), pod(fetch_with(report), running(T_BUILD)))
    assert seen.revision == {
        "type": "Git",
        "git": {"commit": COMMIT, "author": {"email": "ada@example.com"}},
    }


def test_fetch_stage_needs_both_times() -> None:
    state = terminated(0, T_FETCH, T_FETCH_END, message=FETCH_REPORT)
    del state["terminated"]["finishedAt"]
    seen = observe(job(), pod(state, running(T_BUILD)))
    assert seen.stages == []
    assert seen.revision == REVISION


# --- snippet ---------------------------------------------------------------------------------


def test_snippet_keeps_the_last_lines() -> None:
    text = "".join(f"line {i}\n" for i in range(1, 51))
    out = snippet(text)
    assert out.splitlines() == [f"line {i}" for i in range(31, 51)]
    assert len(out.splitlines()) == SNIPPET_LINES
    assert not out.endswith("\n")


def test_snippet_keeps_the_end_of_long_lines() -> None:
    text = "a" * 5000 + "\n" + "b" * 100 + "\nerror: the image build failed\n"
    out = snippet(text)
    assert len(out) == SNIPPET_BYTES
    assert out.endswith("b" * 100 + "\nerror: the image build failed")


def test_snippet_short_text_unchanged() -> None:
    assert snippet("one\ntwo\n") == "one\ntwo"
    assert snippet("") == ""


def test_snippet_bound_is_in_bytes() -> None:
    out = snippet("é" * 3000)
    assert len(out.encode()) <= SNIPPET_BYTES
    assert out
    assert set(out) == {"é"}


@pytest.mark.parametrize(
    ("lines", "reason"),
    [
        # kaniko exits 1 whatever failed; its log tells which.
        (
            (
                "INFO[0001] LABEL io.headwater.post-commit=running",
                'INFO[0001] RUN ["/bin/sh","-c","exit 4"]',
                "error building image: error building stage: failed to execute command: "
                "waiting for process to exit: exit status 4",
            ),
            "PostCommitHookFailed",
        ),
        (
            (
                "INFO[0003] Pushing image to 10.244.0.1:5000/shop/web:latest",
                "error pushing image: failed to push to destination 10.244.0.1:5000/shop/web: "
                "UNAUTHORIZED",
            ),
            "PushImageToRegistryFailed",
        ),
        (
            (
                "error checking push permissions -- make sure you entered the correct tag name: "
                'checking push permission for "10.244.0.1:5000/shop/web:latest": UNAUTHORIZED',
            ),
            "PushImageToRegistryFailed",
        ),
        (("INFO[0001] RUN make", "error building image: exit status 2"), "DockerBuildFailed"),
    ],
)
def test_kaniko_failures_are_told_apart_by_its_log(lines: tuple[str, ...], reason: str) -> None:
    tail = log_tail(*lines)
    seen = observe(job(), pod(fetched(), terminated(1, T_BUILD, T_BUILD_END, message=tail)))
    assert (seen.phase, seen.reason) == (FAILED, reason)
    assert seen.log_snippet == tail.rstrip("\n")


def test_kaniko_failure_after_a_cache_push_is_read_from_the_log() -> None:
    """kaniko writes each layer cache push's digest to --digest-file (the termination
    log): a later failure leaves that digest there and the kubelet shows no log."""
    tail = log_tail(
        "INFO[0001] LABEL io.headwater.post-commit=running",
        'INFO[0001] RUN ["/bin/sh","-c","exit 4"]',
        "error building image: error building stage: failed to execute command: "
        "waiting for process to exit: exit status 4",
    )
    failed = pod(fetched(), terminated(1, T_BUILD, T_BUILD_END, message=DIGEST))
    assert log_needed(failed)
    seen = observe(job(), failed, build_log=tail)
    assert (seen.phase, seen.reason) == (FAILED, "PostCommitHookFailed")
    assert seen.log_snippet == tail.rstrip("\n")
    # Without the log it is a build failure with the digest as its "log".
    assert observe(job(), failed).reason == "DockerBuildFailed"


def test_log_needed_only_for_a_failed_build_whose_message_is_a_digest() -> None:
    assert not log_needed(None)
    assert not log_needed(pod(fetched(), terminated(0, T_BUILD, T_BUILD_END, message=DIGEST)))
    assert not log_needed(pod(fetched(), terminated(1, T_BUILD, T_BUILD_END, message="boom")))
    assert not log_needed(pod(fetched(), terminated(1, T_BUILD, T_BUILD_END, message="")))
    # A real log is kept even when a log tail is given.
    tail = log_tail("INFO[0001] RUN make", "error building image: exit status 2")
    state = terminated(1, T_BUILD, T_BUILD_END, message=tail)
    seen = observe(job(), pod(fetched(), state), build_log="other text")
    assert seen.log_snippet == tail.rstrip("\n")
