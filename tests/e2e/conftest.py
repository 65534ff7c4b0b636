"""Fixtures for tests against a real Kubernetes cluster.

The cluster is the one named by ``KUBECONFIG`` when it is set (kind, k3d, EKS:
any real cluster), otherwise the local single-node cluster that
``hack/cluster/localcluster.py up`` starts (and that this session stops again,
unless it was already running or ``HEADWATER_KEEP_CLUSTER=1``).

A cluster that is not the local one must also give ``REGISTRY`` (host:port of a
registry that this machine and the cluster's pods reach over plain HTTP) for
tests that push images; tests that need the local git daemon skip with that
reason on other clusters.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import Cluster, GitServer

REPO = Path(__file__).resolve().parents[2]
LOCALCLUSTER = REPO / "hack" / "cluster" / "localcluster.py"


def _read_env_file(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            env[key] = value
    return env


def _start_local_cluster() -> Path:
    result = subprocess.run(
        ["python3", str(LOCALCLUSTER), "up"], capture_output=True, text=True, timeout=3000
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"starting the local cluster failed:\n{result.stdout[-4000:]}\n{result.stderr[-8000:]}"
        )
    return Path(result.stdout.strip().splitlines()[-1])


def _local_cluster_running() -> bool:
    return (
        subprocess.run(["python3", str(LOCALCLUSTER), "env"], capture_output=True).returncode == 0
    )


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    started_here = False
    if os.environ.get("KUBECONFIG"):
        env = dict(os.environ)
        kubeconfig = Path(os.environ["KUBECONFIG"])
    else:
        already = _local_cluster_running()
        env_file = _start_local_cluster()
        started_here = not already
        env = _read_env_file(env_file)
        kubeconfig = Path(env["KUBECONFIG"])
    kubectl_path = env.get("KUBECTL") or shutil.which("kubectl")
    if not kubectl_path:
        raise RuntimeError("no kubectl: set KUBECTL or put kubectl on PATH")
    c = Cluster(
        kubeconfig=kubeconfig,
        registry=env.get("REGISTRY"),
        kubectl_path=kubectl_path,
        env=env,
    )
    c.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    c.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/imagestreams.image.headwater.dev",
        "crd/buildconfigs.build.headwater.dev",
        "crd/builds.build.headwater.dev",
    )
    try:
        yield c
    finally:
        if started_here and os.environ.get("HEADWATER_KEEP_CLUSTER") != "1":
            subprocess.run(["python3", str(LOCALCLUSTER), "down"], capture_output=True)


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    name = f"hw-e2e-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    # Pods need the namespace's default service account before they can be created.
    deadline = time.monotonic() + 30
    while cluster.kubectl("get", "sa", "default", "-n", name, check=False).returncode != 0:
        if time.monotonic() > deadline:
            raise AssertionError(f"no default service account in {name} after 30s")
        time.sleep(0.2)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def git_server(cluster: Cluster, tmp_path: Path) -> GitServer:
    root = cluster.env.get("HEADWATER_GIT_ROOT")
    url = cluster.env.get("HEADWATER_GIT_DAEMON")
    if not root or not url:
        pytest.skip("the local cluster's git daemon is needed (HEADWATER_GIT_ROOT is not set)")
    return GitServer(Path(root), url, tmp_path)
