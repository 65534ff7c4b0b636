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

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import kopf.testing
import pytest

from .helpers import (
    Cluster,
    build_json,
    build_log,
    builds_of,
    docker_bc,
    headwater,
    imagestream,
    registry_digest,
)
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
