#!/usr/bin/env python3
"""Benchmark: how fast a moved tag reaches a Deployment, on the local cluster.

Starts the operator (``headwater operator run --standalone``) watching a fresh
namespace and measures, over ``--moves`` moves each (targets in brackets):

(a) build pod finished -> Deployment patched   [p50 <= 300 ms, p99 <= 1 s]
    A BuildConfig builds ``app:latest``; Deployment ``web-a`` follows it through
    the ``image.openshift.io/triggers`` annotation. From the bench's watch
    seeing the build container terminate to its watch seeing the new digest
    in the Deployment.
(b) registry push notification -> Deployment patched   [p50 <= 1 s]
    A registry (docker-registry, notifications to the operator) takes a push;
    ``ext:latest`` imports from it; ``web-b`` follows. From the push's manifest
    PUT returning to the Deployment seen patched.
(c) retag -> Deployment patched   [p50 <= 300 ms, p99 <= 1 s]
    ``promo:latest`` is pointed at one of two images by the server-side apply
    ``headwater tag`` makes; ``web-c`` follows. From just before the apply to
    the Deployment seen patched.

Both ends of each interval are seen by this process's own watches, so their
delivery delays largely cancel. Deployments have 0 replicas: only the patch
is timed, not a rollout.

    .venv/bin/python bench/triggers.py [--moves 50]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import secrets
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "operator"), str(REPO)]

from lightkube import AsyncClient  # noqa: E402
from lightkube.codecs import from_dict  # noqa: E402
from lightkube.config.kubeconfig import KubeConfig  # noqa: E402
from lightkube.resources.apps_v1 import Deployment  # noqa: E402
from lightkube.resources.core_v1 import Namespace, Pod  # noqa: E402
from lightkube.types import PatchType  # noqa: E402

from bench._common import (  # noqa: E402
    cluster_env,
    parser,
    percentiles_ms,
    start_operator,
    stop_operator,
    verdict,
)
from headwater.kube import plain_dict  # noqa: E402
from headwater.resources import BuildConfig, ImageStream  # noqa: E402
from headwater.workloads.triggers import ANNOTATION_OPENSHIFT  # noqa: E402
from tests.e2e.helpers import push_image  # noqa: E402
from tests.registry_servers import free_port, running_registry  # noqa: E402

NAMESPACE = f"hw-bench-triggers-{os.getpid()}"


LOOPBACK_IMPORTS = '[{domainName: "127.0.0.1:*", insecure: true}]'


def deployment(name: str, tag: str, placeholder: str) -> dict[str, Any]:
    trigger = [
        {
            "from": {"kind": "ImageStreamTag", "name": tag},
            "fieldPath": 'spec.template.spec.containers[?(@.name=="web")].image',
        }
    ]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
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


def stream(name: str, tags: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "image.headwater.dev/v1",
        "kind": "ImageStream",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"tags": tags or []},
    }


class Watches:
    """This process's view of Deployment images and build pods, with the time each was seen."""

    def __init__(self, kube: AsyncClient) -> None:
        self.kube = kube
        self.images: dict[str, list[tuple[float, str]]] = {}
        self.finished: dict[str, float] = {}
        self.changed = asyncio.Event()

    async def deployments(self) -> None:
        async for _, obj in self.kube.watch(Deployment, namespace=NAMESPACE):
            body = plain_dict(obj)
            name = str(body["metadata"]["name"])
            image = str(body["spec"]["template"]["spec"]["containers"][0]["image"])
            seen = self.images.setdefault(name, [])
            if not seen or seen[-1][1] != image:
                seen.append((time.perf_counter(), image))
                self.changed.set()

    async def pods(self) -> None:
        async for _, obj in self.kube.watch(Pod, namespace=NAMESPACE):
            body = plain_dict(obj)
            build = str((body["metadata"].get("labels") or {}).get("build.headwater.dev/build"))
            for status in (body.get("status") or {}).get("containerStatuses") or []:
                if status.get("name") == "build" and (status.get("state") or {}).get("terminated"):
                    self.finished.setdefault(build, time.perf_counter())
                    self.changed.set()

    async def until(self, what: str, check: Callable[[], float | None], limit: float) -> float:
        deadline = time.perf_counter() + limit
        while True:
            found = check()
            if found is not None:
                return found
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise TimeoutError(f"bench: timed out waiting for {what}")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(remaining, 1.0))

    def patched_to(self, deployment_name: str, digest: str) -> Callable[[], float | None]:
        def check() -> float | None:
            for seen, image in self.images.get(deployment_name, []):
                if image.endswith(digest):
                    return seen
            return None

        return check


def summary(name: str, values: list[float], p50_target: float, p99_target: float | None) -> str:
    ms = percentiles_ms(values)
    p50, p99 = ms["p50"], ms["p99"]
    within = verdict(p50 <= p50_target and (p99_target is None or p99 <= p99_target))
    target = f"p50<={p50_target:.0f}" + (f" p99<={p99_target:.0f}" if p99_target else "")
    return (
        f"  {name:<44} n={len(values):<3} p50 {p50:6.0f}  p90 {ms['p90']:6.0f}"
        f"  p99 {p99:6.0f}  max {ms['max']:6.0f} ms   {target}: {within}"
    )


async def bench(args: argparse.Namespace, env: dict[str, str]) -> list[str]:
    registry = env["REGISTRY"]
    kube = AsyncClient(config=KubeConfig.from_file(env["KUBECONFIG"]), field_manager="bench")
    await kube.create(Namespace(metadata={"name": NAMESPACE}))  # type: ignore[arg-type]
    placeholder = env["HEADWATER_BUSYBOX_IMAGE"]
    token = secrets.token_hex(16)
    port = free_port()
    log = Path(tempfile.gettempdir()) / f"{NAMESPACE}-operator.log"
    operator = start_operator(
        env,
        NAMESPACE,
        log,
        {
            "HEADWATER_WEBHOOK_PORT": str(port),
            "HEADWATER_REGISTRY_WEBHOOK_TOKEN": token,
            "HEADWATER_IMPORT_RATE_PER_MINUTE": str(args.import_rate),
            # Part (b) imports from a registry on loopback, which the import
            # policy refuses unless the admin allows it (as the e2e tests do).
            "HEADWATER_ALLOWED_REGISTRIES_FOR_IMPORT": LOOPBACK_IMPORTS,
        },
        ["--verbose"] if os.environ.get("BENCH_VERBOSE") else [],
    )
    watches = Watches(kube)
    tasks = [asyncio.create_task(watches.deployments()), asyncio.create_task(watches.pods())]
    lines: list[str] = []
    try:
        # The registry gives up on an endpoint that refuses it for a while: start
        # pushing only once the operator listens.
        for _ in range(600):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            await asyncio.sleep(0.1)
        notify = {
            "url": f"http://127.0.0.1:{port}/registry/notifications",
            "headers": {"Authorization": [f"Bearer {token}"]},
            "timeout": "2s",
            "threshold": 3,
            "backoff": "1s",
        }
        with (
            tempfile.TemporaryDirectory(prefix="hw-bench-registry-") as tmp,
            running_registry(Path(tmp), notify=notify) as external,
        ):
            first, _ = push_image(external.address, "shop/ext", "latest", marker="ext-0")
            objects = [
                stream("app"),
                stream(
                    "ext",
                    [
                        {
                            "name": "latest",
                            "from": {
                                "kind": "DockerImage",
                                "name": f"{external.address}/shop/ext:latest",
                            },
                            "importPolicy": {"insecure": True},
                        }
                    ],
                ),
                stream("promo"),
                deployment("web-a", "app:latest", placeholder),
                deployment("web-b", "ext:latest", placeholder),
                deployment("web-c", "promo:latest", placeholder),
                {
                    "apiVersion": "build.headwater.dev/v1",
                    "kind": "BuildConfig",
                    "metadata": {"name": "app", "namespace": NAMESPACE},
                    "spec": {
                        "source": {
                            "type": "Dockerfile",
                            "dockerfile": f"FROM {placeholder}\nARG N\nRUN echo $N > /n\n",
                        },
                        "strategy": {"type": "Docker", "dockerStrategy": {}},
                        "output": {"to": {"kind": "ImageStreamTag", "name": "app:latest"}},
                        "successfulBuildsHistoryLimit": 2,
                    },
                },
            ]
            for obj in objects:
                await kube.create(from_dict(obj))
            await watches.until(
                "ext:latest imported and web-b patched",
                watches.patched_to("web-b", first),
                120,
            )

            # (b) registry notification -> Deployment patched
            print(f"(b) {args.moves} pushes with notifications ...", flush=True)
            pushed: list[float] = []
            for i in range(1, args.moves + 1):
                digest, _ = push_image(external.address, "shop/ext", "latest", marker=f"ext-{i}")
                done = time.perf_counter()
                try:
                    seen = await watches.until(
                        f"push {i} on web-b", watches.patched_to("web-b", digest), 30
                    )
                except TimeoutError:
                    print(external.log(), file=sys.stderr)
                    raise
                pushed.append(seen - done)
            lines.append(summary("(b) push notification -> Deployment", pushed, 1000, None))

        # (c) retag -> Deployment patched, alternating between two imported images
        print(f"(c) {args.moves} retags ...", flush=True)
        images = []
        for marker in ("c1", "c2"):
            digest, _ = push_image(registry, f"{NAMESPACE}/src", marker, marker=marker)
            images.append((marker, digest))
        src = stream(
            "src",
            [
                {
                    "name": marker,
                    "from": {"kind": "DockerImage", "name": f"{registry}/{NAMESPACE}/src:{marker}"},
                    "importPolicy": {"insecure": True},
                }
                for marker, _ in images
            ],
        )
        await kube.create(from_dict(src))
        retags: list[float] = []
        for i in range(args.moves + 1):
            marker, digest = images[i % 2]
            body = {
                "apiVersion": "image.headwater.dev/v1",
                "kind": "ImageStream",
                "metadata": {"name": "promo", "namespace": NAMESPACE},
                "spec": {
                    "tags": [
                        {
                            "name": "latest",
                            "from": {"kind": "ImageStreamImage", "name": f"src@{digest}"},
                        }
                    ]
                },
            }
            if i == 0:
                # src's tags must be imported before promo can point at them.
                await asyncio.sleep(3)
            started = time.perf_counter()
            await kube.apply(
                ImageStream.from_dict(body),
                field_manager="headwater-tag-latest",
                force=True,
            )
            seen = await watches.until(
                f"retag {i} on web-c",
                functools.partial(_since, watches, "web-c", digest, started),
                60,
            )
            if i:  # the first apply waits for src's import as well
                retags.append(seen - started)
        lines.append(summary("(c) retag -> Deployment", retags, 300, 1000))

        # (a) build pod finished -> Deployment patched
        print(f"(a) {args.moves} builds ...", flush=True)
        built: list[float] = []
        for i in range(1, 0 if args.skip_builds else args.moves + 1):
            await kube.patch(
                BuildConfig,
                "app",
                {
                    "metadata": {
                        "annotations": {
                            f"start.build.headwater.dev/bench-{i}": json.dumps(
                                {"buildArgs": [{"name": "N", "value": str(i)}]}
                            )
                        }
                    }
                },
                namespace=NAMESPACE,
                patch_type=PatchType.MERGE,
            )
            build = f"app-{i}"
            finished = await watches.until(
                f"{build} to finish", functools.partial(watches.finished.get, build), 300
            )
            digest = await _build_digest(kube, build)
            seen = await watches.until(f"{build} on web-a", watches.patched_to("web-a", digest), 60)
            built.append(seen - finished)
        if built:
            lines.append(summary("(a) build pod finished -> Deployment", built, 300, 1000))
    finally:
        for task in tasks:
            task.cancel()
        stop_operator(operator)
        await kube.delete(Namespace, NAMESPACE)
        await kube.close()
    return lines


def _since(watches: Watches, name: str, digest: str, started: float) -> float | None:
    for seen, image in watches.images.get(name, []):
        if seen >= started and image.endswith(digest):
            return seen
    return None


async def _build_digest(kube: AsyncClient, build: str) -> str:
    from headwater.resources import Build

    for _ in range(600):
        obj = plain_dict(await kube.get(Build, build, namespace=NAMESPACE))
        status = obj.get("status") or {}
        if status.get("phase") in ("Failed", "Error", "Cancelled"):
            raise RuntimeError(f"bench: {build} ended {status.get('phase')}: {status}")
        digest = ((status.get("output") or {}).get("to") or {}).get("imageDigest")
        if digest:
            return str(digest)
        await asyncio.sleep(0.05)
    raise TimeoutError(f"bench: no digest for {build}")


def main() -> int:
    options = parser(__doc__)
    options.add_argument("--moves", type=int, default=50, help="moves per measurement")
    options.add_argument(
        "--import-rate",
        type=int,
        default=60,
        help="the operator's importRatePerMinute (default: its own default, 60)",
    )
    options.add_argument("--skip-builds", action="store_true", help="measure (b) and (c) only")
    args = options.parse_args()
    lines = asyncio.run(bench(args, cluster_env()))
    print()
    print("  tag moved -> Deployment patched (both ends seen by this process's watches)")
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
