"""Builds with the kaniko executor on the real cluster (``build.headwater.dev/executor``).

The kaniko image is the locally made one (``hack/cluster/images.py``, recipe
``kaniko``): ``HEADWATER_KANIKO_IMAGE`` from the cluster's env file or this
process's environment, else the recipe's reference in the cluster's registry
when it was pushed there. Without either the tests skip.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import sys
import tarfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kopf.testing
import pytest

from .helpers import (
    MANIFEST_TYPES,
    Cluster,
    GitServer,
    build_of_request,
    buildconfig,
    imagestream,
    registry_digest,
    start_build,
    wait_for_phase,
)

pytestmark = pytest.mark.e2e

IMAGES_SCRIPT = Path(__file__).resolve().parents[2] / "hack" / "cluster" / "images.py"
KANIKO = {"build.headwater.dev/executor": "kaniko"}


def _recipe_reference(registry: str) -> str:
    """``registry/headwater/kaniko:<tag>`` as hack/cluster/images.py pushes it."""
    name = "headwater_cluster_images"
    images = sys.modules.get(name)
    if images is None:
        spec = importlib.util.spec_from_file_location(name, IMAGES_SCRIPT)
        assert spec is not None
        assert spec.loader is not None
        images = importlib.util.module_from_spec(spec)
        # Its dataclasses resolve their annotations through sys.modules.
        sys.modules[name] = images
        spec.loader.exec_module(images)
    recipe = images.RECIPES["kaniko"]
    return f"{registry}/{recipe.repository}:{recipe.tag}"


def _find_kaniko_image(cluster: Cluster) -> str:
    given = cluster.env.get("HEADWATER_KANIKO_IMAGE") or os.environ.get("HEADWATER_KANIKO_IMAGE")
    if given:
        return given
    if not cluster.registry:
        pytest.skip("HEADWATER_KANIKO_IMAGE is not set and the cluster has no REGISTRY")
    reference = _recipe_reference(cluster.registry)
    repository, _, tag = reference.partition("/")[2].rpartition(":")
    try:
        registry_digest(cluster.registry, repository, tag)
    except urllib.error.URLError as exc:
        pytest.skip(
            f"HEADWATER_KANIKO_IMAGE is not set and {reference} is not in the registry ({exc}): "
            "build and push the kaniko recipe of hack/cluster/images.py first"
        )
    return reference


@pytest.fixture(autouse=True)
def kaniko_image(cluster: Cluster) -> Iterator[str]:
    """Sets HEADWATER_KANIKO_IMAGE for the in-process operator (before it starts), then restores.

    Autouse and function-scoped, so pytest sets it up before ``operator_in_process``
    (same scope, not autouse), which reads the environment when kopf starts.
    """
    image = _find_kaniko_image(cluster)
    before = os.environ.get("HEADWATER_KANIKO_IMAGE")
    os.environ["HEADWATER_KANIKO_IMAGE"] = image
    try:
        yield image
    finally:
        if before is None:
            os.environ.pop("HEADWATER_KANIKO_IMAGE", None)
        else:
            os.environ["HEADWATER_KANIKO_IMAGE"] = before


def _registry_get(registry: str, path: str, accept: str | None = None) -> bytes:
    headers = {"Accept": accept} if accept else {}
    req = urllib.request.Request(f"http://{registry}/v2/{path}", headers=headers)
    with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - the test registry
        body: bytes = resp.read()
    return body


def image_config(registry: str, repository: str, digest: str) -> tuple[dict[str, Any], bytes]:
    """The image's config (``config`` section) and its top layer's bytes."""
    manifest_path = f"{repository}/manifests/{digest}"
    manifest = json.loads(_registry_get(registry, manifest_path, MANIFEST_TYPES))
    assert "config" in manifest, f"not a single image manifest: {manifest}"
    blobs = f"{repository}/blobs"
    config = json.loads(_registry_get(registry, f"{blobs}/{manifest['config']['digest']}"))
    top = _registry_get(registry, f"{blobs}/{manifest['layers'][-1]['digest']}")
    return config.get("config") or {}, top


def layer_file(layer: bytes, path: str) -> str:
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:  # gzip or plain, auto-detected
        member = tar.extractfile(path.lstrip("/"))
        assert member is not None, f"{path} is not a file in the layer"
        return member.read().decode()


def kaniko_bc(name: str, source: dict[str, Any], output: str, **strategy: Any) -> dict[str, Any]:
    bc = buildconfig(
        name,
        {
            "source": source,
            "strategy": {"type": "Docker", "dockerStrategy": strategy},
            "output": {
                "to": {"kind": "ImageStreamTag", "name": output},
                "imageLabels": [
                    {"name": "org.example.team", "value": "platform"},
                    {"name": "org.example.note", "value": 'built "by" kaniko'},
                ],
            },
        },
    )
    bc["metadata"]["annotations"] = dict(KANIKO)
    return bc


def _assert_built_by_kaniko(
    cluster: Cluster, namespace: str, build: dict[str, Any], kaniko_image: str
) -> None:
    name = build["metadata"]["name"]
    assert build["metadata"]["annotations"].get("build.headwater.dev/executor") == "kaniko"
    jobs = cluster.get_json("jobs", "-n", namespace, "-l", f"build.headwater.dev/build={name}")
    assert len(jobs["items"]) == 1
    containers = jobs["items"][0]["spec"]["template"]["spec"]["containers"]
    assert [c["image"] for c in containers] == [kaniko_image]


def test_kaniko_builds_an_inline_dockerfile_with_build_args_env_and_labels(
    kaniko_image: str,
    cluster: Cluster,
    namespace: str,
    operator_in_process: kopf.testing.KopfRunner,
) -> None:
    registry = cluster.need_registry()
    busybox = cluster.image("busybox")
    dockerfile = (
        f"FROM {busybox}\n"
        "ARG GREETING=unset\n"
        'RUN echo "$GREETING from kaniko" > /built.txt\n'
        'CMD ["cat", "/built.txt"]\n'
    )
    cluster.apply(imagestream("kan"), namespace)
    cluster.apply(
        kaniko_bc(
            "kan",
            {"type": "Dockerfile", "dockerfile": dockerfile},
            "kan:latest",
            buildArgs=[{"name": "GREETING", "value": "hello"}],
            env=[{"name": "MODE", "value": "fast"}],
        ),
        namespace,
    )
    request = start_build(cluster, namespace, "kan")
    name = build_of_request(cluster, namespace, request)
    build = wait_for_phase(cluster, namespace, name)
    status = build["status"]
    assert status["phase"] == "Complete", status
    _assert_built_by_kaniko(cluster, namespace, build, kaniko_image)

    repository = f"{namespace}/kan"
    digest = registry_digest(registry, repository, "latest")
    assert status["output"]["to"]["imageDigest"] == digest
    assert status["outputDockerImageReference"] == f"{registry}/{repository}:latest"
    stream = cluster.get_json("imagestream/kan", "-n", namespace)
    tags = {t["tag"]: t for t in stream["status"]["tags"]}
    assert tags["latest"]["items"][0]["image"] == digest

    config, top = image_config(registry, repository, digest)
    assert "MODE=fast" in config.get("Env", [])
    labels = config.get("Labels") or {}
    assert labels.get("org.example.team") == "platform"
    assert labels.get("org.example.note") == 'built "by" kaniko'
    # No git source: no commit, so no io.openshift.build.commit.* labels.
    assert not [k for k in labels if k.startswith("io.openshift.build.commit.")]
    assert config.get("Cmd") == ["cat", "/built.txt"]
    assert layer_file(top, "/built.txt") == "hello from kaniko\n"


def test_kaniko_build_from_git_gets_the_commit_labels_from_the_fetch_step(
    kaniko_image: str,
    cluster: Cluster,
    namespace: str,
    git_server: GitServer,
    operator_in_process: kopf.testing.KopfRunner,
) -> None:
    """kaniko has no --env and the commit is known only in the pod: the fetch step
    appends ENV and LABEL lines to the Dockerfile, quoted so they read back as given."""
    registry = cluster.need_registry()
    busybox = cluster.image("busybox")
    message = 'fix "quotes", $HOME and a \\ backslash'
    url, sha = git_server.repo(
        {"Dockerfile": f"FROM {busybox}\nRUN echo from-git > /built.txt\n"}, message=message
    )
    cluster.apply(imagestream("kgit"), namespace)
    tricky = 'a "quoted" $VALUE with \\ and spaces'
    cluster.apply(
        kaniko_bc(
            "kgit",
            {"type": "Git", "git": {"uri": url}},
            "kgit:v1",
            env=[{"name": "TRICKY", "value": tricky}],
        ),
        namespace,
    )
    request = start_build(cluster, namespace, "kgit")
    name = build_of_request(cluster, namespace, request)
    build = wait_for_phase(cluster, namespace, name)
    status = build["status"]
    assert status["phase"] == "Complete", status
    _assert_built_by_kaniko(cluster, namespace, build, kaniko_image)
    assert status["revision"]["git"]["commit"] == sha

    repository = f"{namespace}/kgit"
    digest = registry_digest(registry, repository, "v1")
    assert status["output"]["to"]["imageDigest"] == digest
    config, top = image_config(registry, repository, digest)
    assert f"TRICKY={tricky}" in config.get("Env", [])
    labels = config.get("Labels") or {}
    assert labels.get("io.openshift.build.commit.id") == sha
    assert labels.get("io.openshift.build.commit.message") == message
    assert labels.get("io.openshift.build.source-location") == url
    assert labels.get("org.example.team") == "platform"
    assert layer_file(top, "/built.txt") == "from-git\n"
