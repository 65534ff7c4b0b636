#!/usr/bin/env python3
"""Benchmark: one cycle of scheduled imports over N ImageStreams x T tags.

Runs Headwater's import runner in this process against the local cluster's
API server and registry (``make cluster-up``), with the global rate limit
lifted, and prints figures side by side with a baseline run: the same runner
made to fetch every tag in full (manifest and config, as an importer without
the digest check would), so the ratios show what the one-HEAD check buys.

    .venv/bin/python bench/imports.py [--streams 1000] [--tags 10]

Phases: push T images, create N streams whose T tags each point at one of
them (scheduled), import them all once, then make every tag due at once and
time one full cycle in which nothing changed — first Headwater's way, then the
baseline's. Figures: the cycle's wall time, manifest and blob requests per
tag, token requests, API writes, CPU seconds, and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import resource
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "operator"), str(REPO)]

from lightkube import AsyncClient  # noqa: E402
from lightkube.config.kubeconfig import KubeConfig  # noqa: E402
from lightkube.core.exceptions import ApiError  # noqa: E402

from bench._common import Kubectl, bounded, cluster_env, parser, ratio_row  # noqa: E402
from headwater.config import Config  # noqa: E402
from headwater.imports.credentials import Keyring  # noqa: E402
from headwater.imports.history import Outcome  # noqa: E402
from headwater.imports.model import StreamRef  # noqa: E402
from headwater.imports.plan import ImportJob  # noqa: E402
from headwater.imports.runner import ImportRunner  # noqa: E402
from headwater.kube import plain_dict  # noqa: E402
from headwater.registry.client import RegistryClient  # noqa: E402
from headwater.resources import ImageStream  # noqa: E402
from tests.e2e.helpers import push_image  # noqa: E402

# A fresh namespace per run: the baseline cycle writes status as of an interval
# later, which would leave the next run's tags looking already checked.
NAMESPACE = f"hw-bench-{os.getpid()}"
CONCURRENCY = 32


class CountingRunner(ImportRunner):
    """The real runner, counting the status writes it makes."""

    writes = 0

    async def _patch_status(
        self, ref: StreamRef, patch: Mapping[str, Any]
    ) -> Mapping[str, Any] | None:
        self.writes += 1
        return await super()._patch_status(ref, patch)


class FullFetchRunner(CountingRunner):
    """Baseline: never trusts the known digest, so every check fetches everything."""

    async def _import_one(self, ref: StreamRef, job: ImportJob, keyring: Keyring) -> Outcome:
        return await super()._import_one(ref, dataclasses.replace(job, known_digest=None), keyring)


@dataclass
class Cycle:
    wall: float
    cpu: float
    manifest_requests: int
    blob_requests: int
    token_requests: int
    writes: int


def stream_body(index: int, tags: int, registry: str) -> dict[str, Any]:
    return {
        "apiVersion": "image.headwater.dev/v1",
        "kind": "ImageStream",
        "metadata": {"name": f"s{index:05d}", "namespace": NAMESPACE},
        "spec": {
            "tags": [
                {
                    "name": f"t{t}",
                    "from": {"kind": "DockerImage", "name": f"{registry}/bench/app:t{t}"},
                    "importPolicy": {"scheduled": True, "insecure": True},
                }
                for t in range(tags)
            ]
        },
    }


async def create_streams(kube: AsyncClient, streams: int, tags: int, registry: str) -> None:
    async def create(i: int) -> None:
        body = stream_body(i, tags, registry)
        try:
            await kube.create(ImageStream.from_dict(body))
        except ApiError as exc:
            if exc.status.code != 409:
                raise

    await bounded([create(i) for i in range(streams)], CONCURRENCY)


async def run_cycle(runner: CountingRunner, refs: list[StreamRef]) -> Cycle:
    """One interval later: every tag is due; reconcile every stream once."""
    later = datetime.now(UTC) + timedelta(seconds=runner.config.import_interval_seconds + 1)
    runner.clock = lambda: later
    stats = runner.registry.stats
    before = (stats.manifest_requests, stats.blob_requests, stats.token_requests, runner.writes)
    cpu, wall = time.process_time(), time.perf_counter()
    await bounded([runner.reconcile(ref) for ref in refs], CONCURRENCY)
    return Cycle(
        wall=time.perf_counter() - wall,
        cpu=time.process_time() - cpu,
        manifest_requests=stats.manifest_requests - before[0],
        blob_requests=stats.blob_requests - before[1],
        token_requests=stats.token_requests - before[2],
        writes=runner.writes - before[3],
    )


async def measure(
    runner_class: type[CountingRunner], kube: AsyncClient, config: Config, registry_host: str
) -> tuple[Cycle, float]:
    registry = RegistryClient()
    runner = runner_class(kube, registry, config, concurrency=CONCURRENCY)
    try:
        listed = [obj async for obj in kube.list(ImageStream, namespace=NAMESPACE)]
        refs: list[StreamRef] = []
        for obj in listed:
            body = plain_dict(obj)
            ref = StreamRef(NAMESPACE, body["metadata"]["name"])
            runner.bodies[ref] = body
            refs.append(ref)
        started = time.perf_counter()
        # First look: imports tags that have no status yet (only on the first run).
        await bounded([runner.reconcile(ref) for ref in refs], CONCURRENCY)
        first = time.perf_counter() - started
        return await run_cycle(runner, refs), first
    finally:
        await registry.close()


def prepare(args: argparse.Namespace) -> dict[str, str]:
    """The cluster's env, the in-cluster operator checked, the namespace and images made."""
    env = cluster_env()
    registry = env["REGISTRY"]
    kubectl = Kubectl(env, NAMESPACE).base
    replicas = subprocess.run(
        [
            *kubectl,
            "-n",
            "headwater-system",
            "get",
            "deploy/headwater-operator",
            "-o",
            "jsonpath={.spec.replicas}",
        ],
        capture_output=True,
        text=True,
    ).stdout.strip()
    if replicas not in ("", "0"):
        sys.exit(
            "bench: an in-cluster operator runs and would import the same streams; stop it with\n"
            f"  {' '.join(kubectl)} -n headwater-system"
            " scale deploy/headwater-operator --replicas=0"
        )
    subprocess.run([*kubectl, "create", "namespace", NAMESPACE], capture_output=True)
    print(f"pushing {args.tags} images to {registry}/bench/app ...", flush=True)
    for t in range(args.tags):
        push_image(registry, "bench/app", f"t{t}", marker=f"bench-{t}")
    return env


async def run(args: argparse.Namespace, env: dict[str, str]) -> int:
    registry = env["REGISTRY"]
    kube = AsyncClient(config=KubeConfig.from_file(env["KUBECONFIG"]), field_manager="headwater")
    print(f"creating {args.streams} ImageStreams x {args.tags} tags ...", flush=True)
    started = time.perf_counter()
    await create_streams(kube, args.streams, args.tags, registry)
    print(f"  created in {time.perf_counter() - started:.1f} s", flush=True)
    config = Config(
        registry=registry,
        registry_insecure=True,
        import_interval_seconds=900,
        import_rate_per_minute=10**9,  # the global limit lifted, as the targets say
    )
    try:
        ours, first = await measure(CountingRunner, kube, config, registry)
        print(f"  first import of all tags: {first:.1f} s", flush=True)
        base, _ = await measure(FullFetchRunner, kube, config, registry)
    finally:
        await kube.close()
        Kubectl(env, NAMESPACE).delete_namespace_later()
    tags = args.streams * args.tags
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print()
    print(
        f"one scheduled cycle, {args.streams} streams x {args.tags} tags"
        f" = {tags} tags, nothing changed"
    )
    print(f"  {'':<38} {'headwater':>12} {'full fetch':>12} {'ratio':>9}")
    print(ratio_row("cycle wall time (s)", ours.wall, base.wall))
    print(ratio_row("CPU time (s)", ours.cpu, base.cpu))
    print(
        ratio_row(
            "manifest requests per tag",
            ours.manifest_requests / tags,
            base.manifest_requests / tags,
        )
    )
    print(ratio_row("blob requests per tag", ours.blob_requests / tags, base.blob_requests / tags))
    print(ratio_row("token requests", ours.token_requests, base.token_requests, "{:.0f}"))
    print(ratio_row("API writes", ours.writes, base.writes, "{:.0f}"))
    print(f"  peak RSS of this process (runner + bench): {rss:.0f} MB")
    print(f"  tags checked per second: {tags / ours.wall:.0f} (full fetch: {tags / base.wall:.0f})")
    return 0


def main() -> int:
    options = parser(__doc__)
    options.add_argument("--streams", type=int, default=1000)
    options.add_argument("--tags", type=int, default=10)
    args = options.parse_args()
    return asyncio.run(run(args, prepare(args)))


if __name__ == "__main__":
    sys.exit(main())
