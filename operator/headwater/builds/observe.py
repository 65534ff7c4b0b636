"""What a build's Job and pod say about it (pure): phase, reason, timings, revision, output.

The containers report through their termination messages (see
:mod:`headwater.builds.scripts`); the kubelet, the Job controller and the
eviction manager report through pod and Job status. This module turns both
into the Build status fields, without any API call.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from headwater.builds.model import (
    BUILD_CONTAINER,
    COMPLETE,
    ERROR,
    FAILED,
    FETCH_CONTAINER,
    PENDING,
    RUNNING,
)
from headwater.builds.provenance import Reported, reported_images
from headwater.builds.scripts import (
    EXIT_REASONS,
    KANIKO_POST_COMMIT_MARKER,
    KANIKO_PUSH_ERRORS,
)
from headwater.documents import Limits, check_shape
from headwater.timefmt import format_time, parse_time

SNIPPET_LINES = 20
SNIPPET_BYTES = 2048
_PULL_FAILURES = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName"})
_CONFIG_FAILURES = frozenset({"CreateContainerConfigError", "CreateContainerError"})


@dataclass(frozen=True)
class Observation:
    """The Build status the pod implies; ``phase`` Complete still needs the digest verified."""

    phase: str
    reason: str = ""
    message: str = ""
    start: str | None = None
    completion: str | None = None
    digest: str | None = None
    revision: Mapping[str, Any] | None = None
    stages: Sequence[Mapping[str, Any]] = field(default_factory=tuple)
    log_snippet: str = ""
    reported: Reported = field(default_factory=Reported)
    """The images the pod reported it built from (provenance); Complete only."""
    provenance: Mapping[str, Any] | None = None
    """Where the build's provenance was attached (``status.provenance``); Complete only."""


def _from_ms(value: object) -> str | None:
    if not isinstance(value, int) or value <= 0:
        return None
    return format_time(datetime.fromtimestamp(value / 1000, UTC))


def snippet(text: str) -> str:
    """The last lines of a log, short enough for status."""
    lines = text.rstrip("\n").splitlines()[-SNIPPET_LINES:]
    out = "\n".join(lines).encode()
    return out[-SNIPPET_BYTES:].decode("utf-8", "ignore")


_REPORT_LIMITS = Limits(max_bytes=64 * 1024, max_nodes=4096, max_depth=8)


def _report(message: object) -> Mapping[str, Any] | None:
    """A container's JSON termination message, or None (a log tail, or nothing)."""
    if not isinstance(message, str) or not message.strip().startswith("{"):
        return None
    try:
        doc = json.loads(message)
        # The kubelet cuts a termination message at 4 KiB; the report is flat.
        check_shape(doc, _REPORT_LIMITS, "report")
    except (ValueError, RecursionError):  # DocumentError is a ValueError
        return None
    return doc if isinstance(doc, dict) else None


def _statuses(pod: Mapping[str, Any], key: str) -> dict[str, Mapping[str, Any]]:
    return {
        str(s.get("name")): s
        for s in (pod.get("status") or {}).get(key) or []
        if isinstance(s, Mapping)
    }


def _job_failure(job: Mapping[str, Any]) -> Mapping[str, Any] | None:
    # FailureTarget comes first: the Job controller sets it, then kills the pods,
    # then sets Failed once they are gone.
    for wanted in ("FailureTarget", "Failed"):
        for condition in (job.get("status") or {}).get("conditions") or []:
            if condition.get("type") == wanted and condition.get("status") == "True":
                return dict(condition)
    return None


def _past_deadline(job: Mapping[str, Any], when: datetime) -> bool:
    """The Job has an active deadline, and ``when`` is at or past it."""
    deadline = (job.get("spec") or {}).get("activeDeadlineSeconds")
    started = parse_time((job.get("status") or {}).get("startTime"))
    if not deadline or started is None:
        return False
    return (when - started).total_seconds() >= int(deadline) - 1


def _revision(report: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    if not report or not report.get("commit"):
        return None
    git: dict[str, Any] = {"commit": str(report["commit"])}
    for person in ("author", "committer"):
        value = report.get(person)
        if isinstance(value, Mapping) and (value.get("name") or value.get("email")):
            git[person] = {k: str(value[k]) for k in ("name", "email") if value.get(k)}
    if report.get("message"):
        git["message"] = str(report["message"])
    return {"type": "Git", "git": git}


def _fetch_stage(state: Mapping[str, Any]) -> dict[str, Any] | None:
    terminated = state.get("terminated") or {}
    start, end = parse_time(terminated.get("startedAt")), parse_time(terminated.get("finishedAt"))
    if start is None or end is None:
        return None
    duration = int((end - start).total_seconds() * 1000)
    return {
        "name": "FetchInputs",
        "startTime": format_time(start),
        "durationMilliseconds": duration,
        "steps": [
            {
                "name": "FetchSource",
                "startTime": format_time(start),
                "durationMilliseconds": duration,
            }
        ],
    }


def _container_build_stage(state: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A ``Build`` stage spanning the build container (kaniko reports no timings;
    its build, hook and push are one process)."""
    stage = _fetch_stage(state)
    if stage is None:
        return []
    return [
        {
            **stage,
            "name": "Build",
            "steps": [dict(stage["steps"][0], name="DockerBuild")],
        }
    ]


def _build_stages(report: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    stages = []
    steps = {"Build": "DockerBuild", "PostCommit": "RunPostCommitHook", "PushImage": "PushImage"}
    for entry in (report or {}).get("stages") or []:
        if not isinstance(entry, Mapping) or entry.get("name") not in steps:
            continue
        start, duration = _from_ms(entry.get("start")), entry.get("ms")
        if start is None or not isinstance(duration, int) or duration <= 0:
            continue
        stages.append(
            {
                "name": entry["name"],
                "startTime": start,
                "durationMilliseconds": duration,
                "steps": [
                    {
                        "name": steps[str(entry["name"])],
                        "startTime": start,
                        "durationMilliseconds": duration,
                    }
                ],
            }
        )
    return stages


def _kaniko_reason(tail: str) -> str:
    """kaniko exits 1 for every failure: its log tells a push or hook failure apart."""
    if any(words in tail for words in KANIKO_PUSH_ERRORS):
        return "PushImageToRegistryFailed"
    if KANIKO_POST_COMMIT_MARKER in tail:
        return "PostCommitHookFailed"
    return "DockerBuildFailed"


_DIGEST_ONLY = re.compile(r"sha256:[0-9a-f]{64}\s*")


def log_needed(pod: Mapping[str, Any] | None) -> bool:
    """The build container failed and its termination message holds a digest, not its
    log: kaniko writes each layer cache push's digest to ``--digest-file`` too, and
    the kubelet falls back to the log only for an empty message. The caller then
    reads the log's tail and passes it to :func:`observe` as ``build_log``."""
    build = _statuses(pod or {}, "containerStatuses").get(BUILD_CONTAINER) or {}
    terminated = (build.get("state") or {}).get("terminated") or {}
    message = str(terminated.get("message") or "")
    return int(terminated.get("exitCode") or 0) != 0 and bool(_DIGEST_ONLY.fullmatch(message))


def _failed_container(
    name: str, terminated: Mapping[str, Any], custom: bool, log: str | None = None
) -> tuple[str, str, str]:
    """(reason, message, log snippet) of a container that exited non-zero."""
    code = int(terminated.get("exitCode") or 0)
    message = str(terminated.get("message") or "")
    if log is not None and _DIGEST_ONLY.fullmatch(message):
        message = log
    tail = snippet(message)
    if terminated.get("reason") == "OOMKilled":
        return "OutOfMemoryKilled", f"the {name} container ran out of memory", tail
    if custom:
        return "GenericBuildFailed", f"the custom builder exited with code {code}", tail
    reason = EXIT_REASONS.get(code)
    if reason is None:
        reason = "FetchSourceFailed" if name == FETCH_CONTAINER else _kaniko_reason(tail)
    last = tail.splitlines()[-1] if tail else ""
    detail = last.removeprefix("error: ") if last.startswith("error: ") else f"exit code {code}"
    return reason, detail, tail


def observe(
    job: Mapping[str, Any] | None,
    pod: Mapping[str, Any] | None,
    *,
    custom: bool = False,
    build_log: str | None = None,
) -> Observation:
    """The status a build has given its Job and pod (either may be missing).

    ``build_log``: the build container's log tail, read when :func:`log_needed`.
    """
    if job is None:
        return Observation(
            ERROR, "BuildPodDeleted", "the build's Job was deleted before the build finished"
        )
    failure = _job_failure(job)
    if failure is not None and failure.get("reason") == "DeadlineExceeded":
        return Observation(
            FAILED,
            "ExceededDeadline",
            "the build ran longer than its completionDeadlineSeconds",
            completion=str(failure.get("lastTransitionTime") or "") or None,
        )
    if pod is None:
        if failure is not None:
            return Observation(
                ERROR, "BuildPodDeleted", f"the build pod is gone ({failure.get('reason')})"
            )
        return Observation(PENDING, message="waiting for the build pod to be created")
    status = pod.get("status") or {}
    inits, mains = _statuses(pod, "initContainerStatuses"), _statuses(pod, "containerStatuses")
    fetch, build = inits.get(FETCH_CONTAINER) or {}, mains.get(BUILD_CONTAINER) or {}
    starts = [
        parse_time(((s.get("state") or {}).get(k) or {}).get("startedAt"))
        for s in (fetch, build)
        for k in ("running", "terminated")
    ]
    started = min((t for t in starts if t is not None), default=None)
    start = format_time(started) if started else None
    fetch_state = fetch.get("state") or {}
    fetch_report = _report((fetch_state.get("terminated") or {}).get("message"))
    revision = _revision(fetch_report)
    stages: list[dict[str, Any]] = []
    fetch_stage = _fetch_stage(fetch_state)
    if fetch_stage:
        stages.append(fetch_stage)
    if status.get("reason") == "Evicted":
        return Observation(
            ERROR,
            "BuildPodEvicted",
            str(status.get("message") or "the build pod was evicted"),
            start=start,
            revision=revision,
            stages=stages,
        )
    build_done = (build.get("state") or {}).get("terminated")
    succeeded = build_done is not None and int(build_done.get("exitCode") or 0) == 0
    deleted_at = parse_time((pod.get("metadata") or {}).get("deletionTimestamp"))
    if deleted_at is not None and not succeeded and _past_deadline(job, deleted_at):
        # The Job controller kills the pod at the deadline; its condition may come later.
        return Observation(
            FAILED,
            "ExceededDeadline",
            "the build ran longer than its completionDeadlineSeconds",
            start=start, revision=revision, stages=stages,
        )  # fmt: skip
    if deleted_at is not None and not succeeded:
        # Containers killed by a deletion exit non-zero too; that is not the build failing.
        return Observation(
            ERROR, "BuildPodDeleted", "the build pod was deleted before the build finished",
            start=start, revision=revision, stages=stages,
        )  # fmt: skip
    for name, container in ((FETCH_CONTAINER, fetch), (BUILD_CONTAINER, build)):
        terminated = (container.get("state") or {}).get("terminated")
        if terminated and int(terminated.get("exitCode") or 0) != 0:
            log = build_log if name == BUILD_CONTAINER else None
            reason, message, tail = _failed_container(name, terminated, custom, log)
            return Observation(
                FAILED,
                reason,
                message,
                start=start,
                completion=str(terminated.get("finishedAt") or "") or None,
                revision=revision,
                stages=stages,
                log_snippet=tail,
            )
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in _PULL_FAILURES:
            return Observation(
                PENDING,
                "PullBuilderImageFailed",
                str(waiting.get("message") or waiting.get("reason"))[:1024],
            )
        if waiting.get("reason") in _CONFIG_FAILURES:
            return Observation(
                PENDING,
                "BuildPodConfigError",
                str(waiting.get("message") or waiting.get("reason"))[:1024],
            )
    if build_done:
        report = _report(build_done.get("message"))
        text = str(build_done.get("message") or "").strip()
        digest = None
        if report is not None and report.get("digest"):
            digest = str(report["digest"])
        elif text.startswith("sha256:"):
            digest = text.split()[0]  # kaniko's --digest-file
        return Observation(
            COMPLETE,
            start=start,
            completion=str(build_done.get("finishedAt") or "") or None,
            digest=digest,
            reported=reported_images(fetch_report, report),
            revision=revision,
            stages=stages
            + (
                _build_stages(report)
                if report is not None or custom
                else _container_build_stage({"terminated": build_done})
            ),
        )
    if failure is not None:
        return Observation(
            ERROR, "BuildPodDeleted", "the build pod was deleted before the build finished",
            start=start, revision=revision, stages=stages,
        )  # fmt: skip
    if started is not None:
        return Observation(RUNNING, start=start, revision=revision, stages=stages)
    return Observation(PENDING, message="waiting for the build pod to start")


_UNREAD_JOB_STATUS = ("ready", "terminating", "uncountedTerminatedPods")
"""Job status fields :func:`observe` never reads, which change on their own."""


def child_state(body: Mapping[str, Any]) -> str:
    """What :func:`observe` and the controller read of a build's Job or pod, as one value.

    Two events with the same value change nothing the build's status depends
    on (a pod's conditions, IP or probe times; a Job's ready count), so the
    second one costs no reconcile of the Build (its GET and pod LIST).
    """
    metadata = body.get("metadata") or {}
    status = dict(body.get("status") or {})
    if body.get("kind") == "Job":
        for key in _UNREAD_JOB_STATUS:
            status.pop(key, None)
        seen: dict[str, Any] = {"status": status}
    else:
        seen = {
            key: status.get(key)
            for key in ("phase", "reason", "message", "initContainerStatuses", "containerStatuses")
        }
    seen["deleting"] = metadata.get("deletionTimestamp")
    return json.dumps(seen, sort_keys=True, default=str)
