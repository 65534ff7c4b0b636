"""What a GitOps health check (kstatus) reads from Headwater's status: a BuildConfig
whose builder image does not exist is not Ready; once it exists, it is."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from headwater.builds.buildconfigs import WAITING_FOR_IMAGE, ready_condition
from headwater.builds.controller import BuildController
from headwater.builds.job import settings_from_config
from headwater.config import Config
from headwater.imports.tagfeed import TagFeed
from headwater.resources import BuildConfig
from tests import kstatus
from tests.fakekube import FakeKube, converged, fast

NOW = datetime(2026, 12, 4, 20, 0, tzinfo=UTC)
DIGEST = "sha256:" + "d" * 64


def builder_stream(namespace: str = "shop") -> dict[str, Any]:
    return {
        "apiVersion": "image.headwater.dev/v1",
        "kind": "ImageStream",
        "metadata": {"name": "builder", "namespace": namespace, "resourceVersion": "7"},
        "status": {
            "tags": [
                {
                    "tag": "latest",
                    "items": [{"image": DIGEST, "dockerImageReference": f"reg/builder@{DIGEST}"}],
                }
            ]
        },
    }


def web_buildconfig(triggers: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "build.headwater.dev/v1",
        "kind": "BuildConfig",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "triggers": triggers,
            "source": {"type": "Dockerfile", "dockerfile": "FROM scratch"},
            "strategy": {
                "type": "Docker",
                "dockerStrategy": {"from": {"kind": "ImageStreamTag", "name": "builder:latest"}},
            },
            "output": {"to": {"kind": "ImageStreamTag", "name": "web:latest"}},
        },
    }


def test_ready_condition_is_false_while_an_image_is_missing() -> None:
    assert ready_condition("web", 0, []) == ("True", "Ready", "no build yet")
    assert ready_condition("web", 3, []) == ("True", "Ready", "last build: web-3")
    status, reason, message = ready_condition("web", 3, ["builder:latest"])
    assert (status, reason) == ("False", WAITING_FOR_IMAGE)
    assert "ImageStreamTag builder:latest" in message


def test_kstatus_follows_the_generic_rules() -> None:
    ready: dict[str, Any] = {"type": "Ready", "status": "True"}
    body: dict[str, Any] = {
        "kind": "ImageStream",
        "metadata": {"generation": 2},
        "status": {"observedGeneration": 2, "conditions": [ready]},
    }
    assert kstatus.compute(body)[0] == "Current"
    body["status"]["observedGeneration"] = 1
    assert kstatus.compute(body)[0] == "InProgress"
    body["status"]["observedGeneration"] = 2
    ready["status"] = "False"
    assert kstatus.compute(body)[0] == "InProgress"
    # Without status, kstatus cannot tell: it takes the object as Current.
    assert kstatus.compute({"kind": "ImageStream", "metadata": {"generation": 1}})[0] == "Current"


async def test_buildconfig_without_its_builder_image_is_not_ready_until_the_image_exists() -> None:
    kube = FakeKube()
    stored = kube.add(web_buildconfig([{"type": "ImageChange", "imageChange": {}}]))
    config = Config()
    tags = TagFeed()
    builds = BuildController(kube.client, None, config, settings_from_config(config),  # type: ignore[arg-type]
                             clock=lambda: NOW, tags=tags)  # fmt: skip
    fast(builds.buildconfigs, builds.builds)
    builds.observe_buildconfig(stored)
    await converged(builds.buildconfigs)
    body = kube.body(BuildConfig, "web", "shop")
    ready = next(c for c in body["status"]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", WAITING_FOR_IMAGE)
    assert body["status"]["observedGeneration"] == body["metadata"]["generation"]
    assert kstatus.compute(body)[0] == "InProgress"

    await tags.observe(builder_stream())
    builds.observe_buildconfig(body)
    await converged(builds.buildconfigs)
    body = kube.body(BuildConfig, "web", "shop")
    assert kstatus.compute(body) == ("Current", "Resource is Ready")
    await builds.stop()


async def test_buildconfig_without_image_triggers_is_ready() -> None:
    """Only ImageChange tags are checked (the ones whose moves reconcile it again)."""
    kube = FakeKube()
    stored = kube.add(web_buildconfig([]))
    config = Config()
    builds = BuildController(kube.client, None, config, settings_from_config(config),  # type: ignore[arg-type]
                             clock=lambda: NOW, tags=TagFeed())  # fmt: skip
    fast(builds.buildconfigs, builds.builds)
    builds.observe_buildconfig(stored)
    await converged(builds.buildconfigs)
    assert kstatus.compute(kube.body(BuildConfig, "web", "shop"))[0] == "Current"
    await builds.stop()
