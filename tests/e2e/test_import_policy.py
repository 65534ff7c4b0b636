"""Imports go only where the admin allows: SSRF attempts by a namespace editor.

A tenant holding only ``edit`` in one namespace (impersonated: ``kubectl --as``)
writes ImageStream tags that aim the operator at the cluster's insides: the
API server's Service address, a name that resolves to loopback, and a
stand-in registry (on a listed loopback port) whose Bearer realm and blob
redirects point at an internal endpoint (another loopback port, by a name
that is not listed). Each tag ends with ``ImportSuccess``
False, reason ``NotAllowed``, and a message naming
``allowedRegistriesForImport``; the internal endpoint never receives a request.

The in-process operator lists only ``127.0.0.1:*`` (tests/e2e/conftest.py), so
``localhost`` is not listed even though it is the same machine. The in-cluster
operator, installed from the bundle with its empty list, is tested in
test_operator.py. Every address here is on this machine or the local cluster,
even for an operator without the policy that might watch the same namespace
(the cluster is shared): 169.254.169.254 is tested in
tests/unit/test_registry_ssrf.py, where connections other than to 127.0.0.1
are refused by the test itself.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import kopf.testing
import pytest

from .helpers import Cluster, eventually, wait_until_allowed
from .test_imagestream_imports import docker_tag, import_condition, stream

pytestmark = pytest.mark.e2e

TENANT = "hw-tenant"
CONFIG = json.dumps({"architecture": "amd64", "os": "linux", "config": {}}).encode()
CONFIG_DIGEST = "sha256:" + hashlib.sha256(CONFIG).hexdigest()
MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": CONFIG_DIGEST,
            "size": len(CONFIG),
        },
        "layers": [],
    }
).encode()
SETTING = "allowedRegistriesForImport"


@dataclass
class Recorder:
    """Requests an HTTP server on 127.0.0.1 received (path and Authorization header)."""

    port: int = 0
    requests: list[tuple[str, str]] = field(default_factory=list)


def _serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def internal() -> Iterator[Recorder]:
    """An internal service: answers everything like a token server, and counts."""
    recorder = Recorder()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            recorder.requests.append((self.path, self.headers.get("Authorization", "")))
            body = json.dumps({"token": "stolen", "expires_in": 300}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_HEAD = do_GET

        def log_message(self, *args: Any) -> None:
            pass

    for server in _serve(Handler):
        recorder.port = server.server_address[1]
        yield recorder


def _hostile(internal: Recorder, *, realm: bool) -> Iterator[Recorder]:
    """A registry on a listed port that either names an internal token realm
    (``realm``) or serves manifests whose blobs move to the internal endpoint,
    named ``localhost`` (repository ``redirect`` over plain HTTP,
    ``redirect-tls`` over HTTPS)."""
    recorder = Recorder()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            recorder.requests.append((self.path, self.headers.get("Authorization", "")))
            if realm:
                url = f"https://localhost:{internal.port}/token"
                self.send_response(401)
                self.send_header("WWW-Authenticate", f'Bearer realm="{url}",service="x"')
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif "/manifests/" in self.path:
                self.send_response(200)
                self.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
                self.send_header("Content-Length", str(len(MANIFEST)))
                self.end_headers()
                self.wfile.write(MANIFEST)
            else:
                scheme = "https" if self.path.startswith("/v2/redirect-tls/") else "http"
                self.send_response(307)
                self.send_header("Location", f"{scheme}://localhost:{internal.port}/meta-data/")
                self.send_header("Content-Length", "0")
                self.end_headers()

        do_HEAD = do_GET

        def log_message(self, *args: Any) -> None:
            pass

    for server in _serve(Handler):
        recorder.port = server.server_address[1]
        yield recorder


@pytest.fixture
def realm_registry(internal: Recorder) -> Iterator[Recorder]:
    yield from _hostile(internal, realm=True)


@pytest.fixture
def redirecting_registry(internal: Recorder) -> Iterator[Recorder]:
    yield from _hostile(internal, realm=False)


def as_tenant(cluster: Cluster, namespace: str, obj: dict[str, Any]) -> None:
    """Apply ``obj`` as a user who holds only ``edit`` in ``namespace``."""
    cluster.kubectl(
        "create", "rolebinding", "tenant-edit", "--clusterrole=edit", f"--user={TENANT}",
        "-n", namespace, check=False,
    )  # fmt: skip
    wait_until_allowed(
        cluster, "create", "imagestreams.image.headwater.dev", "-n", namespace, "--as", TENANT,
    )  # fmt: skip
    cluster.kubectl("--as", TENANT, "apply", "-n", namespace, "-f", "-", input=json.dumps(obj))


def refused(cluster: Cluster, namespace: str, tag: str) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def not_allowed() -> bool:
        found.clear()
        found.update(import_condition(cluster, namespace, "probe", tag))
        return found.get("reason") == "NotAllowed"

    try:
        eventually(f"the {tag} import refused", not_allowed)
    except AssertionError:
        raise AssertionError(f"{tag}: {found}") from None
    assert found["status"] == "False", found
    assert SETTING in found["message"], found
    return found


def test_a_tenant_cannot_aim_imports_inside_the_cluster(
    cluster: Cluster,
    namespace: str,
    operator_in_process: kopf.testing.KopfRunner,
    internal: Recorder,
    realm_registry: Recorder,
    redirecting_registry: Recorder,
) -> None:
    as_tenant(
        cluster,
        namespace,
        stream(
            "probe",
            docker_tag("apiserver", "10.96.0.1:443/api/v1:x", insecure=False),
            docker_tag("loopback-name", f"localhost:{internal.port}/secrets/app:v1"),
            docker_tag("realm", f"127.0.0.1:{realm_registry.port}/realm/app:v1"),
            docker_tag("redirect", f"127.0.0.1:{redirecting_registry.port}/redirect/app:v1"),
            docker_tag(
                "redirect-tls", f"127.0.0.1:{redirecting_registry.port}/redirect-tls/app:v1"
            ),
        ),
    )

    messages = {
        tag: refused(cluster, namespace, tag)["message"]
        for tag in ("apiserver", "loopback-name", "realm", "redirect", "redirect-tls")
    }

    # The list is set (127.0.0.1:*): anything else is not listed, inside or not.
    for tag, registry in (
        ("apiserver", "10.96.0.1:443"),
        ("loopback-name", f"localhost:{internal.port}"),
    ):
        assert messages[tag] == f"registry {registry} is not allowed: it is not listed in {SETTING}"
    # The realm passes its rule (https) and is refused at connect time, on the
    # address the name resolved to.
    assert messages["realm"].startswith(
        f"127.0.0.1:{realm_registry.port}/realm/app: the Bearer realm: localhost:{internal.port} "
        "resolves to "
    )
    assert messages["realm"].endswith(
        f"which is loopback: refused unless the host is listed in {SETTING}"
    )
    assert messages["redirect"].endswith(
        f"127.0.0.1:{redirecting_registry.port} redirected to plain HTTP at "
        f"localhost:{internal.port}, which is refused: a redirect must be https or listed "
        f"in {SETTING} with insecure: true"
    )
    assert f"localhost:{internal.port} resolves to " in messages["redirect-tls"]
    # The stand-in registry was asked; the internal endpoint never was.
    assert any(path.startswith("/v2/realm/") for path, _ in realm_registry.requests)
    blobs = [path for path, _ in redirecting_registry.requests if "/blobs/" in path]
    assert any(path.startswith("/v2/redirect/") for path in blobs)
    assert any(path.startswith("/v2/redirect-tls/") for path in blobs)
    assert internal.requests == []
