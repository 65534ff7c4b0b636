"""Fair sharing between tenants: per-host buckets served in turn, slots by namespace,
caches that go with their objects, bounded metric labels.

The end-to-end case runs the real ImportRunner, its scheduler and its registry
client against a real, slow HTTP registry stand-in on 127.0.0.1; only the
Kubernetes side is a fake (an in-memory store of ImageStreams).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator, Mapping
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web

from headwater.config import Config
from headwater.imports.model import StreamRef
from headwater.imports.runner import ImportRunner
from headwater.imports.tagfeed import TagFeed
from headwater.imports.throttle import FairBucket, HostBackoff, HostBuckets
from headwater.metrics import code_label, registry_label, set_known_registries
from headwater.registry.auth import TokenCache, TokenKey
from headwater.registry.client import RegistryClient
from headwater.workqueue import WorkQueue

# --- a slow registry ----------------------------------------------------------------------

CONFIG_BLOB = json.dumps(
    {"architecture": "amd64", "os": "linux", "config": {}, "rootfs": {"type": "layers"}}
).encode()
CONFIG_DIGEST = "sha256:" + hashlib.sha256(CONFIG_BLOB).hexdigest()
MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": CONFIG_DIGEST,
            "size": len(CONFIG_BLOB),
        },
        "layers": [],
    }
).encode()
MANIFEST_DIGEST = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()


@pytest.fixture
async def slow_registry() -> AsyncIterator[tuple[str, dict[str, int], asyncio.Event]]:
    """A plain-HTTP registry on 127.0.0.1 whose manifests take ``DELAY`` seconds each."""
    seen = {"manifests": 0}
    busy = asyncio.Event()  # set once 20 manifests were asked for

    async def manifest(request: web.Request) -> web.Response:
        seen["manifests"] += 1
        if seen["manifests"] >= 20:
            busy.set()
        await asyncio.sleep(DELAY)
        headers = {
            "Content-Type": "application/vnd.oci.image.manifest.v1+json",
            "Docker-Content-Digest": MANIFEST_DIGEST,
        }
        return web.Response(body=MANIFEST, headers=headers)

    async def blob(request: web.Request) -> web.Response:
        return web.Response(body=CONFIG_BLOB, content_type="application/octet-stream")

    app = web.Application()
    app.router.add_route("*", "/v2/{repo:.+}/manifests/{ref}", manifest)
    app.router.add_get("/v2/{repo:.+}/blobs/{digest}", blob)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"127.0.0.1:{port}", seen, busy
    finally:
        await runner.cleanup()


DELAY = 0.2


class FakeKube:
    """The Kubernetes side: ImageStreams in memory; status patches merged and timed."""

    def __init__(self) -> None:
        self.streams: dict[StreamRef, dict[str, Any]] = {}
        self.imported_at: dict[tuple[StreamRef, str], float] = {}
        self.imported = asyncio.Event()  # set at each tag's first image

    async def get(self, resource: Any, name: str, namespace: str | None = None) -> Any:
        return SimpleNamespace(imagePullSecrets=[])  # the default ServiceAccount

    async def create(self, obj: Any) -> Any:
        return obj  # Events

    async def patch(self, resource: Any, name: str, patch: Mapping[str, Any], **kwargs: Any) -> Any:
        ref = StreamRef(kwargs["namespace"], name)
        body = self.streams[ref]
        body["status"] = {**(body.get("status") or {}), **patch["status"]}
        for entry in body["status"].get("tags") or []:
            if entry.get("items"):
                self.imported_at.setdefault((ref, entry["tag"]), time.monotonic())
                self.imported.set()
        return SimpleNamespace(to_dict=lambda: json.loads(json.dumps(body)))


def stream(ref: StreamRef, host: str, tags: int) -> dict[str, Any]:
    return {
        "metadata": {"namespace": ref.namespace, "name": ref.name, "generation": 1},
        "spec": {
            "tags": [
                {
                    "name": f"t{i}",
                    "from": {"kind": "DockerImage", "name": f"{host}/shared/app:t{i}"},
                    "importPolicy": {"insecure": True, "scheduled": True},
                }
                for i in range(tags)
            ]
        },
    }


INTERVAL = 5


async def test_a_namespace_with_500_slow_tags_does_not_delay_another_by_an_interval(
    slow_registry: tuple[str, dict[str, int], asyncio.Event],
) -> None:
    host, seen, busy = slow_registry
    config = Config(import_interval_seconds=INTERVAL, import_rate_per_minute=600)
    kube = FakeKube()
    registry = RegistryClient()
    runner = ImportRunner(kube, registry, config, concurrency=4)  # type: ignore[arg-type]
    big, small = StreamRef("tenant-a", "many"), StreamRef("tenant-b", "one")
    kube.streams[big] = stream(big, host, 500)
    kube.streams[small] = stream(small, host, 1)
    scheduler = asyncio.create_task(runner.scheduler.run())
    try:
        runner._remember(big, kube.streams[big])
        runner.scheduler.add(big)
        # Let the big namespace fill the bucket's queue and the repository's lock.
        await asyncio.wait_for(busy.wait(), timeout=30)
        asked = time.monotonic()
        runner._remember(small, kube.streams[small])
        runner.scheduler.add(small)
        async with asyncio.timeout(INTERVAL + 2):
            while (small, "t0") not in kube.imported_at:
                kube.imported.clear()
                await kube.imported.wait()
        waited = kube.imported_at[(small, "t0")] - asked
        big_done = sum(1 for ref, _ in kube.imported_at if ref == big)
        print(f"tenant-b waited {waited:.2f}s; tenant-a had {seen['manifests']} manifests asked")
        assert waited < INTERVAL
        assert big_done == 0  # the big stream was still importing: it really competed
    finally:
        scheduler.cancel()
        await runner.scheduler.stop()
        await registry.close()


# --- the bucket ---------------------------------------------------------------------------


async def test_the_bucket_serves_waiting_namespaces_in_turn() -> None:
    bucket = FairBucket(rate_per_minute=600, burst=1)  # one token each 0.1 s
    order: list[str] = []

    async def take(namespace: str) -> None:
        await bucket.acquire(namespace)
        order.append(namespace)

    tasks = [asyncio.create_task(take("a")) for _ in range(10)]
    await asyncio.sleep(0)
    tasks.append(asyncio.create_task(take("b")))
    await asyncio.sleep(0)
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=5)
    assert order.index("b") <= 2, order  # not after a's ten


async def test_a_cancelled_waiter_leaves_the_queue() -> None:
    bucket = FairBucket(rate_per_minute=60, burst=1)
    await bucket.acquire("a")
    waiter = asyncio.create_task(bucket.acquire("a"))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert not bucket._queues


async def test_buckets_are_per_host_and_bounded() -> None:
    buckets = HostBuckets(rate_per_minute=60, max_hosts=4)
    assert buckets.bucket("a.example") is buckets.bucket("a.example")
    assert buckets.bucket("a.example") is not buckets.bucket("b.example")
    for i in range(100):
        buckets.bucket(f"h{i}.example")
    assert len(buckets) <= 5


def test_backoff_remembers_a_bounded_number_of_hosts() -> None:
    backoff = HostBackoff(max_hosts=10)
    for i in range(100):
        backoff.failed(f"h{i}.example", "Timeout", None)
    assert len(backoff) <= 10
    assert backoff.remaining("h99.example") > 0


# --- the scheduler ----------------------------------------------------------------------------


async def test_no_namespace_holds_more_than_its_share_of_the_slots() -> None:
    started: list[StreamRef] = []
    release = asyncio.Event()

    async def wake(ref: StreamRef) -> None:
        started.append(ref)
        await release.wait()

    scheduler: WorkQueue[StreamRef] = WorkQueue("test", wake, concurrency=8)
    loop = asyncio.create_task(scheduler.run())
    try:
        for i in range(40):
            scheduler.add(StreamRef("a", f"s{i}"))
        await asyncio.sleep(0.1)
        assert scheduler.running("a") == 7  # one slot stays free for others
        scheduler.add(StreamRef("b", "s0"))
        scheduler.add(StreamRef("b", "s1"))
        await asyncio.sleep(0.1)
        assert scheduler.running("b") == 1  # at once, though "a" has 33 waiting
        release.set()
        await asyncio.sleep(0.2)
        # From then on the slots alternate: "b"'s second stream went before "a"'s 33.
        assert started.index(StreamRef("b", "s1")) < 12
    finally:
        release.set()
        loop.cancel()
        await scheduler.stop()


# --- caches and labels ------------------------------------------------------------------------


async def test_forgetting_a_stream_drops_what_was_kept_for_it() -> None:
    kube = FakeKube()
    runner = ImportRunner(kube, RegistryClient(), Config())  # type: ignore[arg-type]
    ref = StreamRef("gone", "web")
    body = stream(ref, "reg.example", 3)
    body["status"] = {"tags": [{"tag": "t0", "items": [{"image": "sha256:" + "a" * 64}]}]}
    runner._remember(ref, body)
    runner.checked[f"{ref}:t0"] = runner.started
    runner.reference_digests[f"{ref}:t1"] = "sha256:" + "b" * 64
    runner.expected[(ref, "t2")] = ("sha256:" + "c" * 64, 0)
    runner.keyrings["gone"] = (0.0, [])
    runner.locks[ref]
    runner.forget("gone", "web")
    assert not runner.bodies
    assert not runner.checked
    assert not runner.reference_digests
    assert not runner.expected
    assert not runner.keyrings
    assert not runner.locks
    assert not runner.repository_locks


async def test_tag_feed_forgets_a_deleted_streams_tags() -> None:
    feed = TagFeed()
    body = {
        "metadata": {"namespace": "n", "name": "s", "resourceVersion": "1"},
        "status": {
            "tags": [{"tag": f"t{i}", "items": [{"image": f"sha256:{i}"}]} for i in range(3)]
        },
    }
    await feed.observe(body)
    await feed.settle()
    assert len(feed) == 3
    feed.forget("n", "s")
    assert len(feed) == 0


def test_token_cache_is_bounded_even_with_long_lived_tokens() -> None:
    cache = TokenCache(clock=lambda: 0.0)
    for i in range(10_000):
        cache.put(TokenKey("https://auth", "svc", f"repository:r{i}:pull", ""), "t", 86400)
    assert len(cache) <= 4096


def test_registry_labels_fold_unknown_hosts_and_odd_codes() -> None:
    set_known_registries(["registry.internal:5000"])
    try:
        assert registry_label("registry.internal:5000") == "registry.internal:5000"
        assert registry_label("quay.io") == "quay.io"
        assert registry_label("tenant-chosen-1.example") == "other"
        assert code_label(404) == "404"
        assert code_label(499) == "4xx"
        assert code_label(999) == "9xx"
    finally:
        set_known_registries([])
