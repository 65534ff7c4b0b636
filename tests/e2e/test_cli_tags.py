"""``headwater import-image`` and ``headwater tag`` against the real cluster and registry.

The CLI runs as a process with ``--kubeconfig`` and ``-n`` like kubectl; the
operator runs in-process and does the imports the CLI waits for.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import kopf.testing
import pytest

from .helpers import Cluster, eventually, push_image
from .test_imagestream_imports import newest_image

pytestmark = pytest.mark.e2e

HEADWATER = str(Path(sys.executable).parent / "headwater")


def headwater(cluster: Cluster, namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [HEADWATER, *args, "--kubeconfig", str(cluster.kubeconfig), "-n", namespace],
        capture_output=True,
        text=True,
        timeout=180,
    )


def spec_from(cluster: Cluster, namespace: str, tag: str) -> dict[str, str]:
    obj = cluster.get_json("imagestream/web", "-n", namespace)
    return next(dict(t["from"]) for t in obj["spec"]["tags"] if t["name"] == tag)


def test_import_image_and_tag_like_oc(
    cluster: Cluster, namespace: str, operator_in_process: kopf.testing.KopfRunner
) -> None:
    registry = cluster.need_registry()
    digest, _ = push_image(registry, f"{namespace}/web", "1.2.0", marker="cli")
    source = f"{registry}/{namespace}/web:1.2.0"

    refused = headwater(cluster, namespace, "import-image", "web:1.2.0", f"--from={source}")
    assert refused.returncode == 1
    assert "add --confirm" in refused.stderr

    done = headwater(
        cluster, namespace, "import-image", "web:1.2.0", f"--from={source}", "--confirm",
        "--insecure",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "imagestream.image.headwater.dev/web imported" in done.stdout
    assert f"{registry}/{namespace}/web@{digest}" in done.stdout

    pinned = headwater(cluster, namespace, "tag", "web:1.2.0", "web:prod")
    assert pinned.returncode == 0, pinned.stderr
    assert spec_from(cluster, namespace, "prod") == {
        "kind": "ImageStreamImage",
        "name": f"web@{digest}",
        "namespace": namespace,
    }
    alias = headwater(cluster, namespace, "tag", "web:1.2.0", "web:stable", "--alias")
    assert alias.returncode == 0, alias.stderr
    assert spec_from(cluster, namespace, "stable")["kind"] == "ImageStreamTag"
    # Each verb applied one tag; none removed another's.
    tags = [t["name"] for t in cluster.get_json("imagestream/web", "-n", namespace)["spec"]["tags"]]
    assert sorted(tags) == ["1.2.0", "prod", "stable"]
    eventually("the pin", lambda: newest_image(cluster, namespace, "web", "prod") == digest)
    eventually("the alias", lambda: newest_image(cluster, namespace, "web", "stable") == digest)

    # The seed's `oc tag <image> web:latest --import`, and its failure.
    moved, _ = push_image(registry, f"{namespace}/web", "1.3.0", marker="cli-2")
    latest = headwater(
        cluster, namespace, "tag", f"{registry}/{namespace}/web:1.3.0", "web:latest",
        "--insecure", "--import",
    )  # fmt: skip
    assert latest.returncode == 0, latest.stderr
    assert moved in latest.stdout
    broken = headwater(
        cluster, namespace, "tag", f"{registry}/{namespace}/web:nope", "web:broken",
        "--insecure", "--import",
    )  # fmt: skip
    assert broken.returncode == 1
    assert "NotFound" in broken.stderr

    listed = headwater(cluster, namespace, "get", "istag")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[0].split() == ["NAME", "IMAGE", "REFERENCE", "UPDATED"]
    assert any(
        line.split()[:2] == ["web:prod", f"{registry}/{namespace}/web@{digest}"]
        for line in listed.stdout.splitlines()
    )
    described = headwater(cluster, namespace, "describe", "istag", "web:1.2.0")
    assert described.returncode == 0, described.stderr
    for expected in (digest, "Command:\t\t/marker", "marker=cli", "linux/amd64", "1 layer(s)"):
        assert expected in described.stdout, described.stdout

    missing = headwater(cluster, namespace, "tag", "nosuch:1", "web:x", "--source=istag")
    assert missing.returncode == 1
    assert "nosuch" in missing.stderr
    bad = headwater(cluster, namespace, "tag", "web:1.2.0", "not a tag")
    assert bad.returncode == 1
    assert "is not [namespace/]imagestream:tag" in bad.stderr


def test_secrets_link_and_set_image_lookup(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl(
        "create", "secret", "docker-registry", "registry-login", "-n", namespace,
        "--docker-server=registry.example.com", "--docker-username=u", "--docker-password=p",
    )  # fmt: skip
    linked = headwater(
        cluster, namespace, "secrets", "link", "default", "registry-login", "--for=pull"
    )
    assert linked.returncode == 0, linked.stderr
    again = headwater(
        cluster, namespace, "secrets", "link", "default", "registry-login", "--for=pull,mount"
    )
    assert again.returncode == 0, again.stderr
    account = cluster.get_json("serviceaccount/default", "-n", namespace)
    assert account["imagePullSecrets"] == [{"name": "registry-login"}]  # once, not twice
    assert {"name": "registry-login"} in account["secrets"]
    missing = headwater(cluster, namespace, "secrets", "link", "default", "nosuch", "--for=pull")
    assert missing.returncode == 1
    assert "nosuch" in missing.stderr
    wrong = headwater(cluster, namespace, "secrets", "link", "default", "registry-login", "--for=x")
    assert wrong.returncode == 2

    cluster.apply(
        {
            "apiVersion": "image.headwater.dev/v1",
            "kind": "ImageStream",
            "metadata": {"name": "web"},
        },
        namespace,
    )
    on = headwater(cluster, namespace, "set", "image-lookup", "web")
    assert on.returncode == 0, on.stderr
    assert cluster.get_json("imagestream/web", "-n", namespace)["spec"]["lookupPolicy"] == {
        "local": True
    }
    off = headwater(cluster, namespace, "set", "image-lookup", "web", "--disabled")
    assert off.returncode == 0, off.stderr
    assert cluster.get_json("imagestream/web", "-n", namespace)["spec"]["lookupPolicy"] == {
        "local": False
    }
    absent = headwater(cluster, namespace, "set", "image-lookup", "nosuch")
    assert absent.returncode == 1
