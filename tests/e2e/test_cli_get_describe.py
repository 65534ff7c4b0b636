"""``get``, ``describe``, ``set triggers`` and ``completion`` against a real cluster, and the
same CLI run by kubectl as the plugin ``kubectl headwater``.

No operator is needed: the objects are applied with kubectl and their status
patched as the operator would write it. An operator that happens to run in
the cluster does not disturb them: the builds' strategy image does not exist,
so it never starts them, and a status it writes before seeing ours is
patched again until ours holds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from .helpers import Cluster

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
HEADWATER = str(BIN / "headwater")
DIGEST = "sha256:" + "c" * 64
OLD = "sha256:" + "d" * 64
COMMIT = "3f2c1ab9d0e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8"


def headwater(cluster: Cluster, namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [HEADWATER, *args, "--kubeconfig", str(cluster.kubeconfig), "-n", namespace],
        capture_output=True,
        text=True,
        timeout=60,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def buildconfig(name: str, triggers: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "build.headwater.dev/v1",
        "kind": "BuildConfig",
        "metadata": {"name": name},
        "spec": {
            "source": {"type": "Git", "git": {"uri": "https://github.com/example/shop-web.git",
                                              "ref": "main"}},
            # A builder tag that never exists: an operator in the cluster never starts these.
            "strategy": {"type": "Docker", "dockerStrategy": {
                "from": {"kind": "ImageStreamTag", "name": "missing-builder:1"}}},
            "output": {"to": {"kind": "ImageStreamTag", "name": "web:latest"}},
            "triggers": triggers,
        },
    }  # fmt: skip


def build(number: int) -> dict[str, Any]:
    spec = buildconfig("web", [])["spec"]
    spec.pop("triggers")
    return {
        "apiVersion": "build.headwater.dev/v1",
        "kind": "Build",
        "metadata": {
            "name": f"web-{number}",
            "labels": {"build.headwater.dev/buildconfig": "web"},
            "annotations": {"build.headwater.dev/buildconfig": "web",
                            "build.headwater.dev/build-number": str(number)},
        },
        "spec": {**spec, "triggeredBy": [{"message": "Manually triggered"}]},
    }  # fmt: skip


COMPLETE = {
    "phase": "Complete",
    "startTimestamp": "2026-11-28T11:00:00Z",
    "completionTimestamp": "2026-11-28T11:00:45Z",
    "duration": "45s",
    "outputDockerImageReference": "registry.local/shop/web:latest",
    "output": {"to": {"imageDigest": DIGEST}},
}
FAILED = {
    "phase": "Failed",
    "reason": "DockerBuildFailed",
    "message": "Docker build strategy has failed.",
    "startTimestamp": "2026-11-28T11:10:00Z",
    "completionTimestamp": "2026-11-28T11:11:02Z",
    "duration": "1m2s",
    "revision": {"type": "Git", "git": {
        "commit": COMMIT, "message": "Fix the cart",
        "author": {"name": "Jane Doe", "email": "jane@example.com"}}},
    "stages": [{"name": "FetchInputs", "startTime": "2026-11-28T11:10:00Z",
                "durationMilliseconds": 1500}],
    "logSnippet": "STEP 3/5: RUN npm ci\nnpm ERR! missing script: build",
}  # fmt: skip


def set_status(cluster: Cluster, namespace: str, target: str, status: dict[str, Any]) -> None:
    """Patch status until it holds (a running operator may write its own view once first)."""
    deadline = time.monotonic() + 30
    while True:
        cluster.kubectl(
            "patch", target, "-n", namespace, "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": status}),
        )  # fmt: skip
        time.sleep(1)
        current = cluster.get_json(target, "-n", namespace).get("status") or {}
        if all(current.get(k) == v for k, v in status.items()):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"status of {target} does not hold: {current}")


@pytest.fixture
def objects(cluster: Cluster, namespace: str) -> str:
    """The seed's kinds, with a history: an ImageStream, a BuildConfig, two Builds, an Event."""
    cluster.apply(
        [
            {"apiVersion": "image.headwater.dev/v1", "kind": "ImageStream",
             "metadata": {"name": "web", "labels": {"app": "web"}}},
            buildconfig("web", [{"type": "GitHub",
                                 "github": {"secretReference": {"name": "web-github-secret"}}}]),
            buildconfig("api", []),
            build(1),
            build(2),
            {"apiVersion": "apps/v1", "kind": "Deployment",
             "metadata": {"name": "web"},
             "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
                      "template": {"metadata": {"labels": {"app": "web"}},
                                   "spec": {"containers": [{"name": "web", "image": "busybox"}]}}}},
        ],
        namespace,
    )  # fmt: skip
    set_status(cluster, namespace, "build/web-1", COMPLETE)
    set_status(cluster, namespace, "build/web-2", FAILED)
    set_status(cluster, namespace, "imagestream/web", {"tags": [
        {"tag": "latest", "items": [
            {"created": "2026-11-28T11:00:45Z", "image": DIGEST,
             "dockerImageReference": f"registry.local/{namespace}/web@{DIGEST}"},
            {"created": "2026-11-27T11:00:00Z", "image": OLD,
             "dockerImageReference": f"registry.local/{namespace}/web@{OLD}"}]},
    ]})  # fmt: skip
    failed = cluster.get_json("build/web-2", "-n", namespace)["metadata"]
    cluster.apply(
        {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "web-2.e2e"},
            "involvedObject": {"apiVersion": "build.headwater.dev/v1", "kind": "Build",
                               "name": "web-2", "namespace": namespace, "uid": failed["uid"]},
            "type": "Warning", "reason": "BuildFailed",
            "message": "build web-2 failed: DockerBuildFailed",
            "firstTimestamp": "2026-11-28T11:11:02Z", "lastTimestamp": "2026-11-28T11:11:02Z",
            "count": 1, "source": {"component": "headwater-operator"},
        },
        namespace,
    )  # fmt: skip
    return namespace


def test_get_tables_and_formats(cluster: Cluster, objects: str) -> None:
    ns = objects
    streams = ok(headwater(cluster, ns, "get", "is")).splitlines()
    assert streams[0].split() == ["NAME", "IMAGE", "REPOSITORY", "TAGS", "UPDATED"]
    assert streams[1].split()[0] == "web"
    assert "latest" in streams[1]

    configs = ok(headwater(cluster, ns, "get", "buildconfigs")).splitlines()
    assert [line.split() for line in configs][:1] == [["NAME", "TYPE", "FROM", "LATEST"]]
    assert [line.split()[:3] for line in configs[1:]] == [
        ["api", "Docker", "Git@main"],
        ["web", "Docker", "Git@main"],
    ]

    builds = ok(headwater(cluster, ns, "get", "builds")).splitlines()
    assert builds[0].split() == ["NAME", "TYPE", "FROM", "STATUS", "STARTED", "DURATION"]
    assert builds[1].split()[:4] == ["web-1", "Docker", "Git@main", "Complete"]
    assert builds[1].split()[-1] == "45s"
    assert builds[2].split()[:5] == [
        "web-2",
        "Docker",
        "Git@3f2c1ab",
        "Failed",
        "(DockerBuildFailed)",
    ]
    assert builds[2].split()[-1] == "1m2s"
    # No colour off a terminal.
    assert "\x1b[" not in "\n".join(builds)

    wide = ok(headwater(cluster, ns, "get", "build", "web-1", "-o", "wide")).splitlines()
    assert wide[0].split()[-4:] == ["BUILDCONFIG", "OUTPUT", "DIGEST", "AGE"]
    assert DIGEST in wide[1]

    assert ok(headwater(cluster, ns, "get", "bc/web", "-o", "name")) == (
        "buildconfig.build.headwater.dev/web\n"
    )
    one = json.loads(ok(headwater(cluster, ns, "get", "build", "web-2", "-o", "json")))
    assert (one["kind"], one["status"]["reason"]) == ("Build", "DockerBuildFailed")
    assert "managedFields" not in one["metadata"]
    listed = yaml.safe_load(ok(headwater(cluster, ns, "get", "is", "-o", "yaml")))
    assert listed["kind"] == "List"
    assert [i["metadata"]["name"] for i in listed["items"]] == ["web"]
    istag = yaml.safe_load(ok(headwater(cluster, ns, "get", "istag", "web:latest", "-o", "yaml")))
    assert istag["kind"] == "ImageStreamTag"
    assert istag["image"]["metadata"]["name"] == DIGEST
    tags = ok(headwater(cluster, ns, "get", "istag")).splitlines()
    assert tags[1].split()[:2] == ["web:latest", f"registry.local/{ns}/web@{DIGEST}"]

    selected = ok(headwater(cluster, ns, "get", "is", "-l", "app=web", "-o", "name"))
    assert selected == "imagestream.image.headwater.dev/web\n"
    assert ok(headwater(cluster, ns, "get", "is", "-l", "app notin (web)", "-o", "name")) == ""
    everywhere = ok(headwater(cluster, ns, "get", "builds", "-A")).splitlines()
    assert everywhere[0].split()[0] == "NAMESPACE"
    assert any(line.split()[:2] == [ns, "web-2"] for line in everywhere)


def test_describe_bc_and_build(cluster: Cluster, objects: str) -> None:
    ns = objects
    bc = ok(headwater(cluster, ns, "describe", "bc", "web"))
    for expected in (
        "Name:           web",
        "Strategy:        Docker",
        "URL:             https://github.com/example/shop-web.git",
        "From Image:      ImageStreamTag missing-builder:1",
        "Output to:       ImageStreamTag web:latest",
        "Build Run Policy:     Serial",
        f"/apis/build.headwater.dev/v1/namespaces/{ns}/buildconfigs/web/webhooks/<secret>/github",
        "Secret web-github-secret, key WebHookSecretKey",
    ):
        assert expected in bc, bc
    history = bc[bc.index("Build   Status") :].splitlines()
    assert history[1].split()[:4] == ["web-2", "Failed", "(DockerBuildFailed)", "1m2s"]
    assert history[2].split()[:3] == ["web-1", "Complete", "45s"]

    failed = ok(headwater(cluster, ns, "describe", "build/web-2"))
    for expected in (
        "Status:       Failed (DockerBuildFailed)",
        "Message:      Docker build strategy has failed.",
        "Duration:     1m2s",
        "Build Config: web",
        f"Commit:              {COMMIT} (Fix the cart)",
        "Author/Committer:    Jane Doe <jane@example.com>",
        "Build trigger cause: Manually triggered",
        "FetchInputs",
        "Log Tail:\n  STEP 3/5: RUN npm ci\n  npm ERR! missing script: build",
        "BuildFailed",
        "build web-2 failed: DockerBuildFailed",
    ):
        assert expected in failed, failed
    done = ok(headwater(cluster, ns, "describe", "build", "web-1", "--no-show-events"))
    assert f"Output Digest:       {DIGEST}" in done
    assert "Output Image:        registry.local/shop/web:latest" in done
    assert "Events:" not in done

    stream = ok(headwater(cluster, ns, "describe", "is", "web"))
    assert "latest\n  pushed or built here (no spec tag)" in stream
    assert f"  * registry.local/{ns}/web@{DIGEST}" in stream
    assert f"    registry.local/{ns}/web@{OLD}" in stream


def test_unknown_names_and_types_are_one_clear_line(cluster: Cluster, objects: str) -> None:
    ns = objects
    for args, line in (
        (("get", "bc", "nope"),
         f'Error: buildconfigs.build.headwater.dev "nope" not found in namespace {ns}'),
        (("describe", "build", "web-9"),
         f'Error: builds.build.headwater.dev "web-9" not found in namespace {ns}'),
        (("get", "istag", "web:nope"),
         f'Error: imagestreamtags.image.headwater.dev "web:nope" not found in namespace {ns}'),
        (("set", "triggers", "bc/nope"),
         f'Error: buildconfigs.build.headwater.dev "nope" not found in namespace {ns}'),
    ):  # fmt: skip
        result = headwater(cluster, ns, *args)
        assert result.returncode == 1, result
        assert result.stderr.splitlines() == [line]
    wrong = headwater(cluster, ns, "get", "pods")
    assert wrong.returncode == 2
    assert "unknown resource type 'pods': use one of is, istag, bc, build" in wrong.stderr


def table(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines()[1:]]


def test_set_triggers_round_trips_on_a_buildconfig(cluster: Cluster, objects: str) -> None:
    ns = objects
    # As oc: the builder image could trigger builds, and does not.
    strategy = ["buildconfigs/api", "image", "missing-builder:1", "(strategy)", "false"]
    assert table(ok(headwater(cluster, ns, "set", "triggers", "bc/api"))) == [
        ["buildconfigs/api", "config", "false"],
        strategy,
    ]
    added = ok(headwater(cluster, ns, "set", "triggers", "bc/api", "--from-github"))
    secret_name = added.split("secret/")[1].split()[0]
    secret = cluster.get_json(f"secret/{secret_name}", "-n", ns)
    assert len(secret["data"]["WebHookSecretKey"]) > 40
    assert secret["metadata"]["ownerReferences"][0]["name"] == "api"
    ok(headwater(cluster, ns, "set", "triggers", "bc/api", "--from-image=base:1", "--manual"))
    assert table(ok(headwater(cluster, ns, "set", "triggers", "bc/api"))) == [
        ["buildconfigs/api", "config", "false"],
        ["buildconfigs/api", "image", "base:1", "false"],
        strategy,
        ["buildconfigs/api", "github", f"secret/{secret_name}"],
    ]
    triggers = cluster.get_json("bc/api", "-n", ns)["spec"]["triggers"]
    assert triggers[-1] == {"type": "ImageChange", "imageChange": {
        "from": {"kind": "ImageStreamTag", "name": "base:1"}, "paused": True}}  # fmt: skip

    removed = ok(headwater(cluster, ns, "set", "triggers", "bc/api", "--from-github", "--remove"))
    assert f"secret/{secret_name} deleted" in removed
    gone = cluster.kubectl("get", f"secret/{secret_name}", "-n", ns, check=False)
    assert gone.returncode != 0
    ok(headwater(cluster, ns, "set", "triggers", "bc/api", "--remove-all"))
    assert cluster.get_json("bc/api", "-n", ns)["spec"].get("triggers", []) == []


def test_set_triggers_round_trips_on_a_deployment(cluster: Cluster, objects: str) -> None:
    ns = objects
    ok(
        headwater(
            cluster, ns, "set", "triggers", "deploy/web", "--from-image=web:latest", "-c", "web"
        )
    )
    annotations = cluster.get_json("deploy/web", "-n", ns)["metadata"]["annotations"]
    assert annotations["image.openshift.io/triggers"] == (
        '[{"from":{"kind":"ImageStreamTag","name":"web:latest"},'
        '"fieldPath":"spec.template.spec.containers[?(@.name==\\"web\\")].image"}]'
    )
    ok(headwater(cluster, ns, "set", "triggers", "deploy/web", "--manual"))
    ok(headwater(cluster, ns, "set", "triggers", "deploy/web", "--from-config", "--remove"))
    assert table(ok(headwater(cluster, ns, "set", "triggers", "deploy/web"))) == [
        ["deployments/web", "config", "false"],
        ["deployments/web", "image", "web:latest", "(web)", "false"],
    ]
    assert cluster.get_json("deploy/web", "-n", ns)["spec"]["paused"] is True
    ok(headwater(cluster, ns, "set", "triggers", "deploy/web", "--from-config"))
    ok(headwater(cluster, ns, "set", "triggers", "deploy/web", "--remove-all"))
    after = cluster.get_json("deploy/web", "-n", ns)
    assert "image.openshift.io/triggers" not in after["metadata"].get("annotations", {})
    assert not after["spec"].get("paused")
    refused = headwater(
        cluster, ns, "set", "triggers", "deploy/web", "--from-image=web:1", "-c", "x"
    )
    assert refused.returncode == 1
    assert refused.stderr.splitlines() == ["Error: deployment/web has no container x (it has: web)"]


def test_completion_and_the_kubectl_plugin(cluster: Cluster, objects: str) -> None:
    ns = objects
    script = ok(subprocess.run([HEADWATER, "completion", "bash"], capture_output=True, text=True))
    assert "_HEADWATER_COMPLETE=bash_complete" in script
    # What the shell asks on Tab after `headwater get bc -n <ns> --kubeconfig <file> `:
    env = {
        **os.environ,
        "_HEADWATER_COMPLETE": "bash_complete",
        "COMP_WORDS": f"headwater get bc -n {ns} --kubeconfig {cluster.kubeconfig} ",
        "COMP_CWORD": "7",
    }
    offered = subprocess.run([HEADWATER], env=env, capture_output=True, text=True, timeout=30)
    assert offered.stdout.split() == ["plain,api", "plain,web"], offered

    # kubectl finds kubectl-headwater on PATH and runs it as `kubectl headwater`.
    plugin_env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(
        [cluster.kubectl_path, "headwater", "get", "bc", "--kubeconfig", str(cluster.kubeconfig),
         "-n", ns],
        env=plugin_env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert [line.split()[0] for line in result.stdout.splitlines()] == ["NAME", "api", "web"]
    helped = subprocess.run(
        [cluster.kubectl_path, "headwater", "get", "--help"],
        env=plugin_env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert helped.stdout.startswith("Usage: kubectl headwater get")


def test_describe_istag_reads_a_plain_http_registry_as_the_operator_does(
    cluster: Cluster, namespace: str
) -> None:
    """Issue 16: ``make demo``'s ``describe istag web:latest`` said "Registry: not read: TLS
    failed ... WRONG_VERSION_NUMBER" for a build's output on the local plain-HTTP registry.
    The tag has no spec (a build pushed it); the operator's ConfigMap says that registry is
    plain HTTP (registryInsecure), as deploy/install.yaml rendered for this cluster says."""
    from tests import hack_scripts

    from .helpers import push_image

    registry = cluster.need_registry()
    digest, _ = push_image(registry, f"{namespace}/built", "latest", marker="describe")
    cluster.apply(
        {"apiVersion": "image.headwater.dev/v1", "kind": "ImageStream",
         "metadata": {"name": "built"}},
        namespace,
    )  # fmt: skip
    set_status(cluster, namespace, "imagestream/built", {"tags": [
        {"tag": "latest", "items": [
            {"created": "2026-11-28T11:00:45Z", "image": digest,
             "dockerImageReference": f"{registry}/{namespace}/built@{digest}"}]},
    ]})  # fmt: skip
    render = hack_scripts.load("render_install")
    docs = render.render(
        render.load(),
        image="unused",
        registry=registry,
        insecure=True,
        builder_image=cluster.env.get("HEADWATER_BUILDER_IMAGE"),
        kaniko_image=cluster.env.get("HEADWATER_KANIKO_IMAGE"),
    )
    config_map = next(d for d in docs if d["kind"] == "ConfigMap")
    where = ("configmap", config_map["metadata"]["name"], "-n", config_map["metadata"]["namespace"])
    existed = cluster.kubectl("get", *where, check=False).returncode == 0
    if not existed:
        # No operator configuration readable: only the tag's importPolicy or --insecure say so.
        unknown = ok(headwater(cluster, namespace, "describe", "istag", "built:latest"))
        assert "Registry:\t\tnot read:" in unknown, unknown
        flagged = ok(headwater(cluster, namespace, "describe", "istag", "built:latest",
                               "--insecure"))  # fmt: skip
        assert "not read" not in flagged, flagged
        # What the operator_in_cluster fixture applies too (the same rendering).
        cluster.apply(config_map, config_map["metadata"]["namespace"])
    try:
        described = ok(headwater(cluster, namespace, "describe", "istag", "built:latest"))
        assert "not read" not in described, described
        for expected in (digest, "Command:\t\t/marker", "marker=describe", "linux/amd64"):
            assert expected in described, described
        # -n before the verb (issue 16) reads the same.
        before = subprocess.run(
            [HEADWATER, "-n", namespace, "--kubeconfig", str(cluster.kubeconfig),
             "describe", "istag", "built:latest"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert ok(before) == described
    finally:
        if not existed:
            cluster.kubectl("delete", *where, check=False)
