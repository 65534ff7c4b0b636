"""The Job that runs one Build (pure): its pod, containers, volumes and arguments.

The pod has two containers that share an emptyDir workspace:

- ``fetch-source`` (an init container): clones the Git source, or waits for
  the CLI's upload, writes an inline Dockerfile, copies Secrets and
  ConfigMaps into the context, and for S2I writes the generated Dockerfile;
- ``build``: kaniko (the default; or buildah where an admin allowed
  privileged builds) builds the context, runs the post-commit hook, pushes,
  and reports the digest; for the Custom strategy, the user's image with
  OpenShift's documented environment instead.

Isolation. kaniko runs unprivileged (root in its own container, no added
capabilities, no privilege escalation, the runtime's default seccomp
profile), so a build runs in a namespace that enforces Pod Security
``baseline``; its RUN steps run in that same container and see only its
/dev. buildah needs a privileged container: it runs only in namespaces an
admin labelled ``build.headwater.dev/privileged-builds=true``, and its RUN
steps run under OCI isolation (their own namespaces and /dev).

Every input reaches the scripts as an environment variable or argument;
nothing from a BuildConfig is spliced into shell text.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from headwater.builds.cache import build_cache_repository
from headwater.builds.model import (
    ANNOTATION_BUILD,
    ANNOTATION_BUILDCONFIG,
    API_VERSION,
    BUILD_CONTAINER,
    FETCH_CONTAINER,
    LABEL_BUILD,
    LABEL_BUILDCONFIG,
    buildconfig_of,
    job_name,
    label_value,
)
from headwater.builds.s2i import dockerfile_quote
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
from headwater.config import BuildCache, BuildDefaults, BuildOverrides, Config, Toleration

Executor = Literal["buildah", "kaniko"]
EXECUTOR_ANNOTATION = "build.headwater.dev/executor"
PRIVILEGED_BUILDS_LABEL = "build.headwater.dev/privileged-builds"
"""Namespace label (set by an admin, ``"true"``) that allows the privileged buildah executor."""
# Capabilities each container keeps (all inside Pod Security baseline's allowed
# set); everything else, NET_RAW and MKNOD included, is dropped.
FETCH_CAPABILITIES = ("CHOWN", "DAC_OVERRIDE", "FOWNER")
KANIKO_CAPABILITIES = (
    # Unpacking layers and RUN steps as root: file ownership and modes...
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "SETFCAP",
    # ...USER switches (apt's _apt user, useradd), and stopping RUN step processes.
    "SETUID",
    "SETGID",
    "KILL",
    "NET_BIND_SERVICE",
)
# Mount paths, not secrets.
KANIKO_SECRET_DIR = "/kaniko/.docker"  # noqa: S105
CUSTOM_PUSH_SECRET_DIR = "/var/run/secrets/openshift.io/push"  # noqa: S105
CUSTOM_PULL_SECRET_DIR = "/var/run/secrets/openshift.io/pull"  # noqa: S105


class RenderError(ValueError):
    """The Build cannot run as specified; ``reason`` is the Build status reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class JobSettings:
    """Cluster-wide choices from the operator configuration."""

    builder_image: str
    executor: Executor = "kaniko"
    kaniko_image: str | None = None
    insecure_registries: tuple[str, ...] = ()
    """Registries pushed to and pulled from over plain HTTP / without TLS verification."""
    defaults: BuildDefaults = field(default_factory=BuildDefaults)
    overrides: BuildOverrides = field(default_factory=BuildOverrides)
    host_network: bool = False
    upload_timeout_seconds: int = 900
    cache: BuildCache = field(default_factory=BuildCache)
    """The registry layer cache (``buildCache``)."""


@dataclass(frozen=True)
class Resolved:
    """What the controller looked up for a Build before its Job can be rendered."""

    output_image: str | None
    """Push target (``registry/repo:tag``); None when the build has no output."""
    base_image: str | None = None
    """The strategy's ``from`` as a pull reference (None: the Dockerfile's own FROM)."""
    s2i_dockerfile: str | None = None
    s2i_environment_script: str = ""
    push_secret: str | None = None
    pull_secret: str | None = None
    privileged_builds: bool = False
    """The build's namespace carries ``PRIVILEGED_BUILDS_LABEL=true`` (buildah may run)."""


def _env(name: str, value: str) -> dict[str, str]:
    return {"name": name, "value": value}


def _pairs(entries: object) -> list[tuple[str, str]]:
    out = []
    for entry in entries or []:  # type: ignore[attr-defined]
        if isinstance(entry, Mapping) and entry.get("name"):
            out.append((str(entry["name"]), str(entry.get("value") or "")))
    return out


def _strategy_block(spec: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
    strategy = spec.get("strategy") or {}
    kind = str(strategy.get("type") or "Docker")
    key = {"Docker": "dockerStrategy", "Source": "sourceStrategy", "Custom": "customStrategy"}
    return kind, strategy.get(key.get(kind, "dockerStrategy")) or {}


def _safe_relative(path: str, what: str, reason: str) -> str:
    """A relative path that stays inside its directory, normalised; else RenderError."""
    if not path:
        return ""
    normalised = posixpath.normpath(path)
    if path.startswith("/") or normalised == ".." or normalised.startswith("../"):
        raise RenderError(reason, f"{what} {path!r} must be a relative path inside the source")
    return "" if normalised == "." else normalised


def wants_privileged(build: Mapping[str, Any], settings: JobSettings) -> bool:
    """Whether ``build`` asks for the privileged buildah executor (by annotation or default)."""
    spec = build.get("spec") or {}
    if _strategy_block(spec)[0] == "Custom":
        return False
    annotations = (build.get("metadata") or {}).get("annotations") or {}
    return (annotations.get(EXECUTOR_ANNOTATION) or settings.executor) == "buildah"


def executor_for(
    build: Mapping[str, Any], settings: JobSettings, privileged_builds: bool = False
) -> Executor:
    """The executor a build runs with; RenderError when it may not run here.

    ``privileged_builds``: the build's namespace is opted in to buildah.
    """
    metadata = build.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    chosen = annotations.get(EXECUTOR_ANNOTATION) or settings.executor
    if chosen not in ("buildah", "kaniko"):
        raise RenderError(
            "InvalidExecutor", f"{EXECUTOR_ANNOTATION} must be buildah or kaniko, not {chosen!r}"
        )
    if chosen == "kaniko" and not settings.kaniko_image:
        raise RenderError(
            "InvalidExecutor", "kaniko is asked for but the operator has no kanikoImage configured"
        )
    if chosen == "buildah" and not privileged_builds:
        raise RenderError(
            "PrivilegedBuildsNotAllowed",
            f"the buildah executor runs a privileged container and is allowed only in "
            f"namespaces an admin labelled {PRIVILEGED_BUILDS_LABEL}=true; namespace "
            f"{metadata.get('namespace')} is not: use the default executor, kaniko "
            f"(annotation {EXECUTOR_ANNOTATION}: kaniko), or ask an admin to opt the namespace in",
        )
    return "kaniko" if chosen == "kaniko" else "buildah"


def _restricted(capabilities: Sequence[str]) -> dict[str, Any]:
    """A container securityContext: no escalation, every capability dropped but ``capabilities``."""
    context: dict[str, Any] = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    if capabilities:
        context["capabilities"]["add"] = list(capabilities)
    return context


def _merged_env(
    strategy_env: Sequence[tuple[str, str]], settings: JobSettings
) -> list[tuple[str, str]]:
    """Build defaults, then the strategy's env, then overrides: later names win."""
    merged: dict[str, str] = dict(settings.defaults.env)
    merged.update(strategy_env)
    merged.update(settings.overrides.env)
    return list(merged.items())


def _image_labels(spec: Mapping[str, Any], settings: JobSettings) -> list[tuple[str, str]]:
    merged: dict[str, str] = dict(settings.defaults.labels)
    merged.update(_pairs((spec.get("output") or {}).get("imageLabels")))
    merged.update(settings.overrides.labels)
    return list(merged.items())


def cache_of(spec: Mapping[str, Any], resolved: Resolved, settings: JobSettings) -> str | None:
    """The registry layer cache repository the build reads and writes (None: no cache)."""
    return build_cache_repository(spec, resolved.output_image, settings.defaults, settings.cache)


def buildah_arguments(
    spec: Mapping[str, Any], resolved: Resolved, settings: JobSettings, context: str
) -> list[str]:
    """``buildah bud`` options for a Docker (or generated S2I) build."""
    kind, block = _strategy_block(spec)
    cache = cache_of(spec, resolved, settings)
    # RUN steps get runc containers of their own (OCI isolation) but share the
    # pod's network namespace ("host" from inside the pod): no CNI inside the pod.
    # With a cache, each step's layer is looked up in, and pushed to, the cache repository.
    args = ["--layers", "--cache-from", cache, "--cache-to", cache] if cache else ["--layers=false"]
    args += ["--format", "docker", "--network", "host"]
    if kind == "Source":
        args += ["-f", f"{S2I_DIR}/Dockerfile"]
    else:
        args += ["-f", posixpath.join(context, str(block.get("dockerfilePath") or "Dockerfile"))]
    if block.get("noCache"):
        args.append("--no-cache")
    args.append("--pull=always" if block.get("forcePull") else "--pull=true")
    for name, value in _pairs(block.get("buildArgs")):
        args += ["--build-arg", f"{name}={value}"]
    for name, value in _image_labels(spec, settings):
        args += ["--label", f"{name}={value}"]
    return args


KANIKO_RETRIES = 2
"""How often kaniko tries a registry call again (pulling a base image, pushing) before failing."""


def kaniko_arguments(
    spec: Mapping[str, Any], resolved: Resolved, settings: JobSettings, context: str
) -> list[str]:
    """The kaniko executor's arguments for a Docker (or generated S2I) build."""
    kind, block = _strategy_block(spec)
    dockerfile = (
        f"{S2I_DIR}/Dockerfile"
        if kind == "Source"
        else posixpath.join(context, str(block.get("dockerfilePath") or "Dockerfile"))
    )
    args = [f"--context=dir://{context}", f"--dockerfile={dockerfile}"]
    if resolved.output_image:
        args += [f"--destination={resolved.output_image}", "--digest-file=/dev/termination-log"]
    else:
        args.append("--no-push")
    cache = cache_of(spec, resolved, settings)
    if cache:
        # Cached RUN and COPY layers are pulled from, and new ones pushed to, the cache
        # repository; kaniko only warns when it cannot read or write it.
        args += ["--cache=true", f"--cache-repo={cache}"]
    elif block.get("noCache"):
        args.append("--cache=false")
    # forcePull needs nothing: kaniko pulls the base image from its registry on every build.
    for name, value in _pairs(block.get("buildArgs")):
        args.append(f"--build-arg={name}={value}")
    for name, value in _image_labels(spec, settings):
        args.append(f"--label={name}={value}")
    for registry in settings.insecure_registries:
        args += [f"--insecure-registry={registry}", f"--skip-tls-verify-registry={registry}"]
    # A registry that drops a connection for a moment fails neither the base image's pull
    # nor the push (kaniko backs off between tries); its check of push access is not retried.
    args += [f"--image-download-retry={KANIKO_RETRIES}", f"--push-retry={KANIKO_RETRIES}"]
    args.append("--verbosity=info")
    return args


def _post_commit_argv(spec: Mapping[str, Any]) -> list[str]:
    hook = spec.get("postCommit") or {}
    script, command, args = hook.get("script"), hook.get("command"), hook.get("args")
    if script:
        # OpenShift runs the script with `/bin/sh -ic`; args become $1...
        return ["/bin/sh", "-ic", str(script), "sh", *[str(a) for a in args or []]]
    if command:
        return [str(c) for c in command] + [str(a) for a in args or []]
    if args:
        # Without a command OpenShift runs the image's entrypoint with args; the
        # builder cannot read the new image's entrypoint here, so a shell runs them.
        return ["/bin/sh", "-c", 'exec "$@"', "sh", *[str(a) for a in args]]
    return []


def _split_registry(reference: str) -> tuple[str, str]:
    """``registry.example.com:5000/shop/web:1`` -> (``registry.example.com:5000``,
    ``shop/web:1``); a Docker Hub name keeps its whole text and gets ``docker.io``."""
    first, sep, rest = reference.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first, rest
    return "docker.io", reference


def _secret_volume(name: str, secret: str) -> dict[str, Any]:
    return {"name": name, "secret": {"secretName": secret, "defaultMode": 0o400}}


def _resources(spec: Mapping[str, Any], settings: JobSettings) -> dict[str, Any]:
    own = spec.get("resources") or {}
    out: dict[str, Any] = {}
    for kind in ("requests", "limits"):
        merged = dict(getattr(settings.defaults.resources, kind))
        merged.update(own.get(kind) or {})
        merged.update(getattr(settings.overrides.resources, kind))
        if merged:
            out[kind] = merged
    return out


def _tolerations(settings: JobSettings) -> list[dict[str, Any]]:
    seen: list[Toleration] = list(settings.defaults.tolerations)
    seen += [t for t in settings.overrides.tolerations if t not in seen]
    return [t.to_kubernetes() for t in seen]


def _node_selector(spec: Mapping[str, Any], settings: JobSettings) -> dict[str, str]:
    selector = dict(settings.defaults.node_selector)
    selector.update(spec.get("nodeSelector") or {})
    selector.update(settings.overrides.node_selector)
    return selector


def _proxy_env(git: Mapping[str, Any]) -> list[dict[str, str]]:
    env = []
    for field_name, names in (
        ("httpProxy", ("HTTP_PROXY", "http_proxy")),
        ("httpsProxy", ("HTTPS_PROXY", "https_proxy")),
        ("noProxy", ("NO_PROXY", "no_proxy")),
    ):
        if git.get(field_name):
            env += [_env(n, str(git[field_name])) for n in names]
    return env


def _fetch_container(
    spec: Mapping[str, Any],
    resolved: Resolved,
    settings: JobSettings,
    executor: Executor,
    context_dir: str,
    inputs: list[tuple[str, str]],
) -> dict[str, Any]:
    source = spec.get("source") or {}
    kind, block = _strategy_block(spec)
    git = source.get("git") or {}
    revision_commit = (((spec.get("revision") or {}).get("git")) or {}).get("commit")
    env = [
        _env("HOME", "/tmp/home"),  # noqa: S108 - inside the build pod
        _env("HW_SOURCE_TYPE", str(source.get("type") or "None")),
        _env("HW_STRATEGY", kind),
        _env("HW_CONTEXT_DIR", context_dir),
        _env("HW_UPLOAD_TIMEOUT", str(settings.upload_timeout_seconds)),
    ]
    if git:
        env.append(_env("HW_GIT_URI", str(git.get("uri") or "")))
        if git.get("ref"):
            env.append(_env("HW_GIT_REF", str(git["ref"])))
        env += _proxy_env(git)
    if revision_commit:
        env.append(_env("HW_GIT_COMMIT", str(revision_commit)))
    if source.get("dockerfile") is not None:
        env.append(_env("HW_DOCKERFILE", str(source["dockerfile"])))
    env.append(_env("HW_DOCKERFILE_PATH", str(block.get("dockerfilePath") or "Dockerfile")))
    if kind == "Docker" and resolved.base_image:
        env.append(_env("HW_FROM", resolved.base_image))
    if executor == "kaniko":
        # No --label or --env on kaniko's side for what only the pod knows (the
        # commit): the fetch step appends LABEL lines to the Dockerfile.
        env.append(_env("HW_APPEND_LABELS", "1"))
        if cache_of(spec, resolved, settings):
            # With --cache=true kaniko executes each LABEL twice (its cache pass, then the
            # build) and LabelCommand rewrites its own value with the resolved text, so a
            # value is unescaped twice (chainguard-dev/kaniko v1.25.6, pkg/commands/label.go).
            # tests/e2e/test_kaniko.py's commit labels test checks the image's labels.
            env.append(_env("HW_LABEL_RESOLUTIONS", "2"))
        hook = _post_commit_argv(spec)
        if hook:
            # The hook as an exec-form RUN (JSON: no shell text is made from it).
            env.append(_env("HW_POST_COMMIT_RUN", json.dumps(hook)))
    if kind == "Docker":
        variables = _merged_env(_pairs(block.get("env")), settings)
        for name, value in variables:
            if "\n" in value:
                raise RenderError(
                    "InvalidEnvironment", f"env {name}: a Dockerfile ENV cannot hold a newline"
                )
        if variables:
            lines = (f"ENV {dockerfile_quote(n)}={dockerfile_quote(v)}" for n, v in variables)
            env.append(_env("HW_ENV_LINES", "\n".join(lines)))
    if resolved.s2i_dockerfile is not None:
        env.append(_env("HW_S2I_DOCKERFILE", resolved.s2i_dockerfile))
        env.append(_env("HW_S2I_ENVIRONMENT_SCRIPT", resolved.s2i_environment_script))
    for index, (mount, destination) in enumerate(inputs):
        env.append(_env(f"HW_INPUT_{index}", f"{mount}|{destination}"))
    mounts: list[dict[str, Any]] = [{"name": "workspace", "mountPath": WORKSPACE}]
    source_secret = (source.get("sourceSecret") or {}).get("name")
    if source_secret:
        mounts.append({"name": "source-secret", "mountPath": SOURCE_SECRET_DIR, "readOnly": True})
    for index, _ in enumerate(inputs):
        mounts.append(
            {"name": f"input-{index}", "mountPath": f"{INPUTS_DIR}/{index}", "readOnly": True}
        )
    return {
        "name": FETCH_CONTAINER,
        "image": settings.builder_image,
        "command": ["/bin/sh", "-c", FETCH_SCRIPT],
        "env": env,
        "volumeMounts": mounts,
        "securityContext": _restricted(FETCH_CAPABILITIES),
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }


def _build_container(
    spec: Mapping[str, Any],
    resolved: Resolved,
    settings: JobSettings,
    executor: Executor,
    context: str,
) -> dict[str, Any]:
    kind, _ = _strategy_block(spec)
    build_context = S2I_DIR if kind == "Source" else context
    hook = _post_commit_argv(spec)
    mounts: list[dict[str, Any]] = [{"name": "workspace", "mountPath": WORKSPACE}]
    if executor == "kaniko":
        # kaniko reads one file, <DOCKER_CONFIG>/config.json: the push secret's, else
        # the pull secret's; two different secrets cannot both be given to it.
        if (
            resolved.push_secret
            and resolved.pull_secret
            and (resolved.push_secret != resolved.pull_secret)
        ):
            raise RenderError(
                "InvalidExecutor",
                "kaniko reads a single registry config: give pushSecret and pullSecret the same "
                "secret (holding both registries), or use buildah for this build",
            )
        for volume, secret in (
            ("push-secret", resolved.push_secret),
            ("pull-secret", resolved.pull_secret),
        ):
            if secret:
                mounts.append(
                    {
                        "name": volume,
                        "mountPath": f"{KANIKO_SECRET_DIR}/config.json",
                        "subPath": ".dockerconfigjson",
                        "readOnly": True,
                    }
                )
                break
        assert settings.kaniko_image is not None
        return {
            "name": BUILD_CONTAINER,
            "image": settings.kaniko_image,
            "args": kaniko_arguments(spec, resolved, settings, build_context),
            "volumeMounts": mounts,
            # kaniko unpacks images over its own root: uid 0, but nothing more.
            "securityContext": _restricted(KANIKO_CAPABILITIES),
            "terminationMessagePolicy": "FallbackToLogsOnError",
        }
    env = [
        # RUN steps and the post-commit hook in their own namespaces and /dev (runc),
        # not a chroot that would see this privileged container's /dev.
        _env("BUILDAH_ISOLATION", "oci"),
        _env("HW_CONTEXT", build_context),
        _env("HW_INSECURE_REGISTRIES", " ".join(settings.insecure_registries)),
    ]
    if resolved.output_image:
        env.append(_env("HW_OUTPUT", resolved.output_image))
    cache = cache_of(spec, resolved, settings)
    if cache:
        env.append(_env("HW_CACHE", cache))
    if hook:
        env.append(_env("HW_POST_COMMIT_ARGC", str(len(hook))))
        env += [_env(f"HW_POST_COMMIT_ARG_{i}", arg) for i, arg in enumerate(hook)]
    mounts.append({"name": "storage", "mountPath": "/var/lib/containers"})
    if resolved.push_secret:
        mounts.append({"name": "push-secret", "mountPath": PUSH_SECRET_DIR, "readOnly": True})
    if resolved.pull_secret:
        mounts.append({"name": "pull-secret", "mountPath": PULL_SECRET_DIR, "readOnly": True})
    return {
        "name": BUILD_CONTAINER,
        "image": settings.builder_image,
        "command": ["/bin/sh", "-c", BUILDAH_SCRIPT, "buildah-build"],
        "args": buildah_arguments(spec, resolved, settings, build_context),
        "env": env,
        "volumeMounts": mounts,
        # buildah needs mounts and runc inside the pod: an admin's opt-in (executor_for).
        "securityContext": {"privileged": True},
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }


def _custom_container(
    build: Mapping[str, Any], spec: Mapping[str, Any], resolved: Resolved, settings: JobSettings
) -> dict[str, Any]:
    """OpenShift's documented environment for a custom builder image."""
    _, block = _strategy_block(spec)
    if block.get("exposeDockerSocket"):
        raise RenderError(
            "InvalidStrategy", "customStrategy.exposeDockerSocket is not supported (no Docker here)"
        )
    if not resolved.base_image:
        raise RenderError("InvalidStrategy", "customStrategy.from names no image")
    source = spec.get("source") or {}
    git = source.get("git") or {}
    metadata = build.get("metadata") or {}
    snapshot = {
        "apiVersion": API_VERSION,
        "kind": "Build",
        "metadata": {
            k: metadata.get(k) for k in ("name", "namespace", "uid", "labels", "annotations")
        },
        "spec": dict(spec),
    }
    env = [_env("BUILD", json.dumps(snapshot, separators=(",", ":")))]
    if resolved.output_image:
        # As OpenShift: builders push to $OUTPUT_REGISTRY/$OUTPUT_IMAGE.
        registry, image = _split_registry(resolved.output_image)
        env += [_env("OUTPUT_IMAGE", image), _env("OUTPUT_REGISTRY", registry)]
    if git:
        env += [
            _env("SOURCE_REPOSITORY", str(git.get("uri") or "")),
            _env("SOURCE_URI", str(git.get("uri") or "")),
        ]
        if git.get("ref"):
            env.append(_env("SOURCE_REF", str(git["ref"])))
        env += _proxy_env(git)
    if source.get("contextDir"):
        env.append(_env("SOURCE_CONTEXT_DIR", str(source["contextDir"])))
    mounts: list[dict[str, Any]] = [{"name": "workspace", "mountPath": WORKSPACE}]
    if resolved.push_secret:
        env.append(_env("PUSH_DOCKERCFG_PATH", CUSTOM_PUSH_SECRET_DIR))
        mounts.append(
            {"name": "push-secret", "mountPath": CUSTOM_PUSH_SECRET_DIR, "readOnly": True}
        )
    if resolved.pull_secret:
        env.append(_env("PULL_DOCKERCFG_PATH", CUSTOM_PULL_SECRET_DIR))
        mounts.append(
            {"name": "pull-secret", "mountPath": CUSTOM_PULL_SECRET_DIR, "readOnly": True}
        )
    for index, entry in enumerate(block.get("secrets") or []):
        mounts.append(
            {
                "name": f"custom-secret-{index}",
                "mountPath": str(entry["mountPath"]),
                "readOnly": True,
            }
        )
    env += [_env(n, v) for n, v in _merged_env(_pairs(block.get("env")), settings)]
    return {
        "name": BUILD_CONTAINER,
        "image": resolved.base_image,
        "imagePullPolicy": "Always" if block.get("forcePull") else "IfNotPresent",
        "env": env,
        "volumeMounts": mounts,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }


def render_job(
    build: Mapping[str, Any], resolved: Resolved, settings: JobSettings
) -> dict[str, Any]:
    """The Job for ``build``; raises RenderError when the Build cannot run as specified."""
    metadata = build.get("metadata") or {}
    spec = build.get("spec") or {}
    name = str(metadata["name"])
    kind, block = _strategy_block(spec)
    source = spec.get("source") or {}
    context_dir = _safe_relative(
        str(source.get("contextDir") or ""), "contextDir", "InvalidContextDirectory"
    )
    _safe_relative(
        str(block.get("dockerfilePath") or ""), "dockerfilePath", "InvalidContextDirectory"
    )
    context = posixpath.join(SOURCE_DIR, context_dir) if context_dir else SOURCE_DIR
    for field_name in ("env", "buildArgs"):
        for entry in block.get(field_name) or []:
            if isinstance(entry, Mapping) and entry.get("valueFrom"):
                raise RenderError(
                    "InvalidEnvironment",
                    f"{field_name} {entry.get('name')}: valueFrom is not supported; use value",
                )
    volumes: list[dict[str, Any]] = [{"name": "workspace", "emptyDir": {}}]
    inputs: list[tuple[str, str]] = []
    # A Custom builder fetches its own source: no inputs or source secret for it.
    fetched = kind != "Custom"
    for entry in source.get("secrets") or [] if fetched else []:
        destination = _safe_relative(
            str(entry.get("destinationDir") or ""), "destinationDir", "InvalidContextDirectory"
        )
        volumes.append(_secret_volume(f"input-{len(inputs)}", str(entry["secret"]["name"])))
        inputs.append((f"{INPUTS_DIR}/{len(inputs)}", destination))
    for entry in source.get("configMaps") or [] if fetched else []:
        destination = _safe_relative(
            str(entry.get("destinationDir") or ""), "destinationDir", "InvalidContextDirectory"
        )
        volumes.append(
            {"name": f"input-{len(inputs)}", "configMap": {"name": str(entry["configMap"]["name"])}}
        )
        inputs.append((f"{INPUTS_DIR}/{len(inputs)}", destination))
    source_secret = (source.get("sourceSecret") or {}).get("name")
    if source_secret and fetched:
        volumes.append(_secret_volume("source-secret", str(source_secret)))
    if resolved.push_secret:
        volumes.append(_secret_volume("push-secret", resolved.push_secret))
    if resolved.pull_secret:
        volumes.append(_secret_volume("pull-secret", resolved.pull_secret))

    init_containers: list[dict[str, Any]] = []
    if kind == "Custom":
        container = _custom_container(build, spec, resolved, settings)
        for index, entry in enumerate(block.get("secrets") or []):
            volumes.append(
                _secret_volume(f"custom-secret-{index}", str(entry["secretSource"]["name"]))
            )
    else:
        executor = executor_for(build, settings, resolved.privileged_builds)
        if kind == "Source" and resolved.s2i_dockerfile is None:
            raise RenderError("InvalidStrategy", "the S2I Dockerfile was not generated")
        init_containers.append(
            _fetch_container(spec, resolved, settings, executor, context_dir, inputs)
        )
        container = _build_container(spec, resolved, settings, executor, context)
        if executor == "buildah":
            volumes.append({"name": "storage", "emptyDir": {}})
    resources = _resources(spec, settings)
    if resources:
        container["resources"] = resources
    labels = {LABEL_BUILD: label_value(name)}
    annotations = {ANNOTATION_BUILD: name}
    bc = buildconfig_of(build)
    if bc:
        labels[LABEL_BUILDCONFIG] = label_value(bc)
        annotations[ANNOTATION_BUILDCONFIG] = bc
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        # A build runs user code: it gets no API credentials.
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "serviceAccountName": str(spec.get("serviceAccount") or "default"),
        # The runtime's default seccomp profile (no mount, unshare, keyctl, bpf...).
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "initContainers": init_containers,
        "containers": [container],
        "volumes": volumes,
    }
    selector = _node_selector(spec, settings)
    if selector:
        pod_spec["nodeSelector"] = selector
    tolerations = _tolerations(settings)
    if tolerations:
        pod_spec["tolerations"] = tolerations
    if settings.host_network:
        pod_spec["hostNetwork"] = True
        pod_spec["dnsPolicy"] = "ClusterFirstWithHostNet"
    job_spec: dict[str, Any] = {
        "backoffLimit": 0,
        "template": {"metadata": {"labels": labels, "annotations": annotations}, "spec": pod_spec},
    }
    deadline = spec.get("completionDeadlineSeconds")
    if deadline:
        job_spec["activeDeadlineSeconds"] = int(deadline)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(name),
            "namespace": metadata.get("namespace"),
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": "Build",
                    "name": name,
                    "uid": metadata.get("uid"),
                    "controller": True,
                }
            ],
        },
        "spec": job_spec,
    }


def settings_from_config(config: Config) -> JobSettings:
    """The Job renderer's view of the operator configuration."""
    return JobSettings(
        builder_image=config.builder_image,
        executor=config.build_executor,
        kaniko_image=config.kaniko_image,
        insecure_registries=config.insecure_hosts,
        defaults=config.build_defaults,
        overrides=config.build_overrides,
        host_network=config.build_host_network,
        cache=config.build_cache,
    )
