"""The console's actions, each through the CLI's own function (run in a thread).

Every function here takes the user's synchronous lightkube client and returns
the sentence the page shows; refusals raise ``click.ClickException`` (the
CLI's own checks) or ``ApiError`` (the API server's), which the app turns into
a message. Nothing here talks to the API server on its own: a new action
means refactoring the CLI verb into a callable first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import click

from headwater.builds.instantiate import StartRequest
from headwater.builds.model import NEW, PENDING, RUNNING, buildconfig_of
from headwater.cli import builds as cli_builds
from headwater.cli import tagging
from headwater.cli.kinds import TRIGGERABLE, KindError, split_target
from headwater.cli.settriggers import apply_triggers
from headwater.cli.tags import StreamTag, TagError, parse_stream_tag
from headwater.cli.triggers import TriggerError, make_options
from headwater.kube import plain_dict


def parse_env(text: str) -> tuple[tuple[str, str], ...]:
    """``NAME=VALUE`` lines (the form's text area), as ``start-build -e`` takes them."""
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.strip():
            raise click.ClickException(f"environment {line!r}: expected NAME=VALUE")
        pairs.append((name.strip(), value))
    return tuple(pairs)


def start_build(
    client: Any,
    namespace: str,
    buildconfig: str,
    commit: str = "",
    env: Sequence[tuple[str, str]] = (),
) -> str:
    """``headwater start-build BC [--commit SHA] [-e NAME=VALUE...]``."""
    request = StartRequest(
        id=cli_builds.new_request_id(),
        env=tuple(env),
        commit=commit.strip() or None,
        causes=({"message": "Manually triggered from the console"},),
    )
    name = cli_builds.request_build(client, namespace, buildconfig, request, show=False)
    return f"Build {name} started."


def rebuild(client: Any, namespace: str, build: str) -> str:
    """``headwater start-build --from-build BUILD``."""
    previous = cli_builds.get_build(client, namespace, build)
    buildconfig = buildconfig_of(previous)
    if not buildconfig:
        raise click.ClickException(f"build {build} has no BuildConfig to run again")
    request = StartRequest(
        id=cli_builds.new_request_id(),
        from_build=build,
        causes=({"message": f"Rebuild of {build} from the console"},),
    )
    name = cli_builds.request_build(client, namespace, buildconfig, request, show=False)
    return f"Build {name} started (a rebuild of {build})."


def cancel_build(client: Any, namespace: str, build: str) -> str:
    """``headwater cancel-build BUILD`` (without waiting: the page shows it end)."""
    names = cli_builds.builds_to_cancel(client, namespace, (build,), {NEW, PENDING, RUNNING})
    if not names:
        raise click.ClickException(f"build {build} already ended")
    cli_builds.request_cancel(client, namespace, build)
    return f"Cancellation of {build} requested."


def import_now(client: Any, namespace: str, stream: str, tag: str) -> str:
    """``headwater import-image STREAM:TAG``: re-import the tag's image now (the result
    shows on the page when the operator records it)."""
    from lightkube.core.exceptions import ApiError

    from headwater.imports.model import spec_tags
    from headwater.resources import ImageStream

    target = StreamTag(namespace, stream, tag)
    try:
        existing = plain_dict(client.get(ImageStream, stream, namespace=namespace))
    except ApiError:
        raise
    current = next((t for t in spec_tags(existing.get("spec")) if t.name == tag), None)
    if current is None or current.from_kind != "DockerImage":
        raise click.ClickException(f"{stream}:{tag} does not import an image: nothing to import")
    tagging.apply_import(client, target, current.from_name, existing)
    return f"Import of {stream}:{tag} from {current.from_name} requested."


def tag(client: Any, namespace: str, source: str, destination: str, alias: bool = False) -> str:
    """``headwater tag SOURCE DESTINATION [--alias]``: promote a tag, or point one at an image."""
    from lightkube.core.exceptions import ApiError

    from headwater.kube import is_gone
    from headwater.resources import ImageStream

    try:
        target = parse_stream_tag(destination.strip(), namespace)
        source_tag, source_stream = tagging.resolve_tag_source(client, source.strip(), namespace)
    except TagError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        existing: dict[str, Any] | None = plain_dict(
            client.get(ImageStream, target.stream, namespace=target.namespace)
        )
    except ApiError as exc:
        if not is_gone(exc):
            raise
        existing = None
    try:
        tagging.set_tag(
            client, target, source.strip(), source_tag, source_stream, existing, alias=alias
        )
    except TagError as exc:
        raise click.ClickException(str(exc)) from None
    how = "follows" if alias and source_tag is not None else "set to"
    return f"Tag {target.namespace}/{target} {how} {source.strip()}."


def set_trigger_paused(
    client: Any, namespace: str, kind: str, name: str, image: str, paused: bool
) -> str:
    """``headwater set triggers KIND/NAME --from-image IMAGE --manual|--auto``."""
    try:
        found, object_name = split_target(f"{kind}/{name}", TRIGGERABLE)
        opts = make_options(from_image=image, manual=paused, auto=not paused)
    except (KindError, TriggerError) as exc:
        raise click.ClickException(str(exc)) from None
    apply_triggers(client, found, object_name, namespace, opts)
    state = "paused" if paused else "resumed"
    return f"The trigger of {kind.lower()}/{name} on {image} is {state}."


ACTIONS: Mapping[str, str] = {
    "start": "start a build",
    "rebuild": "rebuild",
    "cancel": "cancel the build",
    "import": "import now",
    "tag": "tag",
    "trigger": "pause or resume the trigger",
}
