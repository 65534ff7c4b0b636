"""The console's server: guards, pages, error rendering, SSE framing and live updates,
and the render time of a large namespace (500 ImageStreams, 2,000 Builds)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer, unused_port

from headwater.console import security, views
from headwater.console.app import Settings, make_app
from headwater.console.live import Hub, sse_frame
from headwater.console.source import BUILDS, IMAGESTREAMS
from tests.consolefake import NOW, FakeSource, api_error, build, buildconfig, stream

TOKEN = "test-token-123"


@pytest.fixture
def source() -> FakeSource:
    fake = FakeSource("shop")
    fake.add("imagestreams", "shop", stream("web"), stream("api", tags=6))
    fake.add("buildconfigs", "shop", buildconfig("web", last=3))
    fake.add(
        "builds",
        "shop",
        build("web", 1, "Complete", minutes_ago=30),
        build("web", 2, "Failed", minutes_ago=20),
        build("web", 3, "Running", minutes_ago=1),
    )
    return fake


@pytest.fixture
async def client(source: FakeSource) -> AsyncIterator[TestClient[Any, Any]]:
    port = unused_port()
    app = make_app(source, Settings(address="127.0.0.1", port=port, token=TOKEN))
    async with TestClient(TestServer(app, host="127.0.0.1", port=port)) as test_client:
        yield test_client


# --- guards ------------------------------------------------------------------------


def test_allowed_hosts_are_loopback_and_the_bound_address() -> None:
    allowed = security.allowed_hosts("127.0.0.1", 8090)
    assert security.host_ok("127.0.0.1:8090", allowed)
    assert security.host_ok("localhost:8090", allowed)
    assert security.host_ok("[::1]:8090", allowed)
    assert not security.host_ok("evil.example:8090", allowed)
    assert not security.host_ok("localhost:8091", allowed)
    assert not security.host_ok(None, allowed)
    # A wildcard bind names no host: only loopback names pass.
    assert not security.host_ok("0.0.0.0:8090", security.allowed_hosts("0.0.0.0", 8090))
    assert security.host_ok("10.0.0.5:80", security.allowed_hosts("10.0.0.5", 80))
    assert security.host_ok("10.0.0.5", security.allowed_hosts("10.0.0.5", 80))


async def test_a_rebound_host_name_is_refused(client: TestClient[Any, Any]) -> None:
    answer = await client.get("/ns/shop", headers={"Host": "attacker.example:8090"})
    assert answer.status == 421
    assert "Access-Control-Allow-Origin" not in answer.headers


async def test_pages_carry_the_security_headers(client: TestClient[Any, Any]) -> None:
    answer = await client.get("/ns/shop")
    assert answer.status == 200
    csp = answer.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert answer.headers["X-Frame-Options"] == "DENY"
    assert "Access-Control-Allow-Origin" not in answer.headers
    html = await answer.text()
    # No inline script at all: every <script> has a src.
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []


async def test_post_without_the_csrf_token_is_refused(client: TestClient[Any, Any]) -> None:
    answer = await client.post("/ns/shop", data={"x": "1"})
    assert answer.status == 403
    answer = await client.post("/ns/shop", data={security.CSRF_FIELD: "wrong"})
    assert answer.status == 403
    answer = await client.post("/ns/shop", headers={security.CSRF_HEADER: TOKEN})
    assert answer.status == 405  # past the guard: the overview takes no POST


async def test_a_post_from_another_origin_is_refused_even_with_the_token(
    client: TestClient[Any, Any],
) -> None:
    port = client.server.port
    assert port is not None
    answer = await client.post(
        "/ns/shop/builds/web-3/cancel",
        data={security.CSRF_FIELD: TOKEN},
        headers={"Origin": "http://evil.example"},
    )
    assert answer.status == 403
    assert "cross-origin" in await answer.text()
    assert security.origin_ok(f"http://127.0.0.1:{port}", security.allowed_hosts("127.0.0.1", port))
    assert not security.origin_ok("null", security.allowed_hosts("127.0.0.1", port))


async def test_the_page_carries_the_token_for_htmx(client: TestClient[Any, Any]) -> None:
    html = await (await client.get("/ns/shop")).text()
    assert TOKEN in html


async def test_other_methods_are_refused(client: TestClient[Any, Any]) -> None:
    answer = await client.request("PUT", "/ns/shop")
    assert answer.status == 405


async def test_a_bad_namespace_name_is_not_found(client: TestClient[Any, Any]) -> None:
    answer = await client.get("/ns/Not_A_Namespace")
    assert answer.status == 404


async def test_static_assets_are_served_from_the_package(client: TestClient[Any, Any]) -> None:
    for name in ("htmx.min.js", "sse.min.js", "console.css", "console.js"):
        answer = await client.get(f"/static/{name}")
        assert answer.status == 200, name
        assert answer.headers["X-Content-Type-Options"] == "nosniff"


# --- the overview ------------------------------------------------------------------


async def test_overview_lists_streams_buildconfigs_and_builds(
    client: TestClient[Any, Any],
) -> None:
    html = await (await client.get("/ns/shop")).text()
    assert 'href="/ns/shop/imagestreams/web"' in html
    assert 'href="/ns/shop/buildconfigs/web"' in html
    assert 'href="/ns/shop/builds/web-3"' in html
    assert "Failed (DockerBuildFailed)" in html
    assert "3 builds, 1 not finished" in html
    assert "+ 2 more" in html  # api has six tags, four shown
    assert 'sse-connect="/ns/shop/overview/events"' in html


async def test_names_and_values_are_escaped(
    source: FakeSource, client: TestClient[Any, Any]
) -> None:
    evil = stream("evil")
    evil["status"]["tags"][0]["tag"] = "<script>alert(1)</script>"
    source.add("imagestreams", "shop", evil)
    html = await (await client.get("/ns/shop")).text()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


async def test_forbidden_list_is_a_message_not_a_trace(
    source: FakeSource, client: TestClient[Any, Any]
) -> None:
    source.failures["builds"] = api_error(
        403, "Forbidden", 'builds.build.headwater.dev is forbidden: User "dev" cannot list'
    )
    answer = await client.get("/ns/shop")
    assert answer.status == 200
    html = await answer.text()
    assert "Forbidden" in html
    assert "you may not do this" in html
    assert "User &#34;dev&#34; cannot list" in html
    assert "Traceback" not in html
    # The other sections still render.
    assert 'href="/ns/shop/imagestreams/web"' in html


async def test_unreachable_api_is_a_message(
    source: FakeSource, client: TestClient[Any, Any]
) -> None:
    import httpx2

    source.failures["imagestreams"] = httpx2.ConnectError("connection refused")
    html = await (await client.get("/ns/shop")).text()
    assert "Unreachable" in html
    assert "cannot reach the Kubernetes API server" in html


async def test_a_kind_the_server_does_not_serve_is_a_message(
    source: FakeSource, client: TestClient[Any, Any]
) -> None:
    import httpx2

    url = "https://10.244.0.1:6443/apis/build.headwater.dev/v1/namespaces/shop/builds"
    request = httpx2.Request("GET", url)
    response = httpx2.Response(404, text="404 page not found", request=request)
    source.failures["builds"] = httpx2.HTTPStatusError("404", request=request, response=response)
    answer = await client.get("/ns/shop")
    assert answer.status == 200
    html = await answer.text()
    assert "are Headwater&#39;s CRDs installed?" in html
    assert "Internal error" not in html


async def test_each_kind_is_listed_once(source: FakeSource, client: TestClient[Any, Any]) -> None:
    await client.get("/ns/shop")
    assert sorted(source.lists) == [
        ("buildconfigs", "shop"),
        ("builds", "shop"),
        ("imagestreams", "shop"),
    ]
    assert source.gets == []


def test_recent_builds_are_bounded_per_buildconfig_and_counted() -> None:
    builds = [build("web", n, minutes_ago=100 - n) for n in range(1, 11)]
    view = views.overview("shop", [], [buildconfig("web", last=10)], builds, NOW)
    (row,) = view.buildconfigs
    assert row.build_count == 10
    assert [b.number for b in row.recent] == [10, 9, 8]
    assert view.recent_builds[0].name == "web-10"


def test_durations_read_as_people_write_them() -> None:
    assert views.seconds_text(0.25) == "250ms"
    assert views.seconds_text(42) == "42s"
    assert views.seconds_text(185) == "3m05s"
    assert views.seconds_text(7440) == "2h04m"
    assert views.seconds_text(None) == ""
    # Stages timed by a container's start and end (to the second): 0 is under a second.
    assert views.stage_duration(0) == "<1s"
    assert views.stage_duration(1500) == "1s"
    assert views.stage_duration(None) == ""
    assert views.stage_duration("12") == ""
    running = build("web", 1, "Running", minutes_ago=2)
    assert views.build_duration(running, NOW) == "2m00s"
    assert views.build_duration(build("web", 2, "Complete"), NOW) == "1m15s"


def _large_namespace() -> FakeSource:
    fake = FakeSource("big")
    fake.add("imagestreams", "big", *(stream(f"app-{n}", "big", tags=3) for n in range(500)))
    fake.add("buildconfigs", "big", *(buildconfig(f"app-{n}", "big") for n in range(100)))
    phases = ("Complete", "Complete", "Failed", "Running", "Cancelled")
    fake.add(
        "builds",
        "big",
        *(
            build(f"app-{n % 100}", n // 100 + 1, phases[n % 5], "big", minutes_ago=n)
            for n in range(2000)
        ),
    )
    return fake


async def test_overview_of_500_streams_and_2000_builds() -> None:
    fake = _large_namespace()
    port = unused_port()
    app = make_app(fake, Settings(port=port, token=TOKEN))
    async with TestClient(TestServer(app, host="127.0.0.1", port=port)) as test_client:
        started = time.perf_counter()
        answer = await test_client.get("/ns/big")
        html = await answer.text()
        elapsed = time.perf_counter() - started
    print(f"\noverview of 500 ImageStreams and 2,000 Builds: {elapsed * 1000:.0f} ms")
    assert answer.status == 200
    assert html.count('href="/ns/big/imagestreams/') == 500
    assert "2000 builds" in html
    assert "the newest 50 shown" in html
    # Builds bounded: 50 recent + 3 per BuildConfig, not 2,000 rows.
    assert html.count('href="/ns/big/builds/') == views.RECENT_BUILDS + 100 * 3
    assert len(fake.lists) == 3


# --- live --------------------------------------------------------------------------


def test_sse_frame_puts_every_line_in_its_own_data_field() -> None:
    frame = sse_frame("builds", "<p>a</p>\n<p>b</p>\r\nevent: evil")
    assert frame == (b"event: builds\ndata: <p>a</p>\ndata: <p>b</p>\ndata: event: evil\n\n")
    assert sse_frame("x\nevent: y", "z") == b"event: xevent: y\ndata: z\n\n"


async def _read_event(response: Any, name: str, wait_seconds: float = 5) -> str:
    """The data of the next event called ``name`` on an SSE response."""

    async def read() -> str:
        event, data = "", []
        while True:
            raw = await response.content.readline()
            if not raw:
                raise AssertionError("stream ended")
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
            elif line == "":
                if event == name:
                    return "\n".join(data)
                event, data = "", []

    return await asyncio.wait_for(read(), wait_seconds)


async def test_overview_stream_sends_a_build_as_it_changes(
    source: FakeSource, client: TestClient[Any, Any]
) -> None:
    response = await client.get("/ns/shop/overview/events")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/event-stream"
    first = await _read_event(response, "builds")
    assert "web-3" in first
    await asyncio.sleep(0)
    source.emit("builds", "shop", "ADDED", build("web", 4, "Running", minutes_ago=0))
    update = await _read_event(response, "builds")
    assert 'href="/ns/shop/builds/web-4"' in update
    assert "4 builds, 2 not finished" in update
    response.close()


async def test_watches_stop_when_the_last_stream_leaves(source: FakeSource) -> None:
    port = unused_port()
    app = make_app(source, Settings(port=port, token=TOKEN, linger_seconds=0.3))
    async with TestClient(TestServer(app, host="127.0.0.1", port=port)) as client:
        await _streams_share_and_stop(source, client)


async def _streams_share_and_stop(source: FakeSource, client: TestClient[Any, Any]) -> None:
    first = await client.get("/ns/shop/overview/events")
    second = await client.get("/ns/shop/overview/events")
    await _read_event(first, "builds")
    await _read_event(second, "builds")
    assert source.watching[("builds", "shop")] == 1  # shared, not one per stream
    first.close()
    await asyncio.sleep(0.2)
    assert source.watching[("builds", "shop")] == 1
    second.close()
    for _ in range(50):
        if source.watching[("builds", "shop")] == 0:
            break
        await asyncio.sleep(0.05)
    assert source.watching[("builds", "shop")] == 0


async def test_streams_are_bounded() -> None:
    fake = FakeSource("shop")
    hub = Hub(fake, max_streams=1, linger_seconds=0)
    async with hub.subscribe([BUILDS], "shop"):
        from headwater.console.live import Busy

        with pytest.raises(Busy):
            async with hub.subscribe([IMAGESTREAMS], "shop"):
                pass
    assert hub.informers == {}
    await hub.close()


async def test_a_forbidden_watch_is_said_in_the_stream(
    source: FakeSource, client: TestClient[Any, Any]
) -> None:
    source.failures["imagestreams"] = api_error(403, "Forbidden", "cannot list imagestreams")
    response = await client.get("/ns/shop/overview/events")
    section = await _read_event(response, "imagestreams")
    assert "Forbidden" in section
    assert "cannot list imagestreams" in section
    response.close()


# --- the other pages -----------------------------------------------------------------


async def test_imagestream_page_shows_each_tag(
    source: FakeSource, client: TestClient[Any, Any]
) -> None:
    answer = await client.get("/ns/shop/imagestreams/web")
    assert answer.status == 200
    html = await answer.text()
    assert "web:v0" in html
    assert "imported from r/web:v0" in html
    assert "sha256:" + "0" * 64 in html
    assert 'action="/ns/shop/imagestreams/web/import"' in html
    assert 'sse-connect="/ns/shop/imagestreams/web/events"' in html


async def test_answers_on_the_imagestream_page_sit_outside_its_live_section(
    source: FakeSource, client: TestClient[Any, Any]
) -> None:
    """A live update replaces the tags section: an answer inside it would be wiped."""
    html = await (await client.get("/ns/shop/imagestreams/web")).text()
    start = html.index('sse-swap="tags"')
    end = html.index("</section>", start)
    for region in ('id="import-result"', 'id="followers-result"', 'id="promote-result"'):
        assert not start < html.index(region) < end, region
    # Each tag asks who follows it; the answer lands outside the live section.
    follows = 'hx-get="/ns/shop/imagestreams/web/followers?tag=v0" hx-target="#followers-result"'
    assert start < html.index(follows) < end


async def test_a_missing_stream_is_a_not_found_page(client: TestClient[Any, Any]) -> None:
    answer = await client.get("/ns/shop/imagestreams/nope")
    assert answer.status == 404
    html = await answer.text()
    assert "Not found" in html
    assert "Traceback" not in html


def _deployment(name: str, namespace: str, follows: str, paused: bool = False) -> dict[str, Any]:
    import json

    trigger: dict[str, Any] = {
        "from": {"kind": "ImageStreamTag", "name": follows, "namespace": "shop"},
        "fieldPath": 'spec.template.spec.containers[?(@.name=="web")].image',
    }
    if paused:
        trigger["paused"] = True
    return {
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"uid-d-{name}",
            "annotations": {"image.openshift.io/triggers": json.dumps([trigger])},
        },
        "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "x"}]}}},
    }


async def test_followers_across_namespaces_skip_the_forbidden_ones(
    source: FakeSource, client: TestClient[Any, Any]
) -> None:
    source.add("namespaces", "", *({"metadata": {"name": n}} for n in ("shop", "prod", "secret")))
    source.add("deployments", "shop", _deployment("web", "shop", "web:v0"))
    source.add("deployments", "prod", _deployment("web-prod", "prod", "web:v0", paused=True))
    source.add("deployments", "shop", _deployment("other", "shop", "web:v1"))
    alias = stream("mirror")
    alias["spec"]["tags"] = [
        {"name": "stable", "from": {"kind": "ImageStreamTag", "name": "web:v0"}}
    ]
    source.add("imagestreams", "shop", alias)
    real_list = source.list

    async def forbidding(kind: Any, namespace: str | None, labels: Any = None) -> Any:
        if namespace == "secret":
            raise api_error(403, "Forbidden", "no")
        return await real_list(kind, namespace, labels)

    source.list = forbidding  # type: ignore[method-assign]
    answer = await client.get(
        "/ns/shop/imagestreams/web/followers?tag=v0", headers={"HX-Request": "true"}
    )
    html = await answer.text()
    assert answer.status == 200
    assert "<html" not in html  # a fragment for htmx
    assert ">web<" in html
    assert ">web-prod<" in html
    assert ">other<" not in html
    assert "mirror:stable" in html
    assert "Skipped namespace secret: you may not list there." in html
    # The paused trigger offers to resume, the active one to pause.
    assert html.count('name="paused" value="0"') == 1
    assert html.count('name="paused" value="1"') == 1
    # The prod Deployment's trigger names the tag with its namespace.
    assert 'name="image" value="shop/web:v0"' in html


def test_followers_find_buildconfig_image_triggers() -> None:
    bc = buildconfig("app")
    bc["spec"]["triggers"] = [
        {
            "type": "ImageChange",
            "imageChange": {"from": {"kind": "ImageStreamTag", "name": "web:v0"}},
        }
    ]
    found = views.followers("shop", "web", "v0", {"buildconfigs": {"shop": [bc]}})
    assert [(f.kind, f.name, f.paused) for f in found] == [("BuildConfig", "app", False)]
    assert views.followers("shop", "web", "v1", {"buildconfigs": {"shop": [bc]}}) == []


async def test_buildconfig_page_lists_its_builds(client: TestClient[Any, Any]) -> None:
    html = await (await client.get("/ns/shop/buildconfigs/web")).text()
    assert html.index("web-3") < html.index("web-2") < html.index("web-1")
    assert 'action="/ns/shop/buildconfigs/web/start"' in html
    assert 'name="commit"' in html


async def test_build_page_shows_failure_and_snippet(client: TestClient[Any, Any]) -> None:
    html = await (await client.get("/ns/shop/builds/web-2")).text()
    assert "Failed (DockerBuildFailed)" in html
    assert "make: *** [all] Error 2" in html
    assert 'sse-connect="/ns/shop/builds/web-2/log"' in html
    assert "1m15s" in html
    assert "Cancel build" not in html  # it ended
    assert 'action="/ns/shop/builds/web-2/rebuild"' in html
    running = await (await client.get("/ns/shop/builds/web-3")).text()
    assert 'action="/ns/shop/builds/web-3/cancel"' in running


async def test_build_log_is_streamed_escaped_and_ends(
    client: TestClient[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import headwater.cli.builds as cli_builds

    def fake_stream_logs(
        client: Any, namespace: str, name: str, follow: bool, out: Any, say: Any
    ) -> None:
        assert (namespace, name, follow) == ("shop", "web-3", True)
        say("waiting for the build pod: Pending")
        out.write("STEP 1: FROM <base>\n")
        out.write("done & pushed\n")

    monkeypatch.setattr(cli_builds, "stream_logs", fake_stream_logs)
    monkeypatch.setattr(cli_builds, "get_build", lambda c, ns, n: {"status": {"phase": "Complete"}})
    response = await client.get("/ns/shop/builds/web-3/log")
    assert (await response.content.readline()) == b"event: reset\n"
    assert (await _read_event(response, "waiting")) == "waiting for the build pod: Pending"
    lines = await _read_event(response, "line")
    while "pushed" not in lines:
        lines += await _read_event(response, "line")
    assert "STEP 1: FROM &lt;base&gt;" in lines
    assert "done &amp; pushed" in lines
    assert (await _read_event(response, "end")) == "The log ended: the build is Complete."


# --- actions -------------------------------------------------------------------------


async def test_an_action_needs_the_csrf_token(
    source: FakeSource, client: TestClient[Any, Any]
) -> None:
    from tests.consolefake import FakeSyncClient

    source.client = FakeSyncClient()
    answer = await client.post("/ns/shop/builds/web-3/cancel", data={})
    assert answer.status == 403
    assert source.client.patched == []


async def test_import_now_goes_through_the_cli_apply(
    source: FakeSource, client: TestClient[Any, Any]
) -> None:
    from tests.consolefake import FakeSyncClient

    sync = FakeSyncClient()
    sync.add(stream("web"))
    source.client = sync
    answer = await client.post(
        "/ns/shop/imagestreams/web/import",
        data={"tag": "v1", security.CSRF_FIELD: TOKEN},
        headers={"HX-Request": "true"},
    )
    html = await answer.text()
    assert "Import of web:v1 from r/web:v1 requested." in html
    ((body, manager),) = sync.applied
    assert manager == "headwater-tag-v1"
    assert body["metadata"]["annotations"] == {"image.headwater.dev/import-requested": "v1"}
    assert body["spec"]["tags"][0]["from"] == {"kind": "DockerImage", "name": "r/web:v1"}


async def test_promote_goes_through_the_cli_tag(
    source: FakeSource, client: TestClient[Any, Any]
) -> None:
    from tests.consolefake import FakeSyncClient

    sync = FakeSyncClient()
    sync.add(stream("web"))
    source.client = sync
    answer = await client.post(
        "/ns/shop/imagestreams/web/tag",
        data={"source": "web:v0", "destination": "web:prod", security.CSRF_FIELD: TOKEN},
        headers={"HX-Request": "true"},
    )
    assert "Tag shop/web:prod set to web:v0." in await answer.text()
    ((body, _),) = sync.applied
    (entry,) = body["spec"]["tags"]
    assert entry["name"] == "prod"
    # Pinned to v0's current image, as `headwater tag web:v0 web:prod` pins it.
    assert entry["from"]["kind"] == "ImageStreamImage"


async def test_a_forbidden_action_says_so(source: FakeSource, client: TestClient[Any, Any]) -> None:
    from tests.consolefake import FakeSyncClient

    sync = FakeSyncClient()
    sync.add(stream("web"))
    sync.refuse = api_error(
        403, "Forbidden", 'imagestreams "web" is forbidden: User "dev" cannot patch'
    )
    source.client = sync
    answer = await client.post(
        "/ns/shop/imagestreams/web/import",
        data={"tag": "v1", security.CSRF_FIELD: TOKEN},
        headers={"HX-Request": "true"},
    )
    html = await answer.text()
    assert 'role="alert"' in html
    assert "you may not do this" in html
    assert "cannot patch" in html
    # Without htmx: a page with the same message and a way back.
    answer = await client.post(
        "/ns/shop/imagestreams/web/import", data={"tag": "v1", security.CSRF_FIELD: TOKEN}
    )
    assert answer.status == 403
    assert 'href="/ns/shop/imagestreams/web"' in await answer.text()


def test_env_overrides_parse_as_start_build_takes_them() -> None:
    from headwater.console.actions import parse_env

    assert parse_env("A=1\n\n B = two=2 \n") == (("A", "1"), ("B", " two=2"))
    with pytest.raises(Exception, match="expected NAME=VALUE"):
        parse_env("nonsense")


# --- the trace -----------------------------------------------------------------------

DIGEST = "sha256:" + "a" * 64


def _traced_namespace() -> dict[str, list[dict[str, Any]]]:
    """A build that pushed DIGEST, the tag move that recorded it, and a rollout of it."""
    web = stream("web", tags=0)
    web["status"]["tags"] = [
        {
            "tag": "latest",
            "items": [
                {
                    "created": "2026-12-05T08:50:20Z",
                    "image": DIGEST,
                    "dockerImageReference": f"registry.local/shop/web@{DIGEST}",
                }
            ],
        }
    ]
    done = build("web", 5, "Complete")
    done["status"].update(
        startTimestamp="2026-12-05T08:49:00Z",
        completionTimestamp="2026-12-05T08:50:15Z",
        output={"to": {"imageDigest": DIGEST}},
        revision={"git": {"commit": "3f2c1ab9d8e7f6a5", "message": "Fix the cart\n\nbody"}},
    )
    deployment = _deployment("web", "shop", "web:latest")
    deployment["metadata"]["annotations"]["image.openshift.io/triggers"] = deployment["metadata"][
        "annotations"
    ]["image.openshift.io/triggers"].replace('"web:latest", "namespace": "shop"', '"web:latest"')
    rs = {
        "metadata": {
            "name": "web-7d9",
            "uid": "uid-rs",
            "creationTimestamp": "2026-12-05T08:50:21Z",
            "annotations": {"deployment.kubernetes.io/revision": "2"},
            "ownerReferences": [{"uid": "uid-d-web"}],
        },
        "spec": {
            "replicas": 2,
            "template": {
                "spec": {
                    "containers": [{"name": "web", "image": f"registry.local/shop/web@{DIGEST}"}]
                }
            },
        },
    }
    pods = [
        {
            "metadata": {"name": f"web-7d9-{n}", "ownerReferences": [{"uid": "uid-rs"}]},
            "status": {
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "lastTransitionTime": f"2026-12-05T08:50:3{n}Z",
                    }
                ]
            },
        }
        for n in range(2)
    ]
    return {
        "imagestreams": [web],
        "builds": [done],
        "deployments": [deployment],
        "replicasets": [rs],
        "pods": pods,
    }


def test_trace_of_a_tag_has_every_step_with_its_time() -> None:
    found = _traced_namespace()
    result = views.trace(
        "shop", found["imagestreams"][0], "latest", DIGEST, found["builds"],
        found["deployments"], found["replicasets"], found["pods"], NOW,
    )  # fmt: skip
    labels = [(s.label, s.at, s.after) for s in result.steps]
    assert labels == [
        ("Commit", "", ""),
        ("Build started", "2026-12-05T08:49:00Z", ""),
        ("Image pushed", "2026-12-05T08:50:15Z", "+1m15s"),
        ("Tag web:latest moved", "2026-12-05T08:50:20Z", "+5s"),
        ("Deployment web: ReplicaSet created", "2026-12-05T08:50:21Z", "+1s"),
        ("Deployment web: pods ready", "2026-12-05T08:50:31Z", "+10s"),
    ]
    assert result.steps[0].detail == "3f2c1ab9d8e7 Fix the cart"
    assert result.complete
    assert result.total == "1m31s"


def test_trace_waits_for_pods_not_yet_ready() -> None:
    found = _traced_namespace()
    found["pods"] = found["pods"][:1]
    result = views.trace(
        "shop", found["imagestreams"][0], "latest", DIGEST, found["builds"],
        found["deployments"], found["replicasets"], found["pods"], NOW,
    )  # fmt: skip
    assert result.steps[-1].detail == "1/2 ready"
    assert not result.steps[-1].done
    assert not result.complete


async def test_trace_page_for_a_deployment(source: FakeSource) -> None:
    for kind, items in _traced_namespace().items():
        source.objects[(kind, "shop")] = items
    port = unused_port()
    app = make_app(source, Settings(port=port, token=TOKEN))
    async with TestClient(TestServer(app, host="127.0.0.1", port=port)) as test_client:
        answer = await test_client.get("/ns/shop/trace?deployment=web")
        html = await answer.text()
        assert answer.status == 200
        assert "Deployment web: pods ready" in html
        assert "complete, 1m31s from first to last step" in html
        assert 'sse-connect="/ns/shop/trace/events?deployment=web"' in html
        missing = await test_client.get("/ns/shop/trace?deployment=nope")
        assert "Not found" in await missing.text()


async def test_an_expired_watch_lists_again_without_a_message(source: FakeSource) -> None:
    from headwater.console.live import Informer

    informer = Informer(source, BUILDS, "shop")
    informer.start()
    try:
        assert await informer.changed(0, 5)
        for _ in range(100):
            if source.queues[("builds", "shop")]:
                break
            await asyncio.sleep(0.01)
        lists = len(source.lists)
        source.add("builds", "shop", build("web", 9, "Running"))
        source.fail_watch("builds", "shop", api_error(410, "Expired", "too old resource version"))
        for _ in range(100):
            if len(source.lists) > lists and len(informer.objects) == 4:
                break
            await asyncio.sleep(0.01)
        assert len(informer.objects) == 4  # relisted: the build added meanwhile is there
        assert informer.problem is None
    finally:
        await informer.stop()


def test_a_busy_port_is_one_line_not_a_trace() -> None:
    import socket

    import click

    from headwater.console.server import serve
    from headwater.console.source import KubeSource

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = Settings(address="127.0.0.1", port=port, token=TOKEN)
        with pytest.raises(click.ClickException, match=f"cannot listen on 127.0.0.1:{port}"):
            asyncio.run(serve(KubeSource(None, "shop"), settings, open_browser=False))


def test_every_template_and_asset_is_package_data() -> None:
    """A file the console serves but the wheel leaves out would work here and 404 installed."""
    import fnmatch
    import tomllib
    from pathlib import Path

    import headwater.console

    root = Path(__file__).resolve().parents[2]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["headwater"]
    package = Path(headwater.console.__file__).parent
    served = [
        p.relative_to(package.parent).as_posix()
        for folder in ("templates", "static")
        for p in (package / folder).iterdir()
    ]
    assert served
    missing = [f for f in served if not any(fnmatch.fnmatch(f, pat) for pat in patterns)]
    assert missing == []


async def test_streams_of_one_namespace_share_one_render(
    client: TestClient[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    real = views.overview

    def counting(*args: Any) -> views.Overview:
        calls.append(args[0])
        return real(*args)

    monkeypatch.setattr(views, "overview", counting)
    first = await client.get("/ns/shop/overview/events")
    await _read_event(first, "builds")
    second = await client.get("/ns/shop/overview/events")
    await _read_event(second, "builds")
    assert calls == ["shop"]
    first.close()
    second.close()


async def test_sections_are_sent_again_as_their_ages_move_on(
    client: TestClient[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import headwater.console.app as console_app

    monkeypatch.setattr(console_app, "KEEPALIVE_SECONDS", 0.1)
    monkeypatch.setattr(console_app, "REFRESH_SECONDS", 0.3)
    response = await client.get("/ns/shop/overview/events")
    await _read_event(response, "builds")
    # No change in the cluster, and yet the section comes again (ages, running durations).
    await _read_event(response, "builds", wait_seconds=3)
    response.close()


# --- the build page: a clean log, no stale "waiting", no Cancel on an ended build ---


def test_ansi_escapes_are_stripped() -> None:
    kaniko = "\x1b[36mINFO\x1b[0m[0000] Retrieving image manifest golang:1.22"
    assert views.strip_ansi(kaniko) == "INFO[0000] Retrieving image manifest golang:1.22"
    assert views.strip_ansi("\x1b[1;31merror\x1b[m: \x1b[2Kdone\x1b[1A") == "error: done"
    assert views.strip_ansi("\x1b]0;title\x07a \x1b]8;;http://x\x1b\\link") == "a link"
    assert views.strip_ansi("cut short \x1b") == "cut short "
    assert views.strip_ansi("[36m plain brackets stay\ttabs too") == (
        "[36m plain brackets stay\ttabs too"
    )


async def _all_events(response: Any, last: str, wait_seconds: float = 5) -> list[tuple[str, str]]:
    """Every (event, data) in order, until the event ``last``."""
    seen: list[tuple[str, str]] = []

    async def read() -> list[tuple[str, str]]:
        event, data = "", []
        while True:
            raw = await response.content.readline()
            if not raw:
                return seen
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
            elif line == "":
                if event:
                    seen.append((event, "\n".join(data)))
                    if event == last:
                        return seen
                event, data = "", []

    return await asyncio.wait_for(read(), wait_seconds)


async def test_build_log_is_shown_without_colour_codes_and_waiting_clears(
    client: TestClient[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import headwater.cli.builds as cli_builds

    def fake_stream_logs(
        client: Any, namespace: str, name: str, follow: bool, out: Any, say: Any
    ) -> None:
        say("waiting for the fetch step: PodInitializing")
        out.write("cloned\n")
        say("waiting for the build step of web-3-build: PodInitializing")
        out.write("\x1b[36mINFO\x1b[0m[0000] Retrieving image manifest <base>\n")

    monkeypatch.setattr(cli_builds, "stream_logs", fake_stream_logs)
    monkeypatch.setattr(cli_builds, "get_build", lambda c, ns, n: {"status": {"phase": "Complete"}})
    response = await client.get("/ns/shop/builds/web-3/log")
    events = await _all_events(response, "end")
    log = "".join(data for event, data in events if event == "line")
    assert "INFO[0000] Retrieving image manifest &lt;base&gt;" in log
    assert "\x1b" not in log
    assert "[36m" not in log
    # In the order said: each wait, then cleared before the next line, none left over.
    assert [(event, "INFO" if "INFO" in data else data) for event, data in events] == [
        ("reset", ""),
        ("waiting", "waiting for the fetch step: PodInitializing"),
        ("waiting", ""),
        ("line", "cloned\n"),
        ("waiting", "waiting for the build step of web-3-build: PodInitializing"),
        ("waiting", ""),
        ("line", "INFO"),
        ("end", "The log ended: the build is Complete."),
    ]
    assert events[-1] == ("end", "The log ended: the build is Complete.")


async def test_a_log_that_ends_while_waiting_clears_the_wait(
    client: TestClient[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import click

    import headwater.cli.builds as cli_builds

    def fake_stream_logs(
        client: Any, namespace: str, name: str, follow: bool, out: Any, say: Any
    ) -> None:
        say("waiting for the build step of web-3-build: PodInitializing")
        raise click.ClickException("build web-3 was cancelled")

    monkeypatch.setattr(cli_builds, "stream_logs", fake_stream_logs)
    response = await client.get("/ns/shop/builds/web-3/log")
    events = await _all_events(response, "end")
    assert [e for e in events if e[0] == "waiting"][-1] == ("waiting", "")
    assert events[-1] == ("end", "build web-3 was cancelled")


async def test_a_log_that_ends_before_the_build_waits_for_its_phase(
    client: TestClient[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The build step's log ends before the operator records Complete: the end says Complete."""
    import headwater.cli.builds as cli_builds
    from headwater.console import app as console_app

    phases = iter(["Running", "Running", "Complete"])

    def fake_stream_logs(
        client: Any, namespace: str, name: str, follow: bool, out: Any, say: Any
    ) -> None:
        out.write("pushed\n")

    monkeypatch.setattr(console_app, "FINISH_POLL_SECONDS", 0.01)
    monkeypatch.setattr(cli_builds, "stream_logs", fake_stream_logs)
    monkeypatch.setattr(
        cli_builds, "get_build", lambda c, ns, n: {"status": {"phase": next(phases)}}
    )
    response = await client.get("/ns/shop/builds/web-3/log")
    events = await _all_events(response, "end")
    assert events[-3:] == [
        ("waiting", "the log ended; waiting for build web-3 to finish"),
        ("waiting", ""),
        ("end", "The log ended: the build is Complete."),
    ]


async def test_a_log_whose_build_never_ends_says_its_phase(
    client: TestClient[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import headwater.cli.builds as cli_builds
    from headwater.console import app as console_app

    def fake_stream_logs(
        client: Any, namespace: str, name: str, follow: bool, out: Any, say: Any
    ) -> None:
        out.write("pushed\n")

    monkeypatch.setattr(console_app, "FINISH_POLL_SECONDS", 0.01)
    monkeypatch.setattr(console_app, "FINISH_WAIT_SECONDS", 0.05)
    monkeypatch.setattr(cli_builds, "stream_logs", fake_stream_logs)
    monkeypatch.setattr(cli_builds, "get_build", lambda c, ns, n: {"status": {"phase": "Running"}})
    response = await client.get("/ns/shop/builds/web-3/log")
    events = await _all_events(response, "end")
    assert events[-1] == ("end", "The log ended: the build is Running.")


async def test_cancel_is_withdrawn_when_the_build_ends(
    source: FakeSource, client: TestClient[Any, Any]
) -> None:
    page = await (await client.get("/ns/shop/builds/web-3")).text()
    assert 'action="/ns/shop/builds/web-3/cancel"' in page
    response = await client.get("/ns/shop/builds/web-3/events")
    first = await _read_event(response, "actions")
    assert "Cancel build" in first
    await asyncio.sleep(0)
    source.emit("builds", "shop", "MODIFIED", build("web", 3, "Complete", minutes_ago=1))
    actions = await _read_event(response, "actions")
    assert "Cancel build" not in actions
    assert 'action="/ns/shop/builds/web-3/rebuild"' in actions
    response.close()
    for phase in ("Complete", "Failed", "Cancelled", "Error"):
        assert not views.build_view(build("web", 9, phase), NOW).cancellable
