"""The namespaced install (deploy/namespaced, hack/gen_namespaced.py) on the real cluster.

The operator is installed for two namespaces with RoleBindings only; it
imports there, leaves a third namespace alone, and its service account may not
read that namespace's Secrets, nor list Secrets anywhere. At the end the
cluster-wide install is put back (scaled to zero, as ``operator_in_cluster``
leaves it).
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import hack_scripts

from .helpers import (
    OPERATOR_NAMESPACE,
    Cluster,
    eventually,
    push_image,
    run_installed_operator,
    stop_installed_operator,
)
from .test_operator import operator_may, operator_pods, summary_condition

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def _apply(cluster: Cluster, docs: list[dict[str, Any]]) -> None:
    cluster.kubectl(
        "apply", "--server-side", "--force-conflicts", "-f", "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}),
    )  # fmt: skip


def _rendered(cluster: Cluster, docs: list[dict[str, Any]], image: str) -> list[dict[str, Any]]:
    render = hack_scripts.load("render_install")
    out: list[dict[str, Any]] = render.render(
        docs,
        image=image,
        registry=cluster.registry,
        insecure=True,
        builder_image=cluster.env.get("HEADWATER_BUILDER_IMAGE"),
        kaniko_image=cluster.env.get("HEADWATER_KANIKO_IMAGE"),
    )
    return out


@pytest.fixture(scope="module")
def namespaced_operator(
    cluster: Cluster, operator_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[tuple[str, str], str]]:
    suffix = uuid.uuid4().hex[:6]
    watched = (f"hw-ns-a-{suffix}", f"hw-ns-b-{suffix}")
    outside = f"hw-ns-c-{suffix}"
    for name in (*watched, outside):
        cluster.kubectl("create", "namespace", name)
    overlay = tmp_path_factory.mktemp("namespaced") / "overlay"
    assert hack_scripts.load("gen_namespaced").main(
        ["--namespaces", ",".join(watched), "--dir", str(overlay)]
    ) == 0  # fmt: skip
    built = cluster.kubectl("kustomize", str(overlay)).stdout
    docs = _rendered(cluster, [d for d in yaml.safe_load_all(built) if d], operator_image)
    # Over a cluster-wide install: apply never deletes its ClusterRoleBinding.
    cluster.kubectl("delete", "clusterrolebinding", "headwater-operator", "--ignore-not-found")
    try:
        _apply(cluster, docs)
        run_installed_operator(cluster)
        yield watched, outside
    finally:
        stop_installed_operator(cluster)
        # Back to the cluster-wide install, not running.
        render = hack_scripts.load("render_install")
        restored = _rendered(cluster, render.load(), operator_image)
        for doc in restored:
            if doc["kind"] == "Deployment":
                doc["spec"]["replicas"] = 0
        _apply(cluster, restored)
        cluster.kubectl(
            "delete", "clusterrolebinding,clusterrole", "headwater-operator-cluster",
            "--ignore-not-found", check=False,
        )  # fmt: skip
        for name in (*watched, outside):
            cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def stream(registry: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "image.headwater.dev/v1",
        "kind": "ImageStream",
        "metadata": {"name": "web"},
        "spec": {
            "tags": [
                {
                    "name": "1.0",
                    "from": {"kind": "DockerImage", "name": f"{registry}/{namespace}/web:1.0"},
                    "importPolicy": {"insecure": True},
                }
            ]
        },
    }


def imported(cluster: Cluster, namespace: str, digest: str) -> bool:
    obj = cluster.get_json("imagestream/web", "-n", namespace)
    tags = (obj.get("status") or {}).get("tags") or []
    return bool(tags and tags[0]["items"] and tags[0]["items"][0]["image"] == digest)


def test_namespaced_install(
    cluster: Cluster, namespaced_operator: tuple[tuple[str, str], str]
) -> None:
    watched, outside = namespaced_operator
    registry = cluster.need_registry()
    digests = {}
    for namespace in (*watched, outside):
        digests[namespace], _ = push_image(registry, f"{namespace}/web", "1.0", marker=namespace)
        cluster.apply(stream(registry, namespace), namespace)
    for namespace in watched:
        eventually(
            f"the import in {namespace}",
            functools.partial(imported, cluster, namespace, digests[namespace]),
            timeout=120,
        )
    # Both watched namespaces are done: the third was never looked at.
    other = cluster.get_json("imagestream/web", "-n", outside)
    assert not (other.get("status") or {}).get("tags")
    assert summary_condition(other, "Ready") is None

    # The operator's account, as the API server sees it.
    first = watched[0]
    assert not operator_may(cluster, "get", "secrets", "-n", outside)
    assert not operator_may(cluster, "list", "secrets", "-A")
    assert not operator_may(cluster, "list", "pods", "-A")
    assert not operator_may(cluster, "list", "imagestreams.image.headwater.dev", "-A")
    assert not operator_may(cluster, "patch", "imagestreams.image.headwater.dev", "-n", outside)
    assert not operator_may(cluster, "list", "namespaces")
    assert not operator_may(cluster, "list", "customresourcedefinitions")
    assert operator_may(cluster, "get", "secrets", "-n", first)
    assert not operator_may(cluster, "list", "secrets", "-n", first)
    assert operator_may(cluster, "watch", "imagestreams.image.headwater.dev", "-n", first)
    assert operator_may(cluster, "create", "subjectaccessreviews.authorization.k8s.io")
    assert operator_may(cluster, "patch", "mutatingwebhookconfigurations/headwater.dev")

    # ...and it ran with exactly that: no refusal in its replicas' logs.
    for pod in operator_pods(cluster, OPERATOR_NAMESPACE):
        logs = cluster.kubectl("logs", pod, "-n", OPERATOR_NAMESPACE).stdout
        assert "Not enough" not in logs, logs[-3000:]
        assert "is forbidden" not in logs, logs[-3000:]
