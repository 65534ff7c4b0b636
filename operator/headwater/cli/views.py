"""``get`` and ``describe``: ImageStreams, ImageStreamTags, BuildConfigs and Builds.

The tables and descriptions are pure (:mod:`headwater.cli.tables`,
:mod:`headwater.cli.describe`); this module fetches and prints. ImageStreamTags
are a view over ImageStream status (OpenShift serves them virtually), so
``get istag`` lists streams and ``-o yaml`` prints the view.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import click
from lightkube import ALL_NS, Client
from lightkube.core.exceptions import ApiError

from headwater.builds.model import LABEL_BUILDCONFIG, build_number, buildconfig_of, label_value
from headwater.cli.completion import complete_kinds, complete_names
from headwater.cli.describe import (
    describe_build,
    describe_buildconfig,
    describe_imagestream,
    describe_istag,
    events_section,
    verification_lines,
)
from headwater.cli.kinds import (
    BUILD,
    BUILDCONFIG,
    IMAGESTREAM,
    IMAGESTREAMTAG,
    Kind,
    KindError,
    kind_and_names,
)
from headwater.cli.kube import cluster_options, connect, operator_config
from headwater.cli.output import colour_enabled, phase_styler, render, spinner, table
from headwater.cli.selectors import Selector, SelectorError, parse_selector
from headwater.cli.tables import build_sort_key, header, istags, rows, status_column
from headwater.cli.tags import TagError, parse_stream_tag
from headwater.kube import Failure, classify, is_gone, plain_dict

OUTPUTS = ("name", "yaml", "json", "wide")


def _resource(kind: Kind) -> Any:
    from headwater.resources import Build, BuildConfig, ImageStream

    return {
        IMAGESTREAM.kind: ImageStream,
        IMAGESTREAMTAG.kind: ImageStream,
        BUILDCONFIG.kind: BuildConfig,
        BUILD.kind: Build,
    }[kind.kind]


def _name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def _not_found(kind: Kind, names: Sequence[str], namespace: str) -> click.ClickException:
    listed = ", ".join(f'"{n}"' for n in names)
    return click.ClickException(f"{kind.qualified} {listed} not found in namespace {namespace}")


def _selector(text: str | None) -> Selector | None:
    if text is None:
        return None
    try:
        return parse_selector(text)
    except SelectorError as exc:
        raise click.UsageError(str(exc)) from None


def _sorted(kind: Kind, objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def namespace(o: Mapping[str, Any]) -> str:
        return str((o.get("metadata") or {}).get("namespace", ""))

    if kind is BUILD:
        return sorted(objs, key=lambda o: (namespace(o), *build_sort_key(o)))
    return sorted(objs, key=lambda o: (namespace(o), _name(o)))


def list_objects(
    client: Client, kind: Kind, namespace: str, *, all_namespaces: bool = False,
    selector: Selector | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """Every object of the kind (ImageStreamTags: of every stream) in the namespace."""
    where = ALL_NS if all_namespaces else namespace
    found = [plain_dict(o) for o in client.list(_resource(kind), namespace=where, labels=selector)]
    if kind is IMAGESTREAMTAG:
        return _sorted(kind, [view for stream in found for view in istags(stream)])
    return _sorted(kind, found)


def get_objects(
    client: Client, kind: Kind, names: Sequence[str], namespace: str
) -> tuple[list[dict[str, Any]], list[str]]:
    """(the named objects found, the names not found); other API errors raise."""
    found, missing = [], []
    for name in names:
        if kind is IMAGESTREAMTAG:
            try:
                target = parse_stream_tag(name, namespace)
            except TagError as exc:
                raise click.UsageError(str(exc)) from None
            try:
                stream = plain_dict(
                    client.get(_resource(kind), target.stream, namespace=target.namespace)
                )
            except ApiError as exc:
                if not is_gone(exc):
                    raise
                missing.append(name)
                continue
            view = next((v for v in istags(stream) if _name(v) == str(target)), None)
            if view is None and any(t.get("name") == target.tag for t in _spec_tags(stream)):
                raise click.ClickException(
                    f"{target.namespace}/{target} has no image yet "
                    f"(headwater describe is {target.stream} says why)"
                )
            if view is None:
                missing.append(name)
            else:
                found.append(view)
            continue
        try:
            found.append(plain_dict(client.get(_resource(kind), name, namespace=namespace)))
        except ApiError as exc:
            if not is_gone(exc):
                raise
            missing.append(name)
    return found, missing


def _spec_tags(stream: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return list((stream.get("spec") or {}).get("tags") or [])


def _kind_and_names(kind_arg: str, names: tuple[str, ...]) -> tuple[Kind, tuple[str, ...]]:
    try:
        return kind_and_names(kind_arg, names)
    except KindError as exc:
        raise click.UsageError(str(exc)) from None


@click.command("get")
@click.argument("kind", metavar="TYPE[/NAME]", shell_complete=complete_kinds)
@click.argument("names", nargs=-1, metavar="[NAME]...", shell_complete=complete_names)
@click.option(
    "-o", "--output", type=click.Choice(OUTPUTS), help="name, yaml, json, or wide (more columns)."
)
@click.option("-A", "--all-namespaces", is_flag=True, help="List across all namespaces.")
@click.option("-l", "--selector", metavar="SELECTOR", help="Label selector: app=web,tier!=db.")
@click.option("--no-headers", is_flag=True, help="Print tables without the header line.")
@cluster_options
def get(
    kind: str, names: tuple[str, ...], output: str | None, all_namespaces: bool,
    selector: str | None, no_headers: bool,
    namespace: str | None, context: str | None, kubeconfig: str | None,
) -> None:  # fmt: skip
    """List ImageStreams, ImageStreamTags, BuildConfigs or Builds, like `oc get`.

    TYPE is is|imagestream, istag|imagestreamtag, bc|buildconfig, or
    build|builds (singular, plural, short or fully qualified names all work).

    \b
    Examples (from the seed):
      headwater get imagestream
      headwater get istag
      headwater get imagestreamtag web:latest -o yaml
      headwater get buildconfig
      headwater get builds
      headwater get build web-5 -o yaml
      headwater get bc -A -o wide
      headwater get builds -l build.headwater.dev/buildconfig=web -o name

    An ImageStreamTag is a view of one tag of an ImageStream's status (as in
    OpenShift, where it is virtual); its -o yaml is computed, not stored.
    Exit status 1 when a named object does not exist (the others are printed).
    """
    resolved, wanted = _kind_and_names(kind, names)
    if all_namespaces and wanted:
        raise click.UsageError("a resource cannot be retrieved by name across all namespaces")
    labels = _selector(selector)
    if wanted and labels is not None:
        raise click.UsageError("use either names or --selector, not both")
    client, default_ns = connect(kubeconfig, context, namespace)
    if wanted:
        objs, missing = get_objects(client, resolved, wanted, default_ns)
    else:
        objs = list_objects(
            client, resolved, default_ns, all_namespaces=all_namespaces, selector=labels
        )
        missing = []
    if output in ("name", "yaml", "json"):
        # As kubectl: an empty List when listing found nothing; nothing for names not found.
        if objs or (output != "name" and not wanted):
            name_of = lambda o: resolved.object_name(_name(o))  # noqa: E731
            click.echo(render(objs, output, name_of, single=len(wanted) == 1))
    elif objs:
        column = status_column(resolved, all_namespaces)
        styles = {column: phase_styler(colour_enabled())} if column is not None else None
        now = datetime.now(UTC)
        wide = output == "wide"
        click.echo(
            table(
                header(resolved, wide, all_namespaces),
                rows(resolved, objs, now, wide, all_namespaces),
                no_headers=no_headers,
                styles=styles,
            )
        )
    elif not wanted:
        where = "" if all_namespaces else f" in {default_ns} namespace"
        click.echo(f"No resources found{where}.", err=True)
    if missing:
        raise _not_found(resolved, missing, default_ns)


def _events(client: Client, obj: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """Core Events about the object (what kubectl describe shows); None if not readable."""
    from lightkube.resources.core_v1 import Event

    metadata = obj.get("metadata") or {}
    try:
        return [
            plain_dict(e)
            for e in client.list(
                Event,
                namespace=str(metadata.get("namespace")),
                fields={"involvedObject.uid": str(metadata.get("uid"))},
            )
        ]
    except ApiError as exc:
        if classify(exc) is Failure.FORBIDDEN:
            return None
        raise


def _builds_of(client: Client, bc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The BuildConfig's builds, newest first."""
    name = _name(bc)
    namespace = str((bc.get("metadata") or {}).get("namespace"))
    found = [
        plain_dict(b)
        for b in client.list(
            _resource(BUILD), namespace=namespace, labels={LABEL_BUILDCONFIG: label_value(name)}
        )
    ]
    return sorted((b for b in found if buildconfig_of(b) == name), key=build_number, reverse=True)


def _insecure_for_operator(client: Client, reference: str) -> bool:
    """Whether the operator reads ``reference``'s registry without TLS verification
    (its configuration, when the user may read it)."""
    from headwater.registry.reference import parse_reference

    config = operator_config(client)
    return config is not None and parse_reference(reference).domain in config.insecure_hosts


def _describe_istag(client: Client, view: Mapping[str, Any], insecure: bool) -> str:
    """The tag's image from status, its metadata read from the registry (anonymously)."""
    from headwater.imports.model import newest_item, spec_tags, status_tag, tag_condition
    from headwater.imports.verification import VERIFIED, tag_policies
    from headwater.registry.client import RegistryClient, RegistryError
    from headwater.registry.reference import ReferenceError, parse_reference

    target = parse_stream_tag(_name(view), str((view.get("metadata") or {}).get("namespace")))
    stream = plain_dict(
        client.get(_resource(IMAGESTREAM), target.stream, namespace=target.namespace)
    )
    item = newest_item(stream.get("status"), target.tag)
    if item is None:
        raise click.ClickException(f"{target.namespace}/{target} has no image yet")
    tag_spec = next((t for t in spec_tags(stream.get("spec")) if t.name == target.tag), None)

    async def read() -> Any:
        image = parse_reference(str(item["dockerImageReference"]))
        async with RegistryClient() as registry:
            return await registry.resolve(
                image.api_host, image.path, image.digest or image.tag or "latest",
                insecure=insecure, preserve_original=True,
            )  # fmt: skip

    resolved, error = None, None
    try:
        # As the operator read it: the tag's importPolicy.insecure (an import), or the
        # host among the operator's insecureRegistries / its insecure registry (a build).
        insecure = (
            insecure
            or bool(tag_spec and tag_spec.insecure)
            or _insecure_for_operator(client, str(item["dockerImageReference"]))
        )
        with spinner(f"reading {target} from the registry"):
            resolved = asyncio.run(read())
    except (RegistryError, ReferenceError, ValueError) as exc:
        error = str(getattr(exc, "message", exc))
    verification = verification_lines(
        tag_policies(stream.get("spec")).get(target.tag),
        tag_condition(status_tag(stream.get("status"), target.tag), VERIFIED),
    )
    return describe_istag(f"{target.namespace}/{target}", item, resolved, error, verification)


@click.command("describe")
@click.argument("kind", metavar="TYPE[/NAME]", shell_complete=complete_kinds)
@click.argument("names", nargs=-1, metavar="[NAME]...", shell_complete=complete_names)
@click.option("-l", "--selector", metavar="SELECTOR", help="Describe the objects it selects.")
@click.option(
    "--show-events/--no-show-events", default=True, show_default=True, help="List Events."
)
@click.option(
    "--insecure", is_flag=True, help="istag: allow plain HTTP or an unverified certificate."
)
@cluster_options
def describe(
    kind: str, names: tuple[str, ...], selector: str | None, show_events: bool, insecure: bool,
    namespace: str | None, context: str | None, kubeconfig: str | None,
) -> None:  # fmt: skip
    """Show ImageStreams, ImageStreamTags, BuildConfigs or Builds in detail, like `oc describe`.

    \b
    - is: each tag, where it comes from, its history, scheduled imports,
      import errors.
    - istag: the image (reference, digest, created) and, read from the
      registry, its size, platforms, entrypoint, cmd, user, ports, labels.
      The registry is read anonymously, over plain HTTP where the operator
      reads it so (the tag's importPolicy.insecure, its insecureRegistries
      or insecure registry, from its ConfigMap when readable) or with
      --insecure; when it needs a login the description says why the
      metadata was not read.
    - bc: strategy, source, output, triggers with webhook URLs, run policy,
      the BuildConfig's builds.
    - build: status and reason, timing, commit, output image and digest,
      stages, the log tail of a failed build.
    Events about the object follow (--no-show-events hides them).

    \b
    Examples (from the seed):
      headwater describe imagestream web
      headwater describe imagestreamtag web:latest
      headwater describe buildconfig web
      headwater describe build web-4

    Without NAME, every object of the TYPE is described.
    """
    resolved, wanted = _kind_and_names(kind, names)
    labels = _selector(selector)
    if wanted and labels is not None:
        raise click.UsageError("use either names or --selector, not both")
    client, default_ns = connect(kubeconfig, context, namespace)
    if wanted:
        objs, missing = get_objects(client, resolved, wanted, default_ns)
    else:
        objs, missing = list_objects(client, resolved, default_ns, selector=labels), []
    if not objs and not missing:
        click.echo(f"No resources found in {default_ns} namespace.", err=True)
    now = datetime.now(UTC)
    texts = []
    for obj in objs:
        if resolved is IMAGESTREAMTAG:
            text = _describe_istag(client, obj, insecure)
        elif resolved is IMAGESTREAM:
            text = describe_imagestream(obj, now)
        elif resolved is BUILDCONFIG:
            text = describe_buildconfig(obj, _builds_of(client, obj), now)
        else:
            text = describe_build(obj, now, colour=phase_styler(colour_enabled()))
        if show_events and resolved is not IMAGESTREAMTAG:
            text += "\n\n" + "\n".join(events_section(_events(client, obj), now))
        texts.append(text)
    if texts:
        click.echo("\n\n\n".join(texts))
    if missing:
        raise _not_found(resolved, missing, default_ns)
