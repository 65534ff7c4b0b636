"""Tenants on a shared cluster: build strategies are gated, and nothing crosses namespaces
without a grant (issue 12, parts 1 and 3).

Every attacking step runs as a tenant through impersonation (``kubectl --as``)
holding only the namespace's ``edit`` role (or less); the cluster admin only
sets up roles, other tenants' objects, and grants.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from typing import Any

import kopf.testing
import pytest

from .conftest import STRATEGY_REQUESTER
from .helpers import (
    Cluster,
    build_json,
    build_of_request,
    buildconfig,
    eventually,
    imagestream,
    push_image,
    wait_for_phase,
)
from .test_build_webhooks import PREFIX, post
from .test_workload_triggers import (
    WEB_PATH,
    deployment,
    push_runnable,
    request_import,
    stream,
    stream_image,
    triggers_value,
)

pytestmark = pytest.mark.e2e

AUTHENTICATED = "--as-group=system:authenticated"


def tenant(user: str) -> list[str]:
    return [f"--as={user}", AUTHENTICATED]


def as_tenant(
    cluster: Cluster, user: str, *args: str, obj: dict[str, Any] | None = None
) -> tuple[int, str]:
    """kubectl as ``user`` (authenticated, no other group); (exit code, stderr + stdout)."""
    result = cluster.kubectl(
        *tenant(user), *args, input=json.dumps(obj) if obj else None, check=False
    )
    return result.returncode, result.stderr + result.stdout


def apply_as(cluster: Cluster, user: str, namespace: str, obj: dict[str, Any]) -> tuple[int, str]:
    return as_tenant(cluster, user, "apply", "-n", namespace, "-f", "-", obj=obj)


def start_as(cluster: Cluster, user: str, namespace: str, bc: str) -> tuple[int, str, str]:
    request = f"r{uuid.uuid4().hex[:10]}"
    code, out = as_tenant(
        cluster, user, "annotate", "-n", namespace, f"buildconfig/{bc}",
        f"start.build.headwater.dev/{request}=",
    )  # fmt: skip
    return code, out, request


def may_use(cluster: Cluster, user: str, namespace: str, strategy: str) -> bool:
    """``kubectl auth can-i create builds/<strategy>`` as the tenant."""
    result = cluster.kubectl(
        "auth", "can-i", "create", "builds.build.headwater.dev", f"--subresource={strategy}",
        "-n", namespace, *tenant(user), check=False,
    )  # fmt: skip
    return result.stdout.strip() == "yes"


def bind(cluster: Cluster, namespace: str, name: str, role: str, subject: str, *who: str) -> None:
    kind = "--serviceaccount" if subject.count(":") == 1 else "--user"
    cluster.kubectl(
        *who, "create", "rolebinding", name, "-n", namespace, f"--clusterrole={role}",
        f"{kind}={subject}",
    )  # fmt: skip


def custom_bc(name: str, image: str, **spec: Any) -> dict[str, Any]:
    return buildconfig(
        name,
        {
            "source": {"type": "Git", "git": {"uri": "https://example.invalid/app.git"}},
            "strategy": {"type": "Custom", "customStrategy": {"from": {"kind": "DockerImage",
                                                                       "name": image}}},
            **spec,
        },
    )  # fmt: skip


def docker_bc(name: str, dockerfile: str, **spec: Any) -> dict[str, Any]:
    return buildconfig(
        name,
        {
            "source": {"type": "Dockerfile", "dockerfile": dockerfile},
            "strategy": {"type": "Docker", "dockerStrategy": {}},
            **spec,
        },
    )


def requester_of(cluster: Cluster, namespace: str, bc: str) -> dict[str, Any]:
    obj = cluster.get_json(f"buildconfig/{bc}", "-n", namespace)
    value = (obj["metadata"].get("annotations") or {}).get(STRATEGY_REQUESTER)
    return dict(json.loads(value)) if value else {}


def test_build_strategies_are_gated_like_openshift(
    cluster: Cluster, namespace: str, operator_in_process: kopf.testing.KopfRunner
) -> None:
    if not cluster.is_local:
        pytest.skip("the API server must reach this process: the local cluster only")
    busybox = cluster.image("busybox")
    # alice edits the namespace, bob administers it, carol may write BuildConfigs
    # (headwater-edit alone) but holds no build strategy.
    bind(cluster, namespace, "alice-edit", "edit", "alice")
    bind(cluster, namespace, "bob-admin", "admin", "bob")
    bind(cluster, namespace, "carol-buildconfigs", "headwater-edit", "carol")
    eventually("alice's edit role", lambda: may_use(cluster, "alice", namespace, "docker"))
    assert not may_use(cluster, "alice", namespace, "custom")
    assert not may_use(cluster, "carol", namespace, "docker")

    # Attack: alice's Custom BuildConfig (her image runs as the build pod).
    secret = uuid.uuid4().hex
    custom = custom_bc(
        "custom", busybox, triggers=[{"type": "Generic", "generic": {"secret": secret}}]
    )
    code, out = apply_as(cluster, "alice", namespace, custom)
    assert code != 0
    assert f"alice may not create builds/custom (build.headwater.dev) in namespace {namespace}" in (
        out
    ), out
    assert "headwater-build-strategy-custom" in out, out
    print(f"REFUSED alice Custom BuildConfig: {out.strip()}", file=sys.__stdout__)
    gone = cluster.kubectl("get", "buildconfig/custom", "-n", namespace, check=False)
    assert gone.returncode != 0

    # alice's Docker BuildConfig is accepted, recorded as hers, and builds.
    code, out = apply_as(cluster, "alice", namespace, docker_bc("docker", f"FROM {busybox}\n"))
    assert code == 0, out
    assert requester_of(cluster, namespace, "docker")["user"] == "alice"
    # She cannot pass it off as someone else's: the operator puts the author back.
    forged = json.dumps({"user": "system:admin", "groups": ["system:masters"]})
    code, out = as_tenant(
        cluster, "alice", "annotate", "-n", namespace, "buildconfig/docker",
        f"{STRATEGY_REQUESTER}={forged}", "--overwrite",
    )  # fmt: skip
    assert code == 0, out
    assert requester_of(cluster, namespace, "docker")["user"] == "alice"
    code, out, request = start_as(cluster, "alice", namespace, "docker")
    assert code == 0, out
    docker_build = build_of_request(cluster, namespace, request)

    # Attack: a start request by carol, who may write BuildConfigs but holds no strategy.
    code, out, _ = start_as(cluster, "carol", namespace, "docker")
    assert code != 0
    assert f"carol may not create builds/docker (build.headwater.dev) in namespace {namespace}" in (
        out
    ), out
    print(f"REFUSED carol start request: {out.strip()}", file=sys.__stdout__)

    # Attack: alice starting the admin's Custom BuildConfig.
    cluster.apply(custom_bc("admin-custom", busybox), namespace)
    code, out, _ = start_as(cluster, "alice", namespace, "admin-custom")
    assert code != 0
    assert "alice may not create builds/custom" in out, out
    print(
        f"REFUSED alice starting the admin's Custom BuildConfig: {out.strip()}", file=sys.__stdout__
    )

    # bob, the namespace's admin, grants alice the Custom strategy (no cluster admin).
    bind(cluster, namespace, "alice-custom", "headwater-build-strategy-custom", "alice",
         *tenant("bob"))  # fmt: skip
    eventually("alice's Custom grant", lambda: may_use(cluster, "alice", namespace, "custom"))
    code, out = apply_as(cluster, "alice", namespace, custom)
    assert code == 0, out
    code, out, request = start_as(cluster, "alice", namespace, "custom")
    assert code == 0, out
    custom_build = build_of_request(cluster, namespace, request)
    # busybox's shell exits at once: a Custom build with no output completes.
    assert wait_for_phase(cluster, namespace, custom_build)["status"]["phase"] == "Complete"
    assert wait_for_phase(cluster, namespace, docker_build)["status"]["phase"] == "Complete"

    # A triggered build is checked as the BuildConfig's recorded author: revoked,
    # alice's webhook no longer starts Custom builds; granted again, it does.
    cluster.kubectl("delete", "rolebinding", "alice-custom", "-n", namespace)
    eventually("the revocation", lambda: not may_use(cluster, "alice", namespace, "custom"))
    hook = f"http://127.0.0.1:{os.environ['HEADWATER_WEBHOOK_PORT']}" + PREFIX.format(
        ns=namespace, bc="custom", secret=secret, hook="generic"
    )
    status, body = post(hook, b"{}", {"Content-Type": "application/json"})
    assert status == 422, body
    assert f"alice, who last changed this BuildConfig's spec, may not create builds/custom in" \
        f" namespace {namespace}" in body["message"], body  # fmt: skip
    print(f"REFUSED triggered build (webhook): {status} {body['message']}", file=sys.__stdout__)
    events = cluster.get_json(
        "events", "-n", namespace, "--field-selector", "involvedObject.name=custom"
    )["items"]
    assert any(
        e["reason"] == "BuildConfigTriggerFailed" and "builds/custom" in e["message"]
        for e in events
    ), events
    bind(cluster, namespace, "alice-custom", "headwater-build-strategy-custom", "alice",
         *tenant("bob"))  # fmt: skip
    eventually("alice's Custom grant", lambda: may_use(cluster, "alice", namespace, "custom"))
    status, body = post(hook, b"{}", {"Content-Type": "application/json"})
    assert status == 200, body
    assert body["build"] == "custom-2"


def _bc_events(cluster: Cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cluster.get_json(
        "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}"
    )["items"]
    return items


def _waits_forbidden(cluster: Cluster, namespace: str, build: str, text: str) -> str:
    found: list[str] = []

    def held() -> bool:
        status = build_json(cluster, namespace, build).get("status") or {}
        found[:] = [str(status.get("message") or "")]
        return status.get("phase") == "New" and status.get("reason") == "Forbidden"

    eventually(f"build {build} to wait for a grant", held, timeout=90)
    assert text in found[0], found[0]
    return found[0]


def test_nothing_crosses_namespaces_without_a_grant(
    cluster: Cluster,
    namespace: str,
    peer_namespace: str,
    operator_in_process: kopf.testing.KopfRunner,
) -> None:
    if not cluster.is_local:
        pytest.skip("the API server must reach this process: the local cluster only")
    registry = cluster.need_registry()
    busybox = cluster.image("busybox")
    a, b = namespace, peer_namespace
    # Team B's stream and the Deployment that follows its web:latest.
    repository = stream(cluster, b)
    original = push_runnable(cluster, repository, "v", "team-b")
    request_import(cluster, b)
    eventually("B's import", lambda: stream_image(cluster, b, "web") == original)
    web = deployment(cluster, "web", {"image.openshift.io/triggers": triggers_value(
        ("web:latest", WEB_PATH))})  # fmt: skip
    web["spec"]["replicas"] = 0  # its template is what moves; no pod needed
    cluster.apply(web, b)
    pinned = f"{registry}/{repository}@{original}"

    def web_image() -> str:
        obj = cluster.get_json("deployment/web", "-n", b)
        return str(obj["spec"]["template"]["spec"]["containers"][0]["image"])

    eventually("B's Deployment to follow web:latest", lambda: web_image() == pinned)

    # alice edits namespace A only.
    bind(cluster, a, "alice-edit", "edit", "alice")
    eventually("alice's edit role", lambda: may_use(cluster, "alice", a, "docker"))
    in_b = {"kind": "ImageStreamTag", "name": "web:latest", "namespace": b}
    cluster.apply(imagestream("own"), a)
    attacks = {
        # Push into B's tag (and so roll out B's Deployment).
        "push": docker_bc("push", f"FROM {busybox}\nRUN echo from-a > /a\n",
                          output={"to": in_b}),
        # Build on B's image.
        "pull": buildconfig("pull", {
            "source": {"type": "Dockerfile", "dockerfile": "FROM scratch\n"},
            "strategy": {"type": "Docker", "dockerStrategy": {"from": in_b}},
        }),
        # Read B's image as a source image.
        "images": docker_bc("images", f"FROM {busybox}\n", source={
            "type": "Dockerfile", "dockerfile": f"FROM {busybox}\n",
            "images": [{"from": in_b, "paths": [{"sourcePath": "/marker",
                                                 "destinationDir": "."}]}],
        }),
        # Follow B's tag with an ImageChange trigger.
        "follow": docker_bc("follow", f"FROM {busybox}\n", output={
            "to": {"kind": "ImageStreamTag", "name": "own:follow"}},
            triggers=[{"type": "ImageChange", "imageChange": {"from": in_b}}]),
    }  # fmt: skip
    for obj in attacks.values():
        code, out = apply_as(cluster, "alice", a, obj)
        assert code == 0, out
    builds = {}
    for name in ("push", "pull", "images"):
        code, out, request = start_as(cluster, "alice", a, name)
        assert code == 0, out
        builds[name] = build_of_request(cluster, a, request)

    account = f"service account {a}/default"
    push = _waits_forbidden(
        cluster, a, builds["push"],
        f"output.to: {account} may not update imagestreams/layers in namespace {b}",
    )  # fmt: skip
    print(f"REFUSED cross-namespace output.to: {push}", file=sys.__stdout__)
    pull = _waits_forbidden(
        cluster, a, builds["pull"],
        f"strategy from: {account} may not get imagestreams/layers in namespace {b}",
    )  # fmt: skip
    print(f"REFUSED cross-namespace strategy from: {pull}", file=sys.__stdout__)
    images = _waits_forbidden(
        cluster, a, builds["images"],
        f"source.images[0].from: {account} may not get imagestreams/layers in namespace {b}",
    )  # fmt: skip
    print(f"REFUSED cross-namespace source.images: {images}", file=sys.__stdout__)

    def trigger_refused() -> bool:
        return any(
            e["reason"] == "Forbidden"
            and f"{account} may not get imagestreams/layers in namespace {b}" in e["message"]
            for e in _bc_events(cluster, a, "follow")
        )

    eventually("the ImageChange trigger's refusal", trigger_refused, timeout=60)
    print(
        "REFUSED cross-namespace ImageChange trigger: "
        + next(
            e["message"] for e in _bc_events(cluster, a, "follow") if e["reason"] == "Forbidden"
        ),
        file=sys.__stdout__,
    )
    follow = cluster.get_json("buildconfig/follow", "-n", a)
    assert original not in json.dumps(follow.get("status") or {})  # B's image is not even seen
    assert cluster.get_json("builds", "-n", a, "-l",
                            "build.headwater.dev/buildconfig=follow")["items"] == []  # fmt: skip

    # Nothing of B moved while the grants were missing.
    time.sleep(12)  # more than one resync of the waiting builds
    for name in builds.values():
        assert build_json(cluster, a, name)["status"]["phase"] == "New"
    assert stream_image(cluster, b, "web") == original
    assert web_image() == pinned
    assert not cluster.get_json("jobs", "-n", a)["items"]

    # B's admin lets A's builds read B's images: pull, images and the trigger go ahead.
    bind(cluster, b, "a-pulls", "headwater-image-puller", f"{a}:default")
    assert wait_for_phase(cluster, a, builds["pull"])["status"]["phase"] == "Complete"
    assert wait_for_phase(cluster, a, builds["images"])["status"]["phase"] == "Complete"
    eventually(
        "the ImageChange trigger to fire after the grant",
        lambda: bool(cluster.get_json("builds", "-n", a, "-l",
                                      "build.headwater.dev/buildconfig=follow")["items"]),
        timeout=90,
    )  # fmt: skip
    # Still no push into B.
    assert build_json(cluster, a, builds["push"])["status"]["phase"] == "New"
    assert stream_image(cluster, b, "web") == original

    # B's admin lets A's builds push: the build goes ahead and moves B's tag.
    bind(cluster, b, "a-pushes", "headwater-image-pusher", f"{a}:default")
    pushed = wait_for_phase(cluster, a, builds["push"])
    assert pushed["status"]["phase"] == "Complete", pushed["status"]
    digest = pushed["status"]["output"]["to"]["imageDigest"]
    eventually("B's tag to move", lambda: stream_image(cluster, b, "web") == digest)
    eventually("B's Deployment to follow", lambda: web_image().endswith(digest), timeout=90)


def test_a_pod_that_merely_carries_a_builds_labels_cannot_report_for_it(
    cluster: Cluster, namespace: str, operator_in_process: kopf.testing.KopfRunner
) -> None:
    if not cluster.is_local:
        pytest.skip("the API server must reach this process: the local cluster only")
    registry = cluster.need_registry()
    busybox = cluster.image("busybox")
    bind(cluster, namespace, "alice-edit", "edit", "alice")
    eventually("alice's edit role", lambda: may_use(cluster, "alice", namespace, "docker"))
    cluster.apply(imagestream("own"), namespace)
    # An image alice put in the output repository herself, not built by any build.
    planted, _ = push_image(registry, f"{namespace}/own", "planted", marker=uuid.uuid4().hex)
    bc = docker_bc(
        "slow",
        f"FROM {busybox}\nRUN sleep 20 && exit 3\n",
        output={"to": {"kind": "ImageStreamTag", "name": "own:latest"}},
    )
    code, out = apply_as(cluster, "alice", namespace, bc)
    assert code == 0, out
    code, out, request = start_as(cluster, "alice", namespace, "slow")
    assert code == 0, out
    name = build_of_request(cluster, namespace, request)
    eventually(
        "the build's pod",
        lambda: bool(cluster.get_json("pods", "-n", namespace, "-l",
                                      f"job-name={name}-build")["items"]),
        timeout=120,
    )  # fmt: skip
    # The impostor: the build's labels and annotation, a build container that
    # reports success with the planted digest, and created after the real pod.
    impostor = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "impostor",
            "labels": {"build.headwater.dev/build": name},
            "annotations": {"build.headwater.dev/build": name},
        },
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "initContainers": [{"name": "fetch-source", "image": busybox, "command": ["true"]}],
            "containers": [
                {
                    "name": "build",
                    "image": busybox,
                    "command": [
                        "sh",
                        "-c",
                        'printf \'{"digest":"%s"}\' "$D" >/dev/termination-log',
                    ],
                    "env": [{"name": "D", "value": planted}],
                }
            ],
        },
    }
    code, out = apply_as(cluster, "alice", namespace, impostor)
    assert code == 0, out
    eventually(
        "the impostor to report",
        lambda: (
            cluster.get_json("pod/impostor", "-n", namespace)["status"].get("phase") == "Succeeded"
        ),
        timeout=120,
    )
    status = wait_for_phase(cluster, namespace, name)["status"]
    assert (status["phase"], status.get("reason")) == ("Failed", "DockerBuildFailed"), status
    assert planted not in json.dumps(status)
    assert stream_image(cluster, namespace, "own") != planted


def test_a_job_made_under_a_builds_job_name_is_never_followed(
    cluster: Cluster, namespace: str, operator_in_process: kopf.testing.KopfRunner
) -> None:
    if not cluster.is_local:
        pytest.skip("the API server must reach this process: the local cluster only")
    busybox = cluster.image("busybox")
    bind(cluster, namespace, "alice-edit", "edit", "alice")
    eventually("alice's edit role", lambda: may_use(cluster, "alice", namespace, "docker"))
    code, out = apply_as(cluster, "alice", namespace, docker_bc("web", f"FROM {busybox}\n"))
    assert code == 0, out
    # alice knows the next build is web-1 and makes its Job first: a pod that
    # reports success at once, with the build's labels.
    labels = {"build.headwater.dev/build": "web-1"}
    container = {"name": "build", "image": busybox, "command": ["true"]}
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "web-1-build", "labels": labels},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {"build.headwater.dev/build": "web-1"},
                },
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "initContainers": [{**container, "name": "fetch-source"}],
                    "containers": [container],
                },
            },
        },
    }
    code, out = apply_as(cluster, "alice", namespace, job)
    assert code == 0, out
    code, out, request = start_as(cluster, "alice", namespace, "web")
    assert code == 0, out
    assert build_of_request(cluster, namespace, request) == "web-1"
    status = wait_for_phase(cluster, namespace, "web-1")["status"]
    assert (status["phase"], status.get("reason")) == ("Error", "BuildPodCreationFailed"), status
    assert "web-1-build exists but was not created for this build" in status["message"]
