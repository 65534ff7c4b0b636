"""The honest schedule on a real cluster: a host whose rate cannot keep the interval says
so on its streams, a push still imports at once, and deleting a namespace stops its imports.

The operator runs in process (``operator_in_process``, interval 4 s) at the default 60
requests a minute; 20 scheduled tags on one registry need 20 s a round, so the schedule
is late and the throttle's queue is always full.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
import urllib.request
from pathlib import Path

import kopf.testing
import pytest
from lightkube import Client
from lightkube.config.kubeconfig import KubeConfig

from headwater.kube import plain_dict
from headwater.resources import ImageStream
from tests.registry_servers import running_registry

from .helpers import Cluster, eventually, push_image
from .test_imagestream_imports import docker_tag, newest_image, stream

pytestmark = pytest.mark.e2e

STREAMS = 20


def condition(cluster: Cluster, namespace: str, name: str, type_: str) -> dict[str, str] | None:
    obj = cluster.get_json(f"imagestream/{name}", "-n", namespace)
    for entry in (obj.get("status") or {}).get("conditions") or []:
        if entry.get("type") == type_:
            return dict(entry)
    return None


def requests_for(log: str, repository_prefix: str) -> int:
    return len(re.findall(rf"/v2/{re.escape(repository_prefix)}[^ \"]*/manifests/", log))


class Seen(threading.Event):
    at = 0.0


def watch_for(cluster: Cluster, namespace: str, name: str, digest: str) -> Seen:
    """An event set (with the time) when the stream's watch shows ``digest`` as its newest."""
    client = Client(KubeConfig.from_file(cluster.kubeconfig))
    current = client.get(ImageStream, name, namespace=namespace)
    assert current.metadata is not None
    version = current.metadata.resourceVersion
    seen = Seen()

    def run() -> None:
        watch = client.watch(
            ImageStream, namespace=namespace, fields={"metadata.name": name},
            resource_version=version,
        )  # fmt: skip
        for _, obj in watch:
            body = plain_dict(obj)
            for entry in (body.get("status") or {}).get("tags") or []:
                if (entry.get("items") or [{}])[0].get("image") == digest:
                    seen.at = time.monotonic()
                    seen.set()
                    return

    threading.Thread(target=run, daemon=True).start()
    time.sleep(0.3)  # the watch is open
    return seen


def notify(url: str, token: str, registry: str, repository: str, tag: str, digest: str) -> None:
    body = {
        "events": [
            {
                "action": "push",
                "target": {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "repository": repository,
                    "tag": tag,
                    "digest": digest,
                },
                "request": {"host": registry},
            }
        ]
    }
    request = urllib.request.Request(  # noqa: S310 - the operator on loopback
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        assert response.status == 202


def test_a_late_schedule_says_so_pushes_go_first_and_a_deleted_namespace_stops(
    cluster: Cluster,
    namespace: str,
    peer_namespace: str,
    operator_in_process: kopf.testing.KopfRunner,
    tmp_path: Path,
) -> None:
    url = f"http://127.0.0.1:{os.environ['HEADWATER_WEBHOOK_PORT']}/registry/notifications"
    token = os.environ["HEADWATER_REGISTRY_WEBHOOK_TOKEN"]
    with running_registry(tmp_path / "registry") as registry:
        first, _ = push_image(registry.address, "shop/web", "1.0", marker="p1")
        for i in range(STREAMS):
            push_image(registry.address, f"gone/s{i}", "1.0", marker=f"g{i}")
        cluster.apply(
            [
                stream(
                    f"s{i}", docker_tag("1.0", f"{registry.address}/gone/s{i}:1.0", scheduled=True)
                )
                for i in range(STREAMS)
            ],
            peer_namespace,
        )
        cluster.apply(
            stream("web", docker_tag("1.0", f"{registry.address}/shop/web:1.0")), namespace
        )
        eventually(
            "the first import", lambda: newest_image(cluster, namespace, "web", "1.0") == first
        )

        # 20 tags at 60 a minute, every 4 s: the streams say the interval really kept. The
        # condition turns False once the operator has seen 5 of the 20 streams, and gives
        # the full count at the stream's next check (CI once read it at 9 streams).
        def late() -> bool:
            met = condition(cluster, peer_namespace, "s0", "ImportScheduleMet")
            return met is not None and met["status"] == "False" and "20 s" in met["message"]

        eventually("ImportScheduleMet False, about every 20 s", late, timeout=90)
        met = condition(cluster, peer_namespace, "s0", "ImportScheduleMet")
        assert met is not None
        assert met["reason"] == "RateLimited"
        assert "about every 20 s" in met["message"], met
        assert registry.address in met["message"]

        # A push is imported at once though the host's schedule queue is full.
        second, _ = push_image(registry.address, "shop/web", "1.0", marker="p2")
        seen = watch_for(cluster, namespace, "web", second)
        pushed = time.monotonic()
        notify(url, token, registry.address, "shop/web", "1.0", second)
        assert seen.wait(10), "the pushed image never showed"
        took = seen.at - pushed
        print(f"push notified -> ImageStream status watched: {took * 1000:.0f} ms")
        assert took < 2.0

        # Deleting the namespace: once its streams are gone, nothing more is asked for them.
        cluster.kubectl("delete", "namespace", peer_namespace, "--wait=true", timeout=60)
        time.sleep(1)  # the last DELETED events reach the operator
        before = requests_for(registry.log(), "gone/")
        time.sleep(8)  # two intervals
        after = requests_for(registry.log(), "gone/")
        assert after == before, f"{after - before} requests for deleted streams"
