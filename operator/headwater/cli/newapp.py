"""``headwater new-app``: an application from a Git repository or an image, like ``oc new-app``.

From Git (``headwater new-app https://git.example.com/shop/web.git``) it makes
the seed's whole chain: an ImageStream the build writes to, a BuildConfig
(Git source, Docker or Source strategy, output ``<name>:latest``, triggers
ConfigChange, ImageChange when the strategy's ``from`` is an ImageStreamTag,
and a Generic webhook whose secret it generates), a Deployment that the
ImageStreamTag rolls out through the ``image.openshift.io/triggers``
annotation, and a Service. From an image reference
(``headwater new-app registry.example.com/shop/web:1.2.0``) it imports the
image into a stream and deploys it: the seed's "skip in-cluster builds" path.

Choices that differ from ``oc new-app``, and why:

- **Strategy.** oc clones the repository to look for a Dockerfile; most Git
  hosts offer nothing short of a clone, so here the strategy is what
  ``--strategy`` says, else Source when a builder is named (``builder~URL``
  or ``--image-stream``), else Docker.
- **Builders.** ``builder~URL`` takes ``[namespace/]stream[:tag]`` (an
  ImageStreamTag, ``latest`` by default) or a full image reference with a
  registry host (``quay.io/org/python:3.11``), which is imported into a
  stream of its own so that the ImageChange trigger can follow it. A bare
  ``python:3.11`` is a stream of this namespace, never Docker Hub.
- **The Deployment's image.** Built apps start with the image ``" "`` (a
  blank, as oc writes, so nothing is pulled from a guessed name) and the
  operator's workload trigger writes ``<registry>/<ns>/<name>@sha256:…``
  once the first build pushes; until then the pods wait with
  ``InvalidImageName``. Deployed images start with the reference given, so
  the app runs at once, and the trigger pins it to the imported digest.

Rendering is pure (:func:`render`); the command prints the manifests
(``-o yaml|json``, for GitOps) or creates them by server-side apply with the
field manager ``headwater-cli``, refusing when any of them exists already.
"""

from __future__ import annotations

import json
import re
import secrets
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import click

from headwater.cli.kube import cluster_options
from headwater.cli.tags import TagError, parse_stream_tag
from headwater.registry.reference import ReferenceError, parse_reference
from headwater.workloads.triggers import ANNOTATION_OPENSHIFT

Strategy = Literal["Docker", "Source"]

TRIGGER_ANNOTATION = ANNOTATION_OPENSHIFT
"""OpenShift's key, which Headwater honours: the same manifest works on both."""
PLACEHOLDER_IMAGE = " "
"""What oc writes for an image a trigger fills in: never pulled, never mistaken for a name."""
WEBHOOK_SECRET_KEY = "WebHookSecretKey"  # noqa: S105 - the Secret's key name, not a secret
FIELD_MANAGER = "headwater-cli"
DEFAULT_PORT = 8080
_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
# A Service name is a DNS-1035 label (63); the longest derived name is
# "<name>-generic-webhook-secret", a Secret name, which may be longer.
_NAME_MAX = 58
_GIT_SCHEMES = ("http://", "https://", "git://", "ssh://", "git+ssh://", "file://")
_SCP = re.compile(r"^[A-Za-z0-9_.-]+@[A-Za-z0-9.-]+:[^\s]+$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


class NewAppError(ValueError):
    """A bad argument; the message is the line the CLI prints."""


@dataclass(frozen=True)
class GitSource:
    uri: str
    ref: str | None = None
    context_dir: str | None = None


@dataclass(frozen=True)
class Builder:
    """The strategy's ``from``: an ImageStreamTag, or an image imported into a stream first."""

    stream: str
    tag: str
    namespace: str | None = None
    """The stream's namespace when not the app's own."""
    image: str | None = None
    """An image reference the stream ``stream`` imports as ``tag`` (created with the app)."""

    @property
    def stream_tag(self) -> str:
        return f"{self.stream}:{self.tag}"


@dataclass(frozen=True)
class App:
    """Everything ``new-app`` makes, decided; :func:`render` turns it into manifests."""

    name: str
    namespace: str | None = None
    git: GitSource | None = None
    image: str | None = None
    """Deploy this image reference (no build) when there is no ``git``."""
    tag: str = "latest"
    """The app stream's tag: the build's output, or the imported image's tag."""
    strategy: Strategy = "Docker"
    builder: Builder | None = None
    ports: tuple[int, ...] = (DEFAULT_PORT,)
    service: bool = True
    env: tuple[tuple[str, str], ...] = ()
    build_env: tuple[tuple[str, str], ...] = ()
    insecure: bool = False
    """Import over plain HTTP or unverified TLS (the image, or a builder image)."""
    webhook_secret: str = field(default="", repr=False)

    @property
    def labels(self) -> dict[str, str]:
        return {"app": self.name, "app.kubernetes.io/name": self.name}

    @property
    def webhook_secret_name(self) -> str:
        return f"{self.name}-generic-webhook-secret"


# --- arguments ----------------------------------------------------------------------------------


def is_git_url(text: str) -> bool:
    """A Git repository URL (any scheme git clones, or scp-like ``git@host:path``)."""
    if text.startswith(_GIT_SCHEMES):
        return True
    # `repo@sha256:...` is an image digest, not `user@host:path`.
    return bool(_SCP.match(text)) and "@sha256:" not in text


def parse_git(text: str, ref: str | None, context_dir: str | None) -> GitSource:
    """``URL[#ref]``, as oc takes it; ``--ref`` must agree with a ``#ref``."""
    uri, _, fragment = text.partition("#")
    if fragment and ref and fragment != ref:
        raise NewAppError(f"{text!r} names ref {fragment!r} and --ref says {ref!r}: give one")
    return GitSource(uri=uri, ref=ref or fragment or None, context_dir=context_dir or None)


def derive_name(text: str) -> str:
    """A DNS label from the repository's or image's last path component, or ``""``."""
    base = text.partition("#")[0].rstrip("/")
    if not is_git_url(base):
        try:
            base = parse_reference(base).path
        except ReferenceError:
            return ""
    last = re.split(r"[/:]", base)[-1].removesuffix(".git").lower()
    last = re.sub(r"[^a-z0-9-]+", "-", last).strip("-")
    last = re.sub(r"^[^a-z]+", "", last)[:_NAME_MAX].rstrip("-")
    return last if _NAME.match(last) else ""


def check_name(name: str) -> str:
    if len(name) > _NAME_MAX or not _NAME.match(name):
        raise NewAppError(
            f"--name {name!r}: use lower-case letters, digits and '-', starting with a letter,"
            f" at most {_NAME_MAX} characters"
        )
    return name


def parse_builder(text: str, app_name: str) -> Builder:
    """``[namespace/]stream[:tag]``, or an image reference with a registry host.

    An image is imported into a stream named after its repository (``-builder``
    appended when that is the app's own name).
    """
    first = text.split("/", 1)[0]
    has_host = "/" in text and ("." in first or ":" in first or first == "localhost")
    if has_host or "@" in text:
        try:
            reference = parse_reference(text)
        except ReferenceError as exc:
            raise NewAppError(f"builder {text!r}: {exc}") from None
        stream = derive_name(text) or "builder"
        if stream == app_name:
            stream = f"{stream}-builder"[:_NAME_MAX]
        return Builder(stream=stream, tag=reference.tag or "latest", image=str(reference))
    try:
        target = parse_stream_tag(text, "", default_tag="latest")
    except TagError:
        raise NewAppError(
            f"builder {text!r} is neither [namespace/]imagestream[:tag] nor an image reference"
            " with a registry host (e.g. quay.io/org/python:3.11)"
        ) from None
    return Builder(stream=target.stream, tag=target.tag, namespace=target.namespace or None)


def parse_env(values: Sequence[str], option: str) -> tuple[tuple[str, str], ...]:
    pairs = []
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not _ENV_NAME.match(key):
            raise NewAppError(f"{option} {value!r}: expected NAME=VALUE")
        pairs.append((key, rest))
    return tuple(pairs)


def plan_app(
    source: str,
    *,
    name: str | None = None,
    namespace: str | None = None,
    strategy: str | None = None,
    image_stream: str | None = None,
    ref: str | None = None,
    context_dir: str | None = None,
    ports: Sequence[int] = (DEFAULT_PORT,),
    service: bool = True,
    env: Sequence[str] = (),
    build_env: Sequence[str] = (),
    insecure: bool = False,
    webhook_secret: str | None = None,
) -> App:
    """The App for the command line's arguments; NewAppError says what is wrong with them."""
    builder_text, tilde, rest = source.partition("~")
    if tilde:
        if image_stream:
            raise NewAppError("give the builder once: BUILDER~URL or --image-stream, not both")
        source, image_stream = rest, builder_text
    chosen_name = check_name(name) if name else derive_name(source)
    if not chosen_name:
        raise NewAppError(f"cannot derive a name from {source!r}: give --name")
    for port in ports:
        if not 1 <= port <= 65535:
            raise NewAppError(f"--port {port}: expected 1-65535")
    common: dict[str, Any] = {
        "name": chosen_name,
        "namespace": namespace,
        "ports": tuple(dict.fromkeys(ports)),
        "service": service and bool(ports),
        "env": parse_env(env, "--env"),
        "insecure": insecure,
    }
    if is_git_url(source):
        builder = parse_builder(image_stream, chosen_name) if image_stream else None
        kind: Strategy = "Source" if builder else "Docker"
        if strategy:
            kind = "Source" if strategy.lower() == "source" else "Docker"
        if kind == "Source" and builder is None:
            raise NewAppError(
                "the Source (S2I) strategy needs a builder: BUILDER~URL or --image-stream"
            )
        return App(
            **common,
            git=parse_git(source, ref, context_dir),
            strategy=kind,
            builder=builder,
            build_env=parse_env(build_env, "--build-env"),
            webhook_secret=webhook_secret or secrets.token_hex(20),
        )
    for given, option in (
        (strategy, "--strategy"),
        (image_stream, "--image-stream"),
        (ref, "--ref"),
        (context_dir, "--context-dir"),
        (build_env, "--build-env"),
    ):
        if given:
            raise NewAppError(f"{option} is for Git sources; {source!r} is deployed as an image")
    try:
        reference = parse_reference(source)
    except ReferenceError as exc:
        raise NewAppError(
            f"{source!r} is neither a Git URL nor an image reference: {exc}"
        ) from None
    return App(**common, image=str(reference), tag=reference.tag or "latest")


# --- rendering ----------------------------------------------------------------------------------


def _metadata(app: App, name: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if app.namespace:
        metadata["namespace"] = app.namespace
    metadata["labels"] = dict(app.labels)
    return metadata


def _stream(app: App, name: str, tags: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = {"lookupPolicy": {"local": False}}
    if tags:
        spec["tags"] = tags
    return {
        "apiVersion": "image.headwater.dev/v1",
        "kind": "ImageStream",
        "metadata": _metadata(app, name),
        "spec": spec,
    }


def _import_tag(tag: str, image: str, insecure: bool) -> dict[str, Any]:
    return {
        "name": tag,
        "from": {"kind": "DockerImage", "name": image},
        "importPolicy": {"insecure": insecure, "importMode": "Legacy"},
        "referencePolicy": {"type": "Source"},
    }


def _env(pairs: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"name": k, "value": v} for k, v in pairs]


def _buildconfig(app: App) -> dict[str, Any]:
    assert app.git is not None
    git: dict[str, Any] = {"uri": app.git.uri}
    if app.git.ref:
        git["ref"] = app.git.ref
    source: dict[str, Any] = {"type": "Git", "git": git}
    if app.git.context_dir:
        source["contextDir"] = app.git.context_dir
    block: dict[str, Any] = {}
    if app.builder is not None:
        builder_ref: dict[str, Any] = {"kind": "ImageStreamTag", "name": app.builder.stream_tag}
        if app.builder.namespace:
            builder_ref["namespace"] = app.builder.namespace
        block["from"] = builder_ref
    if app.build_env:
        block["env"] = _env(app.build_env)
    strategy_key = "sourceStrategy" if app.strategy == "Source" else "dockerStrategy"
    triggers: list[dict[str, Any]] = [
        {"type": "Generic", "generic": {"secretReference": {"name": app.webhook_secret_name}}},
        {"type": "ConfigChange"},
    ]
    if app.builder is not None:
        # Rebuild when the builder (or base) image moves, as oc sets it up.
        triggers.append({"type": "ImageChange", "imageChange": {}})
    return {
        "apiVersion": "build.headwater.dev/v1",
        "kind": "BuildConfig",
        "metadata": _metadata(app, app.name),
        "spec": {
            "source": source,
            "strategy": {"type": app.strategy, strategy_key: block},
            "output": {"to": {"kind": "ImageStreamTag", "name": f"{app.name}:{app.tag}"}},
            "triggers": triggers,
        },
    }


def trigger_annotation(stream_tag: str, container: str) -> str:
    """The ``image.openshift.io/triggers`` value that lets ``stream_tag`` set the image."""
    return json.dumps(
        [
            {
                "from": {"kind": "ImageStreamTag", "name": stream_tag},
                "fieldPath": f'spec.template.spec.containers[?(@.name=="{container}")].image',
                "paused": False,
            }
        ],
        separators=(",", ":"),
    )


def _deployment(app: App) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": app.name,
        "image": app.image if app.git is None and app.image else PLACEHOLDER_IMAGE,
    }
    if app.ports:
        container["ports"] = [{"containerPort": p, "protocol": "TCP"} for p in app.ports]
    if app.env:
        container["env"] = _env(app.env)
    metadata = _metadata(app, app.name)
    metadata["annotations"] = {
        TRIGGER_ANNOTATION: trigger_annotation(f"{app.name}:{app.tag}", app.name)
    }
    # `deployment: <name>` selects the pods, as oc does: `app` may also be on build
    # pods and other objects of the app, which a Service must not send traffic to.
    selector = {"deployment": app.name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": {**selector, **app.labels}},
                "spec": {"containers": [container]},
            },
        },
    }


def _service(app: App) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(app, app.name),
        "spec": {
            "selector": {"deployment": app.name},
            "ports": [
                {"name": f"{p}-tcp", "port": p, "targetPort": p, "protocol": "TCP"}
                for p in app.ports
            ],
        },
    }


def render(app: App) -> list[dict[str, Any]]:
    """The manifests, in the order they are created (what others refer to first)."""
    objects: list[dict[str, Any]] = []
    if app.git is None:
        assert app.image is not None
        objects.append(_stream(app, app.name, [_import_tag(app.tag, app.image, app.insecure)]))
    else:
        builder = app.builder
        if builder is not None and builder.image is not None:
            objects.append(
                _stream(
                    app, builder.stream, [_import_tag(builder.tag, builder.image, app.insecure)]
                )
            )
        objects.append(_stream(app, app.name, []))
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": _metadata(app, app.webhook_secret_name),
                "type": "Opaque",
                "stringData": {WEBHOOK_SECRET_KEY: app.webhook_secret},
            }
        )
        objects.append(_buildconfig(app))
    objects.append(_deployment(app))
    if app.service:
        objects.append(_service(app))
    return objects


def describe(obj: dict[str, Any]) -> str:
    """``kind.group "name"``, as kubectl names what it changed."""
    group = str(obj["apiVersion"]).rpartition("/")[0]
    kind = str(obj["kind"]).lower()
    return (
        f'{kind}.{group} "{obj["metadata"]["name"]}"'
        if group
        else f'{kind} "{obj["metadata"]["name"]}"'
    )


def next_steps(app: App, namespace: str, *, builder_missing: bool = False) -> list[str]:
    """What to run next, printed after the objects are created.

    ``builder_missing``: the builder ImageStreamTag has no image, so builds would wait.
    """
    ns = f"-n {namespace}"
    lines = []
    if app.git is not None:
        starts = (
            "A build starts (ConfigChange trigger) once the builder tag has an image;"
            if app.builder is not None
            # A Docker build has no builder tag: its base images come from the Dockerfile.
            else "A build starts now (ConfigChange trigger);"
        )
        lines += [
            f"{starts} follow it: headwater logs -f bc/{app.name} {ns}",
            f"Build again later: headwater start-build {app.name} {ns}",
            f"The Deployment rolls out when {app.name}:{app.tag} gets its image"
            " (its pods wait with InvalidImageName until then).",
            f"Generic webhook URL: headwater webhooks {app.name} {ns} (its secret:"
            f" kubectl get secret {app.webhook_secret_name} {ns}"
            f" -o jsonpath='{{.data.{WEBHOOK_SECRET_KEY}}}' | base64 -d)",
        ]
        if builder_missing and app.builder is not None:
            where = app.builder.namespace or namespace
            lines.append(
                f"Builds wait for the builder {where}/{app.builder.stream_tag}, which has no"
                f" image: headwater import-image {app.builder.stream_tag}"
                f" --from=<builder image> --confirm -n {where}"
            )
    else:
        lines.append(
            f"{app.image} is imported into {app.name}:{app.tag}; the trigger pins the"
            f" Deployment to its digest: kubectl rollout status deployment/{app.name} {ns}"
        )
    if app.service:
        lines.append(f"Reach it: kubectl port-forward svc/{app.name} {app.ports[0]} {ns}")
    lines.append(f"Something stuck? headwater doctor {ns}")
    return lines


# --- the command ---------------------------------------------------------------------------------


@click.command("new-app")
@click.argument("source")
@click.option("--name", help="Name of every object (default: from the repository or image).")
@click.option(
    "--strategy",
    type=click.Choice(["docker", "source"], case_sensitive=False),
    help="Build strategy (default: source with a builder, else docker; the repo is not cloned).",
)
@click.option(
    "--image-stream",
    "-i",
    metavar="[NS/]IS[:TAG]",
    help="Builder (S2I) or base (Docker) image: an ImageStreamTag, or an image with its registry.",
)
@click.option("--ref", help="Git branch, tag or commit (or URL#ref).")
@click.option("--context-dir", help="Sub-directory of the repository to build.")
@click.option(
    "--port",
    "ports",
    type=int,
    multiple=True,
    default=[DEFAULT_PORT],
    show_default=True,
    help="Container port, repeatable; the Service exposes them.",
)
@click.option("--no-service", is_flag=True, help="Make no Service.")
@click.option("-e", "--env", multiple=True, metavar="NAME=VALUE", help="Container environment.")
@click.option("--build-env", multiple=True, metavar="NAME=VALUE", help="Build environment.")
@click.option(
    "--insecure-registry",
    is_flag=True,
    help="Import the image (or builder image) over plain HTTP or unverified TLS.",
)
@click.option(
    "-o",
    "--output",
    type=click.Choice(["yaml", "json"]),
    help="Print the manifests instead of creating them.",
)
@cluster_options
def new_app(
    source: str, name: str | None, strategy: str | None, image_stream: str | None,
    ref: str | None, context_dir: str | None, ports: tuple[int, ...], no_service: bool,
    env: tuple[str, ...], build_env: tuple[str, ...], insecure_registry: bool,
    output: str | None, namespace: str | None, context: str | None, kubeconfig: str | None,
) -> None:  # fmt: skip
    """Create an app from a Git repository or an image, like `oc new-app`.

    \b
    From Git (an ImageStream, a BuildConfig, a Deployment, a Service):
      headwater new-app https://git.example.com/shop/web.git          # Docker strategy
      headwater new-app nodejs-20~https://git.example.com/shop/web.git # S2I from nodejs-20:latest
      headwater new-app https://git.example.com/shop/web.git --strategy source \\
          --image-stream openshift/nodejs-20:latest --ref main --context-dir app
    From an image (imported into an ImageStream, then deployed):
      headwater new-app registry.example.com/shop/web:1.2.0 --name web
    For GitOps, print instead of creating:
      headwater new-app https://git.example.com/shop/web.git -o yaml > web.yaml

    The repository is not cloned: the strategy is --strategy, else Source when
    a builder is named, else Docker. Objects are labelled app=NAME and
    app.kubernetes.io/name=NAME and created by server-side apply (field manager
    headwater-cli); nothing is created when one of them exists already.

    Exit status: 0 created (or printed), 1 refused by the cluster, 2 usage errors.
    """
    try:
        app = plan_app(
            source, name=name, namespace=namespace if output else None, strategy=strategy,
            image_stream=image_stream, ref=ref, context_dir=context_dir, ports=ports,
            service=not no_service, env=env, build_env=build_env, insecure=insecure_registry,
        )  # fmt: skip
    except NewAppError as exc:
        raise click.UsageError(str(exc)) from None
    objects = render(app)
    if output == "json":
        click.echo(json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}, indent=2))
        return
    if output == "yaml":
        from headwater.cli.convert import dump_yaml

        click.echo(dump_yaml(objects), nl=False)
        if app.git is not None:
            click.echo(
                f"note: the output holds the generated webhook secret ({app.webhook_secret_name});"
                " keep it out of Git or let your secret tooling own it",
                err=True,
            )
        return
    create(app, objects, context, kubeconfig, namespace)


def create(
    app: App,
    objects: list[dict[str, Any]],
    context: str | None,
    kubeconfig: str | None,
    namespace: str | None,
) -> None:
    """Create ``objects`` by server-side apply, none of them when any exists."""
    from lightkube import codecs
    from lightkube.core.exceptions import ApiError

    import headwater.resources  # noqa: F401 - registers Headwater's kinds with lightkube's codec
    from headwater.cli.kube import connect
    from headwater.kube import is_gone

    client, chosen = connect(kubeconfig, context, namespace)
    # Typed loosely: lightkube's overloads want one resource class, these are several.
    resources: list[Any] = [
        codecs.from_dict({**obj, "metadata": {**obj["metadata"], "namespace": chosen}})
        for obj in objects
    ]
    existing = []
    for obj, resource in zip(objects, resources, strict=True):
        try:
            client.get(type(resource), obj["metadata"]["name"], namespace=chosen)
        except ApiError as exc:
            if is_gone(exc):
                continue
            raise click.ClickException(f"{chosen}: {exc.status.message}") from None
        existing.append(describe(obj))
    if existing:
        click.echo(f"error: already in namespace {chosen}: {', '.join(existing)}", err=True)
        click.echo("Delete them, or choose another --name.", err=True)
        sys.exit(1)
    click.echo(f"--> Creating resources with label app={app.name} in namespace {chosen} ...")
    for obj, resource in zip(objects, resources, strict=True):
        try:
            client.apply(resource, field_manager=FIELD_MANAGER)
        except ApiError as exc:
            click.echo(f"    error: {describe(obj)}: {exc.status.message}", err=True)
            sys.exit(1)
        click.echo(f"    {describe(obj)} created")
    click.echo("--> Success")
    for line in next_steps(app, chosen, builder_missing=_builder_missing(client, app, chosen)):
        click.echo(f"    {line}")


def _builder_missing(client: Any, app: App, namespace: str) -> bool:
    """Whether the app's ImageStreamTag builder has no image (an imported one comes later)."""
    from lightkube.core.exceptions import ApiError

    from headwater.imports.model import newest_item
    from headwater.kube import is_gone, plain_dict
    from headwater.resources import ImageStream

    builder = app.builder
    if builder is None or builder.image is not None:
        return False
    try:
        stream = plain_dict(
            client.get(ImageStream, builder.stream, namespace=builder.namespace or namespace)
        )
    except ApiError as exc:
        # Unknown (e.g. not allowed to read that namespace) is not reported as missing.
        return is_gone(exc)
    return newest_item(stream.get("status"), builder.tag) is None
