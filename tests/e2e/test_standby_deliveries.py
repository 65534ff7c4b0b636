"""Every replica serves the webhook port; a standby passes what it is asked to the leader.

Two operator processes elect a leader through a Lease in the test's namespace,
as two replicas of the install bundle do. The test then calls only the
*standby*: a Generic build webhook and a registry push notification. The
standby checks the secret and the token itself and writes the start request
and the import request onto the objects; the leader starts exactly one Build
and imports the pushed digest. A call with a wrong secret or token writes
nothing.
"""

from __future__ import annotations

import base64
import json
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.registry_servers import free_port

from .helpers import (
    ALLOWED_REGISTRIES_FOR_IMPORT,
    Cluster,
    builds_of,
    docker_bc,
    eventually,
    local_operator_env,
    push_image,
    start_operator,
    stop_operator,
)
from .test_imagestream_imports import docker_tag, stream

pytestmark = pytest.mark.e2e

HOOK_PATH = (
    "/apis/build.headwater.dev/v1/namespaces/{ns}/buildconfigs/{bc}/webhooks/{secret}/{hook}"
)


def _call(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310 - loopback
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return int(response.status), json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return int(exc.code), json.loads(exc.read() or b"{}")


def _ready(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
            return str(r.read().decode())
    except (OSError, urllib.error.HTTPError):
        return None


class Replica:
    def __init__(self, process: subprocess.Popen[bytes], health: int, webhooks: int) -> None:
        self.process, self.health, self.webhooks = process, health, webhooks

    @property
    def role(self) -> str | None:
        return _ready(self.health)


@pytest.fixture
def replicas(cluster: Cluster, namespace: str, tmp_path: Path) -> Iterator[tuple[Replica, str]]:
    """(the standby, the registry token), after the first replica became the leader."""
    token = uuid.uuid4().hex
    started: list[Replica] = []
    with ExitStack() as stack:
        for index in range(2):
            health, webhooks = free_port(), free_port()
            settings = {
                **(local_operator_env() if cluster.is_local else {}),
                "KUBECONFIG": str(cluster.kubeconfig),
                "HEADWATER_ADMISSION_HOST": "",
                "HEADWATER_HEALTH_PORT": str(health),
                "HEADWATER_WEBHOOK_PORT": str(webhooks),
                "HEADWATER_REGISTRY_WEBHOOK_TOKEN": token,
                "HEADWATER_LEASE_NAMESPACE": namespace,
                "HEADWATER_LEASE_NAME": "headwater-test",
                "HEADWATER_ALLOWED_REGISTRIES_FOR_IMPORT": ALLOWED_REGISTRIES_FOR_IMPORT,
                "HOSTNAME": f"replica-{index}",
            }
            if cluster.registry:
                settings["HEADWATER_REGISTRY"] = cluster.registry
                settings["HEADWATER_REGISTRY_INSECURE"] = "true"
            log = tmp_path / f"replica-{index}.log"
            process = start_operator([namespace], log, settings, standalone=False)
            stack.callback(stop_operator, process)
            replica = Replica(process, health, webhooks)
            started.append(replica)
            want = "leader" if index == 0 else "standby"

            def has_role(r: Replica = replica, w: str = want) -> bool:
                return r.role == w

            eventually(f"replica {index} to be the {want}", has_role)
        yield started[1], token


def test_a_standby_passes_build_webhooks_and_pushes_to_the_leader(
    cluster: Cluster, namespace: str, replicas: tuple[Replica, str]
) -> None:
    standby, token = replicas
    registry = cluster.need_registry()
    secret = uuid.uuid4().hex
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "hook"},
            "data": {"WebHookSecretKey": base64.b64encode(secret.encode()).decode()},
        },
        namespace,
    )
    cluster.apply(
        docker_bc(
            "web",
            {"type": "Dockerfile", "dockerfile": "FROM scratch\nLABEL standby=delivery\n"},
            None,
            triggers=[{"type": "Generic", "generic": {"secretReference": {"name": "hook"}}}],
        ),
        namespace,
    )
    base = f"http://127.0.0.1:{standby.webhooks}"
    hook = base + HOOK_PATH.format(ns=namespace, bc="web", secret=secret, hook="generic")
    wrong = base + HOOK_PATH.format(ns=namespace, bc="web", secret="not-it", hook="generic")

    # A build webhook to the standby: the leader makes the Build, the standby names it.
    assert _call(wrong, b"{}", {"Content-Type": "application/json"})[0] == 401
    status, body = _call(hook, b"{}", {"Content-Type": "application/json"})
    assert status in (200, 202), body
    eventually("the leader to make the Build", lambda: len(builds_of(cluster, namespace)) == 1)
    [build] = builds_of(cluster, namespace)
    if status == 200:
        assert body["build"] == build["metadata"]["name"]
    assert build["metadata"]["name"] == "web-1"
    assert build["spec"]["triggeredBy"][0]["message"] == "Generic WebHook"

    def requests_left() -> list[str]:
        bc = cluster.get_json("buildconfigs", "web", "-n", namespace)
        return [k for k in bc["metadata"].get("annotations") or {} if k.startswith("start.build")]

    eventually("the leader to clear the start request", lambda: not requests_left())

    # A push notification to the standby: the leader imports the digest.
    first, _ = push_image(registry, f"{namespace}/app", "latest", marker=f"{namespace}-1")
    cluster.apply(
        stream("app", docker_tag("latest", f"{registry}/{namespace}/app:latest")), namespace
    )

    def newest() -> str | None:
        tags = cluster.get_json("imagestream", "app", "-n", namespace).get("status", {})
        for tag in tags.get("tags") or []:
            if tag["tag"] == "latest" and tag.get("items"):
                return str(tag["items"][0]["image"])
        return None

    eventually("the first import", lambda: newest() == first)
    second, _ = push_image(registry, f"{namespace}/app", "latest", marker=f"{namespace}-2")
    notification = json.dumps(
        {"repository": f"{registry}/{namespace}/app", "tag": "latest"}
    ).encode()
    url = f"{base}/registry/notifications"
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    refused = {**headers, "Authorization": "Bearer not-it"}
    assert _call(url, notification, refused)[0] == 401
    assert _call(url, notification, headers) == (202, {"streams": 1, "tags": 1})
    eventually("the leader to import the pushed digest", lambda: newest() == second, timeout=30)
    # The build webhook made one Build, however often the leader looked again.
    assert [b["metadata"]["name"] for b in builds_of(cluster, namespace)] == ["web-1"]
