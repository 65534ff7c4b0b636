"""``headwater doctor``: the seed's usual failures found in plain objects, each with its fix."""

from __future__ import annotations

import base64
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from headwater.cli.doctor import (
    Finding,
    Snapshot,
    classify,
    diagnose,
    doctor,
    pull_reason,
    referenced_streams,
    report,
)

NS = "shop"
REGISTRY = "registry.example.com"
DIGEST = "sha256:" + "a" * 64
TIME = "2026-01-01T00:00:00Z"


# --- realistic objects ------------------------------------------------------------------------


def account(name: str = "default", pull: tuple[str, ...] = ()) -> dict[str, Any]:
    obj: dict[str, Any] = {"metadata": {"name": name, "namespace": NS}}
    if pull:
        obj["imagePullSecrets"] = [{"name": n} for n in pull]
    return obj


def docker_secret(name: str, host: str = REGISTRY) -> dict[str, Any]:
    config = {"auths": {host: {"auth": base64.b64encode(b"puller:token").decode()}}}
    return {
        "metadata": {"name": name, "namespace": NS},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()},
    }


def opaque_secret(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": NS}, "type": "Opaque", "data": {}}


def pod(
    name: str,
    image: str,
    reason: str = "ImagePullBackOff",
    message: str = "",
    *,
    deployment: str | None = "web",
    pull_secrets: tuple[str, ...] = (),
    account_name: str = "default",
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": NS, "labels": {}}
    if deployment:
        metadata["labels"] = {"pod-template-hash": "5c6f8d7b9", "deployment": deployment}
        metadata["ownerReferences"] = [
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": f"{deployment}-5c6f8d7b9",
                "controller": True,
                "uid": "u",
            }
        ]
    spec: dict[str, Any] = {
        "serviceAccountName": account_name,
        "containers": [{"name": "web", "image": image}],
    }
    if pull_secrets:
        spec["imagePullSecrets"] = [{"name": n} for n in pull_secrets]
    return {
        "metadata": metadata,
        "spec": spec,
        "status": {
            "phase": "Pending",
            "containerStatuses": [
                {
                    "name": "web",
                    "image": image,
                    "ready": False,
                    "restartCount": 0,
                    "state": {"waiting": {"reason": reason, "message": message}},
                }
            ],
        },
    }


def backoff(image: str, error: str) -> str:
    """The kubelet's waiting message (Kubernetes >= 1.30) around containerd's error."""
    return (
        f'Back-off pulling image "{image}": ErrImagePull: failed to pull and unpack image'
        f' "{image}": failed to resolve reference "{image}": {error}'
    )


UNAUTHORIZED = (
    "failed to authorize: failed to fetch anonymous token: unexpected status from GET request"
    f" to https://{REGISTRY}/service/token?scope=repository%3Ashop%2Fweb%3Apull: 401 Unauthorized"
)


def stream(
    name: str = "web",
    tags: dict[str, str | None] | None = None,
    conditions: dict[str, dict[str, str]] | None = None,
    spec_tags: dict[str, str] | None = None,
    namespace: str = NS,
) -> dict[str, Any]:
    """A stream whose status has ``tags`` (tag → digest or None) and import ``conditions``."""
    status_tags = []
    for tag, digest in (tags or {}).items():
        entry: dict[str, Any] = {"tag": tag, "items": []}
        if digest:
            entry["items"] = [
                {
                    "created": TIME,
                    "dockerImageReference": f"{REGISTRY}/{namespace}/{name}@{digest}",
                    "image": digest,
                    "generation": 1,
                }
            ]
        status_tags.append(entry)
    for tag, condition in (conditions or {}).items():
        found = [t for t in status_tags if t["tag"] == tag]
        entry = found[0] if found else {"tag": tag}
        if not found:
            status_tags.append(entry)
        entry["conditions"] = [
            {"type": "ImportSuccess", "status": "False", "lastTransitionTime": TIME, **condition}
        ]
    return {
        "apiVersion": "image.headwater.dev/v1",
        "kind": "ImageStream",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "tags": [
                {"name": t, "from": {"kind": "DockerImage", "name": source}}
                for t, source in (spec_tags or {}).items()
            ]
        },
        "status": {"dockerImageRepository": f"{REGISTRY}/{namespace}/{name}", "tags": status_tags},
    }


def buildconfig(name: str = "web", **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "source": {"type": "Git", "git": {"uri": "https://git.example.com/shop/web.git"}},
        "strategy": {"type": "Docker", "dockerStrategy": {}},
        "output": {"to": {"kind": "ImageStreamTag", "name": f"{name}:latest"}},
    }
    base.update(spec)
    return {
        "apiVersion": "build.headwater.dev/v1",
        "kind": "BuildConfig",
        "metadata": {"name": name, "namespace": NS},
        "spec": base,
    }


def build(
    bc: str, number: int, phase: str, reason: str = "", message: str = "", snippet: str = ""
) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase}
    if reason:
        status["reason"] = reason
    if message:
        status["message"] = message
    if snippet:
        status["logSnippet"] = snippet
    return {
        "apiVersion": "build.headwater.dev/v1",
        "kind": "Build",
        "metadata": {
            "name": f"{bc}-{number}",
            "namespace": NS,
            "labels": {"build.headwater.dev/buildconfig": bc, "openshift.io/build-config.name": bc},
            "annotations": {"openshift.io/build.number": str(number)},
        },
        "status": status,
    }


def deployment(name: str = "web", trigger: str | None = "web:latest") -> dict[str, Any]:
    annotations = {}
    if trigger:
        annotations["image.openshift.io/triggers"] = json.dumps(
            [
                {
                    "from": {"kind": "ImageStreamTag", "name": trigger},
                    "fieldPath": f'spec.template.spec.containers[?(@.name=="{name}")].image',
                    "paused": False,
                }
            ]
        )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS, "annotations": annotations},
        "spec": {"template": {"spec": {"containers": [{"name": name, "image": " "}]}}},
    }


def snapshot(**kwargs: Any) -> Snapshot:
    kwargs.setdefault("service_accounts", [account()])
    return Snapshot(namespace=NS, **kwargs)


def only(findings: list[Finding]) -> Finding:
    assert len(findings) == 1, [f.lines() for f in findings]
    return findings[0]


# --- nothing wrong ------------------------------------------------------------------------------


def test_clean_namespace() -> None:
    healthy = stream(tags={"latest": DIGEST})
    snap = snapshot(
        imagestreams=[healthy],
        buildconfigs=[buildconfig()],
        builds=[build("web", 1, "Failed", "DockerBuildFailed"), build("web", 2, "Complete")],
        workloads=[deployment()],
        secrets=[docker_secret("regcred")],
    )
    assert diagnose(snap) == []
    assert report([], NS) == "No problems found in namespace shop.\n"


# --- pods that cannot pull ----------------------------------------------------------------------


def test_pull_from_the_registry_without_a_pull_secret() -> None:
    image = f"{REGISTRY}/{NS}/web:latest"
    message = backoff(image, UNAUTHORIZED)
    snap = snapshot(
        pods=[
            pod("web-5c6f8d7b9-abcde", image, message=message),
            pod("web-5c6f8d7b9-fghij", image, message=message),
        ],
        imagestreams=[stream(tags={"latest": DIGEST})],
        secrets=[],
    )
    finding = only(diagnose(snap))
    assert finding.severity == "error"
    assert finding.obj == "deployment/web"
    assert finding.problem == f"container 'web' cannot pull {image} (ImagePullBackOff)"
    assert "pods: web-5c6f8d7b9-abcde, web-5c6f8d7b9-fghij" in finding.why
    assert any("401 Unauthorized" in line for line in finding.why)
    assert (
        f"service account 'default' has no pull secret for {REGISTRY}"
        " (image stream web's repository)" in finding.why
    )
    assert finding.fixes == (
        "kubectl create secret docker-registry registry-example-com-pull"
        f" --docker-server={REGISTRY}"
        " --docker-username=<user> --docker-password=<password> -n shop",
        "headwater secrets link default registry-example-com-pull --for=pull -n shop",
        "kubectl rollout restart deployment/web -n shop   # new pods get the linked secret",
    )


def test_an_unlinked_secret_for_the_registry_is_suggested() -> None:
    image = f"{REGISTRY}/ci/web:1.2.0"
    snap = snapshot(
        pods=[pod("web-5c6f8d7b9-abcde", image, "ErrImagePull", backoff(image, UNAUTHORIZED))],
        secrets=[docker_secret("other", "quay.io"), docker_secret("regcred")],
    )
    finding = only(diagnose(snap))
    assert finding.fixes[0] == "headwater secrets link default regcred --for=pull -n shop"


def test_secret_linked_after_the_pod_was_made_needs_a_restart_only() -> None:
    image = f"{REGISTRY}/ci/web:1.2.0"
    snap = snapshot(
        pods=[pod("web-5c6f8d7b9-abcde", image, message=backoff(image, UNAUTHORIZED))],
        secrets=[docker_secret("regcred")],
        service_accounts=[account(pull=("regcred",))],
    )
    finding = only(diagnose(snap))
    assert finding.fixes == (
        "kubectl rollout restart deployment/web -n shop   # new pods get the linked secret",
    )
    assert any("created before it was linked" in line for line in finding.why)


def test_a_refused_login_is_not_a_missing_one() -> None:
    image = f"{REGISTRY}/ci/web:1.2.0"
    snap = snapshot(
        pods=[pod("p", image, message=backoff(image, UNAUTHORIZED), pull_secrets=("regcred",))],
        secrets=[docker_secret("regcred")],
        service_accounts=[account(pull=("regcred",))],
    )
    finding = only(diagnose(snap))
    assert any("refused" in line for line in finding.why)
    assert "--dry-run=client -o yaml | kubectl apply -f -" in finding.fixes[0]


def test_docker_hub_hides_missing_repositories_behind_a_login() -> None:
    image = "example/private-web:1.0"
    error = (
        "pull access denied, repository does not exist or may require authorization:"
        " server message: insufficient_scope: authorization failed"
    )
    snap = snapshot(
        pods=[pod("p", image, message=backoff(f"docker.io/{image}", error), deployment=None)]
    )
    finding = only(diagnose(snap))
    assert finding.obj == "pod/p"
    assert "or example/private-web:1.0 does not exist" in finding.why
    assert any("secrets link default docker-io-pull" in fix for fix in finding.fixes)
    assert finding.fixes[-1].startswith("kubectl delete pod p -n shop")


def test_missing_image_of_a_stream_is_built() -> None:
    image = f"{REGISTRY}/{NS}/web:latest"
    error = f"{image}: not found"
    snap = snapshot(
        pods=[
            pod(
                "p",
                image,
                message=backoff(image, f"rpc error: code = NotFound desc = {error}"),
                pull_secrets=("regcred",),
            )
        ],
        imagestreams=[stream()],
        buildconfigs=[buildconfig()],
        builds=[build("web", 1, "Complete")],
        service_accounts=[account(pull=("regcred",))],
        secrets=[docker_secret("regcred")],
    )
    finding = only(diagnose(snap))
    assert "image stream web has no latest in the registry yet" in finding.why
    assert finding.fixes == ("headwater start-build web -n shop",)


def test_missing_image_elsewhere_without_a_login() -> None:
    image = "10.244.0.1:5000/shop/missing:1.0"
    snap = snapshot(
        pods=[
            pod("missing", image, message=backoff(image, f"{image}: not found"), deployment=None)
        ],
        secrets=[],
    )
    finding = only(diagnose(snap))
    assert "the node says: 10.244.0.1:5000/shop/missing:1.0: not found" in finding.why
    assert "10.244.0.1:5000 has no shop/missing:1.0" in finding.why
    assert finding.fixes[0].startswith("kubectl delete pod missing -n shop")
    assert "headwater secrets link default 10-244-0-1-5000-pull --for=pull -n shop" in finding.fixes


def test_tls_and_unreachable_registries() -> None:
    image = f"{REGISTRY}/shop/web:1"
    tls = backoff(
        image, "tls: failed to verify certificate: x509: certificate signed by unknown authority"
    )
    refused = backoff(image, "dial tcp 10.0.0.9:443: connect: connection refused")
    findings = diagnose(
        snapshot(
            pods=[
                pod("a", image, message=tls, deployment="a"),
                pod("b", image, message=refused, deployment="b"),
            ]
        )
    )
    by_obj = {f.obj: f for f in findings}
    assert "containerd" in by_obj["deployment/a"].fixes[0]
    assert by_obj["deployment/b"].fixes[0].startswith(f"curl -sS https://{REGISTRY}/v2/")


def test_old_kubelets_put_the_reason_in_events() -> None:
    image = f"{REGISTRY}/shop/web:1"
    event = {
        "involvedObject": {"kind": "Pod", "name": "p", "fieldPath": "spec.containers{web}"},
        "reason": "Failed",
        "message": f'Failed to pull image "{image}": {UNAUTHORIZED}',
    }
    snap = snapshot(
        pods=[pod("p", image, message=f'Back-off pulling image "{image}"', deployment=None)],
        events=[event],
    )
    finding = only(diagnose(snap))
    assert any(line.startswith("the node says: failed to authorize") for line in finding.why)


def test_invalid_image_name() -> None:
    snap = snapshot(
        pods=[
            pod(
                "p",
                "Web:Latest",
                "InvalidImageName",
                'Failed to apply default image tag "Web:Latest"',
            )
        ]
    )
    finding = only(diagnose(snap))
    assert finding.fixes == ("kubectl set image deployment/web web=<image> -n shop",)


def test_unreadable_secrets_give_no_secret_advice() -> None:
    image = f"{REGISTRY}/shop/web:1"
    snap = snapshot(
        pods=[pod("p", image, message=backoff(image, "some other failure"))], secrets=None
    )
    finding = only(diagnose(snap))
    assert finding.fixes == ("kubectl describe pod p -n shop",)


# --- workloads waiting for their trigger --------------------------------------------------------


def test_a_long_buildconfig_name_keeps_its_builds() -> None:
    """A BuildConfig name over 63 characters: its Builds' labels are shortened, not its name."""
    from headwater.builds.model import label_value

    name = "web-" + "x" * 66
    running = build(name, 1, "Running")
    labels = running["metadata"]["labels"]
    labels["build.headwater.dev/buildconfig"] = labels["openshift.io/build-config.name"] = (
        label_value(name)
    )
    running["metadata"]["annotations"]["build.headwater.dev/buildconfig"] = name
    snap = snapshot(
        pods=[pod("web-5c6f8d7b9-abcde", " ", "InvalidImageName", "invalid reference format")],
        workloads=[deployment(trigger=f"{name}:latest")],
        imagestreams=[stream(name)],
        buildconfigs=[buildconfig(name)],
        builds=[running],
    )
    # The build is running: nothing to say about the Deployment waiting for its image.
    assert [f for f in diagnose(snap) if f.obj == "deployment/web"] == []


def test_a_70_character_buildconfig_keeps_its_failed_builds() -> None:
    """Builds as the operator writes them for a 70-character BuildConfig name: their
    labels hold a shortened name (label values stop at 63), the annotation the full one.
    Read labels first and the failed build would belong to a BuildConfig that does not exist."""
    from headwater.builds.instantiate import StartRequest, render_build

    name = "web-" + "x" * 66
    assert len(name) == 70
    config = buildconfig(name)
    failed, older = (
        {
            **render_build(config, number, StartRequest(id=f"r-{number}")),
            "status": {"phase": phase, "reason": "DockerBuildFailed"},
        }
        for number, phase in ((2, "Failed"), (1, "Complete"))
    )
    assert failed["metadata"]["labels"]["openshift.io/build-config.name"] != name
    snap = snapshot(imagestreams=[stream(name)], buildconfigs=[config], builds=[older, failed])
    found = diagnose(snap)
    assert [(f.obj, f.problem) for f in found] == [
        (f"build/{name}-2", f"the newest build of {name} failed: DockerBuildFailed")
    ]


def test_new_app_placeholder_waits_for_the_first_build() -> None:
    snap = snapshot(
        pods=[pod("web-5c6f8d7b9-abcde", " ", "InvalidImageName", "invalid reference format")],
        workloads=[deployment()],
        imagestreams=[stream()],
        buildconfigs=[buildconfig()],
    )
    finding = only(diagnose(snap))
    assert (finding.severity, finding.obj) == ("warning", "deployment/web")
    assert "waits for shop/web:latest, which no build has written yet" in finding.problem
    assert finding.fixes == ("headwater start-build web -n shop",)
    running = dataclasses.replace(snap, builds=[build("web", 1, "Running")])
    assert diagnose(running) == []


def test_trigger_on_a_stream_that_does_not_exist() -> None:
    snap = snapshot(workloads=[deployment(trigger="api:2.0")], imagestreams=[])
    finding = only(diagnose(snap))
    assert "image stream api does not exist" in finding.problem
    assert finding.fixes == ("headwater import-image api:2.0 --from=<image> --confirm -n shop",)


def test_trigger_on_a_tag_nothing_provides() -> None:
    snap = snapshot(
        workloads=[deployment(trigger="web:prod")], imagestreams=[stream(tags={"latest": DIGEST})]
    )
    finding = only(diagnose(snap))
    assert "nothing builds or imports it" in finding.problem
    assert finding.fixes[1] == "headwater tag <stream>:<tag> web:prod -n shop"


def test_paused_triggers_and_bad_annotations() -> None:
    paused = deployment(trigger="api:1")
    annotation = json.loads(paused["metadata"]["annotations"]["image.openshift.io/triggers"])
    annotation[0]["paused"] = "true"
    paused["metadata"]["annotations"]["image.openshift.io/triggers"] = json.dumps(annotation)
    broken = deployment("bad", trigger=None)
    broken["metadata"]["annotations"]["image.headwater.dev/triggers"] = "[{"
    finding = only(diagnose(snapshot(workloads=[paused, broken], imagestreams=[])))
    assert finding.obj == "deployment/bad"
    assert "not JSON" in finding.problem


# --- image streams -----------------------------------------------------------------------------


def import_failure(reason: str, message: str) -> Finding:
    failing = stream(
        spec_tags={"1.2.0": f"{REGISTRY}/shop/web:1.2.0"},
        conditions={"1.2.0": {"reason": reason, "message": message, "generation": "1"}},
    )
    return only(diagnose(snapshot(imagestreams=[failing], secrets=[])))


def test_import_over_tls_that_is_not_trusted() -> None:
    finding = import_failure(
        "TLSError", f"{REGISTRY}: TLS failed: certificate signed by unknown authority"
    )
    assert finding.obj == "imagestream/web"
    assert finding.problem == f"tag 1.2.0: the import of {REGISTRY}/shop/web:1.2.0 fails (TLSError)"
    assert finding.fixes[0] == "headwater import-image web:1.2.0 -n shop --insecure"


def test_import_without_credentials() -> None:
    finding = import_failure("Unauthorized", f"{REGISTRY}: authentication required or refused")
    assert any("service account 'default', which has none" in line for line in finding.why)
    assert (
        finding.fixes[1]
        == "headwater secrets link default registry-example-com-pull --for=pull -n shop"
    )
    assert finding.fixes[-1] == "headwater import-image web:1.2.0 -n shop"


@pytest.mark.parametrize(
    ("reason", "severity", "fix"),
    [
        ("NotFound", "error", "--from=<image that exists>"),
        ("Unreachable", "error", "headwater import-image web:1.2.0 -n shop"),
        ("RateLimited", "warning", None),
        ("InvalidManifest", "error", "headwater import-image web:1.2.0 -n shop"),
    ],
)
def test_other_import_failures(reason: str, severity: str, fix: str | None) -> None:
    finding = import_failure(reason, "details")
    assert finding.severity == severity
    if fix:
        assert fix in finding.fixes[0]


# --- build configs and builds -------------------------------------------------------------------


def test_missing_source_secret_with_the_waiting_build_folded_in() -> None:
    bc = buildconfig(
        source={
            "type": "Git",
            "git": {"uri": "https://git.example.com/shop/web.git"},
            "sourceSecret": {"name": "git-creds"},
        }
    )
    waiting = build("web", 1, "New", "MissingSourceSecret", "secret shop/git-creds does not exist")
    snap = snapshot(buildconfigs=[bc], builds=[waiting], imagestreams=[stream()], secrets=[])
    finding = only(diagnose(snap))
    assert finding.obj == "buildconfig/web"
    assert finding.problem == "source secret 'git-creds' does not exist"
    assert "build/web-1 waits for it (MissingSourceSecret)" in finding.why
    assert finding.fixes == (
        "kubectl create secret generic git-creds --type=kubernetes.io/basic-auth"
        " --from-literal=username=<user> --from-literal=password=<token> -n shop",
    )


def test_ssh_source_secret_fix() -> None:
    bc = buildconfig(
        source={
            "type": "Git",
            "git": {"uri": "git@github.com:example/shop.git"},
            "sourceSecret": {"name": "ssh"},
        }
    )
    finding = only(diagnose(snapshot(buildconfigs=[bc], imagestreams=[stream()], secrets=[])))
    assert "--type=kubernetes.io/ssh-auth --from-file=ssh-privatekey=<key file>" in finding.fixes[0]


def test_openshift_builder_that_was_never_imported() -> None:
    bc = buildconfig(
        strategy={
            "type": "Source",
            "sourceStrategy": {
                "from": {
                    "kind": "ImageStreamTag",
                    "name": "nodejs-20:latest",
                    "namespace": "openshift",
                }
            },
        },
        triggers=[{"type": "ImageChange", "imageChange": {}}],
    )
    snap = snapshot(
        buildconfigs=[bc], imagestreams=[stream()], other_streams={("openshift", "nodejs-20"): None}
    )
    finding = only(diagnose(snap))
    assert (
        finding.problem == "the strategy's image openshift/nodejs-20:latest does not exist"
        " (no image stream nodejs-20)"
    )
    assert (
        "OpenShift ships builder images in the openshift namespace; Headwater does not"
        in finding.why
    )
    assert finding.fixes[0] == (
        "headwater import-image nodejs-20:latest --from=<image> --confirm -n openshift"
    )
    assert finding.fixes[1].startswith("headwater tag <stream>:<tag> nodejs-20:latest -n openshift")
    # Not readable (forbidden): no guess.
    assert diagnose(snapshot(buildconfigs=[bc], imagestreams=[stream()])) == []


def test_builder_tag_without_an_image_and_a_watched_tag() -> None:
    bc = buildconfig(
        strategy={
            "type": "Docker",
            "dockerStrategy": {"from": {"kind": "ImageStreamTag", "name": "base:9"}},
        },
        triggers=[
            {
                "type": "ImageChange",
                "imageChange": {"from": {"kind": "ImageStreamTag", "name": "tools:1"}},
            }
        ],
    )
    snap = snapshot(buildconfigs=[bc], imagestreams=[stream(), stream("base", tags={"8": DIGEST})])
    findings = diagnose(snap)
    assert [(f.severity, f.problem) for f in findings] == [
        ("error", "the strategy's image shop/base:9 has no image"),
        (
            "warning",
            "the ImageChange trigger's tag shop/tools:1 does not exist (no image stream tools)",
        ),
    ]


def test_everything_a_buildconfig_can_miss() -> None:
    bc = buildconfig(
        serviceAccount="builder",
        source={
            "type": "Git",
            "git": {"uri": "https://git.example.com/shop/web.git"},
            "secrets": [{"secret": {"name": "npmrc"}, "destinationDir": "."}],
            "configMaps": [{"configMap": {"name": "settings"}}],
        },
        strategy={
            "type": "Docker",
            "dockerStrategy": {
                "pullSecret": {"name": "base-pull"},
                "from": {"kind": "DockerImage", "name": "quay.io/base/ubi:9"},
            },
        },
        output={
            "to": {"kind": "DockerImage", "name": "harbor.example.com/shop/web:latest"},
            "pushSecret": {"name": "harbor-push"},
        },
        triggers=[{"type": "GitHub", "github": {"secretReference": {"name": "gh-hook"}}}],
    )
    snap = snapshot(buildconfigs=[bc], secrets=[], config_maps=[])
    found = {f.topic: f for f in diagnose(snap)}
    assert set(found) == {"serviceAccount", "pullSecret", "pushSecret", "inputs", "webhook"}
    assert found["serviceAccount"].fixes[0] == "kubectl create serviceaccount builder -n shop"
    assert '"path":"/spec/serviceAccount"' in found["serviceAccount"].fixes[1]
    assert "--docker-server=quay.io" in found["pullSecret"].fixes[0]
    assert "--docker-server=harbor.example.com" in found["pushSecret"].fixes[0]
    assert "WebHookSecretKey=$(openssl rand -hex 20)" in found["webhook"].fixes[0]
    assert found["webhook"].severity == "warning"
    inputs = [f.problem for f in diagnose(snap) if f.topic == "inputs"]
    assert inputs == [
        "build input secret 'npmrc' does not exist",
        "build input config map 'settings' does not exist",
    ]


def test_output_stream_missing() -> None:
    snap = snapshot(
        buildconfigs=[buildconfig()],
        imagestreams=[],
        builds=[
            build("web", 1, "New", "InvalidOutputReference", "image stream shop/web not found")
        ],
    )
    finding = only(diagnose(snap))
    assert finding.problem == "output image stream shop/web does not exist"
    assert finding.fixes == (
        """echo '{"apiVersion":"image.headwater.dev/v1","kind":"ImageStream","""
        """"metadata":{"name":"web"}}'"""
        " | kubectl apply -n shop -f -",
    )
    assert "build/web-1 waits for it (InvalidOutputReference)" in finding.why


def test_builds_stuck_or_failed() -> None:
    snap = snapshot(
        buildconfigs=[buildconfig(), buildconfig("api"), buildconfig("docs")],
        imagestreams=[stream(), stream("api"), stream("docs")],
        builds=[
            build(
                "web", 3, "New", "InvalidOutputReference", "the operator has no registry configured"
            ),
            build("api", 1, "Pending", "PullBuilderImageFailed", "ImagePullBackOff: builder"),
            build(
                "docs",
                4,
                "Failed",
                "FetchSourceFailed",
                "exit 10",
                "Cloning...\nfatal: could not read Username\n",
            ),
            build("docs", 3, "Complete"),
        ],
    )
    found = {f.obj: f for f in diagnose(snap)}
    assert found["build/web-3"].problem == "waits in New: InvalidOutputReference"
    assert "operator's `registry`" in found["build/web-3"].fixes[0]
    assert found["build/api-1"].problem == "stuck in Pending: PullBuilderImageFailed"
    assert found["build/api-1"].fixes[0] == "headwater logs build/api-1 -n shop"
    failed = found["build/docs-4"]
    assert (failed.severity, failed.problem) == (
        "warning",
        "the newest build of docs failed: FetchSourceFailed",
    )
    assert "log: fatal: could not read Username" in failed.why
    assert failed.fixes == (
        "headwater logs build/docs-4 -n shop",
        "headwater start-build docs -n shop   # once fixed",
    )


# --- helpers and output ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "cause"),
    [
        (UNAUTHORIZED, "auth"),
        ("unexpected status from HEAD request: 403 Forbidden", "auth"),
        ("pull access denied, repository does not exist or may require authorization", "ambiguous"),
        ("registry.example.com/x:1: not found", "not-found"),
        ("x509: certificate signed by unknown authority", "tls"),
        ("http: server gave HTTP response to HTTPS client", "tls"),
        ("dial tcp: lookup registry.example.com: no such host", "unreachable"),
        ("something else", "other"),
    ],
)
def test_classify(message: str, cause: str) -> None:
    assert classify(message) == cause


def test_pull_reason_strips_the_wrapping() -> None:
    image = "r/x:1"
    assert (
        pull_reason(backoff(image, "rpc error: code = NotFound desc = r/x:1: not found"))
        == "r/x:1: not found"
    )


def test_referenced_streams_in_other_namespaces() -> None:
    bc = buildconfig(
        strategy={
            "type": "Source",
            "sourceStrategy": {
                "from": {"kind": "ImageStreamTag", "name": "ruby:3", "namespace": "openshift"}
            },
        },
        triggers=[
            {
                "type": "ImageChange",
                "imageChange": {
                    "from": {"kind": "ImageStreamTag", "name": "x:1", "namespace": "tools"}
                },
            }
        ],
    )
    workload = deployment()
    workload["metadata"]["annotations"]["image.openshift.io/triggers"] = json.dumps(
        [
            {
                "from": {"kind": "ImageStreamTag", "name": "web:prod", "namespace": "prod"},
                "fieldPath": "x",
            }
        ]
    )
    assert referenced_streams(NS, [bc], [workload]) == {
        ("openshift", "ruby"),
        ("tools", "x"),
        ("prod", "web"),
    }


def test_report_groups_and_counts() -> None:
    findings = [
        Finding(
            "error", "buildconfig/web", "source secret 'git' does not exist", ("why",), ("fix one",)
        ),
        Finding("warning", "build/web-2", "failed", (), ("fix two",)),
    ]
    assert report(findings, NS) == (
        "error: buildconfig/web: source secret 'git' does not exist\n"
        "  why: why\n"
        "  fix: fix one\n"
        "\n"
        "warning: build/web-2: failed\n"
        "  fix: fix two\n"
        "\n"
        "2 problems in namespace shop (1 error, 1 warning).\n"
    )


def test_command_without_a_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    result = CliRunner().invoke(doctor, [])
    assert result.exit_code == 1
    assert "kubeconfig" in result.stderr


# --- issue 19: short names of a local stream, and namespaces that do not exist -----------------

SHORT_PULL = backoff(
    "site:latest",
    "pull access denied, repository does not exist or may require authorization:"
    " server message: insufficient_scope: authorization failed",
)


def lookup_stream(local: bool = True, tags: dict[str, str | None] | None = None) -> dict[str, Any]:
    site = stream("site", tags={"latest": DIGEST} if tags is None else tags)
    site["spec"]["lookupPolicy"] = {"local": local}
    return site


@pytest.mark.parametrize(
    ("site", "webhook", "why", "fix"),
    [
        (
            lookup_stream(),
            False,
            "the admission webhook configuration 'headwater.dev' (MutatingWebhookConfiguration)"
            " does not exist",
            "run the operator with its admission webhook",
        ),
        (lookup_stream(local=False), True, "image stream site does not allow lookup",
         "headwater set image-lookup site -n shop"),
        (lookup_stream(tags={"v1": DIGEST}), True, "image stream site has no tag latest"
         " (its tags: v1)", "headwater import-image site:latest --from=<image> --confirm -n shop"),
        (lookup_stream(tags={"latest": None}), None, "site:latest has no image yet",
         "headwater import-image site:latest"),
        (lookup_stream(), True, "the pod (or its workload) was written before lookup applied",
         "kubectl rollout restart deployment/web -n shop"),
    ],
)  # fmt: skip
def test_a_short_name_of_a_local_stream_says_why_lookup_did_not_apply(
    site: dict[str, Any], webhook: bool | None, why: str, fix: str
) -> None:
    snap = snapshot(
        pods=[pod("web-5c6f8d7b9-abcde", "site:latest", message=SHORT_PULL)],
        imagestreams=[site],
        secrets=[],
        admission_webhook=webhook,
    )
    finding = only(diagnose(snap))
    assert finding.problem == "container 'web' cannot pull site:latest (ImagePullBackOff)"
    text = "\n".join(finding.lines())
    assert "names image stream site of this namespace" in text
    assert any(line.startswith(why) for line in finding.why), finding.why
    assert finding.fixes[0].startswith(fix), finding.fixes
    # Not docker.io's reachability or a login for it.
    assert "docker.io has no" not in text
    assert "secrets link" not in text
    assert finding.fixes[-1].startswith("kubectl rollout restart deployment/web -n shop")


def test_the_pod_older_than_the_tag_image_is_said() -> None:
    old = pod("web-5c6f8d7b9-abcde", "site:latest", message=SHORT_PULL)
    old["metadata"]["creationTimestamp"] = "2025-12-31T00:00:00Z"
    snap = snapshot(pods=[old], imagestreams=[lookup_stream()], admission_webhook=True)
    assert (
        f"the pod was created (2025-12-31T00:00:00Z) before site:latest had its image ({TIME})"
        in only(diagnose(snap)).why
    )


def test_builder_advice_in_a_namespace_that_does_not_exist() -> None:
    bc = buildconfig(
        strategy={
            "type": "Source",
            "sourceStrategy": {
                "from": {"kind": "ImageStreamTag", "name": "ruby:3", "namespace": "openshift"}
            },
        }
    )
    snap = snapshot(
        buildconfigs=[bc],
        imagestreams=[stream()],
        other_streams={("openshift", "ruby"): None},
        missing_namespaces=frozenset({"openshift"}),
    )
    finding = only(diagnose(snap))
    assert "namespace openshift does not exist" in finding.why
    assert finding.fixes[:2] == (
        "kubectl create namespace openshift",
        "headwater import-image ruby:3 --from=<image> --confirm -n openshift",
    )
    assert "-n shop" in finding.fixes[2]
