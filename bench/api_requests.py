#!/usr/bin/env python3
"""Benchmark: Kubernetes API requests per tag move, on the seed's story, on the local cluster.

The operator (``headwater operator run --standalone``, the environment of
``make run``) watches one fresh namespace through :mod:`tests.apiproxy`, which
counts every request by verb and resource (no faults). In the namespace:

- ImageStream ``base``, tag ``latest`` imported from the local registry with
  ``importPolicy.scheduled`` (every ``--interval`` seconds);
- BuildConfig ``app``: Docker strategy from ``base:latest`` with an
  ImageChange trigger, output ``app:latest`` (a trivial Dockerfile);
- Deployment ``web`` (0 replicas) following ``base:latest`` through
  ``image.openshift.io/triggers``.

After the first import, build and rollout and a settle period, ``--moves``
new digests of ``base:latest`` are pushed one at a time; each move is done
when the stream's status has the digest, ``web`` is patched to it and the
build it triggered is Complete. Requests counted from the first push to the
end of the last settle period are divided by the number of moves. An idle
window without pushes (same length as one settle period) measures what the
operator asks for anyway (scheduled re-imports), shown per minute.

    .venv/bin/python bench/api_requests.py [--moves 5] [--json out.json] [--compare before.json]
    .venv/bin/python bench/api_requests.py --compare before.json --against after.json

Run it under the shared-cluster lock (flock /tmp/hw-e2e.lock ...).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "operator"), str(REPO)]

from bench._common import cluster_env  # noqa: E402
from tests.apiproxy import (  # noqa: E402
    READ_VERBS,
    WRITE_VERBS,
    ApiProxy,
    Counts,
    format_counts,
    running_api_proxy,
)
from tests.e2e.conftest import (  # noqa: E402
    BASELINE,
    _create_namespace,
    wait_for_build_admission,
)
from tests.e2e.helpers import (  # noqa: E402
    Cluster,
    local_operator_env,
    remove_admission_configuration,
    start_operator,
    stop_operator,
)
from tests.e2e.test_workload_triggers import (  # noqa: E402
    OPENSHIFT_KEY,
    WEB_PATH,
    push_runnable,
    triggers_value,
)
from tests.registry_servers import free_port  # noqa: E402

NAMESPACE = f"hw-bench-api-{os.getpid()}"
CATEGORIES = ("get", "list", "watch", "write", "total")


def category(verb: str) -> str:
    if verb in WRITE_VERBS:
        return "write"
    if verb in READ_VERBS or verb == "watch":
        return verb
    return "other"


def summarise(counts: Counts, divisor: float) -> dict[str, Any]:
    """Requests per unit (move, or minute) by category and by verb and resource."""
    by_category: dict[str, float] = dict.fromkeys(CATEGORIES, 0.0)
    for (verb, _), n in counts.requests.items():
        key = category(verb)
        by_category[key] = by_category.get(key, 0.0) + n / divisor
        by_category["total"] += n / divisor
    return {
        "by_category": {k: round(v, 2) for k, v in by_category.items()},
        "by_verb_resource": {
            f"{verb} {resource}": round(n / divisor, 2)
            for (verb, resource), n in sorted(counts.requests.items(), key=lambda kv: -kv[1])
        },
    }


def objects(placeholder: str, source: str) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "image.headwater.dev/v1",
            "kind": "ImageStream",
            "metadata": {"name": "base"},
            "spec": {
                "tags": [
                    {
                        "name": "latest",
                        "from": {"kind": "DockerImage", "name": source},
                        "importPolicy": {"insecure": True, "scheduled": True},
                    }
                ]
            },
        },
        {
            "apiVersion": "image.headwater.dev/v1",
            "kind": "ImageStream",
            "metadata": {"name": "app"},
            "spec": {"tags": []},
        },
        {
            "apiVersion": "build.headwater.dev/v1",
            "kind": "BuildConfig",
            "metadata": {"name": "app"},
            "spec": {
                "source": {
                    "type": "Dockerfile",
                    "dockerfile": "FROM placeholder\nLABEL built-by=headwater-bench\n",
                },
                "strategy": {
                    "type": "Docker",
                    "dockerStrategy": {"from": {"kind": "ImageStreamTag", "name": "base:latest"}},
                },
                "output": {"to": {"kind": "ImageStreamTag", "name": "app:latest"}},
                "triggers": [{"type": "ImageChange", "imageChange": {}}],
                "successfulBuildsHistoryLimit": 2,
            },
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "web",
                "annotations": {OPENSHIFT_KEY: triggers_value(("base:latest", WEB_PATH))},
            },
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": placeholder}]},
                },
            },
        },
    ]


def wait(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"bench: timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.5)


class Story:
    """Reads of the story's state, straight from the API server (not through the proxy)."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def imported(self, digest: str) -> bool:
        obj = self.cluster.get_json("imagestream/base", "-n", NAMESPACE)
        for tag in (obj.get("status") or {}).get("tags") or []:
            if tag.get("tag") == "latest" and tag.get("items"):
                return bool(tag["items"][0]["image"] == digest)
        return False

    def rolled(self, digest: str) -> bool:
        obj = self.cluster.get_json("deployment/web", "-n", NAMESPACE)
        return str(obj["spec"]["template"]["spec"]["containers"][0]["image"]).endswith(digest)

    def built(self, count: int) -> bool:
        builds = self.cluster.get_json("builds", "-n", NAMESPACE)["items"]
        phases = [(b.get("status") or {}).get("phase") for b in builds]
        bad = [p for p in phases if p in ("Failed", "Error", "Cancelled")]
        if bad:
            raise RuntimeError(f"bench: a build ended {bad}: {json.dumps(builds)[-3000:]}")
        version = self.cluster.get_json("buildconfig/app", "-n", NAMESPACE).get("status") or {}
        return int(version.get("lastVersion") or 0) >= count and all(
            p == "Complete" for p in phases
        )


@contextlib.contextmanager
def operator(cluster: Cluster, proxy: ApiProxy, interval: int, log: Path) -> Iterator[None]:
    settings = {
        **local_operator_env(),
        "KUBECONFIG": str(proxy.kubeconfig),
        "HEADWATER_ADMISSION_PORT": str(free_port()),
        "HEADWATER_WEBHOOK_PORT": str(free_port()),
        "HEADWATER_IMPORT_INTERVAL_SECONDS": str(interval),
    }
    process = start_operator([NAMESPACE], log, settings)
    try:
        yield
    finally:
        stop_operator(process)
        # Its admission webhooks' configuration is cluster-wide: nothing may point at it now.
        remove_admission_configuration(cluster)


def bench(args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    registry = env["REGISTRY"]
    cluster = Cluster(Path(env["KUBECONFIG"]), registry, env["KUBECTL"], env)
    placeholder = env["HEADWATER_BUSYBOX_IMAGE"]
    repository = f"{NAMESPACE}/base"
    story = Story(cluster)
    _create_namespace(cluster, NAMESPACE, BASELINE)
    workdir = Path(tempfile.mkdtemp(prefix="hw-bench-api-"))
    log = workdir / "operator.log"
    try:
        with (
            running_api_proxy(cluster.kubeconfig, workdir / "proxy") as proxy,
            operator(cluster, proxy, args.interval, log),
        ):
            wait_for_build_admission(cluster, NAMESPACE)
            digest = push_runnable(cluster, repository, "latest", "bench-0")
            cluster.apply(objects(placeholder, f"{registry}/{repository}:latest"), NAMESPACE)
            print("first import, build and rollout ...", flush=True)
            wait("the first import", lambda: story.imported(digest), 120)
            wait("the first rollout", lambda: story.rolled(digest), 60)
            wait("the first build", lambda: story.built(1), 600)
            time.sleep(args.settle)
            proxy.reset()
            print(f"idle for {args.settle}s ...", flush=True)
            time.sleep(args.settle)
            idle = proxy.reset()
            started = time.monotonic()
            for move in range(1, args.moves + 1):
                print(f"move {move}/{args.moves} ...", flush=True)
                digest = push_runnable(cluster, repository, "latest", f"bench-{move}")
                wait(f"move {move} imported", functools.partial(story.imported, digest), 120)
                wait(f"move {move} rolled out", functools.partial(story.rolled, digest), 60)
                wait(f"move {move} built", functools.partial(story.built, move + 1), 600)
                time.sleep(args.settle)
            window = time.monotonic() - started
            moved = proxy.snapshot()
    except BaseException:
        print(log.read_text()[-6000:], file=sys.stderr)
        raise
    finally:
        cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)
    print("\nrequests in the moves' window:\n" + format_counts(moved), flush=True)
    return {
        "bench": "api_requests",
        "commit": subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
        ).stdout.strip(),
        "moves": args.moves,
        "interval_seconds": args.interval,
        "settle_seconds": args.settle,
        "window_seconds": round(window, 1),
        "per_move": summarise(moved, args.moves),
        "idle_per_minute": summarise(idle, args.settle / 60),
    }


def table(result: Mapping[str, Any]) -> list[str]:
    lines = [
        f"  API requests per tag move ({result['moves']} moves, commit {result['commit']}, "
        f"import interval {result['interval_seconds']}s, settle {result['settle_seconds']}s)",
        "  " + "".join(f"{c:>9}" for c in CATEGORIES),
        "  " + "".join(f"{result['per_move']['by_category'][c]:>9.1f}" for c in CATEGORIES),
        "  idle, per minute:",
        "  " + "".join(f"{result['idle_per_minute']['by_category'][c]:>9.1f}" for c in CATEGORIES),
        "  per move, by verb and resource:",
    ]
    lines += [f"    {k:<52} {v:>7.2f}" for k, v in result["per_move"]["by_verb_resource"].items()]
    return lines


def compare(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    def ratio(b: float, a: float) -> str:
        return f"{a / b:>7.2f}x" if b else "      -"

    lines = [f"  {'':<22} before ({before['commit']})   after ({after['commit']})   after/before"]
    for section, title in (("per_move", "per move"), ("idle_per_minute", "idle, per minute")):
        lines.append(f"  {title}:")
        b_cat, a_cat = before[section]["by_category"], after[section]["by_category"]
        for c in CATEGORIES:
            lines.append(
                f"    {c:<20} {b_cat[c]:>12.1f} {a_cat[c]:>16.1f}       {ratio(b_cat[c], a_cat[c])}"
            )
    lines.append("  per move, by verb and resource:")
    b_vr, a_vr = before["per_move"]["by_verb_resource"], after["per_move"]["by_verb_resource"]
    for key in sorted(set(b_vr) | set(a_vr), key=lambda k: -max(b_vr.get(k, 0), a_vr.get(k, 0))):
        b, a = b_vr.get(key, 0.0), a_vr.get(key, 0.0)
        lines.append(f"    {key:<46} {b:>7.2f} {a:>8.2f}  {ratio(b, a)}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--moves", type=int, default=5, help="new digests pushed (default 5)")
    parser.add_argument(
        "--interval", type=int, default=5, help="import interval of the scheduled tag, seconds"
    )
    parser.add_argument(
        "--settle", type=int, default=10, help="seconds after each move (and the idle window)"
    )
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    parser.add_argument("--compare", type=Path, help="an earlier --json output: print ratios")
    parser.add_argument(
        "--against", type=Path, help="with --compare: compare two files, measure nothing"
    )
    args = parser.parse_args()
    if args.against:
        if not args.compare:
            parser.error("--against needs --compare")
        before = json.loads(args.compare.read_text())
        print("\n".join(compare(before, json.loads(args.against.read_text()))))
        return 0
    result = bench(args, cluster_env())
    print()
    print("\n".join(table(result)))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.compare:
        print()
        print("\n".join(compare(json.loads(args.compare.read_text()), result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
