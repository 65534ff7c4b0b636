"""Source-to-Image builds on the real cluster, with a builder image made in the test."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kopf.testing
import pytest

from .helpers import (
    Cluster,
    GitServer,
    build_digest,
    build_log,
    build_of_request,
    buildah_build_and_push,
    docker_bc,
    imagestream,
    start_build,
)

pytestmark = pytest.mark.e2e

ASSEMBLE = """#!/bin/sh
set -e
echo "assembling as $(id -u) with GREETING=$GREETING"
mkdir -p /opt/app/cache
if [ -f /tmp/artifacts/cache/count ]; then
  cp /tmp/artifacts/cache/count /opt/app/cache/count
  echo "restored artifacts: $(cat /opt/app/cache/count)"
fi
count=$(( $(cat /opt/app/cache/count 2>/dev/null || echo 0) + 1 ))
echo "$count" > /opt/app/cache/count
cp -R /tmp/src/. /opt/app/
"""
RUN = """#!/bin/sh
build=$(cat /opt/app/cache/count)
echo "$(cat /opt/app/message.txt) build=$build greeting=$GREETING from=$FROM_ENV_FILE"
"""
SAVE_ARTIFACTS = """#!/bin/sh
cd /opt/app && tar -cf - cache
"""


def make_builder(cluster: Cluster, tmp_path: Path, registry: str, namespace: str) -> str:
    context = tmp_path / "builder"
    (context / "s2i").mkdir(parents=True)
    for name, text in (("assemble", ASSEMBLE), ("run", RUN), ("save-artifacts", SAVE_ARTIFACTS)):
        (context / "s2i" / name).write_text(text)
    (context / "Dockerfile").write_text(
        f"FROM {cluster.image('busybox')}\n"
        "COPY s2i/ /usr/libexec/s2i/\n"
        "RUN chmod 755 /usr/libexec/s2i/* && mkdir -p /opt/app && chown 1001:0 /opt/app\n"
        'LABEL io.openshift.s2i.scripts-url="image:///usr/libexec/s2i"\n'
        "USER 1001\n"
    )
    image = f"{registry}/e2e/{namespace}/s2i-builder:latest"
    digest = buildah_build_and_push(tmp_path / "buildah", context, image)
    return f"{registry}/e2e/{namespace}/s2i-builder@{digest}"


def run_image(cluster: Cluster, namespace: str, image: str, name: str) -> str:
    result = cluster.kubectl(
        "run", name, "-n", namespace, "--restart=Never", "--rm", "-i", "--quiet",
        f"--image={image}", "--overrides",
        json.dumps({"spec": {"automountServiceAccountToken": False}}), timeout=120,
    )  # fmt: skip
    return result.stdout.strip()


def apply_s2i_bc(
    cluster: Cluster, namespace: str, name: str, url: str, builder: str, **strategy: Any
) -> None:
    """An ImageStream ``name`` and a Source BuildConfig building Git ``url`` into its latest."""
    cluster.apply(imagestream(name), namespace)
    source_strategy = {"from": {"kind": "DockerImage", "name": builder}, **strategy}
    cluster.apply(
        docker_bc(
            name,
            {"type": "Git", "git": {"uri": url}},
            f"{name}:latest",
            strategy={"type": "Source", "sourceStrategy": source_strategy},
        ),
        namespace,
    )


def test_s2i_build_with_environment_file_and_an_incremental_rebuild(
    cluster: Cluster, namespace: str, tmp_path: Path, git_server: GitServer,
    operator_in_process: kopf.testing.KopfRunner,
) -> None:  # fmt: skip
    registry = cluster.need_registry()
    builder = make_builder(cluster, tmp_path, registry, namespace)
    url, _ = git_server.repo(
        {
            "message.txt": "hello from s2i",
            ".s2i/environment": "FROM_ENV_FILE=dot-s2i\n",
        }
    )
    env = [{"name": "GREETING", "value": "hi there"}]
    apply_s2i_bc(cluster, namespace, "app", url, builder, env=env, incremental=True)
    first = build_of_request(cluster, namespace, start_build(cluster, namespace, "app"))
    image = f"{registry}/{namespace}/app@{build_digest(cluster, namespace, first)}"
    out = run_image(cluster, namespace, image, "first")
    assert out == "hello from s2i build=1 greeting=hi there from=dot-s2i"
    logs = build_log(cluster, namespace, first)
    assert "assembling as 1001 with GREETING=hi there" in logs

    second = build_of_request(cluster, namespace, start_build(cluster, namespace, "app"))
    image = f"{registry}/{namespace}/app@{build_digest(cluster, namespace, second)}"
    # The second build restored the first one's artifacts through save-artifacts.
    assert run_image(cluster, namespace, image, "second").startswith("hello from s2i build=2")
    # Both ran with the registry layer cache (on by default; the Dockerfile is generated),
    # and it served nothing stale: the artifacts step and assemble ran again above.
    jobs = cluster.get_json("jobs", "-n", namespace, "-l", f"build.headwater.dev/build={second}")
    (container,) = jobs["items"][0]["spec"]["template"]["spec"]["containers"]
    assert f"--cache-repo={registry}/{namespace}/app-cache" in container["args"]
    assert "restored artifacts: 1" in build_log(cluster, namespace, second)


def test_s2i_source_overrides_the_builder_run_script(
    cluster: Cluster, namespace: str, tmp_path: Path, git_server: GitServer,
    operator_in_process: kopf.testing.KopfRunner,
) -> None:  # fmt: skip
    registry = cluster.need_registry()
    builder = make_builder(cluster, tmp_path, registry, namespace)
    url, _ = git_server.repo(
        {
            "message.txt": "unused",
            ".s2i/bin/run": "#!/bin/sh\necho overridden run script\n",
        }
    )
    apply_s2i_bc(cluster, namespace, "over", url, builder)
    name = build_of_request(cluster, namespace, start_build(cluster, namespace, "over"))
    image = f"{registry}/{namespace}/over@{build_digest(cluster, namespace, name)}"
    assert run_image(cluster, namespace, image, "over") == "overridden run script"
