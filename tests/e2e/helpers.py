"""Small helpers e2e tests share: registry look-ups, image builds, operator processes."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.apiproxy import ApiProxy
from tests.registry_servers import free_port

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)


def registry_digest(registry: str, repository: str, reference: str) -> str:
    """The digest the registry itself reports for a tag (plain-HTTP local registry)."""
    req = urllib.request.Request(
        f"http://{registry}/v2/{repository}/manifests/{reference}",
        method="HEAD",
        headers={"Accept": MANIFEST_TYPES},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - test registry
        digest = resp.headers["Docker-Content-Digest"]
    assert digest, f"no Docker-Content-Digest header for {repository}"
    assert digest.startswith("sha256:"), digest
    return str(digest)


def buildah_build_and_push(
    workdir: Path,
    context: Path,
    ref: str,
    build_args: dict[str, str] | None = None,
    dockerfile: str = "Dockerfile",
    timeout: float = 900,
) -> str:
    """Build ``context`` with buildah on this machine and push it; return the pushed digest.

    Storage lives under ``workdir`` so tests never touch the machine's own.
    """
    base = [
        "buildah",
        "--root",
        str(workdir / "storage"),
        "--runroot",
        str(workdir / "run"),
        "--storage-driver",
        "vfs",
    ]
    args: list[str] = []
    for key, value in (build_args or {}).items():
        args += ["--build-arg", f"{key}={value}"]
    _run(
        [
            *base,
            "bud",
            "--isolation",
            "chroot",
            "--tls-verify=false",
            "--layers=false",
            "-f",
            str(context / dockerfile),
            *args,
            "-t",
            ref,
            str(context),
        ],
        timeout,
    )
    digestfile = workdir / "digest"
    _run([*base, "push", "--tls-verify=false", "--digestfile", str(digestfile), ref], 300)
    return digestfile.read_text().strip()


def _run(cmd: list[str], timeout: float) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd[:8])}... failed ({result.returncode}):\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )


def eventually(what: str, check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def wait_until_allowed(cluster: Cluster, *request: str) -> None:
    """Wait until ``kubectl auth can-i *request`` says yes (``request`` names who, with
    ``--as`` or ``--kubeconfig``): the API server's authorizer sees a new RoleBinding
    through its informer, not at once."""
    eventually(
        f"can-i {' '.join(request)}",
        lambda: cluster.kubectl("auth", "can-i", *request, check=False).stdout.strip() == "yes",
    )


@dataclass
class Cluster:
    """A real cluster, its kubectl, and what the local one offers besides."""

    kubeconfig: Path
    registry: str | None
    kubectl_path: str
    env: dict[str, str] = field(default_factory=dict)

    @property
    def is_local(self) -> bool:
        return "HEADWATER_GIT_ROOT" in self.env

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.kubectl_path, "--kubeconfig", str(self.kubeconfig), *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stderr}{result.stdout}"
            )
        return result

    def apply(self, obj: dict[str, object] | list[dict[str, object]], namespace: str) -> None:
        items = obj if isinstance(obj, list) else [obj]
        doc = json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
        self.kubectl("apply", "-n", namespace, "-f", "-", input=doc)

    def get_json(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def need_registry(self) -> str:
        if not self.registry:
            pytest.skip("REGISTRY is not set for this cluster; the test pushes images")
        return self.registry

    def image(self, name: str) -> str:
        """A locally made image (busybox, builder, python) on the local cluster."""
        key = f"HEADWATER_{name.upper()}_IMAGE"
        value = self.env.get(key) or os.environ.get(key)
        if not value:
            pytest.skip(f"{key} is not set: the test needs the locally made {name} image")
        return value


@dataclass
class GitServer:
    """Bare repositories served by the local cluster's git daemon to pods."""

    root: Path
    url: str
    workdir: Path

    def repo(self, files: dict[str, str], message: str = "initial") -> tuple[str, str]:
        """Publish a repository with these files; return (clone URL, commit SHA)."""
        name = f"repo-{uuid.uuid4().hex[:8]}"
        src = self.workdir / name
        src.mkdir()
        for rel, content in files.items():
            target = src / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
        git = ["git", "-c", "user.name=Headwater Tests", "-c", "user.email=tests@headwater.dev"]
        subprocess.run([*git, "init", "-q", "-b", "main"], cwd=src, check=True)
        subprocess.run([*git, "add", "."], cwd=src, check=True)
        subprocess.run([*git, "commit", "-q", "-m", message], cwd=src, check=True)
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=src, check=True, capture_output=True, text=True
        ).stdout.strip()
        subprocess.run(
            ["git", "clone", "-q", "--bare", str(src), str(self.root / f"{name}.git")], check=True
        )
        return f"{self.url}/{name}.git", sha


def registry_request(
    url: str, method: str = "GET", body: bytes = b"", headers: dict[str, str] | None = None
) -> Any:
    """A plain-HTTP request to the test registry; the caller closes the response."""
    req = urllib.request.Request(url, data=body or None, method=method, headers=headers or {})  # noqa: S310
    return urllib.request.urlopen(req, timeout=30)  # noqa: S310 - the test registry


def push_blob(registry: str, repository: str, blob: bytes) -> str:
    """Upload ``blob`` to ``repository`` (monolithic upload); its digest."""
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    with registry_request(f"http://{registry}/v2/{repository}/blobs/uploads/", "POST") as resp:
        location = resp.headers["Location"]
    if location.startswith("/"):
        location = f"http://{registry}{location}"
    separator = "&" if "?" in location else "?"
    with registry_request(
        f"{location}{separator}digest={digest}",
        "PUT",
        blob,
        {"Content-Type": "application/octet-stream"},
    ):
        pass
    return digest


def put_manifest(registry: str, repository: str, tag: str, media_type: str, body: bytes) -> str:
    """Put a manifest under ``tag``; its digest, checked against the body."""
    with registry_request(
        f"http://{registry}/v2/{repository}/manifests/{tag}",
        "PUT",
        body,
        {"Content-Type": media_type},
    ) as resp:
        digest = resp.headers["Docker-Content-Digest"]
    assert digest == "sha256:" + hashlib.sha256(body).hexdigest()
    return str(digest)


OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def push_image(
    registry: str,
    repository: str,
    tag: str,
    *,
    marker: str,
    os_name: str = "linux",
    architecture: str = "amd64",
) -> tuple[str, int]:
    """Push a tiny single-layer image through the distribution API; (digest, manifest size).

    ``marker`` lands in a label and in the layer, so each marker is a new digest.
    """
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        data = marker.encode()
        info = tarfile.TarInfo("marker")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    layer = buffer.getvalue()
    config = json.dumps(
        {
            "architecture": architecture,
            "os": os_name,
            "created": "2026-11-28T00:00:00Z",
            "config": {"Labels": {"marker": marker}, "Cmd": ["/marker"]},
            "rootfs": {
                "type": "layers",
                "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()],
            },
        }
    ).encode()
    config_digest = push_blob(registry, repository, config)
    layer_digest = push_blob(registry, repository, layer)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest,
                    "size": len(layer),
                }
            ],
        }
    ).encode()
    return put_manifest(registry, repository, tag, OCI_MANIFEST, manifest), len(manifest)


def push_index(
    registry: str, repository: str, tag: str, entries: list[tuple[str, int, str, str]]
) -> str:
    """Push an OCI index of (digest, size, os, architecture) manifests already in ``repository``."""
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": digest,
                    "size": size,
                    "platform": {"os": os_name, "architecture": arch},
                }
                for digest, size, os_name, arch in entries
            ],
        }
    ).encode()
    return put_manifest(registry, repository, tag, OCI_INDEX, index)


class GitHttpServer:
    """Git's smart HTTP protocol (git http-backend) behind Basic auth, for pods to clone from.

    Serves the bare repositories under ``root`` on ``host:port``; a request
    without the right ``user:password`` is answered 401, as a private Git host does.
    Without a ``user`` it serves anyone, as a public Git host does.
    """

    def __init__(self, root: Path, host: str, user: str = "", password: str = "") -> None:
        import base64
        import http.server
        import threading

        expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        backend = "/usr/lib/git-core/git-http-backend"

        class Handler(http.server.BaseHTTPRequestHandler):
            def _serve(self) -> None:
                if user and self.headers.get("Authorization") != expected:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="git"')
                    self.end_headers()
                    return
                path, _, query = self.path.partition("?")
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                env = {
                    "GIT_PROJECT_ROOT": str(root),
                    "GIT_HTTP_EXPORT_ALL": "1",
                    "PATH_INFO": path,
                    "QUERY_STRING": query,
                    "REQUEST_METHOD": self.command,
                    "CONTENT_TYPE": self.headers.get("Content-Type") or "",
                    "CONTENT_LENGTH": str(length),
                    **({"REMOTE_USER": user} if user else {}),
                }
                out = subprocess.run(
                    [backend], input=body, env=env, capture_output=True, timeout=60
                ).stdout
                head, _, payload = out.partition(b"\r\n\r\n")
                status = 200
                headers = []
                for line in head.decode().split("\r\n"):
                    key, _, value = line.partition(":")
                    if key.lower() == "status":
                        status = int(value.strip().split()[0])
                    elif key:
                        headers.append((key, value.strip()))
                self.send_response(status)
                for key, value in headers:
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = _serve
            do_POST = _serve

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


HEADWATER = str(Path(sys.executable).parent / "headwater")
LOCALCLUSTER = Path(__file__).resolve().parents[2] / "hack" / "cluster" / "localcluster.py"


ALLOWED_REGISTRIES_FOR_IMPORT = '[{domainName: "127.0.0.1:*", insecure: true}]'
"""What the in-process operator may import from besides its own registries: the loopback."""


def local_operator_env() -> dict[str, str]:
    """What `make run` gives the operator on the local cluster: `localcluster.py operator-env`."""
    result = subprocess.run(
        [sys.executable, str(LOCALCLUSTER), "operator-env"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode != 0:
        raise AssertionError(f"localcluster.py operator-env failed:\n{result.stderr}")
    env: dict[str, str] = {}
    for line in result.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            env[key] = value
    return env


def start_operator(
    namespaces: list[str], log: Path, settings: dict[str, str], *, standalone: bool = True
) -> subprocess.Popen[bytes]:
    """``headwater operator run --standalone`` watching only ``namespaces``, output to ``log``.

    Without ``standalone`` it elects a leader as a deployed replica does (set
    HEADWATER_LEASE_NAMESPACE and HEADWATER_LEASE_NAME in ``settings``).

    ``settings`` (KUBECONFIG, HEADWATER_*) are laid over this process's
    environment; health and metrics get free ports so that the operator never
    collides with another on this machine. Stop it with :func:`stop_operator`.
    """
    env = {
        **os.environ,
        "HEADWATER_HEALTH_PORT": str(free_port()),
        "HEADWATER_METRICS_PORT": str(free_port()),
        **settings,
    }
    args = [HEADWATER, "operator", "run", *(["--standalone"] if standalone else [])]
    for namespace in namespaces:
        args += ["--namespace", namespace]
    with log.open("ab") as out:
        return subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)


def stop_operator(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Stop an operator :func:`start_operator` started (SIGKILL after 30 s)."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


# --- the operator under test: starting it and cleaning up after it --------------------------

OPERATOR_NAMESPACE = "headwater-system"
OPERATOR_DEPLOYMENT = "headwater-operator"
OPERATOR_REPLICAS = 2
"""As deploy/install.yaml has them: a leader and a standby."""


def scale_operator(cluster: Cluster, replicas: int) -> None:
    """Scale the installed (deploy/install.yaml) operator's Deployment."""
    cluster.kubectl(
        "-n", OPERATOR_NAMESPACE, "scale", f"deploy/{OPERATOR_DEPLOYMENT}", f"--replicas={replicas}"
    )


def remove_admission_configuration(cluster: Cluster) -> None:
    """An operator that stopped leaves its webhook configuration pointing at nothing."""
    for kind in ("mutatingwebhookconfiguration", "validatingwebhookconfiguration"):
        cluster.kubectl("delete", kind, "headwater.dev", "--ignore-not-found", check=False)


def operator_pods_gone(cluster: Cluster) -> bool:
    pods = cluster.get_json(
        "pods", "-n", OPERATOR_NAMESPACE, "-l", "app.kubernetes.io/component=operator"
    )
    return not pods["items"]


def pause_installed_operator(cluster: Cluster) -> None:
    """If the installed operator runs, scale it to zero and wait until its pods are gone,
    so that the operator a test starts itself has nothing to race."""
    replicas = cluster.kubectl(
        "-n", OPERATOR_NAMESPACE, "get", f"deploy/{OPERATOR_DEPLOYMENT}", "-o",
        "jsonpath={.spec.replicas}", check=False,
    )  # fmt: skip
    if replicas.returncode == 0 and replicas.stdout.strip() not in ("", "0"):
        scale_operator(cluster, 0)
        eventually("the in-cluster operator to stop", lambda: operator_pods_gone(cluster))


def run_installed_operator(cluster: Cluster) -> None:
    """Scale the installed operator to the install's replicas and wait until it is Available."""
    scale_operator(cluster, OPERATOR_REPLICAS)
    result = cluster.kubectl(
        "-n", OPERATOR_NAMESPACE, "rollout", "status", f"deploy/{OPERATOR_DEPLOYMENT}",
        "--timeout=180s", check=False, timeout=200,
    )  # fmt: skip
    if result.returncode != 0:
        logs = cluster.kubectl(
            "-n", OPERATOR_NAMESPACE, "logs", f"deploy/{OPERATOR_DEPLOYMENT}", "--tail=50",
            check=False,
        )  # fmt: skip
        raise AssertionError(f"operator not Available:\n{result.stderr}\n{logs.stdout}")


def stop_installed_operator(cluster: Cluster, timeout: float = 60) -> None:
    """The clean-up after a test of the installed operator: scaled to zero, its webhook
    configurations removed, and (within ``timeout``) its pods gone; never raises on time."""
    scale_operator(cluster, 0)
    remove_admission_configuration(cluster)
    deadline = time.monotonic() + timeout
    while not operator_pods_gone(cluster) and time.monotonic() < deadline:
        time.sleep(0.5)


def end_process(process: subprocess.Popen[bytes], timeout: float = 30, group: bool = False) -> None:
    """SIGTERM (to its process group with ``group``), then SIGKILL if it outlives ``timeout``."""

    def send(sig: signal.Signals) -> None:
        if group:
            os.killpg(process.pid, sig)
        else:
            process.send_signal(sig)

    send(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        process.wait()


# --- builds: the objects, starting one, waiting for it, reading what it did ------------------

"""The CLI of this checkout's virtualenv."""
TERMINAL = ("Complete", "Failed", "Error", "Cancelled")
BUILD_TIMEOUT = 420


def headwater(
    cluster: Cluster, namespace: str, *args: str, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """``headwater <args> -n <namespace>`` against the cluster; the caller checks the result."""
    return subprocess.run(
        [HEADWATER, *args, "-n", namespace, "--kubeconfig", str(cluster.kubeconfig)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def imagestream(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "image.headwater.dev/v1",
        "kind": "ImageStream",
        "metadata": {"name": name},
    }


def buildconfig(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "build.headwater.dev/v1",
        "kind": "BuildConfig",
        "metadata": {"name": name},
        "spec": spec,
    }


def docker_bc(
    name: str,
    source: dict[str, Any],
    output: str | None,
    **extra: Any,
) -> dict[str, Any]:
    strategy = extra.pop("strategy", {"type": "Docker", "dockerStrategy": {}})
    spec: dict[str, Any] = {"source": source, "strategy": strategy, **extra}
    if output:
        spec["output"] = {"to": {"kind": "ImageStreamTag", "name": output}}
    return buildconfig(name, spec)


def push_secret_bc(cluster: Cluster, name: str, secret: str) -> dict[str, Any]:
    """A one-line Dockerfile BuildConfig pushing to ``<registry>/x/<name>:v1`` with
    ``secret`` as its push secret (a build of it waits while that Secret is missing)."""
    busybox = cluster.image("busybox")
    bc = docker_bc(name, {"type": "Dockerfile", "dockerfile": f"FROM {busybox}\n"}, None)
    bc["spec"]["output"] = {
        "to": {"kind": "DockerImage", "name": f"{cluster.need_registry()}/x/{name}:v1"},
        "pushSecret": {"name": secret},
    }
    return bc


def start_build(cluster: Cluster, namespace: str, bc: str, overrides: str = "") -> str:
    """Ask for a build the way `kubectl annotate` can; return the request id."""
    request = f"r{uuid.uuid4().hex[:10]}"
    cluster.kubectl(
        "annotate",
        "-n",
        namespace,
        f"buildconfig/{bc}",
        f"start.build.headwater.dev/{request}={overrides}",
    )
    return request


def build_of_request(cluster: Cluster, namespace: str, request: str) -> str:
    names: list[str] = []

    def made() -> bool:
        found = cluster.get_json(
            "builds", "-n", namespace, "-l", f"build.headwater.dev/request={request}"
        )["items"]
        names[:] = [b["metadata"]["name"] for b in found]
        return bool(names)

    eventually(f"the build of request {request}", made, timeout=60)
    assert len(names) == 1, names
    return names[0]


def build_json(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    result: dict[str, Any] = cluster.get_json(f"build/{name}", "-n", namespace)
    return result


def builds_of(cluster: Cluster, namespace: str, bc: str | None = None) -> list[dict[str, Any]]:
    """The namespace's Builds (of BuildConfig ``bc`` only, if given), by build number."""
    selector = ["-l", f"build.headwater.dev/buildconfig={bc}"] if bc else []
    found: list[dict[str, Any]] = cluster.get_json("builds", "-n", namespace, *selector)["items"]
    return sorted(found, key=lambda b: int(b["metadata"]["name"].rsplit("-", 1)[1]))


def build_log(cluster: Cluster, namespace: str, name: str, container: str | None = "build") -> str:
    """The log of the build's pod: one container's, or (``container=None``) all of them."""
    which = ["-c", container] if container else ["--all-containers"]
    result = cluster.kubectl("logs", "-n", namespace, f"job/{name}-build", *which, check=False)
    return result.stdout + result.stderr


def build_why(build: dict[str, Any]) -> str:
    """A build's phase, reason, message and log snippet, for an assertion's message."""
    status = build.get("status") or {}
    return (
        f"{status.get('phase')} ({status.get('reason')}): {status.get('message')}\n"
        f"{status.get('logSnippet', '')}"
    )


def wait_for_phase(
    cluster: Cluster, namespace: str, name: str, phases: tuple[str, ...] = TERMINAL,
    timeout: float = BUILD_TIMEOUT,
) -> dict[str, Any]:  # fmt: skip
    found: dict[str, Any] = {}

    def reached() -> bool:
        found.clear()
        found.update(build_json(cluster, namespace, name))
        return (found.get("status") or {}).get("phase") in phases

    try:
        eventually(f"build {name} to reach {'/'.join(phases)}", reached, timeout=timeout)
    except AssertionError:
        logs = build_log(cluster, namespace, name, container=None)
        raise AssertionError(
            f"{json.dumps(found.get('status'), indent=1)}\n{logs[-3000:]}"
        ) from None
    return found


def build_digest(cluster: Cluster, namespace: str, build: str) -> str:
    """Wait for the build to end; it must be Complete; the digest it pushed."""
    status = wait_for_phase(cluster, namespace, build)["status"]
    assert status["phase"] == "Complete", status
    return str(status["output"]["to"]["imageDigest"])


@contextlib.contextmanager
def operator_behind(
    cluster: Cluster,
    proxy: ApiProxy | None,
    namespaces: list[str],
    log: Path,
    import_rate_per_minute: int = 6000,
    interval_seconds: int = 5,
) -> Iterator[subprocess.Popen[bytes]]:
    """The operator as `make run` starts it, but through ``proxy`` (unless None, then
    straight to the API server) and only in ``namespaces``."""
    settings = {
        **(local_operator_env() if cluster.is_local else {}),
        "KUBECONFIG": str(proxy.kubeconfig if proxy else cluster.kubeconfig),
        # No admission webhook (its configuration is cluster-wide): BuildConfigs are not gated.
        "HEADWATER_ADMISSION_HOST": "",
        "HEADWATER_WEBHOOK_PORT": str(free_port()),
        "HEADWATER_IMPORT_INTERVAL_SECONDS": str(interval_seconds),
        "HEADWATER_IMPORT_RATE_PER_MINUTE": str(import_rate_per_minute),
        "HEADWATER_ALLOWED_REGISTRIES_FOR_IMPORT": ALLOWED_REGISTRIES_FOR_IMPORT,
    }
    if cluster.registry:
        settings["HEADWATER_REGISTRY"] = cluster.registry
        settings["HEADWATER_REGISTRY_INSECURE"] = "true"
    process = start_operator(namespaces, log, settings)
    try:
        yield process
    finally:
        stop_operator(process)
