"""ConfigChange/ImageChange trigger decisions (builds/triggers.py) and the TagFeed."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from headwater.builds import triggers
from headwater.imports.tagfeed import TagFeed, TagImage, tag_images

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def bc(
    trigger_list: list[dict[str, Any]],
    *,
    last_version: int = 0,
    generation: int = 1,
    annotations: dict[str, str] | None = None,
    status: dict[str, Any] | None = None,
    strategy_from: dict[str, Any] | None = None,
) -> dict[str, Any]:
    block: dict[str, Any] = {}
    if strategy_from is not None:
        block["from"] = strategy_from
    return {
        "metadata": {
            "name": "web",
            "namespace": "shop",
            "generation": generation,
            "annotations": annotations or {},
        },
        "spec": {
            "strategy": {"type": "Docker", "dockerStrategy": block},
            "triggers": trigger_list,
        },
        "status": {"lastVersion": last_version, **(status or {})},
    }


def image(digest: str, stream: str = "base", tag: str = "latest", ns: str = "shop") -> TagImage:
    return TagImage(ns, stream, tag, digest, f"registry.example.com/{ns}/{stream}@{digest}")


def test_config_change_builds_only_a_new_buildconfig_by_default() -> None:
    fresh = triggers.config_change_request(bc([{"type": "ConfigChange"}]))
    assert fresh is not None
    assert fresh.id == triggers.CONFIG_CHANGE_ID
    assert fresh.causes[0]["message"] == "Build configuration change"
    assert triggers.config_change_request(bc([{"type": "ConfigChange"}], last_version=1)) is None
    assert triggers.config_change_request(bc([], last_version=0)) is None


def test_config_change_opt_in_builds_each_generation_once() -> None:
    opted = {triggers.REBUILD_ANNOTATION: "true", triggers.CONFIG_GENERATION_ANNOTATION: "2"}
    same = bc([{"type": "ConfigChange"}], last_version=3, generation=2, annotations=opted)
    assert triggers.config_change_request(same) is None
    edited = bc([{"type": "ConfigChange"}], last_version=3, generation=3, annotations=opted)
    request = triggers.config_change_request(edited)
    assert request is not None
    assert request.id == "configchange-g3"
    # Opting in without a record: the current spec counts as built.
    unknown = bc(
        [{"type": "ConfigChange"}], last_version=3, generation=5,
        annotations={triggers.REBUILD_ANNOTATION: "true"},
    )  # fmt: skip
    assert triggers.config_change_request(unknown) is None


def test_watched_tags_default_to_the_strategy_from_and_skip_other_kinds() -> None:
    config = bc(
        [
            {"type": "ImageChange", "imageChange": {}},
            {
                "type": "ImageChange",
                "imageChange": {
                    "from": {"kind": "ImageStreamTag", "name": "tools:v2", "namespace": "ci"},
                    "paused": True,
                },
            },
            {"type": "ConfigChange"},
        ],
        strategy_from={"kind": "ImageStreamTag", "name": "base:latest"},
    )
    watched = triggers.watched_tags(config)
    assert [(w.namespace, w.name, w.paused) for w in watched] == [
        ("shop", "base:latest", False),
        ("ci", "tools:v2", True),
    ]
    docker_from = bc(
        [{"type": "ImageChange", "imageChange": {}}],
        strategy_from={"kind": "DockerImage", "name": "busybox"},
    )
    assert triggers.watched_tags(docker_from) == []


def test_image_change_fires_once_per_image_and_not_while_paused() -> None:
    source = {"kind": "ImageStreamTag", "name": "base:latest"}
    config = bc([{"type": "ImageChange", "imageChange": {}}], strategy_from=source)
    current = image("sha256:aaa")
    [(request, watched, seen)] = triggers.image_change_requests(config, lambda *k: current)
    assert seen == current
    assert request.from_image == current.pull_spec
    cause = request.causes[0]["imageChangeBuild"]
    assert cause["imageID"] == current.pull_spec
    assert cause["fromRef"] == {
        "kind": "ImageStreamTag",
        "name": "base:latest",
        "namespace": "shop",
    }
    # The same move again (a replay) has the same request id: one build.
    again = triggers.image_change_requests(config, lambda *k: current)[0][0]
    assert again.id == request.id
    # Recorded as last triggered: nothing more to do.
    recorded = triggers.image_trigger_status(
        config, lambda *k: current, [(watched, seen)], True, NOW
    )
    assert recorded == [
        {
            "from": {"name": "base:latest", "namespace": "shop"},
            "lastTriggeredImageID": current.pull_spec,
            "lastTriggerTime": "2026-01-02T03:04:05Z",
        }
    ]
    after = bc(
        [{"type": "ImageChange", "imageChange": {}}],
        strategy_from=source,
        status={"imageChangeTriggers": recorded},
    )
    assert triggers.image_change_requests(after, lambda *k: current) == []
    moved = image("sha256:bbb")
    [(next_request, _, _)] = triggers.image_change_requests(after, lambda *k: moved)
    assert next_request.id != request.id
    paused = bc(
        [{"type": "ImageChange", "imageChange": {"paused": True}}],
        strategy_from=source,
        status={"imageChangeTriggers": recorded},
    )
    assert triggers.image_change_requests(paused, lambda *k: moved) == []
    assert triggers.image_change_requests(config, lambda *k: None) == []


def test_any_build_records_the_images_it_used() -> None:
    source = {"kind": "ImageStreamTag", "name": "base:latest"}
    config = bc([{"type": "ImageChange", "imageChange": {}}], strategy_from=source)
    current = image("sha256:ccc")
    # A manual or ConfigChange build used the current image: the trigger must not fire again.
    status = triggers.image_trigger_status(config, lambda *k: current, [], True, NOW)
    assert status[0]["lastTriggeredImageID"] == current.pull_spec
    untouched = triggers.image_trigger_status(config, lambda *k: current, [], False, NOW)
    assert untouched == [{"from": {"name": "base:latest", "namespace": "shop"}}]


def stream(tags: list[tuple[str, str]], policy: str = "Source") -> dict[str, Any]:
    return {
        "metadata": {"name": "base", "namespace": "shop"},
        "spec": {"tags": [{"name": t, "referencePolicy": {"type": policy}} for t, _ in tags]},
        "status": {
            "tags": [
                {
                    "tag": t,
                    "items": [
                        {"image": d, "dockerImageReference": f"quay.example/base@{d}"},
                    ],
                }
                for t, d in tags
            ]
        },
    }


def test_tag_images_follow_the_reference_policy() -> None:
    [source] = tag_images(stream([("latest", "sha256:1")]), "10.0.0.1:5000")
    assert source.pull_spec == "quay.example/base@sha256:1"
    [local] = tag_images(stream([("latest", "sha256:1")], policy="Local"), "10.0.0.1:5000")
    assert local.pull_spec == "10.0.0.1:5000/shop/base@sha256:1"


def test_tag_feed_tells_subscribers_of_moves_once_and_in_order() -> None:
    async def scenario() -> list[str]:
        feed = TagFeed("10.0.0.1:5000")
        heard: list[str] = []

        async def subscriber(moved: TagImage) -> None:
            heard.append(f"{moved.tag}={moved.image}")

        feed.subscribe(subscriber)
        await feed.observe(stream([("latest", "sha256:1"), ("v1", "sha256:1")]))
        await feed.observe(stream([("latest", "sha256:1"), ("v1", "sha256:1")]))
        await feed.settle()
        await feed.observe(stream([("latest", "sha256:2"), ("v1", "sha256:1")]))
        await feed.settle()
        assert feed.current("shop", "base", "latest") is not None
        feed.forget("shop", "base")
        assert feed.current("shop", "base", "latest") is None
        return heard

    assert asyncio.run(scenario()) == ["latest=sha256:1", "v1=sha256:1", "latest=sha256:2"]


def test_tag_feed_skips_a_move_superseded_before_delivery() -> None:
    async def scenario() -> list[str]:
        feed = TagFeed()
        heard: list[str] = []

        async def subscriber(moved: TagImage) -> None:
            heard.append(moved.image)

        feed.subscribe(subscriber)
        await feed.observe(stream([("latest", "sha256:1")]))
        await feed.observe(stream([("latest", "sha256:2")]))  # before the first is delivered
        await feed.settle()
        return heard

    assert asyncio.run(scenario()) == ["sha256:2"]


def test_a_new_buildconfig_waits_for_its_image_change_tags_before_its_config_change_build() -> None:
    config = bc(
        [{"type": "ConfigChange"}, {"type": "ImageChange", "imageChange": {}}],
        strategy_from={"kind": "ImageStreamTag", "name": "base:latest"},
    )
    assert triggers.config_change_request(config, lambda *k: None) is None
    request = triggers.config_change_request(config, lambda *k: image("sha256:ddd"))
    assert request is not None
    assert request.id == triggers.CONFIG_CHANGE_ID


def test_tag_feed_ignores_a_stale_body_delivered_after_a_newer_one() -> None:
    async def scenario() -> list[str]:
        feed = TagFeed()
        heard: list[str] = []

        async def subscriber(moved: TagImage) -> None:
            heard.append(moved.image)

        feed.subscribe(subscriber)
        newer = stream([("latest", "sha256:2")])
        newer["metadata"]["resourceVersion"] = "20"
        older = stream([("latest", "sha256:1")])
        older["metadata"]["resourceVersion"] = "10"
        await feed.observe(newer)
        await feed.observe(older)
        await feed.settle()
        return heard

    assert asyncio.run(scenario()) == ["sha256:2"]


def test_an_image_change_trigger_on_another_tag_does_not_swap_the_builder() -> None:
    config = bc(
        [
            {
                "type": "ImageChange",
                "imageChange": {"from": {"kind": "ImageStreamTag", "name": "tools:v2"}},
            }
        ],
        strategy_from={"kind": "ImageStreamTag", "name": "base:latest"},
    )
    [(request, _, _)] = triggers.image_change_requests(
        config, lambda ns, s, t: image("sha256:eee", stream=s, tag=t)
    )
    assert request.from_image is None  # the strategy's own tag is pinned separately
