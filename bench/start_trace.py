#!/usr/bin/env python3
"""Trace: where the time goes from a start request to its build's Job (issue 15 item 4).

Needs the local cluster (``make cluster-up``); starts the operator itself with
``--verbose`` (kopf's handler lines and every API request, timestamped) watching
a fresh namespace, creates ``--starts`` BuildConfigs with a start request on
them as bench/builds.py does, and prints, per sample and as medians, the
milliseconds after the create call returned at which:

- ``handler``: kopf invoked the BuildConfig's event handler (the watch event in);
- ``list``: the BuildConfig's Builds were listed (the request's Build found, or not);
- ``build``: the Build's create returned;
- ``list2``: the Builds were listed again for the run policy (Serial);
- ``job``: the Job's create returned in the operator (on a starved CPU, after ``seen``);
- ``seen``: this script saw the Job (polling every 5 ms).

Debug logging slows the operator a little; the figures are for proportions.

    .venv/bin/python bench/start_trace.py [--starts 15]
"""

from __future__ import annotations

import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "operator"), str(REPO)]

from bench._common import Kubectl, cluster_env, parser, start_operator, stop_operator  # noqa: E402

NAMESPACE = f"hw-bench-trace-{os.getpid()}"
LINE = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]\s+(\S+)\s+\[\w+\s*\]\s+(.*)")
STEPS = ("handler", "list", "build", "list2", "job", "seen")

Mark = tuple[str, float, float, float]
"""BuildConfig name, before its create, after it, when its Job was seen (epoch seconds)."""
Line = tuple[float, str, str]


def run(env: dict[str, str], starts: int) -> list[Mark]:
    from lightkube import Client
    from lightkube.config.kubeconfig import KubeConfig
    from lightkube.resources.batch_v1 import Job

    from headwater.resources import BuildConfig

    client = Client(config=KubeConfig.from_file(env["KUBECONFIG"]), field_manager="bench")
    marks = []
    for run in range(starts):
        name = f"trace-{run}"
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
        before = time.time()
        client.create(BuildConfig.from_dict(body))
        after = time.time()
        while True:
            try:
                client.get(Job, f"{name}-1-build", namespace=NAMESPACE)
                break
            except Exception:
                time.sleep(0.005)
        marks.append((name, before, after, time.time()))
        client.delete(Job, f"{name}-1-build", namespace=NAMESPACE)
        time.sleep(0.5)  # the deleted Job's events settle before the next sample
    return marks


def parse(log: Path) -> list[Line]:
    lines = []
    for text in log.read_text(errors="replace").splitlines():
        found = LINE.match(text)
        if found:
            when = datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            lines.append((when, found.group(2), found.group(3)))
    return lines


def breakdown(mark: Mark, lines: Sequence[Line]) -> dict[str, float | None]:
    name, before, after, seen = mark
    window = [line for line in lines if before - 0.005 <= line[0] <= seen + 0.3]

    def first(test: Callable[[str, str], bool], since: float | None) -> float | None:
        if since is None:
            return None
        return next((t for t, who, text in window if t >= since and test(who, text)), None)

    def listed(since: float | None) -> float | None:
        ours = first(lambda w, t: w == "httpx2" and f"buildconfig%3D{name} " in t, since)
        theirs = first(lambda w, t: w == "httpx2" and f"build-config.name%3D{name} " in t, since)
        return None if ours is None or theirs is None else max(ours, theirs)

    handler = first(lambda _, t: "'reconcile_buildconfig' is invoked" in t, before - 0.005)
    listing = listed(handler)
    build = first(lambda w, t: w == "httpx2" and "POST" in t and "/builds?" in t, listing)
    listing2 = listed(build)
    job = first(lambda w, t: w == "httpx2" and "POST" in t and "/jobs?" in t, build)
    times = (handler, listing, build, listing2, job, seen)
    return {
        step: None if when is None else round(1000 * (when - after))
        for step, when in zip(STEPS, times, strict=True)
    }


def main() -> int:
    options = parser(__doc__)
    options.add_argument("--starts", type=int, default=15, help="BuildConfigs to trace")
    args = options.parse_args()
    env = cluster_env()
    kubectl = Kubectl(env, NAMESPACE)
    kubectl("create", "namespace", NAMESPACE)
    log = Path(tempfile.gettempdir()) / f"{NAMESPACE}-operator.log"
    operator = start_operator(env, NAMESPACE, log, extra_args=["--verbose"])
    try:
        time.sleep(6)  # the operator's watches are up
        marks = run(env, args.starts)
    finally:
        stop_operator(operator)
        kubectl("delete", "namespace", NAMESPACE, "--wait=false")
    lines = parse(log)
    rows = [breakdown(mark, lines) for mark in marks]
    print(f"  {'ms after the create returned':<28}" + "".join(f"{s:>9}" for s in STEPS))
    for mark, row in zip(marks, rows, strict=True):
        cells = "".join(f"{'-' if row[s] is None else row[s]:>9}" for s in STEPS)
        print(f"  {mark[0]:<28}{cells}")
    medians = []
    for step in STEPS:
        values = [v for row in rows if (v := row[step]) is not None]
        medians.append(f"{statistics.median(values):>9.0f}" if values else f"{'-':>9}")
    print(f"  {'median':<28}" + "".join(medians))
    print(f"  operator log: {log}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
