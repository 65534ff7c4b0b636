"""The operator SIGKILLed and restarted every few seconds while builds run.

Every build number must exist once, every Build must have exactly one Job
(owned by it), all must complete, and no Job or pod may be left without its
Build: what makes instantiation and Job creation idempotent is tested here
against a real API server and a real process dying at random points.
"""

from __future__ import annotations

import random
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from .helpers import Cluster, docker_bc, start_operator

pytestmark = pytest.mark.e2e

BUILDCONFIGS = {"alpha": "Serial", "beta": "Serial", "gamma": "Parallel", "delta": "Parallel"}
BUILDS_EACH = 5


def _start_operator(cluster: Cluster, namespace: str, log: Path) -> subprocess.Popen[bytes]:
    settings = {
        "KUBECONFIG": str(cluster.kubeconfig),
        "HEADWATER_BUILDER_IMAGE": cluster.env.get("HEADWATER_BUILDER_IMAGE")
        or cluster.image("builder"),
    }
    # Builds run the locally made kaniko (the default executor): nothing is pulled from outside.
    if cluster.env.get("HEADWATER_KANIKO_IMAGE"):
        settings["HEADWATER_KANIKO_IMAGE"] = cluster.env["HEADWATER_KANIKO_IMAGE"]
    if cluster.registry:
        settings["HEADWATER_REGISTRY"] = cluster.registry
        settings["HEADWATER_REGISTRY_INSECURE"] = "true"
    return start_operator([namespace], log, settings)


def _items(cluster: Cluster, kind: str, namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cluster.get_json(kind, "-n", namespace)["items"]
    return items


def test_sigkilled_operator_neither_duplicates_nor_loses_builds(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    busybox = cluster.image("busybox")
    for name, policy in BUILDCONFIGS.items():
        cluster.apply(
            docker_bc(
                name,
                {"type": "Dockerfile", "dockerfile": f"FROM {busybox}\nRUN echo {name}\n"},
                None,
                runPolicy=policy,
                successfulBuildsHistoryLimit=BUILDS_EACH,
            ),
            namespace,
        )
    log = tmp_path / "operator.log"
    rng = random.Random(5)  # noqa: S311 - test timing, not cryptography
    process = _start_operator(cluster, namespace, log)
    kills = 0
    try:
        # Requests arrive while the operator keeps dying.
        for round_ in range(BUILDS_EACH):
            for name in BUILDCONFIGS:
                cluster.kubectl(
                    "annotate", "-n", namespace, f"buildconfig/{name}",
                    f"start.build.headwater.dev/chaos-{round_}-{uuid.uuid4().hex[:6]}=",
                )  # fmt: skip
            time.sleep(rng.uniform(0.5, 2.5))
            process.send_signal(signal.SIGKILL)
            process.wait()
            kills += 1
            process = _start_operator(cluster, namespace, log)
        deadline = time.monotonic() + 900
        done = False
        while time.monotonic() < deadline:
            time.sleep(rng.uniform(2, 5))
            builds = _items(cluster, "builds", namespace)
            phases = [(b.get("status") or {}).get("phase") for b in builds]
            done = len(builds) == len(BUILDCONFIGS) * BUILDS_EACH and all(
                p == "Complete" for p in phases
            )
            if done:
                break
            if kills < 12:
                process.send_signal(signal.SIGKILL)
                process.wait()
                kills += 1
                process = _start_operator(cluster, namespace, log)
        assert done, (
            f"after {kills} kills: "
            + str(
                sorted(
                    (b["metadata"]["name"], (b.get("status") or {}).get("phase")) for b in builds
                )
            )
            + "\n"
            + log.read_text()[-4000:]
        )
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()

    builds = _items(cluster, "builds", namespace)
    names = sorted(b["metadata"]["name"] for b in builds)
    expected = sorted(f"{bc}-{n}" for bc in BUILDCONFIGS for n in range(1, BUILDS_EACH + 1))
    assert names == expected
    for bc in BUILDCONFIGS:
        status = cluster.get_json(f"buildconfig/{bc}", "-n", namespace)["status"]
        assert status["lastVersion"] == BUILDS_EACH
        annotations = (
            cluster.get_json(f"buildconfig/{bc}", "-n", namespace)["metadata"].get("annotations")
            or {}
        )
        assert not [k for k in annotations if k.startswith("start.build.headwater.dev/")]
    # One request, one build.
    requests = [b["metadata"]["labels"]["build.headwater.dev/request"] for b in builds]
    assert len(set(requests)) == len(requests)
    # Each Build has exactly one Job, owned by it; no Job or pod without its Build.
    uids = {b["metadata"]["uid"]: b["metadata"]["name"] for b in builds}
    jobs = _items(cluster, "jobs", namespace)
    owners = [j["metadata"]["ownerReferences"][0]["uid"] for j in jobs]
    assert sorted(uids[o] for o in owners) == expected
    job_names = {j["metadata"]["name"] for j in jobs}
    for pod in _items(cluster, "pods", namespace):
        assert pod["metadata"]["labels"]["batch.kubernetes.io/job-name"] in job_names
    print(f"operator SIGKILLed {kills} times; {len(builds)} builds, each with one Job")
