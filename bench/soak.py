#!/usr/bin/env python3
"""Soak benchmark: the mixed workload with continuous pushes and builds, under random faults.

The operator (``headwater operator run --standalone``, the environment of
``make run``, admission webhooks on) watches one fresh namespace through
:mod:`tests.apiproxy`; the scheduled imports of most streams go through a
second proxy in front of the local registry. For ``--minutes`` (default 30):

- ``--streams`` ImageStreams whose ``latest`` tag is a scheduled import
  (every 5 s); every other one also has an alias ``stable`` (kind
  ImageStreamTag, following ``latest``). New digests are pushed to the
  registry one at a time, every ``--push-every`` seconds, to a stream drawn at
  random among those whose previous push has landed (imported, and every
  Deployment following it patched): so every pushed digest is due.
- ``--buildconfigs`` Docker BuildConfigs (``FROM`` their own base stream,
  one ``LABEL`` line: a cheap kaniko build), with ConfigChange and ImageChange
  triggers, output ``app-<n>:latest``. Every ``--build-every`` seconds either a
  new digest of a base stream is pushed (an ImageChange build) or a start
  request is annotated on a BuildConfig (a manual build), at random.
- ``--deployments`` Deployments (0 replicas) following a stream's ``latest``
  or its ``stable`` alias through ``image.openshift.io/triggers``; one more
  follows ``app-0:latest`` (the build chain) when there are BuildConfigs.
- Faults, one window after another (15 to 45 s each; every kind once per
  round, in an order drawn with ``--seed``; a calm window in each round):
  API errors (500, 503, 429 on ``--fault-rate`` of reads, writes and watch
  requests), cut watch streams (ended or reset), connection resets and lost
  answers, a 3 to 10 s API black hole (requests hang, or are held), registry
  errors, a registry black hole. ``--faults`` keeps to some of these kinds.

Every ``--sample-every`` seconds a row: the operator's RSS and CPU (from
/proc/<pid>/status and /proc/<pid>/stat), the API requests per minute the
proxy counted, the fault of the moment. After the soak the faults stop and
the workload is given ``--converge`` seconds to settle; then the summary:

- RSS and CPU, mean of the first quarter of the samples against the last
  quarter (flat, not growing);
- API requests per minute;
- p50/p99 of tag move -> rollout: from a push returning to the bench's own
  watch (straight to the API server) seeing the Deployment's pod template
  with that digest;
- lost events: a pushed digest never seen in its tag's history, an alias or a
  Deployment not on its tag's newest image at the end, a base digest no build
  used, a start request without a Build, a Build never finished; duplicated
  events: a digest twice in one tag's history, two ImageChange Builds for one
  image, two Builds for one start request; tags gone backwards; failed builds.
  All must be 0: the exit status is 1 otherwise.

    .venv/bin/python bench/soak.py [--minutes 30] [--json soak.json]

Needs the local cluster (``make cluster-up``); applies the CRDs and cluster
roles itself. Run it under the shared-cluster lock::

    HEADWATER_KEEP_CLUSTER=1 flock /tmp/hw-e2e.lock .venv/bin/python bench/soak.py --minutes 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "operator"), str(REPO)]

from lightkube import AsyncClient  # noqa: E402
from lightkube.config.kubeconfig import KubeConfig  # noqa: E402
from lightkube.resources.apps_v1 import Deployment  # noqa: E402

from bench._common import cluster_env, cpu_seconds, percentiles_ms, rss_kib  # noqa: E402
from headwater.kube import plain_dict  # noqa: E402
from headwater.resources import Build, ImageStream  # noqa: E402
from tests.apiproxy import (  # noqa: E402
    ApiProxy,
    Counts,
    Faults,
    running_api_proxy,
    running_http_proxy,
)
from tests.e2e.conftest import BASELINE, _create_namespace, wait_for_build_admission  # noqa: E402
from tests.e2e.helpers import (  # noqa: E402
    ALLOWED_REGISTRIES_FOR_IMPORT,
    Cluster,
    eventually,
    local_operator_env,
    pause_installed_operator,
    push_image,
    remove_admission_configuration,
    start_operator,
    stop_operator,
)
from tests.e2e.test_workload_triggers import OPENSHIFT_KEY, WEB_PATH, triggers_value  # noqa: E402
from tests.registry_servers import free_port  # noqa: E402

NAMESPACE = f"hw-soak-{os.getpid()}"
IMPORT_INTERVAL_SECONDS = 5
TERMINAL = ("Complete", "Failed", "Error", "Cancelled")
LABEL_BUILDCONFIG = "build.headwater.dev/buildconfig"
LABEL_REQUEST = "build.headwater.dev/request"
REQUEST_TRIES = 20
REQUEST_RETRY_SECONDS = 3.0


# --- the workload's objects ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Workload:
    streams: list[str]
    """Streams pushed to continuously; imported through the registry proxy."""
    aliased: list[str]
    bases: list[str]
    """Base streams of the BuildConfigs, one each; imported straight from the registry
    (build pods pull what the tag names, and cannot reach this machine's loopback)."""
    buildconfigs: list[str]
    follows: dict[str, str]
    """Deployment -> the tag it follows (``s0:stable``, ``app-0:latest``)."""

    @staticmethod
    def of(args: argparse.Namespace) -> Workload:
        streams = [f"s{i}" for i in range(args.streams)]
        aliased = streams[::2]
        follows = {}
        for i in range(args.deployments):
            name = streams[i % len(streams)]
            tag = "stable" if name in aliased and (i // len(streams)) % 2 == 0 else "latest"
            follows[f"web-{i}"] = f"{name}:{tag}"
        bcs = [f"app-{i}" for i in range(args.buildconfigs)]
        if bcs:
            follows["web-app"] = "app-0:latest"
        return Workload(streams, aliased, [f"base-{i}" for i in range(len(bcs))], bcs, follows)

    def followers(self, stream: str) -> list[str]:
        return [d for d, tag in self.follows.items() if tag.partition(":")[0] == stream]


def imagestream(name: str, tags: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "image.headwater.dev/v1",
        "kind": "ImageStream",
        "metadata": {"name": name},
        "spec": {"tags": tags},
    }


def scheduled(source: str) -> dict[str, Any]:
    return {
        "name": "latest",
        "from": {"kind": "DockerImage", "name": source},
        "importPolicy": {"insecure": True, "scheduled": True},
    }


def deployment(name: str, tag: str, placeholder: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "annotations": {OPENSHIFT_KEY: triggers_value((tag, WEB_PATH))}},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "web", "image": placeholder}]},
            },
        },
    }


def buildconfig(name: str, base: str) -> dict[str, Any]:
    return {
        "apiVersion": "build.headwater.dev/v1",
        "kind": "BuildConfig",
        "metadata": {"name": name},
        "spec": {
            "source": {
                "type": "Dockerfile",
                "dockerfile": f"FROM placeholder\nLABEL soak={name}\n",
            },
            "strategy": {
                "type": "Docker",
                "dockerStrategy": {"from": {"kind": "ImageStreamTag", "name": f"{base}:latest"}},
            },
            "output": {"to": {"kind": "ImageStreamTag", "name": f"{name}:latest"}},
            "triggers": [{"type": "ConfigChange"}, {"type": "ImageChange", "imageChange": {}}],
            "successfulBuildsHistoryLimit": 3,
            "failedBuildsHistoryLimit": 100,
        },
    }


def objects(work: Workload, registry: str, proxied: str, placeholder: str) -> list[dict[str, Any]]:
    out = []
    for name in work.streams:
        tags = [scheduled(f"{proxied}/{NAMESPACE}/{name}:latest")]
        if name in work.aliased:
            tags.append(
                {"name": "stable", "from": {"kind": "ImageStreamTag", "name": f"{name}:latest"}}
            )
        out.append(imagestream(name, tags))
    out += [imagestream(b, [scheduled(f"{registry}/{NAMESPACE}/{b}:latest")]) for b in work.bases]
    out += [imagestream(bc, []) for bc in work.buildconfigs]
    out += [deployment(d, tag, placeholder) for d, tag in work.follows.items()]
    return out


# --- what the bench's own watches see (straight from the API server, no faults) ------------


@dataclasses.dataclass
class Push:
    stream: str
    digest: str
    at: float
    index: int
    """Its place among the stream's pushes."""


class World:
    """The namespace as this process's watches saw it, with the time each thing was first seen."""

    def __init__(self) -> None:
        self.history: dict[tuple[str, str], list[str]] = {}
        """(stream, tag) -> images of its status history, newest first, as last seen."""
        self.ever: dict[tuple[str, str], set[str]] = {}
        """(stream, tag) -> every image ever seen in its history (the status keeps only 10)."""
        self.duplicates: set[tuple[str, str, str]] = set()
        self.images: dict[str, str] = {}
        """Deployment -> the image of its ``web`` container."""
        self.patched: dict[tuple[str, str], float] = {}
        """(Deployment, digest) -> when it was first seen in the pod template."""
        self.builds: dict[str, dict[str, Any]] = {}
        """Build name -> its last seen body (kept after deletion: history limits prune)."""
        self.pushes: dict[str, list[Push]] = {}
        """Stream -> its pushes, in order."""
        self.backwards: list[str] = []
        self._newest: dict[str, int] = {}

    def digest_index(self, stream: str, image: str) -> int | None:
        for push in self.pushes.get(stream, []):
            if image.endswith(push.digest):
                return push.index
        return None

    def _forward(self, what: str, stream: str, image: str | None) -> None:
        """Record ``what`` (a tag or a Deployment) showing ``image``; never an earlier push."""
        if not image:
            return
        index = self.digest_index(stream, image)
        if index is None:
            return
        before = self._newest.get(what, -1)
        if index < before:
            self.backwards.append(f"{what} went back to push {index} of {stream} after {before}")
        self._newest[what] = max(index, before)

    def stream_event(self, body: dict[str, Any]) -> None:
        name = str(body["metadata"]["name"])
        for tag in (body.get("status") or {}).get("tags") or []:
            key = (name, str(tag["tag"]))
            images = [str(item["image"]) for item in tag.get("items") or []]
            self.history[key] = images
            self.ever.setdefault(key, set()).update(images)
            for image, n in Counter(images).items():
                if n > 1:
                    self.duplicates.add((*key, image))
            self._forward(f"{name}:{tag['tag']}", name, images[0] if images else None)

    def deployment_event(self, body: dict[str, Any], now: float, follows: dict[str, str]) -> None:
        name = str(body["metadata"]["name"])
        image = str(body["spec"]["template"]["spec"]["containers"][0]["image"])
        self.images[name] = image
        digest = image.rpartition("@")[2]
        if digest.startswith("sha256:"):
            self.patched.setdefault((name, digest), now)
        if name in follows:
            self._forward(name, follows[name].partition(":")[0], image)

    def build_event(self, body: dict[str, Any]) -> None:
        self.builds[str(body["metadata"]["name"])] = body

    def newest(self, stream: str, tag: str = "latest") -> str | None:
        images = self.history.get((stream, tag)) or []
        return images[0] if images else None

    def builds_using(self, digest: str) -> list[str]:
        """Builds whose strategy ``from`` is pinned to ``digest``."""
        return [
            name
            for name, body in self.builds.items()
            if str(
                (((body.get("spec") or {}).get("strategy") or {}).get("dockerStrategy") or {})
                .get("from", {})
                .get("name", "")
            ).endswith(digest)
        ]


async def watch_forever(
    kube: AsyncClient, resource: Any, handle: Callable[[dict[str, Any]], None]
) -> None:
    """Every event of ``resource`` in the namespace to ``handle``; re-watches after errors."""
    while True:
        try:
            async for _, obj in kube.watch(resource, namespace=NAMESPACE):
                handle(plain_dict(obj))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bench watch: log, wait, watch again
            print(f"  (watch {resource.__name__}: {exc!r}; again)", flush=True)
            await asyncio.sleep(1)


# --- the operator's process: RSS and CPU ----------------------------------------------------


@dataclasses.dataclass
class Sample:
    t: float
    """Seconds since the soak began."""
    rss_mib: float
    cpu_percent: float
    api_per_minute: float
    registry_per_minute: float
    fault: str


# --- faults --------------------------------------------------------------------------------


FAULT_KINDS = (
    "calm",
    "api-errors",
    "api-cut-watches",
    "api-resets",
    "api-blackhole",
    "registry-errors",
    "registry-blackhole",
)


def draw_fault(rng: random.Random, rate: float, kind: str) -> tuple[str, Faults, Faults]:
    """A window of fault ``kind``: its name, the API proxy's faults and the registry proxy's."""
    seed = rng.randrange(1 << 30)
    none = Faults()
    if kind == "api-errors":
        api = Faults(
            write_rate=rate, read_rate=rate, watch_rate=rate, statuses=(500, 503, 429), seed=seed
        )
        return kind, api, none
    if kind == "api-cut-watches":
        mode: Literal["end", "reset"] = "end" if rng.random() < 0.5 else "reset"
        return f"{kind}-{mode}", Faults(cut_watches=(2, 15), cut_mode=mode, seed=seed), none
    if kind == "api-resets":
        faults = Faults(reset_rate=rate / 2, lost_answer_rate=rate / 2, delay_jitter=0.3, seed=seed)
        return kind, faults, none
    if kind == "api-blackhole":
        hole: Literal["hang", "hold"] = "hang" if rng.random() < 0.5 else "hold"
        faults = Faults(blackhole_seconds=rng.uniform(3, 10), blackhole_mode=hole, seed=seed)
        return f"{kind}-{hole}", faults, none
    if kind == "registry-errors":
        return kind, none, Faults(read_rate=rate, statuses=(500, 503, 429), seed=seed)
    if kind == "registry-blackhole":
        return kind, none, Faults(blackhole_seconds=rng.uniform(3, 10), seed=seed)
    return kind, none, none


# --- the soak ------------------------------------------------------------------------------


class Soak:
    def __init__(
        self,
        args: argparse.Namespace,
        cluster: Cluster,
        api: ApiProxy,
        registry_proxy: ApiProxy,
        pid: int,
    ) -> None:
        self.args = args
        self.cluster = cluster
        self.api = api
        self.registry_proxy = registry_proxy
        self.pid = pid
        self.registry = str(cluster.registry)
        self.work = Workload.of(args)
        self.world = World()
        # One generator per task, so that the faults' order depends on the seed only.
        self.rng = random.Random(args.seed + 1)  # noqa: S311 - a bench's draws
        self.fault_rng = random.Random(args.seed)  # noqa: S311
        self.fault = "calm"
        self.timeline: list[tuple[float, str]] = []
        self.samples: list[Sample] = []
        self.api_total: Counter[tuple[str, str]] = Counter()
        self.api_faults: Counter[str] = Counter()
        self.registry_faults: Counter[str] = Counter()
        self.requests: dict[str, str] = {}
        self.refused_requests = 0
        """Start request writes the API server refused (admission timed out in a fault)."""
        """Start request id -> its BuildConfig."""
        self.started = 0.0
        self.stop = asyncio.Event()

    # -- pushes and builds --

    async def push(self, stream: str) -> Push:
        pushes = self.world.pushes.setdefault(stream, [])
        marker = f"{NAMESPACE}-{stream}-{len(pushes)}-{uuid.uuid4().hex[:6]}"
        digest, _ = await asyncio.to_thread(
            push_image, self.registry, f"{NAMESPACE}/{stream}", "latest", marker=marker
        )
        push = Push(stream, digest, time.monotonic(), len(pushes))
        pushes.append(push)
        return push

    def landed(self, stream: str) -> bool:
        """The stream's last push is imported and every Deployment following it has it."""
        pushes = self.world.pushes.get(stream)
        if not pushes:
            return True
        digest = pushes[-1].digest
        if digest not in self.world.ever.get((stream, "latest"), set()):
            return False
        if stream in self.work.bases and not self.world.builds_using(digest):
            return False
        return all((d, digest) in self.world.patched for d in self.work.followers(stream))

    async def pusher(self) -> None:
        while not self.stop.is_set():
            ready = [s for s in self.work.streams if self.landed(s)]
            if ready:
                await self.push(self.rng.choice(ready))
                await asyncio.sleep(self.args.push_every)
            else:
                await asyncio.sleep(0.5)

    async def builder(self) -> None:
        while not self.stop.is_set() and self.work.buildconfigs:
            await asyncio.sleep(self.args.build_every)
            if self.stop.is_set():
                return
            i = self.rng.randrange(len(self.work.buildconfigs))
            base, bc = self.work.bases[i], self.work.buildconfigs[i]
            if self.rng.random() < 0.5 and self.landed(base):
                await self.push(base)
            else:
                request = f"soak{uuid.uuid4().hex[:10]}"
                if await self.ask_for_build(bc, request):
                    self.requests[request] = bc

    async def ask_for_build(self, bc: str, request: str) -> bool:
        """Annotate ``bc`` with a start request, retried as a user would: during an API
        fault the admission webhook (the operator, behind the faulty proxy) may time out,
        and the API server then refuses the write (fail closed). True once written."""
        for _ in range(REQUEST_TRIES):
            try:
                await asyncio.to_thread(
                    self.cluster.kubectl,
                    "annotate", "--overwrite", "-n", NAMESPACE, f"buildconfig/{bc}",
                    f"start.build.headwater.dev/{request}=",
                )  # fmt: skip
                return True
            except AssertionError:
                self.refused_requests += 1
                if self.stop.is_set():
                    return False
                await asyncio.sleep(REQUEST_RETRY_SECONDS)
        return False

    async def faulter(self) -> None:
        kinds: list[str] = []
        while not self.stop.is_set():
            if not kinds:  # every kind once per round, in a random order
                kinds = self.fault_rng.sample(self.args.faults, len(self.args.faults))
            kind, api, reg = draw_fault(self.fault_rng, self.args.fault_rate, kinds.pop())
            if self.args.fault_rate <= 0:
                kind, api, reg = "calm", Faults(), Faults()
            self.fault = kind
            self.timeline.append((round(time.monotonic() - self.started, 1), kind))
            self.api.set_faults(api)
            self.registry_proxy.set_faults(reg)
            window = self.fault_rng.uniform(15, 45)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), window)
        self.calm()

    def calm(self) -> None:
        self.fault = "calm"
        self.api.set_faults(Faults())
        self.registry_proxy.set_faults(Faults())

    # -- samples --

    def take_counts(self) -> tuple[Counts, Counts]:
        api, reg = self.api.reset(), self.registry_proxy.reset()
        self.api_total.update(api.requests)
        self.api_faults.update(api.faults)
        self.registry_faults.update(reg.faults)
        return api, reg

    async def sampler(self) -> None:
        last_t, last_cpu = time.monotonic(), cpu_seconds(self.pid)
        self.take_counts()
        print(f"  {'t':>6} {'RSS MiB':>8} {'CPU %':>6} {'API/min':>8} {'reg/min':>8}  fault")
        while True:
            await asyncio.sleep(self.args.sample_every)
            now, cpu = time.monotonic(), cpu_seconds(self.pid)
            api, reg = self.take_counts()
            dt = now - last_t
            sample = Sample(
                t=round(now - self.started, 1),
                rss_mib=round(rss_kib(self.pid) / 1024, 1),
                cpu_percent=round(100 * (cpu - last_cpu) / dt, 1),
                api_per_minute=round(api.total() * 60 / dt, 1),
                registry_per_minute=round(reg.total() * 60 / dt, 1),
                fault=self.fault,
            )
            last_t, last_cpu = now, cpu
            self.samples.append(sample)
            print(
                f"  {sample.t:>6.0f} {sample.rss_mib:>8.1f} {sample.cpu_percent:>6.1f}"
                f" {sample.api_per_minute:>8.0f} {sample.registry_per_minute:>8.0f}"
                f"  {sample.fault}",
                flush=True,
            )

    # -- checks --

    def problems(self) -> dict[str, list[str]]:
        """Lost and duplicated events, tags gone backwards, failed builds (all must be empty)."""
        w = self.world
        lost: list[str] = []
        duplicated: list[str] = []
        for stream, pushes in w.pushes.items():
            seen = w.ever.get((stream, "latest"), set())
            lost += [
                f"{stream}: pushed digest {p.digest} (push {p.index}) never imported"
                for p in pushes
                if p.digest not in seen
            ]
        for stream in self.work.aliased:
            if w.newest(stream, "stable") != w.newest(stream):
                lost.append(
                    f"{stream}:stable is {w.newest(stream, 'stable')}, not {w.newest(stream)}"
                )
        for name, tag in self.work.follows.items():
            stream, _, tag_name = tag.partition(":")
            pushed = w.pushes.get(stream)
            want = pushed[-1].digest if pushed else w.newest(stream, tag_name)
            if want and not w.images.get(name, "").endswith(want):
                lost.append(f"{name} runs {w.images.get(name)}, not {tag}'s newest {want}")
        for base, bc in zip(self.work.bases, self.work.buildconfigs, strict=True):
            for p in w.pushes.get(base, []):
                if not w.builds_using(p.digest):
                    lost.append(f"{bc}: no build used {base} push {p.index} ({p.digest})")
        by_request: dict[tuple[str, str], list[str]] = {}
        by_trigger: dict[tuple[str, str], list[str]] = {}
        failed: list[str] = []
        for name, body in sorted(w.builds.items()):
            labels = body["metadata"].get("labels") or {}
            bc = str(labels.get(LABEL_BUILDCONFIG))
            by_request.setdefault((bc, str(labels.get(LABEL_REQUEST))), []).append(name)
            for cause in (body.get("spec") or {}).get("triggeredBy") or []:
                image = (cause.get("imageChangeBuild") or {}).get("imageID")
                if image:
                    by_trigger.setdefault((bc, str(image)), []).append(name)
            phase = (body.get("status") or {}).get("phase")
            if phase not in TERMINAL:
                lost.append(f"build {name} never finished ({phase})")
            elif phase != "Complete":
                status = body.get("status") or {}
                failed.append(
                    f"build {name} {phase}: {status.get('reason')} {status.get('message')}"
                )
        for request, bc in self.requests.items():
            if (bc, request) not in by_request:
                lost.append(f"{bc}: start request {request} has no Build")
        duplicated += [
            f"{bc}: start request {r}: builds {names}"
            for (bc, r), names in by_request.items()
            if len(names) > 1 and r != "None"
        ]
        duplicated += [
            f"{bc}: {len(names)} ImageChange builds for {image}: {names}"
            for (bc, image), names in by_trigger.items()
            if len(names) > 1
        ]
        duplicated += [
            f"{s}:{t} has {image} twice in its history" for s, t, image in sorted(w.duplicates)
        ]
        return {
            "lost": lost,
            "duplicated": duplicated,
            "backwards": list(w.backwards),
            "failed_builds": failed,
        }

    def latencies(self) -> list[float]:
        """Seconds from each push to each Deployment following its stream seen patched to it."""
        out = []
        for stream, pushes in self.world.pushes.items():
            for push in pushes:
                for name in self.work.followers(stream):
                    seen = self.world.patched.get((name, push.digest))
                    if seen is not None:
                        out.append(max(0.0, seen - push.at))
        return out

    # -- the run --

    async def setup(self, kube: AsyncClient) -> None:
        w = self.world
        for stream in self.work.streams + self.work.bases:
            await self.push(stream)
        placeholder = self.cluster.image("busybox")
        docs = objects(self.work, self.registry, self.registry_proxy.address, placeholder)
        await asyncio.to_thread(self.cluster.apply, docs, NAMESPACE)
        if self.work.buildconfigs:
            await asyncio.to_thread(wait_for_build_admission, self.cluster, NAMESPACE)
            bcs = [
                buildconfig(bc, b)
                for bc, b in zip(self.work.buildconfigs, self.work.bases, strict=True)
            ]
            await asyncio.to_thread(self.cluster.apply, bcs, NAMESPACE)
        print("first imports, rollouts and builds ...", flush=True)
        await until(
            "the first imports, rollouts and builds",
            lambda: (
                all(self.landed(s) for s in self.work.streams + self.work.bases)
                and all(w.newest(bc) for bc in self.work.buildconfigs)
            ),
            self.args.converge,
        )

    def settled(self) -> bool:
        p = self.problems()
        return not p["lost"] and all(
            (b.get("status") or {}).get("phase") in TERMINAL for b in self.world.builds.values()
        )

    async def run(self) -> dict[str, Any]:
        kube = AsyncClient(
            config=KubeConfig.from_file(str(self.cluster.kubeconfig)), field_manager="soak"
        )
        w, follows = self.world, self.work.follows
        watches = [
            asyncio.create_task(watch_forever(kube, ImageStream, w.stream_event)),
            asyncio.create_task(
                watch_forever(
                    kube, Deployment, lambda b: w.deployment_event(b, time.monotonic(), follows)
                )
            ),
            asyncio.create_task(watch_forever(kube, Build, w.build_event)),
        ]
        try:
            await self.setup(kube)
            print(
                f"soak: {self.args.minutes} min, faults at {self.args.fault_rate} ...", flush=True
            )
            self.started = time.monotonic()
            sampler = asyncio.create_task(self.sampler())
            load = [
                asyncio.create_task(self.pusher()),
                asyncio.create_task(self.builder()),
                asyncio.create_task(self.faulter()),
            ]
            await asyncio.sleep(self.args.minutes * 60)
            self.stop.set()
            await asyncio.gather(*load)
            soaked = time.monotonic()
            print(f"faults off; converging (at most {self.args.converge}s) ...", flush=True)
            with contextlib.suppress(TimeoutError):
                await until("convergence", self.settled, self.args.converge)
            converged = time.monotonic() - soaked
            sampler.cancel()
            await asyncio.gather(sampler, return_exceptions=True)
        finally:
            for task in watches:
                task.cancel()
            await asyncio.gather(*watches, return_exceptions=True)
            await kube.close()
        return self.figures(converged)

    def figures(self, converged: float) -> dict[str, Any]:
        def quarter_means(values: list[float]) -> tuple[float, float]:
            q = max(1, len(values) // 4)
            return round(statistics.fmean(values[:q]), 1), round(statistics.fmean(values[-q:]), 1)

        soak = [s for s in self.samples if s.t <= self.args.minutes * 60 + 1]
        rss = [s.rss_mib for s in soak] or [0.0]
        cpu = [s.cpu_percent for s in soak] or [0.0]
        api = [s.api_per_minute for s in soak] or [0.0]
        latencies = self.latencies()
        problems = self.problems()
        builds = self.world.builds.values()
        return {
            "bench": "soak",
            "commit": subprocess.run(
                ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
            ).stdout.strip(),
            "options": {k: v for k, v in vars(self.args).items() if k != "json"},
            "workload": {
                "streams": len(self.work.streams),
                "aliases": len(self.work.aliased),
                "buildconfigs": len(self.work.buildconfigs),
                "deployments": len(self.work.follows),
            },
            "rss_mib": {
                "first_quarter": quarter_means(rss)[0],
                "last_quarter": quarter_means(rss)[1],
                "max": max(rss),
            },
            "cpu_percent": {
                "first_quarter": quarter_means(cpu)[0],
                "last_quarter": quarter_means(cpu)[1],
                "mean": round(statistics.fmean(cpu), 1),
            },
            "api_requests_per_minute": {"mean": round(statistics.fmean(api), 1), "max": max(api)},
            "tag_move_to_rollout_ms": (
                {k: round(v) for k, v in percentiles_ms(latencies).items()} | {"n": len(latencies)}
                if latencies
                else {"n": 0}
            ),
            "pushes": sum(len(p) for p in self.world.pushes.values()),
            "builds": {
                "total": len(self.world.builds),
                "start_requests": len(self.requests),
                "start_request_writes_refused": self.refused_requests,
                "complete": sum(
                    1 for b in builds if (b.get("status") or {}).get("phase") == "Complete"
                ),
            },
            "converged_seconds": round(converged, 1),
            "faults": {
                "windows": Counter(kind for _, kind in self.timeline),
                "api": dict(self.api_faults),
                "registry": dict(self.registry_faults),
            },
            "api_requests_by_verb_resource": {
                f"{v} {r}": n for (v, r), n in self.api_total.most_common()
            },
            "samples": [dataclasses.asdict(s) for s in self.samples],
            "timeline": self.timeline,
            "counts": {k: len(v) for k, v in problems.items()},
            "problems": problems,
        }


async def until(what: str, check: Callable[[], bool], limit: float) -> None:
    deadline = time.monotonic() + limit
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"soak: timed out after {limit:.0f}s waiting for {what}")
        await asyncio.sleep(0.5)


# --- setting up and tearing down -----------------------------------------------------------


@contextlib.contextmanager
def operator(cluster: Cluster, proxy: ApiProxy, log: Path) -> Iterator[int]:
    """The operator as `make run` starts it (admission on), but behind ``proxy``; its pid."""
    settings = {
        **local_operator_env(),
        "KUBECONFIG": str(proxy.kubeconfig),
        "HEADWATER_ADMISSION_PORT": str(free_port()),
        "HEADWATER_WEBHOOK_PORT": str(free_port()),
        "HEADWATER_IMPORT_INTERVAL_SECONDS": str(IMPORT_INTERVAL_SECONDS),
        "HEADWATER_ALLOWED_REGISTRIES_FOR_IMPORT": ALLOWED_REGISTRIES_FOR_IMPORT,
    }
    process = start_operator([NAMESPACE], log, settings)
    try:
        yield process.pid
    finally:
        stop_operator(process)
        # Its admission webhooks' configuration is cluster-wide: nothing may point at it now.
        remove_admission_configuration(cluster)


def soak(args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    cluster = Cluster(Path(env["KUBECONFIG"]), env["REGISTRY"], env["KUBECTL"], env)
    pause_installed_operator(cluster)
    _create_namespace(cluster, NAMESPACE, BASELINE)
    eventually(
        "the namespace's default service account",
        lambda: (
            cluster.kubectl("get", "sa", "default", "-n", NAMESPACE, check=False).returncode == 0
        ),
    )
    workdir = Path(tempfile.mkdtemp(prefix="hw-soak-"))
    log = workdir / "operator.log"
    print(f"soak: namespace {NAMESPACE}, operator log {log}", flush=True)
    try:
        with (
            running_api_proxy(cluster.kubeconfig, workdir / "api") as api,
            running_http_proxy(env["REGISTRY"], workdir / "registry") as registry_proxy,
            operator(cluster, api, log) as pid,
        ):
            return asyncio.run(Soak(args, cluster, api, registry_proxy, pid).run())
    except BaseException:
        print(log.read_text()[-6000:], file=sys.stderr)
        raise
    finally:
        cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


def per_minute(samples: list[dict[str, Any]]) -> list[str]:
    """The samples by minute of the soak: means, and the faults of that minute."""
    minutes: dict[int, list[dict[str, Any]]] = {}
    for sample in samples:
        minutes.setdefault(int(max(0.0, sample["t"] - 0.001) // 60), []).append(sample)
    lines = [f"  {'minute':>6} {'RSS MiB':>8} {'CPU %':>6} {'API/min':>8} {'reg/min':>8}  faults"]
    for minute, rows in sorted(minutes.items()):

        def mean(key: str, rows: list[dict[str, Any]] = rows) -> float:
            return statistics.fmean(r[key] for r in rows)

        faults = ", ".join(dict.fromkeys(r["fault"] for r in rows))
        lines.append(
            f"  {minute + 1:>6} {mean('rss_mib'):>8.1f} {mean('cpu_percent'):>6.1f}"
            f" {mean('api_per_minute'):>8.0f} {mean('registry_per_minute'):>8.0f}  {faults}"
        )
    return lines


def report(result: dict[str, Any]) -> list[str]:
    rss, cpu = result["rss_mib"], result["cpu_percent"]
    growth = rss["last_quarter"] - rss["first_quarter"]
    lat = result["tag_move_to_rollout_ms"]
    counts = result["counts"]
    b = result["builds"]
    lines = [
        f"  soak of {result['options']['minutes']} min (commit {result['commit']}, seed "
        f"{result['options']['seed']}, fault rate {result['options']['fault_rate']}): "
        f"{result['workload']}",
        f"  operator RSS MiB        first quarter {rss['first_quarter']:>7.1f}   last quarter "
        f"{rss['last_quarter']:>7.1f}   max {rss['max']:.1f}   "
        + (
            "flat" if growth <= max(5.0, 0.1 * rss["first_quarter"]) else f"GROWING (+{growth:.1f})"
        ),
        f"  operator CPU %          first quarter {cpu['first_quarter']:>7.1f}   last quarter "
        f"{cpu['last_quarter']:>7.1f}   mean {cpu['mean']:.1f}",
        f"  API requests per minute mean {result['api_requests_per_minute']['mean']:.0f}"
        f"   max {result['api_requests_per_minute']['max']:.0f}",
        "  tag move -> rollout     "
        + (
            f"n={lat['n']}  p50 {lat['p50']} ms  p90 {lat['p90']} ms  p99 {lat['p99']} ms"
            f"  max {lat['max']} ms"
            if lat["n"]
            else "n=0"
        ),
        f"  pushes {result['pushes']}, builds {b['total']} ({b['complete']} Complete, "
        f"{b['start_requests']} start requests, {b['start_request_writes_refused']} writes"
        " of them refused by admission in a fault and retried), converged"
        f" {result['converged_seconds']}s "
        "after the soak",
        f"  fault windows: {dict(result['faults']['windows'])}",
        f"  API faults injected: {result['faults']['api']}",
        f"  registry faults injected: {result['faults']['registry']}",
        f"  lost {counts['lost']}, duplicated {counts['duplicated']}, backwards "
        f"{counts['backwards']}, failed builds {counts['failed_builds']}",
    ]
    lines.append("  API requests by verb and resource, whole soak (top 15):")
    for key, n in list(result["api_requests_by_verb_resource"].items())[:15]:
        lines.append(f"    {key:<52} {n:>7}")
    for kind, items in result["problems"].items():
        lines += [f"    {kind}: {item}" for item in items[:20]]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30, help="soak duration (default 30)")
    parser.add_argument("--streams", type=int, default=6, help="pushed ImageStreams (default 6)")
    parser.add_argument(
        "--buildconfigs", type=int, default=2, help="Docker BuildConfigs (default 2)"
    )
    parser.add_argument("--deployments", type=int, default=6, help="Deployments (default 6)")
    parser.add_argument(
        "--fault-rate", type=float, default=0.1, help="share of requests failed in a fault window"
    )
    parser.add_argument("--seed", type=int, default=14, help="seed of every random draw")
    parser.add_argument(
        "--faults",
        type=lambda value: [k.strip() for k in value.split(",") if k.strip()],
        default=list(FAULT_KINDS),
        help=f"the fault kinds drawn, comma-separated (default all: {','.join(FAULT_KINDS)})",
    )
    parser.add_argument("--push-every", type=float, default=5, help="seconds between pushes")
    parser.add_argument("--build-every", type=float, default=45, help="seconds between build moves")
    parser.add_argument("--sample-every", type=float, default=10, help="seconds between samples")
    parser.add_argument(
        "--converge", type=float, default=240, help="seconds allowed to settle after the soak"
    )
    parser.add_argument("--json", type=Path, help="write the figures to this file too")
    args = parser.parse_args()
    if args.streams < 1:
        parser.error("--streams must be at least 1")
    unknown = set(args.faults) - set(FAULT_KINDS)
    if unknown or not args.faults:
        parser.error(f"--faults: unknown {sorted(unknown)}; choose among {', '.join(FAULT_KINDS)}")
    result = soak(args, cluster_env())
    print()
    print("\n".join(per_minute(result["samples"])))
    print()
    print("\n".join(report(result)))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 1 if any(result["counts"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
