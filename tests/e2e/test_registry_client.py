"""The registry client against real registry processes (tests/registry_servers.py).

No Kubernetes cluster: each module-scoped fixture starts a CNCF distribution
registry on 127.0.0.1 and pushes images with skopeo. The only stand-ins are a
socket that never answers (for timeouts) and a small aiohttp app for the
answers distribution cannot be made to give (429, 503, a malformed
challenge).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web

from headwater.registry.client import (
    OCI_INDEX,
    OCI_MANIFEST,
    Platform,
    RegistryClient,
    RegistryError,
)
from tests.registry_servers import (
    ImageSpec,
    OciLayout,
    RegistryServer,
    cached_image_archive,
    push_images,
    running_registry,
    skopeo_copy,
    skopeo_raw_digest,
    start_registry,
)

pytestmark = pytest.mark.e2e

APP = ImageSpec(
    content=b"app v1\n",
    labels={"org.opencontainers.image.title": "demo", "io.k8s.display-name": "Demo app"},
    entrypoint=("/hello",),
    cmd=("--serve", "8080"),
    user="1001",
    exposed_ports=("8080/tcp", "53/udp"),
    env=("PATH=/bin", "MODE=test"),
    working_dir="/srv",
    created="2024-05-06T07:08:09.123456789Z",
)
PLATFORMS = ("linux/amd64", "linux/arm64/v8", "linux/arm/v7")
PAGED_TAGS = ("a1", "b2", "c3", "d4", "e5")


@dataclass(frozen=True)
class Login:
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class IdentityLogin:
    """A ``docker login`` that stored an OAuth2 refresh token instead of a password."""

    username: str
    password: str
    identity_token: str = field(repr=False)


IDENTITY_TOKEN = "refresh-token-for-tests"


@dataclass
class Pushed:
    server: RegistryServer
    app: OciLayout
    multi: OciLayout | None = None


@pytest.fixture
async def client() -> AsyncIterator[RegistryClient]:
    c = RegistryClient(request_timeout=10)
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture(scope="module")
def anonymous(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pushed]:
    root = tmp_path_factory.mktemp("anonymous")
    with running_registry(root / "registry") as server:
        app = push_images(server, "demo/app", "v1", [APP], workdir=root)
        multi = push_images(
            server,
            "demo/multi",
            "v1",
            [ImageSpec(platform=p, content=p.encode()) for p in PLATFORMS],
            workdir=root,
        )
        yield Pushed(server, app, multi)


@pytest.fixture(scope="module")
def basic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pushed]:
    root = tmp_path_factory.mktemp("basic")
    with running_registry(root / "registry", auth="htpasswd") as server:
        yield Pushed(server, push_images(server, "demo/app", "v1", [APP], workdir=root))


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pushed]:
    root = tmp_path_factory.mktemp("token")
    with running_registry(
        root / "registry", auth="token", refresh_tokens={IDENTITY_TOKEN: "tester"}
    ) as server:
        yield Pushed(server, push_images(server, "demo/app", "v1", [APP], workdir=root))


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pushed]:
    root = tmp_path_factory.mktemp("tls")
    with running_registry(root / "registry", tls=True) as server:
        yield Pushed(server, push_images(server, "demo/app", "v1", [APP], workdir=root))


def _login(server: RegistryServer) -> Login:
    assert server.username is not None
    assert server.password is not None
    return Login(server.username, server.password)


# --- anonymous registry: manifests, configs, digests ----------------------------------


async def test_resolve_by_tag_reads_digest_and_config(
    client: RegistryClient, anonymous: Pushed
) -> None:
    server = anonymous.server
    resolved = await client.resolve(server.address, "demo/app", "v1", insecure=True)

    assert resolved.digest == anonymous.app.digest
    assert resolved.digest == skopeo_raw_digest(server, "demo/app", "v1")
    assert resolved.reference_digest == resolved.digest
    assert resolved.media_type == OCI_MANIFEST
    assert resolved.platforms == ()
    assert not resolved.unchanged
    image = resolved.image
    assert image is not None
    written = anonymous.app.images[0]
    assert image.digest == written.digest
    assert image.config_digest == written.config_digest
    assert image.size == written.image_size
    assert image.layers == 1
    config = image.config
    assert config is not None
    assert config.created == datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    assert dict(config.labels) == dict(APP.labels)
    assert config.entrypoint == ("/hello",)
    assert config.cmd == ("--serve", "8080")
    assert config.user == "1001"
    assert config.exposed_ports == ("53/udp", "8080/tcp")
    assert config.env == ("PATH=/bin", "MODE=test")
    assert config.working_dir == "/srv"
    assert (config.os, config.architecture) == ("linux", "amd64")
    # Without a known digest a HEAD would only add a round trip.
    assert client.stats.manifest_requests == 1
    assert client.stats.blob_requests == 1


async def test_known_digest_costs_exactly_one_manifest_request(
    client: RegistryClient, anonymous: Pushed
) -> None:
    digest = anonymous.app.digest

    resolved = await client.resolve(
        anonymous.server.address, "demo/app", "v1", insecure=True, known_digest=digest
    )

    assert resolved.unchanged
    assert resolved.digest == digest
    assert resolved.image is None
    assert resolved.media_type == OCI_MANIFEST
    assert client.stats.manifest_requests == 1
    assert client.stats.blob_requests == 0


async def test_a_new_push_under_the_same_tag_is_seen(
    client: RegistryClient, anonymous: Pushed, tmp_path: Path
) -> None:
    server = anonymous.server
    first = push_images(
        server, "demo/moving", "latest", [ImageSpec(content=b"1")], workdir=tmp_path
    )
    before = await client.resolve(server.address, "demo/moving", "latest", insecure=True)
    assert before.digest == first.digest

    second = push_images(
        server, "demo/moving", "latest", [ImageSpec(content=b"2")], workdir=tmp_path
    )
    after = await client.resolve(
        server.address, "demo/moving", "latest", insecure=True, known_digest=before.digest
    )

    assert second.digest != first.digest
    assert not after.unchanged
    assert after.digest == second.digest == skopeo_raw_digest(server, "demo/moving", "latest")


async def test_resolve_by_digest(client: RegistryClient, anonymous: Pushed) -> None:
    digest = anonymous.app.digest

    resolved = await client.resolve(anonymous.server.address, "demo/app", digest, insecure=True)

    assert resolved.digest == digest
    assert resolved.image is not None
    assert resolved.image.config is not None


async def test_index_legacy_picks_the_platform_image(
    client: RegistryClient, anonymous: Pushed
) -> None:
    multi = anonymous.multi
    assert multi is not None
    arm64 = next(i for i in multi.images if i.platform == "linux/arm64/v8")

    # "linux/arm64" names the same platform as the index's "linux/arm64/v8".
    resolved = await client.resolve(
        anonymous.server.address,
        "demo/multi",
        "v1",
        insecure=True,
        platform=Platform("linux", "arm64"),
    )

    assert resolved.digest == arm64.digest
    assert resolved.reference_digest == multi.digest
    assert resolved.media_type == OCI_MANIFEST
    assert resolved.image is not None
    assert resolved.image.config is not None
    assert resolved.image.config.architecture == "arm64"
    assert [str(p.platform) for p in resolved.platforms] == list(PLATFORMS)
    # The index, the arm64 manifest, its config; and on the next import, one HEAD.
    assert (client.stats.manifest_requests, client.stats.blob_requests) == (2, 1)
    again = await client.resolve(
        anonymous.server.address,
        "demo/multi",
        "v1",
        insecure=True,
        platform=Platform("linux", "arm64"),
        known_digest=resolved.reference_digest,
    )
    assert again.unchanged
    assert client.stats.manifest_requests == 3


async def test_index_preserve_original_keeps_the_index(
    client: RegistryClient, anonymous: Pushed
) -> None:
    multi = anonymous.multi
    assert multi is not None
    amd64 = next(i for i in multi.images if i.platform == "linux/amd64")

    resolved = await client.resolve(
        anonymous.server.address, "demo/multi", "v1", insecure=True, preserve_original=True
    )

    assert (
        resolved.digest == multi.digest == skopeo_raw_digest(anonymous.server, "demo/multi", "v1")
    )
    assert resolved.media_type == OCI_INDEX
    assert [(p.digest, str(p.platform)) for p in resolved.platforms] == [
        (i.digest, i.platform) for i in multi.images
    ]
    assert resolved.platforms[2].platform == Platform("linux", "arm", "v7")
    assert resolved.image is not None
    assert resolved.image.digest == amd64.digest


async def test_index_without_the_platform(client: RegistryClient, anonymous: Pushed) -> None:
    s390x = Platform("linux", "s390x")
    with pytest.raises(RegistryError) as caught:
        await client.resolve(
            anonymous.server.address, "demo/multi", "v1", insecure=True, platform=s390x
        )
    assert caught.value.reason == "NoMatchingPlatform"
    assert "linux/arm64/v8" in caught.value.message

    # PreserveOriginal imports the index anyway, just without an image to describe.
    kept = await client.resolve(
        anonymous.server.address,
        "demo/multi",
        "v1",
        insecure=True,
        platform=s390x,
        preserve_original=True,
    )
    assert kept.image is None
    assert len(kept.platforms) == 3


async def test_unknown_tag_and_repository_are_not_found(
    client: RegistryClient, anonymous: Pushed
) -> None:
    for repository, tag in (("demo/app", "nope"), ("demo/absent", "v1")):
        with pytest.raises(RegistryError) as caught:
            await client.resolve(anonymous.server.address, repository, tag, insecure=True)
        assert caught.value.reason == "NotFound"
        assert caught.value.status == 404


async def test_limits_cut_off_large_bodies(anonymous: Pushed) -> None:
    address = anonymous.server.address
    async with RegistryClient(max_manifest_bytes=100) as small_manifests:
        with pytest.raises(RegistryError) as caught:
            await small_manifests.resolve(address, "demo/app", "v1", insecure=True)
        assert caught.value.reason == "TooLarge"
    async with RegistryClient(max_config_bytes=64) as small_configs:
        with pytest.raises(RegistryError) as caught:
            await small_configs.resolve(address, "demo/app", "v1", insecure=True)
        assert caught.value.reason == "TooLarge"


async def test_list_tags(client: RegistryClient, anonymous: Pushed) -> None:
    server = anonymous.server
    tags = ["a1", "b2", "c3", "d4", "e5"]
    for tag in tags:
        skopeo_copy(anonymous.app.skopeo_source, server, "demo/tags", tag)

    # distribution 2.8 ignores ``n`` for tags (pagination came with 3.0) and
    # answers with every tag in one page; test_list_tags_follows_link_pages
    # covers a registry that pages.
    listed = await client.list_tags(server.address, "demo/tags", insecure=True, page_size=2)

    assert sorted(listed) == tags
    limited = await client.list_tags(
        server.address, "demo/tags", insecure=True, page_size=2, limit=3
    )
    assert limited == listed[:3]


async def test_a_stopped_registry_is_unreachable(client: RegistryClient, tmp_path: Path) -> None:
    server = start_registry(tmp_path / "registry")
    server.stop()

    for insecure in (True, False):
        with pytest.raises(RegistryError) as caught:
            await client.resolve(server.address, "demo/app", "v1", insecure=insecure)
        assert caught.value.reason == "Unreachable"


async def test_plain_http_needs_insecure(client: RegistryClient, anonymous: Pushed) -> None:
    with pytest.raises(RegistryError) as caught:
        await client.resolve(anonymous.server.address, "demo/app", "v1")
    assert caught.value.reason in ("TLSError", "Unreachable")


# --- authentication -------------------------------------------------------------------


async def test_basic_auth(client: RegistryClient, basic: Pushed) -> None:
    server = basic.server
    login = _login(server)

    resolved = await client.resolve(
        server.address, "demo/app", "v1", insecure=True, credentials=login
    )
    assert resolved.digest == basic.app.digest
    requests = client.stats.manifest_requests
    # The challenge is remembered: the next import sends the login at once.
    again = await client.resolve(
        server.address,
        "demo/app",
        "v1",
        insecure=True,
        credentials=login,
        known_digest=resolved.digest,
    )
    assert again.unchanged
    assert client.stats.manifest_requests == requests + 1


@pytest.mark.parametrize("wrong", ["password", "anonymous"])
async def test_basic_auth_refused(client: RegistryClient, basic: Pushed, wrong: str) -> None:
    server = basic.server
    login = Login(server.username or "", "not-the-password") if wrong == "password" else None

    with pytest.raises(RegistryError) as caught:
        await client.resolve(server.address, "demo/app", "v1", insecure=True, credentials=login)

    assert caught.value.reason == "Unauthorized"
    assert caught.value.status == 401
    assert "not-the-password" not in str(caught.value)
    assert "not-the-password" not in repr(caught.value)


async def test_token_auth_fetches_one_token_for_two_imports(
    client: RegistryClient, token: Pushed
) -> None:
    server = token.server
    assert server.token_server is not None
    before = server.token_server.request_count
    login = _login(server)

    first = await client.resolve(server.address, "demo/app", "v1", insecure=True, credentials=login)
    second = await client.resolve(
        server.address,
        "demo/app",
        "v1",
        insecure=True,
        credentials=login,
        known_digest=first.digest,
    )

    assert first.digest == token.app.digest
    assert second.unchanged
    assert client.stats.token_requests == 1
    assert server.token_server.request_count == before + 1
    method, user, scope = server.token_server.requests[-1]
    assert (method, user, scope) == ("GET", login.username, "repository:demo/app:pull")


async def test_token_auth_with_an_identity_token(client: RegistryClient, token: Pushed) -> None:
    server = token.server
    assert server.token_server is not None

    resolved = await client.resolve(
        server.address,
        "demo/app",
        "v1",
        insecure=True,
        credentials=IdentityLogin("<token>", "", IDENTITY_TOKEN),
    )

    assert resolved.digest == token.app.digest
    assert server.token_server.requests[-1] == ("POST", "tester", "repository:demo/app:pull")


async def test_token_auth_refused(client: RegistryClient, token: Pushed) -> None:
    server = token.server
    login = Login(server.username or "", "wrong-secret")

    with pytest.raises(RegistryError) as caught:
        await client.resolve(server.address, "demo/app", "v1", insecure=True, credentials=login)

    assert caught.value.reason == "Unauthorized"
    assert "wrong-secret" not in str(caught.value)


async def test_token_per_login(client: RegistryClient, token: Pushed) -> None:
    """A wrong password does not borrow the token the right one earned."""
    server = token.server
    login = _login(server)
    await client.resolve(server.address, "demo/app", "v1", insecure=True, credentials=login)

    with pytest.raises(RegistryError) as caught:
        await client.resolve(
            server.address,
            "demo/app",
            "v1",
            insecure=True,
            credentials=Login(login.username, "guess"),
        )
    assert caught.value.reason == "Unauthorized"


# --- TLS --------------------------------------------------------------------------------


async def test_tls_with_the_ca(client: RegistryClient, tls: Pushed) -> None:
    assert tls.server.ca is not None

    resolved = await client.resolve(
        tls.server.address, "demo/app", "v1", ca_file=str(tls.server.ca.ca_file)
    )

    assert resolved.digest == tls.app.digest


async def test_tls_without_the_ca(client: RegistryClient, tls: Pushed) -> None:
    with pytest.raises(RegistryError) as caught:
        await client.resolve(tls.server.address, "demo/app", "v1")

    assert caught.value.reason == "TLSError"
    assert "certificate" in caught.value.message


async def test_tls_insecure_skips_verification(client: RegistryClient, tls: Pushed) -> None:
    resolved = await client.resolve(tls.server.address, "demo/app", "v1", insecure=True)

    assert resolved.digest == tls.app.digest


async def test_an_image_built_by_buildah(client: RegistryClient, anonymous: Pushed) -> None:
    """The pause image hack/cluster builds, when this machine has it cached."""
    archive = cached_image_archive("pause")
    if archive is None:
        pytest.skip("no cached pause image (hack/cluster/images.py builds it)")
    server = anonymous.server
    skopeo_copy(f"oci-archive:{archive}", server, "headwater/pause", "test")

    resolved = await client.resolve(server.address, "headwater/pause", "test", insecure=True)

    assert resolved.digest == skopeo_raw_digest(server, "headwater/pause", "test")
    assert resolved.image is not None
    assert resolved.image.config is not None
    assert resolved.image.config.cmd == ("/pause",)


# --- answers distribution cannot be made to give ---------------------------------------


async def test_no_answer_is_a_timeout() -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # never answers

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with RegistryClient(request_timeout=0.5) as client:
            with pytest.raises(RegistryError) as caught:
                await client.resolve(f"127.0.0.1:{port}", "demo/app", "v1", insecure=True)
        assert caught.value.reason == "Timeout"
    finally:
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


@pytest.fixture
async def odd_registry() -> AsyncIterator[str]:
    async def manifests(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name == "limited":
            return web.json_response(
                {"errors": [{"code": "TOOMANYREQUESTS", "message": "slow down"}]},
                status=429,
                headers={"Retry-After": "7"},
            )
        if name == "broken":
            return web.Response(status=503, headers={"Retry-After": "2"})
        if name == "garbled":
            return web.Response(status=401, headers={"WWW-Authenticate": 'Bearer realm="x'})
        return web.Response(status=404)

    async def tags(request: web.Request) -> web.Response:
        # Pages as the distribution spec says (and distribution 3, Docker Hub,
        # GHCR do): lexical order, ``n`` per page after ``last``, a Link to the next.
        name = request.match_info["name"]
        n = int(request.query.get("n", "100"))
        last = request.query.get("last", "")
        after = [t for t in PAGED_TAGS if t > last]
        page = after[:n]
        headers = {}
        if len(after) > n:
            headers["Link"] = f'</v2/{name}/tags/list?n={n}&last={page[-1]}>; rel="next"'
        return web.json_response({"name": name, "tags": page}, headers=headers)

    app = web.Application()
    app.router.add_route("*", "/v2/{name}/manifests/{reference}", manifests)
    app.router.add_get("/v2/{name}/tags/list", tags)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("name", "reason", "retry_after"),
    [
        ("limited", "RateLimited", 7.0),
        ("broken", "ServerError", 2.0),
        ("garbled", "InvalidChallenge", None),
    ],
)
async def test_error_answers(
    client: RegistryClient, odd_registry: str, name: str, reason: str, retry_after: float | None
) -> None:
    with pytest.raises(RegistryError) as caught:
        await client.resolve(odd_registry, name, "v1", insecure=True)

    assert caught.value.reason == reason
    assert caught.value.retry_after == retry_after
    assert "\n" not in caught.value.message


async def test_list_tags_follows_link_pages(client: RegistryClient, odd_registry: str) -> None:
    listed = await client.list_tags(odd_registry, "paged", insecure=True, page_size=2)

    assert listed == list(PAGED_TAGS)
    assert client.stats.tag_requests == 3
    limited = await client.list_tags(odd_registry, "paged", insecure=True, page_size=2, limit=3)
    assert limited == list(PAGED_TAGS[:3])
    assert client.stats.tag_requests == 3 + 2
