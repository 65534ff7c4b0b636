"""``lookupPolicy.local``: short names in pod templates resolve at admission (real API server).

The in-process operator serves the mutating webhook over TLS at the node
address; the API server calls it when workloads are created or updated.
"""

from __future__ import annotations

import json
from typing import Any

import kopf.testing
import pytest

from .helpers import Cluster, eventually, push_image
from .test_imagestream_imports import docker_tag, newest_image, stream

pytestmark = pytest.mark.e2e


def deployment(name: str, image: str) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
    }


def template_image(cluster: Cluster, namespace: str, name: str) -> str:
    obj = cluster.get_json(f"deployment/{name}", "-n", namespace)
    return str(obj["spec"]["template"]["spec"]["containers"][0]["image"])


def set_lookup(cluster: Cluster, namespace: str, stream_name: str, local: bool) -> None:
    cluster.kubectl(
        "patch",
        f"imagestream/{stream_name}",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"lookupPolicy": {"local": local}}}),
    )


def recreated_image(cluster: Cluster, namespace: str, name: str, image: str) -> str:
    """Create the Deployment afresh (admission runs again) and read back its image."""
    cluster.kubectl("delete", "deployment", name, "-n", namespace, "--ignore-not-found")
    cluster.apply(deployment(name, image), namespace)
    return template_image(cluster, namespace, name)


def test_short_names_resolve_in_workloads_of_the_namespace(
    cluster: Cluster, namespace: str, operator_in_process: kopf.testing.KopfRunner
) -> None:
    if not cluster.is_local:
        pytest.skip("the API server must reach this process: the local cluster only")
    registry = cluster.need_registry()
    digest, _ = push_image(registry, f"{namespace}/web", "1.0", marker="lookup")
    web = stream("web", docker_tag("1.0", f"{registry}/{namespace}/web:1.0"))
    web["spec"]["lookupPolicy"] = {"local": True}
    web["spec"]["tags"].append(
        {"name": "latest", "from": {"kind": "ImageStreamTag", "name": "web:1.0"}}
    )
    cluster.apply(web, namespace)
    eventually("the import", lambda: newest_image(cluster, namespace, "web", "latest") == digest)
    resolved = f"{registry}/{namespace}/web@{digest}"

    # The webhook configuration exists once the operator has started; the first
    # workloads may race it, so create until the name resolves.
    eventually(
        "web:latest resolved in a Deployment",
        lambda: recreated_image(cluster, namespace, "app", "web:latest") == resolved,
        timeout=60,
    )

    # What kopf wrote, as the operator hardens it: 5 s, never the system namespaces.
    for kind in ("mutatingwebhookconfiguration", "validatingwebhookconfiguration"):
        for webhook in cluster.get_json(kind, "headwater.dev")["webhooks"]:
            assert webhook["timeoutSeconds"] == 5, webhook["name"]
            excluded = webhook["namespaceSelector"]["matchExpressions"][0]
            assert excluded["key"] == "kubernetes.io/metadata.name"
            assert excluded["operator"] == "NotIn"
            assert {"kube-system", "headwater-system"} <= set(excluded["values"])

    cluster.apply(deployment("pinned", "web"), namespace)  # no tag: latest
    assert template_image(cluster, namespace, "pinned") == resolved
    cluster.apply(deployment("other", "busybox:1.36"), namespace)  # not a stream
    assert template_image(cluster, namespace, "other") == "busybox:1.36"
    result = cluster.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps(deployment("missing", "web:nope")),
    )
    assert template_image(cluster, namespace, "missing") == "web:nope"
    assert "no image yet" in result.stderr  # the API server relays the webhook's warning

    # Without lookupPolicy.local nothing resolves.
    set_lookup(cluster, namespace, "web", local=False)
    eventually(
        "lookup off",
        lambda: recreated_image(cluster, namespace, "late", "web:latest") == "web:latest",
        timeout=30,
    )
