"""Registry push notifications: a real registry notifies, the operator imports at once.

The registry is a separate distribution process on loopback configured with a
notification endpoint pointing at the in-process operator's webhook port and
carrying its shared token; the tag is not scheduled, so only the notification
can make the operator look again.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path

import kopf.testing
import pytest

from tests.registry_servers import running_registry

from .helpers import Cluster, eventually, push_image
from .test_imagestream_imports import docker_tag, newest_image, stream

pytestmark = pytest.mark.e2e


def post(url: str, body: bytes, token: str | None) -> int:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310 - the operator on loopback
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_a_push_notification_imports_the_moved_tag_at_once(
    cluster: Cluster,
    namespace: str,
    operator_in_process: kopf.testing.KopfRunner,
    tmp_path: Path,
) -> None:
    port = os.environ["HEADWATER_WEBHOOK_PORT"]
    token = os.environ["HEADWATER_REGISTRY_WEBHOOK_TOKEN"]
    url = f"http://127.0.0.1:{port}/registry/notifications"
    notify = {
        "url": url,
        "headers": {"Authorization": [f"Bearer {token}"]},
        "timeout": "2s",
        "threshold": 3,
        "backoff": "1s",
    }
    with running_registry(tmp_path / "registry", notify=notify) as registry:
        first, _ = push_image(registry.address, "shop/web", "1.2.0", marker="n1")
        cluster.apply(
            stream("web", docker_tag("1.2.0", f"{registry.address}/shop/web:1.2.0")), namespace
        )
        eventually(
            "the first import", lambda: newest_image(cluster, namespace, "web", "1.2.0") == first
        )

        second, _ = push_image(registry.address, "shop/web", "1.2.0", marker="n2")
        eventually(
            "the notification's import",
            lambda: newest_image(cluster, namespace, "web", "1.2.0") == second,
            timeout=30,
        )

    generic = json.dumps({"repository": "127.0.0.1:1/shop/web", "tag": "1.2.0"}).encode()
    assert post(url, generic, token) == 202
    assert post(url, generic, "wrong") == 401
    assert post(url, generic, None) == 401
    assert post(url, b"{not json", token) == 400
    assert post(url, json.dumps({"events": "x"}).encode(), token) == 400
    assert post(url, b"x" * (2 << 20), token) == 413
