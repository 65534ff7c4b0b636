"""Every replica serves the webhook port: a standby writes requests for the leader (issue 14)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from headwater.builds.controller import BuildController
from headwater.builds.instantiate import StartRequest, parse_request, request_value
from headwater.builds.job import settings_from_config
from headwater.builds.webhooks import webhook_path
from headwater.config import Config
from headwater.deliveries import Deliveries, deliveries_app, merged_request
from headwater.imports.notifications import Push
from headwater.imports.plan import REQUEST_ANNOTATION
from headwater.metrics import REGISTRY as METRICS
from headwater.resources import BuildConfig, ImageStream
from tests.fakekube import FakeKube, converged, fast

REGISTRY = "registry.example:5000"
SECRET = "s3cret-token-value"


def stream(name: str = "web", annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "image.headwater.dev/v1",
        "kind": "ImageStream",
        "metadata": {"name": name, "namespace": "shop", "annotations": annotations or {}},
        "spec": {
            "tags": [
                {
                    "name": "latest",
                    "from": {"kind": "DockerImage", "name": f"{REGISTRY}/shop/{name}:latest"},
                },
                {
                    "name": "v2",
                    "from": {"kind": "DockerImage", "name": f"{REGISTRY}/shop/{name}:v2"},
                },
            ]
        },
    }


def buildconfig(annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "build.headwater.dev/v1",
        "kind": "BuildConfig",
        "metadata": {"name": "web", "namespace": "shop", "annotations": annotations or {}},
        "spec": {
            "strategy": {"type": "Docker", "dockerStrategy": {}},
            "source": {"type": "Dockerfile", "dockerfile": "FROM scratch"},
            "output": {"to": {"kind": "DockerImage", "name": f"{REGISTRY}/shop/web:latest"}},
            "triggers": [{"type": "Generic", "generic": {"secret": SECRET}}],
        },
    }


def push(tag: str = "latest", repository: str = "shop/web") -> Push:
    return Push(host=REGISTRY, repository=repository, tag=tag)


# --- the import request ------------------------------------------------------------------------


def test_an_import_request_adds_tags_to_what_is_asked_for() -> None:
    assert merged_request(None, {"v2", "latest"}) == "latest,v2"
    assert merged_request({REQUEST_ANNOTATION: "old"}, {"latest"}) == "latest,old"
    assert merged_request({REQUEST_ANNOTATION: ""}, {"latest"}) == "*"  # empty asks for all
    assert merged_request({REQUEST_ANNOTATION: "*"}, {"latest"}) == "*"


def delivered(endpoint: str, via: str) -> float:
    value = METRICS.get_sample_value(
        "headwater_webhook_deliveries_total", {"endpoint": endpoint, "via": via}
    )
    return value or 0.0


async def test_a_standby_writes_the_import_request_onto_each_stream_a_push_moved() -> None:
    before = delivered("registry", "standby")
    kube = FakeKube()
    kube.add(stream("web", {REQUEST_ANNOTATION: "v2"}))
    kube.add(stream("api"))
    deliveries = Deliveries(kube.client)
    assert await deliveries.on_push([push("latest")]) == (1, 1)
    annotations = kube.body(ImageStream, "web", "shop")["metadata"]["annotations"]
    assert annotations[REQUEST_ANNOTATION] == "latest,v2"
    assert (
        REQUEST_ANNOTATION not in kube.body(ImageStream, "api", "shop")["metadata"]["annotations"]
    )
    # A redelivery writes nothing more.
    writes = len(kube.writes)
    assert await deliveries.on_push([push("latest")]) == (1, 1)
    assert len(kube.writes) == writes
    assert delivered("registry", "standby") == before + 2


async def test_a_standby_reads_again_when_the_stream_changed_meanwhile() -> None:
    kube = FakeKube()
    kube.add(stream("web"))
    kube.fail("patch", "imagestreams", code=409)
    deliveries = Deliveries(kube.client)
    assert await deliveries.on_push([push("v2")]) == (1, 1)
    assert kube.count("patch", "imagestreams") == 2
    assert kube.count("get", "imagestreams") == 1
    annotations = kube.body(ImageStream, "web", "shop")["metadata"]["annotations"]
    assert annotations[REQUEST_ANNOTATION] == "v2"


async def test_a_standby_skips_a_stream_deleted_since_it_was_listed() -> None:
    kube = FakeKube()
    kube.add(stream("web"))
    kube.fail("patch", "imagestreams", code=404)
    assert await Deliveries(kube.client).on_push([push("latest")]) == (1, 1)


async def test_a_standby_lists_only_the_namespaces_the_operator_serves() -> None:
    kube = FakeKube()
    kube.add(stream("web"))
    assert await Deliveries(kube.client, ("other",)).on_push([push("latest")]) == (0, 0)


async def test_a_failed_write_is_not_acknowledged_so_the_registry_sends_again() -> None:
    kube = FakeKube()
    kube.add(stream("web"))
    kube.fail("patch", "imagestreams", code=500)
    config = dataclasses.replace(Config(), registry_webhook_token="tok")
    app = deliveries_app(config, Deliveries(kube.client))
    body = json.dumps({"repository": f"{REGISTRY}/shop/web", "tag": "latest"})
    async with TestClient(TestServer(app)) as client:
        headers = {"Authorization": "Bearer tok"}
        failed = await client.post("/registry/notifications", data=body, headers=headers)
        assert failed.status == 503
        retried = await client.post("/registry/notifications", data=body, headers=headers)
        assert retried.status == 202
    annotations = kube.body(ImageStream, "web", "shop")["metadata"]["annotations"]
    assert annotations[REQUEST_ANNOTATION] == "latest"


class Importer:
    def __init__(self) -> None:
        self.pushes: list[Push] = []

    def import_now(self, pushes: list[Push]) -> tuple[int, int]:
        self.pushes.extend(pushes)
        return 7, 9


class Starter:
    async def instantiate(self, namespace: str, name: str, request: StartRequest) -> str:
        return f"{name}-42"


async def test_the_leader_acts_in_process_and_writes_nothing() -> None:
    kube = FakeKube()
    kube.add(stream("web"))
    deliveries = Deliveries(kube.client)
    importer = Importer()
    deliveries.attach(Starter(), importer)
    assert await deliveries.on_push([push()]) == (7, 9)
    assert await deliveries.instantiate("shop", "web", StartRequest(id="r1")) == "web-42"
    assert importer.pushes == [push()]
    assert kube.calls == []
    deliveries.detach()
    assert not deliveries.leading


# --- the start request -------------------------------------------------------------------------


def test_a_triggered_request_says_so_and_reads_back() -> None:
    request = StartRequest(id="r1", triggered=True, causes=({"message": "Generic WebHook"},))
    value = request_value(request)
    assert json.loads(value)["triggered"] is True
    assert parse_request("r1", value).triggered
    assert not parse_request("r1", "").triggered
    assert not parse_request("r1", request_value(StartRequest(id="r1"))).triggered


async def test_a_standby_webhook_call_writes_a_triggered_start_request() -> None:
    kube = FakeKube()
    kube.add(buildconfig())
    config = Config()
    deliveries = Deliveries(kube.client, build_wait_seconds=0)
    app = deliveries_app(config, deliveries)
    path = webhook_path("shop", "web", SECRET, "generic")
    async with TestClient(TestServer(app)) as client:
        answer = await client.post(path, headers={"X-Request-Id": "a"})
        assert answer.status == 202, await answer.text()
        body = await answer.json()
    annotations = kube.body(BuildConfig, "web", "shop")["metadata"]["annotations"]
    [key] = [k for k in annotations if k.startswith("start.build.headwater.dev/")]
    assert key == f"start.build.headwater.dev/{body['request']}"
    request = parse_request(key.rpartition("/")[2], annotations[key])
    assert request.triggered
    assert request.causes
    assert "webhook" in str(request.causes[0]).lower()
    # A wrong secret writes nothing.
    async with TestClient(TestServer(app)) as client:
        wrong = await client.post(webhook_path("shop", "web", "not-it", "generic"))
        assert wrong.status == 401
    assert len([k for k in kube.body(BuildConfig, "web", "shop")["metadata"]["annotations"]
                if k.startswith("start.build.headwater.dev/")]) == 1  # fmt: skip


async def test_a_standby_answers_with_the_build_the_leader_made() -> None:
    kube = FakeKube()
    kube.add(buildconfig())
    kube.add(
        {
            "apiVersion": "build.headwater.dev/v1",
            "kind": "Build",
            "metadata": {
                "name": "web-3",
                "namespace": "shop",
                "labels": {"build.headwater.dev/request": "r7"},
            },
        }
    )
    deliveries = Deliveries(kube.client, build_wait_seconds=0)
    assert await deliveries.instantiate("shop", "web", StartRequest(id="r7")) == "web-3"


async def test_the_leader_checks_a_triggered_request_as_the_spec_author() -> None:
    """A request a standby wrote for a webhook is checked like any triggered build: with
    admission on and no recorded author, no Build is made; the same request untriggered is."""
    kube = FakeKube()
    triggered = request_value(StartRequest(id="hook1", triggered=True))
    stored = kube.add(buildconfig({"start.build.headwater.dev/hook1": triggered,
                                   "start.build.headwater.dev/manual1": ""}))  # fmt: skip
    config = dataclasses.replace(Config(), admission_host="10.0.0.1")
    builds = BuildController(kube.client, None, config, settings_from_config(config))  # type: ignore[arg-type]
    fast(builds.buildconfigs, builds.builds)
    builds.observe_buildconfig(stored)
    await converged(builds.buildconfigs)
    made = kube.all("builds", "shop")
    assert [b["metadata"]["labels"]["build.headwater.dev/request"] for b in made] == ["manual1"]
    reasons = [e["reason"] for e in kube.all("events")]
    assert "BuildConfigInstantiateFailed" in reasons
    await builds.stop()
