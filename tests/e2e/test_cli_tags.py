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


def test_import_all_dry_run_and_delete_tag(
    cluster: Cluster, namespace: str, operator_in_process: kopf.testing.KopfRunner
) -> None:
    registry = cluster.need_registry()
    repository = f"{registry}/{namespace}/api"
    digests = {
        tag: push_image(registry, f"{namespace}/api", tag, marker=f"all-{tag}")[0]
        for tag in ("1.0", "1.1", "2.0")
    }

    dry = headwater(
        cluster, namespace, "import-image", "api:1.1", f"--from={repository}:1.1", "--insecure",
        "--dry-run",
    )  # fmt: skip
    assert dry.returncode == 0, dry.stderr
    assert f"api:1.1\t{repository}@{digests['1.1']}" in dry.stdout
    absent = cluster.kubectl("get", "imagestream/api", "-n", namespace, check=False)
    assert absent.returncode != 0  # nothing written
    missing = headwater(
        cluster, namespace, "import-image", "api:9", f"--from={repository}:9", "--insecure",
        "--dry-run",
    )  # fmt: skip
    assert missing.returncode == 1
    assert "NotFound" in missing.stderr

    done = headwater(
        cluster, namespace, "import-image", "api", "--all", f"--from={repository}", "--confirm",
        "--insecure",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    for tag, digest in digests.items():
        assert f"api:{tag}\t{repository}@{digest}" in done.stdout
    obj = cluster.get_json("imagestream/api", "-n", namespace)
    assert sorted(t["name"] for t in obj["spec"]["tags"]) == ["1.0", "1.1", "2.0"]

    again = headwater(cluster, namespace, "import-image", "api", "--all")
    assert again.returncode == 0, again.stderr
    assert len([line for line in again.stdout.splitlines() if line.startswith("api:")]) == 3

    deleted = headwater(cluster, namespace, "tag", "-d", "api:1.0")
    assert deleted.returncode == 0, deleted.stderr
    assert f"Deleted tag {namespace}/api:1.0." in deleted.stdout
    obj = cluster.get_json("imagestream/api", "-n", namespace)
    assert sorted(t["name"] for t in obj["spec"]["tags"]) == ["1.1", "2.0"]

    # The operator drops the history (asked by an annotation); the CLI waits for that at
    # most 15 s, then says so and leaves it to the operator (a loaded machine).
    def history() -> list[str]:
        status = cluster.get_json("imagestream/api", "-n", namespace)["status"]
        return [t["tag"] for t in status["tags"]]

    if "has not removed the tag's history yet" in deleted.stderr:
        eventually("the operator to drop api:1.0's history", lambda: "1.0" not in history())
    assert "1.0" not in history()
    gone = headwater(cluster, namespace, "tag", "-d", "api:1.0")
    assert gone.returncode == 1
    assert "not found" in gone.stderr


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


def test_a_re_import_keeps_the_tag_settings_and_a_trigger_typo_is_said(
    cluster: Cluster, namespace: str, operator_in_process: kopf.testing.KopfRunner
) -> None:
    """Issue 19: `import-image app:v1` again rewrote insecure and scheduled to false, so a
    plain-HTTP registry failed; `set triggers` with a typo replaced a trigger silently."""
    registry = cluster.need_registry()
    digest, _ = push_image(registry, f"{namespace}/app", "v1", marker="keep")
    source = f"{registry}/{namespace}/app:v1"

    def policy() -> dict[str, object]:
        obj = cluster.get_json("imagestream/app", "-n", namespace)
        return dict(next(t for t in obj["spec"]["tags"] if t["name"] == "v1")["importPolicy"])

    first = headwater(
        cluster, namespace, "import-image", "app:v1", f"--from={source}", "--confirm",
        "--insecure", "--scheduled", "--import-mode=PreserveOriginal",
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    kept = {"insecure": True, "scheduled": True, "importMode": "PreserveOriginal"}
    assert policy() == kept
    again = headwater(cluster, namespace, "import-image", "app:v1")
    assert again.returncode == 0, again.stderr  # plain HTTP: only with insecure kept
    assert f"{registry}/{namespace}/app@{digest}" in again.stdout
    assert policy() == kept
    retag = headwater(cluster, namespace, "tag", source, "app:v1")
    assert retag.returncode == 0, retag.stderr
    assert policy() == kept
    off = headwater(cluster, namespace, "tag", source, "app:v1", "--no-scheduled")
    assert off.returncode == 0, off.stderr
    assert policy() == {**kept, "scheduled": False}

    missing = headwater(cluster, namespace, "tag", "app:lates", "app:prod", "--source=istag")
    assert missing.returncode == 1
    assert f"Error: {namespace}/app:lates does not exist (its tags: v1)" in missing.stderr

    cluster.kubectl("create", "deployment", "web", f"--image={source}", "-n", namespace)
    working = headwater(cluster, namespace, "set", "triggers", "deploy/web", "--from-image=app:v1")
    assert working.returncode == 0, working.stderr
    assert working.stderr == ""
    typo = headwater(cluster, namespace, "set", "triggers", "deploy/web", "--from-image=appp:v1")
    assert typo.returncode == 0, typo.stderr  # written anyway, as oc does, but said
    assert f"warning: imagestream {namespace}/appp does not exist" in typo.stderr
    assert (
        "warning: deployment.apps/web: container app's trigger on app:v1 was replaced"
        " by the one on appp:v1"
    ) in typo.stderr
