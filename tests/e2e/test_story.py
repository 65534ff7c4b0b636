"""The seed's whole story on the real cluster: Git push to image to rollout, then promotion.

A Git repository on this machine; a BuildConfig (Docker strategy on a builder
ImageStreamTag, ConfigChange + ImageChange + Generic webhook triggers) whose
output is ``web:latest``; a Deployment following that tag through
``image.openshift.io/triggers``. Creating them builds and rolls out; a commit
and a webhook call build and roll out again; moving the builder tag rebuilds;
promotion to a prod namespace rolls out the same digest without a build; a
CI-built image is imported and rolled out; a paused trigger holds a rollout
until it is unpaused.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import kopf.testing
import pytest

from .helpers import (
    Cluster,
    GitServer,
    build_digest,
    build_of_request,
    buildah_build_and_push,
    builds_of,
    eventually,
    headwater,
    imagestream,
)

pytestmark = pytest.mark.e2e

FIELD = 'spec.template.spec.containers[?(@.name=="web")].image'


def deployment(name: str, tag: str, *, paused: bool = False) -> dict[str, Any]:
    trigger: dict[str, Any] = {"from": {"kind": "ImageStreamTag", "name": tag}, "fieldPath": FIELD}
    if paused:
        trigger["paused"] = True
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "annotations": {"image.openshift.io/triggers": json.dumps([trigger])},
        },
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "automountServiceAccountToken": False,
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "web", "image": " "}],
                },
            },
        },
    }


def deployed_image(cluster: Cluster, namespace: str, name: str) -> str:
    obj = cluster.get_json(f"deploy/{name}", "-n", namespace)
    return str(obj["spec"]["template"]["spec"]["containers"][0]["image"])


def rolled_out(cluster: Cluster, namespace: str, name: str, digest: str) -> str:
    """Wait until the Deployment runs ``digest``; what its pod printed."""
    eventually(
        f"{namespace}/{name} patched to {digest[:19]}",
        lambda: deployed_image(cluster, namespace, name).endswith(digest),
        timeout=120,
    )
    cluster.kubectl(
        "rollout", "status", "-n", namespace, f"deploy/{name}", "--timeout=180s", timeout=200
    )
    pods = cluster.get_json("pods", "-n", namespace, "-l", f"app={name}")["items"]
    running = [
        p
        for p in pods
        if not p["metadata"].get("deletionTimestamp")
        and digest in (p["status"].get("containerStatuses") or [{}])[0].get("imageID", "")
    ]
    assert running, f"no pod of {name} runs {digest}"
    pod = running[0]["metadata"]["name"]
    out: list[str] = []

    def printed() -> bool:
        out[:] = [cluster.kubectl("logs", "-n", namespace, pod, check=False).stdout]
        return bool(out[0].strip())

    eventually(f"{pod} to print", printed, timeout=60)
    return out[0]


def builds(cluster: Cluster, namespace: str) -> list[str]:
    return [b["metadata"]["name"] for b in builds_of(cluster, namespace)]


def commit(repo: Path, workdir: Path, files: dict[str, str], message: str) -> str:
    clone = workdir / f"clone-{time.monotonic_ns()}"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    for rel, content in files.items():
        (clone / rel).write_text(content)
    git = ["git", "-C", str(clone), "-c", "user.name=Dev", "-c", "user.email=dev@shop.example"]
    subprocess.run([*git, "commit", "-qam", message], check=True)
    subprocess.run([*git, "push", "-q", "origin", "HEAD:main"], check=True)
    return subprocess.run(
        [*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()


def cli(cluster: Cluster, namespace: str, *args: str) -> str:
    result = headwater(cluster, namespace, *args, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_git_push_to_image_to_rollout_then_promotion(
    cluster: Cluster,
    namespace: str,
    peer_namespace: str,
    git_server: GitServer,
    tmp_path: Path,
    operator_in_process: kopf.testing.KopfRunner,
) -> None:
    registry = cluster.need_registry()
    busybox = cluster.image("busybox")
    base_repo = f"{registry}/e2e/{namespace}/base:current"

    def push_base(marker: str) -> str:
        context = tmp_path / f"base-{marker}"
        context.mkdir()
        (context / "Dockerfile").write_text(f"FROM {busybox}\nRUN echo {marker} > /base.txt\n")
        return buildah_build_and_push(tmp_path / f"buildah-{marker}", context, base_repo)

    push_base("base-1")
    url, _ = git_server.repo(
        {
            "Dockerfile": (
                "FROM replaced-by-the-strategy\n"
                "COPY version.txt /version.txt\n"
                'CMD ["sh", "-c", "cat /version.txt /base.txt; exec sleep 3600"]\n'
            ),
            "version.txt": "v1\n",
        }
    )
    bare = git_server.root / url.rsplit("/", 1)[1]
    cluster.apply(
        [
            {
                **imagestream("base"),
                "spec": {
                    "tags": [
                        {
                            "name": "latest",
                            "from": {"kind": "DockerImage", "name": base_repo},
                            "importPolicy": {"insecure": True},
                        }
                    ]
                },
            },
            imagestream("web"),
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "web-hook"},
                "stringData": {"WebHookSecretKey": "hook-secret-123"},
            },
        ],
        namespace,
    )
    cluster.apply(
        {
            "apiVersion": "build.headwater.dev/v1",
            "kind": "BuildConfig",
            "metadata": {"name": "web"},
            "spec": {
                "source": {"type": "Git", "git": {"uri": url, "ref": "main"}},
                "strategy": {
                    "type": "Docker",
                    "dockerStrategy": {"from": {"kind": "ImageStreamTag", "name": "base:latest"}},
                },
                "output": {"to": {"kind": "ImageStreamTag", "name": "web:latest"}},
                "triggers": [
                    {"type": "ConfigChange"},
                    {"type": "ImageChange", "imageChange": {}},
                    {"type": "Generic", "generic": {"secretReference": {"name": "web-hook"}}},
                ],
            },
        },
        namespace,
    )
    cluster.apply(deployment("web", "web:latest"), namespace)

    # Created: one build (ConfigChange and ImageChange together make one), one rollout.
    # The operator creates it once it has seen the BuildConfig and base:latest's image.
    eventually("the ConfigChange build web-1", lambda: "web-1" in builds(cluster, namespace))
    first = build_digest(cluster, namespace, "web-1")
    assert rolled_out(cluster, namespace, "web", first).split() == ["v1", "base-1"]
    time.sleep(2)
    assert builds(cluster, namespace) == ["web-1"]

    # A commit and a webhook call: a second build of that commit, a second rollout.
    sha = commit(bare, tmp_path, {"version.txt": "v2\n"}, "Version 2")
    port = os.environ["HEADWATER_WEBHOOK_PORT"]
    hook = (
        f"http://127.0.0.1:{port}/apis/build.headwater.dev/v1/namespaces/{namespace}"
        "/buildconfigs/web/webhooks/hook-secret-123/generic"
    )
    request = urllib.request.Request(
        hook, data=b"{}", headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
        assert response.status in (200, 201)
    second = build_digest(cluster, namespace, "web-2")
    assert second != first
    assert (
        cluster.get_json("build/web-2", "-n", namespace)["status"]["revision"]["git"]["commit"]
        == sha
    )
    assert rolled_out(cluster, namespace, "web", second).split() == ["v2", "base-1"]

    # The builder tag moves: an ImageChange rebuild, and its rollout.
    push_base("base-2")
    cluster.kubectl(
        "annotate", "is/base", "-n", namespace,
        "image.headwater.dev/import-requested=*", "--overwrite",
    )  # fmt: skip
    eventually("the ImageChange build", lambda: "web-3" in builds(cluster, namespace), 120)
    third = build_digest(cluster, namespace, "web-3")
    assert rolled_out(cluster, namespace, "web", third).split() == ["v2", "base-2"]

    # Promotion: shop-prod's stream pins staging's current image; no build, same digest.
    prod = peer_namespace
    cluster.kubectl(
        "create", "rolebinding", "prod-pulls", "-n", namespace,
        "--clusterrole=headwater-view", f"--group=system:serviceaccounts:{prod}",
    )  # fmt: skip
    cluster.apply(imagestream("web"), prod)
    cli(cluster, namespace, "tag", f"{namespace}/web:latest", f"{prod}/web:prod")
    cluster.apply(deployment("web", "web:prod"), prod)
    assert rolled_out(cluster, prod, "web", third).split() == ["v2", "base-2"]
    assert builds(cluster, namespace) == ["web-1", "web-2", "web-3"]
    assert not cluster.get_json("builds", "-n", prod)["items"]

    # "Skip in-cluster builds": a CI-built image imported, and a Deployment following it.
    ci = tmp_path / "ci"
    ci.mkdir()
    (ci / "Dockerfile").write_text(
        f'FROM {busybox}\nCMD ["sh", "-c", "echo built-by-ci; exec sleep 3600"]\n'
    )
    ci_digest = buildah_build_and_push(
        tmp_path / "buildah-ci", ci, f"{registry}/e2e/{namespace}/ci:1.2.0"
    )
    cli(
        cluster, namespace, "import-image", "web:1.2.0",
        f"--from={registry}/e2e/{namespace}/ci:1.2.0", "--confirm", "--insecure",
    )  # fmt: skip
    cluster.apply(deployment("web-ci", "web:1.2.0"), namespace)
    assert rolled_out(cluster, namespace, "web-ci", ci_digest).split() == ["built-by-ci"]

    # Paused: the tag moves, the Deployment stays; unpaused, it catches up.
    def set_trigger(paused: bool) -> None:
        # Only the annotation (as `headwater set triggers --manual` does): re-applying
        # the whole manifest would also write its placeholder image.
        value = deployment("web", "web:latest", paused=paused)["metadata"]["annotations"]
        cluster.kubectl(
            "annotate", "deploy/web", "-n", namespace, "--overwrite",
            f"image.openshift.io/triggers={value['image.openshift.io/triggers']}",
        )  # fmt: skip

    set_trigger(paused=True)
    commit(bare, tmp_path, {"version.txt": "v3\n"}, "Version 3")
    cluster.kubectl("annotate", "bc/web", "-n", namespace, "start.build.headwater.dev/by-hand=")
    assert build_of_request(cluster, namespace, "by-hand") == "web-4"
    fourth = build_digest(cluster, namespace, "web-4")
    time.sleep(3)
    assert deployed_image(cluster, namespace, "web").endswith(third)
    set_trigger(paused=False)
    assert rolled_out(cluster, namespace, "web", fourth).split() == ["v3", "base-2"]
