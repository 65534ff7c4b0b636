#!/usr/bin/env python3
"""Benchmark: Headwater side by side with Keel and Flux's image-reflector-controller.

Builds the peers (cached by version under ~/.cache/headwater/go-bin, see
``../shared/design/PEERS.md``), starts them and Headwater as processes against
the local cluster, all with the same 10 s interval and the same registry (the
local cluster's), and measures:

(a) tag moved -> Deployment patched: Headwater (scheduled import + trigger
    annotation) against Keel (poll); p50/p90/max and what each writes.
(c) the same pushes -> digest visible in a cluster object: ImageStream status
    against Flux's ImagePolicy ``status.latestRef.digest`` (digestReflectionPolicy
    Always).
(b) push-driven: Headwater's registry notifications against Keel's registry
    webhook, push done -> Deployment patched, 1 push/s across 10 repositories;
    and Headwater alone at 10 pushes/s across 100 repositories.
(d) idle cost at 200 (and 1,000) repositories: registry requests and API writes
    per cycle, controller CPU seconds per cycle, peak RSS.

Each tool has its own namespace, its own counting proxy in front of the
registry (registry requests) and its own counting proxy in front of the API
server (API writes: create/update/patch/delete requests, Events and leases
included). Headwater runs twice: with an import rate that lets it meet the
interval ("hw"), and with its default rate ("hw-60", the throttled figure).
Keel is built only when ``KEEL_SRC`` names its source tree (tag 0.22.1).

    KEEL_SRC=~/src/keel .venv/bin/python bench/peers.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import logging
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "operator"), str(REPO)]

from lightkube import AsyncClient  # noqa: E402
from lightkube.config.kubeconfig import KubeConfig  # noqa: E402
from lightkube.generic_resource import create_namespaced_resource  # noqa: E402
from lightkube.resources.apps_v1 import Deployment  # noqa: E402

from bench._common import Kubectl, cluster_env, parser, percentiles_ms, start_operator  # noqa: E402
from bench._peers_lib import (  # noqa: E402
    cpu_seconds,
    first_after,
    fmt,
    peak_rss_mb,
    ratio_line,
    table,
    value_at,
)
from headwater.kube import plain_dict  # noqa: E402
from headwater.resources import ImageStream  # noqa: E402
from headwater.workloads.triggers import ANNOTATION_OPENSHIFT  # noqa: E402
from tests.apiproxy import ApiProxy, running_api_proxy, running_http_proxy  # noqa: E402
from tests.e2e.helpers import end_process, push_image  # noqa: E402
from tests.registry_servers import RegistryServer, free_port, running_registry  # noqa: E402

FLUX_MODULE = "github.com/fluxcd/image-reflector-controller"
FLUX_VERSION = "v1.2.0"
FLUX_SUM = "h1:ojsV55VNVyuu1AVTwq9Si0tLrKCRwE8od4I/UY2UolU="
KEEL_MODULE = "github.com/keel-hq/keel"
KEEL_VERSION = "0.22.1"
KEEL_COMMIT = "ffd5e05f8e23"
KEEL_PORT = 9300  # fixed in Keel
INTERVAL = 10
FAST_RATE = 12_000  # imports a minute: 1,000 tags every 10 s, with room
WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
CACHE = Path(os.environ.get("HEADWATER_CACHE", Path.home() / ".cache" / "headwater"))
RUN = f"{os.getpid()}"

ImagePolicy = create_namespaced_resource(
    "image.toolkit.fluxcd.io", "v1", "ImagePolicy", "imagepolicies"
)


def log(msg: str) -> None:
    print(f"[peers] {msg}", flush=True)


# --- building the peers -------------------------------------------------------------


def _gobin() -> ModuleType:
    """hack/cluster/gobin.py (a script, not a package): the cached Go builds."""
    name = "headwater_cluster_gobin"
    spec = importlib.util.spec_from_file_location(name, REPO / "hack" / "cluster" / "gobin.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def build_peers(keel_src: Path | None) -> tuple[Path, Path | None, dict[str, str]]:
    """The Flux and Keel binaries (Keel None without a source tree) and how long each took."""
    gobin = _gobin()
    times: dict[str, str] = {}
    started = time.monotonic()
    target = CACHE / "go-bin" / f"{FLUX_MODULE.replace('/', '_')}@{FLUX_VERSION}"
    cached = (target / "image-reflector-controller").exists()
    flux = gobin.go_binary(
        CACHE,
        FLUX_MODULE,
        FLUX_VERSION,
        FLUX_SUM,
        name="image-reflector-controller",
        # Its go.mod replaces its api module with ./api, which the module zip lacks.
        published_submodules=("api",),
    )
    times["flux"] = "cached" if cached else f"built in {time.monotonic() - started:.0f} s"
    keel = None
    if keel_src is None:
        log("KEEL_SRC is not set: Keel is left out (a clone of keel-hq/keel at tag 0.22.1)")
    else:
        gomod = keel_src / "go.mod"
        if not gomod.exists() or f"module {KEEL_MODULE}\n" not in gomod.read_text():
            sys.exit(f"bench: KEEL_SRC={keel_src} is not a source tree of {KEEL_MODULE}")
        started = time.monotonic()
        target = CACHE / "go-bin" / f"{KEEL_MODULE.replace('/', '_')}@{KEEL_VERSION}"
        cached = (target / "keel").exists()
        keel = gobin.go_binary(
            CACHE, KEEL_MODULE, KEEL_VERSION, None, "cmd/keel", source=keel_src, cgo=True
        )
        times["keel"] = "cached" if cached else f"built in {time.monotonic() - started:.0f} s"
    return flux, keel, times


def flux_crds() -> list[Path]:
    found = subprocess.run(
        ["go", "mod", "download", "-json", f"{FLUX_MODULE}@{FLUX_VERSION}"],
        check=True,
        capture_output=True,
        text=True,
        cwd=tempfile.gettempdir(),
        env={**os.environ, "GOWORK": "off"},
    )
    return sorted(
        (Path(json.loads(found.stdout)["Dir"]) / "config" / "crd" / "bases").glob("*.yaml")
    )


# --- the tools ----------------------------------------------------------------------


@dataclass
class Tool:
    name: str
    namespace: str
    registry: ApiProxy  # counting proxy in front of the cluster's registry
    api: ApiProxy  # counting proxy in front of the API server
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def cpu(self) -> float:
        return cpu_seconds(Path(f"/proc/{self.pid}/stat").read_text())

    def rss(self) -> float:
        return peak_rss_mb(Path(f"/proc/{self.pid}/status").read_text())

    def alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            tail = self.log.read_text(errors="replace")[-3000:] if self.log else ""
            raise RuntimeError(f"bench: {self.name} exited ({self.process.returncode}):\n{tail}")


def start_headwater(
    tool: Tool, env: dict[str, str], rate: int, workdir: Path, webhook: tuple[int, str] | None
) -> None:
    tool.log = workdir / f"{tool.name}.log"
    extra = {
        "HEADWATER_IMPORT_INTERVAL_SECONDS": str(INTERVAL),
        "HEADWATER_IMPORT_RATE_PER_MINUTE": str(rate),
        "HEADWATER_ALLOWED_REGISTRIES_FOR_IMPORT": '[{domainName: "127.0.0.1:*", insecure: true}]',
        "HEADWATER_WEBHOOK_PORT": str(webhook[0] if webhook else free_port()),
    }
    if webhook:
        extra["HEADWATER_REGISTRY_WEBHOOK_TOKEN"] = webhook[1]
    proxied = {**env, "KUBECONFIG": str(tool.api.kubeconfig)}
    tool.process = start_operator(proxied, tool.namespace, tool.log, extra)


def start_keel(tool: Tool, binary: Path, workdir: Path, logs: Path) -> None:
    data = workdir / "keel-data"
    data.mkdir()
    tool.log = logs / "keel.log"
    with tool.log.open("wb") as out:
        tool.process = subprocess.Popen(
            [str(binary), "--no-incluster", f"--kubeconfig={tool.api.kubeconfig}"],
            env={
                **os.environ,
                "INSECURE_REGISTRY": "true",
                "XDG_DATA_HOME": str(data),
                "POLL": "true",
                "NOTIFICATION_LEVEL": "error",
            },
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )


def start_flux(tool: Tool, binary: Path, workdir: Path, logs: Path) -> None:
    tool.log = logs / "flux.log"
    storage = workdir / "flux-data"
    with tool.log.open("wb") as out:
        tool.process = subprocess.Popen(
            [
                str(binary),
                f"--storage-path={storage}",
                f"--metrics-addr=127.0.0.1:{free_port()}",
                f"--health-addr=127.0.0.1:{free_port()}",
                "--watch-all-namespaces=false",
            ],
            env={
                **os.environ,
                "KUBECONFIG": str(tool.api.kubeconfig),
                "RUNTIME_NAMESPACE": tool.namespace,
            },
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )


# --- objects ------------------------------------------------------------------------


def hw_stream(ns: str, name: str, image: str, scheduled: bool) -> dict[str, Any]:
    policy: dict[str, Any] = {"insecure": True}
    if scheduled:
        policy["scheduled"] = True
    return {
        "apiVersion": "image.headwater.dev/v1",
        "kind": "ImageStream",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "tags": [
                {
                    "name": "latest",
                    "from": {"kind": "DockerImage", "name": image},
                    "importPolicy": policy,
                }
            ]
        },
    }


def deployment(ns: str, name: str, image: str, annotations: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "annotations": annotations},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "web", "image": image}]},
            },
        },
    }


def hw_deployment(ns: str, name: str, stream: str, placeholder: str) -> dict[str, Any]:
    trigger = [
        {
            "from": {"kind": "ImageStreamTag", "name": f"{stream}:latest"},
            "fieldPath": 'spec.template.spec.containers[?(@.name=="web")].image',
        }
    ]
    return deployment(ns, name, placeholder, {ANNOTATION_OPENSHIFT: json.dumps(trigger)})


def keel_deployment(ns: str, name: str, image: str, poll: bool) -> dict[str, Any]:
    annotations = {"keel.sh/policy": "force", "keel.sh/match-tag": "true"}
    if poll:
        annotations |= {"keel.sh/trigger": "poll", "keel.sh/pollSchedule": f"@every {INTERVAL}s"}
    return deployment(ns, name, image, annotations)


def flux_objects(ns: str, name: str, image: str) -> list[dict[str, Any]]:
    """An ImageRepository (its image has no tag) and an ImagePolicy electing ``latest``."""
    image = image.removesuffix(":latest")
    return [
        {
            "apiVersion": "image.toolkit.fluxcd.io/v1",
            "kind": "ImageRepository",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"image": image, "interval": f"{INTERVAL}s", "insecure": True},
        },
        {
            "apiVersion": "image.toolkit.fluxcd.io/v1",
            "kind": "ImagePolicy",
            "metadata": {"name": name, "namespace": ns},
            "spec": {
                "imageRepositoryRef": {"name": name},
                "filterTags": {"pattern": "^latest$"},
                "policy": {"alphabetical": {"order": "asc"}},
                "digestReflectionPolicy": "Always",
                "interval": f"{INTERVAL}s",
            },
        },
    ]


def apply_all(kubectl: Kubectl, objects: list[dict[str, Any]]) -> None:
    for start in range(0, len(objects), 250):
        kubectl(
            "apply",
            "--server-side",
            "-f",
            "-",
            stdin=json.dumps(
                {"apiVersion": "v1", "kind": "List", "items": objects[start : start + 250]}
            ),
        )


# --- what this process sees ---------------------------------------------------------


@dataclass
class Seen:
    """Histories of what this process's watches saw: (time, value) per object."""

    images: dict[tuple[str, str], list[tuple[float, tuple[str, int]]]] = field(default_factory=dict)
    digests: dict[tuple[str, str], list[tuple[float, str]]] = field(default_factory=dict)
    bodies: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def add_image(self, key: tuple[str, str], image: str, generation: int) -> None:
        history = self.images.setdefault(key, [])
        if not history or history[-1][1] != (image, generation):
            history.append((time.perf_counter(), (image, generation)))

    def add_digest(self, key: tuple[str, str], digest: str) -> None:
        history = self.digests.setdefault(key, [])
        if digest and (not history or history[-1][1] != digest):
            history.append((time.perf_counter(), digest))

    def image_has(self, key: tuple[str, str], since: float, digest: str) -> float | None:
        return first_after(self.images.get(key, []), since, lambda v: v[0].endswith(digest))

    def generation_moved(self, key: tuple[str, str], since: float) -> float | None:
        before = value_at(self.images.get(key, []), since)
        old = before[1] if before else 0
        return first_after(self.images.get(key, []), since, lambda v: v[1] > old)

    def digest_is(self, key: tuple[str, str], since: float, digest: str) -> float | None:
        return first_after(self.digests.get(key, []), since, lambda v: v == digest)


async def watch_forever(kube: AsyncClient, seen: Seen, namespaces: list[str]) -> None:
    async def deployments(ns: str) -> None:
        async for _, obj in kube.watch(Deployment, namespace=ns):
            body = plain_dict(obj)
            key = (ns, str(body["metadata"]["name"]))
            seen.bodies[key] = body
            image = str(body["spec"]["template"]["spec"]["containers"][0]["image"])
            seen.add_image(key, image, int(body["metadata"].get("generation") or 0))

    async def streams(ns: str) -> None:
        async for _, obj in kube.watch(ImageStream, namespace=ns):
            body = plain_dict(obj)
            for tag in (body.get("status") or {}).get("tags") or []:
                if tag.get("tag") == "latest" and tag.get("items"):
                    seen.add_digest(
                        (ns, str(body["metadata"]["name"])), str(tag["items"][0]["image"])
                    )

    async def policies(ns: str) -> None:
        async for _, obj in kube.watch(ImagePolicy, namespace=ns):
            body = plain_dict(obj)
            ref = (body.get("status") or {}).get("latestRef") or {}
            seen.add_digest((ns, str(body["metadata"]["name"])), str(ref.get("digest") or ""))

    tasks = []
    for ns in namespaces:
        tasks += [deployments(ns), streams(ns)]
        if ns.endswith("-flux"):
            tasks.append(policies(ns))
    await asyncio.gather(*tasks)


async def wait_for(what: str, check: Callable[[], bool], limit: float, tools: list[Tool]) -> None:
    deadline = time.monotonic() + limit
    while not check():
        for tool in tools:
            tool.alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"bench: timed out waiting for {what}")
        await asyncio.sleep(0.2)


def push(registry: str, repository: str, marker: str) -> tuple[str, float]:
    """Push a new image to ``repository:latest``; its digest and when the push was done."""
    digest, _ = push_image(registry, repository, "latest", marker=marker)
    return digest, time.perf_counter()


# --- the workloads ------------------------------------------------------------------

Pushed = list[tuple[int, str, float]]
"""(repository index, digest, when the push was done)."""


def poll_check(seen: Seen, what: str, ns: str, i: int, digest: str, since: float) -> float | None:
    """When ``poll<i>`` in ``ns`` showed the push: its image pinned to ``digest``
    ("image"), its generation moved ("generation", Keel keeps the tag) or its
    status digest became ``digest`` ("digest": ImageStream, ImagePolicy)."""
    key = (ns, f"poll{i}")
    if what == "image":
        return seen.image_has(key, since, digest)
    if what == "generation":
        return seen.generation_moved(key, since)
    return seen.digest_is(key, since, digest)


async def poll_workload(
    args: argparse.Namespace, env: dict[str, str], tools: dict[str, Tool], seen: Seen
) -> dict[str, list[float]]:
    """(a) and (c): tags moved in the cluster's registry; every tool sees the same pushes."""
    registry = env["REGISTRY"]
    placeholder = env["HEADWATER_BUSYBOX_IMAGE"]
    repos = [f"peers-{RUN}/poll{i}" for i in range(args.poll_repos)]
    for repo in repos:
        push(registry, repo, f"{repo}-0")
    for tool in tools.values():
        objects: list[dict[str, Any]] = []
        for i, repo in enumerate(repos):
            image = f"{tool.registry.address}/{repo}:latest"
            if tool.name.startswith("hw"):
                objects += [
                    hw_stream(tool.namespace, f"poll{i}", image, True),
                    hw_deployment(tool.namespace, f"poll{i}", f"poll{i}", placeholder),
                ]
            elif tool.name == "keel":
                objects.append(keel_deployment(tool.namespace, f"poll{i}", image, poll=True))
            else:
                objects += flux_objects(tool.namespace, f"poll{i}", image)
        apply_all(Kubectl(env, tool.namespace), objects)
    # Every tool has seen the first image before the tags move.
    await asyncio.sleep(2 * INTERVAL)
    latencies: dict[str, list[float]] = {name: [] for name in [*tools, "hw-stream", "hw-60-stream"]}
    for round_ in range(1, args.poll_rounds + 1):
        await asyncio.sleep(random.uniform(0, INTERVAL))  # noqa: S311 - a phase, not a secret
        pushed: Pushed = [
            (i, *push(registry, repo, f"{repo}-{round_}")) for i, repo in enumerate(repos)
        ]
        log(f"(a)/(c) round {round_}/{args.poll_rounds}: {len(repos)} tags moved")
        checks: dict[str, tuple[str, str]] = {}  # figure -> (what is checked, namespace)
        for name, tool in tools.items():
            if name.startswith("hw"):
                checks[name] = ("image", tool.namespace)
                checks[f"{name}-stream"] = ("digest", tool.namespace)
            elif name == "keel":
                checks[name] = ("generation", tool.namespace)
            else:
                checks[name] = ("digest", tool.namespace)
        limit = 6 * INTERVAL

        def done(checks: dict[str, tuple[str, str]] = checks, pushed: Pushed = pushed) -> bool:
            return all(
                poll_check(seen, *check, i, d, t) is not None
                for check in checks.values()
                for i, d, t in pushed
            )

        with contextlib.suppress(TimeoutError):
            await wait_for("tags moved", done, limit, list(tools.values()))
        for name, check in checks.items():
            for i, d, t in pushed:
                found = poll_check(seen, *check, i, d, t)
                latencies[name].append(float("nan") if found is None else found - t)
    return latencies


async def push_workload(
    args: argparse.Namespace,
    env: dict[str, str],
    tools: dict[str, Tool],
    seen: Seen,
    hw_registry: RegistryServer,
    keel_registry: RegistryServer | None,
) -> dict[str, list[float]]:
    """(b): pushes to registries that notify Headwater and Keel; push done -> Deployment patched."""
    placeholder = env["HEADWATER_BUSYBOX_IMAGE"]
    hw = tools["hw"]
    n_fast = args.push_fast_repos
    objects: list[dict[str, Any]] = []
    for i in range(max(10, n_fast)):
        image = f"{hw_registry.address}/push/r{i}:latest"
        push(hw_registry.address, f"push/r{i}", f"r{i}-0")
        objects += [
            hw_stream(hw.namespace, f"push{i}", image, False),
            hw_deployment(hw.namespace, f"push{i}", f"push{i}", placeholder),
        ]
    apply_all(Kubectl(env, hw.namespace), objects)
    keel = tools.get("keel")
    if keel and keel_registry:
        objects = []
        for i in range(10):
            push(keel_registry.address, f"push/r{i}", f"r{i}-0")
            image = f"{keel_registry.address}/push/r{i}:latest"
            objects.append(keel_deployment(keel.namespace, f"push{i}", image, poll=False))
        apply_all(Kubectl(env, keel.namespace), objects)
    await wait_for(
        "Headwater's first imports of the pushed repositories",
        lambda: all(
            seen.images.get((hw.namespace, f"push{i}"), [(0, ("", 0))])[-1][1][0] != placeholder
            for i in range(max(10, n_fast))
        ),
        120,
        list(tools.values()),
    )
    out: dict[str, list[float]] = {"hw": [], "keel": [], "hw-fast": []}
    pushes: list[tuple[str, int, str, float]] = []
    log(f"(b) {args.push_slow} pushes at 1/s across 10 repositories, to each tool")
    for n in range(args.push_slow):
        tick = time.perf_counter()
        i = n % 10
        digest, t = await asyncio.to_thread(push, hw_registry.address, f"push/r{i}", f"slow-{n}")
        pushes.append(("hw", i, digest, t))
        if keel and keel_registry:
            digest, t = await asyncio.to_thread(
                push, keel_registry.address, f"push/r{i}", f"slow-{n}"
            )
            pushes.append(("keel", i, digest, t))
        await asyncio.sleep(max(0.0, 1.0 - (time.perf_counter() - tick)))
    await asyncio.sleep(INTERVAL)
    for name, i, digest, t in pushes:
        ns = tools[name].namespace
        found = (
            seen.image_has((ns, f"push{i}"), t, digest)
            if name == "hw"
            else seen.generation_moved((ns, f"push{i}"), t)
        )
        out[name].append(float("nan") if found is None else found - t)
    log(f"(b) {args.push_fast} pushes at 10/s across {n_fast} repositories, to Headwater")
    fast: list[tuple[int, str, float]] = []
    for n in range(args.push_fast):
        tick = time.perf_counter()
        i = n % n_fast
        digest, t = await asyncio.to_thread(push, hw_registry.address, f"push/r{i}", f"fast-{n}")
        fast.append((i, digest, t))
        await asyncio.sleep(max(0.0, 0.1 - (time.perf_counter() - tick)))
    await asyncio.sleep(INTERVAL)
    for i, digest, t in fast:
        found = seen.image_has((hw.namespace, f"push{i}"), t, digest)
        # Pushes to one repository are n_fast / 10 s apart: a push whose digest never
        # showed (a later one landed first) counts as not seen.
        out["hw-fast"].append(float("nan") if found is None else found - t)
    return out


async def idle_workload(
    n: int, args: argparse.Namespace, env: dict[str, str], tools: dict[str, Tool]
) -> dict[str, dict[str, float]]:
    """(d): n repositories per tool, nothing moving; costs over ``args.idle_cycles`` cycles."""
    registry = env["REGISTRY"]
    # Cumulative: a second, larger n adds repositories to the first n's.
    repos = [f"peers-{RUN}/idle{i}" for i in range(n)]
    log(f"(d) {n} repositories: pushing and creating the objects")
    for repo in repos:
        await asyncio.to_thread(push, registry, repo, repo)
    for tool in tools.values():
        objects: list[dict[str, Any]] = []
        for i, repo in enumerate(repos):
            image = f"{tool.registry.address}/{repo}:latest"
            name = f"idle{i}"
            if tool.name.startswith("hw"):
                objects.append(hw_stream(tool.namespace, name, image, True))
            elif tool.name == "keel":
                objects.append(keel_deployment(tool.namespace, name, image, poll=True))
            else:
                objects += flux_objects(tool.namespace, name, image)
        await asyncio.to_thread(apply_all, Kubectl(env, tool.namespace), objects)
    log(f"(d) {n} repositories: warming up until every tool has asked for each (at most 180 s)")
    deadline = time.monotonic() + 180

    def touched(tool: Tool) -> int:
        paths = {resource for _, resource in tool.registry.snapshot().requests}
        return sum(1 for repo in repos if f"/v2/{repo}/manifests" in paths)

    while time.monotonic() < deadline:
        # hw-60 is left out: at its default rate the first imports take n seconds.
        behind = {
            name: n - touched(t) for name, t in tools.items() if name != "hw-60" and touched(t) < n
        }
        if not behind:
            break
        await asyncio.sleep(2)
    else:
        log(f"(d) still not asked for (repositories): {behind}")
    await asyncio.sleep(INTERVAL)  # one more cycle, so every first write is done
    window = args.idle_cycles * INTERVAL
    before = {name: (t.cpu(), t.registry.reset(), t.api.reset()) for name, t in tools.items()}
    log(f"(d) {n} repositories: measuring {window} s")
    await asyncio.sleep(window)
    out: dict[str, dict[str, float]] = {}
    for name, tool in tools.items():
        tool.alive()
        cpu = tool.cpu() - before[name][0]
        registry_requests = tool.registry.reset().total()
        writes = tool.api.reset().total(WRITE_VERBS)
        out[name] = {
            "registry": registry_requests / args.idle_cycles,
            "writes": writes / args.idle_cycles,
            "cpu": cpu / args.idle_cycles,
            "rss": tool.rss(),
        }
    return out


# --- the run ------------------------------------------------------------------------


@contextlib.contextmanager
def proxies(env: dict[str, str], workdir: Path, name: str) -> Iterator[tuple[ApiProxy, ApiProxy]]:
    with (
        running_http_proxy(env["REGISTRY"], workdir / f"{name}-registry") as registry,
        running_api_proxy(Path(env["KUBECONFIG"]), workdir / f"{name}-api") as api,
    ):
        yield registry, api


def describe_writes(seen: Seen, tools: dict[str, Tool]) -> dict[str, str]:
    """What each tool wrote into a Deployment it patched (a)."""
    out: dict[str, str] = {}
    for name in ("hw", "keel"):
        if name not in tools:
            continue
        body = seen.bodies.get((tools[name].namespace, "poll0"))
        if not body:
            continue
        template = body["spec"]["template"]
        image = template["spec"]["containers"][0]["image"]
        notes = sorted(template["metadata"].get("annotations") or {})
        pinned = "digest-pinned" if "@sha256:" in image else "tag"
        out[name] = f"{pinned} {image.rsplit('/', 1)[-1][:40]}" + (
            f" + template annotations {','.join(notes)}" if notes else ""
        )
    return out


async def run(args: argparse.Namespace, env: dict[str, str], flux: Path, keel: Path | None) -> str:
    stack = contextlib.ExitStack()
    workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hw-bench-peers-")))
    logs = Path(tempfile.gettempdir()) / f"hw-bench-peers-{RUN}-logs"
    logs.mkdir()
    names = ["hw", "hw-60", "flux"] + (["keel"] if keel else [])
    tools: dict[str, Tool] = {}
    kube = AsyncClient(config=KubeConfig.from_file(env["KUBECONFIG"]), field_manager="bench")
    seen = Seen()
    watcher: asyncio.Task[None] | None = None
    try:
        for name in names:
            registry, api = stack.enter_context(proxies(env, workdir, name))
            ns = f"hw-bench-peers-{RUN}-{name}"
            tools[name] = Tool(name, ns, registry, api)
            Kubectl(env, ns)("create", "namespace", ns)
        token = f"peers-{RUN}"
        webhook_port = free_port()
        notify_hw = {
            "url": f"http://127.0.0.1:{webhook_port}/registry/notifications",
            "headers": {"Authorization": [f"Bearer {token}"]},
            "timeout": "2s",
            "threshold": 3,
            "backoff": "1s",
        }
        hw_registry = stack.enter_context(running_registry(workdir / "reg-hw", notify=notify_hw))
        keel_registry = None
        if keel:
            notify_keel = {
                "url": f"http://127.0.0.1:{KEEL_PORT}/v1/webhooks/registry",
                "timeout": "2s",
                "threshold": 3,
                "backoff": "1s",
            }
            keel_registry = stack.enter_context(
                running_registry(workdir / "reg-keel", notify=notify_keel)
            )
        start_headwater(tools["hw"], env, FAST_RATE, logs, (webhook_port, token))
        start_headwater(tools["hw-60"], env, 60, logs, None)
        start_flux(tools["flux"], flux, workdir, logs)
        if keel:
            start_keel(tools["keel"], keel, workdir, logs)
        log(f"the tools' logs: {logs}")
        log("started " + ", ".join(f"{t.name} (pid {t.pid})" for t in tools.values()))
        watcher = asyncio.create_task(
            watch_forever(kube, seen, [t.namespace for t in tools.values()])
        )
        await asyncio.sleep(5)

        poll = await poll_workload(args, env, tools, seen)
        pushed = await push_workload(args, env, tools, seen, hw_registry, keel_registry)
        idle = {n: await idle_workload(n, args, env, tools) for n in args.idle}
        return report(args, tools, seen, poll, pushed, idle)
    finally:
        if watcher:
            watcher.cancel()
        for tool in tools.values():
            if tool.process is not None and tool.process.poll() is None:
                end_process(tool.process)
        with contextlib.suppress(Exception):
            await kube.close()
        if "flux" in tools:
            # Flux is stopped: nothing would remove its finalizers, and its
            # namespace would stay Terminating for ever.
            with contextlib.suppress(Exception):
                release_flux_finalizers(Kubectl(env, tools["flux"].namespace))
        for tool in tools.values():
            Kubectl(env, tool.namespace).delete_namespace_later()
        stack.close()


def release_flux_finalizers(kubectl: Kubectl) -> None:
    """Drop the finalizers Flux put on its objects in the bench's namespace."""
    for kind in (
        "imagepolicies.image.toolkit.fluxcd.io",
        "imagerepositories.image.toolkit.fluxcd.io",
    ):
        names = kubectl("get", kind, "-n", kubectl.namespace, "-o", "name").split()
        for start in range(0, len(names), 100):
            kubectl(
                "patch",
                "-n",
                kubectl.namespace,
                "--type=merge",
                "-p",
                '{"metadata":{"finalizers":null}}',
                *names[start : start + 100],
            )


def report(
    args: argparse.Namespace,
    tools: dict[str, Tool],
    seen: Seen,
    poll: dict[str, list[float]],
    pushed: dict[str, list[float]],
    idle: dict[int, dict[str, dict[str, float]]],
) -> str:
    def pct(values: list[float]) -> dict[str, float] | None:
        ok = [v for v in values if v == v]
        return {**percentiles_ms(ok), "n": len(ok)} if ok else None

    def missed(values: list[float]) -> str:
        n = sum(1 for v in values if v != v)
        return f" ({n} of {len(values)} not seen)" if n else ""

    rows: list[list[str]] = []
    labels = {
        "hw": "(a) hw: import + trigger -> Deployment",
        "hw-60": "(a) hw-60 (default rate): -> Deployment",
        "keel": "(a) keel poll -> Deployment",
        "hw-stream": "(c) hw: ImageStream status digest",
        "hw-60-stream": "(c) hw-60: ImageStream status digest",
        "flux": "(c) flux: ImagePolicy latestRef.digest",
    }
    figures: dict[str, dict[str, float] | None] = {}
    for key, label in labels.items():
        if key in poll:
            ms = figures[key] = pct(poll[key])
            rows.append([label + missed(poll[key]), *_ms_cells(ms)])
    for key, label in (
        ("hw", "(b) hw notification -> Deployment, 1/s"),
        ("keel", "(b) keel webhook -> Deployment, 1/s"),
        ("hw-fast", f"(b) hw notification, 10/s x {args.push_fast_repos} repos"),
    ):
        if pushed.get(key):
            ms = figures[f"push-{key}"] = pct(pushed[key])
            rows.append([label + missed(pushed[key]), *_ms_cells(ms)])
    out = [table(["latency (ms)", "n", "p50", "p90", "p99", "max"], rows)]
    writes = describe_writes(seen, tools)
    out += [f"  (a) {name} writes: {text}" for name, text in writes.items()]
    idle_rows = []
    for n, by_tool in idle.items():
        for name, f in by_tool.items():
            idle_rows.append(
                [
                    f"(d) {name} @ {n} repos",
                    fmt(f["registry"]),
                    fmt(f["registry"] / (n + args.poll_repos)),
                    fmt(f["writes"]),
                    fmt(f["cpu"], " s"),
                    fmt(f["rss"], " MiB"),
                ]
            )
    out.append(
        table(
            ["idle, per 10 s cycle", "registry req", "per repo", "API writes", "CPU", "peak RSS"],
            idle_rows,
        )
    )

    def p(key: str, which: str = "p50") -> float | None:
        ms = figures.get(key)
        return ms[which] if ms else None

    pairs: dict[str, tuple[float | None, float | None]] = {
        "poll_p50 hw/keel": (p("hw"), p("keel")),
        "poll_p90 hw/keel": (p("hw", "p90"), p("keel", "p90")),
        "poll_p50 hw-60/keel": (p("hw-60"), p("keel")),
        "digest_p50 hw/flux": (p("hw-stream"), p("flux")),
        "digest_p90 hw/flux": (p("hw-stream", "p90"), p("flux", "p90")),
        "push_p50 hw/keel": (p("push-hw"), p("push-keel")),
    }
    for n, by_tool in idle.items():
        hw = by_tool["hw"]
        for peer in ("keel", "flux"):
            if peer in by_tool:
                theirs = by_tool[peer]
                pairs[f"idle{n}_cpu hw/{peer}"] = (hw["cpu"], theirs["cpu"])
                pairs[f"idle{n}_registry hw/{peer}"] = (hw["registry"], theirs["registry"])
                pairs[f"idle{n}_writes hw/{peer}"] = (hw["writes"], theirs["writes"])
    line = ratio_line(pairs)
    fast = figures.get("push-hw-fast")
    if fast:
        line += f" push10x_p99_ms={fmt(fast['p99'])}"
    out.append(line)
    return "\n".join(out)


def _ms_cells(ms: dict[str, float] | None) -> list[str]:
    if ms is None:
        return ["0", "-", "-", "-", "-"]
    return [
        str(int(ms.get("n", 0)) or ""),
        fmt(ms["p50"]),
        fmt(ms["p90"]),
        fmt(ms["p99"]),
        fmt(ms["max"]),
    ]


def main() -> int:
    options = parser(__doc__)
    options.add_argument("--quick", action="store_true", default=bool(os.environ.get("QUICK")))
    args = options.parse_args()
    # The proxies' complaints about watches cut when the tools stop are no figure.
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    if args.quick:
        args.poll_repos, args.poll_rounds = 5, 2
        args.push_slow, args.push_fast, args.push_fast_repos = 10, 50, 100
        args.idle, args.idle_warmup, args.idle_cycles = [200], 25, 3
    else:
        args.poll_repos, args.poll_rounds = 10, 5
        args.push_slow, args.push_fast, args.push_fast_repos = 30, 300, 100
        args.idle, args.idle_warmup, args.idle_cycles = [200, 1000], 40, 6
    if shutil.which("go") is None:
        sys.exit("bench: go is not on PATH (the peers are built from source)")
    keel_src = Path(os.environ["KEEL_SRC"]).expanduser() if os.environ.get("KEEL_SRC") else None
    flux, keel, times = build_peers(keel_src)
    log("peers: " + ", ".join(f"{k} {v}" for k, v in times.items()))
    env = cluster_env()
    crds = flux_crds()
    Kubectl(env, "default")("apply", "--server-side", *[a for c in crds for a in ("-f", str(c))])
    started = time.monotonic()
    text = asyncio.run(run(args, env, flux, keel))
    print()
    print(
        f"  Headwater vs Keel {KEEL_VERSION} and Flux image-reflector-controller {FLUX_VERSION},"
        f" interval {INTERVAL} s, {time.monotonic() - started:.0f} s"
    )
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
