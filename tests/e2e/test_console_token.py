"""``headwater console --token-auth`` against the real cluster: one console, two users,
each request acting with its own ServiceAccount token and nothing else.

The console runs as a process, as it would behind a proxy that passes each user's token
(``Authorization: Bearer``); its cluster address and CA come from the test kubeconfig's
cluster entry (there is no pod here for the in-cluster values), whose admin user must be
ignored: had the console used it, the Forbidden answers below would have been data.
"""

from __future__ import annotations

import contextlib
import html
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.registry_servers import free_port

from .helpers import Cluster, eventually, imagestream, wait_until_allowed
from .test_console import HEADWATER, request
from .test_imagestream_imports import docker_tag

pytestmark = pytest.mark.e2e

HOST = "console.test"
"""The Host the proxy would serve the console as (``--allowed-host``)."""


def account_token(cluster: Cluster, namespace: str, account: str, role: str) -> str:
    """A token of a new ServiceAccount bound to ``role`` in ``namespace`` only."""
    cluster.kubectl("create", "serviceaccount", account, "-n", namespace)
    cluster.kubectl(
        "create", "rolebinding", account, "-n", namespace, f"--clusterrole={role}",
        f"--serviceaccount={namespace}:{account}",
    )  # fmt: skip
    wait_until_allowed(
        cluster, "list", "imagestreams.image.headwater.dev", "-n", namespace,
        f"--as=system:serviceaccount:{namespace}:{account}",
    )  # fmt: skip
    return cluster.kubectl("create", "token", account, "-n", namespace).stdout.strip()


def call(
    port: int, method: str, path: str, token: str | None = None,
    body: dict[str, str] | None = None, host: str = "127.0.0.1",
) -> tuple[int, str]:  # fmt: skip
    """A request as the proxy in front of the console sends it: its Host, the bearer token."""
    headers = {"Host": HOST}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if body is not None:
        headers["Origin"] = f"https://{HOST}"
    status, _, text = request(port, method, path, body, headers, host=host)
    return status, text


def csrf_of(page: str) -> str:
    found = re.search(r'"X-CSRF-Token": "([^"]+)"', html.unescape(page))
    assert found, "no CSRF token in the page"
    return found.group(1)


@contextlib.contextmanager
def token_console(kubeconfig: Path, namespace: str, output: list[str]) -> Iterator[int]:
    port = free_port()
    process = subprocess.Popen(
        [HEADWATER, "console", "--token-auth", "--port", str(port), "--allowed-host", HOST,
         "--kubeconfig", str(kubeconfig), "-n", namespace],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if call(port, "GET", "/")[0] == 401:
                    break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.2)
        yield port
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=30)
        output.append(out)


def test_each_token_sees_and_does_only_what_it_may(
    cluster: Cluster, namespace: str, peer_namespace: str
) -> None:
    a, b = namespace, peer_namespace
    for ns, name in ((a, "alpha"), (b, "beta")):
        stream = imagestream(name)
        stream["spec"] = {"tags": [docker_tag("latest", f"registry.invalid/{name}:1")]}
        cluster.apply(stream, ns)
    editor = account_token(cluster, a, "editor", "edit")  # edit in A only
    viewer = account_token(cluster, b, "viewer", "view")  # view in B only
    output: list[str] = []
    with token_console(cluster.kubeconfig, a, output) as port:
        # No token, no answer: not a page, not an asset, not an action.
        for method, path in (
            ("GET", "/"), ("GET", f"/ns/{a}"), ("GET", f"/ns/{b}/imagestreams/beta"),
            ("GET", f"/ns/{a}/overview/events"), ("GET", "/static/console.css"),
            ("POST", f"/ns/{a}/imagestreams/alpha/import"),
        ):  # fmt: skip
            status, text = call(
                port, method, path, body={"tag": "latest"} if method == "POST" else None
            )
            assert status == 401, (method, path, status)
            assert "alpha" not in text
            assert "beta" not in text

        # Each token sees its own namespace's ImageStreams ...
        status, page = call(port, "GET", f"/ns/{a}", editor)
        assert status == 200
        assert f'href="/ns/{a}/imagestreams/alpha"' in page
        status, page = call(port, "GET", f"/ns/{b}", viewer)
        assert status == 200
        assert f'href="/ns/{b}/imagestreams/beta"' in page
        # ... and, for the other's namespace, a Forbidden message, not data.
        for token, ns, name in ((editor, b, "beta"), (viewer, a, "alpha")):
            status, page = call(port, "GET", f"/ns/{ns}", token)
            assert "Forbidden" in page, page
            assert f"imagestreams/{name}" not in page
            status, page = call(port, "GET", f"/ns/{ns}/imagestreams/{name}", token)
            assert status == 403
            assert "Forbidden" in page
            assert "registry.invalid" not in page

        # Each user's CSRF token is their own.
        status, editor_page = call(port, "GET", f"/ns/{a}/imagestreams/alpha", editor)
        status, viewer_page = call(port, "GET", f"/ns/{b}/imagestreams/beta", viewer)
        editor_csrf, viewer_csrf = csrf_of(editor_page), csrf_of(viewer_page)
        assert editor_csrf != viewer_csrf
        import_alpha = f"/ns/{a}/imagestreams/alpha/import"
        status, _ = call(
            port, "POST", import_alpha, editor, {"tag": "latest", "csrf_token": viewer_csrf}
        )
        assert status == 403

        # The view token's action is refused by the API server, with its message.
        status, page = call(
            port, "POST", f"/ns/{b}/imagestreams/beta/import", viewer,
            {"tag": "latest", "csrf_token": viewer_csrf},
        )  # fmt: skip
        assert status == 403
        assert "Forbidden" in page
        assert "you may not do this" in page
        # The edit token's goes through, as that account.
        status, page = call(
            port, "POST", import_alpha, editor, {"tag": "latest", "csrf_token": editor_csrf}
        )
        assert status == 200, page
        assert "Import of alpha:latest" in page

        # A token the API server does not know.
        status, page = call(port, "GET", f"/ns/{a}", "not-a-real-token")
        assert status == 401
        assert "your token was refused" in page

    (out,) = output
    assert "Traceback" not in out, out
    for token in (editor, viewer):
        assert token not in out


CONSOLE_PORT = 8090


def console_pod(image: str, namespace: str) -> dict[str, Any]:
    """The console in token mode, as an admin would run it behind a proxy: the restricted
    Pod Security profile, a read-only root, its own service account (mounted: the CA)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "console", "labels": {"app": "headwater-console"}},
        "spec": {
            "serviceAccountName": "console",
            "securityContext": {
                "runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "console",
                    "image": image,
                    "args": [
                        "console", "--token-auth", "--address", "0.0.0.0",
                        "--port", str(CONSOLE_PORT), "--allowed-host", HOST, "-n", namespace,
                    ],
                    "securityContext": {
                        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }  # fmt: skip


def test_in_a_pod_the_console_reads_its_cluster_from_the_pod_and_never_its_token(
    cluster: Cluster, namespace: str, operator_image: str
) -> None:
    """The in-cluster path for real: the address from KUBERNETES_SERVICE_*, the CA from the
    mount. The pod's own service account may view the namespace; a token with no rights
    must still see nothing, so the console cannot have used the pod's token."""
    if not cluster.is_local:
        pytest.skip("reaches the pod at its address from this machine")
    stream = imagestream("alpha")
    stream["spec"] = {"tags": [docker_tag("latest", "registry.invalid/alpha:1")]}
    cluster.apply(stream, namespace)
    editor = account_token(cluster, namespace, "editor", "edit")
    cluster.kubectl("create", "serviceaccount", "nobody", "-n", namespace)
    nobody = cluster.kubectl("create", "token", "nobody", "-n", namespace).stdout.strip()
    account_token(cluster, namespace, "console", "view")  # the pod's own account
    cluster.apply(console_pod(operator_image, namespace), namespace)
    cluster.kubectl(
        "wait", "--for=condition=Ready", "pod/console", "-n", namespace, "--timeout=180s"
    )
    address = cluster.get_json("pod/console", "-n", namespace)["status"]["podIP"]

    def serving() -> bool:
        try:
            return call(CONSOLE_PORT, "GET", "/", host=address)[0] == 401
        except OSError:
            return False

    eventually("the console in its pod to answer", serving, timeout=60)
    status, page = call(CONSOLE_PORT, "GET", f"/ns/{namespace}", editor, host=address)
    assert status == 200, page
    assert f'href="/ns/{namespace}/imagestreams/alpha"' in page
    status, page = call(CONSOLE_PORT, "GET", f"/ns/{namespace}", nobody, host=address)
    assert "Forbidden" in page, page
    assert "imagestreams/alpha" not in page
    status, page = call(
        CONSOLE_PORT, "GET", f"/ns/{namespace}/imagestreams/alpha", nobody, host=address
    )
    assert status == 403
    assert "registry.invalid" not in page
    logs = cluster.kubectl("logs", "pod/console", "-n", namespace).stdout
    assert "Traceback" not in logs, logs
    for token in (editor, nobody):
        assert token not in logs
