"""The registry layer cache on the real cluster and registry (kaniko, the default executor).

A Binary BuildConfig uploads a folder whose Dockerfile has a slow step (a second or
two of shell arithmetic, real CPU work) before ``COPY`` of the source. The first
build starts with no cache repository at all and must still complete, leaving
``<output repository>-cache`` in the registry; after a one-line source change the
second build must take the slow step from the cache (kaniko's "Using caching
version of cmd") instead of running it, and push the changed file. With
``headwater start-build --no-cache`` (``noCache: true`` on the build's strategy)
the step runs again and the executor gets no cache flags.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import kopf.testing
import pytest

from tests.registry_servers import running_registry

from .conftest import AUTH_REGISTRY_PORT, LOCAL_NODE_IP, PRIVILEGED_BUILDS
from .helpers import (
    Cluster,
    build_json,
    build_log,
    build_of_request,
    builds_of,
    docker_bc,
    headwater,
    imagestream,
    registry_digest,
    start_build,
    wait_for_phase,
)
from .test_builds import docker_config_secret
from .test_kaniko import image_config, layer_file

pytestmark = pytest.mark.e2e

# About a second of CPU in busybox sh. It prints MARKER only when it really runs (the
# executors log the step's text, which holds "$i", not the number).
MARKER = "slow-step-counted-150000"
SLOW_STEP = (
    "RUN i=0; while [ $i -lt 150000 ]; do i=$((i+1)); done;"
    " echo slow-step-counted-$i; echo $i > /slow.txt\n"
)
KANIKO_CACHED = "Using caching version of cmd: RUN i=0"


def _tags(registry: str, repository: str) -> list[str]:
    url = f"http://{registry}/v2/{repository}/tags/list"
    with urllib.request.urlopen(url, timeout=30) as resp:
        body: dict[str, Any] = json.loads(resp.read())
    return list(body.get("tags") or [])


def _build_args(cluster: Cluster, namespace: str, name: str) -> list[str]:
    jobs = cluster.get_json("jobs", "-n", namespace, "-l", f"build.headwater.dev/build={name}")
    (job,) = jobs["items"]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    return [str(a) for a in container.get("args") or []]


def _upload(cluster: Cluster, namespace: str, folder: Path, *extra: str) -> dict[str, Any]:
    result = headwater(
        cluster, namespace, "start-build", "web", "--from-dir", str(folder), "--wait", *extra
    )
    newest = builds_of(cluster, namespace, "web")[-1]
    assert result.returncode == 0, result.stdout + result.stderr + json.dumps(newest["status"])
    return build_json(cluster, namespace, newest["metadata"]["name"])


def test_kaniko_rebuild_reuses_the_slow_step_from_the_registry_cache_unless_no_cache(
    cluster: Cluster,
    namespace: str,
    tmp_path: Path,
    operator_in_process: kopf.testing.KopfRunner,
) -> None:
    registry = cluster.need_registry()
    busybox = cluster.image("busybox")
    folder = tmp_path / "app"
    folder.mkdir()
    (folder / "Dockerfile").write_text(f"FROM {busybox}\n{SLOW_STEP}COPY app.txt /app.txt\n")
    (folder / "app.txt").write_text("version 1\n")
    cluster.apply(imagestream("web"), namespace)
    cluster.apply(docker_bc("web", {"type": "Binary", "binary": {}}, "web:latest"), namespace)
    cache = f"{namespace}/web-cache"

    # 1. Cold: no cache repository exists yet, and that fails nothing.
    with pytest.raises(urllib.error.HTTPError):
        _tags(registry, cache)
    first = _upload(cluster, namespace, folder)
    name = first["metadata"]["name"]
    assert first["status"]["phase"] == "Complete", first["status"]
    args = _build_args(cluster, namespace, name)
    assert "--cache=true" in args
    assert f"--cache-repo={registry}/{cache}" in args
    log = build_log(cluster, namespace, name)
    assert MARKER in log, log[-3000:]
    assert KANIKO_CACHED not in log

    assert _tags(registry, cache), "the first build left no layer in the cache repository"

    # 2. A one-line source change: the slow step comes from the cache, the COPY is new.
    (folder / "app.txt").write_text("version 2\n")
    second = _upload(cluster, namespace, folder)
    name = second["metadata"]["name"]
    assert second["status"]["phase"] == "Complete", second["status"]
    log = build_log(cluster, namespace, name)
    assert KANIKO_CACHED in log, log[-3000:]
    assert MARKER not in log, log[-3000:]
    digest = registry_digest(registry, f"{namespace}/web", "latest")
    assert second["status"]["output"]["to"]["imageDigest"] == digest
    _, top = image_config(registry, f"{namespace}/web", digest)
    assert layer_file(top, "/app.txt") == "version 2\n"

    # 3. start-build --no-cache: noCache: true on this build's strategy, no cache flags,
    # the slow step runs again.
    (folder / "app.txt").write_text("version 3\n")
    third = _upload(cluster, namespace, folder, "--no-cache")
    name = third["metadata"]["name"]
    assert third["status"]["phase"] == "Complete", third["status"]
    assert third["spec"]["strategy"]["dockerStrategy"]["noCache"] is True
    args = _build_args(cluster, namespace, name)
    assert "--cache=false" in args
    assert not [a for a in args if a.startswith("--cache-repo") or a == "--cache=true"]
    log = build_log(cluster, namespace, name)
    assert MARKER in log, log[-3000:]
    assert KANIKO_CACHED not in log

    # 4. noCache: true on the BuildConfig's strategy (OpenShift's field) does the same.
    cluster.kubectl(
        "patch", "-n", namespace, "buildconfig/web", "--type=merge",
        "-p", '{"spec":{"strategy":{"dockerStrategy":{"noCache":true}}}}',
    )  # fmt: skip
    fourth = _upload(cluster, namespace, folder)
    name = fourth["metadata"]["name"]
    assert fourth["status"]["phase"] == "Complete", fourth["status"]
    assert "--cache=false" in _build_args(cluster, namespace, name)
    log = build_log(cluster, namespace, name)
    assert MARKER in log, log[-3000:]
    assert KANIKO_CACHED not in log


BUILDAH = {"build.headwater.dev/executor": "buildah"}


class TestBuildah:
    """buildah (where an admin allowed privileged builds): --layers --cache-to/--cache-from."""

    @pytest.fixture
    def namespace_labels(self) -> dict[str, str]:
        return dict(PRIVILEGED_BUILDS)

    def test_rebuild_pulls_the_slow_step_from_the_registry_cache(
        self,
        cluster: Cluster,
        namespace: str,
        tmp_path: Path,
        operator_in_process: kopf.testing.KopfRunner,
    ) -> None:
        registry = cluster.need_registry()
        busybox = cluster.image("busybox")
        folder = tmp_path / "app"
        folder.mkdir()
        (folder / "Dockerfile").write_text(f"FROM {busybox}\n{SLOW_STEP}COPY app.txt /app.txt\n")
        (folder / "app.txt").write_text("version 1\n")
        cluster.apply(imagestream("web"), namespace)
        bc = docker_bc("web", {"type": "Binary", "binary": {}}, "web:latest")
        bc["metadata"]["annotations"] = dict(BUILDAH)
        cluster.apply(bc, namespace)
        cache = f"{registry}/{namespace}/web-cache"

        first = _upload(cluster, namespace, folder)
        name = first["metadata"]["name"]
        args = _build_args(cluster, namespace, name)
        assert args[:5] == ["--layers", "--cache-from", cache, "--cache-to", cache]
        log = build_log(cluster, namespace, name)
        assert MARKER in log, log[-3000:]
        assert _tags(registry, f"{namespace}/web-cache"), "no layer in the cache repository"

        (folder / "app.txt").write_text("version 2\n")
        second = _upload(cluster, namespace, folder)
        log = build_log(cluster, namespace, second["metadata"]["name"])
        assert MARKER not in log, log[-3000:]
        # The build pod starts with empty storage: the layer came from the registry.
        assert "Using cache" in log, log[-3000:]
        digest = str(second["status"]["output"]["to"]["imageDigest"])
        _, top = image_config(registry, f"{namespace}/web", digest)
        assert layer_file(top, "/app.txt") == "version 2\n"

    def test_a_cache_the_push_secret_cannot_write_does_not_fail_the_build(
        self,
        cluster: Cluster,
        namespace: str,
        tmp_path: Path,
        operator_in_process: kopf.testing.KopfRunner,
    ) -> None:
        """The push secret's credentials name the output repository only (a per-repository
        key, as registries scope robot accounts): the cache push is refused, the build
        completes without writing the cache."""
        if not cluster.is_local:
            pytest.skip("needs a registry on the local cluster's node address")
        busybox = cluster.image("busybox")
        with running_registry(
            tmp_path / "auth-registry", auth="htpasswd", host=LOCAL_NODE_IP,
            port=AUTH_REGISTRY_PORT,
        ) as private:  # fmt: skip
            assert private.username
            assert private.password
            output = f"{private.address}/{namespace}/app"
            secret = docker_config_secret("scoped", output, private.username, private.password)
            cluster.apply(secret, namespace)
            bc = docker_bc(
                "scoped",
                {"type": "Dockerfile", "dockerfile": f"FROM {busybox}\n{SLOW_STEP}"},
                None,
            )
            bc["metadata"]["annotations"] = dict(BUILDAH)
            bc["spec"]["output"] = {
                "to": {"kind": "DockerImage", "name": f"{output}:v1"},
                "pushSecret": {"name": "scoped"},
            }
            cluster.apply(bc, namespace)
            name = build_of_request(cluster, namespace, start_build(cluster, namespace, "scoped"))
            status = wait_for_phase(cluster, namespace, name)["status"]
            log = build_log(cluster, namespace, name)
            assert status["phase"] == "Complete", (status, log[-3000:])
            assert f"--cache-to\n{output}-cache" in "\n".join(_build_args(cluster, namespace, name))
            assert "failed pushing cache to" in log
            assert "could not write the layer cache" in log
            auth = base64.b64encode(f"{private.username}:{private.password}".encode()).decode()
            request = urllib.request.Request(
                f"http://{private.address}/v2/{namespace}/app/manifests/v1",
                method="HEAD",
                headers={
                    "Authorization": f"Basic {auth}",
                    "Accept": "application/vnd.docker.distribution.manifest.v2+json",
                },
            )
            with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310 - test registry
                assert (
                    resp.headers["Docker-Content-Digest"] == status["output"]["to"]["imageDigest"]
                )
