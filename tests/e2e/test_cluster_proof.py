"""Proof that the cluster under test does what Headwater relies on.

Each test exercises one capability the operator builds on: Jobs with
termination messages, pod logs, buildah building in a pod from a git server and
pushing to the registry, Deployments rolling out when their image moves, and (on the
local cluster) pods that keep reaching this machine while other pods come and go.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests import hack_scripts

from .conftest import PRIVILEGED_BUILDS
from .helpers import Cluster, GitServer, buildah_build_and_push, registry_digest

pytestmark = pytest.mark.e2e


@pytest.fixture
def namespace_labels() -> dict[str, str]:
    """A privileged buildah pod runs here, as in a namespace an admin opted in."""
    return dict(PRIVILEGED_BUILDS)


def test_job_termination_message_and_logs(cluster: Cluster, namespace: str) -> None:
    cluster.apply(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "report"},
            "spec": {
                "backoffLimit": 0,
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "automountServiceAccountToken": False,
                        "containers": [
                            {
                                "name": "step",
                                "image": cluster.image("busybox"),
                                "command": [
                                    "sh",
                                    "-c",
                                    'echo "line one"; echo "line two"; '
                                    'printf \'{"digest":"sha256:abc"}\' > /dev/termination-log',
                                ],
                            }
                        ],
                    }
                },
            },
        },
        namespace,
    )
    cluster.kubectl(
        "wait", "-n", namespace, "--for=condition=Complete", "job/report", "--timeout=120s"
    )
    pods = cluster.get_json("pods", "-n", namespace, "-l", "job-name=report")
    items = pods["items"]
    assert isinstance(items, list)
    assert len(items) == 1
    pod = items[0]
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 0
    assert json.loads(terminated["message"]) == {"digest": "sha256:abc"}
    logs = cluster.kubectl("logs", "-n", namespace, pod["metadata"]["name"]).stdout
    assert logs.splitlines() == ["line one", "line two"]


def test_buildah_pod_builds_from_git_and_pushes(
    cluster: Cluster, namespace: str, git_server: GitServer
) -> None:
    registry = cluster.need_registry()
    busybox = cluster.image("busybox")
    url, sha = git_server.repo(
        {
            "Dockerfile": (
                f"FROM {busybox}\n"
                "COPY message.txt /message.txt\n"
                "RUN cat /message.txt > /built.txt && echo built-by-buildah >> /built.txt\n"
                'CMD ["cat", "/built.txt"]\n'
            ),
            "message.txt": "hello from git\n",
        }
    )
    repository = f"e2e/{namespace}/app"
    target = f"{registry}/{repository}:latest"
    script = (
        "set -eu; "
        f"git clone -q {url} /workspace/src; cd /workspace/src; "
        "commit=$(git rev-parse HEAD); "
        f"buildah bud --tls-verify=false -t {target} .; "
        f"buildah push --tls-verify=false --digestfile /workspace/digest {target}; "
        'printf \'{"commit":"%s","digest":"%s"}\' "$commit" "$(cat /workspace/digest)" '
        "> /dev/termination-log"
    )
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "build"},
            "spec": {
                "restartPolicy": "Never",
                "automountServiceAccountToken": False,
                "containers": [
                    {
                        "name": "build",
                        "image": cluster.image("builder"),
                        "command": ["sh", "-c", script],
                        # buildah needs mounts and chroot inside the pod.
                        "securityContext": {"privileged": True},
                        "volumeMounts": [
                            {"name": "storage", "mountPath": "/var/lib/containers"},
                            {"name": "workspace", "mountPath": "/workspace"},
                        ],
                    }
                ],
                "volumes": [
                    {"name": "storage", "emptyDir": {}},
                    {"name": "workspace", "emptyDir": {}},
                ],
            },
        },
        namespace,
    )
    done = cluster.kubectl(
        "wait",
        "-n",
        namespace,
        "--for=jsonpath={.status.phase}=Succeeded",
        "pod/build",
        "--timeout=300s",
        check=False,
        timeout=320,
    )
    if done.returncode != 0:
        logs = cluster.kubectl("logs", "-n", namespace, "build", check=False)
        pytest.fail(f"build pod did not succeed:\n{logs.stdout}{logs.stderr}")
    pod = cluster.get_json("pod", "build", "-n", namespace)
    report = json.loads(pod["status"]["containerStatuses"][0]["state"]["terminated"]["message"])
    assert report["commit"] == sha
    assert report["digest"] == registry_digest(registry, repository, "latest")


def _deployment(name: str, image: str) -> dict[str, object]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "automountServiceAccountToken": False,
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {
                            "name": "web",
                            "image": image,
                            "command": ["sh", "-c", "cat /version.txt; exec sleep 3600"],
                        }
                    ],
                },
            },
        },
    }


def test_deployment_rolls_out_each_new_digest(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    registry = cluster.need_registry()
    repository = f"e2e/{namespace}/web"
    digests = []
    for version in ("1", "2"):
        context = tmp_path / f"ctx{version}"
        context.mkdir()
        (context / "Dockerfile").write_text(
            f"FROM {cluster.image('busybox')}\nRUN echo version-{version} > /version.txt\n"
        )
        digests.append(
            buildah_build_and_push(tmp_path / "buildah", context, f"{registry}/{repository}:v")
        )
    assert digests[0] != digests[1]

    for digest in digests:
        image = f"{registry}/{repository}@{digest}"
        cluster.apply(_deployment("web", image), namespace)
        cluster.kubectl(
            "rollout",
            "status",
            "-n",
            namespace,
            "deployment/web",
            "--timeout=120s",
            timeout=130,
        )
        pods = cluster.get_json("pods", "-n", namespace, "-l", "app=web")
        running = [
            p
            for p in pods["items"]
            if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
        ]
        assert running, "no running pod after rollout"
        assert all(p["spec"]["containers"][0]["image"] == image for p in running)
        # The runtime really pulled that content: the pod reports the digest it runs.
        assert all(digest in p["status"]["containerStatuses"][0]["imageID"] for p in running)
    rs = cluster.get_json("replicasets", "-n", namespace, "-l", "app=web")
    assert len(rs["items"]) == 2


def _sleeper(cluster: Cluster, name: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {"name": "sleep", "image": cluster.image("busybox"), "command": ["sleep", "600"]}
            ],
        },
    }


def test_pods_keep_reaching_this_machine_while_other_pods_go(
    cluster: Cluster, namespace: str
) -> None:
    """The pod bridge's MAC is set by hand. A bridge whose MAC the kernel chose takes the
    lowest MAC of its ports, and changes when that port's pod goes: every other pod, whose
    ARP cache holds the old MAC, then lost this machine for about 45 s (measured), which
    failed builds' pushes ("dial tcp 10.244.0.1:5000: i/o timeout") and console calls."""
    if not cluster.is_local:
        pytest.skip("the local cluster's pod bridge")
    local = hack_scripts.load("cluster/localcluster")
    bridge = Path("/sys/class/net") / local.BRIDGE
    assert (bridge / "addr_assign_type").read_text().strip() == "3"  # NET_ADDR_SET: kept
    names = ["stays", "goes-1", "goes-2", "goes-3"]
    cluster.apply([_sleeper(cluster, n) for n in names], namespace)
    pods = [f"pod/{n}" for n in names]
    cluster.kubectl("wait", "-n", namespace, "--for=condition=Ready", *pods, "--timeout=120s")
    host, port = str(cluster.registry).rsplit(":", 1)
    probe = f"echo | nc -w 3 {host} {port} >/dev/null && grep '^{host} ' /proc/net/arp"
    before = cluster.kubectl("exec", "-n", namespace, "stays", "--", "sh", "-c", probe).stdout
    cluster.kubectl("delete", "-n", namespace, *pods[1:], "--wait=true", "--timeout=60s")
    assert (bridge / "address").read_text().strip() == local.BRIDGE_MAC
    after = cluster.kubectl("exec", "-n", namespace, "stays", "--", "sh", "-c", probe).stdout
    assert local.BRIDGE_MAC in before
    assert after == before
