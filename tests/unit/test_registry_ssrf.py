"""SSRF attempts against the registry client, over real sockets on 127.0.0.1.

A hostile "registry" (a small aiohttp app on a loopback port listed in the
policy) names, as its Bearer realm or as the place a blob moved to, an
endpoint it should not reach: another loopback port that is not listed (an
"internal" service, which counts every request it gets and the credentials in
them), or the cloud metadata address 169.254.169.254. Every connection the
client makes goes through the event loop's ``sock_connect``, which these tests
record and only let through to 127.0.0.1, so no packet ever leaves for
169.254.169.254 even if the policy were broken.

Each attack is also run without a policy, where the internal endpoint does get
the credentials: the attack is real and the tests can fail.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import Any

import aiohttp.abc
import pytest
from aiohttp import web

from headwater.config import AllowedRegistry
from headwater.registry.client import (
    OCI_MANIFEST,
    GuardedResolver,
    RegistryClient,
    RegistryError,
)
from headwater.registry.policy import AccessPolicy

CONFIG = json.dumps({"architecture": "amd64", "os": "linux", "config": {}}).encode()
CONFIG_DIGEST = "sha256:" + hashlib.sha256(CONFIG).hexdigest()
MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": CONFIG_DIGEST,
            "size": len(CONFIG),
        },
        "layers": [],
    }
).encode()
TOKEN = "token-for-the-registry"
SECRET = "s3cret-password"


@dataclass(frozen=True)
class Login:
    username: str
    password: str = field(repr=False)


LOGIN = Login("alice", SECRET)


@dataclass
class Internal:
    """An endpoint inside the cluster the operator must never be made to call."""

    port: int
    requests: list[dict[str, str]] = field(default_factory=list)


@dataclass
class Hostile:
    """The stand-in registry: what it names as realm and where its blobs redirect."""

    port: int
    realm: str = ""
    blob_location: str = ""
    error_body: dict[str, Any] | None = None

    @property
    def registry(self) -> str:
        return f"127.0.0.1:{self.port}"


async def _serve(app: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, int(runner.addresses[0][1])


@pytest.fixture
async def internal() -> AsyncIterator[Internal]:
    endpoint = Internal(port=0)

    async def anything(request: web.Request) -> web.Response:
        endpoint.requests.append(dict(request.headers))
        # Answers like a token server, so a client that got here would go on.
        return web.json_response({"token": TOKEN, "expires_in": 300})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", anything)
    runner, endpoint.port = await _serve(app)
    try:
        yield endpoint
    finally:
        await runner.cleanup()


@pytest.fixture
async def hostile() -> AsyncIterator[Hostile]:
    state = Hostile(port=0)

    def authorized(request: web.Request) -> bool:
        return not state.realm or request.headers.get("Authorization") == f"Bearer {TOKEN}"

    async def manifests(request: web.Request) -> web.Response:
        if state.error_body is not None:
            return web.json_response(state.error_body, status=404)
        if not authorized(request):
            challenge = f'Bearer realm="{state.realm}",service="hostile"'
            return web.Response(status=401, headers={"WWW-Authenticate": challenge})
        return web.Response(body=MANIFEST, content_type=OCI_MANIFEST)

    async def blobs(request: web.Request) -> web.Response:
        if state.blob_location:
            return web.Response(status=307, headers={"Location": state.blob_location})
        return web.Response(body=CONFIG)

    app = web.Application()
    app.router.add_route("*", "/v2/{name:.+}/manifests/{reference}", manifests)
    app.router.add_get("/v2/{name:.+}/blobs/{digest}", blobs)
    runner, state.port = await _serve(app)
    try:
        yield state
    finally:
        await runner.cleanup()


@pytest.fixture
async def connections(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every address the client's sockets connect to; only 127.0.0.1 is let through."""
    attempts: list[tuple[str, int]] = []
    loop = asyncio.get_running_loop()
    real = loop.sock_connect

    async def sock_connect(sock: socket.socket, address: Any) -> None:
        attempts.append((str(address[0]), int(address[1])))
        if address[0] != "127.0.0.1":
            raise OSError(f"the test refuses to connect to {address[0]}")
        await real(sock, address)

    monkeypatch.setattr(loop, "sock_connect", sock_connect)
    return attempts


def guarded(hostile: Hostile) -> RegistryClient:
    """The operator's client: only the stand-in registry is listed (plain HTTP allowed)."""
    policy = AccessPolicy([AllowedRegistry(hostile.registry, insecure=True)])
    return RegistryClient(policy=policy, request_timeout=5)


async def resolve(client: RegistryClient, hostile: Hostile) -> Any:
    async with client:
        return await client.resolve(hostile.registry, "team/app", "v1", credentials=LOGIN,
                                    insecure=True)  # fmt: skip


async def refusal(coro: Awaitable[Any]) -> RegistryError:
    with pytest.raises(RegistryError) as caught:
        await coro
    assert caught.value.reason == "NotAllowed"
    return caught.value


# --- Bearer realms ---------------------------------------------------------------------


async def test_without_a_policy_the_realm_gets_the_credentials(
    hostile: Hostile, internal: Internal, connections: list[tuple[str, int]]
) -> None:
    hostile.realm = f"http://127.0.0.1:{internal.port}/token"

    resolved = await resolve(RegistryClient(request_timeout=5), hostile)

    assert resolved.digest.startswith("sha256:")
    assert len(internal.requests) == 1
    assert internal.requests[0]["Authorization"].startswith("Basic ")


async def test_a_plain_http_realm_on_an_unlisted_loopback_port_is_refused(
    hostile: Hostile, internal: Internal, connections: list[tuple[str, int]]
) -> None:
    hostile.realm = f"http://127.0.0.1:{internal.port}/token"

    error = await refusal(resolve(guarded(hostile), hostile))

    assert error.message == (
        f"{hostile.registry}/team/app: the Bearer realm http://127.0.0.1:{internal.port} of "
        f"{hostile.registry} is refused: a realm must be https, on the registry's own host, "
        "or listed in allowedRegistriesForImport"
    )
    assert internal.requests == []
    assert ("127.0.0.1", internal.port) not in connections
    assert SECRET not in error.message


async def test_an_https_realm_on_an_unlisted_loopback_port_is_refused_before_connecting(
    hostile: Hostile, internal: Internal, connections: list[tuple[str, int]]
) -> None:
    hostile.realm = f"https://127.0.0.1:{internal.port}/token"

    error = await refusal(resolve(guarded(hostile), hostile))

    assert error.message == (
        f"{hostile.registry}/team/app: the Bearer realm: 127.0.0.1:{internal.port} is loopback: "
        "refused unless the host is listed in allowedRegistriesForImport"
    )
    assert internal.requests == []
    assert ("127.0.0.1", internal.port) not in connections


async def test_a_realm_named_by_a_name_that_resolves_inside_is_refused_by_the_resolver(
    hostile: Hostile, internal: Internal, connections: list[tuple[str, int]]
) -> None:
    # https passes the realm rule; the address the name resolves to does not.
    hostile.realm = f"https://localhost:{internal.port}/token"
    client = guarded(hostile)

    error = await refusal(resolve(client, hostile))

    assert error.message.startswith(
        f"{hostile.registry}/team/app: the Bearer realm: localhost:{internal.port} resolves to "
    )
    assert error.message.endswith(
        "which is loopback: refused unless the host is listed in allowedRegistriesForImport"
    )
    assert client.resolver is not None
    assert [(h, p) for h, p, _ in client.resolver.refused] == [("localhost", internal.port)]
    assert internal.requests == []
    assert all(port != internal.port for _, port in connections)


async def test_a_listed_realm_is_used(
    hostile: Hostile, internal: Internal, connections: list[tuple[str, int]]
) -> None:
    hostile.realm = f"http://127.0.0.1:{internal.port}/token"
    policy = AccessPolicy([AllowedRegistry("127.0.0.1:*", insecure=True)])

    resolved = await resolve(RegistryClient(policy=policy, request_timeout=5), hostile)

    assert resolved.image is not None
    assert len(internal.requests) == 1


# --- redirects -----------------------------------------------------------------------------


async def test_without_a_policy_a_blob_redirect_reaches_the_internal_endpoint(
    hostile: Hostile, internal: Internal, connections: list[tuple[str, int]]
) -> None:
    hostile.blob_location = f"http://127.0.0.1:{internal.port}/latest/meta-data/"

    with pytest.raises(RegistryError):  # it answers JSON, not the blob
        await resolve(RegistryClient(request_timeout=5), hostile)

    assert len(internal.requests) == 1


async def test_a_blob_redirect_to_an_unlisted_loopback_port_is_refused(
    hostile: Hostile, internal: Internal, connections: list[tuple[str, int]]
) -> None:
    hostile.blob_location = f"http://127.0.0.1:{internal.port}/latest/meta-data/"

    error = await refusal(resolve(guarded(hostile), hostile))

    assert error.message == (
        f"{hostile.registry}/team/app:v1: blob {CONFIG_DIGEST}: {hostile.registry} redirected "
        f"to plain HTTP at 127.0.0.1:{internal.port}, which is refused: a redirect must be "
        "https or listed in allowedRegistriesForImport with insecure: true"
    )
    assert internal.requests == []
    assert ("127.0.0.1", internal.port) not in connections


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        (
            "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
            "redirected to plain HTTP at 169.254.169.254:80, which is refused: a redirect "
            "must be https or listed in allowedRegistriesForImport with insecure: true",
        ),
        (
            "https://169.254.169.254/latest/meta-data/",
            "169.254.169.254:443 is link-local: refused unless the host is listed in "
            "allowedRegistriesForImport",
        ),
        (
            "https://[fe80::a9fe:a9fe]/latest/meta-data/",
            "[fe80::a9fe:a9fe]:443 is link-local: refused unless the host is listed in "
            "allowedRegistriesForImport",
        ),
    ],
)
async def test_a_blob_redirect_to_the_metadata_address_is_refused_before_connecting(
    hostile: Hostile, connections: list[tuple[str, int]], location: str, expected: str
) -> None:
    hostile.blob_location = location
    client = guarded(hostile)

    error = await refusal(resolve(client, hostile))

    assert error.message.endswith(expected)
    # The registry was reached (manifest, blob); nothing else was even tried.
    assert connections
    assert all(host == "127.0.0.1" for host, _ in connections)
    assert client.resolver is not None
    assert client.resolver.refused == []


async def test_an_import_naming_the_metadata_address_is_refused_before_connecting(
    connections: list[tuple[str, int]],
) -> None:
    client = RegistryClient(policy=AccessPolicy([]), request_timeout=5)

    async with client:
        error = await refusal(client.resolve("169.254.169.254", "latest/meta-data", "v1"))
        tags = await refusal(client.list_tags("169.254.169.254:80", "x"))

    assert error.message == (
        "169.254.169.254 is link-local: refused unless the host is listed in "
        "allowedRegistriesForImport"
    )
    assert tags.message.startswith("169.254.169.254:80 is link-local")
    assert connections == []


async def test_an_unlisted_registry_is_refused_when_the_list_is_set(
    hostile: Hostile, connections: list[tuple[str, int]]
) -> None:
    client = RegistryClient(policy=AccessPolicy([AllowedRegistry("quay.io")]))

    async with client:
        error = await refusal(client.resolve(hostile.registry, "team/app", "v1"))

    assert error.message == (
        f"registry {hostile.registry} is not allowed: it is not listed in "
        "allowedRegistriesForImport"
    )
    assert connections == []


# --- DNS rebinding ---------------------------------------------------------------------------


class _Rebinding(aiohttp.abc.AbstractResolver):
    """A DNS that answers a public address first and the metadata address after."""

    def __init__(self) -> None:
        self.answers = ["192.0.2.7", "169.254.169.254"]

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[aiohttp.abc.ResolveResult]:
        address = self.answers.pop(0)
        return [
            {"hostname": host, "host": address, "port": port, "family": socket.AF_INET,
             "proto": 0, "flags": 0}
        ]  # fmt: skip

    async def close(self) -> None:
        return None


async def test_the_address_checked_is_the_address_resolved_each_time() -> None:
    resolver = GuardedResolver(AccessPolicy([]), _Rebinding())

    first = await resolver.resolve("rebind.example.com", 443)
    with pytest.raises(OSError, match=r"resolves to 169\.254\.169\.254, which is link-local"):
        await resolver.resolve("rebind.example.com", 443)

    assert first[0]["host"] == "192.0.2.7"
    assert resolver.refused == [("rebind.example.com", 443, "169.254.169.254")]


# --- error text ------------------------------------------------------------------------------


async def test_status_quotes_the_error_code_never_the_registrys_text(
    hostile: Hostile, connections: list[tuple[str, int]]
) -> None:
    hostile.error_body = {
        "errors": [
            {
                "code": "MANIFEST_UNKNOWN",
                "message": "log in at http://evil.example/phish",
                "detail": "x",
            }
        ]
    }
    client = guarded(hostile)

    error = await resolve_error(client, hostile)
    hostile.error_body = {"errors": [{"code": "<a href=http://evil.example>", "message": "m"}]}
    odd = await resolve_error(guarded(hostile), hostile)

    assert error.reason == "NotFound"
    assert error.message == f"{hostile.registry}/team/app:v1: not found (404 MANIFEST_UNKNOWN)"
    assert odd.message == f"{hostile.registry}/team/app:v1: not found (404)"


async def resolve_error(client: RegistryClient, hostile: Hostile) -> RegistryError:
    with pytest.raises(RegistryError) as caught:
        await resolve(client, hostile)
    return caught.value
