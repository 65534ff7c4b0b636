"""ImageStream imports against the real registry and API server, operator in-process.

Images are pushed to the local registry through the distribution API (tiny,
one layer each, a marker per digest); the operator resolves them, records
history and conditions, follows aliases and re-imports on schedule.
"""

from __future__ import annotations

import json
import time
from typing import Any

import kopf.testing
import pytest

from .conftest import IMPORT_INTERVAL_SECONDS
from .helpers import (
    Cluster,
    eventually,
    push_image,
    push_index,
    registry_digest,
    wait_until_allowed,
)

pytestmark = pytest.mark.e2e


def stream(name: str, *tags: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "image.headwater.dev/v1",
        "kind": "ImageStream",
        "metadata": {"name": name},
        "spec": {"tags": list(tags)},
    }


def docker_tag(name: str, image: str, **policy: Any) -> dict[str, Any]:
    return {
        "name": name,
        "from": {"kind": "DockerImage", "name": image},
        "importPolicy": {"insecure": True, **policy},
    }


def status_tag(cluster: Cluster, namespace: str, name: str, tag: str) -> dict[str, Any]:
    obj = cluster.get_json(f"imagestream/{name}", "-n", namespace)
    for entry in (obj.get("status") or {}).get("tags") or []:
        if entry["tag"] == tag:
            return dict(entry)
    return {}


def newest_image(cluster: Cluster, namespace: str, name: str, tag: str) -> str | None:
    items = status_tag(cluster, namespace, name, tag).get("items") or []
    return str(items[0]["image"]) if items else None


def import_condition(cluster: Cluster, namespace: str, name: str, tag: str) -> dict[str, Any]:
    for condition in status_tag(cluster, namespace, name, tag).get("conditions") or []:
        if condition["type"] == "ImportSuccess":
            return dict(condition)
    return {}


def ready(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    obj = cluster.get_json(f"imagestream/{name}", "-n", namespace)
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition["type"] == "Ready":
            return dict(condition)
    return {}


def test_import_records_the_registry_digest_and_follows_a_moved_tag_on_schedule(
    cluster: Cluster, namespace: str, operator_in_process: kopf.testing.KopfRunner
) -> None:
    registry = cluster.need_registry()
    repo = f"{namespace}/app"
    first, _ = push_image(registry, repo, "1.0", marker="first")
    assert first == registry_digest(registry, repo, "1.0")
    cluster.apply(
        stream("app", docker_tag("1.0", f"{registry}/{repo}:1.0", scheduled=True)), namespace
    )
    eventually("the first import", lambda: newest_image(cluster, namespace, "app", "1.0") == first)
    entry = status_tag(cluster, namespace, "app", "1.0")
    assert entry["items"][0]["dockerImageReference"] == f"{registry}/{repo}@{first}"
    assert import_condition(cluster, namespace, "app", "1.0")["status"] == "True"
    eventually("Ready", lambda: ready(cluster, namespace, "app").get("status") == "True")
    obj = cluster.get_json("imagestream/app", "-n", namespace)
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
    assert obj["status"]["dockerImageRepository"] == f"{registry}/{namespace}/app"

    # Scheduled checks that find the same digest write nothing: the object
    # stays at its resourceVersion across several intervals.
    version = obj["metadata"]["resourceVersion"]
    time.sleep(3 * IMPORT_INTERVAL_SECONDS)
    again = cluster.get_json("imagestream/app", "-n", namespace)
    assert again["metadata"]["resourceVersion"] == version

    second, _ = push_image(registry, repo, "1.0", marker="second")
    eventually(
        "the scheduled import to see the new digest",
        lambda: newest_image(cluster, namespace, "app", "1.0") == second,
        timeout=30,
    )
    items = status_tag(cluster, namespace, "app", "1.0")["items"]
    assert [i["image"] for i in items] == [second, first]  # newest first, history kept


def test_failures_keep_history_and_recover(
    cluster: Cluster, namespace: str, operator_in_process: kopf.testing.KopfRunner
) -> None:
    registry = cluster.need_registry()
    repo = f"{namespace}/app"
    digest, _ = push_image(registry, repo, "1.0", marker="ok")
    cluster.apply(
        stream(
            "app",
            docker_tag("1.0", f"{registry}/{repo}:1.0"),
            docker_tag("missing", f"{registry}/{repo}:nope"),
            docker_tag("down", "127.0.0.1:9/nothing/here:1"),
        ),
        namespace,
    )
    eventually("the good tag", lambda: newest_image(cluster, namespace, "app", "1.0") == digest)
    eventually(
        "NotFound on the missing tag",
        lambda: import_condition(cluster, namespace, "app", "missing").get("reason") == "NotFound",
    )
    eventually(
        "Unreachable on the closed port",
        lambda: import_condition(cluster, namespace, "app", "down").get("reason") == "Unreachable",
    )
    condition = ready(cluster, namespace, "app")
    assert condition["status"] == "False"
    assert condition["reason"] == "ImportFailed"
    assert "missing (NotFound)" in condition["message"]

    # The tag's source moves to a broken reference: the failure is recorded,
    # the history stays; pointing it back recovers.
    cluster.kubectl(
        "patch",
        "imagestream/app",
        "-n",
        namespace,
        "--type=json",
        "-p",
        json.dumps(
            [
                {
                    "op": "replace",
                    "path": "/spec/tags/0/from/name",
                    "value": f"{registry}/{repo}:gone",
                }
            ]
        ),
    )
    eventually(
        "the failure on the moved tag",
        lambda: import_condition(cluster, namespace, "app", "1.0").get("status") == "False",
    )
    assert newest_image(cluster, namespace, "app", "1.0") == digest
    push_image(registry, repo, "gone", marker="ok")  # same content: same digest
    eventually(
        "recovery by retry",
        lambda: import_condition(cluster, namespace, "app", "1.0").get("status") == "True",
        timeout=60,
    )
    assert [i["image"] for i in status_tag(cluster, namespace, "app", "1.0")["items"]] == [digest]

    def reasons() -> set[str]:
        events = cluster.get_json(
            "events", "-n", namespace, "--field-selector", "involvedObject.name=app"
        )["items"]
        return {e["reason"] for e in events if e["involvedObject"]["kind"] == "ImageStream"}

    eventually(
        "Events for the transitions",
        lambda: {"TagMoved", "ImportFailed", "ImportRecovered"} <= reasons(),
    )


def test_aliases_follow_their_source_in_and_across_namespaces(
    cluster: Cluster, namespace: str, operator_in_process: kopf.testing.KopfRunner
) -> None:
    registry = cluster.need_registry()
    repo = f"{namespace}/app"
    first, _ = push_image(registry, repo, "1.0", marker="a1")
    cluster.apply(
        stream(
            "app",
            docker_tag("1.0", f"{registry}/{repo}:1.0"),
            {"name": "latest", "from": {"kind": "ImageStreamTag", "name": "app:1.0"}},
            {"name": "stable", "from": {"kind": "ImageStreamTag", "name": "app:latest"}},
        ),
        namespace,
    )
    eventually(
        "the alias chain", lambda: newest_image(cluster, namespace, "app", "stable") == first
    )
    # A second stream in the same namespace pins the image by digest.
    cluster.apply(
        stream(
            "pinned",
            {"name": "v1", "from": {"kind": "ImageStreamImage", "name": f"app@{first}"}},
            {"name": "follow", "from": {"kind": "ImageStreamTag", "name": "app:latest"}},
        ),
        namespace,
    )
    eventually("the pin", lambda: newest_image(cluster, namespace, "pinned", "v1") == first)

    second, _ = push_image(registry, repo, "1.0", marker="a2")
    cluster.kubectl(
        "annotate",
        "imagestream/app",
        "-n",
        namespace,
        "image.headwater.dev/import-requested=1.0",
        "--overwrite",
    )
    eventually(
        "the import request", lambda: newest_image(cluster, namespace, "app", "1.0") == second
    )
    eventually(
        "the alias to move", lambda: newest_image(cluster, namespace, "app", "stable") == second
    )
    eventually(
        "the other stream's alias to move",
        lambda: newest_image(cluster, namespace, "pinned", "follow") == second,
    )
    assert newest_image(cluster, namespace, "pinned", "v1") == first
    # The request is consumed after the status is written (and while the other stream's
    # alias is followed): not necessarily before that alias moved.
    eventually(
        "the import request to be consumed",
        lambda: (
            "image.headwater.dev/import-requested"
            not in cluster.get_json("imagestream/app", "-n", namespace)["metadata"].get(
                "annotations", {}
            )
        ),
    )


def test_preserve_original_keeps_the_index_and_legacy_picks_amd64(
    cluster: Cluster, namespace: str, operator_in_process: kopf.testing.KopfRunner
) -> None:
    registry = cluster.need_registry()
    repo = f"{namespace}/multi"
    amd64, amd64_size = push_image(registry, repo, "amd64", marker="x86", architecture="amd64")
    arm64, arm64_size = push_image(registry, repo, "arm64", marker="arm", architecture="arm64")
    index = push_index(
        registry,
        repo,
        "1.0",
        [(amd64, amd64_size, "linux", "amd64"), (arm64, arm64_size, "linux", "arm64")],
    )
    cluster.apply(
        stream(
            "multi",
            docker_tag("legacy", f"{registry}/{repo}:1.0"),
            docker_tag("original", f"{registry}/{repo}:1.0", importMode="PreserveOriginal"),
        ),
        namespace,
    )
    eventually("Legacy", lambda: newest_image(cluster, namespace, "multi", "legacy") == amd64)
    eventually(
        "PreserveOriginal", lambda: newest_image(cluster, namespace, "multi", "original") == index
    )
    item = status_tag(cluster, namespace, "multi", "original")["items"][0]
    assert {(p["architecture"], p["digest"]) for p in item["platforms"]} == {
        ("amd64", amd64),
        ("arm64", arm64),
    }


def test_cross_namespace_alias_needs_a_grant_for_the_namespace_service_accounts(
    cluster: Cluster,
    namespace: str,
    peer_namespace: str,
    operator_in_process: kopf.testing.KopfRunner,
) -> None:
    registry = cluster.need_registry()
    repo = f"{namespace}/app"
    first, _ = push_image(registry, repo, "1.0", marker="x1")
    cluster.apply(stream("app", docker_tag("1.0", f"{registry}/{repo}:1.0")), namespace)
    eventually("the source tag", lambda: newest_image(cluster, namespace, "app", "1.0") == first)
    promoted = {
        "name": "prod",
        "from": {"kind": "ImageStreamTag", "name": "app:1.0", "namespace": namespace},
    }
    cluster.apply(stream("app", promoted), peer_namespace)
    eventually(
        "Forbidden without a grant",
        lambda: (
            import_condition(cluster, peer_namespace, "app", "prod").get("reason") == "Forbidden"
        ),
    )
    assert newest_image(cluster, peer_namespace, "app", "prod") is None
    # OpenShift's image-puller model: the peer's service accounts may read the source's streams.
    cluster.kubectl(
        "create",
        "rolebinding",
        "peer-pulls",
        "-n",
        namespace,
        "--clusterrole=headwater-view",
        f"--group=system:serviceaccounts:{peer_namespace}",
    )
    eventually(
        "the alias after the grant (retried, no event needed)",
        lambda: newest_image(cluster, peer_namespace, "app", "prod") == first,
        timeout=60,
    )
    second, _ = push_image(registry, repo, "1.0", marker="x2")
    cluster.kubectl(
        "annotate",
        "imagestream/app",
        "-n",
        namespace,
        "image.headwater.dev/import-requested=*",
        "--overwrite",
    )
    eventually(
        "the promoted tag to follow its source across namespaces",
        lambda: newest_image(cluster, peer_namespace, "app", "prod") == second,
    )


def test_admission_refuses_a_reference_the_requester_may_not_read(
    cluster: Cluster,
    namespace: str,
    peer_namespace: str,
    operator_in_process: kopf.testing.KopfRunner,
) -> None:
    if not cluster.is_local:
        pytest.skip("the API server must reach this process: the local cluster only")
    # A developer who may edit the peer namespace only (impersonated).
    developer = f"system:serviceaccount:{peer_namespace}:developer"
    cluster.kubectl(
        "create",
        "rolebinding",
        "developer-edit",
        "-n",
        peer_namespace,
        "--clusterrole=edit",
        f"--user={developer}",
    )
    cluster.apply(stream("app"), namespace)
    promoted = stream(
        "app",
        {
            "name": "prod",
            "from": {"kind": "ImageStreamTag", "name": "app:1.0", "namespace": namespace},
        },
    )
    as_developer = ["--as", developer, "apply", "-n", peer_namespace, "-f", "-"]

    def refused() -> bool:
        result = cluster.kubectl(*as_developer, input=json.dumps(promoted), check=False)
        return result.returncode != 0 and "may not get ImageStreams" in result.stderr

    eventually("the webhook to refuse the reference", refused, timeout=60)
    result = cluster.kubectl(*as_developer, input=json.dumps(promoted), check=False)
    assert f"namespace {namespace}" in result.stderr
    assert "spec.tags[prod].from.namespace" in result.stderr
    # Granted read access to the source namespace, the same request is admitted.
    cluster.kubectl(
        "create",
        "rolebinding",
        "developer-view",
        "-n",
        namespace,
        "--clusterrole=headwater-view",
        f"--user={developer}",
    )
    wait_until_allowed(
        cluster, "get", "imagestreams.image.headwater.dev", "-n", namespace, "--as", developer,
    )  # fmt: skip
    cluster.kubectl(*as_developer, input=json.dumps(promoted))
