#!/usr/bin/env python3
"""Benchmark: what a Headwater Build costs over raw buildah, and how fast a build starts.

Needs the local cluster (``make cluster-up``); starts the operator itself
(``headwater operator run --standalone`` watching a fresh namespace).

    .venv/bin/python bench/builds.py [--runs 5] [--starts 20]

1. Overhead: the same small Dockerfile (FROM the local busybox, one RUN)
   built and pushed ``--runs`` times by raw buildah on this machine (the
   baseline), then ``--runs`` times as Headwater Builds (inline Dockerfile,
   output to an ImageStreamTag), timed from the start request to the Build's
   Complete (digest verified, tag moved). Prints the medians side by side and
   the overhead (target: <= 3 s).
2. Start latency: ``--starts`` BuildConfigs created with a start request
   already on them; the time from the create call returning to the build's
   Job being seen (target: p50 <= 200 ms). The Jobs are deleted at once so
   nothing queues behind them.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "operator"), str(REPO)]

from bench._common import (  # noqa: E402
    Kubectl,
    cluster_env,
    parser,
    percentiles_ms,
    start_operator,
    stop_operator,
    verdict,
)
from tests.e2e.helpers import buildah_build_and_push  # noqa: E402

NAMESPACE = f"hw-bench-builds-{os.getpid()}"


def dockerfile(busybox: str, run: int) -> str:
    # A different RUN line each time: no layer cache can make a run look faster.
    return f"FROM {busybox}\nRUN echo bench-{run} > /bench.txt && ls / > /listing.txt\n"


def raw_buildah(env: dict[str, str], runs: int) -> list[float]:
    times = []
    with tempfile.TemporaryDirectory(prefix="hw-bench-buildah-") as tmp:
        for run in range(runs):
            context = Path(tmp) / f"ctx{run}"
            context.mkdir()
            (context / "Dockerfile").write_text(dockerfile(env["HEADWATER_BUSYBOX_IMAGE"], run))
            target = f"{env['REGISTRY']}/bench/raw:{run}"
            started = time.perf_counter()
            buildah_build_and_push(Path(tmp) / f"buildah{run}", context, target)
            times.append(time.perf_counter() - started)
    return times


def headwater_builds(kubectl: Kubectl, env: dict[str, str], runs: int) -> list[float]:
    kubectl.apply(
        {
            "apiVersion": "image.headwater.dev/v1",
            "kind": "ImageStream",
            "metadata": {"name": "bench"},
        }
    )
    times = []
    for run in range(runs):
        name = f"overhead-{run}"
        kubectl.apply(
            {
                "apiVersion": "build.headwater.dev/v1",
                "kind": "BuildConfig",
                "metadata": {"name": name},
                "spec": {
                    "source": {
                        "type": "Dockerfile",
                        # 1000 offsets the runs from the raw ones: fresh content.
                        "dockerfile": dockerfile(env["HEADWATER_BUSYBOX_IMAGE"], 1000 + run),
                    },
                    "strategy": {"type": "Docker", "dockerStrategy": {}},
                    "output": {"to": {"kind": "ImageStreamTag", "name": f"bench:{run}"}},
                },
            }
        )
        started = time.perf_counter()
        kubectl(
            "annotate", "-n", NAMESPACE, f"buildconfig/{name}",
            f"start.build.headwater.dev/bench-{uuid.uuid4().hex[:8]}=",
        )  # fmt: skip
        while True:
            build = kubectl.json(
                "get", "builds", "-n", NAMESPACE, "-l", f"build.headwater.dev/buildconfig={name}"
            )
            phases = [(b.get("status") or {}).get("phase") for b in build["items"]]
            if phases and phases[0] in ("Complete", "Failed", "Error", "Cancelled"):
                break
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        if phases[0] != "Complete":
            sys.exit(f"bench: build of {name} ended {phases[0]}: {build['items'][0]['status']}")
        times.append(elapsed)
    return times


def start_latency(kubectl: Kubectl, env: dict[str, str], starts: int) -> list[float]:
    from lightkube import Client
    from lightkube.config.kubeconfig import KubeConfig
    from lightkube.resources.batch_v1 import Job

    from headwater.resources import BuildConfig

    client = Client(config=KubeConfig.from_file(env["KUBECONFIG"]), field_manager="bench")
    latencies = []
    for run in range(starts):
        name = f"latency-{run}"
        body = {
            "apiVersion": "build.headwater.dev/v1",
            "kind": "BuildConfig",
            "metadata": {
                "name": name,
                "namespace": NAMESPACE,
                "annotations": {"start.build.headwater.dev/first": ""},
            },
            "spec": {
                "source": {"type": "Dockerfile", "dockerfile": "FROM scratch\n"},
                "strategy": {"type": "Docker", "dockerStrategy": {}},
            },
        }
        client.create(BuildConfig.from_dict(body))
        started = time.perf_counter()
        job = f"{name}-1-build"
        while True:
            try:
                client.get(Job, job, namespace=NAMESPACE)
                break
            except Exception:
                time.sleep(0.005)
        latencies.append(time.perf_counter() - started)
        client.delete(Job, job, namespace=NAMESPACE)
    return latencies


def main() -> int:
    options = parser(__doc__)
    options.add_argument("--runs", type=int, default=5, help="builds per side for the overhead")
    options.add_argument("--starts", type=int, default=20, help="BuildConfigs for start latency")
    args = options.parse_args()
    env = cluster_env()
    kubectl = Kubectl(env, NAMESPACE)
    kubectl("create", "namespace", NAMESPACE)
    log = Path(tempfile.gettempdir()) / f"{NAMESPACE}-operator.log"
    operator = start_operator(env, NAMESPACE, log)
    try:
        print(f"raw buildah: {args.runs} builds + pushes on this machine ...", flush=True)
        raw = raw_buildah(env, args.runs)
        print(
            f"headwater: {args.runs} Builds (inline Dockerfile -> ImageStreamTag) ...", flush=True
        )
        ours = headwater_builds(kubectl, env, args.runs)
        print(f"start latency: {args.starts} BuildConfigs created with a start request ...",
              flush=True)  # fmt: skip
        latencies = start_latency(kubectl, env, args.starts)
    finally:
        stop_operator(operator)
        kubectl("delete", "namespace", NAMESPACE, "--wait=false")
    raw_median, ours_median = statistics.median(raw), statistics.median(ours)
    print()
    print(f"  {'build + push of one small Dockerfile':<40} {'headwater':>10} {'raw buildah':>12}")
    print(f"  {'median wall time (s)':<40} {ours_median:>10.2f} {raw_median:>12.2f}")
    print(f"  {'min wall time (s)':<40} {min(ours):>10.2f} {min(raw):>12.2f}")
    print(f"  {'ratio (headwater / raw)':<40} {ours_median / raw_median:>10.2f}x")
    overhead = ours_median - raw_median
    print(
        f"  {'overhead (s), target <= 3':<40} {overhead:>10.2f}   {verdict(overhead <= 3)} target"
    )
    ms = percentiles_ms(latencies)
    figures = f"p50 {ms['p50']:.0f}  p90 {ms['p90']:.0f}  max {ms['max']:.0f}"
    print(f"  {'start request -> Job created (ms)':<40} {figures}")
    print(f"  {'target p50 <= 200 ms':<40} {verdict(ms['p50'] <= 200)} target")
    return 0


if __name__ == "__main__":
    sys.exit(main())
