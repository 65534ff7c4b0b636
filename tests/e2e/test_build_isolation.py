"""A Dockerfile cannot reach the node (issue 12, part 2), on the real cluster.

Every namespace here enforces Pod Security ``baseline`` (the ``namespace``
fixture), so the default executor (kaniko) must run unprivileged. A hostile
Dockerfile's RUN steps try to reach the node; each step records its outcome
in the build log as ``BLOCKED:<step> <detail>`` or ``REACHED:<step>``, and the
build itself succeeds so that every step runs. The privileged buildah
executor is refused in such a namespace and runs only where an admin opted
the namespace in (``build.headwater.dev/privileged-builds=true``), with its
RUN steps under OCI isolation.

Network: the local cluster's pods have no default route (only the pod and
Service ranges), so a connection to a link-local address fails in the pod
without a packet leaving this machine; the probe checks the pod's routing
table first and does not try at all when a default route exists.
"""

from __future__ import annotations

import re
import socket
import sys
import time
import uuid
from pathlib import Path

import kopf.testing
import pytest

from .conftest import LOCAL_NODE_IP, PRIVILEGED_BUILDS
from .helpers import (
    Cluster,
    GitServer,
    build_log,
    build_of_request,
    docker_bc,
    imagestream,
    start_build,
    wait_for_phase,
)

pytestmark = pytest.mark.e2e

EXECUTOR = "build.headwater.dev/executor"
KUBELET = f"https://{LOCAL_NODE_IP}:10250/pods"

# One probe program, copied into the image and run by the RUN steps (python3).
PROBE = r"""
import os, socket, ssl, sys, time, urllib.error, urllib.request

step = sys.argv[1]
if step == "kubelet":
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(sys.argv[2], context=context, timeout=5) as response:
            body = response.read()
        print("REACHED:kubelet" if b'"items"' in body else f"BLOCKED:kubelet {response.status}")
    except urllib.error.HTTPError as exc:
        body = exc.read()
        print(f"BLOCKED:kubelet HTTP {exc.code} items={b'items' in body}")
    except OSError as exc:
        print(f"BLOCKED:kubelet {exc}")
elif step == "link-local":
    with open("/proc/net/route") as routes:
        default = [r for r in routes.read().splitlines()[1:] if r.split()[1] == "00000000"]
    if default:
        # Never aim at an address off this machine: record and stop.
        print("SKIPPED:link-local the pod has a default route")
        sys.exit(0)
    started = time.monotonic()
    try:
        socket.create_connection(("169.254.169.254", 80), timeout=2).close()
        print("REACHED:link-local")
    except OSError as exc:
        print(f"BLOCKED:link-local {exc} after {time.monotonic() - started:.2f}s")
"""

HOSTILE_STEPS = (
    "dev-vda", "dev-sda", "dev-kvm", "dev-kmsg",
    "read-vda", "read-sda", "read-kvm", "read-kmsg",
    "sys-block", "proc1-root", "proc1-dev", "node-write",
    "mount", "nsenter", "kubelet", "link-local",
)  # fmt: skip


def hostile_dockerfile(base: str) -> str:
    return f"""FROM {base}
ARG NODE_HOSTNAME
ARG MARK
COPY probe.py /probe.py
RUN echo "INFO:dev $(ls /dev | tr '\\n' ' ')"; \\
    for d in vda sda kvm kmsg; do \\
      if [ -e /dev/$d ]; then echo REACHED:dev-$d; else echo BLOCKED:dev-$d absent; fi; \\
    done
RUN for d in vda sda kvm kmsg; do \\
      if head -c 16 /dev/$d > /tmp/out 2> /tmp/err && [ -s /tmp/out ]; \\
      then echo REACHED:read-$d; else echo "BLOCKED:read-$d $(cat /tmp/err)"; fi; \\
    done
RUN blocks=$(ls /sys/block 2>/dev/null | tr '\\n' ' '); echo "INFO:sys-block $blocks"; \\
    reached=0; for d in $blocks; do \\
      if mknod /tmp/blk-$d b $(tr ':' ' ' < /sys/block/$d/dev) 2> /tmp/err \\
         && head -c 16 /tmp/blk-$d > /tmp/out 2>> /tmp/err && [ -s /tmp/out ]; \\
      then echo "REACHED:block-$d"; reached=1; else echo "INFO:block-$d $(cat /tmp/err)"; fi; \\
    done; [ "$reached" = 1 ] || echo "BLOCKED:sys-block mknod/read refused for: $blocks"
RUN h=$(cat /proc/1/root/etc/hostname 2>&1); \\
    if [ "$h" = "$NODE_HOSTNAME" ]; then echo REACHED:proc1-root; \\
    else echo "BLOCKED:proc1-root pid 1's /etc/hostname is '$h'"; fi
RUN if [ -e /proc/1/root/dev/vda ] || [ -e /proc/1/root/dev/kmsg ]; then echo REACHED:proc1-dev; \\
    else echo "BLOCKED:proc1-dev $(ls /proc/1/root/dev 2>&1 | tr '\\n' ' ')"; fi
RUN echo hostile > /proc/1/root/tmp/hw-hostile-$MARK 2>/dev/null; \\
    echo "BLOCKED:node-write written only inside the container (the test checks the node)"
RUN if out=$(mount -t tmpfs none /mnt 2>&1); then echo REACHED:mount; \\
    else echo "BLOCKED:mount $out"; fi
RUN if out=$(nsenter -t 1 -m -- cat /etc/hostname 2>&1) && [ "$out" = "$NODE_HOSTNAME" ]; \\
    then echo REACHED:nsenter; else echo "BLOCKED:nsenter $out"; fi
RUN python3 /probe.py kubelet {KUBELET} || echo "BLOCKED:kubelet probe failed"
RUN python3 /probe.py link-local || echo "BLOCKED:link-local probe failed"
"""


def outcomes(log: str) -> dict[str, str]:
    """``step -> "BLOCKED detail" | "REACHED..." | "SKIPPED..."`` from the build log."""
    found: dict[str, str] = {}
    for match in re.finditer(r"^(BLOCKED|REACHED|SKIPPED):([\w-]+) ?(.*)$", log, re.MULTILINE):
        verdict, step, detail = match.groups()
        # kaniko echoes the RUN command text too; only the programs' output counts.
        if "$" in detail:
            continue
        if found.get(step, "").startswith("REACHED"):
            continue
        found[step] = f"{verdict} {detail}".strip()
    return found


def report(text: str) -> None:
    """To the real stdout (kopf's test runner captures sys.stdout): shown with ``-s``."""
    print(text, file=sys.__stdout__, flush=True)


def test_hostile_dockerfile_cannot_reach_the_node(
    cluster: Cluster,
    namespace: str,
    git_server: GitServer,
    operator_in_process: kopf.testing.KopfRunner,
) -> None:
    cluster.need_registry()
    labels = cluster.get_json(f"namespace/{namespace}")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "baseline"
    mark = uuid.uuid4().hex[:10]
    node_file = Path(f"/tmp/hw-hostile-{mark}")
    url, _ = git_server.repo(
        {"Dockerfile": hostile_dockerfile(cluster.image("python")), "probe.py": PROBE}
    )
    cluster.apply(imagestream("hostile"), namespace)
    node_hostname = socket.gethostname()
    cluster.apply(
        docker_bc(
            "hostile",
            {"type": "Git", "git": {"uri": url}},
            "hostile:latest",
            strategy={
                "type": "Docker",
                "dockerStrategy": {
                    "buildArgs": [
                        {"name": "NODE_HOSTNAME", "value": node_hostname},
                        {"name": "MARK", "value": mark},
                    ]
                },
            },
        ),
        namespace,
    )
    started = time.monotonic()
    name = build_of_request(cluster, namespace, start_build(cluster, namespace, "hostile"))
    status = wait_for_phase(cluster, namespace, name)["status"]
    elapsed = time.monotonic() - started
    log = build_log(cluster, namespace, name)
    assert status["phase"] == "Complete", (status, log[-3000:])

    # The pod ran unprivileged, in the baseline namespace.
    pods = cluster.get_json("pods", "-n", namespace, "-l", f"build.headwater.dev/build={name}")
    (pod,) = pods["items"]
    assert pod["spec"]["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    for c in [*pod["spec"]["initContainers"], *pod["spec"]["containers"]]:
        assert not c["securityContext"].get("privileged"), c["name"]
        assert c["securityContext"]["allowPrivilegeEscalation"] is False

    seen = outcomes(log)
    report(f"\nhostile build {name}: {elapsed:.1f}s")
    for step in HOSTILE_STEPS:
        report(f"  {step:12} {seen.get(step, 'MISSING')}")
    assert set(HOSTILE_STEPS) <= set(seen), (sorted(set(HOSTILE_STEPS) - set(seen)), log[-4000:])
    reached = {s: v for s, v in seen.items() if not v.startswith(("BLOCKED", "SKIPPED"))}
    assert reached == {}, log[-4000:]
    # The kubelet answered, but without credentials it listed nothing.
    assert re.match(r"BLOCKED (HTTP 40[13] items=False|.*refused)", seen["kubelet"]), seen
    link_local = seen["link-local"]
    if link_local.startswith("BLOCKED"):
        seconds = float(re.findall(r"after ([0-9.]+)s", link_local)[0])
        assert seconds < 2.5, link_local
    assert "headwater-node" not in seen["proc1-root"]
    assert node_hostname not in seen["proc1-root"].split("'")[1:2]
    # The node is untouched: nothing was written to its /tmp.
    assert not node_file.exists()


def test_normal_docker_build_in_a_baseline_namespace(
    cluster: Cluster, namespace: str, operator_in_process: kopf.testing.KopfRunner
) -> None:
    cluster.need_registry()
    busybox = cluster.image("busybox")
    dockerfile = f"FROM {busybox}\nRUN echo built > /built.txt && chown 1:1 /built.txt\n"
    cluster.apply(imagestream("plain"), namespace)
    cluster.apply(
        docker_bc("plain", {"type": "Dockerfile", "dockerfile": dockerfile}, "plain:latest"),
        namespace,
    )
    started = time.monotonic()
    name = build_of_request(cluster, namespace, start_build(cluster, namespace, "plain"))
    status = wait_for_phase(cluster, namespace, name)["status"]
    report(f"\nplain kaniko build in a baseline namespace: {time.monotonic() - started:.1f}s")
    assert status["phase"] == "Complete", status
    assert status["output"]["to"]["imageDigest"].startswith("sha256:")
    jobs = cluster.get_json("jobs", "-n", namespace, "-l", f"build.headwater.dev/build={name}")
    (container,) = jobs["items"][0]["spec"]["template"]["spec"]["containers"]
    assert container["image"] == cluster.image("kaniko")


def test_buildah_is_refused_where_no_admin_opted_in(
    cluster: Cluster, namespace: str, operator_in_process: kopf.testing.KopfRunner
) -> None:
    busybox = cluster.image("busybox")
    cluster.apply(imagestream("priv"), namespace)
    bc = docker_bc("priv", {"type": "Dockerfile", "dockerfile": f"FROM {busybox}\n"}, "priv:latest")
    bc["metadata"]["annotations"] = {EXECUTOR: "buildah"}
    cluster.apply(bc, namespace)
    name = build_of_request(cluster, namespace, start_build(cluster, namespace, "priv"))
    status = wait_for_phase(cluster, namespace, name, timeout=60)["status"]
    assert status["phase"] == "Failed", status
    assert status["reason"] == "PrivilegedBuildsNotAllowed"
    assert "build.headwater.dev/privileged-builds=true" in status["message"]
    assert namespace in status["message"]
    # No pod was ever made for it.
    jobs = cluster.get_json("jobs", "-n", namespace, "-l", f"build.headwater.dev/build={name}")
    assert jobs["items"] == []


class TestOptedInNamespace:
    """An admin labelled the namespace: privileged Pod Security and the opt-in label."""

    @pytest.fixture
    def namespace_labels(self) -> dict[str, str]:
        return dict(PRIVILEGED_BUILDS)

    def test_buildah_runs_its_run_steps_with_their_own_dev(
        self,
        cluster: Cluster,
        namespace: str,
        operator_in_process: kopf.testing.KopfRunner,
    ) -> None:
        cluster.need_registry()
        busybox = cluster.image("busybox")
        dockerfile = (
            f"FROM {busybox}\n"
            "RUN for d in vda sda kvm kmsg; do if [ -e /dev/$d ]; then echo REACHED:dev-$d; "
            "else echo BLOCKED:dev-$d absent; fi; done; ls /dev\n"
            "RUN mkdir -p /mnt; if out=$(mount -t tmpfs none /mnt 2>&1); then echo REACHED:mount; "
            'else echo "BLOCKED:mount $out"; fi\n'
        )
        cluster.apply(imagestream("opted"), namespace)
        bc = docker_bc(
            "opted",
            {"type": "Dockerfile", "dockerfile": dockerfile},
            "opted:latest",
            postCommit={"script": "test ! -e /dev/vda && echo hook-in-its-own-dev"},
        )
        bc["metadata"]["annotations"] = {EXECUTOR: "buildah"}
        cluster.apply(bc, namespace)
        started = time.monotonic()
        name = build_of_request(cluster, namespace, start_build(cluster, namespace, "opted"))
        status = wait_for_phase(cluster, namespace, name)["status"]
        log = build_log(cluster, namespace, name)
        report(f"\nbuildah (opted in, OCI isolation) build: {time.monotonic() - started:.1f}s")
        assert status["phase"] == "Complete", (status, log[-3000:])
        jobs = cluster.get_json("jobs", "-n", namespace, "-l", f"build.headwater.dev/build={name}")
        (container,) = jobs["items"][0]["spec"]["template"]["spec"]["containers"]
        assert container["securityContext"] == {"privileged": True}
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["BUILDAH_ISOLATION"] == "oci"
        seen = outcomes(log)
        for step in ("dev-vda", "dev-kmsg", "dev-kvm", "dev-sda"):
            assert seen[step].startswith("BLOCKED"), (step, log[-3000:])
        report(f"  mount (in buildah's OCI container): {seen.get('mount')}")
        assert "hook-in-its-own-dev" in log
