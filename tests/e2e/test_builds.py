"""Builds on the real cluster: BuildConfig → Build → Job with buildah, pushed to a real registry."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import kopf.testing
import pytest

from tests.registry_servers import running_registry

from .conftest import AUTH_REGISTRY_PORT, LOCAL_NODE_IP
from .helpers import (
    BUILD_TIMEOUT,
    Cluster,
    GitHttpServer,
    GitServer,
    build_json,
    build_log,
    build_of_request,
    buildah_build_and_push,
    docker_bc,
    eventually,
    imagestream,
    push_secret_bc,
    registry_digest,
    start_build,
    wait_for_phase,
)

pytestmark = pytest.mark.e2e


def test_docker_build_from_git_pushes_to_the_image_stream_tag(
    cluster: Cluster,
    namespace: str,
    git_server: GitServer,
    operator_in_process: kopf.testing.KopfRunner,
) -> None:
    registry = cluster.need_registry()
    busybox = cluster.image("busybox")
    url, sha = git_server.repo(
        {
            "app/Dockerfile": (
                f"FROM {busybox}\n"
                "ARG GREETING=unset\n"
                "COPY message.txt /message.txt\n"
                'RUN echo "$GREETING from $(cat /message.txt) in $MODE" > /built.txt\n'
                'CMD ["cat", "/built.txt"]\n'
            ),
            "app/message.txt": "git\n",
            "README": "not in the context\n",
        },
        message="the first commit",
    )
    cluster.apply(imagestream("web"), namespace)
    cluster.apply(
        docker_bc(
            "web",
            {"type": "Git", "git": {"uri": url}, "contextDir": "app"},
            "web:latest",
            strategy={
                "type": "Docker",
                "dockerStrategy": {
                    "buildArgs": [{"name": "GREETING", "value": "hello"}],
                    # RUN steps see the strategy's env, as on OpenShift.
                    "env": [{"name": "MODE", "value": "e2e"}],
                },
            },
        ),
        namespace,
    )
    request = start_build(cluster, namespace, "web")
    name = build_of_request(cluster, namespace, request)
    assert name == "web-1"
    build = wait_for_phase(cluster, namespace, name)
    status = build["status"]
    assert status["phase"] == "Complete", status
    repository = f"{namespace}/web"
    digest = registry_digest(registry, repository, "latest")
    assert status["output"]["to"]["imageDigest"] == digest
    assert status["outputDockerImageReference"] == f"{registry}/{repository}:latest"
    assert status["revision"]["git"]["commit"] == sha
    assert status["revision"]["git"]["message"] == "the first commit"
    # kaniko (the default) reports one Build stage; buildah also PostCommit and PushImage.
    assert {s["name"] for s in status["stages"]} >= {"FetchInputs", "Build"}
    assert status["duration"]
    succeeded = [c for c in status["conditions"] if c["type"] == "Succeeded"]
    assert succeeded[0]["status"] == "True"
    # The Build's metadata names its BuildConfig, number and run policy, and it is owned.
    metadata = build["metadata"]
    assert metadata["labels"]["build.headwater.dev/buildconfig"] == "web"
    assert metadata["annotations"]["build.headwater.dev/build-number"] == "1"
    assert metadata["annotations"]["build.headwater.dev/run-policy"] == "Serial"
    assert metadata["ownerReferences"][0]["kind"] == "BuildConfig"
    # The tag moved at once, to the same digest.
    stream = cluster.get_json("imagestream/web", "-n", namespace)
    tags = {t["tag"]: t for t in stream["status"]["tags"]}
    assert tags["latest"]["items"][0]["image"] == digest
    assert tags["latest"]["items"][0]["dockerImageReference"] == f"{registry}/{repository}@{digest}"
    bc = cluster.get_json("buildconfig/web", "-n", namespace)
    assert bc["status"]["lastVersion"] == 1
    # The start request is consumed.
    annotations = bc["metadata"].get("annotations") or {}
    assert not [k for k in annotations if k.startswith("start.build.headwater.dev/")]
    # One Job, owned by the Build, without API credentials; the image runs what was built.
    jobs = cluster.get_json("jobs", "-n", namespace, "-l", "build.headwater.dev/build=web-1")
    assert len(jobs["items"]) == 1
    job = jobs["items"][0]
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    assert job["metadata"]["ownerReferences"][0]["name"] == "web-1"
    run = cluster.kubectl(
        "run", "check", "-n", namespace, "--restart=Never", "--rm", "-i", "--quiet",
        f"--image={registry}/{repository}@{digest}", "--overrides",
        json.dumps({"spec": {"automountServiceAccountToken": False}}), timeout=120,
    )  # fmt: skip
    assert run.stdout.strip() == "hello from git in e2e"


def test_inline_dockerfile_build_and_a_failing_step_gives_a_log_snippet(
    cluster: Cluster, namespace: str, operator_in_process: kopf.testing.KopfRunner
) -> None:
    cluster.need_registry()
    busybox = cluster.image("busybox")
    cluster.apply(imagestream("inline"), namespace)
    cluster.apply(
        docker_bc(
            "inline",
            {"type": "Dockerfile", "dockerfile": f"FROM {busybox}\nRUN echo inline > /x\n"},
            "inline:v1",
        ),
        namespace,
    )
    cluster.apply(
        docker_bc(
            "broken",
            {
                "type": "Dockerfile",
                "dockerfile": f"FROM {busybox}\nRUN echo about to fail && exit 3\n",
            },
            "inline:broken",
        ),
        namespace,
    )
    ok = build_of_request(cluster, namespace, start_build(cluster, namespace, "inline"))
    bad = build_of_request(cluster, namespace, start_build(cluster, namespace, "broken"))
    assert wait_for_phase(cluster, namespace, ok)["status"]["phase"] == "Complete"
    failed = wait_for_phase(cluster, namespace, bad)["status"]
    assert failed["phase"] == "Failed"
    assert failed["reason"] == "DockerBuildFailed"
    assert "about to fail" in failed["logSnippet"]
    succeeded = next(c for c in failed["conditions"] if c["type"] == "Succeeded")
    assert succeeded["status"] == "False"
    assert succeeded["reason"] == "DockerBuildFailed"
    # The operator posts the Event after it has written the phase.
    eventually(
        "the BuildFailed Event",
        lambda: "BuildFailed" in {
            e["reason"] for e in cluster.get_json(
                "events", "-n", namespace, "--field-selector", f"involvedObject.name={bad}"
            )["items"]
        },
    )  # fmt: skip


def test_wrong_git_url_fails_fetching_the_source(
    cluster: Cluster, namespace: str, git_server: GitServer,
    operator_in_process: kopf.testing.KopfRunner,
) -> None:  # fmt: skip
    cluster.apply(
        docker_bc(
            "nowhere", {"type": "Git", "git": {"uri": f"{git_server.url}/missing.git"}}, None
        ),
        namespace,
    )
    name = build_of_request(cluster, namespace, start_build(cluster, namespace, "nowhere"))
    status = wait_for_phase(cluster, namespace, name)["status"]
    assert status["phase"] == "Failed"
    assert status["reason"] == "FetchSourceFailed"
    assert "missing.git" in status["logSnippet"]


def test_serial_builds_queue_and_history_is_pruned(
    cluster: Cluster, namespace: str, operator_in_process: kopf.testing.KopfRunner
) -> None:
    busybox = cluster.image("busybox")
    cluster.apply(
        docker_bc(
            "queue",
            {"type": "Dockerfile", "dockerfile": f"FROM {busybox}\nRUN sleep 3\n"},
            None,
            successfulBuildsHistoryLimit=2,
        ),
        namespace,
    )
    requests = [start_build(cluster, namespace, "queue") for _ in range(4)]
    names = [build_of_request(cluster, namespace, r) for r in requests]
    assert sorted(names) == ["queue-1", "queue-2", "queue-3", "queue-4"]

    # Never two running at once; the waiting ones say why.
    saw_waiting_reason = False
    deadline = time.monotonic() + BUILD_TIMEOUT
    while time.monotonic() < deadline:
        builds = cluster.get_json("builds", "-n", namespace)["items"]
        phases = {b["metadata"]["name"]: (b.get("status") or {}).get("phase") for b in builds}
        active = [n for n, p in phases.items() if p in ("Pending", "Running")]
        assert len(active) <= 1, phases
        for b in builds:
            message = (b.get("status") or {}).get("message") or ""
            if (b.get("status") or {}).get("phase") == "New" and "waiting for" in message:
                saw_waiting_reason = True
        if all(p == "Complete" for p in phases.values()) and len(phases) == 2:
            break
        time.sleep(0.5)
    assert saw_waiting_reason
    remaining = sorted(
        b["metadata"]["name"] for b in cluster.get_json("builds", "-n", namespace)["items"]
    )
    assert remaining == ["queue-3", "queue-4"]
    # Pruned builds take their Jobs with them.
    eventually(
        "the pruned builds' Jobs to be collected",
        lambda: sorted(
            j["metadata"]["name"] for j in cluster.get_json("jobs", "-n", namespace)["items"]
        ) == ["queue-3-build", "queue-4-build"],
        timeout=60,
    )  # fmt: skip


def docker_config_secret(name: str, registry: str, user: str, password: str) -> dict[str, Any]:
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    config = json.dumps({"auths": {registry: {"auth": auth}}})
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "type": "kubernetes.io/dockerconfigjson",
        "stringData": {".dockerconfigjson": config},
    }


def test_push_secret_credentials_are_used_and_refused_ones_fail_the_push(
    cluster: Cluster, namespace: str, tmp_path: Path,
    operator_in_process: kopf.testing.KopfRunner,
) -> None:  # fmt: skip
    if not cluster.is_local:
        pytest.skip("needs a registry on the local cluster's node address")
    busybox = cluster.image("busybox")
    with running_registry(
        tmp_path / "auth-registry", auth="htpasswd", host=LOCAL_NODE_IP, port=AUTH_REGISTRY_PORT
    ) as private:
        assert private.username
        assert private.password
        cluster.apply(
            [
                docker_config_secret("good", private.address, private.username, private.password),
                docker_config_secret("bad", private.address, private.username, "wrong"),
            ],
            namespace,
        )
        for name, secret in (("pushgood", "good"), ("pushbad", "bad")):
            bc = docker_bc(
                name,
                {"type": "Dockerfile", "dockerfile": f"FROM {busybox}\nRUN echo {name} > /n\n"},
                None,
            )
            bc["spec"]["output"] = {
                "to": {"kind": "DockerImage", "name": f"{private.address}/team/{name}:v1"},
                "pushSecret": {"name": secret},
            }
            cluster.apply(bc, namespace)
        good = build_of_request(cluster, namespace, start_build(cluster, namespace, "pushgood"))
        bad = build_of_request(cluster, namespace, start_build(cluster, namespace, "pushbad"))
        good_status = wait_for_phase(cluster, namespace, good)["status"]
        assert good_status["phase"] == "Complete", good_status
        bad_status = wait_for_phase(cluster, namespace, bad)["status"]
        assert bad_status["phase"] == "Failed"
        assert bad_status["reason"] == "PushImageToRegistryFailed"
        assert "unauthorized" in bad_status["logSnippet"].lower()


def test_missing_push_secret_holds_the_build_until_it_exists(
    cluster: Cluster, namespace: str, operator_in_process: kopf.testing.KopfRunner
) -> None:
    cluster.apply(push_secret_bc(cluster, "later", "not-yet"), namespace)
    name = build_of_request(cluster, namespace, start_build(cluster, namespace, "later"))

    def held() -> bool:
        status = build_json(cluster, namespace, name).get("status") or {}
        return status.get("phase") == "New" and status.get("reason") == "MissingPushSecret"

    eventually("the build to wait for its push secret", held, timeout=60)
    cluster.apply(docker_config_secret("not-yet", "example.invalid", "u", "p"), namespace)
    assert wait_for_phase(cluster, namespace, name)["status"]["phase"] == "Complete"


def test_post_commit_hook_runs_in_the_built_image_and_its_failure_fails_the_build(
    cluster: Cluster, namespace: str, operator_in_process: kopf.testing.KopfRunner
) -> None:
    cluster.need_registry()
    busybox = cluster.image("busybox")
    cluster.apply(imagestream("hooked"), namespace)
    dockerfile = f"FROM {busybox}\nRUN echo 42 > /answer\n"
    passing = docker_bc(
        "hook-ok", {"type": "Dockerfile", "dockerfile": dockerfile}, "hooked:ok",
        postCommit={"script": "test \"$(cat /answer)\" = 42 && echo hook-passed"},
    )  # fmt: skip
    failing = docker_bc(
        "hook-fail", {"type": "Dockerfile", "dockerfile": dockerfile}, "hooked:fail",
        postCommit={"command": ["/bin/sh", "-c"], "args": ["echo hook-says-no; exit 4"]},
    )  # fmt: skip
    cluster.apply([passing, failing], namespace)
    ok = build_of_request(cluster, namespace, start_build(cluster, namespace, "hook-ok"))
    bad = build_of_request(cluster, namespace, start_build(cluster, namespace, "hook-fail"))
    ok_status = wait_for_phase(cluster, namespace, ok)["status"]
    assert ok_status["phase"] == "Complete", ok_status
    logs = build_log(cluster, namespace, ok)
    assert "hook-passed" in logs
    bad_status = wait_for_phase(cluster, namespace, bad)["status"]
    assert bad_status["phase"] == "Failed"
    assert bad_status["reason"] == "PostCommitHookFailed"
    assert "hook-says-no" in bad_status["logSnippet"]
    # Nothing was pushed for the failed build: its tag never appeared.
    stream = cluster.get_json("imagestream/hooked", "-n", namespace)
    assert {t["tag"] for t in stream["status"].get("tags") or []} == {"ok"}


def test_serial_latest_only_cancels_the_older_queued_builds(
    cluster: Cluster, namespace: str, operator_in_process: kopf.testing.KopfRunner
) -> None:
    busybox = cluster.image("busybox")
    cluster.apply(
        docker_bc(
            "latest",
            {"type": "Dockerfile", "dockerfile": f"FROM {busybox}\nARG HOLD=4\nRUN sleep $HOLD\n"},
            None,
            runPolicy="SerialLatestOnly",
        ),
        namespace,
    )
    # The first build runs long enough for the three requests below to be made one by one
    # while it runs: with 4 s, had it ended between two of them, the next would have
    # started rather than queued (kubectl and the operator share 2 loaded cores in CI).
    hold = json.dumps({"buildArgs": [{"name": "HOLD", "value": "20"}]})
    first = build_of_request(cluster, namespace, start_build(cluster, namespace, "latest", hold))
    wait_for_phase(cluster, namespace, first, ("Pending", "Running"), timeout=60)
    queued = [
        build_of_request(cluster, namespace, start_build(cluster, namespace, "latest"))
        for _ in range(3)
    ]
    assert queued == ["latest-2", "latest-3", "latest-4"]
    for name in ("latest-2", "latest-3"):
        status = wait_for_phase(cluster, namespace, name)["status"]
        assert status["phase"] == "Cancelled", status
        assert status["reason"] == "CancelledBuild"
    assert wait_for_phase(cluster, namespace, first)["status"]["phase"] == "Complete"
    assert wait_for_phase(cluster, namespace, "latest-4")["status"]["phase"] == "Complete"
    # Cancelled queued builds never got a Job.
    jobs = {j["metadata"]["name"] for j in cluster.get_json("jobs", "-n", namespace)["items"]}
    assert jobs == {"latest-1-build", "latest-4-build"}


def test_custom_strategy_runs_the_builder_image_with_the_documented_environment(
    cluster: Cluster, namespace: str, tmp_path: Path,
    operator_in_process: kopf.testing.KopfRunner,
) -> None:  # fmt: skip
    registry = cluster.need_registry()
    context = tmp_path / "custom"
    context.mkdir()
    (context / "Dockerfile").write_text(
        f'FROM {cluster.image("busybox")}\nCOPY build.sh /build.sh\nCMD ["sh", "/build.sh"]\n'
    )
    (context / "build.sh").write_text(
        "set -eu\n"
        'echo "custom builder for $OUTPUT_REGISTRY/$OUTPUT_IMAGE via $OUTPUT_REGISTRY"\n'
        'echo "$BUILD" | grep -q \'"kind":"Build"\'\n'
        'echo "source $SOURCE_URI"\n'
        'echo "mode=$MODE"\n'
    )
    image = f"{registry}/e2e/{namespace}/custom-builder:latest"
    buildah_build_and_push(tmp_path / "buildah", context, image)
    cluster.apply(imagestream("made"), namespace)
    bc = docker_bc(
        "custom",
        {"type": "Git", "git": {"uri": "https://example.invalid/app.git"}},
        "made:latest",
        strategy={
            "type": "Custom",
            "customStrategy": {
                "from": {"kind": "DockerImage", "name": image},
                "env": [{"name": "MODE", "value": "fast"}],
            },
        },
    )
    cluster.apply(bc, namespace)
    name = build_of_request(cluster, namespace, start_build(cluster, namespace, "custom"))
    status = wait_for_phase(cluster, namespace, name)["status"]
    logs = cluster.kubectl("logs", "-n", namespace, f"job/{name}-build").stdout
    assert f"custom builder for {registry}/{namespace}/made:latest via {registry}" in logs
    assert "source https://example.invalid/app.git" in logs
    assert "mode=fast" in logs
    # The custom builder pushed nothing: the operator checks the registry and says so.
    assert status["phase"] == "Failed"
    assert status["reason"] == "PushImageToRegistryFailed"


def test_long_buildconfig_names_still_get_labels_jobs_and_pods(
    cluster: Cluster, namespace: str, operator_in_process: kopf.testing.KopfRunner
) -> None:
    busybox = cluster.image("busybox")
    name = "a-buildconfig-name-longer-than-a-label-value-may-be-" + "x" * 30
    cluster.apply(
        docker_bc(name, {"type": "Dockerfile", "dockerfile": f"FROM {busybox}\n"}, None), namespace
    )
    build = build_of_request(cluster, namespace, start_build(cluster, namespace, name))
    assert build == f"{name}-1"
    assert wait_for_phase(cluster, namespace, build)["status"]["phase"] == "Complete"
    assert cluster.get_json(f"buildconfig/{name}", "-n", namespace)["status"]["lastVersion"] == 1


def test_deadline_and_deleted_pod_end_builds_with_their_reasons(
    cluster: Cluster, namespace: str, operator_in_process: kopf.testing.KopfRunner
) -> None:
    busybox = cluster.image("busybox")
    slow = {"type": "Dockerfile", "dockerfile": f"FROM {busybox}\nRUN sleep 300\n"}
    cluster.apply(
        [
            docker_bc("deadline", slow, None, completionDeadlineSeconds=8),
            docker_bc("deleted", slow, None),
        ],
        namespace,
    )
    late = build_of_request(cluster, namespace, start_build(cluster, namespace, "deadline"))
    gone = build_of_request(cluster, namespace, start_build(cluster, namespace, "deleted"))
    wait_for_phase(cluster, namespace, gone, ("Running",), timeout=120)
    cluster.kubectl(
        "delete", "pod", "-n", namespace, "-l", f"build.headwater.dev/build={gone}", "--wait=false"
    )
    status = wait_for_phase(cluster, namespace, gone, timeout=120)["status"]
    assert status["phase"] == "Error", status
    assert status["reason"] == "BuildPodDeleted"
    status = wait_for_phase(cluster, namespace, late, timeout=120)["status"]
    assert status["phase"] == "Failed", status
    assert status["reason"] == "ExceededDeadline"
    # The operator's metrics counted both endings (the operator runs in this process; it
    # counts an ending once the API server has answered the write of the phase).
    from headwater.metrics import REGISTRY

    def finished() -> set[tuple[str, str]]:
        return {
            (s.labels["phase"], s.labels["reason"])
            for metric in REGISTRY.collect()
            if metric.name == "headwater_builds_finished"
            for s in metric.samples
            if s.name == "headwater_builds_finished_total"
        }

    eventually(
        "both endings counted",
        lambda: {("Error", "BuildPodDeleted"), ("Failed", "ExceededDeadline")} <= finished(),
    )


def test_private_git_source_with_basic_auth_and_configmaps_and_secrets_in_the_context(
    cluster: Cluster, namespace: str, git_server: GitServer,
    operator_in_process: kopf.testing.KopfRunner,
) -> None:  # fmt: skip
    if not cluster.is_local:
        pytest.skip("serves Git on the local cluster's node address")
    busybox = cluster.image("busybox")
    url, sha = git_server.repo(
        {
            "Dockerfile": (
                f"FROM {busybox}\nCOPY conf/ /conf/\nCOPY keys/ /keys/\n"
                'RUN test "$(cat /conf/app.conf)" = "mode=prod" && test -f /keys/token'
                ' && ! ls -A /conf | grep -q "^\\.\\."\n'
            )
        }
    )
    http = GitHttpServer(git_server.root, LOCAL_NODE_IP, "dev", "s3cret")
    try:
        private = f"{http.url}/{url.rsplit('/', 1)[1]}"
        cluster.apply(
            [
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": "git-login"},
                    "type": "kubernetes.io/basic-auth",
                    "stringData": {"username": "dev", "password": "s3cret"},
                },
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": "app-conf"},
                    "data": {"app.conf": "mode=prod"},
                },
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": "build-token"},
                    "stringData": {"token": "t0ken"},
                },
            ],
            namespace,
        )
        source = {
            "type": "Git",
            "git": {"uri": private},
            "sourceSecret": {"name": "git-login"},
            "configMaps": [{"configMap": {"name": "app-conf"}, "destinationDir": "conf"}],
            "secrets": [{"secret": {"name": "build-token"}, "destinationDir": "keys"}],
        }
        cluster.apply(docker_bc("private", source, None), namespace)
        no_login = {k: v for k, v in source.items() if k != "sourceSecret"}
        cluster.apply(docker_bc("anonymous", no_login, None), namespace)
        ok = build_of_request(cluster, namespace, start_build(cluster, namespace, "private"))
        refused = build_of_request(cluster, namespace, start_build(cluster, namespace, "anonymous"))
        status = wait_for_phase(cluster, namespace, ok)["status"]
        assert status["phase"] == "Complete", status
        assert status["revision"]["git"]["commit"] == sha
        status = wait_for_phase(cluster, namespace, refused)["status"]
        assert status["phase"] == "Failed"
        assert status["reason"] == "FetchSourceFailed"
        # The password never shows in status or in the build log.
        logs = cluster.kubectl(
            "logs", "-n", namespace, f"job/{ok}-build", "--all-containers"
        ).stdout
        assert "s3cret" not in logs
        assert "s3cret" not in json.dumps(build_json(cluster, namespace, ok))
    finally:
        http.stop()


def test_a_missing_output_stream_holds_the_build_until_it_exists(
    cluster: Cluster, namespace: str, operator_in_process: kopf.testing.KopfRunner
) -> None:
    cluster.need_registry()
    busybox = cluster.image("busybox")
    cluster.apply(
        docker_bc("orphan", {"type": "Dockerfile", "dockerfile": f"FROM {busybox}\n"}, "later:v1"),
        namespace,
    )
    name = build_of_request(cluster, namespace, start_build(cluster, namespace, "orphan"))

    def held() -> bool:
        status = build_json(cluster, namespace, name).get("status") or {}
        return status.get("phase") == "New" and status.get("reason") == "InvalidOutputReference"

    eventually("the build to wait for its output stream", held, timeout=60)
    cluster.apply(imagestream("later"), namespace)
    assert wait_for_phase(cluster, namespace, name)["status"]["phase"] == "Complete"
