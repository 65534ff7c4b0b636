"""The fault-injecting API proxy of the e2e tests and benches: verbs as Kubernetes names them,
seeded faults, and requests streamed through to an upstream on the loopback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from headwater.certs import make_serving_cert
from tests.apiproxy import (
    ApiProxy,
    Faults,
    FaultSampler,
    Flavor,
    Plan,
    RequestInfo,
    Upstream,
    http_upstream,
    registry_request_info,
    request_info,
    running_http_proxy,
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


# --- the fault modes of issue 14 ----------------------------------------------------------


def test_errors_are_drawn_from_the_statuses_and_seeded() -> None:
    faults = Faults(read_rate=0.5, watch_rate=0.5, statuses=(500, 503, 429), seed=3)

    def statuses(faults: Faults) -> list[int | None]:
        sampler = FaultSampler(faults)
        return [sampler.plan(v).status for v in ["get", "watch"] * 3000]

    drawn = Counter(statuses(faults))
    assert 2600 < 6000 - drawn[None] < 3400
    assert all(800 < drawn[s] < 1200 for s in (500, 503, 429))
    assert statuses(faults) == statuses(faults) != statuses(replace(faults, seed=4))
    # Watches fail only by their own rate; without it they never do.
    sampler = FaultSampler(Faults(read_rate=1.0))
    assert not any(sampler.plan("watch").status for _ in range(50))


def test_delays_resets_lost_answers_and_cuts_are_drawn_within_their_bounds() -> None:
    sampler = FaultSampler(
        Faults(delay=0.1, delay_jitter=0.2, reset_rate=0.1, lost_answer_rate=0.2, seed=5)
    )
    plans = [sampler.plan("patch") for _ in range(5000)]
    assert all(0.1 <= p.delay <= 0.3 for p in plans if not p.reset)
    assert 400 < sum(p.reset for p in plans) < 600
    assert 800 < sum(p.lose_answer for p in plans) < 1000
    assert not any(p.reset and p.lose_answer for p in plans)
    cuts = [FaultSampler(Faults(cut_watches=(1, 3), seed=s)).plan("watch") for s in range(200)]
    assert all(p.cut_after is not None and 1 <= p.cut_after <= 3 for p in cuts)
    assert not any(p.lose_answer for p in cuts)  # a stream is cut, never swallowed whole
    assert FaultSampler(Faults(cut_watches=(1, 3))).plan("get").cut_after is None
    assert FaultSampler(Faults()).plan("get") == Plan()


class _Upstream:
    """A plain HTTP server on the loopback: an API server's list, create and steady watch,
    and a registry's upload (whose ``Location`` names the upstream itself)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str | None]] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append((request.method, request.path, request.headers.get("Authorization")))
        if request.query.get("watch"):
            response = web.StreamResponse()
            response.enable_chunked_encoding()
            await response.prepare(request)
            for i in range(10_000):
                # Each event in two writes: a cut must never end the stream inside one.
                await response.write(b'{"type":"MODIFIED","n":')
                await asyncio.sleep(0.03)  # most of the time is spent inside an event
                await response.write(f"{i}}}\n".encode())
                await asyncio.sleep(0.002)
            return response
        if request.path.endswith("/blobs/uploads/"):
            return web.Response(
                status=202, headers={"Location": f"{self.url}{request.path}u-1?_state=x"}
            )
        return web.json_response({"method": request.method, "path": request.path})

    async def __aenter__(self) -> _Upstream:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


@contextlib.asynccontextmanager
async def _proxied(
    tmp_path: Path, faults: Faults, flavor: Flavor = "kubernetes"
) -> AsyncIterator[tuple[_Upstream, ApiProxy, aiohttp.ClientSession]]:
    """The proxy (TLS for the API server, plain HTTP for a registry) in front of an upstream."""
    async with _Upstream() as upstream:
        proxy = ApiProxy(http_upstream(upstream.url), tmp_path, faults, flavor=flavor)
        await proxy.start()
        client_ssl = (
            ssl.create_default_context(cafile=str(proxy.ca_file)) if proxy.ca_file else False
        )
        try:
            async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=client_ssl, force_close=True)
            ) as session:
                yield upstream, proxy, session
        finally:
            await proxy.stop()


@pytest.mark.parametrize(
    ("status", "reason", "retry_after"),
    [(500, "InternalError", None), (503, "ServiceUnavailable", "7"), (429, "TooManyRequests", "7")],
)
async def test_errors_are_answered_as_the_api_server_would_with_retry_after(
    tmp_path: Path, status: int, reason: str, retry_after: str | None
) -> None:
    faults = Faults(read_rate=1.0, watch_rate=1.0, statuses=(status,), retry_after=7)  # type: ignore[arg-type]
    async with _proxied(tmp_path, faults) as (upstream, proxy, session):
        for params in ({}, {"watch": "1"}):
            async with session.get(proxy.url + ISTREAMS, params=params) as resp:
                assert resp.status == status
                assert resp.headers.get("Retry-After") == retry_after
                body = await resp.json()
                assert (body["kind"], body["code"], body["reason"]) == ("Status", status, reason)
                if retry_after:
                    assert body["details"] == {"retryAfterSeconds": 7}
        assert upstream.seen == []
        counts = proxy.snapshot()
        assert counts.faults == {str(status): 2}
        assert counts.injected == {("list", "imagestreams"): 1, ("watch", "imagestreams"): 1}


async def test_requests_are_delayed_by_the_fixed_delay_plus_jitter(tmp_path: Path) -> None:
    async with _proxied(tmp_path, Faults(delay=0.3)) as (_, proxy, session):
        started = time.monotonic()
        async with session.get(proxy.url + ISTREAMS) as resp:
            assert resp.status == 200
        assert time.monotonic() - started >= 0.3
        proxy.set_faults(Faults())
        started = time.monotonic()
        async with session.get(proxy.url + ISTREAMS) as resp:
            assert resp.status == 200
        assert time.monotonic() - started < 0.3
        assert proxy.snapshot().faults == {"delayed": 1}


async def test_a_reset_closes_the_connection_before_the_upstream_hears_of_it(
    tmp_path: Path,
) -> None:
    async with _proxied(tmp_path, Faults(reset_rate=1.0)) as (upstream, proxy, session):
        with pytest.raises(aiohttp.ClientConnectionError):
            async with session.post(proxy.url + ISTREAMS, json={}) as resp:
                await resp.read()
        assert upstream.seen == []
        assert proxy.snapshot().faults == {"reset": 1}


async def test_a_lost_answer_reaches_the_upstream_but_never_the_client(tmp_path: Path) -> None:
    async with _proxied(tmp_path, Faults(lost_answer_rate=1.0)) as (upstream, proxy, session):
        with pytest.raises(aiohttp.ClientConnectionError):
            async with session.post(proxy.url + ISTREAMS, json={}) as resp:
                await resp.read()
        assert upstream.seen == [("POST", ISTREAMS, None)]
        assert proxy.snapshot().faults == {"lost-answer": 1}


async def _watch_lines(session: aiohttp.ClientSession, url: str) -> tuple[list[bytes], float]:
    """The lines of a watch until its stream ends, and how long that took."""
    started = time.monotonic()
    lines = []
    async with asyncio.timeout(5), session.get(url, params={"watch": "1"}) as resp:
        async for line in resp.content:
            lines.append(line)
    return lines, time.monotonic() - started


async def test_watch_streams_are_cut_after_the_drawn_time_on_an_event_boundary(
    tmp_path: Path,
) -> None:
    faults = Faults(cut_watches=(0.2, 0.4))
    async with _proxied(tmp_path, faults) as (_, proxy, session):
        for _ in range(3):
            lines, took = await _watch_lines(session, proxy.url + ISTREAMS)
            assert 0.2 <= took < 2
            assert len(lines) > 3
            assert [json.loads(line)["n"] for line in lines] == list(range(len(lines)))
        # Other requests are not cut.
        async with session.get(proxy.url + ISTREAMS) as resp:
            assert resp.status == 200
        assert proxy.snapshot().faults == {"cut": 3}


async def test_watch_streams_already_open_are_cut_once_the_faults_are_set(
    tmp_path: Path,
) -> None:
    async with _proxied(tmp_path, Faults()) as (_, proxy, session):
        async with session.get(proxy.url + ISTREAMS, params={"watch": "1"}) as resp:
            await resp.content.readline()
            proxy.set_faults(Faults(cut_watches=(0.2, 0.3)))
            started = time.monotonic()
            async with asyncio.timeout(5):
                rest = [line async for line in resp.content]
            assert time.monotonic() - started < 1.5
            assert all(line.endswith(b"}\n") for line in rest)
        assert proxy.snapshot().faults == {"cut": 1}


async def test_a_watch_cut_by_reset_breaks_the_stream(tmp_path: Path) -> None:
    faults = Faults(cut_watches=(0.3, 0.3), cut_mode="reset")
    async with _proxied(tmp_path, faults) as (_, proxy, session):
        with pytest.raises(aiohttp.ClientPayloadError):
            await _watch_lines(session, proxy.url + ISTREAMS)
        assert proxy.snapshot().faults == {"cut": 1}


async def test_a_black_hole_holds_requests_and_streams_until_its_window_ends(
    tmp_path: Path,
) -> None:
    async with _proxied(tmp_path, Faults()) as (upstream, proxy, session):
        async with session.get(proxy.url + ISTREAMS, params={"watch": "1"}) as watch:
            await watch.content.readline()
            proxy.blackhole(0.6, mode="hold")
            started = time.monotonic()
            async with session.get(proxy.url + ISTREAMS) as resp:
                assert resp.status == 200
            assert time.monotonic() - started >= 0.5
            # The stream in flight stalled too: what it sends after the window is what the
            # upstream wrote during it, all at once.
            await watch.content.readline()
        assert proxy.snapshot().faults == {"blackholed": 1}
        assert len(upstream.seen) == 2


async def test_a_black_hole_never_answers_until_the_client_gives_up(tmp_path: Path) -> None:
    async with _proxied(tmp_path, Faults(blackhole_seconds=0.8)) as (upstream, proxy, session):
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3), session.get(proxy.url + ISTREAMS) as resp:
                await resp.read()
        await asyncio.sleep(0.6)  # the window ends
        async with asyncio.timeout(0.5), session.get(proxy.url + ISTREAMS) as resp:
            assert resp.status == 200
        assert upstream.seen == [("GET", ISTREAMS, None)]  # the hung one never went through
        assert proxy.snapshot().faults == {"blackholed": 1}


# --- the same proxy in front of a registry ----------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/v2/", RequestInfo("get", "/v2/", is_resource=False)),
        ("HEAD", "/v2/shop/web/manifests/latest", RequestInfo("head", "/v2/shop/web/manifests")),
        ("GET", "/v2/web/manifests/sha256:ab", RequestInfo("get", "/v2/web/manifests")),
        ("PUT", "/v2/a/b/c/manifests/1.0", RequestInfo("put", "/v2/a/b/c/manifests")),
        ("HEAD", "/v2/shop/web/blobs/sha256:ab", RequestInfo("head", "/v2/shop/web/blobs")),
        ("POST", "/v2/shop/web/blobs/uploads/", RequestInfo("post", "/v2/shop/web/blobs/uploads")),
        (
            "PATCH",
            "/v2/shop/web/blobs/uploads/u-1",
            RequestInfo("patch", "/v2/shop/web/blobs/uploads"),
        ),
        ("GET", "/v2/shop/web/tags/list", RequestInfo("get", "/v2/shop/web/tags")),
        # A repository named like a keyword is still a repository.
        ("GET", "/v2/blobs/manifests/x", RequestInfo("get", "/v2/blobs/manifests")),
    ],
)
def test_registry_requests_are_counted_by_method_and_path_prefix(
    method: str, path: str, expected: RequestInfo
) -> None:
    assert registry_request_info(method, path, {}) == expected


async def test_the_registry_flavor_forwards_credentials_and_keeps_uploads_on_the_proxy(
    tmp_path: Path,
) -> None:
    repo = "/v2/shop/web"
    async with _proxied(tmp_path, Faults(), flavor="registry") as (upstream, proxy, session):
        assert proxy.url.startswith("http://")
        assert proxy.ca_file is None
        auth = {"Authorization": "Basic dTpw"}
        async with session.post(f"{proxy.url}{repo}/blobs/uploads/", headers=auth) as resp:
            assert resp.status == 202
            assert resp.headers["Location"] == f"{proxy.url}{repo}/blobs/uploads/u-1?_state=x"
        proxy.set_faults(Faults(read_rate=1.0, statuses=(503,), retry_after=2))
        async with session.head(f"{proxy.url}{repo}/manifests/latest") as resp:
            assert (resp.status, resp.headers["Retry-After"]) == (503, "2")
        async with session.get(f"{proxy.url}{repo}/manifests/latest") as resp:
            assert (await resp.json())["errors"][0]["code"] == "UNAVAILABLE"
        async with session.put(f"{proxy.url}{repo}/manifests/latest", data=b"{}") as resp:
            assert resp.status == 200  # writes have their own rate
        counts = proxy.snapshot()
        assert counts.requests == {
            ("post", f"{repo}/blobs/uploads"): 1,
            ("head", f"{repo}/manifests"): 1,
            ("get", f"{repo}/manifests"): 1,
            ("put", f"{repo}/manifests"): 1,
        }
        assert counts.faults == {"503": 2}
        assert upstream.seen == [
            ("POST", f"{repo}/blobs/uploads/", "Basic dTpw"),
            ("PUT", f"{repo}/manifests/latest", None),
        ]


async def test_the_registry_flavor_keeps_a_manifest_answers_length(tmp_path: Path) -> None:
    """go-containerregistry (Flux) refuses a manifest answer without Content-Length."""
    repo = "/v2/shop/web"
    async with _proxied(tmp_path, Faults(), flavor="registry") as (_, proxy, session):
        async with session.get(f"{proxy.url}{repo}/manifests/latest") as resp:
            body = await resp.read()
            assert resp.headers.get("Content-Length") == str(len(body))
            assert "Transfer-Encoding" not in resp.headers
        async with session.head(f"{proxy.url}{repo}/manifests/latest") as resp:
            # The test upstream's HEAD answer names its method: one byte longer than GET's.
            assert resp.headers.get("Content-Length") == str(len(body) + 1)


def test_running_http_proxy_serves_from_its_own_thread(tmp_path: Path) -> None:
    async def serve_upstream(ready: asyncio.Future[str], done: asyncio.Event) -> None:
        async with _Upstream() as upstream:
            ready.set_result(upstream.url)
            await done.wait()

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        ready: asyncio.Future[str] = loop.create_future()
        done = asyncio.Event()
        serving = asyncio.run_coroutine_threadsafe(serve_upstream(ready, done), loop)
        url = asyncio.run_coroutine_threadsafe(asyncio.wait_for(ready, 10), loop).result(10)
        with running_http_proxy(url.removeprefix("http://"), tmp_path) as proxy:
            with urllib.request.urlopen(f"http://{proxy.address}/v2/", timeout=5) as resp:
                assert json.loads(resp.read()) == {"method": "GET", "path": "/v2/"}
            assert proxy.snapshot().requests == {("get", "/v2/"): 1}
        loop.call_soon_threadsafe(done.set)
        serving.result(10)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
