"""An honest schedule: per-host rates, a lane for imports someone waits for, the
ImportScheduleMet condition and its metrics, idle cycles that cost one request per tag
and no write, and deleted streams that stop all their work at once.

The runner, its queues and its registry client are real, against a small registry
stand-in on 127.0.0.1 that counts requests; only the Kubernetes side is a fake.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web

from headwater.config import Config, ConfigError, config_from_mapping, load_config
from headwater.imports.model import StreamRef
from headwater.imports.notifications import Push
from headwater.imports.plan import tag_key
from headwater.imports.runner import ImportRunner
from headwater.imports.schedule import RATE_LIMITED, SCHEDULE_MET
from headwater.imports.throttle import HostBuckets
from headwater.metrics import REGISTRY, registry_label
from headwater.registry.client import RegistryClient
from headwater.resources import ImageStream
from headwater.timefmt import parse_time
from tests.fakekube import FakeKube, running

LONG_AGO = datetime.now(UTC) - timedelta(hours=1)


def _time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def manifest(label: str) -> bytes:
    config = json.dumps({"architecture": "amd64", "os": "linux", "label": label}).encode()
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": "sha256:" + hashlib.sha256(config).hexdigest(),
                "size": len(config),
            },
            "layers": [],
        }
    ).encode()


def digest_of(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


OLD = manifest("old")
NEW = manifest("new")


@dataclass
class Registry:
    host: str
    tags: dict[str, bytes] = field(default_factory=dict)
    """repository:tag -> manifest; any other tag answers OLD."""
    requests: list[tuple[float, str, str]] = field(default_factory=list)
    """(time, method, path) of every request."""

    def count(self, needle: str = "", method: str | None = None, after: float = 0.0) -> int:
        return sum(
            1
            for at, m, path in self.requests
            if needle in path and (method is None or m == method) and at >= after
        )


@pytest.fixture
async def registry() -> AsyncIterator[Registry]:
    state = Registry(host="")

    async def manifests(request: web.Request) -> web.Response:
        state.requests.append((time.monotonic(), request.method, request.path))
        key = f"{request.match_info['repo']}:{request.match_info['ref']}"
        body = state.tags.get(key, OLD)
        headers = {
            "Content-Type": "application/vnd.oci.image.manifest.v1+json",
            "Docker-Content-Digest": digest_of(body),
        }
        return web.Response(body=None if request.method == "HEAD" else body, headers=headers)

    async def blob(request: web.Request) -> web.Response:
        state.requests.append((time.monotonic(), request.method, request.path))
        return web.Response(body=b"{}", content_type="application/octet-stream")

    app = web.Application()
    app.router.add_route("*", "/v2/{repo:.+}/manifests/{ref}", manifests)
    app.router.add_get("/v2/{repo:.+}/blobs/{digest}", blob)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state.host = f"127.0.0.1:{port}"
    try:
        yield state
    finally:
        await runner.cleanup()


def stream(
    namespace: str, name: str, host: str, tags: int, *, scheduled: bool = True
) -> dict[str, Any]:
    """A stream whose ``tags`` tags were imported (OLD) an hour ago."""
    image = digest_of(OLD)
    names = [f"t{i}" for i in range(tags)]
    return {
        "apiVersion": "image.headwater.dev/v1",
        "kind": "ImageStream",
        "metadata": {"name": name, "namespace": namespace, "generation": 1},
        "spec": {
            "tags": [
                {
                    "name": n,
                    "from": {"kind": "DockerImage", "name": f"{host}/{namespace}/{name}:{n}"},
                    "importPolicy": {"insecure": True, "scheduled": scheduled},
                }
                for n in names
            ]
        },
        "status": {
            "tags": [
                {
                    "tag": n,
                    "items": [
                        {
                            "image": image,
                            "generation": 1,
                            "created": _time(LONG_AGO),
                            "dockerImageReference": f"{host}/{namespace}/{name}@{image}",
                        },
                    ],
                    "lastImportTime": _time(LONG_AGO),
                    "conditions": [
                        {
                            "type": "ImportSuccess",
                            "status": "True",
                            "reason": "Imported",
                            "message": "",
                            "lastTransitionTime": _time(LONG_AGO),
                            "generation": 1,
                        },
                    ],
                }
                for n in names
            ]
        },
    }


def all_due(runner: ImportRunner, body: dict[str, Any]) -> None:
    """This process last looked at every tag of ``body`` an hour ago: all are due now."""
    ref = StreamRef(body["metadata"]["namespace"], body["metadata"]["name"])
    for entry in body["spec"]["tags"]:
        runner.checked[tag_key(ref, entry["name"])] = LONG_AGO


# --- settings -------------------------------------------------------------------------------


def test_import_rates_from_the_file_and_the_environment() -> None:
    config = config_from_mapping(
        {
            "importRatePerMinute": 30,
            "importRates": {"Registry.Example.com:5000": 600, "docker.io": "60"},
        }
    )
    assert config.import_rates == {"registry.example.com:5000": 600, "docker.io": 60}
    env = load_config({"HEADWATER_IMPORT_RATES": "quay.io=120, registry.internal=6000"})
    assert env.import_rates == {"quay.io": 120, "registry.internal": 6000}
    assert load_config({}).import_rates == {}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"https://quay.io": 60}, "host[:port]"),
        ({"quay.io/org": 60}, "host[:port]"),
        ({"quay.io": 0}, "importRates.quay.io: expected an integer >= 1"),
        ({"quay.io": "fast"}, "importRates.quay.io: expected an integer"),
        ("quay.io", "host=rate pairs"),
        ([60], "a mapping of registry hosts"),
    ],
)
def test_bad_import_rates_say_what_is_wrong(value: object, message: str) -> None:
    with pytest.raises(ConfigError, match="importRates") as info:
        config_from_mapping({"importRates": value})
    assert message in str(info.value)


def test_each_host_gets_its_own_rate_and_each_lane_its_own_bucket() -> None:
    buckets = HostBuckets(60, rates={"registry.internal": 6000, "docker.io": 30})
    assert buckets.rate("registry.internal") == 6000
    assert buckets.rate("registry-1.docker.io") == 30  # Docker Hub's API host
    assert buckets.rate("quay.io") == 60
    assert buckets.bucket("registry.internal").rate == 100.0
    assert buckets.bucket("quay.io", "now") is not buckets.bucket("quay.io", "scheduled")


# --- the lane of imports someone waits for --------------------------------------------------


async def test_a_notified_push_does_not_wait_behind_the_schedule(registry: Registry) -> None:
    kube = FakeKube()
    # 60 a minute: the schedule's 80 due tags take 70 s after the first burst of 10.
    runner = ImportRunner(kube.client, RegistryClient(), Config(import_rate_per_minute=60))
    busy = kube.add(stream("shop", "many", registry.host, 80))
    pushed = kube.add(stream("shop", "web", registry.host, 1, scheduled=False))
    all_due(runner, busy)
    try:
        async with running(runner.scheduler):
            await runner.observe(busy)
            await runner.observe(pushed)
            async with asyncio.timeout(5):
                while registry.count("/shop/many/") < 10:  # noqa: ASYNC110 - polls a count
                    await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)
            registry.tags["shop/web:t0"] = NEW
            asked = time.monotonic()
            runner.import_now([Push(registry.host, "shop/web", "t0", digest_of(NEW))])
            async with asyncio.timeout(2):
                while True:
                    body = kube.body(ImageStream, "web", "shop")
                    if body["status"]["tags"][0]["items"][0]["image"] == digest_of(NEW):
                        break
                    await asyncio.sleep(0.002)
            took = time.monotonic() - asked
            print(f"push to status: {took * 1000:.1f} ms")
            assert took < 0.5
            # The registry confirmed the pushed digest with one HEAD, nothing fetched.
            assert registry.count("/shop/web/", "HEAD") == 1
            assert registry.count("/shop/web/", "GET") == 0
            assert registry.count("/shop/many/") < 20  # the schedule was still waiting
    finally:
        await runner.urgent.stop()
        await runner.registry.close()


# --- idle cycles ----------------------------------------------------------------------------


async def test_an_idle_cycle_costs_one_head_per_tag_and_no_write(registry: Registry) -> None:
    kube = FakeKube()
    runner = ImportRunner(
        kube.client,
        RegistryClient(),
        Config(import_interval_seconds=60, import_rate_per_minute=6000),
    )
    body = kube.add(stream("shop", "web", registry.host, 5))
    ref = StreamRef("shop", "web")
    try:
        await runner.observe(body)
        all_due(runner, body)
        await runner.reconcile(ref)  # the first look may write (Ready, observedGeneration)
        for _ in range(2):
            all_due(runner, body)
            writes, started = len(kube.writes), time.monotonic()
            await runner.reconcile(ref)
            assert registry.count(after=started) == 5
            assert registry.count(method="HEAD", after=started) == 5
            assert len(kube.writes) == writes
    finally:
        await runner.registry.close()


# --- the honest schedule ---------------------------------------------------------------------


def _gauge(name: str, host: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"registry": registry_label(host)})


async def test_a_schedule_the_rate_cannot_keep_says_so(registry: Registry) -> None:
    kube = FakeKube()
    # 40 scheduled tags at 120 a minute: each is checked every 20 s, not every 10 s.
    runner = ImportRunner(
        kube.client,
        RegistryClient(),
        Config(
            import_interval_seconds=10,
            import_rate_per_minute=6000,
            import_rates={registry.host: 120},
        ),
    )
    first = kube.add(stream("shop", "web", registry.host, 20))
    second = kube.add(stream("shop", "api", registry.host, 20))
    try:
        await runner.observe(first)
        await runner.observe(second)
        assert _gauge("headwater_import_effective_interval_seconds", registry.host) == 20
        assert _gauge("headwater_import_schedule_behind", registry.host) == 1
        await runner.reconcile(StreamRef("shop", "web"))
        status = kube.body(ImageStream, "web", "shop")["status"]
        met = next(c for c in status["conditions"] if c["type"] == SCHEDULE_MET)
        assert met["status"] == "False"
        assert met["reason"] == RATE_LIMITED
        assert "about every 20 s" in met["message"]
        assert registry.host in met["message"]
        assert "120 requests a minute" in met["message"]
        # nextImportTime is never a time that passes unwritten: scheduled checks that
        # find nothing write nothing, so scheduled tags carry none.
        now = datetime.now(UTC)
        for entry in status["tags"]:
            next_time = parse_time(entry.get("nextImportTime"))
            assert next_time is None or next_time > now
        # A stream goes: the rest can be kept again, and the condition goes.
        runner.forget("shop", "api")
        assert _gauge("headwater_import_effective_interval_seconds", registry.host) == 10
        assert _gauge("headwater_import_schedule_behind", registry.host) == 0
        await runner.reconcile(StreamRef("shop", "web"))
        status = kube.body(ImageStream, "web", "shop")["status"]
        assert SCHEDULE_MET not in {c["type"] for c in status["conditions"]}
    finally:
        await runner.registry.close()


async def test_an_idle_cycle_of_a_late_schedule_writes_nothing(registry: Registry) -> None:
    kube = FakeKube()
    runner = ImportRunner(
        kube.client,
        RegistryClient(),
        Config(import_interval_seconds=10, import_rates={registry.host: 60}),
    )
    body = kube.add(stream("shop", "web", registry.host, 30))
    ref = StreamRef("shop", "web")
    try:
        await runner.observe(body)
        all_due(runner, body)
        runner.buckets.bucket(registry.host).capacity = 100.0
        runner.buckets.bucket(registry.host).tokens = 100.0
        await runner.reconcile(ref)
        writes = len(kube.writes)
        all_due(runner, body)
        runner.buckets.bucket(registry.host).tokens = 100.0
        await runner.reconcile(ref)
        assert len(kube.writes) == writes
    finally:
        await runner.registry.close()


# --- deletion -------------------------------------------------------------------------------


async def test_a_deleted_stream_stops_all_its_work_at_once(registry: Registry) -> None:
    kube = FakeKube()
    runner = ImportRunner(kube.client, RegistryClient(), Config(import_rate_per_minute=60))
    body = kube.add(stream("gone", "web", registry.host, 40))
    all_due(runner, body)
    try:
        async with running(runner.scheduler):
            await runner.observe(body)
            async with asyncio.timeout(5):
                while registry.count("/gone/web/") < 10:  # noqa: ASYNC110 - polls a count
                    await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
            assert runner.buckets.bucket(registry.host)._queues  # 30 tags wait their turn
            runner.forget("gone", "web")
            deleted = time.monotonic()
            await asyncio.sleep(0.1)
            # Its place in the registry's queue is given up at once, and nothing more
            # is asked for it.
            assert not runner.buckets.bucket(registry.host)._queues
            assert not runner._tasks
            await asyncio.sleep(1.5)
            assert registry.count("/gone/web/", after=deleted) == 0
    finally:
        await runner.registry.close()
