"""Build runs: from a New Build to a Job, its progress, and a terminal phase.

The Build half of :class:`~headwater.builds.controller.BuildController`
(:class:`BuildRuns`). A Build waits its turn under the run policy, becomes a
Job of a fixed name (creating it twice fails the second time), is followed
through its Job and pod, and ends with a verified output; its status only
moves forward (New → Pending → Running → terminal). Then the BuildConfig's
history is pruned and the builds that waited are started.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Literal

from lightkube import AsyncClient
from lightkube.codecs import from_dict
from lightkube.core.exceptions import ApiError
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import Namespace, Pod
from lightkube.types import CascadeType

from headwater.builds import s2i, strategies
from headwater.builds.attest import AttachError, Attester
from headwater.builds.attestations import Attestations
from headwater.builds.buildconfigs import may
from headwater.builds.job import (
    PRIVILEGED_BUILDS_LABEL,
    JobSettings,
    RenderError,
    Resolved,
    render_job,
    wants_privileged,
)
from headwater.builds.model import (
    ANNOTATION_RUN_POLICY,
    API_VERSION,
    BUILD_CONTAINER,
    CANCELLED,
    COMPLETE,
    ERROR,
    FAILED,
    LABEL_BUILD,
    NEW,
    PENDING,
    RUNNING,
    SERIAL,
    TERMINAL,
    buildconfig_of,
    controlled_by,
    job_name,
    job_pod,
    label_value,
    phase_rank,
    summarize,
)
from headwater.builds.observe import SNIPPET_LINES, Observation, log_needed, observe
from headwater.builds.outputs import Outputs, Waiting
from headwater.builds.policy import plan_runs
from headwater.builds.prune import builds_of, prune
from headwater.conditions import set_condition
from headwater.events import post_event
from headwater.kube import (
    Failure,
    classify,
    create_or_conflict,
    get_or_none,
    patch_status,
    plain_dict,
)
from headwater.metrics import BUILD_DURATION, BUILD_QUEUE_WAIT, BUILDS, BUILDS_FINISHED
from headwater.resources import Build, BuildConfig
from headwater.status import status_patch
from headwater.timefmt import format_time, parse_time

_STRATEGY_KEYS = {
    "Docker": "dockerStrategy",
    "Source": "sourceStrategy",
    "Custom": "customStrategy",
}


def _duration(start: str | None, end: str | None) -> tuple[str | None, float | None]:
    """A Go duration string ("1m5.25s") and seconds between two RFC 3339 times."""
    began, ended = parse_time(start), parse_time(end)
    if began is None or ended is None:
        return None, None
    seconds = max((ended - began).total_seconds(), 0.0)
    return go_duration(seconds), seconds


def go_duration(seconds: float) -> str:
    """Seconds as Go's time.Duration prints them: 1h15m0s, 1m5.25s, 3s."""
    hours, rest = divmod(round(seconds, 3), 3600)
    minutes, rest = divmod(rest, 60)
    text = f"{rest:.3f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{int(hours)}h{int(minutes)}m{text}"
    if minutes:
        return f"{int(minutes)}m{text}"
    return text


class BuildRuns:
    """What :class:`~headwater.builds.controller.BuildController` does for Builds besides
    its entry points: start, follow, finish or cancel one, and write its status."""

    # Provided by the controller:
    kube: AsyncClient
    settings: JobSettings
    clock: Callable[[], datetime]
    outputs: Outputs
    attester: Attester
    attestations: Attestations
    waiting: set[tuple[str, str]]
    phases: dict[tuple[str, str], str]
    kick: Callable[[str, str], None]
    forget: Callable[[str, str], None]
    own_writes: dict[tuple[str, str], str]

    async def _start(self, build: dict[str, Any], bc: str | None) -> None:
        metadata = build["metadata"]
        namespace, name = str(metadata["namespace"]), str(metadata["name"])
        if bc is not None:
            # The policy the build was queued under (recorded at instantiation, as
            # OpenShift does), so no read of the BuildConfig is needed here.
            policy = str((metadata.get("annotations") or {}).get(ANNOTATION_RUN_POLICY) or "")
            if not policy:
                policy = SERIAL
                with contextlib.suppress(ApiError):
                    config = await self.kube.get(BuildConfig, bc, namespace=namespace)
                    policy = str((plain_dict(config).get("spec") or {}).get("runPolicy") or SERIAL)
            siblings = [summarize(b) for b in await builds_of(self.kube, namespace, bc)]
            plan = plan_runs(siblings, policy)
            for superseded in plan.cancel:
                if superseded == name:
                    await self._cancel(build, "superseded by a newer build (SerialLatestOnly)")
                    return
                self.kick(namespace, superseded)
            if name not in plan.start:
                waiting = plan.waiting.get(name, "waiting to be started by the run policy")
                await self._write_build_status(build, NEW, reason="", message=waiting)
                return
        try:
            resolved = await self._resolve(build)
            if wants_privileged(build, self.settings):
                allowed = await self._privileged_builds_allowed(namespace)
                resolved = dataclasses.replace(resolved, privileged_builds=allowed)
            job = render_job(build, resolved, self.settings)
        except Waiting as exc:
            self.waiting.add((namespace, name))
            await self._write_build_status(build, NEW, reason=exc.reason, message=exc.message)
            return
        except RenderError as exc:
            await self._finish(build, bc, Observation(FAILED, exc.reason, exc.message))
            return
        self.waiting.discard((namespace, name))
        strategy = str(((build.get("spec") or {}).get("strategy") or {}).get("type") or "")
        if strategy == "Custom" and resolved.output_image:
            await self.outputs.remember_before(build, resolved.output_image)
        await create_or_conflict(self.kube, from_dict(job))  # one there already: _follow checks it
        now = format_time(self.clock())
        created = str(metadata.get("creationTimestamp") or now)
        _, queued = _duration(created, now)
        if queued is not None:
            BUILD_QUEUE_WAIT.observe(queued)
        await self._write_build_status(
            build,
            PENDING,
            extra={
                "jobName": job_name(name),
                "outputDockerImageReference": resolved.output_image,
                "config": {"kind": "BuildConfig", "name": bc, "namespace": namespace}
                if bc
                else None,
            },
        )

    async def _follow(self, build: dict[str, Any], bc: str | None) -> None:
        metadata = build["metadata"]
        namespace, name = str(metadata["namespace"]), str(metadata["name"])
        job = await get_or_none(self.kube, Job, job_name(name), namespace)
        if job is not None and not controlled_by(job, "Build", metadata.get("uid")):
            # Someone else's Job of that name (made before ours): never read as this build.
            await self._finish(
                build,
                bc,
                Observation(
                    ERROR,
                    "BuildPodCreationFailed",
                    f"job {job_name(name)} exists but was not created for this build",
                ),
            )
            return
        pod = await self._pod_of(namespace, name, job) if job is not None else None
        strategy = str(((build.get("spec") or {}).get("strategy") or {}).get("type") or "Docker")
        build_log = await self._log_tail(namespace, pod) if log_needed(pod) else None
        seen = observe(job, pod, custom=strategy == "Custom", build_log=build_log)
        if seen.phase == COMPLETE:
            seen = await self.outputs.verify(build, seen)
        if seen.phase in TERMINAL:
            await self._finish(build, bc, seen)
            return
        await self._write_build_status(
            build,
            seen.phase,
            reason=seen.reason,
            message=seen.message,
            observation=seen,
        )

    async def _finish(self, build: dict[str, Any], bc: str | None, seen: Observation) -> None:
        """Record a terminal phase, move the output tag, then prune and start what waited."""
        metadata = build["metadata"]
        namespace, name = str(metadata["namespace"]), str(metadata["name"])
        attached: dict[str, Any] = {}
        if seen.phase == COMPLETE:
            # Signed and attested before the tag moves, so a verified rollout sees both.
            try:
                attached = await self.attester.attach(build, seen.digest)
                seen = await self.attestations.attach(build, seen)
            except AttachError as exc:
                # Still Running, saying why; the work queue retries with backoff.
                await self._write_build_status(
                    build, RUNNING, reason=exc.reason, message=exc.message, observation=seen
                )
                raise
            recorded = await self.outputs.record(build, seen)
            if recorded is not None:
                seen = recorded
        wrote = await self._write_build_status(
            build,
            seen.phase,
            reason=seen.reason,
            message=seen.message,
            observation=seen,
            extra=attached,
        )
        if not wrote:
            return
        self.waiting.discard((namespace, name))
        if bc is not None:
            for pruned in await prune(self.kube, namespace, bc):
                self.forget(namespace, pruned)
            for sibling in await builds_of(self.kube, namespace, bc):
                if summarize(sibling).phase == NEW:
                    self.kick(namespace, str(sibling["metadata"]["name"]))

    async def _cancel(self, build: dict[str, Any], message: str) -> None:
        metadata = build["metadata"]
        namespace, name = str(metadata["namespace"]), str(metadata["name"])
        with contextlib.suppress(ApiError):
            await self.kube.delete(
                Job, job_name(name), namespace=namespace, cascade=CascadeType.BACKGROUND
            )
        await self._finish(
            build, buildconfig_of(build), Observation(CANCELLED, "CancelledBuild", message)
        )

    # --- status -------------------------------------------------------------------

    async def _write_build_status(
        self,
        build: dict[str, Any],
        phase: str,
        *,
        reason: str = "",
        message: str = "",
        observation: Observation | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> bool:
        """Write the Build's status if it changed; False when it would go backwards."""
        metadata = build["metadata"]
        namespace, name = str(metadata["namespace"]), str(metadata["name"])
        status = build.get("status") or {}
        old_phase = str(status.get("phase") or NEW)
        if old_phase in TERMINAL or phase_rank(phase) < phase_rank(old_phase):
            return False
        now = self.clock()
        desired: dict[str, Any] = dict(status)
        desired.update({k: v for k, v in (extra or {}).items() if v is not None})
        desired["phase"] = phase
        desired["observedGeneration"] = int(metadata.get("generation") or 0)
        desired["reason"] = reason or None
        desired["message"] = message or None
        if observation is not None:
            if observation.start:
                desired["startTimestamp"] = observation.start
            if observation.revision:
                desired["revision"] = dict(observation.revision)
            if observation.stages:
                desired["stages"] = [dict(s) for s in observation.stages]
            if observation.log_snippet:
                desired["logSnippet"] = observation.log_snippet
            if observation.digest and phase == COMPLETE:
                desired["output"] = {"to": {"imageDigest": observation.digest}}
            if observation.provenance and phase == COMPLETE:
                desired["provenance"] = dict(observation.provenance)
        if phase in TERMINAL:
            completion = (observation.completion if observation else None) or format_time(now)
            desired["completionTimestamp"] = completion
            desired.setdefault("startTimestamp", None)
            text, seconds = _duration(desired.get("startTimestamp"), completion)
            if text:
                desired["duration"] = text
            if seconds is not None:
                BUILD_DURATION.labels(phase=phase).observe(seconds)
        if phase == CANCELLED:
            desired["cancelled"] = True
        condition_status: dict[str, Literal["True", "False", "Unknown"]] = {
            COMPLETE: "True",
            FAILED: "False",
            ERROR: "False",
            CANCELLED: "False",
        }
        desired["conditions"] = set_condition(
            status.get("conditions"),
            "Succeeded",
            condition_status.get(phase, "Unknown"),
            reason or phase,
            message or f"build is {phase}",
            desired["observedGeneration"],
            now,
        )
        desired = {k: v for k, v in desired.items() if v is not None}
        patch = status_patch(status, desired)
        for key in status:
            if key not in desired:
                patch[key] = None
        if not patch:
            return True
        updated = await patch_status(self.kube, Build.Status, name, namespace, patch)
        if updated is None:
            return False
        version = (updated.get("metadata") or {}).get("resourceVersion")
        if version:
            self.own_writes[(namespace, name)] = str(version)
        build["status"] = updated.get("status") or desired
        self._count(namespace, name, phase)
        if old_phase != phase:
            await self._announce(build, old_phase, phase, reason, message, now)
        return True

    async def _announce(
        self,
        build: Mapping[str, Any],
        old: str,
        new: str,
        reason: str,
        message: str,
        now: datetime,
    ) -> None:
        ref = {"apiVersion": API_VERSION, "kind": "Build", **build}
        name = build["metadata"]["name"]
        if new == RUNNING or (new in TERMINAL and old in (NEW, PENDING) and new != CANCELLED):
            await post_event(self.kube, ref, "Normal", "BuildStarted", f"build {name} started", now)
        if new in TERMINAL:
            BUILDS_FINISHED.labels(phase=new, reason=reason or new).inc()
        if new == COMPLETE:
            await post_event(
                self.kube, ref, "Normal", "BuildCompleted", f"build {name} completed", now
            )
        elif new in (FAILED, ERROR):
            await post_event(
                self.kube,
                ref,
                "Warning",
                "BuildFailed",
                f"build {name} failed: {reason}: {message}",
                now,
            )
        elif new == CANCELLED:
            await post_event(
                self.kube, ref, "Normal", "BuildCancelled", f"build {name} cancelled", now
            )

    def _count(self, namespace: str, name: str, phase: str) -> None:
        old = self.phases.get((namespace, name))
        if old == phase:
            return
        if old is not None:
            BUILDS.labels(phase=old).dec()
        BUILDS.labels(phase=phase).inc()
        self.phases[(namespace, name)] = phase

    async def _resolve(self, build: Mapping[str, Any]) -> Resolved:
        """Output target, base image, secrets and S2I Dockerfile; Waiting or RenderError."""
        metadata = build["metadata"]
        namespace = str(metadata["namespace"])
        spec = build.get("spec") or {}
        strategy = spec.get("strategy") or {}
        kind = str(strategy.get("type") or "Docker")
        block = strategy.get(_STRATEGY_KEYS.get(kind, "dockerStrategy")) or {}
        # Nothing of another namespace is read or written without a grant there.
        account = strategies.build_service_account(spec)
        for needed in strategies.cross_namespace_access(namespace, spec):
            if not await may(self.kube, namespace, account, needed):
                raise Waiting("Forbidden", strategies.access_refusal(namespace, account, needed))
        output = await self.outputs.output_image(namespace, spec)
        base = await self.outputs.image_of(namespace, block.get("from"), "strategy from")
        push_secret = await self.outputs.push_secret(namespace, spec, output)
        pull_name = (block.get("pullSecret") or {}).get("name")
        if pull_name:
            await self.outputs.need_secret(namespace, str(pull_name), "MissingPullSecret")
        source_secret = ((spec.get("source") or {}).get("sourceSecret") or {}).get("name")
        if source_secret:
            await self.outputs.need_secret(namespace, str(source_secret), "MissingSourceSecret")
        resolved = Resolved(
            output_image=output,
            base_image=base,
            push_secret=push_secret,
            pull_secret=str(pull_name) if pull_name else None,
        )
        if kind != "Source":
            return resolved
        if base is None:
            raise RenderError("InvalidStrategy", "sourceStrategy.from names no builder image")
        image_config = await self.outputs.image_config(namespace, base, pull_name)
        incremental_from = None
        if block.get("incremental") and output:
            incremental_from = await self.outputs.current_output(namespace, spec)
        try:
            dockerfile = s2i.s2i_dockerfile(
                base,
                image_config,
                env=self._s2i_env(block),
                scripts_url=str(block["scripts"]) if block.get("scripts") else None,
                incremental_from=incremental_from,
            )
        except s2i.S2IError as exc:
            raise RenderError(exc.reason, exc.message) from None
        return Resolved(
            output_image=output,
            base_image=base,
            s2i_dockerfile=dockerfile,
            s2i_environment_script=s2i.s2i_environment_script(),
            push_secret=push_secret,
            pull_secret=resolved.pull_secret,
        )

    async def _log_tail(self, namespace: str, pod: Mapping[str, Any] | None) -> str | None:
        """The last lines of the build container's log (None when it cannot be read)."""
        name = str(((pod or {}).get("metadata") or {}).get("name") or "")
        if not name:
            return None
        lines: list[str] = []
        try:
            async for line in self.kube.log(
                name, namespace=namespace, container=BUILD_CONTAINER, tail_lines=SNIPPET_LINES
            ):
                lines.append(line)
        except ApiError:
            return None
        return "".join(lines)

    async def _privileged_builds_allowed(self, namespace: str) -> bool:
        """An admin labelled the namespace for the privileged (buildah) executor."""
        try:
            ns = await self.kube.get(Namespace, namespace)
        except ApiError as exc:
            if classify(exc) in (Failure.FORBIDDEN, Failure.GONE):
                return False
            raise
        labels = (ns.metadata.labels if ns.metadata else None) or {}
        return labels.get(PRIVILEGED_BUILDS_LABEL) == "true"

    def _s2i_env(self, block: Mapping[str, Any]) -> list[tuple[str, str]]:
        merged: dict[str, str] = dict(self.settings.defaults.env)
        for entry in block.get("env") or []:
            if isinstance(entry, Mapping) and entry.get("name"):
                merged[str(entry["name"])] = str(entry.get("value") or "")
        merged.update(self.settings.overrides.env)
        return list(merged.items())

    async def _pod_of(
        self, namespace: str, name: str, job: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """The build's pod: one its Job controls. A pod that merely carries the build's
        labels (anyone who may create pods in the namespace can make one) is ignored."""
        pods = [
            plain_dict(p)
            async for p in self.kube.list(
                Pod, namespace=namespace, labels={LABEL_BUILD: label_value(name)}
            )
        ]
        return job_pod(pods, job)
