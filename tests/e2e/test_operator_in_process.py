"""The operator's handlers run in-process by kopf's KopfRunner against the real cluster."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import kopf.testing
import pytest

from tests.registry_servers import free_port

from .helpers import Cluster, eventually
from .test_operator import manifest, status_current

pytestmark = pytest.mark.e2e


def test_in_process_operator_reconciles_its_namespace_only(
    cluster: Cluster, namespace: str, operator_in_process: kopf.testing.KopfRunner
) -> None:
    cluster.apply(manifest("buildconfig-web.yaml"), namespace)
    eventually(
        "the BuildConfig's status",
        lambda: status_current(cluster, namespace, "buildconfig/web", "Ready"),
    )
    other = f"{namespace}-other"
    cluster.kubectl("create", "namespace", other)
    try:
        cluster.apply(manifest("buildconfig-web.yaml"), other)
        # The watch is scoped to `namespace`: a change there made after the
        # other object exists is reconciled, and the other object is not.
        cluster.kubectl(
            "patch",
            "buildconfig/web",
            "-n",
            namespace,
            "--type=merge",
            "-p",
            '{"spec": {"successfulBuildsHistoryLimit": 3}}',
        )
        eventually(
            "a second reconcile in the watched namespace",
            lambda: status_current(cluster, namespace, "buildconfig/web", "Ready"),
        )
        assert "status" not in cluster.get_json("buildconfig/web", "-n", other)
    finally:
        cluster.kubectl("delete", "namespace", other, "--wait=false", check=False)


def test_headwater_operator_run_process_serves_probes_and_stops_on_sigterm(
    cluster: Cluster, namespace: str
) -> None:
    health_port, metrics_port = free_port(), free_port()
    env = {
        **os.environ,
        "KUBECONFIG": str(cluster.kubeconfig),
        "HEADWATER_HEALTH_PORT": str(health_port),
        "HEADWATER_METRICS_PORT": str(metrics_port),
    }
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "headwater"),
            "operator",
            "run",
            "--standalone",
            "--namespace",
            namespace,
            "--log-format",
            "json",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:

        def ready() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{health_port}/readyz") as r:
                    return bool(r.status == 200 and r.read() == b"leader")
            except OSError:
                return False

        eventually("/readyz to answer 200 leader", ready)
        cluster.apply(manifest("buildconfig-web.yaml"), namespace)
        eventually(
            "the BuildConfig's status",
            lambda: status_current(cluster, namespace, "buildconfig/web", "Ready"),
        )

        def measured() -> bool:
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics") as r:
                return (
                    'headwater_reconcile_duration_seconds_count{kind="BuildConfig"}'
                    in r.read().decode()
                )

        # A reconcile is timed when it ends, after its status write (and what follows it).
        eventually("the BuildConfig reconcile's duration in /metrics", measured)
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert any("operator started" in line["message"] for line in lines), output
