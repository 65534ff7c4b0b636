"""A tenant cannot stall or crash the operator: hostile inputs, sent again and again.

The real operator process (``headwater operator run`` with leader election,
its Lease in the test namespace) gets, for 30 seconds, a "billion laughs"
Generic webhook body every round and a new ImageStream that makes it match
a pull-secret key full of ``*`` globs against its image's host. Before the
bounds, the first body alone took 30 s and hundreds of MB to answer and each
key match 30 s of the event loop, so the operator lost its Lease (and exited).
Now every hostile call is refused within a second, the probes answer, the
process's RSS stays bounded and the Lease keeps being renewed.

The pull secret matches ImageStreams importing from
``0x…7f.0.0.1:<port>``: a host whose first label is long (what makes
backtracking glob matchers slow) and that resolves to 127.0.0.1 without any
DNS query (inet_aton's hexadecimal form). Nothing listens on the ports, so
the imports fail at once, on loopback.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from headwater.timefmt import parse_time
from tests.hostile import LAUGHS, docker_config_data, star_glob
from tests.registry_servers import free_port

from .helpers import HEADWATER, Cluster, docker_bc, end_process, eventually
from .test_build_webhooks import webhook_secret

pytestmark = pytest.mark.e2e

LONG_LOOPBACK = "0x" + "0" * 40 + "7f.0.0.1"
"""127.0.0.1, with a 44-character first label."""
ROUNDS_SECONDS = 30
RSS_LIMIT_MB = 400


def hostile_pull_secret(name: str, ports: list[int]) -> dict[str, Any]:
    # Ten stars against a 44-character label that does not end in "x".
    glob = star_glob("0", "x")
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "type": "kubernetes.io/dockerconfigjson",
        "data": docker_config_data((f"{glob}.0.0.1:{port}" for port in ports), b"tenant:password"),
    }


def imagestream(name: str, port: int) -> dict[str, Any]:
    return {
        "apiVersion": "image.headwater.dev/v1",
        "kind": "ImageStream",
        "metadata": {"name": name},
        "spec": {
            "tags": [
                {
                    "name": "1",
                    "from": {"kind": "DockerImage", "name": f"{LONG_LOOPBACK}:{port}/shop/web:1"},
                    "importPolicy": {"insecure": True},
                }
            ]
        },
    }


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def timed_request(url: str, body: bytes | None, headers: dict[str, str]) -> tuple[int, float]:
    request = urllib.request.Request(url, data=body, headers=headers)  # noqa: S310 - loopback
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            status = int(response.status)
            response.read()
    except urllib.error.HTTPError as exc:
        status = int(exc.code)
        exc.read()
    return status, time.monotonic() - started


def renew_time(cluster: Cluster, namespace: str, lease: str) -> tuple[str, datetime | None]:
    found = cluster.kubectl("-n", namespace, "get", "lease", lease, "-o", "json", check=False)
    if found.returncode != 0:
        return "", None
    spec = json.loads(found.stdout).get("spec") or {}
    return str(spec.get("holderIdentity") or ""), parse_time(spec.get("renewTime"))


def test_hostile_inputs_do_not_stall_the_operator(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    ports = [free_port() for _ in range(12)]
    hook_secret = uuid.uuid4().hex
    cluster.apply(hostile_pull_secret("tenant-pull", ports), namespace)
    cluster.apply(webhook_secret("generic-hook", hook_secret), namespace)
    cluster.apply(
        docker_bc(
            "web",
            {"type": "Dockerfile", "dockerfile": "FROM scratch\n"},
            None,
            triggers=[
                {"type": "Generic", "generic": {"secretReference": {"name": "generic-hook"}}}
            ],
        ),
        namespace,
    )
    health_port, webhook_port, lease = free_port(), free_port(), "hw-stall-test"
    env = {
        **os.environ,
        "KUBECONFIG": str(cluster.kubeconfig),
        "HEADWATER_HEALTH_PORT": str(health_port),
        "HEADWATER_METRICS_PORT": str(free_port()),
        "HEADWATER_WEBHOOK_PORT": str(webhook_port),
        "HEADWATER_ADMISSION_HOST": "",
        "HEADWATER_IMPORT_PULL_SECRETS": "tenant-pull",
        "HEADWATER_LEASE_NAME": lease,
        "HEADWATER_LEASE_NAMESPACE": namespace,
    }
    log = tmp_path / "operator.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [HEADWATER, "operator", "run", "--namespace", namespace],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    health = f"http://127.0.0.1:{health_port}/readyz"
    hook = (
        f"http://127.0.0.1:{webhook_port}/apis/build.headwater.dev/v1/namespaces/{namespace}"
        f"/buildconfigs/web/webhooks/{hook_secret}/generic"
    )
    yaml_headers = {"Content-Type": "application/yaml"}
    try:

        def leading() -> bool:
            try:
                return timed_request(health, None, {})[0] == 200 and bool(
                    renew_time(cluster, namespace, lease)[0]
                )
            except OSError:
                return False

        eventually("the operator to lead and answer /readyz", leading, timeout=90)

        def webhook_up() -> bool:
            try:
                return timed_request(hook, LAUGHS, yaml_headers)[0] == 400
            except OSError:
                return False

        eventually("the webhook port to answer", webhook_up, timeout=60)
        holder, first_renewal = renew_time(cluster, namespace, lease)
        baseline = rss_mb(process.pid)
        peak, slowest_hook, slowest_probe, rounds = baseline, 0.0, 0.0, 0
        deadline = time.monotonic() + ROUNDS_SECONDS
        while time.monotonic() < deadline:
            # The webhook port allows 30 calls a minute per address: one every 2 s.
            round_ends = time.monotonic() + 2.0
            if rounds < len(ports):
                cluster.apply(imagestream(f"s{rounds}", ports[rounds]), namespace)
            status, took = timed_request(hook, LAUGHS, yaml_headers)
            assert status == 400, f"round {rounds}: the billion laughs got {status}"
            slowest_hook = max(slowest_hook, took)
            status, took = timed_request(health, None, {})
            assert status == 200, f"round {rounds}: /readyz answered {status}"
            slowest_probe = max(slowest_probe, took)
            peak = max(peak, rss_mb(process.pid))
            assert process.poll() is None, log.read_text()[-3000:]
            rounds += 1
            time.sleep(max(0.0, round_ends - time.monotonic()))

        # The pull secret was matched: the imports failed on the closed ports
        # (after the key matching that used to take 30 s each).
        def failed_unreachable() -> bool:
            body = cluster.get_json("imagestream", "s0", "-n", namespace)
            tags = (body.get("status") or {}).get("tags") or []
            return any(c.get("status") == "False" for t in tags for c in t.get("conditions") or [])

        eventually("the first stream's import to have failed", failed_unreachable, timeout=30)
        holder_after, last_renewal = renew_time(cluster, namespace, lease)
        print(
            f"rounds={rounds} rss baseline={baseline:.0f}MB peak={peak:.0f}MB "
            f"slowest webhook={slowest_hook * 1000:.0f}ms probe={slowest_probe * 1000:.0f}ms "
            f"lease renewed {first_renewal} -> {last_renewal}"
        )
        assert slowest_hook < 1.0
        assert slowest_probe < 1.0
        assert peak < RSS_LIMIT_MB
        assert peak - baseline < 100
        assert holder_after == holder  # never lost the Lease
        assert first_renewal is not None
        assert last_renewal is not None
        assert (last_renewal - first_renewal).total_seconds() >= ROUNDS_SECONDS - 10
        assert process.poll() is None, log.read_text()[-3000:]
    finally:
        end_process(process)
