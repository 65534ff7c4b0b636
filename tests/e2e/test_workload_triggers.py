"""Workload image triggers on the real cluster: the annotation rolls workloads to a tag's image."""

from __future__ import annotations

import json
import time
from typing import Any

import kopf.testing
import pytest

from .helpers import (
    MANIFEST_TYPES,
    Cluster,
    eventually,
    push_blob,
    put_manifest,
    registry_request,
)

pytestmark = pytest.mark.e2e

OPENSHIFT_KEY = "image.openshift.io/triggers"
HEADWATER_KEY = "image.headwater.dev/triggers"
MANAGER = "headwater-triggers"


# --- images that run: busybox with a marker label, so each marker is a new digest ---------


def push_runnable(cluster: Cluster, repository: str, tag: str, marker: str) -> str:
    """Push busybox, relabelled with ``marker``, to ``<registry>/<repository>:<tag>``; its digest.

    The layers are mounted from the busybox repository; only the config (and so
    the manifest) differs, so the image runs and each marker is a new digest.
    """
    registry = cluster.need_registry()
    source = cluster.image("busybox")
    host, _, rest = source.partition("/")
    source_repo, _, source_tag = rest.rpartition(":")
    assert host == registry, (source, registry)
    with registry_request(
        f"http://{registry}/v2/{source_repo}/manifests/{source_tag}",
        headers={"Accept": MANIFEST_TYPES},
    ) as resp:
        manifest = json.loads(resp.read())
        media_type = resp.headers["Content-Type"]
    assert "layers" in manifest, f"busybox is expected to be a single-platform image: {manifest}"
    with registry_request(
        f"http://{registry}/v2/{source_repo}/blobs/{manifest['config']['digest']}"
    ) as resp:
        config = json.loads(resp.read())
    config.setdefault("config", {}).setdefault("Labels", {})["marker"] = marker
    config_bytes = json.dumps(config).encode()
    for layer in manifest["layers"]:
        with registry_request(
            f"http://{registry}/v2/{repository}/blobs/uploads/"
            f"?mount={layer['digest']}&from={source_repo}",
            "POST",
        ) as resp:
            assert resp.status == 201, f"blob mount answered {resp.status}"
    config_digest = push_blob(registry, repository, config_bytes)
    manifest["config"] = {**manifest["config"], "digest": config_digest, "size": len(config_bytes)}
    return put_manifest(registry, repository, tag, media_type, json.dumps(manifest).encode())


# --- objects ----------------------------------------------------------------------------


def stream(cluster: Cluster, namespace: str, name: str = "web") -> str:
    """An ImageStream whose ``latest`` imports ``<registry>/<ns>/<name>:v``; that repository."""
    registry = cluster.need_registry()
    repository = f"{namespace}/{name}"
    cluster.apply(
        {
            "apiVersion": "image.headwater.dev/v1",
            "kind": "ImageStream",
            "metadata": {"name": name},
            "spec": {
                "tags": [
                    {
                        "name": "latest",
                        "from": {"kind": "DockerImage", "name": f"{registry}/{repository}:v"},
                        "importPolicy": {"insecure": True},
                    }
                ]
            },
        },
        namespace,
    )
    return repository


def triggers_value(*entries: tuple[str, str], paused: Any = None) -> str:
    found = []
    for name, path in entries:
        entry: dict[str, Any] = {
            "from": {"kind": "ImageStreamTag", "name": name},
            "fieldPath": path,
        }
        if paused is not None:
            entry["paused"] = paused
        found.append(entry)
    return json.dumps(found)


WEB_PATH = 'spec.template.spec.containers[?(@.name=="web")].image'


def pod_spec(cluster: Cluster, restart: str = "Always") -> dict[str, Any]:
    return {
        "terminationGracePeriodSeconds": 1,
        "automountServiceAccountToken": False,
        "restartPolicy": restart,
        "containers": [
            {"name": "web", "image": cluster.image("busybox"), "command": ["sleep", "3600"]}
        ],
    }


def deployment(cluster: Cluster, name: str, annotations: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": pod_spec(cluster)},
        },
    }


def image_of(cluster: Cluster, namespace: str, ref: str, path: tuple[str, ...]) -> str:
    obj = cluster.get_json(ref, "-n", namespace)
    node: Any = obj
    for key in path:
        node = node[key]
    return str(node["containers"][0]["image"])


DEPLOYMENT_SPEC = ("spec", "template", "spec")


def stream_image(cluster: Cluster, namespace: str, name: str = "web") -> str | None:
    status = cluster.get_json(f"is/{name}", "-n", namespace).get("status") or {}
    for entry in status.get("tags") or []:
        if entry.get("tag") == "latest" and entry.get("items"):
            return str(entry["items"][0]["image"])
    return None


def request_import(cluster: Cluster, namespace: str, name: str = "web") -> None:
    cluster.kubectl(
        "annotate", f"is/{name}", "-n", namespace,
        "image.headwater.dev/import-requested=*", "--overwrite",
    )  # fmt: skip


def replicasets(cluster: Cluster, namespace: str, app: str) -> list[str]:
    items = cluster.get_json("rs", "-n", namespace, "-l", f"app={app}")["items"]
    return sorted(rs["metadata"]["name"] for rs in items)


def rollout(cluster: Cluster, namespace: str, ref: str) -> None:
    cluster.kubectl("rollout", "status", ref, "-n", namespace, "--timeout=150s", timeout=170)


def running_image_ids(cluster: Cluster, namespace: str, app: str) -> list[str]:
    pods = cluster.get_json("pods", "-n", namespace, "-l", f"app={app}")["items"]
    return [
        str(status.get("imageID") or "")
        for pod in pods
        if not pod["metadata"].get("deletionTimestamp")
        for status in (pod.get("status") or {}).get("containerStatuses") or []
        if (status.get("state") or {}).get("running")
    ]


def events(cluster: Cluster, namespace: str, name: str, reason: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = cluster.get_json(
        "events", "-n", namespace,
        "--field-selector", f"involvedObject.name={name},reason={reason}",
    )["items"]  # fmt: skip
    return found


def image_owner(obj: dict[str, Any], path: tuple[str, ...], container: str) -> list[str]:
    """The managers owning ``container``'s image field."""
    owners = []
    for entry in obj["metadata"].get("managedFields") or []:
        node: Any = entry.get("fieldsV1") or {}
        for key in path:
            node = node.get(f"f:{key}") or {}
        item = (node.get("f:containers") or {}).get(f'k:{{"name":"{container}"}}') or {}
        if "f:image" in item:
            owners.append(f"{entry['manager']}/{entry['operation']}")
    return owners


# --- tests ------------------------------------------------------------------------------


def test_deployment_follows_its_tag_by_digest(
    cluster: Cluster, namespace: str, operator_in_process: kopf.testing.KopfRunner
) -> None:
    registry = cluster.need_registry()
    repository = stream(cluster, namespace)
    first = push_runnable(cluster, repository, "v", "one")
    eventually("the first import", lambda: stream_image(cluster, namespace) == first, 60)
    cluster.apply(
        deployment(cluster, "web", {OPENSHIFT_KEY: triggers_value(("web:latest", WEB_PATH))}),
        namespace,
    )
    pinned = f"{registry}/{repository}@{first}"
    eventually(
        "the Deployment pinned to the tag's digest",
        lambda: image_of(cluster, namespace, "deploy/web", DEPLOYMENT_SPEC) == pinned,
        60,
    )
    rollout(cluster, namespace, "deploy/web")
    eventually(
        "a pod running that digest",
        lambda: any(first in i for i in running_image_ids(cluster, namespace, "web")),
        90,
    )
    obj = cluster.get_json("deploy/web", "-n", namespace, "--show-managed-fields")
    assert image_owner(obj, DEPLOYMENT_SPEC, "web") == [f"{MANAGER}/Apply"]
    [ours] = [m for m in obj["metadata"]["managedFields"] if m["manager"] == MANAGER]
    # Only the image (and the list key that locates it) is Headwater's.
    assert ours["fieldsV1"] == {
        "f:spec": {
            "f:template": {
                "f:spec": {
                    "f:containers": {'k:{"name":"web"}': {".": {}, "f:image": {}, "f:name": {}}}
                }
            }
        }
    }
    # One write, one Event: the watch events queued before the write do not repeat it.
    [triggered] = events(cluster, namespace, "web", "ImageTriggered")
    assert first in triggered["message"]

    # Converged: no more writes (no rollout loop).
    eventually(
        "the Deployment's status to settle",
        lambda: _settled(cluster, namespace, "web"),
        60,
    )
    settled = cluster.get_json("deploy/web", "-n", namespace, "--show-managed-fields")
    time.sleep(10)
    idle = cluster.get_json("deploy/web", "-n", namespace, "--show-managed-fields")
    assert idle["metadata"]["resourceVersion"] == settled["metadata"]["resourceVersion"]

    # The tag moves: patched to the new digest, exactly one new ReplicaSet.
    before = replicasets(cluster, namespace, "web")
    second = push_runnable(cluster, repository, "v", "two")
    request_import(cluster, namespace)
    eventually(
        "the Deployment at the new digest",
        lambda: (
            image_of(cluster, namespace, "deploy/web", DEPLOYMENT_SPEC)
            == f"{registry}/{repository}@{second}"
        ),
        60,
    )
    rollout(cluster, namespace, "deploy/web")
    time.sleep(3)
    after = replicasets(cluster, namespace, "web")
    assert len(after) == len(before) + 1, (before, after)
    assert len(events(cluster, namespace, "web", "ImageTriggered")) == 2

    # A manual edit is put back while the trigger is not paused.
    cluster.kubectl(
        "set", "image", "deploy/web", f"web={cluster.image('busybox')}", "-n", namespace
    )
    eventually(
        "the manual edit put back",
        lambda: (
            image_of(cluster, namespace, "deploy/web", DEPLOYMENT_SPEC)
            == f"{registry}/{repository}@{second}"
        ),
        60,
    )
    assert image_owner(
        cluster.get_json("deploy/web", "-n", namespace, "--show-managed-fields"),
        DEPLOYMENT_SPEC,
        "web",
    ) == [f"{MANAGER}/Apply"]

    # Paused: a move changes nothing; unpaused, the pending move is applied.
    cluster.kubectl(
        "annotate", "deploy/web", "-n", namespace, "--overwrite",
        f"{OPENSHIFT_KEY}={triggers_value(('web:latest', WEB_PATH), paused='true')}",
    )  # fmt: skip
    third = push_runnable(cluster, repository, "v", "three")
    request_import(cluster, namespace)
    eventually("the third import", lambda: stream_image(cluster, namespace) == third, 60)
    time.sleep(3)
    assert image_of(cluster, namespace, "deploy/web", DEPLOYMENT_SPEC) == (
        f"{registry}/{repository}@{second}"
    )
    cluster.kubectl(
        "annotate", "deploy/web", "-n", namespace, "--overwrite",
        f"{OPENSHIFT_KEY}={triggers_value(('web:latest', WEB_PATH), paused=False)}",
    )  # fmt: skip
    eventually(
        "the unpaused trigger applied",
        lambda: (
            image_of(cluster, namespace, "deploy/web", DEPLOYMENT_SPEC)
            == f"{registry}/{repository}@{third}"
        ),
        60,
    )


def _settled(cluster: Cluster, namespace: str, name: str) -> bool:
    obj = cluster.get_json(f"deploy/{name}", "-n", namespace)
    status = obj.get("status") or {}
    return bool(
        status.get("observedGeneration") == obj["metadata"]["generation"]
        and status.get("updatedReplicas") == 1
        and status.get("readyReplicas") == 1
        and status.get("availableReplicas") == 1
        and not status.get("unavailableReplicas")
        and not status.get("terminatingReplicas")  # the old pod's end is one more status write
        and status.get("replicas") == 1
    )


def test_invalid_annotation_is_a_warning_event_once(
    cluster: Cluster, namespace: str, operator_in_process: kopf.testing.KopfRunner
) -> None:
    stream(cluster, namespace)
    bad = deployment(cluster, "bad", {OPENSHIFT_KEY: "[{"})
    bad["spec"]["replicas"] = 0
    cluster.apply(bad, namespace)
    eventually(
        "an InvalidTriggerAnnotation Event",
        lambda: bool(events(cluster, namespace, "bad", "InvalidTriggerAnnotation")),
        60,
    )
    [event] = events(cluster, namespace, "bad", "InvalidTriggerAnnotation")
    assert event["type"] == "Warning"
    assert "not valid JSON" in event["message"]
    # More watch events with the same value: no more Events.
    cluster.kubectl("label", "deploy/bad", "-n", namespace, "touched=1")
    time.sleep(3)
    assert len(events(cluster, namespace, "bad", "InvalidTriggerAnnotation")) == 1
    # A field path the kind does not have.
    wrong = triggers_value(("web:latest", "spec.containers[0].image"))
    cluster.kubectl(
        "annotate", "deploy/bad", "-n", namespace, "--overwrite", f"{OPENSHIFT_KEY}={wrong}"
    )
    eventually(
        "a second Event for the new value",
        lambda: len(events(cluster, namespace, "bad", "InvalidTriggerAnnotation")) == 2,
        60,
    )


def test_statefulset_and_cronjob_with_headwaters_key(
    cluster: Cluster, namespace: str, operator_in_process: kopf.testing.KopfRunner
) -> None:
    registry = cluster.need_registry()
    repository = stream(cluster, namespace)
    digest = push_runnable(cluster, repository, "v", "sts")
    eventually("the import", lambda: stream_image(cluster, namespace) == digest, 60)
    pinned = f"{registry}/{repository}@{digest}"
    statefulset: dict[str, object] = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {
            "name": "db",
            "annotations": {
                HEADWATER_KEY: triggers_value(
                    ("web:latest", "spec.template.spec.containers[0].image")
                )
            },
        },
        "spec": {
            "replicas": 0,
            "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}}, "spec": pod_spec(cluster)},
        },
    }
    cron_path = 'spec.jobTemplate.spec.template.spec.containers[?(@.name=="web")].image'
    cronjob: dict[str, object] = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {
            "name": "nightly",
            "annotations": {HEADWATER_KEY: triggers_value(("web:latest", cron_path))},
        },
        "spec": {
            "schedule": "0 0 1 1 *",
            "suspend": True,
            "jobTemplate": {"spec": {"template": {"spec": pod_spec(cluster, "Never")}}},
        },
    }
    cluster.apply([statefulset, cronjob], namespace)
    eventually(
        "the StatefulSet pinned",
        lambda: image_of(cluster, namespace, "statefulset/db", DEPLOYMENT_SPEC) == pinned,
        60,
    )
    cron_spec = ("spec", "jobTemplate", "spec", "template", "spec")
    eventually(
        "the CronJob pinned",
        lambda: image_of(cluster, namespace, "cronjob/nightly", cron_spec) == pinned,
        60,
    )
    assert image_owner(
        cluster.get_json("cronjob/nightly", "-n", namespace, "--show-managed-fields"),
        cron_spec,
        "web",
    ) == [f"{MANAGER}/Apply"]
