"""``headwater``: the command line entry point.

``operator run`` runs the operator; the rest are ``oc``'s verbs for
ImageStreams, BuildConfigs and Builds (``get``, ``describe``, ``tag``,
``import-image``, ``start-build``, ``logs``, ``set triggers``...), using the
kubeconfig like kubectl. Built on click: typed, one decorator per option,
``--help`` from docstrings, and shell completion included, so no extra
dependency.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import os
import sys
import time
from typing import Any

import click

from headwater import __version__
from headwater.cli.builds import cancel_build, logs, start_build
from headwater.cli.completion import COMPLETE_VAR, completion
from headwater.cli.convert import convert
from headwater.cli.doctor import doctor
from headwater.cli.keys import keys
from headwater.cli.kube import cluster_options
from headwater.cli.newapp import new_app
from headwater.cli.settriggers import set_triggers
from headwater.cli.tagging import apply_import, resolve_tag_source, set_tag
from headwater.cli.views import describe, get
from headwater.cli.webhooks import webhooks
from headwater.config import ConfigError, load_config, unknown_env_vars

EXIT_STATUS = """\b
Exit status:
  0  success
  1  the request failed: an object not found, an API error, a failed import
     or build, an unreachable cluster (one line: "Error: ...")
  2  bad usage: an unknown option, type or flag combination
  3  `operator run` lost its leader Lease
"""


class HeadwaterGroup(click.Group):
    """The root group: API and connection errors become one line and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        import httpx2
        from lightkube.core.exceptions import ApiError

        try:
            return super().invoke(ctx)
        except ApiError as exc:
            reason = exc.status.reason or "Error"
            raise click.ClickException(f"{reason}: {exc.status.message}") from None
        except httpx2.TransportError as exc:
            # Connection refused, DNS, TLS, timeouts: say where it tried to connect.
            where = exc.request.url.host if _has_request(exc) else "the API server"
            raise click.ClickException(
                f"cannot reach the Kubernetes API server ({where}): {exc}; "
                "check --context/--kubeconfig"
            ) from None


def _has_request(exc: Exception) -> bool:
    try:
        return getattr(exc, "request", None) is not None
    except RuntimeError:  # httpx raises when no request was attached
        return False


@click.group(
    cls=HeadwaterGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=EXIT_STATUS,
)
@click.version_option(__version__, "--version", prog_name="headwater")
@functools.partial(cluster_options, after_verb=False)
def cli(namespace: str | None, context: str | None, kubeconfig: str | None) -> None:
    """Headwater: OpenShift's ImageStreams, BuildConfigs and Builds on any Kubernetes.

    Client verbs use the kubeconfig like kubectl: --kubeconfig, else
    $KUBECONFIG, else ~/.kube/config; --context; -n/--namespace, else the
    context's namespace. These three go before the verb or after it
    (`headwater -n shop logs build/web-1`, `headwater logs build/web-1 -n
    shop`); after it wins. Also runs as the kubectl plugin `kubectl headwater`.
    Colour only on a terminal (and never with NO_COLOR set). Shell
    completion: `headwater completion --help`.
    """


def _root_namespace(ctx: click.Context) -> tuple[str, ...]:
    """``headwater -n NS operator run``: the -n given before the verb, as a watch list."""
    given = ctx.find_root().params.get("namespace")
    return (str(given),) if given else ()


@cli.group()
def operator() -> None:
    """Run the Headwater operator."""


@operator.command("run")
@click.option(
    "--namespace",
    "-n",
    "namespaces",
    metavar="NS[,NS...]",
    multiple=True,
    callback=lambda ctx, _param, value: value or _root_namespace(ctx),
    help="Watch only these namespaces; repeat or comma-separate (default: -n before the verb,"
    " else $HEADWATER_NAMESPACES, else the configuration's namespaces, else all namespaces).",
)
@click.option(
    "--all-namespaces",
    "-A",
    is_flag=True,
    help="Watch all namespaces, whatever the configuration says.",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    help="Log as text lines or JSON objects (default: $HEADWATER_LOG_FORMAT, else text).",
)
@click.option("--verbose", "-v", is_flag=True, help="Log debug messages too.")
@click.option(
    "--standalone",
    is_flag=True,
    help="Act at once, without leader election (one replica, or local development).",
)
def run(
    namespaces: tuple[str, ...],
    all_namespaces: bool,
    log_format: str | None,
    verbose: bool,
    standalone: bool,
) -> None:
    """Run the operator in the foreground until SIGTERM or Ctrl+C.

    Configuration comes from the YAML file named by HEADWATER_CONFIG_FILE and
    HEADWATER_* environment variables (these win); the options above win over
    both. Kubernetes credentials are the pod's service account, $KUBECONFIG or
    ~/.kube/config. Probes are served on /healthz and /readyz (health port,
    default 8081), Prometheus metrics on /metrics (metrics port, default 8080).

    Unless --standalone, only the replica holding the leader Lease acts; it
    exits with status 3 if it loses the Lease.
    """
    # Imported here so `headwater --help` and the future client verbs do not
    # pay for (or depend on) kopf's import.
    from headwater import runtime
    from headwater.logs import configure_logging

    root = click.get_current_context().find_root().params
    if root.get("context") or root.get("kubeconfig"):
        raise click.UsageError(
            "operator run takes its credentials from the pod's service account, $KUBECONFIG"
            " or ~/.kube/config, not --context/--kubeconfig"
        )
    if namespaces and all_namespaces:
        raise click.UsageError("--namespace and --all-namespaces exclude each other")
    try:
        config = load_config(os.environ)
        changes: dict[str, object] = {}
        if all_namespaces:
            changes["namespaces"] = ()
        elif namespaces:
            from headwater.config import parse_namespaces

            changes["namespaces"] = parse_namespaces(",".join(namespaces), "--namespace")
        if log_format:
            changes["log_format"] = log_format
        config = dataclasses.replace(config, **changes)  # type: ignore[arg-type]
    except ConfigError as exc:
        raise click.ClickException(f"configuration: {exc}") from exc

    configure_logging(config.log_format, verbose=verbose)
    log = logging.getLogger("headwater")
    for name in unknown_env_vars(os.environ):
        log.warning("ignoring unknown environment variable %s", name)
    try:
        code = asyncio.run(runtime.run(config, runtime.RunOptions(standalone=standalone)))
    except runtime.StartupError as exc:
        raise click.ClickException(str(exc)) from exc
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


# --- client verbs -----------------------------------------------------------------

EXIT_FAILED = 1
"""The operation ran and failed (an import that did not succeed)."""


_cluster_options = cluster_options


KEEPS = "(default: the existing tag's, else {})"
"""Settings not given on the command line: a re-run keeps what the tag has."""


def _tag_policy_options(fn: Any) -> Any:
    """--[no-]insecure, --[no-]scheduled and --reference-policy, for the verbs that write a
    spec tag. Each defaults to None: "not given", so an existing tag keeps its setting."""
    fn = click.option(
        "--reference-policy",
        type=click.Choice(["source", "local"]),
        default=None,
        help="How consumers get the image: its source reference, or the configured registry "
        + KEEPS.format("source")
        + ".",
    )(fn)
    fn = click.option(
        "--scheduled/--no-scheduled",
        default=None,
        help="Re-import on the operator's schedule " + KEEPS.format("no") + ".",
    )(fn)
    return click.option(
        "--insecure/--no-insecure",
        default=None,
        help="Allow plain HTTP or an unverified certificate " + KEEPS.format("no") + ".",
    )(fn)


IMAGESTREAM = ("image.headwater.dev", "v1", "ImageStream", "imagestreams")


def _wait_for_imports(
    client: Any, resource: Any, namespace: str, stream: str, tags: list[str], since: int,
    timeout: float,
) -> dict[str, tuple[bool, str]]:  # fmt: skip
    """Poll the stream until the operator recorded the import of every tag; a spinner on a terminal.

    Returns per tag (succeeded, the pinned reference or the failure's reason).
    """
    from headwater.cli.tags import import_result
    from headwater.kube import plain_dict

    spinner = "|/-\\"
    deadline = time.monotonic() + timeout
    turn = 0
    results: dict[str, tuple[bool, str]] = {}
    while time.monotonic() < deadline:
        obj = plain_dict(client.get(resource, stream, namespace=namespace))
        for tag in tags:
            finished, succeeded, message = import_result(obj, tag, since)
            if finished:
                results[tag] = (succeeded, message)
        if len(results) == len(tags):
            if sys.stderr.isatty():
                click.echo("\r", nl=False, err=True)
            return results
        if sys.stderr.isatty():
            waiting = tags[0] if len(tags) == 1 else f"{len(tags) - len(results)} tags"
            click.echo(
                f"\rwaiting for the import of {stream}:{waiting} {spinner[turn % 4]}",
                nl=False,
                err=True,
            )
            turn += 1
        time.sleep(0.25)
    missing = ", ".join(t for t in tags if t not in results)
    raise click.ClickException(
        f"no import result for {stream}:{missing} after {timeout:g}s:"
        " is the Headwater operator running?"
    )


def _wait_for_import(
    client: Any, resource: Any, target: Any, since: int, timeout: float, what: str
) -> str:
    """Wait for one tag's import; returns the pinned reference, a failure prints and exits 1."""
    results = _wait_for_imports(
        client, resource, target.namespace, target.stream, [target.tag], since, timeout
    )
    succeeded, message = results[target.tag]
    if not succeeded:
        click.echo(f"error: import of {what} failed: {message}", err=True)
        sys.exit(EXIT_FAILED)
    return message


async def _registry_tags(source: str, insecure: bool, limit: int) -> tuple[str, list[str], int]:
    """The repository ``source`` names and its tags, listed anonymously (``--all``)."""
    from headwater.cli.tags import all_tag_sources
    from headwater.registry.client import RegistryClient
    from headwater.registry.reference import parse_reference

    ref = parse_reference(source)
    if ref.digest is not None:
        raise click.UsageError("--all imports a repository's tags: --from takes no digest")
    async with RegistryClient() as registry:
        tags = await registry.list_tags(ref.api_host, ref.path, insecure=insecure)
    chosen, left_out = all_tag_sources(tags, limit)
    return ref.name, chosen, left_out


async def _dry_run(
    pairs: list[tuple[str, str]], insecure: bool, preserve_original: bool
) -> list[tuple[str, str, list[str] | None]]:
    """Resolve each (tag, source), writing nothing: (tag, source or the error, lines or None)."""
    from headwater.cli.tags import dry_run_lines
    from headwater.registry.client import RegistryClient, RegistryError
    from headwater.registry.reference import ReferenceError, parse_reference

    out: list[tuple[str, str, list[str] | None]] = []
    async with RegistryClient() as registry:
        for tag, source in pairs:
            try:
                ref = parse_reference(source)
                resolved = await registry.resolve(
                    ref.api_host, ref.path, ref.digest or ref.tag or "latest",
                    insecure=insecure, preserve_original=preserve_original,
                )  # fmt: skip
            except ReferenceError as exc:
                out.append((tag, f"InvalidImageReference: {exc}", None))
                continue
            except RegistryError as exc:
                out.append((tag, f"{exc.reason}: {exc.message}", None))
                continue
            platforms = [(str(p.platform or "unknown"), p.digest) for p in resolved.platforms]
            lines = dry_run_lines(tag, ref.name, resolved.digest, resolved.media_type, platforms)
            out.append((tag, source, lines))
    return out


@cli.command("import-image")
@click.argument("name")
@click.option(
    "--from",
    "source",
    metavar="IMAGE",
    help="Image reference to import (default: what the tag already points at).",
)
@click.option("--confirm", is_flag=True, help="Create the ImageStream or tag if missing.")
@click.option(
    "--all",
    "all_tags",
    is_flag=True,
    help="Import every tag of the --from repository (listed anonymously), or re-import"
    " every image tag of the existing stream.",
)
@click.option(
    "--max-tags",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="With --all: import at most this many tags (sorted by name).",
)
@_tag_policy_options
@click.option(
    "--import-mode",
    type=click.Choice(["Legacy", "PreserveOriginal"]),
    default=None,
    help="One platform of a list, or the list " + KEEPS.format("Legacy") + ".",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Resolve through the registry (anonymously) and print what would be imported;"
    " write nothing.",
)
@click.option(
    "--timeout", type=float, default=120, show_default=True, help="Seconds to wait for the result."
)
@_cluster_options
def import_image(
    name: str, source: str | None, confirm: bool, all_tags: bool, max_tags: int,
    scheduled: bool | None, insecure: bool | None, reference_policy: str | None,
    import_mode: str | None, dry_run: bool, timeout: float,
    namespace: str | None, context: str | None, kubeconfig: str | None,
) -> None:  # fmt: skip
    """Import an image into an ImageStream tag now and print the result.

    \b
    Examples (the seed's CI-built image):
      headwater import-image web:1.2.0 --from=registry.example.com/shop/web:1.2.0 --confirm
      headwater import-image web --all --from=registry.example.com/shop/web --confirm
      headwater import-image web:1.2.0 --from=registry.example.com/shop/web:1.2.0 --dry-run

    Re-running it on an existing tag keeps every setting not given (insecure,
    scheduled, import mode, reference policy, annotations): `--no-insecure`
    and `--no-scheduled` turn those off.

    --all and --dry-run talk to the registry from this machine without
    credentials: for a private registry, import with the operator instead.

    Exit status 0 when imported, 1 when an import failed (the reason is printed).
    """
    from lightkube.core.exceptions import ApiError
    from lightkube.generic_resource import create_namespaced_resource
    from lightkube.types import PatchType

    from headwater.cli.kube import connect
    from headwater.cli.tags import StreamTag, TagError, parse_stream_tag
    from headwater.imports.model import spec_tags
    from headwater.imports.plan import REQUEST_ANNOTATION
    from headwater.kube import is_gone, plain_dict
    from headwater.registry.client import RegistryError
    from headwater.registry.reference import ReferenceError

    client, default_ns = connect(kubeconfig, context, namespace)
    resource = create_namespaced_resource(*IMAGESTREAM)
    try:
        target = parse_stream_tag(name, default_ns, default_tag="latest")
        if all_tags and ":" in name:
            raise TagError(f"--all imports into a stream: {name!r} names a tag")
    except TagError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        existing = plain_dict(client.get(resource, target.stream, namespace=target.namespace))
    except ApiError as exc:
        if not is_gone(exc):
            raise click.ClickException(str(exc.status.message)) from None
        existing = None
    present = spec_tags((existing or {}).get("spec"))
    pairs: list[tuple[str, str]]  # (tag, image reference)
    if all_tags:
        if existing is None and not confirm and not dry_run:
            raise click.ClickException(
                f"{target.namespace}/{target.stream} does not exist: add --confirm to create it"
            )
        if source is not None:
            try:
                repository, found, left_out = asyncio.run(
                    _registry_tags(source, bool(insecure), max_tags)
                )
            except (RegistryError, ReferenceError) as exc:
                reason = getattr(exc, "reason", "InvalidImageReference")
                click.echo(f"error: listing the tags of {source} failed: {reason}: {exc}", err=True)
                sys.exit(EXIT_FAILED)
            if left_out:
                click.echo(
                    f"warning: {left_out} tag(s) of {repository} left out (--max-tags={max_tags}"
                    " or not valid tag names)",
                    err=True,
                )
            pairs = [(t, f"{repository}:{t}") for t in found]
        else:
            if existing is None:
                raise click.UsageError("--from is required for a stream that does not exist")
            pairs = [(t.name, t.from_name) for t in present if t.from_kind == "DockerImage"]
        if not pairs:
            raise click.ClickException(f"no tags to import into {target.namespace}/{target.stream}")
    else:
        current = next((t for t in present if t.name == target.tag), None)
        if current is None and not confirm and not dry_run:
            raise click.ClickException(
                f"{target.namespace}/{target} does not exist: add --confirm to create it"
            )
        if source is None:
            if current is None or current.from_kind != "DockerImage":
                raise click.UsageError("--from is required for a tag that does not import an image")
            source = current.from_name
        pairs = [(target.tag, source)]

    if dry_run:
        # What the import would use: the options given, else the existing tags'.
        chosen = [t for t in present if t.name in {tag for tag, _ in pairs}]
        lax = insecure if insecure is not None else any(t.insecure for t in chosen)
        preserve = (import_mode or "") == "PreserveOriginal" or (
            import_mode is None and any(t.import_mode == "PreserveOriginal" for t in chosen)
        )
        results = asyncio.run(_dry_run(pairs, lax, preserve))
        failed = False
        for tag_name, detail, lines in results:
            if lines is None:
                failed = True
                click.echo(f"error: {target.stream}:{tag_name}: {detail}", err=True)
            else:
                for line in lines:
                    click.echo(line if line.startswith(" ") else f"{target.stream}:{line}")
        click.echo("(dry run: nothing was written)", err=True)
        sys.exit(EXIT_FAILED if failed else 0)

    # Re-importing a stream's own tags (--all without --from) keeps their spec as it is.
    reimport = all_tags and source is None
    generation = int(((existing or {}).get("metadata") or {}).get("generation") or 0)
    for tag_name, image in [] if reimport else pairs:
        one = StreamTag(target.namespace, target.stream, tag_name)
        generation = apply_import(
            client, one, image, existing, scheduled=scheduled, insecure=insecure,
            reference_policy=reference_policy, import_mode=import_mode, annotate=not all_tags,
        )  # fmt: skip
    tags = [tag_name for tag_name, _ in pairs]
    if all_tags:
        # One request for all the tags, so unchanged ones are fetched again too.
        client.patch(
            resource, target.stream,
            {"metadata": {"annotations": {REQUEST_ANNOTATION: ",".join(tags)}}},
            namespace=target.namespace, patch_type=PatchType.MERGE,
        )  # fmt: skip
    outcome = _wait_for_imports(
        client, resource, target.namespace, target.stream, tags, generation, timeout
    )
    failures = [t for t in tags if not outcome[t][0]]
    if len(failures) < len(tags):
        click.echo(f"imagestream.image.headwater.dev/{target.stream} imported")
    sources = dict(pairs)
    for tag_name in tags:
        succeeded, message = outcome[tag_name]
        if succeeded:
            click.echo(f"{target.stream}:{tag_name}\t{message}")
        else:
            click.echo(
                f"error: import of {target.stream}:{tag_name} from {sources[tag_name]} failed:"
                f" {message}",
                err=True,
            )
    if failures:
        sys.exit(EXIT_FAILED)


def _delete_tag(client: Any, resource: Any, target: Any, settle: float = 15) -> None:
    """Remove ``target``'s spec tag, whoever wrote it, and have the operator drop its history.

    The spec tag goes by a JSON patch by index, guarded by a ``test`` of the name
    and retried when the list moved. Status belongs to the operator (users may not
    write it): the annotation ``image.headwater.dev/forget-tags`` asks it to drop
    the tag's history, which this waits for (at most ``settle`` seconds).
    """
    from lightkube.core.exceptions import ApiError
    from lightkube.types import PatchType

    from headwater.cli.tags import delete_patch
    from headwater.imports.model import status_tag
    from headwater.imports.runner import FORGET_ANNOTATION
    from headwater.kube import Failure, classify, plain_dict

    where = f"{target.namespace}/{target}"

    def read() -> dict[str, Any]:
        try:
            return plain_dict(client.get(resource, target.stream, namespace=target.namespace))
        except ApiError as exc:
            raise click.ClickException(f"{where}: {exc.status.message}") from None

    obj = read()
    in_status = status_tag(obj.get("status"), target.tag) is not None
    in_spec = False
    for attempt in range(5):
        patch = delete_patch((obj.get("spec") or {}).get("tags"), "name", target.tag, "/spec/tags")
        if patch is None:
            break
        try:
            client.patch(
                resource, target.stream, patch, namespace=target.namespace,
                patch_type=PatchType.JSON,
            )  # fmt: skip
        except ApiError as exc:
            # A conflict, or the JSON patch's index test failed (422): the list
            # changed under us, read it again.
            if classify(exc) in (Failure.CONFLICT, Failure.INVALID) and attempt < 4:
                obj = read()
                continue
            raise click.ClickException(f"{where}: {exc.status.message}") from None
        in_spec = True
        break
    if not in_spec and not in_status:
        raise click.ClickException(f"imagestreamtag {where} not found")
    if not in_status:
        return
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    names = {t for t in str(annotations.get(FORGET_ANNOTATION) or "").split(",") if t}
    client.patch(
        resource, target.stream,
        {"metadata": {"annotations": {FORGET_ANNOTATION: ",".join(sorted(names | {target.tag}))}}},
        namespace=target.namespace, patch_type=PatchType.MERGE,
    )  # fmt: skip
    deadline = time.monotonic() + settle
    while time.monotonic() < deadline:
        if status_tag(read().get("status"), target.tag) is None:
            return
        time.sleep(0.25)
    click.echo(
        f"warning: {where}: the operator has not removed the tag's history yet"
        " (is it running?); it will when it next sees the stream",
        err=True,
    )


def _wait_for_tag(client: Any, resource: Any, target: Any, digest: str, settle: float = 15) -> None:
    """Wait (at most ``settle`` seconds) until the operator has pointed ``target``'s
    history at ``digest``: as ``oc tag`` from another tag, whose image the API server
    records at once, the tag is there for the next command (``get istag``)."""
    from lightkube.core.exceptions import ApiError

    from headwater.imports.model import newest_item
    from headwater.kube import plain_dict

    deadline = time.monotonic() + settle
    while True:
        try:
            obj = plain_dict(client.get(resource, target.stream, namespace=target.namespace))
        except ApiError:
            obj = {}
        if (newest_item(obj.get("status"), target.tag) or {}).get("image") == digest:
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(0.25)
    click.echo(
        f"warning: {target.namespace}/{target}: the operator has not recorded {digest}"
        " for the tag yet (is it running?); it will when it next sees the stream",
        err=True,
    )


@cli.command("tag")
@click.argument("source")
@click.argument("destinations", nargs=-1)
@click.option(
    "--alias",
    is_flag=True,
    help="Follow the source tag as it moves (default: pin its current image).",
)
@click.option(
    "--reference/--no-reference",
    default=None,
    help="Point at the image without importing it " + KEEPS.format("no") + ".",
)
@_tag_policy_options
@click.option(
    "--import", "import_now", is_flag=True, help="Import at once and wait for the result."
)
@click.option(
    "--source",
    "source_kind",
    type=click.Choice(["docker", "istag"]),
    help="What SOURCE is (default: guessed).",
)
@click.option(
    "-d", "--delete", is_flag=True, help="Delete the given tags (spec and history) instead."
)
@click.option("--timeout", type=float, default=120, show_default=True)
@_cluster_options
def tag(
    source: str, destinations: tuple[str, ...], alias: bool, reference: bool | None,
    scheduled: bool | None, insecure: bool | None, reference_policy: str | None,
    import_now: bool, source_kind: str | None,
    delete: bool, timeout: float, namespace: str | None, context: str | None,
    kubeconfig: str | None,
) -> None:  # fmt: skip
    """Point ImageStream tags at an image or at another tag.

    \b
    Examples (from the seed):
      headwater tag registry.example.com/shop/web:1.2.0 web:latest --import
      headwater tag web:1.2.0 web:prod                # pin web:prod to web:1.2.0's image
      headwater tag web:1.2.0 web:stable --alias      # web:stable follows web:1.2.0
      headwater tag -d web:old                        # remove web:old and its history

    SOURCE is an image reference, or [namespace/]stream:tag of an ImageStream.
    An existing destination tag keeps every setting not given (insecure,
    scheduled, reference policy, annotations).
    With -d every argument is a tag to delete; the operator then drops its history.
    """
    from lightkube.core.exceptions import ApiError
    from lightkube.generic_resource import create_namespaced_resource

    from headwater.cli.kube import connect
    from headwater.cli.tags import TagError, parse_stream_tag
    from headwater.imports.model import newest_item
    from headwater.kube import is_gone, plain_dict

    if not delete and not destinations:
        raise click.UsageError("Missing argument 'DESTINATIONS...'.")
    client, default_ns = connect(kubeconfig, context, namespace)
    resource = create_namespaced_resource(*IMAGESTREAM)
    if delete:
        try:
            doomed = [parse_stream_tag(d, default_ns) for d in (source, *destinations)]
        except TagError as exc:
            raise click.ClickException(str(exc)) from None
        for target in doomed:
            _delete_tag(client, resource, target)
            click.echo(f"Deleted tag {target.namespace}/{target}.")
        return
    try:
        targets = [parse_stream_tag(d, default_ns) for d in destinations]
        source_tag, source_stream = resolve_tag_source(
            client, source, default_ns, source_kind, reference
        )
        streams: dict[tuple[str, str], dict[str, Any] | None] = {}
        for target in targets:
            key = (target.namespace, target.stream)
            if key not in streams:
                try:
                    streams[key] = plain_dict(
                        client.get(resource, target.stream, namespace=target.namespace)
                    )
                except ApiError as exc:
                    if not is_gone(exc):
                        raise click.ClickException(
                            f"{target.namespace}/{target.stream}: {exc.status.message}"
                        ) from None
                    streams[key] = None
            # The destination keeps every setting not given on the command line.
            generation = set_tag(
                client, target, source, source_tag, source_stream, streams[key], alias=alias,
                reference=reference, scheduled=scheduled, insecure=insecure,
                reference_policy=reference_policy, import_now=import_now,
            )  # fmt: skip
            click.echo(f"Tag {target} set to {source}.")
            if source_tag is not None:
                current = newest_item((source_stream or {}).get("status"), source_tag.tag)
                if current and current.get("image"):
                    _wait_for_tag(client, resource, target, str(current["image"]))
            if import_now:
                message = _wait_for_import(
                    client, resource, target, generation, timeout, str(target)
                )
                click.echo(f"{target}\t{message}")
    except TagError as exc:
        raise click.ClickException(str(exc)) from None


@cli.group("secrets")
def secrets_group() -> None:
    """Secrets for pulling and pushing images."""


@secrets_group.command("link")
@click.argument("service_account")
@click.argument("secrets", nargs=-1, required=True)
@click.option(
    "--for",
    "purposes",
    default="mount",
    show_default=True,
    help="pull (imagePullSecrets), mount (secrets), or pull,mount.",
)
@_cluster_options
def secrets_link(
    service_account: str, secrets: tuple[str, ...], purposes: str,
    namespace: str | None, context: str | None, kubeconfig: str | None,
) -> None:  # fmt: skip
    """Link secrets to a service account, like `oc secrets link`.

    \b
    The seed's fix for ImagePullBackOff from a private registry:
      headwater secrets link default registry-login --for=pull
    """
    from lightkube.core.exceptions import ApiError
    from lightkube.resources.core_v1 import Secret, ServiceAccount
    from lightkube.types import PatchType

    from headwater.cli.kube import connect

    wanted = {p.strip() for p in purposes.split(",") if p.strip()}
    if not wanted or not wanted <= {"pull", "mount"}:
        raise click.UsageError("--for takes pull, mount or pull,mount")
    client, default_ns = connect(kubeconfig, context, namespace)
    try:
        for name in secrets:
            client.get(Secret, name, namespace=default_ns)
        account = client.get(ServiceAccount, service_account, namespace=default_ns)
    except ApiError as exc:
        raise click.ClickException(f"{default_ns}: {exc.status.message}") from None
    patch: dict[str, Any] = {}
    if "pull" in wanted:
        have = [r.name for r in account.imagePullSecrets or []]
        patch["imagePullSecrets"] = [
            {"name": n} for n in [*have, *(s for s in secrets if s not in have)]
        ]
    if "mount" in wanted:
        have = [r.name for r in account.secrets or []]
        patch["secrets"] = [{"name": n} for n in [*have, *(s for s in secrets if s not in have)]]
    # The lists are replaced whole (a merge patch), guarded by the version read above.
    assert account.metadata is not None
    patch["metadata"] = {"resourceVersion": account.metadata.resourceVersion}
    try:
        client.patch(
            ServiceAccount, service_account, patch, namespace=default_ns,
            patch_type=PatchType.MERGE,
        )  # fmt: skip
    except ApiError as exc:
        raise click.ClickException(f"{default_ns}: {exc.status.message}; try again") from None
    click.echo(f"serviceaccount/{service_account} linked: {', '.join(secrets)} (for {purposes})")


@cli.group("set")
def set_group() -> None:
    """Change settings of ImageStreams, BuildConfigs and workloads."""


@set_group.command("image-lookup")
@click.argument("streams", nargs=-1, required=True)
@click.option("--enabled/--disabled", default=True, show_default=True)
@_cluster_options
def set_image_lookup(
    streams: tuple[str, ...], enabled: bool,
    namespace: str | None, context: str | None, kubeconfig: str | None,
) -> None:  # fmt: skip
    """Let pods in the namespace name these streams' tags by short name (`web:latest`).

    \b
    Example:
      headwater set image-lookup web
    """
    from lightkube.core.exceptions import ApiError
    from lightkube.generic_resource import create_namespaced_resource
    from lightkube.types import PatchType

    from headwater.cli.kube import connect

    client, default_ns = connect(kubeconfig, context, namespace)
    resource = create_namespaced_resource(*IMAGESTREAM)
    for name in streams:
        try:
            client.patch(
                resource, name, {"spec": {"lookupPolicy": {"local": enabled}}},
                namespace=default_ns, patch_type=PatchType.MERGE,
            )  # fmt: skip
        except ApiError as exc:
            raise click.ClickException(f"{default_ns}/{name}: {exc.status.message}") from None
        state = "enabled" if enabled else "disabled"
        click.echo(f"imagestream.image.headwater.dev/{name} image lookup {state}")


@cli.command("console")
@click.option("--port", type=click.IntRange(0, 65535), default=8090, show_default=True)
@click.option(
    "--address",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on; keep it loopback: the console acts with your credentials.",
)
@click.option("--no-browser", is_flag=True, help="Do not open a browser.")
@click.option(
    "--token-auth",
    is_flag=True,
    help="Serve many users behind a proxy: every request must carry the user's own token"
    " (Authorization: Bearer) and acts with it alone. The cluster is the pod's (in-cluster"
    " address and CA), or --kubeconfig/--context's cluster entry (its user is ignored).",
)
@click.option(
    "--allowed-host",
    "allowed_hosts",
    multiple=True,
    metavar="HOST[:PORT]",
    help="A Host header to accept besides loopback and --address, as the proxy sends it"
    " (e.g. console.example.com); repeatable.",
)
@_cluster_options
def console(
    port: int, address: str, no_browser: bool, token_auth: bool, allowed_hosts: tuple[str, ...],
    namespace: str | None, context: str | None, kubeconfig: str | None,
) -> None:  # fmt: skip
    """Serve a web console of ImageStreams, BuildConfigs and Builds, live.

    \b
    Example:
      headwater console -n shop-staging

    It uses your kubeconfig and permissions, as `kubectl proxy` does, and opens
    the namespace overview in your browser. Ctrl+C stops it.

    \b
    In a pod, behind a proxy that signs users in and passes their token:
      headwater console --token-auth --address 0.0.0.0 --allowed-host console.example.com
    """
    from headwater.console.server import run as serve_console

    serve_console(
        kubeconfig, context, namespace, address, port, not no_browser and not token_auth,
        token_auth=token_auth, allowed_hosts=allowed_hosts,
    )  # fmt: skip


for _command in (
    get,
    describe,
    start_build,
    cancel_build,
    logs,
    completion,
    convert,
    new_app,
    doctor,
    webhooks,
    keys,
):
    cli.add_command(_command)
set_group.add_command(set_triggers)


def main() -> None:
    """Console-script entry point of both `headwater` and the kubectl plugin `kubectl-headwater`."""
    invoked = os.path.basename(sys.argv[0]) if sys.argv else ""
    # kubectl runs plugins as kubectl-<name>; help and usage then show the command users type.
    prog_name = "kubectl headwater" if invoked.startswith("kubectl-") else "headwater"
    cli(prog_name=prog_name, complete_var=COMPLETE_VAR)
