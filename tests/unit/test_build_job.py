"""operator/headwater/builds/job.py: the Job (pod, containers, volumes, arguments) of a Build."""

from __future__ import annotations

import copy
import json
import posixpath
import re
from collections.abc import Mapping
from typing import Any

import pytest

from headwater.builds.job import (
    CUSTOM_PULL_SECRET_DIR,
    CUSTOM_PUSH_SECRET_DIR,
    EXECUTOR_ANNOTATION,
    KANIKO_SECRET_DIR,
    JobSettings,
    RenderError,
    Resolved,
    buildah_arguments,
    executor_for,
    kaniko_arguments,
    render_job,
    settings_from_config,
    wants_privileged,
)
from headwater.builds.model import (
    ANNOTATION_BUILD,
    API_VERSION,
    BUILD_CONTAINER,
    FETCH_CONTAINER,
    LABEL_BUILD,
    LABEL_BUILDCONFIG,
    LABEL_VALUE_MAX,
    build_of_child,
)
from headwater.builds.scripts import (
    BUILDAH_SCRIPT,
    FETCH_SCRIPT,
    INPUTS_DIR,
    PULL_SECRET_DIR,
    PUSH_SECRET_DIR,
    S2I_DIR,
    SOURCE_DIR,
    SOURCE_SECRET_DIR,
    WORKSPACE,
)
from headwater.config import (
    BuildDefaults,
    BuildOverrides,
    Config,
    Resources,
    Toleration,
)

BUILDER = "quay.io/buildah/stable:v1.37"
KANIKO = "ghcr.io/example/kaniko:v1.24"
OUTPUT = "registry.example.com:5000/shop/web:latest"
BASE = "registry.example.com:5000/library/python@sha256:" + "b" * 64
SETTINGS = JobSettings(executor="buildah", builder_image=BUILDER, kaniko_image=KANIKO)
KANIKO_SETTINGS = JobSettings(builder_image=BUILDER, executor="kaniko", kaniko_image=KANIKO)
RESOLVED = Resolved(privileged_builds=True, output_image=OUTPUT)
S2I_RESOLVED = Resolved(
    privileged_builds=True,
    output_image=OUTPUT,
    base_image=BASE,
    s2i_dockerfile="FROM python\nCOPY upload/src /tmp/src\n",
    s2i_environment_script="true",
)


def docker_spec(**extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "source": {
            "type": "Git",
            "git": {"uri": "https://github.com/example/shop-web.git", "ref": "main"},
        },
        "strategy": {"type": "Docker", "dockerStrategy": {}},
        "output": {"to": {"kind": "DockerImage", "name": OUTPUT}},
    }
    spec.update(extra)
    return spec


def with_block(spec: dict[str, Any], **block: Any) -> dict[str, Any]:
    strategy = spec["strategy"]
    key = {"Docker": "dockerStrategy", "Source": "sourceStrategy", "Custom": "customStrategy"}
    strategy.setdefault(key[strategy["type"]], {}).update(block)
    return spec


def source_spec(**extra: Any) -> dict[str, Any]:
    spec = docker_spec(**extra)
    spec["strategy"] = {
        "type": "Source",
        "sourceStrategy": {"from": {"kind": "DockerImage", "name": BASE}},
    }
    return spec


def custom_spec(**block: Any) -> dict[str, Any]:
    spec = docker_spec()
    spec["strategy"] = {
        "type": "Custom",
        "customStrategy": {"from": {"kind": "DockerImage", "name": BASE}, **block},
    }
    return spec


def build(
    spec: Mapping[str, Any],
    *,
    name: str = "web-3",
    annotations: Mapping[str, str] | None = None,
    buildconfig: str | None = "web",
) -> dict[str, Any]:
    labels = {LABEL_BUILDCONFIG: buildconfig} if buildconfig else {}
    return {
        "apiVersion": API_VERSION,
        "kind": "Build",
        "metadata": {
            "name": name,
            "namespace": "shop",
            "uid": "11111111-2222-4333-8444-555555555555",
            "labels": labels,
            "annotations": dict(annotations or {}),
        },
        "spec": copy.deepcopy(dict(spec)),
    }


def render(
    spec: Mapping[str, Any],
    resolved: Resolved = RESOLVED,
    settings: JobSettings = SETTINGS,
    **kwargs: Any,
) -> dict[str, Any]:
    return render_job(build(spec, **kwargs), resolved, settings)


def pod(job: Mapping[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = job["spec"]["template"]["spec"]
    return spec


def container(job: Mapping[str, Any], name: str) -> dict[str, Any]:
    spec = pod(job)
    for c in [*spec["initContainers"], *spec["containers"]]:
        if c["name"] == name:
            return dict(c)
    raise AssertionError(f"no container {name}")


def env(c: Mapping[str, Any]) -> dict[str, str]:
    entries = c.get("env") or []
    names = [e["name"] for e in entries]
    assert len(names) == len(set(names)), f"duplicate env names: {names}"
    return {e["name"]: e["value"] for e in entries}


def mounts(c: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Volume name to its mount in ``c``."""
    return {m["name"]: m for m in c.get("volumeMounts") or []}


def volumes(job: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in pod(job)["volumes"]}


def pairs(args: list[str], flag: str) -> list[str]:
    """Values of ``flag X`` in ``args``."""
    return [args[i + 1] for i, a in enumerate(args) if a == flag]


def files_in(job: Mapping[str, Any], container_name: str, directory: str) -> set[str]:
    """Files that secret volumes put directly in ``directory`` of the container.

    A docker-config Secret (kubernetes.io/dockerconfigjson) has the one key
    ``.dockerconfigjson``; a volume without ``items`` projects it under that name.
    """
    vols = volumes(job)
    found: set[str] = set()
    for mount in container(job, container_name).get("volumeMounts") or []:
        secret = vols[mount["name"]].get("secret")
        if secret is None:
            continue
        keys = [item["path"] for item in secret.get("items") or []] or [".dockerconfigjson"]
        if mount.get("subPath"):
            paths = [mount["mountPath"]] if mount["subPath"] in keys else []
        else:
            paths = [posixpath.join(mount["mountPath"], key) for key in keys]
        found.update(p for p in paths if posixpath.dirname(p) == directory.rstrip("/"))
    return found


def dockerfile_string(text: str, start: int) -> tuple[str, int]:
    """Decode a double-quoted Dockerfile word from ``text[start]`` as BuildKit's lexer does.

    Inside double quotes only ``\\"``, ``\\$`` and ``\\\\`` are escapes; any other
    backslash is literal; an unescaped ``$name`` / ``${...}`` is a variable expansion.
    """
    assert text[start] == '"', text[start:]
    i = start + 1
    out: list[str] = []
    while True:
        ch = text[i]
        if ch == '"':
            return "".join(out), i + 1
        if ch == "$":
            following = text[i + 1 : i + 2]
            if following == "{" or following.isalnum() or following in "_@*#?-$!":
                raise AssertionError(f"unescaped ${following} expands in {text!r}")
        if ch == "\\" and text[i + 1] in '"$\\':
            out.append(text[i + 1])
            i += 2
            continue
        out.append(ch)
        i += 1


def dockerfile_env(line: str) -> tuple[str, str]:
    assert line.startswith("ENV "), line
    name, end = dockerfile_string(line, 4)
    assert line[end] == "=", line
    value, end = dockerfile_string(line, end + 1)
    assert end == len(line), line
    return name, value


# --- the Job around the pod ---------------------------------------------------------


def test_job_metadata_owner_and_labels() -> None:
    job = render(docker_spec())
    assert job["apiVersion"] == "batch/v1"
    assert job["kind"] == "Job"
    assert job["metadata"]["name"] == "web-3-build"
    assert job["metadata"]["namespace"] == "shop"
    labels = {LABEL_BUILD: "web-3", LABEL_BUILDCONFIG: "web"}
    assert job["metadata"]["labels"] == labels
    assert job["spec"]["template"]["metadata"]["labels"] == labels
    # Annotations carry full names (labels may be shortened).
    assert job["metadata"]["annotations"][ANNOTATION_BUILD] == "web-3"
    assert job["spec"]["template"]["metadata"]["annotations"] == job["metadata"]["annotations"]
    assert build_of_child(job["spec"]["template"]["metadata"]) == "web-3"
    assert job["metadata"]["ownerReferences"] == [
        {
            "apiVersion": API_VERSION,
            "kind": "Build",
            "name": "web-3",
            "uid": "11111111-2222-4333-8444-555555555555",
            "controller": True,
        }
    ]


def test_long_names_fit_labels_and_names() -> None:
    bc = "shop-" + "w" * 200
    name = f"{bc}-12"
    job = render(docker_spec(), name=name, buildconfig=bc)
    assert len(job["metadata"]["name"]) <= LABEL_VALUE_MAX  # the Job controller labels pods with it
    for value in job["metadata"]["labels"].values():
        assert len(value) <= LABEL_VALUE_MAX
        assert re.fullmatch(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?", value), value
    assert job["spec"]["template"]["metadata"]["labels"] == job["metadata"]["labels"]
    assert build_of_child(job["spec"]["template"]["metadata"]) == name
    assert job["metadata"]["ownerReferences"][0]["name"] == name
    other = render(docker_spec(), name=f"{bc}-13", buildconfig=bc)
    assert other["metadata"]["name"] != job["metadata"]["name"]
    assert other["metadata"]["labels"][LABEL_BUILD] != job["metadata"]["labels"][LABEL_BUILD]


def test_lone_build_has_no_buildconfig_label() -> None:
    job = render(docker_spec(), buildconfig=None)
    assert job["metadata"]["labels"] == {LABEL_BUILD: "web-3"}


def test_job_never_retries_and_pod_gets_no_api_credentials() -> None:
    job = render(docker_spec())
    assert job["spec"]["backoffLimit"] == 0
    spec = pod(job)
    assert spec["restartPolicy"] == "Never"
    assert spec["automountServiceAccountToken"] is False
    assert spec["enableServiceLinks"] is False
    assert spec["serviceAccountName"] == "default"
    assert "activeDeadlineSeconds" not in job["spec"]
    for absent in ("nodeSelector", "tolerations", "hostNetwork", "dnsPolicy"):
        assert absent not in spec


def test_service_account_from_the_spec() -> None:
    assert pod(render(docker_spec(serviceAccount="builder")))["serviceAccountName"] == "builder"


def test_completion_deadline_becomes_active_deadline() -> None:
    job = render(docker_spec(completionDeadlineSeconds=1800))
    assert job["spec"]["activeDeadlineSeconds"] == 1800
    assert "activeDeadlineSeconds" not in pod(job)


def test_containers_in_order_and_images() -> None:
    spec = pod(render(docker_spec()))
    assert [c["name"] for c in spec["initContainers"]] == [FETCH_CONTAINER]
    assert [c["name"] for c in spec["containers"]] == [BUILD_CONTAINER]
    fetch, main = spec["initContainers"][0], spec["containers"][0]
    assert fetch["image"] == main["image"] == BUILDER
    assert fetch["command"] == ["/bin/sh", "-c", FETCH_SCRIPT]
    assert main["command"] == ["/bin/sh", "-c", BUILDAH_SCRIPT, "buildah-build"]
    for c in (fetch, main):
        assert c["terminationMessagePolicy"] == "FallbackToLogsOnError"
        assert mounts(c)["workspace"]["mountPath"] == WORKSPACE
    assert main["securityContext"] == {"privileged": True}
    assert fetch["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"], "add": ["CHOWN", "DAC_OVERRIDE", "FOWNER"]},
    }
    assert env(main)["BUILDAH_ISOLATION"] == "oci"
    assert volumes(render(docker_spec()))["workspace"] == {"name": "workspace", "emptyDir": {}}
    assert volumes(render(docker_spec()))["storage"] == {"name": "storage", "emptyDir": {}}
    assert mounts(main)["storage"]["mountPath"] == "/var/lib/containers"


# --- fetch-source: the source -------------------------------------------------------


def test_git_source_env() -> None:
    spec = docker_spec()
    spec["source"] = {
        "type": "Git",
        "git": {
            "uri": "git@github.com:example/shop-web.git",
            "ref": "release-2",
            "httpProxy": "http://proxy:3128",
            "httpsProxy": "http://proxy:3129",
            "noProxy": ".cluster.local,10.0.0.0/8",
        },
        "contextDir": "services/web/",
    }
    fetch = env(container(render(spec), FETCH_CONTAINER))
    assert fetch["HW_SOURCE_TYPE"] == "Git"
    assert fetch["HW_STRATEGY"] == "Docker"
    assert fetch["HW_GIT_URI"] == "git@github.com:example/shop-web.git"
    assert fetch["HW_GIT_REF"] == "release-2"
    assert fetch["HW_CONTEXT_DIR"] == "services/web"
    assert fetch["HTTP_PROXY"] == fetch["http_proxy"] == "http://proxy:3128"
    assert fetch["HTTPS_PROXY"] == fetch["https_proxy"] == "http://proxy:3129"
    assert fetch["NO_PROXY"] == fetch["no_proxy"] == ".cluster.local,10.0.0.0/8"
    assert fetch["HOME"].startswith("/")
    assert fetch["HW_DOCKERFILE_PATH"] == "Dockerfile"
    assert "HW_GIT_COMMIT" not in fetch
    assert "HW_DOCKERFILE" not in fetch
    assert "HW_FROM" not in fetch


def test_git_without_ref_or_proxies() -> None:
    spec = docker_spec()
    spec["source"] = {"type": "Git", "git": {"uri": "https://example.com/r.git"}}
    fetch = env(container(render(spec), FETCH_CONTAINER))
    assert fetch["HW_CONTEXT_DIR"] == ""
    for absent in ("HW_GIT_REF", "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "NO_PROXY"):
        assert absent not in fetch


def test_revision_commit_is_passed() -> None:
    spec = docker_spec(revision={"type": "Git", "git": {"commit": "a" * 40}})
    assert env(container(render(spec), FETCH_CONTAINER))["HW_GIT_COMMIT"] == "a" * 40


def test_source_secret_is_mounted_in_fetch_only() -> None:
    spec = docker_spec()
    spec["source"]["sourceSecret"] = {"name": "git-credentials"}
    job = render(spec)
    assert volumes(job)["source-secret"] == {
        "name": "source-secret",
        "secret": {"secretName": "git-credentials", "defaultMode": 0o400},
    }
    fetch_mount = mounts(container(job, FETCH_CONTAINER))["source-secret"]
    assert fetch_mount == {
        "name": "source-secret",
        "mountPath": SOURCE_SECRET_DIR,
        "readOnly": True,
    }
    # The build container runs the user's Dockerfile: it never sees the Git credentials.
    assert "source-secret" not in mounts(container(job, BUILD_CONTAINER))


def test_no_source_secret_no_volume() -> None:
    job = render(docker_spec())
    assert "source-secret" not in volumes(job)
    assert "source-secret" not in mounts(container(job, FETCH_CONTAINER))


def test_inline_dockerfile_and_path() -> None:
    spec = docker_spec()
    spec["source"] = {"type": "Dockerfile", "dockerfile": 'FROM alpine\nRUN echo "$HOME"\n'}
    with_block(spec, dockerfilePath="build/Containerfile")
    fetch = env(container(render(spec), FETCH_CONTAINER))
    assert fetch["HW_SOURCE_TYPE"] == "Dockerfile"
    assert fetch["HW_DOCKERFILE"] == 'FROM alpine\nRUN echo "$HOME"\n'
    assert fetch["HW_DOCKERFILE_PATH"] == "build/Containerfile"
    assert "HW_GIT_URI" not in fetch


def test_empty_inline_dockerfile_is_still_written() -> None:
    spec = docker_spec()
    spec["source"]["dockerfile"] = ""
    assert env(container(render(spec), FETCH_CONTAINER))["HW_DOCKERFILE"] == ""


def test_binary_source() -> None:
    spec = docker_spec()
    spec["source"] = {"type": "Binary", "binary": {"asFile": "app.jar"}}
    settings = JobSettings(executor="buildah", builder_image=BUILDER, upload_timeout_seconds=120)
    fetch = env(container(render(spec, settings=settings), FETCH_CONTAINER))
    assert fetch["HW_SOURCE_TYPE"] == "Binary"
    assert fetch["HW_UPLOAD_TIMEOUT"] == "120"


def test_no_source() -> None:
    spec = docker_spec()
    del spec["source"]
    fetch = env(container(render(spec), FETCH_CONTAINER))
    assert fetch["HW_SOURCE_TYPE"] == "None"
    assert fetch["HW_UPLOAD_TIMEOUT"] == "900"


def test_docker_from_becomes_hw_from() -> None:
    resolved = Resolved(privileged_builds=True, output_image=OUTPUT, base_image=BASE)
    fetch = env(container(render(docker_spec(), resolved), FETCH_CONTAINER))
    assert fetch["HW_FROM"] == BASE


def test_secret_and_configmap_inputs() -> None:
    spec = docker_spec()
    spec["source"]["secrets"] = [
        {"secret": {"name": "tls"}, "destinationDir": "certs/./server/"},
        {"secret": {"name": "npmrc"}},
    ]
    spec["source"]["configMaps"] = [{"configMap": {"name": "settings"}, "destinationDir": "conf"}]
    job = render(spec)
    vols = volumes(job)
    assert vols["input-0"] == {
        "name": "input-0",
        "secret": {"secretName": "tls", "defaultMode": 0o400},
    }
    assert vols["input-1"]["secret"]["secretName"] == "npmrc"
    assert vols["input-2"] == {"name": "input-2", "configMap": {"name": "settings"}}
    fetch = container(job, FETCH_CONTAINER)
    for index in range(3):
        assert mounts(fetch)[f"input-{index}"] == {
            "name": f"input-{index}",
            "mountPath": f"{INPUTS_DIR}/{index}",
            "readOnly": True,
        }
    variables = env(fetch)
    assert variables["HW_INPUT_0"] == f"{INPUTS_DIR}/0|certs/server"
    assert variables["HW_INPUT_1"] == f"{INPUTS_DIR}/1|"
    assert variables["HW_INPUT_2"] == f"{INPUTS_DIR}/2|conf"
    assert "HW_INPUT_3" not in variables
    # Inputs are copied into the context by the fetch step; the build sees the context.
    assert not any(name.startswith("input-") for name in mounts(container(job, BUILD_CONTAINER)))


@pytest.mark.parametrize("destination", ["../outside", "/etc", "a/../../b"])
@pytest.mark.parametrize("kind", ["secrets", "configMaps"])
def test_input_destination_must_stay_in_the_context(kind: str, destination: str) -> None:
    spec = docker_spec()
    ref = {"secret": {"name": "s"}} if kind == "secrets" else {"configMap": {"name": "c"}}
    spec["source"][kind] = [{**ref, "destinationDir": destination}]
    with pytest.raises(RenderError) as caught:
        render(spec)
    assert caught.value.reason == "InvalidContextDirectory"
    assert "destinationDir" in caught.value.message


# --- context directory and Dockerfile path checks -----------------------------------


@pytest.mark.parametrize("context_dir", ["../x", "/abs", "a/../../x", "..", "/"])
def test_context_dir_must_be_relative_inside(context_dir: str) -> None:
    spec = docker_spec()
    spec["source"]["contextDir"] = context_dir
    with pytest.raises(RenderError) as caught:
        render(spec)
    assert caught.value.reason == "InvalidContextDirectory"
    assert caught.value.message == str(caught.value)
    assert repr(context_dir) in caught.value.message


@pytest.mark.parametrize(
    ("context_dir", "normalised"),
    [(".", ""), ("./", ""), ("a/..", ""), ("app/", "app"), ("a//b/./c", "a/b/c"), ("..a", "..a")],
)
def test_context_dir_is_normalised(context_dir: str, normalised: str) -> None:
    spec = docker_spec()
    spec["source"]["contextDir"] = context_dir
    job = render(spec)
    assert env(container(job, FETCH_CONTAINER))["HW_CONTEXT_DIR"] == normalised
    expected = f"{SOURCE_DIR}/{normalised}" if normalised else SOURCE_DIR
    assert env(container(job, BUILD_CONTAINER))["HW_CONTEXT"] == expected
    assert f"{expected}/Dockerfile" in container(job, BUILD_CONTAINER)["args"]


@pytest.mark.parametrize("path", ["../Dockerfile", "/Dockerfile", "sub/../../Dockerfile"])
def test_dockerfile_path_must_stay_in_the_context(path: str) -> None:
    spec = with_block(docker_spec(), dockerfilePath=path)
    with pytest.raises(RenderError) as caught:
        render(spec)
    assert caught.value.reason == "InvalidContextDirectory"
    assert "dockerfilePath" in caught.value.message


# --- buildah arguments ---------------------------------------------------------------


def test_buildah_default_arguments() -> None:
    args = buildah_arguments(docker_spec(), RESOLVED, SETTINGS, SOURCE_DIR)
    assert args == [
        # The registry layer cache is on by default: <output repository>-cache.
        "--layers",
        "--cache-from",
        "registry.example.com:5000/shop/web-cache",
        "--cache-to",
        "registry.example.com:5000/shop/web-cache",
        "--format",
        "docker",
        "--network",
        "host",
        "-f",
        f"{SOURCE_DIR}/Dockerfile",
        "--pull=true",
    ]


def test_buildah_dockerfile_path_joined_with_context() -> None:
    spec = with_block(docker_spec(), dockerfilePath="docker/Dockerfile.prod")
    spec["source"]["contextDir"] = "web"
    job = render(spec)
    args = container(job, BUILD_CONTAINER)["args"]
    assert pairs(args, "-f") == [f"{SOURCE_DIR}/web/docker/Dockerfile.prod"]
    assert env(container(job, FETCH_CONTAINER))["HW_DOCKERFILE_PATH"] == "docker/Dockerfile.prod"


def test_buildah_no_cache_force_pull_and_build_args() -> None:
    spec = with_block(
        docker_spec(),
        noCache=True,
        forcePull=True,
        buildArgs=[
            {"name": "VERSION", "value": "1.2"},
            {"name": "EMPTY"},
            {"name": "SPACES", "value": "a b; $(rm -rf /)"},
            {"value": "nameless"},
        ],
    )
    args = buildah_arguments(spec, RESOLVED, SETTINGS, SOURCE_DIR)
    assert "--no-cache" in args
    assert "--pull=always" in args
    assert "--pull=true" not in args
    assert pairs(args, "--build-arg") == ["VERSION=1.2", "EMPTY=", "SPACES=a b; $(rm -rf /)"]


def test_buildah_env_defaults_strategy_overrides_precedence() -> None:
    settings = JobSettings(
        executor="buildah",
        builder_image=BUILDER,
        defaults=BuildDefaults(env=(("D_ONLY", "d"), ("SHARED", "from-defaults"), ("BOTH", "d"))),
        overrides=BuildOverrides(env=(("BOTH", "from-overrides"), ("O_ONLY", "o"))),
    )
    spec = with_block(
        docker_spec(),
        env=[
            {"name": "SHARED", "value": "from-spec"},
            {"name": "BOTH", "value": "spec"},
            {"name": "S_ONLY", "value": "s=1"},
        ],
    )
    # Not buildah's --env (the final image only): ENV lines after every FROM.
    assert pairs(buildah_arguments(spec, RESOLVED, settings, SOURCE_DIR), "--env") == []
    fetch = env(container(render(spec, settings=settings), FETCH_CONTAINER))
    assert [dockerfile_env(line) for line in fetch["HW_ENV_LINES"].split("\n")] == [
        ("D_ONLY", "d"),
        ("SHARED", "from-spec"),
        ("BOTH", "from-overrides"),
        ("S_ONLY", "s=1"),
        ("O_ONLY", "o"),
    ]


def test_buildah_labels_defaults_image_labels_overrides() -> None:
    settings = JobSettings(
        executor="buildah",
        builder_image=BUILDER,
        defaults=BuildDefaults(labels={"vendor": "acme", "tier": "default"}),
        overrides=BuildOverrides(labels={"tier": "forced"}),
    )
    spec = docker_spec()
    spec["output"]["imageLabels"] = [
        {"name": "vendor", "value": "shop"},
        {"name": "tier", "value": "spec"},
        {"name": "empty"},
    ]
    args = buildah_arguments(spec, RESOLVED, settings, SOURCE_DIR)
    assert pairs(args, "--label") == ["vendor=shop", "tier=forced", "empty="]


def test_source_strategy_builds_the_generated_dockerfile() -> None:
    spec = source_spec()
    spec["source"]["contextDir"] = "app"
    with_block(spec, env=[{"name": "PIP_INDEX_URL", "value": "https://pypi.example"}])
    job = render(spec, S2I_RESOLVED)
    build_env = env(container(job, BUILD_CONTAINER))
    args = container(job, BUILD_CONTAINER)["args"]
    assert build_env["HW_CONTEXT"] == S2I_DIR
    assert pairs(args, "-f") == [f"{S2I_DIR}/Dockerfile"]
    # S2I env is baked into the generated Dockerfile, not passed as --env.
    assert pairs(args, "--env") == []
    fetch = env(container(job, FETCH_CONTAINER))
    assert fetch["HW_STRATEGY"] == "Source"
    assert fetch["HW_S2I_DOCKERFILE"] == S2I_RESOLVED.s2i_dockerfile
    assert fetch["HW_S2I_ENVIRONMENT_SCRIPT"] == "true"
    assert fetch["HW_CONTEXT_DIR"] == "app"
    assert "HW_FROM" not in fetch  # the builder image is in the generated Dockerfile


def test_build_container_env_output_and_insecure_registries() -> None:
    settings = JobSettings(
        executor="buildah", builder_image=BUILDER, insecure_registries=("a:5000", "b.local")
    )
    build_env = env(container(render(docker_spec(), settings=settings), BUILD_CONTAINER))
    assert build_env["HW_OUTPUT"] == OUTPUT
    assert build_env["HW_CONTEXT"] == SOURCE_DIR
    assert build_env["HW_INSECURE_REGISTRIES"] == "a:5000 b.local"
    assert "HW_POST_COMMIT_ARGC" not in build_env


def test_no_output_no_hw_output() -> None:
    spec = docker_spec()
    del spec["output"]
    build_env = env(
        container(
            render(spec, Resolved(privileged_builds=True, output_image=None)), BUILD_CONTAINER
        )
    )
    assert "HW_OUTPUT" not in build_env


# --- post-commit hook ------------------------------------------------------------------


def hook_argv(job: Mapping[str, Any]) -> list[str]:
    variables = env(container(job, BUILD_CONTAINER))
    count = int(variables["HW_POST_COMMIT_ARGC"])
    assert f"HW_POST_COMMIT_ARG_{count}" not in variables
    return [variables[f"HW_POST_COMMIT_ARG_{i}"] for i in range(count)]


@pytest.mark.parametrize(
    ("hook", "argv"),
    [
        (
            {"script": "bundle exec rake test", "args": ["--verbose", "a b"]},
            ["/bin/sh", "-ic", "bundle exec rake test", "sh", "--verbose", "a b"],
        ),
        ({"script": "make test"}, ["/bin/sh", "-ic", "make test", "sh"]),
        (
            {"command": ["/bin/bash", "-c"], "args": ["echo $HOME; exit 0"]},
            ["/bin/bash", "-c", "echo $HOME; exit 0"],
        ),
        ({"command": ["pytest", "-q"]}, ["pytest", "-q"]),
        (
            {"args": ["python", "-m", "pytest"]},
            ["/bin/sh", "-c", 'exec "$@"', "sh", "python", "-m", "pytest"],
        ),
    ],
    ids=["script-args", "script", "command-args", "command", "args-only"],
)
def test_post_commit_argv(hook: dict[str, Any], argv: list[str]) -> None:
    assert hook_argv(render(docker_spec(postCommit=hook))) == argv


@pytest.mark.parametrize("hook", [{}, {"args": []}, {"script": ""}, {"command": []}])
def test_empty_post_commit_is_no_hook(hook: dict[str, Any]) -> None:
    build_env = env(container(render(docker_spec(postCommit=hook)), BUILD_CONTAINER))
    assert not any(name.startswith("HW_POST_COMMIT") for name in build_env)


# --- secrets for the registry -----------------------------------------------------------


def test_push_and_pull_secrets_for_buildah() -> None:
    resolved = Resolved(
        privileged_builds=True,
        output_image=OUTPUT,
        push_secret="push-creds",
        pull_secret="pull-creds",
    )
    job = render(docker_spec(), resolved)
    vols = volumes(job)
    assert vols["push-secret"] == {
        "name": "push-secret",
        "secret": {"secretName": "push-creds", "defaultMode": 0o400},
    }
    assert vols["pull-secret"]["secret"]["secretName"] == "pull-creds"
    build_mounts = mounts(container(job, BUILD_CONTAINER))
    assert build_mounts["push-secret"] == {
        "name": "push-secret",
        "mountPath": PUSH_SECRET_DIR,
        "readOnly": True,
    }
    assert build_mounts["pull-secret"]["mountPath"] == PULL_SECRET_DIR
    assert build_mounts["pull-secret"]["readOnly"] is True
    fetch_mounts = mounts(container(job, FETCH_CONTAINER))
    assert "push-secret" not in fetch_mounts
    assert "pull-secret" not in fetch_mounts


def test_no_registry_secrets_no_volumes() -> None:
    job = render(docker_spec())
    assert {"push-secret", "pull-secret"}.isdisjoint(volumes(job))
    assert {"push-secret", "pull-secret"}.isdisjoint(mounts(container(job, BUILD_CONTAINER)))


def test_every_mount_has_a_volume() -> None:
    spec = docker_spec()
    spec["source"]["sourceSecret"] = {"name": "git"}
    spec["source"]["secrets"] = [{"secret": {"name": "s"}}]
    for settings in (SETTINGS, KANIKO_SETTINGS):
        # kaniko takes one registry config, so one secret for both there.
        pull = "q" if settings is SETTINGS else "p"
        resolved = Resolved(
            privileged_builds=True, output_image=OUTPUT, push_secret="p", pull_secret=pull
        )
        job = render(spec, resolved, settings)
        vols = volumes(job)
        for c in [*pod(job)["initContainers"], *pod(job)["containers"]]:
            for mount in c["volumeMounts"]:
                assert mount["name"] in vols, (settings.executor, c["name"], mount)


# --- pod scheduling settings -----------------------------------------------------------


def test_resources_defaults_spec_overrides() -> None:
    settings = JobSettings(
        executor="buildah",
        builder_image=BUILDER,
        defaults=BuildDefaults(
            resources=Resources(requests={"cpu": "100m", "memory": "256Mi"}, limits={"cpu": "1"})
        ),
        overrides=BuildOverrides(resources=Resources(limits={"memory": "4Gi"})),
    )
    spec = docker_spec(resources={"requests": {"memory": "1Gi"}, "limits": {"memory": "2Gi"}})
    job = render(spec, settings=settings)
    assert container(job, BUILD_CONTAINER)["resources"] == {
        "requests": {"cpu": "100m", "memory": "1Gi"},
        "limits": {"cpu": "1", "memory": "4Gi"},
    }


def test_no_resources_anywhere_no_key() -> None:
    assert "resources" not in container(render(docker_spec()), BUILD_CONTAINER)


def test_only_requests_gives_only_requests() -> None:
    job = render(docker_spec(resources={"requests": {"cpu": "2"}}))
    assert container(job, BUILD_CONTAINER)["resources"] == {"requests": {"cpu": "2"}}


def test_node_selector_merge() -> None:
    settings = JobSettings(
        executor="buildah",
        builder_image=BUILDER,
        defaults=BuildDefaults(node_selector={"pool": "builds", "zone": "a"}),
        overrides=BuildOverrides(node_selector={"kubernetes.io/os": "linux"}),
    )
    spec = docker_spec(nodeSelector={"zone": "b", "disk": "ssd"})
    assert pod(render(spec, settings=settings))["nodeSelector"] == {
        "pool": "builds",
        "zone": "b",
        "disk": "ssd",
        "kubernetes.io/os": "linux",
    }


def test_a_users_node_selector_cannot_leave_the_pinned_build_nodes() -> None:
    """buildOverrides.nodeSelector pins builds: the user's value for the same key loses,
    and the user's other keys are ANDed (they narrow the choice, never widen it)."""
    pinned = BuildOverrides(node_selector={"node-role.example.com/builds": "true"})
    for settings in (
        JobSettings(builder_image=BUILDER, kaniko_image=KANIKO, overrides=pinned),
        JobSettings(executor="buildah", builder_image=BUILDER, overrides=pinned,
                    defaults=BuildDefaults(node_selector={"node-role.example.com/builds": "no"})),
    ):  # fmt: skip
        for user in (
            {"node-role.example.com/builds": "false"},
            {"node-role.example.com/builds": ""},
            {"kubernetes.io/hostname": "control-plane", "node-role.example.com/builds": "x"},
        ):
            selector = pod(render(docker_spec(nodeSelector=user), settings=settings))[
                "nodeSelector"
            ]
            assert selector["node-role.example.com/builds"] == "true"
            assert set(selector) == set(user) | {"node-role.example.com/builds"}
    # Without the override the user's selector applies as given.
    free = JobSettings(builder_image=BUILDER, kaniko_image=KANIKO)
    assert pod(render(docker_spec(nodeSelector={"a": "b"}), settings=free))["nodeSelector"] == {
        "a": "b"
    }


def test_override_node_selector_wins() -> None:
    settings = JobSettings(
        executor="buildah",
        builder_image=BUILDER,
        overrides=BuildOverrides(node_selector={"pool": "forced"}),
    )
    spec = docker_spec(nodeSelector={"pool": "mine"})
    assert pod(render(spec, settings=settings))["nodeSelector"] == {"pool": "forced"}


def test_tolerations_defaults_then_overrides_without_duplicates() -> None:
    shared = Toleration(key="dedicated", operator="Equal", value="builds", effect="NoSchedule")
    settings = JobSettings(
        executor="buildah",
        builder_image=BUILDER,
        defaults=BuildDefaults(tolerations=(shared,)),
        overrides=BuildOverrides(
            tolerations=(
                shared,
                Toleration(
                    key="spot", operator="Exists", effect="NoExecute", toleration_seconds=60
                ),
            )
        ),
    )
    assert pod(render(docker_spec(), settings=settings))["tolerations"] == [
        {"key": "dedicated", "operator": "Equal", "value": "builds", "effect": "NoSchedule"},
        {"key": "spot", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60},
    ]


def test_host_network() -> None:
    settings = JobSettings(executor="buildah", builder_image=BUILDER, host_network=True)
    spec = pod(render(docker_spec(), settings=settings))
    assert spec["hostNetwork"] is True
    assert spec["dnsPolicy"] == "ClusterFirstWithHostNet"


# --- executor choice and errors ---------------------------------------------------------


def test_executor_from_settings_and_annotation() -> None:
    plain = build(docker_spec())
    assert executor_for(plain, SETTINGS, privileged_builds=True) == "buildah"
    assert executor_for(plain, KANIKO_SETTINGS) == "kaniko"
    to_kaniko = build(docker_spec(), annotations={EXECUTOR_ANNOTATION: "kaniko"})
    assert executor_for(to_kaniko, SETTINGS) == "kaniko"
    to_buildah = build(docker_spec(), annotations={EXECUTOR_ANNOTATION: "buildah"})
    assert executor_for(to_buildah, KANIKO_SETTINGS, privileged_builds=True) == "buildah"


@pytest.mark.parametrize("value", ["docker", "Kaniko", "buildah ", "kaniko;buildah"])
def test_bad_executor_annotation(value: str) -> None:
    with pytest.raises(RenderError) as caught:
        render(docker_spec(), annotations={EXECUTOR_ANNOTATION: value})
    assert caught.value.reason == "InvalidExecutor"
    assert repr(value) in caught.value.message


def test_kaniko_without_kaniko_image() -> None:
    settings = JobSettings(executor="buildah", builder_image=BUILDER)
    with pytest.raises(RenderError) as caught:
        render(docker_spec(), annotations={EXECUTOR_ANNOTATION: "kaniko"}, settings=settings)
    assert caught.value.reason == "InvalidExecutor"
    assert "kanikoImage" in caught.value.message


@pytest.mark.parametrize(
    ("hook", "argv"),
    [
        ({"script": "make test"}, ["/bin/sh", "-ic", "make test", "sh"]),
        ({"command": ["true"], "args": ["a b"]}, ["true", "a b"]),
        ({"args": ["x"]}, ["/bin/sh", "-c", 'exec "$@"', "sh", "x"]),
    ],
)
def test_kaniko_post_commit_hook_goes_to_the_fetch_step_as_json(
    hook: dict[str, Any], argv: list[str]
) -> None:
    job = render(docker_spec(postCommit=hook), settings=KANIKO_SETTINGS)
    assert json.loads(env(container(job, FETCH_CONTAINER))["HW_POST_COMMIT_RUN"]) == argv
    assert "HW_POST_COMMIT_ARGC" not in env(container(job, BUILD_CONTAINER))


def test_no_post_commit_hook_no_run_for_kaniko() -> None:
    job = render(docker_spec(), settings=KANIKO_SETTINGS)
    assert "HW_POST_COMMIT_RUN" not in env(container(job, FETCH_CONTAINER))
    buildah_job = render(docker_spec(postCommit={"script": "true"}))
    assert "HW_POST_COMMIT_RUN" not in env(container(buildah_job, FETCH_CONTAINER))


# --- isolation: the default executor runs under Pod Security baseline ---------------

# Pod Security Standards, baseline: capabilities a container may add.
BASELINE_CAPABILITIES = {
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
    "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}  # fmt: skip


def baseline_violations(pod_spec: Mapping[str, Any]) -> list[str]:
    """What Pod Security admission's baseline level would refuse in ``pod_spec``."""
    found = [f"{key}" for key in ("hostNetwork", "hostPID", "hostIPC") if pod_spec.get(key)]
    found += [f"hostPath {v['name']}" for v in pod_spec.get("volumes", []) if "hostPath" in v]
    seccomp = ((pod_spec.get("securityContext") or {}).get("seccompProfile") or {}).get("type")
    if seccomp not in (None, "RuntimeDefault", "Localhost"):
        found.append(f"seccomp {seccomp}")
    for c in [*pod_spec.get("initContainers", []), *pod_spec["containers"]]:
        context = c.get("securityContext") or {}
        if context.get("privileged"):
            found.append(f"{c['name']}: privileged")
        added = set((context.get("capabilities") or {}).get("add") or [])
        if added - BASELINE_CAPABILITIES:
            found.append(f"{c['name']}: adds {sorted(added - BASELINE_CAPABILITIES)}")
        if any(p.get("hostPort") for p in c.get("ports", [])):
            found.append(f"{c['name']}: hostPort")
    return found


@pytest.mark.parametrize("spec", [docker_spec(), docker_spec(postCommit={"script": "true"})])
def test_default_executor_pod_meets_pod_security_baseline(spec: dict[str, Any]) -> None:
    settings = JobSettings(builder_image=BUILDER, kaniko_image=KANIKO)  # the defaults
    assert settings.executor == "kaniko"
    for resolved, body in (
        (Resolved(output_image=OUTPUT, push_secret="p"), spec),
        (S2I_RESOLVED, source_spec()),
    ):
        pod_spec = pod(render(body, resolved, settings))
        assert baseline_violations(pod_spec) == []
        assert pod_spec["securityContext"] == {"seccompProfile": {"type": "RuntimeDefault"}}
        assert pod_spec["automountServiceAccountToken"] is False
        for c in [*pod_spec["initContainers"], *pod_spec["containers"]]:
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
            assert "NET_RAW" not in c["securityContext"]["capabilities"]["add"]
            assert "MKNOD" not in c["securityContext"]["capabilities"]["add"]


def test_the_check_above_can_fail() -> None:
    privileged = pod(render(docker_spec()))  # buildah, opted in
    assert baseline_violations(privileged) == ["build: privileged"]
    host = pod(
        render(
            docker_spec(),
            settings=JobSettings(builder_image=BUILDER, kaniko_image=KANIKO, host_network=True),
        )
    )
    assert baseline_violations(host) == ["hostNetwork"]


def test_buildah_is_refused_unless_the_namespace_is_opted_in() -> None:
    for asked, settings in (
        ({EXECUTOR_ANNOTATION: "buildah"}, KANIKO_SETTINGS),
        ({}, SETTINGS),  # an admin's default of buildah is gated too
    ):
        with pytest.raises(RenderError) as caught:
            render(docker_spec(), Resolved(output_image=OUTPUT), settings, annotations=asked)
        assert caught.value.reason == "PrivilegedBuildsNotAllowed"
        assert "build.headwater.dev/privileged-builds=true" in caught.value.message
        assert "namespace shop" in caught.value.message
    # Opted in: privileged, and RUN steps under OCI isolation.
    job = render(docker_spec(), Resolved(output_image=OUTPUT, privileged_builds=True),
                 KANIKO_SETTINGS, annotations={EXECUTOR_ANNOTATION: "buildah"})  # fmt: skip
    main = container(job, BUILD_CONTAINER)
    assert main["securityContext"] == {"privileged": True}
    assert env(main)["BUILDAH_ISOLATION"] == "oci"
    # kaniko never needs the opt-in.
    render(docker_spec(), Resolved(output_image=OUTPUT), KANIKO_SETTINGS)


def test_wants_privileged() -> None:
    buildah = {EXECUTOR_ANNOTATION: "buildah"}
    assert wants_privileged(build(docker_spec(), annotations=buildah), KANIKO_SETTINGS)
    assert wants_privileged(build(docker_spec()), SETTINGS)
    assert not wants_privileged(build(docker_spec()), KANIKO_SETTINGS)
    kaniko = {EXECUTOR_ANNOTATION: "kaniko"}
    assert not wants_privileged(build(docker_spec(), annotations=kaniko), SETTINGS)
    custom = {"strategy": {"type": "Custom", "customStrategy": {"from": {"name": "x"}}}}
    assert not wants_privileged(build(custom, annotations=buildah), SETTINGS)


def test_source_without_generated_dockerfile() -> None:
    with pytest.raises(RenderError) as caught:
        render(
            source_spec(), Resolved(privileged_builds=True, output_image=OUTPUT, base_image=BASE)
        )
    assert caught.value.reason == "InvalidStrategy"


def test_custom_expose_docker_socket_is_refused() -> None:
    with pytest.raises(RenderError) as caught:
        render(
            custom_spec(exposeDockerSocket=True),
            Resolved(privileged_builds=True, output_image=OUTPUT, base_image=BASE),
        )
    assert caught.value.reason == "InvalidStrategy"
    assert "exposeDockerSocket" in caught.value.message


def test_custom_without_image_is_refused() -> None:
    with pytest.raises(RenderError) as caught:
        render(custom_spec(), Resolved(privileged_builds=True, output_image=OUTPUT))
    assert caught.value.reason == "InvalidStrategy"


# --- kaniko -------------------------------------------------------------------------


def test_kaniko_arguments_full() -> None:
    settings = JobSettings(
        builder_image=BUILDER,
        executor="kaniko",
        kaniko_image=KANIKO,
        insecure_registries=("registry.local:5000",),
        defaults=BuildDefaults(labels={"vendor": "acme"}),
    )
    spec = with_block(
        docker_spec(),
        dockerfilePath="ci/Dockerfile",
        noCache=True,
        buildArgs=[{"name": "V", "value": "1 2"}],
    )
    spec["output"]["imageLabels"] = [{"name": "team", "value": "shop"}]
    context = f"{SOURCE_DIR}/web"
    args = kaniko_arguments(spec, RESOLVED, settings, context)
    assert args[:2] == [f"--context=dir://{context}", f"--dockerfile={context}/ci/Dockerfile"]
    assert f"--destination={OUTPUT}" in args
    assert "--digest-file=/dev/termination-log" in args
    assert "--no-push" not in args
    assert "--cache=false" in args
    assert "--build-arg=V=1 2" in args
    assert [a for a in args if a.startswith("--label=")] == [
        "--label=vendor=acme",
        "--label=team=shop",
    ]
    assert "--insecure-registry=registry.local:5000" in args
    assert "--skip-tls-verify-registry=registry.local:5000" in args
    assert {"--push-retry=2", "--image-download-retry=2"} <= set(args)
    # Every argument is one --flag[=value] word: nothing is split or shell-quoted.
    assert all(a.startswith("--") for a in args)


def test_kaniko_arguments_minimal_without_output() -> None:
    spec = docker_spec()
    del spec["output"]
    args = kaniko_arguments(
        spec, Resolved(privileged_builds=True, output_image=None), KANIKO_SETTINGS, SOURCE_DIR
    )
    assert "--no-push" in args
    assert not any(a.startswith(("--destination", "--digest-file")) for a in args)
    assert "--cache=false" not in args
    assert not any(a.startswith(("--insecure-registry", "--label", "--build-arg")) for a in args)


def test_kaniko_source_strategy_uses_generated_dockerfile() -> None:
    args = kaniko_arguments(source_spec(), S2I_RESOLVED, KANIKO_SETTINGS, S2I_DIR)
    assert args[:2] == [f"--context=dir://{S2I_DIR}", f"--dockerfile={S2I_DIR}/Dockerfile"]


def test_kaniko_build_container() -> None:
    spec = docker_spec()
    spec["source"]["contextDir"] = "web"
    job = render(
        spec,
        Resolved(privileged_builds=True, output_image=OUTPUT, push_secret="push-creds"),
        KANIKO_SETTINGS,
    )
    main = container(job, BUILD_CONTAINER)
    assert main["image"] == KANIKO
    assert "command" not in main  # the image's entrypoint is the executor
    assert main["args"] == kaniko_arguments(
        spec,
        Resolved(privileged_builds=True, output_image=OUTPUT),
        KANIKO_SETTINGS,
        f"{SOURCE_DIR}/web",
    )
    assert main["securityContext"]["allowPrivilegeEscalation"] is False
    assert main["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert "privileged" not in main["securityContext"]
    assert mounts(main)["push-secret"]["mountPath"] == f"{KANIKO_SECRET_DIR}/config.json"
    assert "storage" not in volumes(job)
    assert "storage" not in mounts(main)
    # The fetch step still runs in the builder image.
    assert container(job, FETCH_CONTAINER)["image"] == BUILDER


def test_kaniko_refuses_two_different_registry_secrets() -> None:
    resolved = Resolved(
        privileged_builds=True, output_image=OUTPUT, push_secret="push", pull_secret="pull"
    )
    with pytest.raises(RenderError) as raised:
        render(docker_spec(), resolved, KANIKO_SETTINGS)
    assert raised.value.reason == "InvalidExecutor"


def test_kaniko_fetch_appends_env_and_labels() -> None:
    settings = JobSettings(
        builder_image=BUILDER,
        executor="kaniko",
        kaniko_image=KANIKO,
        defaults=BuildDefaults(env=(("D", "default"), ("S", "default"))),
        overrides=BuildOverrides(env=(("O", "override"),)),
    )
    spec = with_block(
        docker_spec(),
        env=[{"name": "S", "value": "spec"}, {"name": "Q", "value": 'say "hi" \\o/'}],
    )
    fetch = env(container(render(spec, settings=settings), FETCH_CONTAINER))
    lines = fetch["HW_ENV_LINES"].split("\n")
    assert [dockerfile_env(line) for line in lines] == [
        ("D", "default"),
        ("S", "spec"),
        ("Q", 'say "hi" \\o/'),
        ("O", "override"),
    ]
    assert fetch["HW_APPEND_LABELS"] == "1"


def test_kaniko_fetch_without_env_has_no_env_lines() -> None:
    fetch = env(container(render(docker_spec(), settings=KANIKO_SETTINGS), FETCH_CONTAINER))
    assert "HW_ENV_LINES" not in fetch
    assert fetch["HW_APPEND_LABELS"] == "1"


def test_buildah_fetch_adds_env_but_no_labels() -> None:
    spec = with_block(docker_spec(), env=[{"name": "A", "value": "1"}])
    fetch = env(container(render(spec), FETCH_CONTAINER))
    assert dockerfile_env(fetch["HW_ENV_LINES"]) == ("A", "1")
    assert "HW_APPEND_LABELS" not in fetch  # buildah takes them as --label


@pytest.mark.parametrize("value", ["café", "costs $5 on $HOME", "${PATH}"])
def test_kaniko_appended_env_keeps_the_value(value: str) -> None:
    spec = with_block(docker_spec(), env=[{"name": "V", "value": value}])
    fetch = env(container(render(spec, settings=KANIKO_SETTINGS), FETCH_CONTAINER))
    assert dockerfile_env(fetch["HW_ENV_LINES"]) == ("V", value)


def test_kaniko_push_credentials_are_where_kaniko_reads_them() -> None:
    job = render(
        docker_spec(),
        Resolved(privileged_builds=True, output_image=OUTPUT, push_secret="p"),
        KANIKO_SETTINGS,
    )
    assert f"{KANIKO_SECRET_DIR}/config.json" in files_in(job, BUILD_CONTAINER, KANIKO_SECRET_DIR)


def test_kaniko_pull_credentials_are_mounted() -> None:
    job = render(
        docker_spec(),
        Resolved(privileged_builds=True, output_image=OUTPUT, pull_secret="q"),
        KANIKO_SETTINGS,
    )
    main = container(job, BUILD_CONTAINER)
    assert "pull-secret" in mounts(main)
    assert f"{KANIKO_SECRET_DIR}/config.json" in files_in(job, BUILD_CONTAINER, KANIKO_SECRET_DIR)


# --- Custom strategy ------------------------------------------------------------------


def test_custom_container_environment() -> None:
    spec = custom_spec(
        env=[{"name": "EXTRA", "value": "x"}],
        forcePull=True,
        secrets=[
            {"secretSource": {"name": "signing-key"}, "mountPath": "/var/run/signing"},
            {"secretSource": {"name": "netrc"}, "mountPath": "/etc/secret-volume"},
        ],
    )
    spec["source"]["contextDir"] = "app"
    spec["source"]["git"]["httpsProxy"] = "http://proxy:3129"
    resolved = Resolved(
        privileged_builds=True,
        output_image=OUTPUT,
        base_image=BASE,
        push_secret="push",
        pull_secret="pull",
    )
    settings = JobSettings(
        executor="buildah", builder_image=BUILDER, defaults=BuildDefaults(env=(("D", "1"),))
    )
    b = build(spec)
    job = render_job(b, resolved, settings)
    spec_pod = pod(job)
    assert spec_pod["initContainers"] == []
    main = container(job, BUILD_CONTAINER)
    assert main["image"] == BASE
    assert main["imagePullPolicy"] == "Always"
    assert "securityContext" not in main
    variables = env(main)
    snapshot = json.loads(variables["BUILD"])
    assert snapshot["apiVersion"] == API_VERSION
    assert snapshot["kind"] == "Build"
    assert snapshot["metadata"]["name"] == "web-3"
    assert snapshot["metadata"]["namespace"] == "shop"
    assert snapshot["metadata"]["uid"] == b["metadata"]["uid"]
    assert snapshot["metadata"]["labels"] == {LABEL_BUILDCONFIG: "web"}
    assert snapshot["spec"] == b["spec"]
    assert variables["OUTPUT_REGISTRY"] == "registry.example.com:5000"
    assert variables["SOURCE_REPOSITORY"] == variables["SOURCE_URI"] == spec["source"]["git"]["uri"]
    assert variables["SOURCE_REF"] == "main"
    assert variables["SOURCE_CONTEXT_DIR"] == "app"
    assert variables["HTTPS_PROXY"] == variables["https_proxy"] == "http://proxy:3129"
    assert variables["EXTRA"] == "x"
    assert variables["D"] == "1"
    assert variables["PUSH_DOCKERCFG_PATH"] == CUSTOM_PUSH_SECRET_DIR
    assert variables["PULL_DOCKERCFG_PATH"] == CUSTOM_PULL_SECRET_DIR
    main_mounts = mounts(main)
    assert main_mounts["push-secret"]["mountPath"] == CUSTOM_PUSH_SECRET_DIR
    assert main_mounts["pull-secret"]["mountPath"] == CUSTOM_PULL_SECRET_DIR
    assert main_mounts["custom-secret-0"] == {
        "name": "custom-secret-0",
        "mountPath": "/var/run/signing",
        "readOnly": True,
    }
    assert main_mounts["custom-secret-1"]["mountPath"] == "/etc/secret-volume"
    vols = volumes(job)
    assert vols["custom-secret-0"]["secret"]["secretName"] == "signing-key"
    assert vols["custom-secret-1"]["secret"]["secretName"] == "netrc"
    assert vols["push-secret"]["secret"]["secretName"] == "push"
    assert "storage" not in vols


def test_custom_without_output_push_or_git() -> None:
    spec = custom_spec()
    spec["source"] = {"type": "Binary"}
    del spec["output"]
    job = render(spec, Resolved(privileged_builds=True, output_image=None, base_image=BASE))
    main = container(job, BUILD_CONTAINER)
    variables = env(main)
    assert main["imagePullPolicy"] == "IfNotPresent"
    for absent in (
        "OUTPUT_IMAGE",
        "OUTPUT_REGISTRY",
        "SOURCE_URI",
        "SOURCE_REF",
        "PUSH_DOCKERCFG_PATH",
        "PULL_DOCKERCFG_PATH",
        "SOURCE_CONTEXT_DIR",
    ):
        assert absent not in variables
    assert set(mounts(main)) == {"workspace"}


def test_custom_ignores_the_executor() -> None:
    # A Custom build runs its own image: a bad executor annotation does not matter.
    job = render(
        custom_spec(),
        Resolved(privileged_builds=True, output_image=OUTPUT, base_image=BASE),
        annotations={EXECUTOR_ANNOTATION: "docker"},
    )
    assert container(job, BUILD_CONTAINER)["image"] == BASE


def test_custom_resources_apply_to_the_custom_container() -> None:
    spec = custom_spec()
    spec["resources"] = {"limits": {"memory": "1Gi"}}
    job = render(spec, Resolved(privileged_builds=True, output_image=OUTPUT, base_image=BASE))
    assert container(job, BUILD_CONTAINER)["resources"] == {"limits": {"memory": "1Gi"}}


def test_custom_output_image_is_relative_to_output_registry() -> None:
    job = render(
        custom_spec(), Resolved(privileged_builds=True, output_image=OUTPUT, base_image=BASE)
    )
    variables = env(container(job, BUILD_CONTAINER))
    assert variables["OUTPUT_REGISTRY"] == "registry.example.com:5000"
    assert variables["OUTPUT_IMAGE"] == "shop/web:latest"
    assert f"{variables['OUTPUT_REGISTRY']}/{variables['OUTPUT_IMAGE']}" == OUTPUT


def test_custom_output_registry_of_a_docker_hub_name() -> None:
    job = render(
        custom_spec(), Resolved(privileged_builds=True, output_image="acme/web:1", base_image=BASE)
    )
    variables = env(container(job, BUILD_CONTAINER))
    assert variables["OUTPUT_REGISTRY"] in ("", "docker.io")
    assert variables["OUTPUT_IMAGE"].endswith("acme/web:1")


# --- settings from the operator configuration --------------------------------------------


def test_settings_from_config_passes_everything_through() -> None:
    defaults = BuildDefaults(env=(("A", "1"),))
    overrides = BuildOverrides(labels={"x": "y"})
    config = Config(
        builder_image="example.com/builder:1",
        build_executor="kaniko",
        kaniko_image=KANIKO,
        insecure_registries=("a.local",),
        build_host_network=True,
        build_defaults=defaults,
        build_overrides=overrides,
    )
    settings = settings_from_config(config)
    assert settings.builder_image == "example.com/builder:1"
    assert settings.executor == "kaniko"
    assert settings.kaniko_image == KANIKO
    assert settings.insecure_registries == ("a.local",)
    assert settings.host_network is True
    assert settings.defaults is defaults
    assert settings.overrides is overrides


@pytest.mark.parametrize(
    ("registry", "insecure", "listed", "expected"),
    [
        ("registry.local:5000/team", True, ("a.local",), ("a.local", "registry.local:5000")),
        ("registry.local:5000/team", False, ("a.local",), ("a.local",)),
        ("registry.local:5000", True, ("registry.local:5000",), ("registry.local:5000",)),
        (None, True, (), ()),
        ("registry.local", True, (), ("registry.local",)),
    ],
)
def test_settings_from_config_insecure_registry(
    registry: str | None, insecure: bool, listed: tuple[str, ...], expected: tuple[str, ...]
) -> None:
    config = Config(registry=registry, registry_insecure=insecure, insecure_registries=listed)
    assert settings_from_config(config).insecure_registries == expected


def test_render_does_not_mutate_the_build() -> None:
    spec = with_block(docker_spec(), env=[{"name": "A", "value": "1"}])
    spec["source"]["secrets"] = [{"secret": {"name": "s"}, "destinationDir": "x"}]
    b = build(spec)
    snapshot = copy.deepcopy(b)
    render_job(b, RESOLVED, KANIKO_SETTINGS)
    render_job(b, RESOLVED, SETTINGS)
    assert b == snapshot


def test_nothing_from_the_build_is_spliced_into_the_scripts() -> None:
    marker = "MARKER-$(touch /tmp/pwned)-`id`"
    spec = with_block(
        docker_spec(postCommit={"script": marker}),
        env=[{"name": "E", "value": marker}],
        buildArgs=[{"name": "B", "value": marker}],
        dockerfilePath=marker.replace("/", "_"),
    )
    spec["source"]["git"]["uri"] = marker
    spec["source"]["contextDir"] = marker.replace("/", "_")
    job = render(spec)
    for c in [*pod(job)["initContainers"], *pod(job)["containers"]]:
        assert c["command"][2] in (FETCH_SCRIPT, BUILDAH_SCRIPT)
        assert not re.search("MARKER", c["command"][2])
