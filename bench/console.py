#!/usr/bin/env python3
"""Benchmark: the console's namespace overview, 500 ImageStreams and 2,000 Builds (issue 18, 5).

Creates one namespace ``console-bench-<pid>`` on the local cluster holding
``--streams`` ImageStreams (500) and ``--builds`` Builds (2,000) of
``--buildconfigs`` BuildConfigs (20, no triggers), then serves it with
``headwater console --no-browser`` and measures, ``--runs`` times each (median
reported, the first run apart since it is the cold one):

- the server: GET of the overview page, from sending the request to the last
  byte of the body (this process, loopback);
- the browser: Debian's Chromium (headless, Playwright, a fresh context each
  run, so nothing is cached): navigation start to the first contentful paint,
  to DOMContentLoaded, to the load event (the Navigation Timing entries the
  page itself records), and to the builds table being visible as this process
  sees it (an upper bound: it includes Playwright's round trip).

Target: the overview first renders in under 1 s (the load event, median).

The Builds do not run: they are created and at once given an ended status
(Complete with a digest and stages, Failed with a reason, or Cancelled) through
the status subresource, as the operator would have left them; the streams have
only status tags (as builds that push to them leave them: no spec tag, so
nothing is imported). No operator is started, and the bench refuses to run
while the installed one (deploy/install.yaml) has replicas, since it could take
a Build before its status is written. The namespace is deleted at the end,
whatever happens.

    make bench-console          # or: flock /tmp/hw-e2e.lock .venv/bin/python bench/console.py
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "operator"), str(REPO)]

from lightkube import AsyncClient  # noqa: E402
from lightkube.codecs import from_dict  # noqa: E402
from lightkube.config.kubeconfig import KubeConfig  # noqa: E402
from lightkube.core.exceptions import ApiError  # noqa: E402
from lightkube.resources.core_v1 import Namespace  # noqa: E402
from lightkube.types import PatchType  # noqa: E402

from bench._common import Kubectl, bounded, cluster_env, parser, verdict  # noqa: E402
from headwater.builds.model import (  # noqa: E402
    ANNOTATION_BUILDCONFIG,
    ANNOTATION_NUMBER,
    LABEL_BUILDCONFIG,
    OPENSHIFT_BUILDCONFIG_LABEL,
)
from headwater.kube import already_exists  # noqa: E402
from headwater.resources import Build, BuildConfig, ImageStream  # noqa: E402
from headwater.timefmt import format_time  # noqa: E402
from tests.console_browser import Console, launch_chromium  # noqa: E402

TARGET_MS = 1000.0
SETTLE_SECONDS = 2.0
CONCURRENCY = 24
TAGS_PER_STREAM = 3
HISTORY_PER_TAG = 3
LABEL = "headwater.dev/bench"
START = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
"""Builds and tag moves are spread over the weeks after this."""


def _digest(*parts: object) -> str:
    seed = "-".join(str(p) for p in parts)
    return "sha256:" + (seed.encode().hex() * 64)[:64]


def stream_body(index: int) -> dict[str, Any]:
    return {
        "apiVersion": "image.headwater.dev/v1",
        "kind": "ImageStream",
        "metadata": {"name": f"app-{index:03d}"},
    }


def stream_status(index: int, namespace: str, registry: str) -> dict[str, Any]:
    """Three tags, each with a short history, as pushes by builds leave them."""
    repo = f"{registry}/{namespace}/app-{index:03d}"
    tags = []
    for t, tag in enumerate(("latest", "stable", "v1")[:TAGS_PER_STREAM]):
        items = []
        for h in range(HISTORY_PER_TAG):
            digest = _digest(index, tag, h)
            items.append(
                {
                    "created": format_time(START + timedelta(hours=index + t, minutes=-h * 30)),
                    "dockerImageReference": f"{repo}@{digest}",
                    "image": digest,
                    "generation": 1,
                }
            )
        tags.append({"tag": tag, "items": items})
    return {"dockerImageRepository": repo, "publicDockerImageRepository": repo, "tags": tags}


def buildconfig_body(index: int) -> dict[str, Any]:
    return {
        "apiVersion": "build.headwater.dev/v1",
        "kind": "BuildConfig",
        "metadata": {"name": f"app-{index:03d}"},
        "spec": {
            "source": {"type": "Git", "git": {"uri": f"git://127.0.0.1/app-{index:03d}.git"}},
            "strategy": {"type": "Docker", "dockerStrategy": {}},
            "output": {"to": {"kind": "ImageStreamTag", "name": f"app-{index:03d}:latest"}},
        },
    }


def build_body(config: int, number: int) -> dict[str, Any]:
    bc = f"app-{config:03d}"
    return {
        "apiVersion": "build.headwater.dev/v1",
        "kind": "Build",
        "metadata": {
            "name": f"{bc}-{number}",
            "labels": {LABEL_BUILDCONFIG: bc, OPENSHIFT_BUILDCONFIG_LABEL: bc},
            "annotations": {ANNOTATION_BUILDCONFIG: bc, ANNOTATION_NUMBER: str(number)},
        },
        "spec": {
            "source": {"type": "Git", "git": {"uri": f"git://127.0.0.1/{bc}.git"}},
            "strategy": {"type": "Docker", "dockerStrategy": {}},
            "output": {"to": {"kind": "ImageStreamTag", "name": f"{bc}:latest"}},
        },
    }


def build_status(config: int, number: int) -> dict[str, Any]:
    """An ended build: mostly Complete, every 7th Failed, every 13th Cancelled."""
    started = START + timedelta(hours=config * 3, minutes=number * 17)
    took = timedelta(seconds=40 + (number * 7 + config) % 200)
    ended = started + took
    status: dict[str, Any] = {
        "startTimestamp": format_time(started),
        "completionTimestamp": format_time(ended),
        "duration": f"{int(took.total_seconds())}s",
        "config": {"kind": "BuildConfig", "name": f"app-{config:03d}"},
        "revision": {
            "type": "Git",
            "git": {
                "commit": _digest(config, number)[7:47],
                "message": f"Change {number} of app {config}",
                "author": {"name": "Dev", "email": "dev@shop.example"},
            },
        },
    }
    if number % 13 == 0:
        status.update(
            phase="Cancelled", reason="CancelledBuild", message="The build was cancelled."
        )
    elif number % 7 == 0:
        status.update(
            phase="Failed",
            reason="DockerBuildFailed",
            message="Docker build strategy has failed.",
            logSnippet="STEP 3/4: RUN make test\nmake: *** [test] Error 2",
        )
    else:
        status.update(
            phase="Complete",
            output={"to": {"imageDigest": _digest("out", config, number)}},
            stages=[
                {"name": name, "startTime": format_time(started), "durationMilliseconds": ms}
                for name, ms in (("FetchInputs", 900), ("Build", 30000), ("PushImage", 2500))
            ],
        )
    return status


async def _create(kube: AsyncClient, body: dict[str, Any], namespace: str) -> None:
    """Create ``body`` (one that exists already is left as it is)."""
    try:
        body = {**body, "metadata": {**body["metadata"], "namespace": namespace}}
        await kube.create(from_dict(body))
    except ApiError as exc:
        if not already_exists(exc):
            raise


async def _status(
    kube: AsyncClient, resource: Any, name: str, namespace: str, status: dict[str, Any]
) -> None:
    await kube.patch(
        resource.Status, name, {"status": status}, namespace=namespace, patch_type=PatchType.MERGE
    )


async def populate(
    kube: AsyncClient, namespace: str, registry: str, streams: int, configs: int, builds: int
) -> float:
    """Create the namespace's objects; the seconds it took."""
    started = time.perf_counter()
    await kube.create(Namespace(metadata={"name": namespace, "labels": {LABEL: "console"}}))  # type: ignore[arg-type]

    async def stream(i: int) -> None:
        await _create(kube, stream_body(i), namespace)
        await _status(
            kube, ImageStream, f"app-{i:03d}", namespace, stream_status(i, namespace, registry)
        )

    async def config(k: int) -> None:
        await _create(kube, buildconfig_body(k), namespace)

    per_config = builds // configs

    async def build(k: int, n: int) -> None:
        await _create(kube, build_body(k, n), namespace)
        await _status(kube, Build, f"app-{k:03d}-{n}", namespace, build_status(k, n))

    await bounded([config(k) for k in range(configs)], CONCURRENCY)
    await bounded(
        [
            _status(kube, BuildConfig, f"app-{k:03d}", namespace, {"lastVersion": per_config})
            for k in range(configs)
        ],
        CONCURRENCY,
    )
    await bounded([stream(i) for i in range(streams)], CONCURRENCY)
    await bounded(
        [build(k, n) for k in range(configs) for n in range(1, per_config + 1)], CONCURRENCY
    )
    return time.perf_counter() - started


async def depopulate(kube: AsyncClient, namespace: str, limit: float = 600) -> float:
    """Delete the namespace and wait until it is gone; the seconds it took."""
    started = time.perf_counter()
    with contextlib.suppress(ApiError):
        await kube.delete(Namespace, namespace)
    while time.perf_counter() - started < limit:
        try:
            await kube.get(Namespace, namespace)
        except ApiError:
            break
        await asyncio.sleep(2)
    return time.perf_counter() - started


async def _with_client(kubeconfig: str, work: Any) -> Any:
    kube = AsyncClient(config=KubeConfig.from_file(kubeconfig), field_manager="bench-console")
    try:
        return await work(kube)
    finally:
        await kube.close()


def server_times(url: str, runs: int) -> tuple[list[float], list[dict[str, Any]]]:
    """Seconds from sending the GET to the body's last byte, ``runs`` times, and each
    answer's Server-Timing (where the objects came from, reading and rendering ms)."""
    times, timings = [], []
    for _ in range(runs):
        started = time.perf_counter()
        with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - loopback
            body = response.read()
            assert response.status == 200, response.status
            timings.append(server_timing(response.headers.get("Server-Timing", "")))
        times.append(time.perf_counter() - started)
        assert body
    return times, timings


def server_timing(header: str) -> dict[str, Any]:
    """``read;desc="watch";dur=3.1, render;dur=40.2`` as
    ``{"read": 3.1, "read_desc": "watch", "render": 40.2}``."""
    out: dict[str, Any] = {}
    for metric in header.split(","):
        name, *params = (p.strip() for p in metric.split(";"))
        for param in params:
            key, _, value = param.partition("=")
            if key == "dur":
                out[name] = float(value)
            elif key == "desc":
                out[f"{name}_desc"] = value.strip('"')
    return out


NAVIGATION = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const paint = performance.getEntriesByName('first-contentful-paint')[0];
  return {
    request: nav.requestStart, first_byte: nav.responseStart,
    response: nav.responseEnd, dom: nav.domContentLoadedEventEnd, load: nav.loadEventEnd,
    paint: paint ? paint.startTime : -1, bytes: nav.transferSize,
  };
}"""


def browser_times(url: str, runs: int, table: str) -> list[dict[str, float]]:
    """Per run, milliseconds from navigation start: response end, FCP, DOMContentLoaded,
    load, and the builds table seen visible by this process."""
    from playwright.sync_api import sync_playwright

    out = []
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            for _ in range(runs):
                context = browser.new_context()
                page = context.new_page()
                page.goto(url, wait_until="load")
                page.wait_for_selector(table, state="visible")
                seen = float(page.evaluate("() => performance.now()"))
                figures = {k: float(v) for k, v in page.evaluate(NAVIGATION).items()}
                figures["table"] = seen
                out.append(figures)
                context.close()
                # The page's event stream sent its first sections; the next run
                # starts on a quiet server.
                time.sleep(SETTLE_SECONDS)
        finally:
            browser.close()
    return out


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> int:
    options = parser(__doc__)
    options.add_argument("--streams", type=int, default=500)
    options.add_argument("--builds", type=int, default=2000)
    options.add_argument("--buildconfigs", type=int, default=20)
    options.add_argument("--runs", type=int, default=7, help="measurements of each kind")
    options.add_argument(
        "--path", default="/ns/{namespace}", help="the overview's path ({namespace} filled in)"
    )
    options.add_argument("--table", default="table", help="CSS selector of the builds table")
    args = options.parse_args()
    env = cluster_env()
    replicas = Kubectl(env, "headwater-system")(
        "get", "deploy", "-A", "-l", "app.kubernetes.io/component=operator",
        "-o", "jsonpath={.items[*].spec.replicas}",
    ).split()  # fmt: skip
    if any(r != "0" for r in replicas):
        sys.exit("bench: the installed operator runs (it would take the Builds): scale it to 0")
    namespace = f"console-bench-{os.getpid()}"
    workdir = Path(tempfile.mkdtemp(prefix="hw-bench-console-"))
    load = os.getloadavg()[0]
    print(
        f"console: {args.streams} ImageStreams, {args.builds} Builds of {args.buildconfigs}"
        f" BuildConfigs in {namespace}; console log in {workdir}; load average {load:.1f}",
        flush=True,
    )
    kubeconfig = env["KUBECONFIG"]
    try:
        took = asyncio.run(
            _with_client(
                kubeconfig,
                lambda kube: populate(
                    kube, namespace, env.get("REGISTRY", "127.0.0.1:5000"),
                    args.streams, args.buildconfigs, args.builds,
                ),
            )
        )  # fmt: skip
        print(f"  created in {took:.1f} s", flush=True)
        console = Console(Path(kubeconfig), namespace, workdir / "console.log")
        try:
            # Not "/": it redirects to the overview, and the first render is measured here.
            console.wait_ready(path="/favicon.ico")
            url = console.url(args.path.format(namespace=namespace))
            server, timings = server_times(url, args.runs + 1)
            browser = browser_times(url, args.runs + 1, args.table)
        finally:
            console.stop()
    finally:
        gone = asyncio.run(_with_client(kubeconfig, lambda kube: depopulate(kube, namespace)))
        print(f"  namespace deleted in {gone:.0f} s", flush=True)

    warm_server = [t * 1000 for t in server[1:]]
    rows = [
        ("server: GET overview, to the last byte", server[0] * 1000, median(warm_server)),
    ]
    for key in ("read", "render"):
        values = [t.get(key, float("nan")) for t in timings]
        rows.append((f"server: {key} (Server-Timing)", values[0], median(values[1:])))
    for key, what in (
        ("request", "browser: request sent"),
        ("first_byte", "browser: first byte of the page"),
        ("response", "browser: last byte of the page"),
        ("paint", "browser: first contentful paint"),
        ("dom", "browser: DOMContentLoaded"),
        ("load", "browser: load event"),
        ("table", "browser: builds table visible (seen)"),
    ):
        rows.append((what, browser[0][key], median([b[key] for b in browser[1:]])))
    print()
    print(
        f"console overview, {args.streams} ImageStreams / {args.builds} Builds,"
        f" {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; ms from navigation"
        f" start (server: from the request), first run and median of {args.runs} after it"
    )
    print(f"  {'':<42} {'first':>8} {'median':>8}")
    for what, first, med in rows:
        print(f"  {what:<42} {first:>8.0f} {med:>8.0f}")
    load_median = median([b["load"] for b in browser[1:]])
    print(
        f"  first render (load event, median) {load_median:.0f} ms   target < {TARGET_MS:.0f} ms:"
        f" {verdict(load_median < TARGET_MS)}"
    )
    print(f"  page size {browser[-1]['bytes'] / 1024:.0f} KiB")
    print(
        "  objects read from (server GETs, in order):"
        f" {', '.join(str(t.get('read_desc', '?')) for t in timings)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
