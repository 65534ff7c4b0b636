"""Admission is answered by a replica that does not hold the Lease (issue 14, item 3).

Two ``headwater operator run`` processes with leader election, as two replicas
would run: the first takes the Lease, the second stands by. The second starts
last, so the webhook configuration points at it (locally each process has an
address of its own; in a cluster both sit behind the ``headwater-admission``
Service). A server-side dry run of a BuildConfig is then admitted with its
requester recorded: the strategy webhooks were answered by the standby.
Before admission moved out of kopf, a standby served none, and the
configuration pointed at the leader only.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.registry_servers import free_port

from .conftest import LOCAL_NODE_IP, STRATEGY_REQUESTER
from .helpers import (
    HEADWATER,
    Cluster,
    eventually,
    local_operator_env,
    pause_installed_operator,
    remove_admission_configuration,
    scale_operator,
    stop_operator,
)

pytestmark = pytest.mark.e2e


def readyz(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
            return str(answer.read().decode()) if answer.status == 200 else ""
    except OSError:
        return ""


class Replica:
    def __init__(self, name: str, process: subprocess.Popen[bytes], health: int, admission: int):
        self.name, self.process, self.health, self.admission = name, process, health, admission


@pytest.fixture
def replicas(
    cluster: Cluster, namespace: str, peer_namespace: str, tmp_path: Path
) -> Iterator[list[Replica]]:
    if not cluster.is_local:
        pytest.skip("the API server must reach processes on this machine (the local cluster)")
    pause_installed_operator(cluster)
    common = {
        **os.environ,
        **local_operator_env(),
        "KUBECONFIG": str(cluster.kubeconfig),
        "HEADWATER_ADMISSION_HOST": LOCAL_NODE_IP,
        "HEADWATER_LEADER_ELECTION": "true",
        # The Lease's namespace is left out of admission: not the one written to.
        "HEADWATER_LEASE_NAMESPACE": peer_namespace,
        "HEADWATER_LEASE_NAME": f"hw-admission-{uuid.uuid4().hex[:6]}",
    }
    started: list[Replica] = []

    def start(name: str) -> Replica:
        health, admission = free_port(), free_port()
        env = {
            **common,
            "HOSTNAME": name,
            "HEADWATER_HEALTH_PORT": str(health),
            "HEADWATER_METRICS_PORT": str(free_port()),
            "HEADWATER_WEBHOOK_PORT": str(free_port()),
            "HEADWATER_ADMISSION_PORT": str(admission),
        }
        with (tmp_path / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(
                [HEADWATER, "operator", "run", "--namespace", namespace],
                env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        replica = Replica(name, process, health, admission)
        started.append(replica)
        return replica

    try:
        leader = start("replica-a")
        eventually("replica-a to lead", lambda: readyz(leader.health) == "leader", timeout=90)
        standby = start("replica-b")
        eventually("replica-b to stand by", lambda: readyz(standby.health) == "standby")
        yield started
    finally:
        for replica in started:
            stop_operator(replica.process)
        remove_admission_configuration(cluster)
        for replica in started:
            print(f"--- {replica.name}\n{(tmp_path / f'{replica.name}.log').read_text()[-3000:]}")


def test_a_standby_answers_admission(
    cluster: Cluster, namespace: str, peer_namespace: str, replicas: list[Replica]
) -> None:
    leader, standby = replicas
    configuration = cluster.get_json("validatingwebhookconfiguration", "headwater.dev")
    urls = {w["clientConfig"]["url"] for w in configuration["webhooks"]}
    assert urls, configuration
    assert all(u.startswith(f"https://{LOCAL_NODE_IP}:{standby.admission}/") for u in urls), urls

    probe = {
        "apiVersion": "build.headwater.dev/v1",
        "kind": "BuildConfig",
        "metadata": {"name": "answered-by-standby", "namespace": namespace},
        "spec": {
            "source": {"type": "Dockerfile", "dockerfile": "FROM scratch\n"},
            "strategy": {"type": "Docker", "dockerStrategy": {}},
        },
    }
    result = cluster.kubectl(
        "create", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(probe)
    )
    annotations = json.loads(result.stdout)["metadata"].get("annotations") or {}
    assert STRATEGY_REQUESTER in annotations, result.stdout
    # Still a standby, and the leader still leads: the answer came from the standby.
    assert readyz(standby.health) == "standby"
    assert readyz(leader.health) == "leader"
    lease = cluster.get_json("lease", "-n", peer_namespace)["items"][0]
    assert lease["spec"]["holderIdentity"].startswith(f"{leader.name}_"), lease


INLINE_BC = {
    "apiVersion": "build.headwater.dev/v1",
    "kind": "BuildConfig",
    "metadata": {"name": "inline", "namespace": "default"},
    "spec": {
        "triggers": [{"type": "GitHub", "github": {"secret": "s3cr3t"}}],
        "source": {"type": "Dockerfile", "dockerfile": "FROM scratch\n"},
        "strategy": {"type": "Docker", "dockerStrategy": {}},
    },
}


def test_in_the_cluster_every_replica_answers_admission_through_the_service(
    cluster: Cluster, operator_in_cluster: str
) -> None:
    """The installed operator with two replicas: the configuration names the Service, and
    the pod that does not hold the Lease answers an AdmissionReview itself."""
    namespace = operator_in_cluster
    configuration = cluster.get_json("validatingwebhookconfiguration", "headwater.dev")
    for webhook in configuration["webhooks"]:
        assert webhook["clientConfig"]["service"]["name"] == "headwater-admission", webhook
        assert webhook["clientConfig"]["service"]["namespace"] == namespace
    assert cluster.get_json("secret", "headwater-admission-ca", "-n", namespace)["data"]["ca.crt"]
    scale_operator(cluster, 2)
    try:
        result = cluster.kubectl(
            "-n", namespace, "rollout", "status", "deploy/headwater-operator", "--timeout=180s",
            timeout=200,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        lease = cluster.get_json("lease", "headwater-operator", "-n", namespace)
        holder = str(lease["spec"]["holderIdentity"]).rsplit("_", 1)[0]
        pods = cluster.get_json(
            "pods", "-n", namespace, "-l", "app.kubernetes.io/component=operator"
        )["items"]
        standbys = [
            p["metadata"]["name"]
            for p in pods
            if p["metadata"]["name"] != holder and not p["metadata"].get("deletionTimestamp")
        ]
        assert standbys, (holder, [p["metadata"]["name"] for p in pods])
        standby = standbys[0]
        readyz = cluster.kubectl(
            "get", "--raw", f"/api/v1/namespaces/{namespace}/pods/{standby}:8081/proxy/readyz"
        ).stdout
        assert readyz == "standby"
        # The AdmissionReview the API server would send, to the standby's admission port.
        review = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "standby-1",
                "kind": {"group": "build.headwater.dev", "version": "v1", "kind": "BuildConfig"},
                "resource": {
                    "group": "build.headwater.dev",
                    "version": "v1",
                    "resource": "buildconfigs",
                },
                "operation": "CREATE",
                "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
                "object": INLINE_BC,
            },
        }
        answer = cluster.kubectl(
            "create", "--raw",
            f"/api/v1/namespaces/{namespace}/pods/https:{standby}:9443/proxy/inline-webhook-secrets",
            "-f", "-", input=json.dumps(review),
        )  # fmt: skip
        response = json.loads(answer.stdout)["response"]
        assert response["uid"] == "standby-1"
        assert response["allowed"] is True
        assert any("secret" in w for w in response.get("warnings") or []), response
    finally:
        scale_operator(cluster, 1)
