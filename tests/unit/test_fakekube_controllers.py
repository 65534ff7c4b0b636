"""FakeKube drives the three stateful controllers through API failures: ImportRunner,
BuildController and WorkloadTriggers each converge once the API server answers again."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx2
import kopf
import pytest
from lightkube.core.exceptions import ApiError

from headwater.builds.controller import BuildController
from headwater.builds.job import settings_from_config
from headwater.builds.model import LABEL_BUILD
from headwater.builds.observe import child_state
from headwater.config import Config
from headwater.events import post_event
from headwater.handlers import build as build_handlers
from headwater.handlers.lifecycle import MEMO_BUILDS
from headwater.imports.model import StreamRef
from headwater.imports.runner import ImportRunner
from headwater.imports.tagfeed import TagFeed
from headwater.registry.client import RegistryClient
from headwater.resources import BuildConfig, ImageStream
from headwater.workloads.controller import REASON_UPDATED, WorkloadTriggers
from tests.fakekube import FakeKube, api_error, converged, fast, running
from tests.unit.test_workload_triggers import NEW, annotation, tag_image, trigger_json, workload

NOW = datetime(2026, 12, 4, 20, 0, tzinfo=UTC)
DIGEST = "sha256:" + "c" * 64


def image_stream(*spec_tags: dict[str, Any], status: dict[str, Any] | None = None) -> Any:
    body: dict[str, Any] = {
        "apiVersion": "image.headwater.dev/v1",
        "kind": "ImageStream",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"tags": list(spec_tags)},
    }
    if status is not None:
        body["status"] = status
    return body


def newest(kube: FakeKube, tag: str) -> str | None:
    for entry in (kube.body(ImageStream, "web", "shop").get("status") or {}).get("tags") or []:
        if entry.get("tag") == tag and entry.get("items"):
            return str(entry["items"][0]["image"])
    return None


# --- ImportRunner ------------------------------------------------------------------------------


def runner(kube: FakeKube) -> ImportRunner:
    return ImportRunner(kube.client, RegistryClient(), Config(), clock=lambda: NOW)


async def test_import_runner_records_a_built_image_through_a_conflict() -> None:
    kube = FakeKube()
    kube.add(image_stream())
    kube.fail("patch", "imagestreams", subresource="status", code=409)
    ref = StreamRef("shop", "web")
    assert await runner(kube).record_image(ref, "latest", DIGEST, f"reg/shop/web@{DIGEST}", "b")
    assert newest(kube, "latest") == DIGEST
    # Read, write (409), read again, write.
    assert kube.count("get", "imagestreams") == 2
    assert kube.count("patch", "imagestreams", subresource="status") == 2


@pytest.mark.parametrize(
    "fault",
    [{"code": 500}, {"code": 429}, {"error": httpx2.ReadTimeout("slow")}],
    ids=["500", "429", "timeout"],
)
async def test_import_runner_status_write_that_failed_is_retried_until_it_lands(
    fault: dict[str, Any],
) -> None:
    kube = FakeKube()
    item = {"image": DIGEST, "dockerImageReference": "r@x", "generation": 1}
    latest = {"tag": "latest", "items": [{**item, "created": "2026-12-04T19:00:00Z"}]}
    alias = {"name": "prod", "from": {"kind": "ImageStreamTag", "name": "web:latest"}}
    body = kube.add(image_stream(alias, status={"tags": [latest]}))
    imports = runner(kube)
    fast(imports.scheduler)
    kube.fail("patch", "imagestreams", subresource="status", times=2, **fault)
    async with running(imports.scheduler):
        await imports.observe(body)  # a watch event only queues the stream
        await converged(imports.scheduler)
    assert newest(kube, "prod") == DIGEST
    assert kube.count("patch", "imagestreams", subresource="status") == 3


async def test_import_runner_does_not_reconcile_its_own_status_write_again() -> None:
    kube = FakeKube()
    item = {"image": DIGEST, "dockerImageReference": "r@x", "generation": 1}
    latest = {"tag": "latest", "items": [{**item, "created": "2026-12-04T19:00:00Z"}]}
    alias = {"name": "prod", "from": {"kind": "ImageStreamTag", "name": "web:latest"}}
    body = kube.add(image_stream(alias, status={"tags": [latest]}))
    imports = runner(kube)
    async with running(imports.scheduler):
        await imports.observe(body)
        await converged(imports.scheduler)
        assert kube.count("patch", "imagestreams", subresource="status") == 1
        reconciles = imports.scheduler.reconciles
        for event in kube.drain_events():  # the watch event of that write
            if event.resource == "imagestreams":
                await imports.observe(event.body)
        await converged(imports.scheduler)
    assert imports.scheduler.reconciles == reconciles


async def test_import_runner_resync_finds_a_stream_whose_watch_event_was_lost() -> None:
    kube = FakeKube()
    item = {"image": DIGEST, "dockerImageReference": "r@x", "generation": 1}
    latest = {"tag": "latest", "items": [{**item, "created": "2026-12-04T19:00:00Z"}]}
    body = kube.add(image_stream(status={"tags": [latest]}))
    imports = runner(kube)
    async with running(imports.scheduler):
        await imports.observe(body)
        await converged(imports.scheduler)
        # The spec change's watch event never arrives; the body kept is refreshed by
        # a relist (what kopf does after a watch error) and the resync re-queues it.
        alias = {"name": "prod", "from": {"kind": "ImageStreamTag", "name": "web:latest"}}
        await kube.patch(ImageStream, "web", {"spec": {"tags": [alias]}}, namespace="shop")
        imports.bodies[StreamRef("shop", "web")] = kube.body(ImageStream, "web", "shop")
        assert imports.scheduler.resync(imports.bodies) == 1
        await converged(imports.scheduler)
    assert newest(kube, "prod") == DIGEST


# --- BuildController ---------------------------------------------------------------------------


def buildconfig() -> dict[str, Any]:
    return {
        "apiVersion": "build.headwater.dev/v1",
        "kind": "BuildConfig",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"triggers": [{"type": "GitHub", "github": {"secret": "inline"}}]},
    }


async def test_build_controller_status_write_on_a_stale_version_reads_again() -> None:
    kube = FakeKube()
    read = kube.add(buildconfig())
    # Someone writes after the controller read: its write carries a stale resourceVersion.
    await kube.patch(BuildConfig, "web", {"metadata": {"labels": {"a": "b"}}}, namespace="shop")
    config = Config()
    builds = BuildController(kube.client, None, config, settings_from_config(config),  # type: ignore[arg-type]
                             clock=lambda: NOW)  # fmt: skip
    await builds._write_buildconfig_status(read, 0)
    stored = kube.body(BuildConfig, "web", "shop")
    assert "InlineWebhookSecret" in [c["type"] for c in stored["status"]["conditions"]]
    assert stored["metadata"]["labels"] == {"a": "b"}
    failed = [c for c in kube.calls if c.verb == "patch" and c.error is not None]
    assert [c.subresource for c in failed] == ["status"]
    assert isinstance(failed[0].error, ApiError)
    assert kube.count("get", "buildconfigs") == 1
    assert [e["reason"] for e in kube.all("events")] == ["InlineWebhookSecret"]


async def test_build_controller_forgets_a_builds_children_with_the_build() -> None:
    """What was read of a build's Job and pod goes with the Build, even when their
    DELETED events never came (a watch that restarted meanwhile)."""
    kube = FakeKube()
    config = Config()
    builds = BuildController(kube.client, None, config, settings_from_config(config),  # type: ignore[arg-type]
                             clock=lambda: NOW)  # fmt: skip
    memo = kopf.Memo()
    memo[MEMO_BUILDS] = builds
    # The handlers as kopf calls them (kopf's decorators type them as its callbacks).
    job_changed: Any = build_handlers.build_job_changed
    pod_changed: Any = build_handlers.build_pod_changed
    build_changed: Any = build_handlers.reconcile_build

    def child(kind: str, build: str, uid: str) -> Any:
        labels = {LABEL_BUILD: build}
        metadata = {"namespace": "shop", "name": f"{build}-x", "uid": uid, "labels": labels}
        return {"kind": kind, "metadata": metadata, "status": {}}

    try:
        for build in ("web-1", "web-2"):
            await job_changed(type="ADDED", body=child("Job", build, f"{build}-job"), memo=memo)
            await pod_changed(type="ADDED", body=child("Pod", build, f"{build}-pod"), memo=memo)
        assert len(builds._children) == 2
        # Seen before: the same event again changes nothing the controller reads.
        seen = child_state(child("Pod", "web-1", "web-1-pod"))
        assert not builds.child_changed("shop", "web-1", "web-1-pod", seen)
        # web-1's Build is deleted; its children's DELETED events are missed.
        body = {"metadata": {"namespace": "shop", "name": "web-1"}}
        await build_changed(type="DELETED", body=body, memo=memo)
        assert set(builds._children) == {("shop", "web-2")}
        # web-2's are deleted in turn: nothing is left either.
        await job_changed(type="DELETED", body=child("Job", "web-2", "web-2-job"), memo=memo)
        await pod_changed(type="DELETED", body=child("Pod", "web-2", "web-2-pod"), memo=memo)
        assert not builds._children
        # A Build gone whose child still has an event: its reconcile finds it gone.
        await pod_changed(type="MODIFIED", body=child("Pod", "web-3", "web-3-pod"), memo=memo)
        await converged(builds.builds)
        assert not builds._children
    finally:
        await builds.stop()


# --- WorkloadTriggers --------------------------------------------------------------------------


async def test_workload_triggers_retry_a_5xx_and_set_the_image() -> None:
    kube = FakeKube()
    body = kube.add(workload(value=annotation(trigger_json())))
    feed = TagFeed()
    image = tag_image()
    feed._current[(image.namespace, image.stream, image.tag)] = image
    triggers = WorkloadTriggers(kube.client, feed, clock=lambda: NOW)
    fast(triggers.queue)
    kube.fail("patch", "deployments", code=503)
    await triggers.on_event("ADDED", body)
    await converged(triggers.queue)
    stored = kube.body("deployments", "web", "shop")
    assert stored["spec"]["template"]["spec"]["containers"][0]["image"] == NEW
    assert stored["metadata"]["generation"] == 2
    assert kube.count("patch", "deployments") == 2
    assert [e["reason"] for e in kube.all("events")] == [REASON_UPDATED]
    # The watch event of that write changes nothing more.
    [*_, modified] = [e for e in kube.drain_events() if e.resource == "deployments"]
    await triggers.on_event("MODIFIED", modified.body)
    await converged(triggers.queue)
    assert kube.count("patch", "deployments") == 2
    await triggers.stop()


async def test_workload_triggers_follow_a_tag_move_through_failures() -> None:
    """The tag feed delivers at least once; the workload's GET fails, then its patch."""
    kube = FakeKube()
    kube.add(workload(value=annotation(trigger_json())))
    feed = TagFeed()
    triggers = WorkloadTriggers(kube.client, feed, clock=lambda: NOW)
    feed.subscribe(triggers.on_tag_moved)
    fast(triggers.queue, feed.queue)
    body = kube.body("deployments", "web", "shop")
    await triggers.on_event("ADDED", body)  # follows the tag; no image yet
    await converged(triggers.queue)
    assert kube.count("patch", "deployments") == 0
    kube.fail("get", "deployments", code=500)
    kube.fail("patch", "deployments", error=httpx2.ConnectTimeout("slow"))
    image = tag_image()
    stream = {
        "metadata": {"namespace": image.namespace, "name": image.stream, "resourceVersion": "9"},
        "status": {"tags": [{"tag": image.tag, "items": [
            {"image": image.image, "dockerImageReference": image.reference}
        ]}]},
    }  # fmt: skip
    await feed.observe(stream)
    await converged(feed.queue, triggers.queue)
    stored = kube.body("deployments", "web", "shop")
    assert stored["spec"]["template"]["spec"]["containers"][0]["image"] == image.reference
    await triggers.stop()
    await feed.stop()


async def test_tag_feed_delivers_again_to_a_subscriber_that_raised() -> None:
    feed = TagFeed()
    fast(feed.queue)
    heard: list[str] = []
    failures = [RuntimeError("one"), httpx2.ReadTimeout("two")]

    async def flaky(image: Any) -> None:
        if failures:
            raise failures.pop(0)
        heard.append(image.image)

    async def steady(image: Any) -> None:
        heard.append("steady " + image.image)

    feed.subscribe(flaky)
    feed.subscribe(steady)
    stream = {
        "metadata": {"namespace": "shop", "name": "web", "resourceVersion": "3"},
        "status": {"tags": [{"tag": "latest", "items": [{"image": DIGEST}]}]},
    }
    await feed.observe(stream)
    await converged(feed.queue)
    assert sorted(heard) == [DIGEST, f"steady {DIGEST}"]  # each once, the flaky one too
    await feed.stop()


# --- what the adapter changed (these failed before it) -------------------------------------------


async def test_posting_an_event_never_raises_not_even_a_timeout() -> None:
    kube = FakeKube()
    kube.fail("create", "events", error=httpx2.ReadTimeout("slow"))
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "shop"}}
    await post_event(kube.client, body, "Normal", "Tested", "a message", NOW)
    assert kube.count("create", "events") == 1
    assert kube.all("events") == []


@pytest.mark.parametrize(
    "failure",
    [TimeoutError(), ConnectionResetError("reset"), api_error(408)],
    ids=["TimeoutError", "ConnectionResetError", "408"],
)
async def test_workload_triggers_retry_whatever_is_transient(failure: BaseException) -> None:
    kube = FakeKube()
    body = kube.add(workload(value=annotation(trigger_json())))
    feed = TagFeed()
    image = tag_image()
    feed._current[(image.namespace, image.stream, image.tag)] = image
    kube.fail("patch", "deployments", error=failure)
    triggers = WorkloadTriggers(kube.client, feed, clock=lambda: NOW)
    fast(triggers.queue)
    await triggers.on_event("ADDED", body)
    await converged(triggers.queue)
    await triggers.stop()
    stored = kube.body("deployments", "web", "shop")
    assert stored["spec"]["template"]["spec"]["containers"][0]["image"] == NEW


async def test_build_controller_start_request_survives_failed_creates_and_status_writes() -> None:
    """A start request whose Build create and BuildConfig status write fail is retried from
    the queue until its Build exists, exactly once (the request id finds it on replay)."""
    kube = FakeKube()
    body = buildconfig()
    body["spec"] = {
        "strategy": {"type": "Docker", "dockerStrategy": {}},
        "source": {"type": "Dockerfile", "dockerfile": "FROM scratch"},
        "output": {"to": {"kind": "DockerImage", "name": "registry.example/shop/web:latest"}},
    }
    body["metadata"]["annotations"] = {"start.build.headwater.dev/r1": ""}
    stored = kube.add(body)
    config = Config()
    builds = BuildController(kube.client, None, config, settings_from_config(config),  # type: ignore[arg-type]
                             clock=lambda: NOW)  # fmt: skip
    fast(builds.buildconfigs, builds.builds)
    kube.fail("create", "builds", code=500)
    kube.fail("create", "builds", error=httpx2.ReadTimeout("slow"))
    kube.fail("patch", "buildconfigs", subresource="status", code=503)
    builds.observe_buildconfig(stored)
    await converged(builds.buildconfigs)
    made = kube.all("builds", "shop")
    assert [b["metadata"]["name"] for b in made] == ["web-1"]
    assert kube.count("create", "builds") == 3
    assert "start.build.headwater.dev/r1" not in (
        kube.body(BuildConfig, "web", "shop")["metadata"].get("annotations") or {}
    )
    assert kube.body(BuildConfig, "web", "shop")["status"]["lastVersion"] == 1
    await builds.stop()
