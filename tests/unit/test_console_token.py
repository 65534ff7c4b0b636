"""The console's token mode (``--token-auth``): many users behind a proxy, each request
acting with its own bearer token and nothing of anyone else's.

Each token gets a FakeSource of its own from the ``make_source`` the app is given, so a
page showing another user's data, or a watch of one user fed to another, shows here.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import re
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer, unused_port

from headwater.console import security
from headwater.console.app import Settings, make_users_app
from headwater.console.live import Busy
from headwater.console.source import Source
from headwater.console.users import Users
from tests.consolefake import FakeSource, FakeSyncClient, api_error, stream

ALICE = "alice-secret-token-0123456789abcdef"
BOB = "bob-secret-token-fedcba9876543210"
CAROL = "carol-secret-token-5555555555555555"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Cluster:
    """One FakeSource per token, each holding that user's own ImageStream; every source
    made is remembered (a second one for the same token means its state was dropped)."""

    def __init__(self) -> None:
        self.made: list[tuple[str, FakeSource]] = []
        self.refused: set[str] = set()
        """Tokens the API server answers 401 to."""

    def make_source(self, token: str) -> Source:
        fake = FakeSource("shop")
        fake.add("imagestreams", "shop", stream(f"only-{token[:5]}"))
        if token in self.refused:
            for kind in ("imagestreams", "buildconfigs", "builds"):
                fake.failures[kind] = api_error(401, "Unauthorized", "Unauthorized")
        self.made.append((token, fake))
        return fake

    def sources(self, token: str) -> list[FakeSource]:
        return [f for t, f in self.made if t == token]


@pytest.fixture
def cluster() -> Cluster:
    return Cluster()


@pytest.fixture
def users(cluster: Cluster) -> Users:
    return Users(cluster.make_source, max_users=2, linger_seconds=0.2)


@pytest.fixture
async def client(users: Users) -> AsyncIterator[TestClient[Any, Any]]:
    port = unused_port()
    settings = Settings(
        address="0.0.0.0", port=port, token_auth=True, allowed_hosts=("console.example.com",)
    )
    app = make_users_app(users, settings)
    async with TestClient(TestServer(app, host="127.0.0.1", port=port)) as test_client:
        yield test_client


def csrf_of(page: str) -> str:
    found = re.search(r'"X-CSRF-Token": "([^"]+)"', html.unescape(page))
    assert found, page
    return found.group(1)


# --- the pure parts ------------------------------------------------------------------


def test_bearer_token_is_read_from_the_authorization_header_only() -> None:
    assert security.bearer_token("Bearer abc.def-ghi_jkl~/+=") == "abc.def-ghi_jkl~/+="
    assert security.bearer_token("bearer abc") == "abc"
    for bad in (None, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer a b", "abc"):
        assert security.bearer_token(bad) is None, bad
    assert security.bearer_token("Bearer " + "a" * 20_000) is None


def test_csrf_tokens_are_per_user_and_do_not_reveal_the_token() -> None:
    secret = security.new_secret()
    alice, bob = security.token_key(ALICE), security.token_key(BOB)
    assert security.user_csrf(secret, alice) != security.user_csrf(secret, bob)
    assert security.user_csrf(secret, alice) == security.user_csrf(secret, alice)
    # Another process (another secret) gives the same user another token.
    assert security.user_csrf(security.new_secret(), alice) != security.user_csrf(secret, alice)
    assert ALICE not in security.user_csrf(secret, alice)
    assert ALICE not in alice


# --- no token, no answer -----------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/", "/ns/shop", "/ns/shop/overview/events", "/static/console.css", "/favicon.ico"]
)
async def test_a_request_without_a_token_gets_401_and_nothing_else(
    client: TestClient[Any, Any], cluster: Cluster, path: str
) -> None:
    for headers in ({}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer"}):
        answer = await client.get(path, headers=headers, allow_redirects=False)
        assert answer.status == 401, (path, headers)
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
        text = await answer.text()
        assert "your own Kubernetes token" in text
        assert "only-" not in text
    answer = await client.post("/ns/shop/imagestreams/x/import", data={"tag": "v1"})
    assert answer.status == 401
    assert cluster.made == []  # nothing was read for nobody


async def test_hosts_are_checked_before_the_token(client: TestClient[Any, Any]) -> None:
    answer = await client.get("/ns/shop", headers={**bearer(ALICE), "Host": "evil.example"})
    assert answer.status == 421
    answer = await client.get("/ns/shop", headers={**bearer(ALICE), "Host": "console.example.com"})
    assert answer.status == 200


# --- separate users ----------------------------------------------------------------


async def test_two_tokens_get_their_own_sources_hubs_data_and_csrf_tokens(
    client: TestClient[Any, Any], cluster: Cluster, users: Users
) -> None:
    alice_page = await (await client.get("/ns/shop", headers=bearer(ALICE))).text()
    bob_page = await (await client.get("/ns/shop", headers=bearer(BOB))).text()
    assert "only-alice" in alice_page
    assert "only-bob-" not in alice_page
    assert "only-bob-" in bob_page
    assert "only-alice" not in bob_page
    (alice_source,) = cluster.sources(ALICE)
    (bob_source,) = cluster.sources(BOB)
    # Each one's watches run on their own source, in their own hub.
    assert alice_source.watching[("imagestreams", "shop")] == 1
    assert bob_source.watching[("imagestreams", "shop")] == 1
    alice, bob = (users.viewers[security.token_key(t)] for t in (ALICE, BOB))
    assert alice.hub is not bob.hub
    assert alice.source is not bob.source
    assert alice.hub.source.inner is alice_source  # type: ignore[attr-defined]

    # A change in Bob's cluster view reaches Bob's stream only.
    async with (
        client.get("/ns/shop/overview/events", headers=bearer(ALICE)) as alice_events,
        client.get("/ns/shop/overview/events", headers=bearer(BOB)) as bob_events,
    ):
        bob_source.emit("imagestreams", "shop", "ADDED", stream("bobs-new-stream"))
        bob_seen = b""
        while b"bobs-new-stream" not in bob_seen:
            bob_seen += await asyncio.wait_for(bob_events.content.readany(), 5)
        alice_seen = b""
        with contextlib.suppress(TimeoutError):
            while True:  # Alice's stream sends nothing of it
                alice_seen += await asyncio.wait_for(alice_events.content.readany(), 1)
        assert b"only-alice" in alice_seen  # her own sections did arrive
        assert b"bobs-new-stream" not in alice_seen

    # Each page carries its own user's CSRF token, never the other's.
    alice_csrf, bob_csrf = csrf_of(alice_page), csrf_of(bob_page)
    assert alice_csrf != bob_csrf
    assert bob_csrf not in alice_page
    assert alice_csrf not in bob_page
    alice_source.client = FakeSyncClient()
    alice_source.client.add(stream("only-alice"))
    # Bob's CSRF token with Alice's credentials is refused, and so is none.
    for given in (bob_csrf, ""):
        answer = await client.post(
            "/ns/shop/imagestreams/only-alice/import",
            data={"tag": "v1", security.CSRF_FIELD: given},
            headers=bearer(ALICE),
        )
        assert answer.status == 403
    answer = await client.post(
        "/ns/shop/imagestreams/only-alice/import",
        data={"tag": "v1", security.CSRF_FIELD: alice_csrf},
        headers={**bearer(ALICE), "Origin": "https://console.example.com"},
    )
    assert answer.status == 200, await answer.text()
    assert alice_source.client.applied or alice_source.client.patched  # with her own client
    answer = await client.post(
        "/ns/shop/imagestreams/only-alice/import",
        data={"tag": "v1", security.CSRF_FIELD: alice_csrf},
        headers={**bearer(ALICE), "Origin": "https://evil.example"},
    )
    assert answer.status == 403


async def test_the_token_never_shows_in_an_answer_or_the_log(
    client: TestClient[Any, Any], cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await client.get("/ns/shop", headers=bearer(ALICE))
    (source,) = cluster.sources(ALICE)
    # A bug (logged with its trace) and an API refusal (a message in the page).
    source.failures["buildconfigs"] = RuntimeError("a bug")
    source.failures["builds"] = api_error(403, "Forbidden", "builds are forbidden")
    answers = [
        await client.get(path, headers=bearer(ALICE))
        for path in ("/ns/shop", "/ns/shop/buildconfigs/web", "/ns/shop/builds/web-1", "/nope")
    ]
    assert "a bug" in caplog.text  # the trace was logged ...
    for answer in answers:
        body = await answer.text()
        assert ALICE not in body
        assert ALICE not in str(dict(answer.headers))
    assert ALICE not in caplog.text  # ... without the token
    assert security.token_key(ALICE) not in caplog.text


# --- how many, how long ------------------------------------------------------------


async def test_the_number_of_users_is_bounded_the_least_recent_idle_one_goes(
    client: TestClient[Any, Any], cluster: Cluster, users: Users
) -> None:
    for token in (ALICE, BOB):
        assert (await client.get("/ns/shop", headers=bearer(token))).status == 200
    alice_viewer = users.viewers[security.token_key(ALICE)]
    assert (await client.get("/ns/shop", headers=bearer(CAROL))).status == 200
    # max_users=2: Alice, seen least recently, was dropped; her watches stopped.
    assert set(users.viewers) == {security.token_key(BOB), security.token_key(CAROL)}
    assert alice_viewer.hub.closed
    await asyncio.sleep(0.1)
    assert cluster.sources(ALICE)[0].watching[("imagestreams", "shop")] == 0
    # Back, she starts afresh with a new source (and pushes out Bob).
    assert (await client.get("/ns/shop", headers=bearer(ALICE))).status == 200
    assert len(cluster.sources(ALICE)) == 2
    assert security.token_key(BOB) not in users.viewers
    # With every user held busy, a new one waits: 503, nobody is dropped.
    for viewer in users.viewers.values():
        viewer.active += 1
    answer = await client.get("/ns/shop", headers=bearer(BOB))
    assert answer.status == 503
    for viewer in users.viewers.values():
        viewer.active -= 1


async def test_a_user_idle_too_long_is_dropped(cluster: Cluster) -> None:
    users = Users(cluster.make_source, idle_seconds=0.05)
    viewer = users.admit(ALICE)
    users.sweep()
    assert users.viewers  # just seen
    await asyncio.sleep(0.1)
    viewer.active = 1  # a request under way (a live stream) keeps them
    users.sweep()
    assert users.viewers
    viewer.active = 0
    users.sweep()
    assert not users.viewers
    await asyncio.sleep(0.01)  # its watches stop in a task of their own
    assert viewer.hub.closed
    assert viewer.closed
    await users.close()


def test_busy_when_every_user_is_in_a_request(cluster: Cluster) -> None:
    users = Users(cluster.make_source, max_users=1)
    users.admit(ALICE).active = 1
    with pytest.raises(Busy):
        users.admit(BOB)
    assert users.admit(ALICE).active == 1  # the same user is always let in


# --- a refused token ---------------------------------------------------------------


async def test_a_token_the_api_server_refuses_says_so_and_drops_its_state(
    client: TestClient[Any, Any], cluster: Cluster, users: Users
) -> None:
    assert (await client.get("/ns/shop", headers=bearer(ALICE))).status == 200
    (first,) = cluster.sources(ALICE)
    # Her token expires while her watches run: her state goes at once.
    first.fail_watch("imagestreams", "shop", api_error(401, "Unauthorized", "Unauthorized"))
    for _ in range(50):
        if security.token_key(ALICE) not in users.viewers:
            break
        await asyncio.sleep(0.01)
    assert security.token_key(ALICE) not in users.viewers
    # Refused on a page: the page says so, and her (new) state goes again.
    cluster.refused.add(ALICE)
    for path in ("/ns/shop/imagestreams/only-alice", "/ns/shop"):
        answer = await client.get(path, headers=bearer(ALICE))
        assert answer.status == 401, path
        assert "your token was refused" in await answer.text()
        assert security.token_key(ALICE) not in users.viewers
    made = len(cluster.sources(ALICE))
    # A good token again: she starts afresh, with a new source.
    cluster.refused.discard(ALICE)
    assert (await client.get("/ns/shop", headers=bearer(ALICE))).status == 200
    assert len(cluster.sources(ALICE)) == made + 1


async def test_an_action_refused_with_401_drops_the_users_state(
    client: TestClient[Any, Any], cluster: Cluster, users: Users
) -> None:
    page = await (await client.get("/ns/shop", headers=bearer(ALICE))).text()
    (source,) = cluster.sources(ALICE)
    source.client = FakeSyncClient()
    source.client.add(stream("only-alice"))
    source.client.refuse = api_error(401, "Unauthorized", "Unauthorized")
    answer = await client.post(
        "/ns/shop/imagestreams/only-alice/import",
        data={"tag": "v1", security.CSRF_FIELD: csrf_of(page)},
        headers={**bearer(ALICE), "HX-Request": "true"},
    )
    assert "your token was refused" in await answer.text()
    assert security.token_key(ALICE) not in users.viewers


class Connecting(FakeSource):
    """A source whose clients are made by ``connect`` (as KubeSource's are), or fail to be."""

    def __init__(self, fail: bool = False) -> None:
        super().__init__("shop")
        self.fail = fail
        self.threads: list[int] = []

    def connect(self) -> None:
        self.threads.append(threading.get_ident())
        if self.fail:
            raise OSError("no CA file")


async def test_a_new_users_clients_are_made_once_off_the_event_loop() -> None:
    made: list[Connecting] = []

    def make_source(token: str) -> Source:
        made.append(Connecting())
        return made[-1]

    users = Users(make_source)
    viewer = users.admit(ALICE)
    await asyncio.gather(users.ready(viewer), users.ready(users.admit(ALICE)))
    (source,) = made
    assert len(source.threads) == 1
    assert source.threads[0] != threading.get_ident()
    await users.close()


async def test_clients_that_cannot_be_made_answer_502_and_keep_nothing() -> None:
    users = Users(lambda token: Connecting(fail=True))
    port = unused_port()
    app = make_users_app(users, Settings(port=port, token_auth=True))
    async with TestClient(TestServer(app, host="127.0.0.1", port=port)) as client:
        answer = await client.get("/ns/shop", headers=bearer(ALICE))
        assert answer.status == 502
        assert "no CA file" not in await answer.text()
        assert not users.viewers


def test_a_401_reads_as_a_refused_token_and_a_403_as_forbidden() -> None:
    from headwater.console.source import problem, refused

    found = problem(api_error(401, "Unauthorized", "Unauthorized"), "listing Builds")
    assert (found.title, found.status) == ("Unauthorized", 401)
    assert "your token was refused" in found.message
    assert refused(api_error(401, "Unauthorized", "Unauthorized"))
    assert not refused(api_error(403, "Forbidden", "no"))
    assert not refused(RuntimeError("a bug"))
    assert problem(api_error(403, "Forbidden", "no")).title == "Forbidden"


# --- where the cluster comes from ----------------------------------------------------


def test_in_cluster_takes_the_pods_api_server_and_ca_but_no_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from headwater.console.source import SERVICE_ACCOUNT_CA, in_cluster, with_token

    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    cluster = in_cluster("shop")
    assert cluster.cluster.server == "https://10.96.0.1:443"
    assert cluster.cluster.certificate_auth == SERVICE_ACCOUNT_CA
    assert cluster.user is None  # the service account's token is never read
    assert cluster.namespace == "shop"
    mine = with_token(cluster, ALICE)
    assert mine.user.token == ALICE
    assert mine.user.token_file is None
    assert mine.cluster == cluster.cluster
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    assert in_cluster("shop").cluster.server == "https://[fd00::1]:443"


def test_outside_a_pod_token_mode_needs_a_kubeconfig(monkeypatch: pytest.MonkeyPatch) -> None:
    import click

    from headwater.console.source import in_cluster

    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(click.ClickException, match="--kubeconfig"):
        in_cluster("shop")


def test_a_kubeconfigs_user_is_replaced_by_the_token(tmp_path: Any) -> None:
    import yaml

    from headwater.cli.kube import load_config
    from headwater.console.source import with_token

    path = tmp_path / "config"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1", "kind": "Config", "current-context": "admin",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
                "users": [{"name": "admin", "user": {"client-certificate": "admin.crt",
                                                     "client-key": "admin.key"}}],
                "contexts": [{"name": "admin", "context": {"cluster": "c", "user": "admin"}}],
            }
        )
    )  # fmt: skip
    mine = with_token(load_config(str(path), None), ALICE)
    assert mine.cluster.server == "https://127.0.0.1:6443"
    assert mine.user.token == ALICE
    assert mine.user.client_cert is None
    assert mine.user.client_key is None


async def test_the_watches_of_all_users_together_are_bounded(cluster: Cluster) -> None:
    users = Users(cluster.make_source, max_watches=4)
    port = unused_port()
    app = make_users_app(users, Settings(port=port, token_auth=True))
    async with TestClient(TestServer(app, host="127.0.0.1", port=port)) as client:
        assert (await client.get("/ns/shop", headers=bearer(ALICE))).status == 200
        # Bob's overview needs 3 more watches than the 4 shared: it is listed instead ...
        answer = await client.get("/ns/shop", headers=bearer(BOB))
        assert answer.status == 200
        assert "only-bob-" in await answer.text()
        assert 'desc="list"' in answer.headers["Server-Timing"]
        (bob_source,) = cluster.sources(BOB)
        assert bob_source.watching[("imagestreams", "shop")] == 0
        # ... and his live stream waits.
        answer = await client.get("/ns/shop/overview/events", headers=bearer(BOB))
        assert answer.status == 503
        assert users.budget.used() == 3


async def test_one_user_cannot_take_every_log_follower(
    client: TestClient[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each followed log is a thread: a token-mode user holds at most 4 of the 16."""
    import headwater.cli.builds as cli_builds
    from headwater.console import app as console_app

    release = threading.Event()

    def held_log(client: Any, namespace: str, name: str, follow: bool, out: Any, say: Any) -> None:
        out.write("started\n")
        release.wait(10)

    monkeypatch.setattr(cli_builds, "stream_logs", held_log)
    monkeypatch.setattr(cli_builds, "get_build", lambda c, ns, n: {"status": {"phase": "Complete"}})
    held = []
    try:
        for number in range(console_app.MAX_LOG_FOLLOWERS_PER_USER):
            answer = await client.get(f"/ns/shop/builds/web-{number}/log", headers=bearer(ALICE))
            assert answer.status == 200
            held.append(answer)
        refused = await client.get("/ns/shop/builds/web-9/log", headers=bearer(ALICE))
        assert refused.status == 503
        assert "too many logs" in await refused.text()
        other = await client.get("/ns/shop/builds/web-9/log", headers=bearer(BOB))
        assert other.status == 200
        held.append(other)
    finally:
        release.set()
        for answer in held:
            answer.close()
