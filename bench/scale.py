#!/usr/bin/env python3
"""Benchmark: the operator at cluster scale on the real API server (issue 15, item 2).

Creates, in ``N/100`` namespaces ``scale-<pid>-<k>``: ``N`` ImageStreams of 10
scheduled tags each, ``N/10`` Deployments (0 replicas) following a tag through
``image.openshift.io/triggers`` and ``N/20`` BuildConfigs (no triggers, so they
never build: they cost the operator its watch and cache only). Then starts the
operator as ``make run`` does (``headwater operator run --standalone``, all
namespaces) behind a counting proxy in front of the API server
(:mod:`tests.apiproxy`); its registry requests are counted in the local
registry's access log (user agent ``headwater-registry-client``, repositories
``scale/...``). It measures:

- start -> every stream imported once (all 10 tags of all N streams in status);
- an idle window (``--window``, 60 s, ``--settle`` s after the first import;
  the import interval is the operator's default, 900 s): registry requests per
  tag per interval (every tag has its own slot in the interval, so a window
  sees its share), API writes, the operator's CPU and RSS at rest;
- restart: the operator stopped and started again, time to steady state
  (its CPU below 25 % of a core for 5 s) and the API requests it made meanwhile;
- push-driven tag moves at ``--moves-per-minute`` for ``--push-seconds``: the
  tag really moved in the registry (a manifest PUT), then a registry
  notification posted to the operator's webhook port; from the PUT returning
  to this process's own watch seeing the Deployment's pod template on the new
  digest (the patch that starts a rollout), p50 and p99.

Targets: peak RSS <= 600 MB, 0 API writes per idle cycle, restart to steady
state <= 60 s, p99 tag move -> rollout <= 2 s at 1,000 moves a minute.

The tags point at a few repositories of the local registry: ``scale/app:t0..t9``
for the scheduled tags, and ``scale/m<j>:live`` (one repository per Deployment)
for the tag each Deployment follows, so a move imports exactly one tag.

    SCALE=10000 .venv/bin/python bench/scale.py      # or --scale N; QUICK=1 is N=1000

Run it under the shared-cluster lock (flock /tmp/hw-e2e.lock ...). The
namespaces are deleted at the end, and waited for, whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "operator"), str(REPO)]

import aiohttp  # noqa: E402
from lightkube import ALL_NS, AsyncClient  # noqa: E402
from lightkube.codecs import from_dict  # noqa: E402
from lightkube.config.kubeconfig import KubeConfig  # noqa: E402
from lightkube.core.exceptions import ApiError  # noqa: E402
from lightkube.resources.apps_v1 import Deployment  # noqa: E402
from lightkube.resources.core_v1 import Namespace  # noqa: E402

from bench._common import (  # noqa: E402
    bounded,
    cluster_env,
    cpu_seconds,
    parser,
    peak_rss_kib,
    percentiles_ms,
    rss_kib,
    start_operator,
    stop_operator,
    verdict,
)
from headwater.kube import plain_dict  # noqa: E402
from headwater.resources import ImageStream  # noqa: E402
from headwater.workloads.triggers import ANNOTATION_OPENSHIFT  # noqa: E402
from tests.apiproxy import (  # noqa: E402
    WRITE_VERBS,
    ApiProxy,
    Counts,
    running_api_proxy,
)
from tests.e2e.helpers import push_image  # noqa: E402
from tests.registry_servers import free_port  # noqa: E402

TAGS = 10
STREAMS_PER_NAMESPACE = 100
LABEL = "scale.headwater.dev/run"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONCURRENCY = 32
TARGET_RSS_MB = 600
TARGET_RESTART_S = 60
TARGET_P99_MS = 2000


# --- the workload's objects (pure) ------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """Which object lives where, for ``n`` streams of run ``run``."""

    n: int
    run: str

    @property
    def namespaces(self) -> list[str]:
        count = max(1, -(-self.n // STREAMS_PER_NAMESPACE))
        return [f"scale-{self.run}-{k}" for k in range(count)]

    def namespace_of(self, stream: int) -> str:
        return f"scale-{self.run}-{stream // STREAMS_PER_NAMESPACE}"

    @property
    def deployments(self) -> int:
        return max(1, self.n // 10)

    @property
    def buildconfigs(self) -> int:
        return max(1, self.n // 20)

    def followed_stream(self, deployment: int) -> int:
        """Deployment ``d<j>`` follows tag ``t0`` of stream ``10 j`` (same namespace)."""
        return deployment * 10


def _labels(run: str) -> dict[str, str]:
    return {LABEL: run}


def stream_body(layout: Layout, index: int, registry: str) -> dict[str, Any]:
    """Stream ``s<index>``: ten scheduled tags; in every tenth, ``t0`` is a Deployment's."""
    tags = []
    for t in range(TAGS):
        source = f"{registry}/scale/app:t{t}"
        if t == 0 and index % 10 == 0:
            source = f"{registry}/scale/m{index // 10}:live"
        tags.append(
            {
                "name": f"t{t}",
                "from": {"kind": "DockerImage", "name": source},
                "importPolicy": {"scheduled": True, "insecure": True},
            }
        )
    return {
        "apiVersion": "image.headwater.dev/v1",
        "kind": "ImageStream",
        "metadata": {
            "name": f"s{index:05d}",
            "namespace": layout.namespace_of(index),
            "labels": _labels(layout.run),
        },
        "spec": {"tags": tags},
    }


def deployment_body(layout: Layout, index: int, placeholder: str) -> dict[str, Any]:
    stream = layout.followed_stream(index)
    trigger = [
        {
            "from": {"kind": "ImageStreamTag", "name": f"s{stream:05d}:t0"},
            "fieldPath": 'spec.template.spec.containers[?(@.name=="web")].image',
        }
    ]
    name = f"d{index:05d}"
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": layout.namespace_of(stream),
            "labels": _labels(layout.run),
            "annotations": {ANNOTATION_OPENSHIFT: json.dumps(trigger)},
        },
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "web", "image": placeholder}]},
            },
        },
    }


def buildconfig_body(layout: Layout, index: int, base: str) -> dict[str, Any]:
    """A Docker BuildConfig without triggers: it never builds unless asked."""
    stream = index * 20
    return {
        "apiVersion": "build.headwater.dev/v1",
        "kind": "BuildConfig",
        "metadata": {
            "name": f"b{index:05d}",
            "namespace": layout.namespace_of(stream),
            "labels": _labels(layout.run),
        },
        "spec": {
            "triggers": [],
            "source": {"type": "Dockerfile", "dockerfile": f"FROM {base}\nLABEL n={index}\n"},
            "strategy": {"type": "Docker", "dockerStrategy": {}},
            "output": {"to": {"kind": "ImageStreamTag", "name": f"b{index:05d}:latest"}},
        },
    }


def notification(registry: str, repository: str, tag: str) -> dict[str, Any]:
    """The generic notification body: ``repository`` at ``registry`` moved its ``tag``."""
    return {"repository": f"{registry}/{repository}", "tag": tag}


def stream_imported(body: Mapping[str, Any], tags: int = TAGS) -> bool:
    """Every spec tag of the stream has an image in its status."""
    entries = (body.get("status") or {}).get("tags") or []
    return sum(1 for e in entries if e.get("items")) >= tags


def deployment_image(body: Mapping[str, Any]) -> str:
    return str(body["spec"]["template"]["spec"]["containers"][0]["image"])


def quiet_since(samples: list[tuple[float, float]], below: float, span: float) -> float | None:
    """The first time ``t`` of ``(t, cpu seconds)`` samples after which the CPU use stayed
    below ``below`` (a fraction of one core) for ``span`` seconds; None when it never did."""
    for i, (start, start_cpu) in enumerate(samples):
        for end, end_cpu in samples[i + 1 :]:
            if end - start >= span:
                if (end_cpu - start_cpu) / (end - start) < below:
                    return start
                break
    return None


# --- what this process sees ---------------------------------------------------------------


@dataclass
class World:
    imported: set[str] = field(default_factory=set)
    images: dict[str, str] = field(default_factory=dict)
    """Deployment name -> its container image, as last seen."""
    pending: dict[str, tuple[str, float]] = field(default_factory=dict)
    """Deployment name -> (digest moved to, when the PUT returned)."""
    latencies: list[float] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def watch_streams(self, kube: AsyncClient, run: str) -> None:
        async for _, obj in kube.watch(ImageStream, namespace=ALL_NS, labels={LABEL: run}):
            body = plain_dict(obj)
            if stream_imported(body):
                self.imported.add(f"{body['metadata']['namespace']}/{body['metadata']['name']}")
                self.changed.set()

    async def watch_deployments(self, kube: AsyncClient, run: str) -> None:
        async for _, obj in kube.watch(Deployment, namespace=ALL_NS, labels={LABEL: run}):
            body = plain_dict(obj)
            name = str(body["metadata"]["name"])
            image = deployment_image(body)
            self.images[name] = image
            moved = self.pending.get(name)
            if moved is not None and moved[0] and image.endswith(moved[0]):
                self.latencies.append(time.perf_counter() - moved[1])
                del self.pending[name]
            self.changed.set()


async def until(world: World, what: str, check: Callable[[], bool], limit: float) -> float:
    """Wait until ``check()``; the seconds it took."""
    started = time.perf_counter()
    while not check():
        if time.perf_counter() - started > limit:
            raise TimeoutError(f"scale: timed out after {limit:.0f} s waiting for {what}")
        world.changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(world.changed.wait(), 1.0)
    return time.perf_counter() - started


class RegistryLog:
    """The operator's requests for ``scale/`` repositories in the registry's access log."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size
        self.seen = 0

    def count(self) -> int:
        """Requests logged since the last :meth:`reset`."""
        with self.path.open("rb") as log:
            log.seek(self.offset)
            chunk = log.read()
        end = chunk.rfind(b"\n") + 1
        self.offset += end
        self.seen += count_requests(chunk[:end])
        return self.seen

    def reset(self) -> int:
        counted = self.count()
        self.seen = 0
        return counted


def count_requests(log: bytes) -> int:
    """Access-log lines of the operator's manifest and blob requests for ``scale/...``."""
    return sum(
        1
        for line in log.splitlines()
        if b'"headwater-registry-client"' in line
        and (b'"HEAD /v2/scale/' in line or b'"GET /v2/scale/' in line)
    )


class Sampler:
    """The operator's CPU seconds every half second, and its RSS."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[tuple[float, float]] = []
        self.peak_kib = 0

    async def run(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                self.samples.append((time.perf_counter(), cpu_seconds(self.pid)))
                self.peak_kib = max(self.peak_kib, peak_rss_kib(self.pid))
                await asyncio.sleep(0.5)


# --- the bench ----------------------------------------------------------------------------


@dataclass
class Run:
    args: argparse.Namespace
    env: dict[str, str]
    layout: Layout
    workdir: Path
    api: ApiProxy
    registry_log: RegistryLog
    kube: AsyncClient
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    webhook_port: int = field(default_factory=free_port)
    lines: list[str] = field(default_factory=list)
    world: World = field(default_factory=World)

    def say(self, line: str) -> None:
        print(line, flush=True)
        self.lines.append(line)

    def start(
        self, log_name: str, *, proxied: bool = True
    ) -> tuple[Any, Sampler, asyncio.Task[None]]:
        operator = start_operator(
            self.env,
            None,
            self.workdir / log_name,
            {
                "KUBECONFIG": str(self.api.kubeconfig if proxied else self.env["KUBECONFIG"]),
                "HEADWATER_WEBHOOK_PORT": str(self.webhook_port),
                "HEADWATER_REGISTRY_WEBHOOK_TOKEN": self.token,
                "HEADWATER_IMPORT_INTERVAL_SECONDS": str(self.args.interval),
                "HEADWATER_IMPORT_RATE_PER_MINUTE": str(self.args.import_rate),
            },
        )
        sampler = Sampler(operator.pid)
        print(f"  operator pid {operator.pid}, log {self.workdir / log_name}", flush=True)
        return operator, sampler, asyncio.create_task(sampler.run())

    async def create_objects(self) -> None:
        layout, registry = self.layout, self.env["REGISTRY"]
        placeholder = self.env["HEADWATER_BUSYBOX_IMAGE"]
        for ns in layout.namespaces:
            await self.kube.create(
                Namespace(metadata={"name": ns, "labels": _labels(layout.run)})  # type: ignore[arg-type]
            )
        bodies = [stream_body(layout, i, registry) for i in range(layout.n)]
        bodies += [deployment_body(layout, j, placeholder) for j in range(layout.deployments)]
        bodies += [buildconfig_body(layout, k, placeholder) for k in range(layout.buildconfigs)]

        async def create(body: dict[str, Any]) -> None:
            try:
                await self.kube.create(from_dict(body))
            except ApiError as exc:
                if exc.status.code != 409:
                    raise

        started = time.perf_counter()
        await bounded([create(b) for b in bodies], CONCURRENCY)
        self.say(
            f"  created {len(bodies)} objects in {len(layout.namespaces)} namespaces"
            f" in {time.perf_counter() - started:.1f} s"
        )

    async def first_import(self) -> None:
        layout, world = self.layout, self.world
        self.api.reset()
        self.registry_log.reset()
        limit = self.args.first_import_limit
        started = time.perf_counter()
        try:
            taken = await until(
                world, "every stream imported", lambda: len(world.imported) >= layout.n, limit
            )
            rolled = await until(
                world,
                "every Deployment on its image",
                lambda: sum("@sha256:" in i for i in world.images.values()) >= layout.deployments,
                max(60.0, limit - taken),
            )
            done = (
                f" all {layout.n} streams ({layout.n * TAGS} tags) imported once:"
                f" {taken:.1f} s = {layout.n * TAGS / taken:.0f} tags/s"
                f" (+{rolled:.1f} s until all {layout.deployments} Deployments patched)"
            )
        except TimeoutError:
            taken = time.perf_counter() - started
            imported = len(world.imported)
            done = (
                f" NOT all imported within {limit:.0f} s: {imported} of {layout.n} streams"
                f" = {imported * TAGS / taken:.0f} tags/s, so all in about"
                f" {layout.n / max(imported, 1) * taken:.0f} s"
            )
        api, registry = self.api.reset(), self.registry_log.reset()
        self.say(f"  start ->{done}")
        self.say(
            f"    registry requests {registry},"
            f" API writes {writes(api)} ({_by_verb(api, WRITE_VERBS)})"
        )

    async def idle(self, sampler: Sampler) -> None:
        tags, interval = self.layout.n * TAGS, self.args.interval
        await asyncio.sleep(self.args.settle)
        self.api.reset()
        self.registry_log.reset()
        cpu0, t0 = cpu_seconds(sampler.pid), time.perf_counter()
        busy = 0.0
        seen = 0
        while time.perf_counter() - t0 < self.args.window:
            await asyncio.sleep(0.5)
            now = self.registry_log.count()
            busy += 0.5 if now > seen else 0.0
            seen = now
        window = time.perf_counter() - t0
        cpu = cpu_seconds(sampler.pid) - cpu0
        api, registry = self.api.reset(), self.registry_log.reset()
        checks = registry
        # Each tag has its own slot in the interval, so a window sees its share of them.
        per_tag = checks / tags * interval / window
        idle_writes = writes(api)
        self.say(
            f"  idle: {window:.0f} s window, {self.args.settle} s after the first import"
            f" (interval {interval} s, nothing moved):"
        )
        self.say(
            f"    registry requests {checks} = {per_tag:.2f} per tag per interval"
            + (f" (effective interval {interval / per_tag:.0f} s)" if 0 < per_tag < 0.95 else "")
            + f"; {checks / window:.0f} requests/s"
        )
        self.say(f"    registry busy (requests flowing) {busy:.1f} s of {window:.0f} s")
        self.say(
            f"    API writes {idle_writes} ({_by_verb(api, WRITE_VERBS)}); API reads"
            f" {api.total(frozenset({'get', 'list'}))}   target 0: {verdict(idle_writes == 0)}"
        )
        self.say(
            f"    operator CPU at rest {cpu / window * 100:.1f} % of a core;"
            f" RSS at rest {rss_kib(sampler.pid) / 1024:.0f} MB"
        )

    async def restart(self, operator: Any, sampler: Sampler, task: asyncio.Task[None]) -> Any:
        stop_operator(operator)
        task.cancel()
        self.api.reset()
        self.registry_log.reset()
        operator, sampler, task = self.start("operator-restart.log")
        took = await self.steady(sampler)
        api, registry = self.api.reset(), self.registry_log.reset()
        self.say(
            f"  restart -> steady state (CPU < 25 % for 5 s): {took:.1f} s"
            f"   target <= {TARGET_RESTART_S} s: {verdict(took <= TARGET_RESTART_S)}"
        )
        self.say(
            f"    meanwhile: API writes {writes(api)} ({_by_verb(api, WRITE_VERBS)}),"
            f" lists {_by_verb(api, frozenset({'list'}))},"
            f" registry requests {registry}"
        )
        return operator, sampler, task

    async def steady(self, sampler: Sampler) -> float:
        """Wait until the operator's CPU is below 25 % of a core for 5 s; the seconds it took."""
        started = time.perf_counter()
        await asyncio.sleep(5)
        while time.perf_counter() - started < 600:
            quiet = quiet_since(sampler.samples, 0.25, 5.0)
            if quiet is not None:
                return quiet - started
            await asyncio.sleep(1)
        return float("inf")

    async def pushes(self) -> None:
        layout, world = self.layout, self.world
        registry = self.env["REGISTRY"]
        manifests = await fetch_manifests(registry)
        interval = 60.0 / self.args.moves_per_minute
        total = int(self.args.push_seconds * self.args.moves_per_minute / 60)
        url = f"http://127.0.0.1:{self.webhook_port}/registry/notifications"
        headers = {"Authorization": f"Bearer {self.token}"}
        world.latencies.clear()
        dropped = 0

        async with aiohttp.ClientSession() as http:

            async def move(j: int) -> None:
                name = f"d{j:05d}"
                current = world.images.get(name, "")
                digest, body = next((d, b) for d, b in manifests.items() if not current.endswith(d))
                async with http.put(
                    f"http://{registry}/v2/scale/m{j}/manifests/live",
                    data=body,
                    headers={"Content-Type": OCI_MANIFEST},
                ) as put:
                    put.raise_for_status()
                world.pending[name] = (digest, time.perf_counter())
                async with http.post(
                    url, json=notification(registry, f"scale/m{j}", "live"), headers=headers
                ) as posted:
                    posted.raise_for_status()

            started = time.perf_counter()
            tasks = []
            j = 0
            for i in range(total):
                await asyncio.sleep(max(0.0, started + i * interval - time.perf_counter()))
                for _ in range(layout.deployments):  # the next Deployment with no move pending
                    j = (j + 1) % layout.deployments
                    if f"d{j:05d}" not in world.pending:
                        break
                else:
                    dropped += 1
                    continue
                world.pending[f"d{j:05d}"] = ("", 0.0)  # taken until the PUT returns
                tasks.append(asyncio.create_task(move(j)))
            await asyncio.gather(*tasks)
            rate = len(tasks) / (time.perf_counter() - started) * 60
        with contextlib.suppress(TimeoutError):
            await until(world, "the last moves", lambda: not world.pending, 60)
        lost = len(world.pending)
        ms = percentiles_ms(world.latencies or [float("inf")])
        within = verdict(ms["p99"] <= TARGET_P99_MS and not lost)
        self.say(
            f"  push-driven tag move -> Deployment patched, {len(tasks)} moves at"
            f" {rate:.0f}/min over {layout.deployments} repositories"
            + (f" ({dropped} skipped: every Deployment had a move pending)" if dropped else "")
        )
        self.say(
            f"    p50 {ms['p50']:.0f} ms  p90 {ms['p90']:.0f} ms  p99 {ms['p99']:.0f} ms"
            f"  max {ms['max']:.0f} ms; not landed within 60 s: {lost}"
            f"   target p99 <= {TARGET_P99_MS} ms: {within}"
        )


def writes(counts: Counts) -> int:
    return counts.total(WRITE_VERBS)


def _by_verb(counts: Counts, verbs: frozenset[str]) -> str:
    rows = sorted(
        ((n, f"{v} {r}") for (v, r), n in counts.requests.items() if v in verbs), reverse=True
    )
    return ", ".join(f"{what} {n}" for n, what in rows[:4]) or "none"


async def fetch_manifests(registry: str) -> dict[str, bytes]:
    """The two manifests every ``scale/m<j>`` repository holds: digest -> bytes."""
    out = {}
    async with aiohttp.ClientSession() as http:
        for tag in ("a", "b"):
            async with http.get(
                f"http://{registry}/v2/scale/m0/manifests/{tag}", headers={"Accept": OCI_MANIFEST}
            ) as got:
                got.raise_for_status()
                out[got.headers["Docker-Content-Digest"]] = await got.read()
    return out


def push_images(registry: str, layout: Layout) -> None:
    """``scale/app:t0..t9``, and ``scale/m<j>`` holding images ``b`` and ``live`` (``a``;
    both tagged in ``scale/m0``, where :func:`fetch_manifests` reads them)."""

    def one(j: int) -> None:
        push_image(registry, f"scale/m{j}", "b", marker="scale-b")
        push_image(registry, f"scale/m{j}", "live", marker="scale-a")
        if j == 0:
            push_image(registry, "scale/m0", "a", marker="scale-a")

    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda t: push_image(registry, "scale/app", f"t{t}", marker=f"t{t}"), range(TAGS)
            )
        )
        list(pool.map(one, range(layout.deployments)))


async def delete_namespaces(kube: AsyncClient, layout: Layout, limit: float = 900) -> float:
    """Delete the run's namespaces and wait until they are gone; the seconds it took."""
    started = time.perf_counter()

    async def delete(ns: str) -> None:
        with contextlib.suppress(ApiError):
            await kube.delete(Namespace, ns)

    await bounded([delete(ns) for ns in layout.namespaces], CONCURRENCY)
    while time.perf_counter() - started < limit:
        left = [ns async for ns in kube.list(Namespace, labels={LABEL: layout.run})]
        if not left:
            break
        await asyncio.sleep(2)
    return time.perf_counter() - started


async def bench(args: argparse.Namespace, env: dict[str, str], workdir: Path) -> list[str]:
    layout = Layout(args.scale, str(os.getpid()))
    kube = AsyncClient(config=KubeConfig.from_file(env["KUBECONFIG"]), field_manager="bench")
    print(
        f"scale: N={layout.n}: {layout.n} ImageStreams x {TAGS} tags, {layout.deployments}"
        f" Deployments, {layout.buildconfigs} BuildConfigs in {len(layout.namespaces)}"
        f" namespaces; operator log in {workdir}; load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    try:
        await asyncio.to_thread(push_images, env["REGISTRY"], layout)
        registry_log = RegistryLog(Path(env["HEADWATER_CLUSTER_STATE"]) / "logs" / "registry.log")
        with running_api_proxy(Path(env["KUBECONFIG"]), workdir / "api") as api:
            run = Run(args, env, layout, workdir, api, registry_log, kube)
            await run.create_objects()
            watches = [
                asyncio.create_task(run.world.watch_streams(kube, layout.run)),
                asyncio.create_task(run.world.watch_deployments(kube, layout.run)),
            ]
            operator, sampler, task = run.start("operator.log")
            try:
                await run.first_import()
                await run.idle(sampler)
                peaks = [sampler.peak_kib]
                operator, sampler, task = await run.restart(operator, sampler, task)
                peaks.append(sampler.peak_kib)
                # The moves are timed on an operator straight on the API server: the
                # counting proxy runs in this process, on the same two cores.
                stop_operator(operator)
                task.cancel()
                operator, sampler, task = run.start("operator-direct.log", proxied=False)
                await run.steady(sampler)
                await run.pushes()
                peaks.append(sampler.peak_kib)
                first, restarted, direct = (p / 1024 for p in peaks)
                run.say(
                    f"  operator peak RSS: first start {first:.0f} MB, restart {restarted:.0f} MB,"
                    f" during the moves {direct:.0f} MB   target <= {TARGET_RSS_MB} MB:"
                    f" {verdict(max(first, restarted, direct) <= TARGET_RSS_MB)}"
                )
            finally:
                for t in (*watches, task):
                    t.cancel()
                stop_operator(operator)
            return run.lines
    finally:
        took = await delete_namespaces(kube, layout)
        print(f"  namespaces deleted in {took:.0f} s", flush=True)
        await kube.close()


def main() -> int:
    options = parser(__doc__)
    default = 1000 if os.environ.get("QUICK") else int(os.environ.get("SCALE", "10000"))
    options.add_argument("--scale", type=int, default=default, help="N, the number of streams")
    options.add_argument(
        "--interval", type=int, default=900, help="import interval, s (the operator's default)"
    )
    options.add_argument("--window", type=float, default=60, help="the idle window, s")
    options.add_argument(
        "--settle", type=int, default=20, help="s between the first import and the window"
    )
    options.add_argument(
        "--first-import-limit",
        type=float,
        default=3600,
        help="s to wait for the first import; then the figures go on with what was done",
    )
    options.add_argument(
        "--import-rate",
        type=int,
        default=1_000_000,
        help="importRatePerMinute (default: lifted, so the schedule is what is measured)",
    )
    options.add_argument("--moves-per-minute", type=int, default=1000)
    options.add_argument("--push-seconds", type=int, default=60)
    args = options.parse_args()
    # The proxy's complaints about watches the stopped operator cut are no figure.
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    env = cluster_env()
    workdir = Path(tempfile.mkdtemp(prefix="hw-scale-"))
    lines = asyncio.run(bench(args, env, workdir))
    print()
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"scale figures, N={args.scale}, {os.cpu_count()} CPUs, load average now {load}")
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
