"""Registry notifications: parsing, matching tags, and the authenticated endpoint."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given
from hypothesis import strategies as st

from headwater.imports.model import StreamRef
from headwater.imports.notifications import (
    NotificationError,
    Push,
    parse_notification,
    tags_to_import,
)
from headwater.servers import REGISTRY_NOTIFICATIONS_PATH, webhook_app

# Shaped like distribution's notifications (docs/notifications.md), trimmed.
DISTRIBUTION_ENVELOPE = {
    "events": [
        {
            "id": "asdf-asdf-asdf-asdf-0",
            "timestamp": "2026-11-28T12:00:00Z",
            "action": "push",
            "target": {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": "sha256:" + "a" * 64,
                "repository": "shop/web",
                "tag": "1.2.0",
            },
            "request": {"host": "registry.example.com:5000", "method": "PUT"},
        },
        {
            "action": "push",
            "target": {
                "mediaType": "application/octet-stream",
                "repository": "shop/web",
                "digest": "sha256:" + "b" * 64,
            },
        },
        {"action": "pull", "target": {"repository": "shop/web", "tag": "1.2.0"}},
    ]
}


def test_distribution_envelope_gives_manifest_pushes_only() -> None:
    pushes = parse_notification(json.dumps(DISTRIBUTION_ENVELOPE).encode())
    assert pushes == [Push("registry.example.com:5000", "shop/web", "1.2.0", "sha256:" + "a" * 64)]


def test_generic_form() -> None:
    body = json.dumps({"repository": "registry.example.com/shop/web", "tag": "2"}).encode()
    assert parse_notification(body) == [Push("registry.example.com", "shop/web", "2")]
    hub = json.dumps({"repository": "busybox:1.36"}).encode()
    assert parse_notification(hub) == [Push("docker.io", "library/busybox", "1.36")]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{", "not JSON"),
        (b"[]", "JSON object"),
        (b'{"events": 1}', "events must be a list"),
        (b'{"events": [1]}', "each event must be an object"),
        (b'{"tag": "x"}', "repository is required"),
        (b'{"repository": "shop/Web"}', "repository:"),
        (b'{"events": [{"action": "push", "target": {}}]}', "repository is required"),
        (b"x" * ((1 << 20) + 1), "larger than"),
    ],
)
def test_bad_bodies_say_why(body: bytes, message: str) -> None:
    with pytest.raises(NotificationError, match=message):
        parse_notification(body)


@given(st.binary(max_size=2000))
def test_arbitrary_bytes_raise_only_notification_errors(body: bytes) -> None:
    with contextlib.suppress(NotificationError):
        parse_notification(body)


def stream_body(*tags: dict[str, Any]) -> dict[str, Any]:
    return {"spec": {"tags": list(tags)}}


def tag(name: str, image: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "from": {"kind": "DockerImage", "name": image}, **extra}


def test_pushes_match_tags_by_host_repository_and_tag() -> None:
    bodies = {
        StreamRef("a", "web"): stream_body(
            tag("1.2.0", "reg:5000/shop/web:1.2.0"),
            tag("other", "reg:5000/shop/web:2"),
            tag("pinned", "reg:5000/shop/web@sha256:" + "c" * 64),
            tag("ref", "reg:5000/shop/web:1.2.0", reference=True),
            tag("elsewhere", "other:5000/shop/web:1.2.0"),
        ),
        StreamRef("b", "web"): stream_body(tag("latest", "reg:5000/shop/web")),
    }
    found = tags_to_import([Push("reg:5000", "shop/web", "1.2.0")], bodies)
    assert found == {StreamRef("a", "web"): {"1.2.0"}}
    any_tag = tags_to_import([Push(None, "shop/web", None)], bodies)
    assert any_tag == {
        StreamRef("a", "web"): {"1.2.0", "other", "elsewhere"},
        StreamRef("b", "web"): {"latest"},
    }
    latest = tags_to_import([Push("reg:5000", "shop/web", "latest")], bodies)
    assert latest == {StreamRef("b", "web"): {"latest"}}


async def test_endpoint_authenticates_and_answers() -> None:
    received: list[list[Push]] = []

    async def on_push(pushes: list[Push]) -> tuple[int, int]:
        received.append(pushes)
        return 1, len(pushes)

    async with TestClient(TestServer(webhook_app("s3cret", on_push))) as client:
        body = json.dumps(DISTRIBUTION_ENVELOPE)
        ok = await client.post(
            REGISTRY_NOTIFICATIONS_PATH, data=body, headers={"Authorization": "Bearer s3cret"}
        )
        assert ok.status == 202
        assert await ok.json() == {"streams": 1, "tags": 1}
        for headers in ({"Authorization": "Bearer nope"}, {}, {"Authorization": "s3cret"}):
            denied = await client.post(REGISTRY_NOTIFICATIONS_PATH, data=body, headers=headers)
            assert denied.status == 401
            assert "s3cret" not in await denied.text()
        bad = await client.post(
            REGISTRY_NOTIFICATIONS_PATH, data="{", headers={"Authorization": "Bearer s3cret"}
        )
        assert bad.status == 400
        assert len(received) == 1


def test_pushed_digests_name_the_digest_each_moved_tag_must_reach() -> None:
    from headwater.imports.model import StreamRef
    from headwater.imports.notifications import pushed_digests

    body = {
        "spec": {
            "tags": [
                {
                    "name": "1.2.0",
                    "from": {"kind": "DockerImage", "name": "r.example/shop/web:1.2.0"},
                },
                {"name": "dev", "from": {"kind": "DockerImage", "name": "r.example/shop/web:dev"}},
            ]
        }
    }
    ref = StreamRef("shop", "web")
    pushes = [
        Push("r.example", "shop/web", "1.2.0", "sha256:" + "1" * 64),
        Push("r.example", "shop/web", "dev"),  # no digest named: nothing to wait for
    ]
    assert pushed_digests(pushes, {ref: body}) == {(ref, "1.2.0"): "sha256:" + "1" * 64}


def _named(ref: StreamRef, image: str) -> dict[str, Any]:
    body = stream_body(tag("1.2.0", image))
    body["metadata"] = {"namespace": ref.namespace, "name": ref.name}
    return body


async def test_pushes_before_the_streams_are_seen_reach_each_stream_seen_later(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Right after a start, a kept push is matched against each newly seen stream
    only (not all streams, again, at each one), and stays kept for the next one."""
    from headwater.config import Config
    from headwater.imports import runner as runner_module
    from headwater.imports.runner import EARLY_PUSH_SECONDS, ImportRunner
    from headwater.registry.client import RegistryClient

    scanned: list[int] = []
    real = tags_to_import

    def counting(pushes: Any, bodies: Any) -> dict[StreamRef, set[str]]:
        scanned.append(len(bodies))
        return real(pushes, bodies)

    monkeypatch.setattr(runner_module, "tags_to_import", counting)
    runner = ImportRunner(None, RegistryClient(), Config())  # type: ignore[arg-type]
    digest = "sha256:" + "d" * 64
    assert runner.import_now([Push("reg:5000", "shop/web", "1.2.0", digest)]) == (0, 0)
    others = 2000
    for i in range(others):
        await runner.observe(_named(StreamRef(f"ns{i}", "other"), f"reg:5000/shop/db{i}:1.2.0"))
    # One stream scanned per stream seen: linear, where matching against every
    # stream known at each one scanned 2 million.
    assert sum(scanned) <= others + 1
    assert not runner.pending
    first, second = StreamRef("a", "web"), StreamRef("b", "web")
    await runner.observe(_named(first, "reg:5000/shop/web:1.2.0"))
    await runner.observe(_named(second, "reg:5000/shop/web:1.2.0"))
    assert runner.pending == {first: {"1.2.0"}, second: {"1.2.0"}}
    assert runner.expected == {(first, "1.2.0"): (digest, 0), (second, "1.2.0"): (digest, 0)}
    # Seeing a stream again (a later event) matches nothing again.
    runner.pending.clear()
    await runner.observe({**_named(first, "reg:5000/shop/web:1.2.0"), "status": {}})
    assert not runner.pending
    # A kept push expires.
    runner.early_pushes[0] = (
        runner.early_pushes[0][0] - EARLY_PUSH_SECONDS,
        runner.early_pushes[0][1],
    )
    await runner.observe(_named(StreamRef("c", "web"), "reg:5000/shop/web:1.2.0"))
    assert not runner.pending
    assert not runner.early_pushes


async def test_token_from_a_secret_file_with_a_trailing_newline_is_trimmed() -> None:
    """Issue 16: a token Secret made with ``kubectl create secret generic --from-file=token=f``
    keeps the file's newline; every notification got 401."""
    from headwater.config import ConfigError, load_config

    config = load_config({"HEADWATER_REGISTRY_WEBHOOK_TOKEN": " s3cret\n"})
    assert config.registry_webhook_token == "s3cret"
    with pytest.raises(ConfigError, match="HEADWATER_REGISTRY_WEBHOOK_TOKEN"):
        load_config({"HEADWATER_REGISTRY_WEBHOOK_TOKEN": "\n"})

    async def on_push(pushes: list[Push]) -> tuple[int, int]:
        return 1, len(pushes)

    app = webhook_app(config.registry_webhook_token, on_push)
    async with TestClient(TestServer(app)) as client:
        body = json.dumps(DISTRIBUTION_ENVELOPE)
        ok = await client.post(
            REGISTRY_NOTIFICATIONS_PATH, data=body, headers={"Authorization": "Bearer s3cret"}
        )
        assert ok.status == 202
