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
3. Rebuild (``--case rebuild``; ``all`` runs it too): a Dockerfile with a slow
   dependency step (hashing ``--slow-mb`` MiB of /dev/urandom: real CPU work)
   before ``COPY`` of the source. A Binary BuildConfig builds it cold (``headwater
   start-build --from-dir --wait``: upload, pod, build, push, tag), then again
   after a one-line source change, with the registry layer cache (``--executor``
   kaniko, the default, or buildah in a namespace opted in to privileged builds).
   Beside it raw buildah on this machine, ``buildah bud --layers`` twice with
   its local storage kept (a warm local cache), each followed by a push. Prints
   cold, rebuild and their ratio for both (target: rebuild <= 25% of cold) and
   the load average, since the machine is shared.
"""

from __future__ import annotations

import os
import statistics
import subprocess
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

HEADWATER = str(Path(sys.executable).parent / "headwater")

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


def rebuild_dockerfile(busybox: str, slow_mb: int) -> str:
    # The slow step prints its digest: a cached step prints nothing.
    return (
        f"FROM {busybox}\n"
        f"RUN head -c {slow_mb}m /dev/urandom | sha256sum | tee /deps.sha256\n"
        "COPY app.txt /app/app.txt\n"
    )


def _write_source(folder: Path, dockerfile: str, line: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Dockerfile").write_text(dockerfile)
    (folder / "app.txt").write_text(f"print('hello')\n{line}\n")


def raw_buildah_rebuild(env: dict[str, str], dockerfile: str) -> tuple[float, float]:
    """Cold and warm ``buildah bud --layers`` (+ push) with one local storage."""
    times = []
    with tempfile.TemporaryDirectory(prefix="hw-bench-rebuild-") as tmp:
        work = Path(tmp)
        base = [
            "buildah", "--root", str(work / "storage"), "--runroot", str(work / "run"),
            "--storage-driver", "vfs",
        ]  # fmt: skip
        for run, line in enumerate(("version = 1", "version = 2")):
            _write_source(work / "ctx", dockerfile, line)
            target = f"{env['REGISTRY']}/bench/rebuild-raw:{run}"
            started = time.perf_counter()
            for args in (
                ["bud", "--isolation", "chroot", "--tls-verify=false", "--layers",
                 "-t", target, str(work / "ctx")],
                ["push", "--tls-verify=false", target],
            ):  # fmt: skip
                subprocess.run([*base, *args], check=True, capture_output=True, timeout=1800)
            times.append(time.perf_counter() - started)
    return times[0], times[1]


def headwater_rebuild(
    kubectl: Kubectl, env: dict[str, str], dockerfile: str, executor: str
) -> tuple[float, float, str]:
    """Cold and cached Headwater builds of a Binary BuildConfig; the rebuild's log."""
    kubectl.apply(
        {"apiVersion": "image.headwater.dev/v1", "kind": "ImageStream",
         "metadata": {"name": "rebuild"}}
    )  # fmt: skip
    kubectl.apply(
        {
            "apiVersion": "build.headwater.dev/v1",
            "kind": "BuildConfig",
            "metadata": {
                "name": "rebuild",
                "annotations": {"build.headwater.dev/executor": executor},
            },
            "spec": {
                "source": {"type": "Binary", "binary": {}},
                "strategy": {"type": "Docker", "dockerStrategy": {}},
                "output": {"to": {"kind": "ImageStreamTag", "name": "rebuild:latest"}},
            },
        }
    )
    times = []
    log = ""
    with tempfile.TemporaryDirectory(prefix="hw-bench-rebuild-src-") as tmp:
        for line in ("version = 1", "version = 2"):
            _write_source(Path(tmp), dockerfile, line)
            started = time.perf_counter()
            result = subprocess.run(
                [HEADWATER, "start-build", "rebuild", "--from-dir", tmp, "--wait",
                 "-n", NAMESPACE, "--kubeconfig", env["KUBECONFIG"]],
                capture_output=True, text=True, timeout=1800,
            )  # fmt: skip
            times.append(time.perf_counter() - started)
            if result.returncode != 0:
                sys.exit(f"bench: rebuild build failed: {result.stdout}{result.stderr}")
        log = kubectl("logs", "-n", NAMESPACE, "job/rebuild-2-build", "-c", "build")
    for build in ("rebuild-1", "rebuild-2"):
        status = kubectl.json("get", "build", build, "-n", NAMESPACE).get("status") or {}
        stages = ", ".join(
            f"{stage.get('name')} {int(stage.get('durationMilliseconds') or 0) / 1000:.1f}"
            for stage in status.get("stages") or []
        )
        print(f"  {build}: {stages} (s)")
    return times[0], times[1], log


def rebuild_case(kubectl: Kubectl, env: dict[str, str], slow_mb: int, executor: str) -> None:
    dockerfile = rebuild_dockerfile(env["HEADWATER_BUSYBOX_IMAGE"], slow_mb)
    load_before = os.getloadavg()
    print(f"rebuild: raw buildah bud --layers twice (slow step: {slow_mb} MiB hashed) ...",
          flush=True)  # fmt: skip
    raw_cold, raw_warm = raw_buildah_rebuild(env, dockerfile)
    print(f"rebuild: headwater ({executor}) cold, then after a one-line change ...", flush=True)
    cold, warm, log = headwater_rebuild(kubectl, env, dockerfile, executor)
    load_after = os.getloadavg()
    reused = "Using caching version of cmd: RUN head" in log or "Using cache" in log
    print()
    print(f"  {'rebuild after a one-line change':<40} {'headwater':>10} {'raw buildah':>12}")
    print(f"  {'cold build + push (s)':<40} {cold:>10.2f} {raw_cold:>12.2f}")
    print(f"  {'rebuild + push (s)':<40} {warm:>10.2f} {raw_warm:>12.2f}")
    ratio, raw_ratio = warm / cold, raw_warm / raw_cold
    print(f"  {'rebuild / cold':<40} {ratio:>10.0%} {raw_ratio:>12.0%}")
    print(f"  {'target rebuild <= 25% of cold':<40} {verdict(ratio <= 0.25)} target")
    print(f"  {'slow step taken from the cache':<40} {'yes' if reused else 'NO'}")
    print(f"  {'load average 1/5/15 min, before':<40} {' '.join(f'{v:.2f}' for v in load_before)}")
    print(f"  {'load average 1/5/15 min, after':<40} {' '.join(f'{v:.2f}' for v in load_after)}")
    print(f"  {'CPUs':<40} {os.cpu_count()}")


def main() -> int:
    options = parser(__doc__)
    options.add_argument("--runs", type=int, default=5, help="builds per side for the overhead")
    options.add_argument("--starts", type=int, default=20, help="BuildConfigs for start latency")
    options.add_argument(
        "--case", choices=("all", "overhead", "rebuild"), default="all",
        help="overhead: 1 and 2; rebuild: 3",
    )  # fmt: skip
    options.add_argument(
        "--slow-mb", type=int, default=2000, help="MiB the slow step hashes (2000: 14-15 s here)"
    )
    options.add_argument("--executor", choices=("kaniko", "buildah"), default="kaniko")
    args = options.parse_args()
    env = cluster_env()
    kubectl = Kubectl(env, NAMESPACE)
    kubectl("create", "namespace", NAMESPACE)
    if args.executor == "buildah":
        kubectl(
            "label", "namespace", NAMESPACE, "pod-security.kubernetes.io/enforce=privileged",
            "build.headwater.dev/privileged-builds=true",
        )  # fmt: skip
    log = Path(tempfile.gettempdir()) / f"{NAMESPACE}-operator.log"
    operator = start_operator(env, NAMESPACE, log)
    try:
        if args.case == "rebuild":
            rebuild_case(kubectl, env, args.slow_mb, args.executor)
            return 0
        print(f"raw buildah: {args.runs} builds + pushes on this machine ...", flush=True)
        raw = raw_buildah(env, args.runs)
        print(
            f"headwater: {args.runs} Builds (inline Dockerfile -> ImageStreamTag) ...", flush=True
        )
        ours = headwater_builds(kubectl, env, args.runs)
        print(f"start latency: {args.starts} BuildConfigs created with a start request ...",
              flush=True)  # fmt: skip
        latencies = start_latency(kubectl, env, args.starts)
        if args.case == "all":
            rebuild_case(kubectl, env, args.slow_mb, args.executor)
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
