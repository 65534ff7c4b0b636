"""The fault-injecting API proxy of the e2e tests and benches: verbs as Kubernetes names them,
seeded faults, and requests streamed through to an upstream on the loopback."""

from __future__ import annotations

import asyncio
import json
import ssl
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from headwater.certs import make_serving_cert
from tests.apiproxy import (
    ApiProxy,
    Faults,
    FaultSampler,
    RequestInfo,
    Upstream,
    request_info,
)

ISTREAMS = "/apis/image.headwater.dev/v1/namespaces/shop/imagestreams"


@pytest.mark.parametrize(
    ("method", "path", "query", "expected"),
    [
        ("GET", ISTREAMS, {}, RequestInfo("list", "imagestreams", "shop")),
        ("GET", ISTREAMS, {"watch": "true"}, RequestInfo("watch", "imagestreams", "shop")),
        ("GET", ISTREAMS, {"watch": "1"}, RequestInfo("watch", "imagestreams", "shop")),
        ("GET", ISTREAMS, {"watch": "false"}, RequestInfo("list", "imagestreams", "shop")),
        ("GET", f"{ISTREAMS}/web", {}, RequestInfo("get", "imagestreams", "shop", "web")),
        ("POST", ISTREAMS, {}, RequestInfo("create", "imagestreams", "shop")),
        ("PUT", f"{ISTREAMS}/web", {}, RequestInfo("update", "imagestreams", "shop", "web")),
        (
            "PATCH",
            f"{ISTREAMS}/web/status",
            {},
            RequestInfo("patch", "imagestreams/status", "shop", "web"),
        ),
        ("DELETE", f"{ISTREAMS}/web", {}, RequestInfo("delete", "imagestreams", "shop", "web")),
        ("DELETE", ISTREAMS, {}, RequestInfo("deletecollection", "imagestreams", "shop")),
        # Cluster-wide lists and watches of a namespaced kind.
        (
            "GET",
            "/apis/image.headwater.dev/v1/imagestreams",
            {"watch": "true"},
            RequestInfo("watch", "imagestreams"),
        ),
        ("GET", "/api/v1/pods", {}, RequestInfo("list", "pods")),
        # The deprecated /watch/ prefix.
        ("GET", "/api/v1/watch/namespaces/shop/pods", {}, RequestInfo("watch", "pods", "shop")),
        # Namespaces themselves.
        ("GET", "/api/v1/namespaces", {}, RequestInfo("list", "namespaces")),
        ("GET", "/api/v1/namespaces/shop", {}, RequestInfo("get", "namespaces", "shop", "shop")),
        ("POST", "/api/v1/namespaces", {}, RequestInfo("create", "namespaces")),
        (
            "PUT",
            "/api/v1/namespaces/shop/finalize",
            {},
            RequestInfo("update", "namespaces/finalize", "shop", "shop"),
        ),
        # Core and grouped kinds, subresources.
        (
            "POST",
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            {},
            RequestInfo("create", "subjectaccessreviews"),
        ),
        (
            "GET",
            "/api/v1/namespaces/shop/pods/p/log",
            {"follow": "true"},
            RequestInfo("get", "pods/log", "shop", "p"),
        ),
        (
            "PATCH",
            "/apis/apps/v1/namespaces/shop/deployments/web",
            {},
            RequestInfo("patch", "deployments", "shop", "web"),
        ),
        # Discovery and other non-resource paths.
        ("GET", "/api", {}, RequestInfo("get", "/api", is_resource=False)),
        ("GET", "/apis/apps/v1", {}, RequestInfo("get", "/apis/apps/v1", is_resource=False)),
        ("GET", "/version", {}, RequestInfo("get", "/version", is_resource=False)),
    ],
)
def test_verbs_and_resources_as_kubernetes_names_them(
    method: str, path: str, query: dict[str, str], expected: RequestInfo
) -> None:
    assert request_info(method, path, query) == expected


def test_faults_hit_the_configured_fraction_of_writes_and_reads_and_never_watches() -> None:
    sampler = FaultSampler(Faults(write_rate=0.2, read_rate=0.05, seed=13))
    n = 20_000
    writes = sum(sampler.should_fail(v) for v in ["patch", "create", "update", "delete"] * (n // 4))
    reads = sum(sampler.should_fail(v) for v in ["get", "list"] * (n // 2))
    watches = sum(sampler.should_fail("watch") for _ in range(n))
    assert 0.18 * n < writes < 0.22 * n
    assert 0.04 * n < reads < 0.06 * n
    assert watches == 0


def test_faults_are_seeded_and_off_by_default() -> None:
    verbs = ["patch", "get", "watch", "list", "create"] * 200
    first = [FaultSampler(Faults(0.3, 0.3, seed=7)).should_fail(v) for v in verbs]
    again = [FaultSampler(Faults(0.3, 0.3, seed=7)).should_fail(v) for v in verbs]
    other = [FaultSampler(Faults(0.3, 0.3, seed=8)).should_fail(v) for v in verbs]
    assert first == again != other
    assert not any(FaultSampler(Faults()).should_fail(v) for v in verbs)
    everything = FaultSampler(Faults(write_rate=1.0, read_rate=1.0))
    assert all(everything.should_fail(v) for v in ("get", "list", "patch", "deletecollection"))


async def _upstream(tmp_path: Path) -> tuple[web.AppRunner, Upstream, asyncio.Event]:
    """A TLS server on the loopback that answers a list and a slow, chunked watch."""
    release = asyncio.Event()

    async def handle(request: web.Request) -> web.StreamResponse:
        if request.query.get("watch"):
            response = web.StreamResponse()
            response.enable_chunked_encoding()
            await response.prepare(request)
            await response.write(b'{"type":"ADDED"}\n')
            await release.wait()  # the first event must arrive before the stream ends
            await response.write(b'{"type":"MODIFIED"}\n')
            return response
        return web.json_response(
            {"path": request.path, "auth": request.headers.get("Authorization")}
        )

    cert = make_serving_cert(tmp_path / "upstream", ["127.0.0.1"])
    server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ssl.load_cert_chain(cert.cert_file, cert.key_file)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ssl).start()
    client_ssl = ssl.create_default_context(cafile=str(cert.cert_file))
    port = runner.addresses[0][1]
    return runner, Upstream(f"https://127.0.0.1:{port}", client_ssl, "upstream-token"), release


async def test_requests_and_watch_streams_go_through_unbuffered_and_are_counted(
    tmp_path: Path,
) -> None:
    runner, upstream, release = await _upstream(tmp_path)
    proxy = ApiProxy(upstream, tmp_path)
    await proxy.start()
    try:
        config = json.loads(proxy.kubeconfig.read_text())
        server = config["clusters"][0]["cluster"]
        client_ssl = ssl.create_default_context(cafile=server["certificate-authority"])
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ssl)) as s:
            async with s.get(server["server"] + ISTREAMS) as resp:
                # The proxy's own credentials go upstream, not the client's.
                assert await resp.json() == {"path": ISTREAMS, "auth": "Bearer upstream-token"}
            async with s.get(server["server"] + ISTREAMS, params={"watch": "1"}) as resp:
                first = await asyncio.wait_for(resp.content.readline(), 5)
                assert first == b'{"type":"ADDED"}\n'
                release.set()
                assert await resp.content.readline() == b'{"type":"MODIFIED"}\n'
            proxy.set_faults(Faults(read_rate=1.0))
            async with s.get(f"{server['server']}{ISTREAMS}/web") as resp:
                assert resp.status == 500
                assert (await resp.json())["message"] == "injected"
        counts = proxy.reset()
        assert counts.requests == {
            ("list", "imagestreams"): 1,
            ("watch", "imagestreams"): 1,
            ("get", "imagestreams"): 1,
        }
        assert counts.injected == {("get", "imagestreams"): 1}
        assert counts.total(namespace="shop") == 3
        assert proxy.snapshot().requests == {}
    finally:
        await proxy.stop()
        await runner.cleanup()
