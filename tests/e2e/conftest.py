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

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import kopf.testing
import pytest
from lightkube.config.kubeconfig import KubeConfig

from headwater import admission_server
from headwater.config import load_config
from tests import hack_scripts
from tests.registry_servers import free_port

from .helpers import (
    ALLOWED_REGISTRIES_FOR_IMPORT,
    OPERATOR_NAMESPACE,
    Cluster,
    GitServer,
    eventually,
    pause_installed_operator,
    remove_admission_configuration,
    run_installed_operator,
    stop_installed_operator,
)

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
    # The roles too (users' aggregated roles, the operator's account), as an
    # install has them, for tests that grant or check access.
    base = REPO / "deploy" / "base"
    for manifest in ("namespace.yaml", "serviceaccount.yaml", "rbac.yaml"):
        c.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(base / manifest))
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


BASELINE = {"pod-security.kubernetes.io/enforce": "baseline"}
"""Every test namespace enforces Pod Security baseline: builds must run there."""
PRIVILEGED_BUILDS = {
    "pod-security.kubernetes.io/enforce": "privileged",
    "build.headwater.dev/privileged-builds": "true",
}
"""An admin's opt-in to the privileged buildah executor (and pods that need it)."""


def _create_namespace(cluster: Cluster, name: str, labels: dict[str, str]) -> None:
    cluster.kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}
        ),
    )


@pytest.fixture
def namespace_labels() -> dict[str, str]:
    """Labels of the ``namespace`` fixture; a test module overrides this to opt in."""
    return dict(BASELINE)


@pytest.fixture
def namespace(cluster: Cluster, namespace_labels: dict[str, str]) -> Iterator[str]:
    name = f"hw-e2e-{uuid.uuid4().hex[:8]}"
    _create_namespace(cluster, name, namespace_labels)
    # Pods need the namespace's default service account before they can be created.
    deadline = time.monotonic() + 30
    while cluster.kubectl("get", "sa", "default", "-n", name, check=False).returncode != 0:
        if time.monotonic() > deadline:
            raise AssertionError(f"no default service account in {name} after 30s")
        time.sleep(0.2)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def peer_name(namespace: str) -> str:
    return f"{namespace}-peer"


@pytest.fixture
def peer_namespace(cluster: Cluster, namespace: str) -> Iterator[str]:
    """A second fresh namespace, also watched by ``operator_in_process``."""
    name = peer_name(namespace)
    _create_namespace(cluster, name, BASELINE)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def git_server(cluster: Cluster, tmp_path: Path) -> GitServer:
    root = cluster.env.get("HEADWATER_GIT_ROOT")
    url = cluster.env.get("HEADWATER_GIT_DAEMON")
    if not root or not url:
        pytest.skip("the local cluster's git daemon is needed (HEADWATER_GIT_ROOT is not set)")
    return GitServer(Path(root), url, tmp_path)


IMPORT_INTERVAL_SECONDS = 4
LOCAL_NODE_IP = "10.244.0.1"
AUTH_REGISTRY_PORT = 5002
"""A registry with htpasswd auth that build pods reach (plain HTTP, declared insecure)."""


def _render_install() -> ModuleType:
    return hack_scripts.load("render_install")


@pytest.fixture(scope="session")
def operator_image(cluster: Cluster) -> str:
    """The operator image built by buildah from the repo's Dockerfile, pinned by digest.

    ``HEADWATER_OPERATOR_IMAGE`` names an image already pushed (any cluster);
    otherwise it is built and pushed to the cluster's registry.
    """
    given = os.environ.get("HEADWATER_OPERATOR_IMAGE")
    if given:
        return given
    if not cluster.registry or not cluster.env.get("HEADWATER_PYTHON_IMAGE"):
        raise RuntimeError(
            "set HEADWATER_OPERATOR_IMAGE, or REGISTRY and HEADWATER_PYTHON_IMAGE, "
            "to run the operator in this cluster"
        )
    with tempfile.NamedTemporaryFile("w", suffix=".env") as env_file:
        env_file.write("".join(f"{k}={v}\n" for k, v in cluster.env.items() if "\n" not in v))
        env_file.flush()
        result = subprocess.run(
            ["bash", str(REPO / "hack" / "operator-image.sh"), env_file.name],
            capture_output=True,
            text=True,
            timeout=1200,
        )
    if result.returncode != 0:
        raise RuntimeError(f"building the operator image failed:\n{result.stderr[-6000:]}")
    return result.stdout.strip().splitlines()[-1]


STRATEGY_REQUESTER = "build.headwater.dev/strategy-requester"


def wait_for_build_admission(cluster: Cluster, namespace: str) -> None:
    """Until the operator's admission webhooks answer for BuildConfigs.

    They gate build strategies and record each BuildConfig's author, whom
    triggered builds are checked as: a BuildConfig created before they answer
    has no author, and its triggered builds are refused.
    """
    probe = {
        "apiVersion": "build.headwater.dev/v1",
        "kind": "BuildConfig",
        "metadata": {"name": "admission-probe", "namespace": namespace},
        "spec": {
            "source": {"type": "Dockerfile", "dockerfile": "FROM scratch\n"},
            "strategy": {"type": "Docker", "dockerStrategy": {}},
        },
    }

    def served() -> bool:
        result = cluster.kubectl(
            "create", "--dry-run=server", "-o", "json", "-f", "-",
            input=json.dumps(probe), check=False,
        )  # fmt: skip
        return result.returncode == 0 and STRATEGY_REQUESTER in result.stdout

    eventually("the operator's build admission webhooks to answer", served, timeout=90)


@pytest.fixture(scope="module")
def operator_in_cluster(cluster: Cluster, operator_image: str) -> Iterator[str]:
    """Headwater installed from deploy/install.yaml and Available; yields its namespace.

    Only the image, the output registry and the builder image differ from the
    file (hack/render_install.py). At the end of the module the Deployment is
    scaled to zero, so that tests running the operator in-process do not race it.
    """
    # First the README's command, on the file exactly as committed (client-side
    # apply: the CRDs must fit the last-applied annotation)...
    cluster.kubectl("apply", "-f", str(REPO / "deploy" / "install.yaml"))
    # ...then the same objects pointed at this cluster's image and registry.
    render = _render_install()
    docs = render.render(
        render.load(),
        image=operator_image,
        registry=cluster.registry,
        insecure=True,
        builder_image=cluster.env.get("HEADWATER_BUILDER_IMAGE"),
        kaniko_image=cluster.env.get("HEADWATER_KANIKO_IMAGE"),
    )
    cluster.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}),
    )
    run_installed_operator(cluster)
    wait_for_build_admission(cluster, "default")
    yield OPERATOR_NAMESPACE
    stop_installed_operator(cluster)


@contextlib.contextmanager
def admission_in_thread() -> Iterator[None]:
    """Admission as ``headwater operator run`` serves it beside kopf (which no longer does):
    :func:`headwater.admission_server.serve` with this process's environment, in a thread."""
    loop = asyncio.new_event_loop()
    task = loop.create_task(admission_server.serve(load_config(os.environ), KubeConfig.from_env()))

    def run() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(task)
        loop.close()

    thread = threading.Thread(target=run, name="admission", daemon=True)
    thread.start()
    try:
        yield
    finally:
        loop.call_soon_threadsafe(task.cancel)
        thread.join(timeout=30)


@pytest.fixture
def operator_in_process(
    cluster: Cluster,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[kopf.testing.KopfRunner]:
    """The operator's handlers run by kopf in this process, watching ``namespace`` (and its peer).

    An in-cluster operator (a demo's, an earlier module's) is scaled to zero
    first so that it cannot race this one. Scheduled imports run every
    ``IMPORT_INTERVAL_SECONDS`` so tests can watch them happen.
    """
    pause_installed_operator(cluster)
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    monkeypatch.setenv("HEADWATER_IMPORT_INTERVAL_SECONDS", str(IMPORT_INTERVAL_SECONDS))
    # Registry notifications: tests read the port and token back from the environment.
    monkeypatch.setenv("HEADWATER_WEBHOOK_PORT", str(free_port()))
    monkeypatch.setenv("HEADWATER_REGISTRY_WEBHOOK_TOKEN", uuid.uuid4().hex)
    # The stand-in registries of the tests run on this machine's loopback, which
    # the import policy refuses unless listed (the cluster's registries, the
    # configured `registry` and `insecureRegistries`, are listed implicitly).
    monkeypatch.setenv("HEADWATER_ALLOWED_REGISTRIES_FOR_IMPORT", ALLOWED_REGISTRIES_FOR_IMPORT)
    # Per-registry CA bundles: tests put <host:port>/ca.crt here.
    certs_dir = tmp_path_factory.mktemp("certs.d")
    monkeypatch.setenv("HEADWATER_REGISTRY_CERTS_DIR", str(certs_dir))
    if cluster.is_local:
        # The API server runs on this machine and reaches it at the node address.
        monkeypatch.setenv("HEADWATER_ADMISSION_HOST", LOCAL_NODE_IP)
        monkeypatch.setenv("HEADWATER_ADMISSION_PORT", str(free_port()))
        monkeypatch.setenv("HEADWATER_INSECURE_REGISTRIES", f"{LOCAL_NODE_IP}:{AUTH_REGISTRY_PORT}")
    if cluster.registry:
        monkeypatch.setenv("HEADWATER_REGISTRY", cluster.registry)
        monkeypatch.setenv("HEADWATER_REGISTRY_INSECURE", "true")
    # This process's environment first: a test run may try a newer builder image.
    builder = os.environ.get("HEADWATER_BUILDER_IMAGE") or cluster.env.get(
        "HEADWATER_BUILDER_IMAGE"
    )
    if builder:
        # Build pods run the locally made buildah image.
        monkeypatch.setenv("HEADWATER_BUILDER_IMAGE", builder)
    kaniko = cluster.env.get("HEADWATER_KANIKO_IMAGE") or os.environ.get("HEADWATER_KANIKO_IMAGE")
    if kaniko:
        # The default executor: the locally made kaniko image.
        monkeypatch.setenv("HEADWATER_KANIKO_IMAGE", kaniko)
    args = ["run", "--standalone", "-m", "headwater.handlers"]
    for watched in (namespace, peer_name(namespace)):
        args += ["--namespace", watched]
    try:
        with admission_in_thread(), kopf.testing.KopfRunner(args, timeout=60) as runner:
            if cluster.is_local:
                wait_for_build_admission(cluster, namespace)
            yield runner
    finally:
        remove_admission_configuration(cluster)
    assert runner.exit_code == 0, runner.output
    assert runner.exception is None, runner.exception
