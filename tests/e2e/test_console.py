"""``headwater console`` against the real cluster, without a browser (the browser tests
drive the same pages): the overview and a stream's page as the user, a tag promoted
through the page's form, the change arriving on the page's live stream, and the guards.

The console runs as a process with ``--kubeconfig`` and ``-n``; the operator runs
in-process and imports the tags.
"""

from __future__ import annotations

import contextlib
import http.client
import re
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import kopf.testing
import pytest

from tests.registry_servers import free_port

from .helpers import (
    Cluster,
    GitServer,
    build_json,
    docker_bc,
    eventually,
    imagestream,
    push_image,
    wait_until_allowed,
)
from .test_imagestream_imports import docker_tag, newest_image

pytestmark = pytest.mark.e2e

HEADWATER = str(Path(sys.executable).parent / "headwater")


@contextlib.contextmanager
def running_console(kubeconfig: Path, namespace: str) -> Iterator[int]:
    """``headwater console`` as a process on a free port; its port once it answers."""
    port = free_port()
    process = subprocess.Popen(
        [HEADWATER, "console", "--no-browser", "--port", str(port),
         "--kubeconfig", str(kubeconfig), "-n", namespace],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                status, _, _ = request(port, "GET", "/")
                if status in (200, 302):
                    break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.2)
        yield port
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
        # A bug would have logged a trace; API refusals are messages, never traces.
        assert "Traceback" not in output, output


@pytest.fixture
def console(cluster: Cluster, namespace: str) -> Iterator[int]:
    with running_console(cluster.kubeconfig, namespace) as port:
        yield port


def viewer_kubeconfig(cluster: Cluster, namespace: str, path: Path) -> Path:
    """A kubeconfig for a ServiceAccount bound to ``view`` in ``namespace`` only."""
    import yaml

    cluster.kubectl("create", "serviceaccount", "viewer", "-n", namespace)
    cluster.kubectl(
        "create", "rolebinding", "viewer", "-n", namespace, "--clusterrole=view",
        f"--serviceaccount={namespace}:viewer",
    )  # fmt: skip
    token = cluster.kubectl("create", "token", "viewer", "-n", namespace).stdout.strip()
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])
    server = next(c for c in admin["clusters"] if c["name"] == context["context"]["cluster"])
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [server],
                "users": [{"name": "viewer", "user": {"token": token}}],
                "contexts": [
                    {
                        "name": "viewer",
                        "context": {
                            "cluster": server["name"], "user": "viewer", "namespace": namespace,
                        },
                    }
                ],
                "current-context": "viewer",
            }
        )
    )  # fmt: skip
    wait_until_allowed(
        cluster, "get", "imagestreams.image.headwater.dev", "-n", namespace, "--kubeconfig",
        str(path),
    )  # fmt: skip
    return path


def request(
    port: int, method: str, path: str, body: dict[str, str] | None = None,
    headers: dict[str, str] | None = None, host: str = "127.0.0.1",
) -> tuple[int, dict[str, str], str]:  # fmt: skip
    """One HTTP exchange with the console at ``host:port``: status, headers and text."""
    connection = http.client.HTTPConnection(host, port, timeout=30)
    data = urllib.parse.urlencode(body) if body is not None else None
    sent = {"Host": f"{host}:{port}", **(headers or {})}
    if data is not None:
        sent["Content-Type"] = "application/x-www-form-urlencoded"
    connection.request(method, path, body=data, headers=sent)
    response = connection.getresponse()
    text = response.read().decode()
    connection.close()
    return response.status, dict(response.getheaders()), text


def token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF token in the page"
    return found.group(1)


class Events:
    """An SSE stream read line by line."""

    def __init__(self, port: int, path: str) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.connection.request("GET", path, headers={"Host": f"127.0.0.1:{port}"})
        self.response = self.connection.getresponse()
        assert self.response.status == 200
        assert self.response.getheader("Content-Type") == "text/event-stream"

    def until(self, name: str, wanted: str, timeout: float = 90) -> str:
        deadline = time.monotonic() + timeout
        event, data = "", []
        while time.monotonic() < deadline:
            line = self.response.readline().decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
            elif line == "":
                text = "\n".join(data)
                if event == name and wanted in text:
                    return text
                event, data = "", []
        raise AssertionError(f"no {name} event with {wanted!r} after {timeout}s")

    def close(self) -> None:
        self.connection.close()


def test_console_overview_promote_and_live_update(
    cluster: Cluster, namespace: str, operator_in_process: kopf.testing.KopfRunner, console: int
) -> None:
    registry = cluster.need_registry()
    digest, _ = push_image(registry, f"{namespace}/web", "1.0", marker="console")
    cluster.apply(
        {
            "apiVersion": "image.headwater.dev/v1",
            "kind": "ImageStream",
            "metadata": {"name": "web"},
            "spec": {"tags": [docker_tag("1.0", f"{registry}/{namespace}/web:1.0")]},
        },
        namespace,
    )
    eventually("the import", lambda: newest_image(cluster, namespace, "web", "1.0") == digest)

    status, headers, html = request(console, "GET", f"/ns/{namespace}")
    assert status == 200
    assert f'href="/ns/{namespace}/imagestreams/web"' in html
    assert "script-src 'self'" in headers["Content-Security-Policy"]

    # The guards, on the real server.
    status, _, _ = request(console, "GET", f"/ns/{namespace}", headers={"Host": "evil.test:80"})
    assert status == 421
    status, _, _ = request(
        console, "POST", f"/ns/{namespace}/imagestreams/web/tag",
        {"source": "web:1.0", "destination": "web:prod"},
    )  # fmt: skip
    assert status == 403

    status, _, page = request(console, "GET", f"/ns/{namespace}/imagestreams/web")
    assert status == 200
    assert digest in page
    events = Events(console, f"/ns/{namespace}/imagestreams/web/events")
    try:
        events.until("tags", "web:1.0")
        status, _, answer = request(
            console, "POST", f"/ns/{namespace}/imagestreams/web/tag",
            {"source": "web:1.0", "destination": "web:prod", "csrf_token": token(page)},
            headers={"HX-Request": "true"},
        )  # fmt: skip
        assert status == 200
        assert f"Tag {namespace}/web:prod set to web:1.0." in answer
        # The operator records the new tag; the page's stream shows it without a reload.
        section = events.until("tags", "web:prod")
        assert digest in section
    finally:
        events.close()
    spec = cluster.get_json("imagestream/web", "-n", namespace)["spec"]["tags"]
    assert any(t["name"] == "prod" for t in spec)

    # An object that is not there: a message, not a trace.
    status, _, missing = request(console, "GET", f"/ns/{namespace}/builds/nope-1")
    assert status == 404
    assert "Not found" in missing


def test_console_starts_a_build_follows_its_log_and_traces_it(
    cluster: Cluster, namespace: str, git_server: GitServer,
    operator_in_process: kopf.testing.KopfRunner, console: int,
) -> None:  # fmt: skip
    cluster.need_registry()
    busybox = cluster.image("busybox")
    url, sha = git_server.repo(
        {"Dockerfile": f"FROM {busybox}\nRUN echo console-log-marker\n"}, message="from the console"
    )
    cluster.apply(imagestream("web"), namespace)
    cluster.apply(docker_bc("web", {"type": "Git", "git": {"uri": url}}, "web:latest"), namespace)

    status, _, page = request(console, "GET", f"/ns/{namespace}/buildconfigs/web")
    assert status == 200
    status, _, answer = request(
        console, "POST", f"/ns/{namespace}/buildconfigs/web/start",
        {"commit": "", "env": "GREETING=hello", "csrf_token": token(page)},
        headers={"HX-Request": "true"},
    )  # fmt: skip
    assert status == 200
    assert "Build web-1 started." in answer, answer

    # The log, read by the code of `headwater logs -f`, arrives line by line.
    log = Events(console, f"/ns/{namespace}/builds/web-1/log")
    try:
        log.until("line", f"Commit: {sha}", timeout=240)
        log.until("line", "console-log-marker", timeout=240)
        ended = log.until("end", "The log ended", timeout=240)
        assert "Complete" in ended
    finally:
        log.close()
    build = build_json(cluster, namespace, "web-1")
    assert {"name": "GREETING", "value": "hello"} in build["spec"]["strategy"]["dockerStrategy"][
        "env"
    ]

    status, _, traced = request(console, "GET", f"/ns/{namespace}/trace?tag=web:latest")
    assert status == 200
    assert f"{sha[:12]} from the console" in traced
    assert "Image pushed" in traced
    assert "Tag web:latest moved" in traced


def test_console_says_what_a_viewer_may_not_do(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    cluster.apply(
        {
            "apiVersion": "image.headwater.dev/v1",
            "kind": "ImageStream",
            "metadata": {"name": "web"},
            "spec": {"tags": [docker_tag("1.0", "registry.invalid/web:1.0")]},
        },
        namespace,
    )
    kubeconfig = viewer_kubeconfig(cluster, namespace, tmp_path / "viewer.kubeconfig")
    with running_console(kubeconfig, namespace) as port:
        status, _, page = request(port, "GET", f"/ns/{namespace}/imagestreams/web")
        assert status == 200  # view may read
        status, _, answer = request(
            port, "POST", f"/ns/{namespace}/imagestreams/web/tag",
            {"source": "registry.invalid/web:2.0", "destination": "web:prod",
             "csrf_token": token(page)},
            headers={"HX-Request": "true"},
        )  # fmt: skip
        assert status == 200
        assert 'role="alert"' in answer
        assert "Forbidden" in answer
        assert "you may not do this" in answer
        # Another namespace: the overview says so per section, and nothing breaks.
        status, _, other = request(port, "GET", "/ns/kube-system")
        assert status == 200
        assert "Forbidden" in other
    tags = cluster.get_json("imagestream/web", "-n", namespace)["spec"]["tags"]
    assert [t["name"] for t in tags] == ["1.0"]
