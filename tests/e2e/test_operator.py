"""The operator installed from deploy/install.yaml, running in the cluster from its own image.

The image is built by buildah from the repository's Dockerfile; the install is
the committed file with only the image, the output registry and the builder
image changed (hack/render_install.py).
"""

from __future__ import annotations

import functools
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from .helpers import OPERATOR_REPLICAS, Cluster, eventually, push_image, wait_until_allowed
from .test_lookup_policy import recreated_image, set_lookup

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
VALID = REPO / "tests" / "crds" / "valid"
LEASE = "headwater-operator"


def manifest(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((VALID / name).read_text())
    doc["metadata"].pop("namespace", None)
    return doc


def summary_condition(obj: dict[str, Any], condition_type: str) -> dict[str, Any] | None:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition["type"] == condition_type:
            return dict(condition)
    return None


def status_current(cluster: Cluster, namespace: str, resource: str, condition_type: str) -> bool:
    obj = cluster.get_json(resource, "-n", namespace)
    condition = summary_condition(obj, condition_type)
    return (
        (obj.get("status") or {}).get("observedGeneration") == obj["metadata"]["generation"]
        and condition is not None
        and condition.get("observedGeneration") == obj["metadata"]["generation"]
    )


def lease_holder(cluster: Cluster, namespace: str) -> str:
    lease = cluster.get_json("lease", LEASE, "-n", namespace)
    return str(lease["spec"].get("holderIdentity") or "")


def operator_pods(cluster: Cluster, namespace: str) -> list[str]:
    """The operator's pods, once all replicas run and a rollout's old pods are gone
    (slow on a loaded machine)."""
    found: list[str] = []

    def all_there() -> bool:
        pods = cluster.get_json(
            "pods", "-n", namespace, "-l", "app.kubernetes.io/component=operator"
        )["items"]
        found[:] = [
            p["metadata"]["name"] for p in pods if not p["metadata"].get("deletionTimestamp")
        ]
        return len(found) == OPERATOR_REPLICAS

    eventually(f"exactly {OPERATOR_REPLICAS} operator pods", all_there, timeout=120)
    return found


def operator_pod(cluster: Cluster, namespace: str) -> str:
    """The operator pod that leads (holds the Lease)."""
    pods = operator_pods(cluster, namespace)
    found: list[str] = []

    def leading() -> bool:
        holder = lease_holder(cluster, namespace)
        found[:] = [pod for pod in pods if holder.startswith(pod + "_")]
        return bool(found)

    eventually("one of the operator pods to hold the Lease", leading, timeout=120)
    return found[0]


def test_operator_is_ready_holds_the_lease_and_serves_metrics(
    cluster: Cluster, operator_in_cluster: str
) -> None:
    pods = operator_pods(cluster, operator_in_cluster)
    for pod in pods:
        status = cluster.get_json("pod", pod, "-n", operator_in_cluster)["status"]
        (container,) = status["containerStatuses"]
        assert container["ready"] is True, pod
        assert container["restartCount"] == 0, pod
    leader = operator_pod(cluster, operator_in_cluster)
    proxy = f"/api/v1/namespaces/{operator_in_cluster}"
    # Through the API server's service proxy: the Service in deploy/ reaches a pod.
    metrics = cluster.kubectl(
        "get", "--raw", f"{proxy}/services/headwater-operator-metrics:metrics/proxy/metrics"
    ).stdout
    assert "headwater_leader " in metrics
    leader_metrics = cluster.kubectl("get", "--raw", f"{proxy}/pods/{leader}:8080/proxy/metrics")
    assert "headwater_leader 1.0" in leader_metrics.stdout
    for pod in pods:
        readyz = cluster.kubectl("get", "--raw", f"{proxy}/pods/{pod}:8081/proxy/readyz").stdout
        assert readyz == ("leader" if pod == leader else "standby")


def test_the_in_cluster_operator_imports_and_reports_status(
    cluster: Cluster, operator_in_cluster: str, namespace: str
) -> None:
    registry = cluster.need_registry()
    digest, _ = push_image(registry, f"{namespace}/web", "1.2.0", marker=namespace)
    seed = manifest("imagestream-web.yaml")
    seed["spec"]["tags"][0]["from"]["name"] = f"{registry}/{namespace}/web:1.2.0"
    seed["spec"]["tags"][0]["importPolicy"]["insecure"] = True
    # The Build first: the BuildConfig's ConfigChange trigger makes a build at once, and
    # had it come first, the operator's web-1 could be created between kubectl's read and
    # its create of this one (AlreadyExists); this way the operator's build is web-2.
    cluster.apply([manifest("build-web-1.yaml")], namespace)
    cluster.apply([seed, manifest("buildconfig-web.yaml")], namespace)

    def imported() -> bool:
        obj = cluster.get_json("imagestream/web", "-n", namespace)
        tags = (obj.get("status") or {}).get("tags") or []
        ready = summary_condition(obj, "Ready") or {}
        return bool(
            tags
            and tags[0]["items"][0]["image"] == digest
            and ready.get("status") == "True"
            and obj["status"].get("observedGeneration") == obj["metadata"]["generation"]
        )

    eventually("the seed's tag imported by the in-cluster operator", imported)
    if cluster.is_local:
        # lookupPolicy.local through the in-cluster webhook (API server -> pod IP).
        set_lookup(cluster, namespace, "web", local=True)
        expected = f"{registry}/{namespace}/web@{digest}"

        def resolved() -> bool:
            return recreated_image(cluster, namespace, "web", "web:1.2.0") == expected

        eventually("web:1.2.0 resolved by the in-cluster webhook", resolved)
    for resource, condition in (
        ("buildconfig/web", "Ready"),
        ("build.build.headwater.dev/web-1", "Succeeded"),
    ):
        eventually(
            f"{resource} status for its generation",
            functools.partial(status_current, cluster, namespace, resource, condition),
        )
    cluster.kubectl(
        "patch",
        "buildconfig/web",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec": {"successfulBuildsHistoryLimit": 3}}',
    )
    assert cluster.get_json("buildconfig/web", "-n", namespace)["metadata"]["generation"] == 2
    eventually(
        "observedGeneration 2",
        lambda: status_current(cluster, namespace, "buildconfig/web", "Ready"),
        timeout=120,
    )


def test_a_new_pod_takes_the_lease_when_the_leader_dies(
    cluster: Cluster, operator_in_cluster: str, namespace: str
) -> None:
    old = operator_pod(cluster, operator_in_cluster)
    [standby] = [pod for pod in operator_pods(cluster, operator_in_cluster) if pod != old]
    killed = time.monotonic()
    cluster.kubectl("delete", "pod", old, "-n", operator_in_cluster, "--grace-period=0", "--force")

    def new_leader() -> bool:
        holder = lease_holder(cluster, operator_in_cluster)
        return bool(holder) and not holder.startswith(old + "_")

    eventually("a new Lease holder", new_leader, timeout=120)
    holder = lease_holder(cluster, operator_in_cluster)
    who = "the standby" if holder.startswith(standby + "_") else "the replacement pod"
    print(f"the Lease changed hands {time.monotonic() - killed:.1f}s after the leader died: {who}")
    # Usually the standby that was already running; but a force-deleted pod's
    # container is killed only when the kubelet gets to it, and it renews until
    # then, so the pod that replaces it may see the Lease expire as early as the
    # standby does and win the race. Either is a correct failover.
    cluster.apply(manifest("buildconfig-docker.yaml"), namespace)
    name = manifest("buildconfig-docker.yaml")["metadata"]["name"]
    eventually(
        "the new leader to reconcile",
        lambda: status_current(cluster, namespace, f"buildconfig/{name}", "Ready"),
        timeout=60,
    )


OPERATOR_ACCOUNT = "system:serviceaccount:headwater-system:headwater-operator"
WEBHOOK_KINDS = {
    "mutatingwebhookconfigurations": "MutatingWebhookConfiguration",
    "validatingwebhookconfigurations": "ValidatingWebhookConfiguration",
}


def operator_may(cluster: Cluster, *request: str) -> bool:
    """``kubectl auth can-i`` as the operator's service account (the API server's answer)."""
    result = cluster.kubectl("auth", "can-i", f"--as={OPERATOR_ACCOUNT}", *request, check=False)
    assert result.stdout.strip() in ("yes", "no"), result.stderr
    return result.stdout.strip() == "yes"


def test_the_installed_operator_holds_no_more_than_it_needs(
    cluster: Cluster, operator_in_cluster: str, namespace: str
) -> None:
    for verb in ("list", "watch"):
        for resource in ("secrets", "configmaps"):
            assert not operator_may(cluster, verb, resource, "-A"), (verb, resource)
    assert not operator_may(cluster, "get", "configmaps", "-n", namespace)
    assert not operator_may(cluster, "list", "namespaces")
    # What it does need: Secrets by name, its own webhook configurations.
    assert operator_may(cluster, "get", "secrets", "-n", namespace)
    for kind in WEBHOOK_KINDS:
        assert operator_may(cluster, "patch", f"{kind}/headwater.dev")
        assert not operator_may(cluster, "patch", f"{kind}/someone-elses")
        assert not operator_may(cluster, "delete", f"{kind}/headwater.dev")
        assert operator_may(cluster, "create", kind)  # RBAC cannot name a create...
        # ...so the ValidatingAdmissionPolicy of the bundle does: only headwater.dev.
        other = {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": WEBHOOK_KINDS[kind],
            "metadata": {"name": "not-headwater"},
            "webhooks": [],
        }
        refused = cluster.kubectl(
            "create", "--dry-run=server", f"--as={OPERATOR_ACCOUNT}", "-f", "-",
            input=json.dumps(other), check=False,
        )  # fmt: skip
        assert refused.returncode != 0
        assert "may only write the webhook configurations named headwater.dev" in refused.stderr
    # ...and the operator works with exactly that (the other tests of this module).
    for pod in operator_pods(cluster, operator_in_cluster):
        logs = cluster.kubectl("logs", pod, "-n", operator_in_cluster).stdout
        # kopf says "Not enough ... permissions", the API server "... is forbidden: ...".
        assert "Not enough" not in logs, logs[-3000:]
        assert "is forbidden" not in logs, logs[-3000:]


def inline_secret_buildconfig(name: str, secret: str) -> dict[str, Any]:
    return {
        "apiVersion": "build.headwater.dev/v1",
        "kind": "BuildConfig",
        "metadata": {"name": name},
        "spec": {
            "source": {"type": "Dockerfile", "dockerfile": "FROM scratch\n"},
            "strategy": {"type": "Docker", "dockerStrategy": {}},
            "triggers": [{"type": "GitHub", "github": {"secret": secret}}],
        },
    }


def test_an_inline_webhook_secret_is_warned_about(
    cluster: Cluster, operator_in_cluster: str, namespace: str
) -> None:
    secret = uuid.uuid4().hex
    bc = inline_secret_buildconfig("inline", secret)
    if cluster.is_local:  # the API server reaches the admission webhook at the pod IP

        def warned() -> bool:
            dry = cluster.kubectl(
                "create", "--dry-run=server", "-n", namespace, "-f", "-", input=json.dumps(bc)
            )
            return "spec.triggers[0].github.secret" in dry.stderr

        eventually("the admission warning", warned)
    result = cluster.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(bc))
    if cluster.is_local:
        assert "Warning:" in result.stderr
        assert "secretReference" in result.stderr
        assert secret not in result.stderr

    def condition() -> dict[str, Any] | None:
        return summary_condition(
            cluster.get_json("buildconfig/inline", "-n", namespace), "InlineWebhookSecret"
        )

    eventually("the InlineWebhookSecret condition", lambda: condition() is not None)
    assert (condition() or {})["status"] == "True"
    events: list[dict[str, Any]] = []

    def posted() -> bool:
        # The operator posts the Event after it has written the condition.
        events[:] = cluster.get_json(
            "events", "-n", namespace, "--field-selector", "reason=InlineWebhookSecret"
        )["items"]
        return bool(events)

    eventually("the InlineWebhookSecret Event", posted)
    assert [e["involvedObject"]["name"] for e in events] == ["inline"]
    assert events[0]["type"] == "Warning"
    assert secret not in json.dumps(events)
    # Moved to a Secret: the condition goes.
    cluster.kubectl(
        "patch", "buildconfig/inline", "-n", namespace, "--type=json", "-p",
        json.dumps([{"op": "replace", "path": "/spec/triggers/0/github",
                     "value": {"secretReference": {"name": "inline-github"}}}]),
    )  # fmt: skip
    eventually("the condition to go", lambda: condition() is None)


def test_the_installed_operator_refuses_imports_aimed_inside_the_cluster(
    cluster: Cluster, operator_in_cluster: str, namespace: str
) -> None:
    """The bundle as an admin applies it (empty allowedRegistriesForImport): a tenant
    with ``edit`` aims tags at the API server's Service address and the pod's
    loopback; both are refused before any connection, naming the setting."""
    tenant = "hw-tenant"
    cluster.kubectl(
        "create", "rolebinding", "tenant-edit", "--clusterrole=edit", f"--user={tenant}",
        "-n", namespace,
    )  # fmt: skip
    wait_until_allowed(
        cluster, "create", "imagestreams.image.headwater.dev", "-n", namespace, "--as", tenant,
    )  # fmt: skip
    probe = {
        "apiVersion": "image.headwater.dev/v1",
        "kind": "ImageStream",
        "metadata": {"name": "probe"},
        "spec": {
            "tags": [
                {
                    "name": "apiserver",
                    "from": {"kind": "DockerImage", "name": "10.96.0.1/api/v1:x"},
                },
                {
                    "name": "loopback",
                    "from": {"kind": "DockerImage", "name": "127.0.0.1:10250/x:1"},
                },
                {
                    "name": "loopback-http",
                    "from": {"kind": "DockerImage", "name": "127.0.0.1:10250/x:1"},
                    "importPolicy": {"insecure": True},
                },
            ]
        },
    }
    cluster.kubectl("--as", tenant, "apply", "-n", namespace, "-f", "-", input=json.dumps(probe))
    expected = {
        "apiserver": "10.96.0.1 is in the cluster's Service range (serviceCIDRs): refused "
        "unless the host is listed in allowedRegistriesForImport",
        "loopback": "127.0.0.1:10250 is loopback: refused unless the host is listed in "
        "allowedRegistriesForImport",
        "loopback-http": "insecure access (plain HTTP or unverified TLS) to 127.0.0.1:10250 is not "
        "allowed: an entry for it in allowedRegistriesForImport needs insecure: true",
    }
    found: dict[str, Any] = {}

    def refused() -> bool:
        obj = cluster.get_json("imagestream/probe", "-n", namespace)
        for entry in (obj.get("status") or {}).get("tags") or []:
            for condition in entry.get("conditions") or []:
                if condition["type"] == "ImportSuccess":
                    found[entry["tag"]] = (condition["reason"], condition["message"])
        return all(found.get(tag) == ("NotAllowed", text) for tag, text in expected.items())

    try:
        eventually("the tags refused by the installed operator", refused)
    except AssertionError:
        raise AssertionError(found) from None


def test_the_installed_operator_refuses_a_tenants_strategy_and_cross_namespace_push(
    cluster: Cluster, operator_in_cluster: str, namespace: str, peer_namespace: str
) -> None:
    """Issue 12 against deploy/install.yaml as an admin applies it: alice holds `edit` in A only.

    Her Custom BuildConfig is refused at admission naming builds/custom; her Docker
    build into B's tag waits Forbidden naming the verb and namespace, B's tag does
    not move, and after B's admin grants headwater-image-pusher the same build
    completes and moves it.
    """
    from .helpers import build_of_request, wait_for_phase
    from .test_tenancy_builds import apply_as, bind, custom_bc, docker_bc, may_use, start_as

    a, b = namespace, peer_namespace
    busybox = cluster.image("busybox")
    bind(cluster, a, "alice-edit", "edit", "alice")
    eventually("alice's edit role", lambda: may_use(cluster, "alice", a, "docker"))

    def admitted() -> bool:  # the installed operator's admission webhook answers
        dry = cluster.kubectl(
            "--as=alice", "--as-group=system:authenticated", "create", "--dry-run=server",
            "-n", a, "-f", "-", input=json.dumps(custom_bc("probe", busybox)), check=False,
        )  # fmt: skip
        return "may not create builds/custom" in dry.stderr

    eventually("the strategy admission webhook", admitted, timeout=90)
    code, out = apply_as(cluster, "alice", a, custom_bc("custom", busybox))
    assert code != 0
    assert f"alice may not create builds/custom (build.headwater.dev) in namespace {a}" in out

    cluster.apply(
        {"apiVersion": "image.headwater.dev/v1", "kind": "ImageStream",
         "metadata": {"name": "web"}}, b,
    )  # fmt: skip
    into_b = {"kind": "ImageStreamTag", "name": "web:latest", "namespace": b}
    code, out = apply_as(
        cluster, "alice", a, docker_bc("push", f"FROM {busybox}\n", output={"to": into_b})
    )
    assert code == 0, out
    code, out, request = start_as(cluster, "alice", a, "push")
    assert code == 0, out
    build = build_of_request(cluster, a, request)
    expected = f"service account {a}/default may not update imagestreams/layers in namespace {b}"

    def held() -> bool:
        status = cluster.get_json(f"build/{build}", "-n", a).get("status") or {}
        return status.get("reason") == "Forbidden" and expected in str(status.get("message"))

    eventually("the build to wait for B's grant", held, timeout=90)
    stream = cluster.get_json("imagestream/web", "-n", b)
    assert not (stream.get("status") or {}).get("tags"), stream["status"]

    bind(cluster, b, "a-pushes", "headwater-image-pusher", f"{a}:default")
    done = wait_for_phase(cluster, a, build)
    assert done["status"]["phase"] == "Complete", done["status"]
    digest = done["status"]["output"]["to"]["imageDigest"]
    eventually(
        "B's tag to move to the granted build's image",
        lambda: any(
            item.get("image") == digest
            for tag in (cluster.get_json("imagestream/web", "-n", b).get("status") or {}).get(
                "tags", []
            )
            for item in tag.get("items", [])
        ),
    )
