"""ConfigChange and ImageChange triggers on the real cluster."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import kopf.testing
import pytest

from .helpers import (
    Cluster,
    build_of_request,
    buildah_build_and_push,
    builds_of,
    docker_bc,
    eventually,
    imagestream,
    wait_for_phase,
)

pytestmark = pytest.mark.e2e


def settled_builds(cluster: Cluster, namespace: str, bc: str, count: int) -> list[dict[str, Any]]:
    """Wait for exactly ``count`` builds, then make sure no more appear for a while."""
    eventually(
        f"{count} build(s) of {bc}", lambda: len(builds_of(cluster, namespace, bc)) >= count, 90
    )
    time.sleep(3)
    found = builds_of(cluster, namespace, bc)
    assert len(found) == count, [b["metadata"]["name"] for b in found]
    return found


def test_config_change_builds_once_on_creation_and_on_edits_only_when_asked(
    cluster: Cluster, namespace: str, operator_in_process: kopf.testing.KopfRunner
) -> None:
    busybox = cluster.image("busybox")
    bc = docker_bc(
        "cc",
        {"type": "Dockerfile", "dockerfile": f"FROM {busybox}\nRUN echo one\n"},
        None,
        triggers=[{"type": "ConfigChange"}],
    )
    cluster.apply(bc, namespace)
    [first] = settled_builds(cluster, namespace, "cc", 1)
    assert first["spec"]["triggeredBy"][0]["message"] == "Build configuration change"
    # OpenShift's rule: an edit does not rebuild.
    patch = json.dumps({"spec": {"source": {"dockerfile": f"FROM {busybox}\nRUN echo two\n"}}})
    cluster.kubectl("patch", "bc/cc", "-n", namespace, "--type=merge", "-p", patch)
    settled_builds(cluster, namespace, "cc", 1)
    # Opted in: each spec change builds once; status or metadata changes do not.
    cluster.kubectl(
        "annotate", "bc/cc", "-n", namespace, "build.headwater.dev/rebuild-on-config-change=true"
    )
    settled_builds(cluster, namespace, "cc", 1)
    patch = json.dumps({"spec": {"source": {"dockerfile": f"FROM {busybox}\nRUN echo three\n"}}})
    cluster.kubectl("patch", "bc/cc", "-n", namespace, "--type=merge", "-p", patch)
    second = settled_builds(cluster, namespace, "cc", 2)[1]
    assert "three" in second["spec"]["source"]["dockerfile"]
    cluster.kubectl("label", "bc/cc", "-n", namespace, "team=web")
    settled_builds(cluster, namespace, "cc", 2)


def push_base(tmp_path: Path, cluster: Cluster, repository: str, marker: str) -> str:
    context = tmp_path / f"base-{marker}"
    context.mkdir()
    (context / "Dockerfile").write_text(
        f"FROM {cluster.image('busybox')}\nRUN echo {marker} > /base.txt\n"
    )
    return buildah_build_and_push(tmp_path / f"buildah-{marker}", context, repository)


def request_import(cluster: Cluster, namespace: str, stream: str) -> None:
    cluster.kubectl(
        "annotate", f"is/{stream}", "-n", namespace,
        "image.headwater.dev/import-requested=*", "--overwrite",
    )  # fmt: skip


def test_image_change_builds_once_per_move_and_respects_paused(
    cluster: Cluster, namespace: str, tmp_path: Path,
    operator_in_process: kopf.testing.KopfRunner,
) -> None:  # fmt: skip
    registry = cluster.need_registry()
    source = f"{registry}/e2e/{namespace}/base:current"
    first_digest = push_base(tmp_path, cluster, source, "one")
    cluster.apply(
        {
            **imagestream("base"),
            "spec": {
                "tags": [
                    {
                        "name": "latest",
                        "from": {"kind": "DockerImage", "name": source},
                        "importPolicy": {"insecure": True},
                    }
                ]
            },
        },
        namespace,
    )
    cluster.apply(imagestream("app"), namespace)
    bc = docker_bc(
        "app",
        {"type": "Dockerfile", "dockerfile": "FROM placeholder\nRUN cat /base.txt\n"},
        "app:latest",
        strategy={
            "type": "Docker",
            "dockerStrategy": {"from": {"kind": "ImageStreamTag", "name": "base:latest"}},
        },
        triggers=[{"type": "ImageChange", "imageChange": {}}],
    )
    cluster.apply(bc, namespace)
    # The trigger fires once the tag has an image (OpenShift's first ImageChange build).
    [first] = settled_builds(cluster, namespace, "app", 1)
    cause = first["spec"]["triggeredBy"][0]["imageChangeBuild"]
    assert cause["imageID"].endswith(first_digest)
    assert cause["fromRef"]["name"] == "base:latest"
    # The Build pins the image it was triggered by.
    assert first["spec"]["strategy"]["dockerStrategy"]["from"] == {
        "kind": "DockerImage",
        "name": cause["imageID"],
    }
    status = wait_for_phase(cluster, namespace, first["metadata"]["name"])["status"]
    assert status["phase"] == "Complete", status
    triggers = cluster.get_json("bc/app", "-n", namespace)["status"]["imageChangeTriggers"]
    assert triggers[0]["lastTriggeredImageID"] == cause["imageID"]
    assert triggers[0]["lastTriggerTime"]

    # The tag moves: one build, however many events the move causes.
    second_digest = push_base(tmp_path, cluster, source, "two")
    request_import(cluster, namespace, "base")
    second = settled_builds(cluster, namespace, "app", 2)[1]
    assert second["spec"]["triggeredBy"][0]["imageChangeBuild"]["imageID"].endswith(second_digest)

    # Paused: a move starts nothing; unpaused, the pending move builds.
    pause = {"spec": {"triggers": [{"type": "ImageChange", "imageChange": {"paused": True}}]}}
    cluster.kubectl("patch", "bc/app", "-n", namespace, "--type=merge", "-p", json.dumps(pause))
    third_digest = push_base(tmp_path, cluster, source, "three")
    request_import(cluster, namespace, "base")
    eventually(
        "base:latest to move",
        lambda: (
            cluster.get_json("is/base", "-n", namespace)["status"]["tags"][0]["items"][0]["image"]
            == third_digest
        ),
        60,
    )
    settled_builds(cluster, namespace, "app", 2)
    resume = {"spec": {"triggers": [{"type": "ImageChange", "imageChange": {}}]}}
    cluster.kubectl("patch", "bc/app", "-n", namespace, "--type=merge", "-p", json.dumps(resume))
    third = settled_builds(cluster, namespace, "app", 3)[2]
    assert third["spec"]["triggeredBy"][0]["imageChangeBuild"]["imageID"].endswith(third_digest)


def test_a_build_output_moving_a_tag_triggers_the_next_build_in_the_chain(
    cluster: Cluster, namespace: str, operator_in_process: kopf.testing.KopfRunner
) -> None:
    cluster.need_registry()
    busybox = cluster.image("busybox")
    cluster.apply([imagestream("stage1"), imagestream("stage2")], namespace)
    cluster.apply(
        docker_bc(
            "first",
            {"type": "Dockerfile", "dockerfile": f"FROM {busybox}\nRUN echo first > /first\n"},
            "stage1:latest",
        ),
        namespace,
    )
    cluster.apply(
        docker_bc(
            "second",
            {"type": "Dockerfile", "dockerfile": "FROM x\nRUN cat /first\n"},
            "stage2:latest",
            strategy={
                "type": "Docker",
                "dockerStrategy": {"from": {"kind": "ImageStreamTag", "name": "stage1:latest"}},
            },
            triggers=[{"type": "ImageChange", "imageChange": {}}],
        ),
        namespace,
    )
    cluster.kubectl("annotate", "bc/first", "-n", namespace, "start.build.headwater.dev/go=")
    # The operator creates the build after the annotation: wait for it, then for its end.
    assert build_of_request(cluster, namespace, "go") == "first-1"
    first = wait_for_phase(cluster, namespace, "first-1")["status"]
    assert first["phase"] == "Complete"
    [chained] = settled_builds(cluster, namespace, "second", 1)
    image_id = chained["spec"]["triggeredBy"][0]["imageChangeBuild"]["imageID"]
    assert image_id.endswith(first["output"]["to"]["imageDigest"])
    assert wait_for_phase(cluster, namespace, "second-1")["status"]["phase"] == "Complete"
