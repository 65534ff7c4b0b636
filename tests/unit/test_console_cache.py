"""The overview is rendered from the namespace's shared watches when, and only when, they
are current: listed, watching since, no problem. Otherwise it lists, as before."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer, unused_port

from headwater.console.app import HUB, Settings, make_app
from headwater.console.live import Hub
from headwater.console.source import BUILDS
from tests.consolefake import FakeSource, api_error, build, buildconfig, stream


@pytest.fixture
def source() -> FakeSource:
    fake = FakeSource("shop")
    fake.add("imagestreams", "shop", stream("web"))
    fake.add("buildconfigs", "shop", buildconfig("web", last=1))
    fake.add("builds", "shop", build("web", 1, "Complete", minutes_ago=30))
    return fake


@pytest.fixture
async def client(source: FakeSource) -> AsyncIterator[TestClient[Any, Any]]:
    port = unused_port()
    app = make_app(source, Settings(address="127.0.0.1", port=port, token="t"))
    async with TestClient(TestServer(app, host="127.0.0.1", port=port)) as test_client:
        yield test_client


async def _watching(source: FakeSource, kind: str) -> None:
    for _ in range(200):
        if source.queues[(kind, "shop")]:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"no watch of {kind}")


async def test_the_overview_is_rendered_from_the_running_watches(
    source: FakeSource, client: TestClient[Any, Any]
) -> None:
    first = await client.get("/ns/shop")
    assert first.status == 200
    assert "watch" in first.headers["Server-Timing"]
    assert len(source.lists) == 3  # the watches' first lists, shared by the page
    await _watching(source, "builds")
    # A build only the watch knows of: a page that lists again would not show it.
    source.emit("builds", "shop", "ADDED", build("web", 2, "Running", minutes_ago=0))
    await asyncio.sleep(0.05)
    second = await client.get("/ns/shop")
    html = await second.text()
    assert 'href="/ns/shop/builds/web-2"' in html
    assert "2 builds, 1 not finished" in html
    assert len(source.lists) == 3
    assert second.headers["Server-Timing"].startswith('read;desc="watch"')


async def test_a_failed_watch_is_not_served(
    source: FakeSource, client: TestClient[Any, Any]
) -> None:
    await client.get("/ns/shop")
    await _watching(source, "builds")
    # The watch fails (it will list again later, after a pause): what it holds is not
    # current any more, and the build created meanwhile must show.
    source.add("builds", "shop", build("web", 3, "Running", minutes_ago=0))
    source.fail_watch("builds", "shop", api_error(500, "InternalError", "etcd is away"))
    informer = client.app[HUB].informers[("builds", "shop")]
    for _ in range(200):
        if informer.problem is not None:
            break
        await asyncio.sleep(0.01)
    assert informer.problem is not None
    answer = await client.get("/ns/shop")
    html = await answer.text()
    assert 'href="/ns/shop/builds/web-3"' in html
    assert "watch+list" in answer.headers["Server-Timing"]
    assert source.lists.count(("builds", "shop")) == 2


async def test_a_watch_not_synced_yet_is_never_served(source: FakeSource) -> None:
    hub = Hub(source, linger_seconds=5)
    try:
        (informer,) = hub.keep([BUILDS], "shop")
        informer.objects = {"stale": build("web", 99)}  # what it must not hand out
        assert hub.current(BUILDS, "shop") is None
        assert await informer.ready(5)
        current = hub.current(BUILDS, "shop")
        assert current is not None
        assert [o["metadata"]["name"] for o in current] == ["web-1"]
        # Its watch ends: until the next list is in, nothing is served.
        informer.synced = False
        assert hub.current(BUILDS, "shop") is None
    finally:
        await hub.close()


async def test_a_forbidden_kind_is_still_said_on_the_page(
    source: FakeSource, client: TestClient[Any, Any]
) -> None:
    source.failures["builds"] = api_error(403, "Forbidden", 'builds is forbidden: User "dev"')
    answer = await client.get("/ns/shop")
    html = await answer.text()
    assert answer.status == 200
    assert "Forbidden" in html
    assert "listing Builds in shop" in html
    assert 'href="/ns/shop/imagestreams/web"' in html  # the other kinds, from their watches


async def test_an_idle_watch_stops_after_the_linger(source: FakeSource) -> None:
    hub = Hub(source, linger_seconds=0.2)
    try:
        (informer,) = hub.keep([BUILDS], "shop")
        assert await informer.ready(5)
        for _ in range(100):
            if not informer.running:
                break
            await asyncio.sleep(0.02)
        assert not informer.running
        assert hub.informers == {}
        assert hub.current(BUILDS, "shop") is None
    finally:
        await hub.close()
