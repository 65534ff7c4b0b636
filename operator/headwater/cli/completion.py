"""Shell completion: ``headwater completion bash|zsh|fish``, and names from the cluster.

Click's own completion (the shell calls ``headwater`` back with
``_HEADWATER_COMPLETE=<shell>_complete``); resource names are listed from the
cluster of the kubeconfig and context already typed, with a short timeout,
and a completion that fails offers nothing rather than an error.
"""

from __future__ import annotations

import logging
from typing import Any

import click
from click.shell_completion import CompletionItem, get_completion_class

from headwater.cli.kinds import TRIGGERABLE, VIEWABLE, Kind, KindError, resolve

COMPLETE_VAR = "_HEADWATER_COMPLETE"
SHELLS = ("bash", "zsh", "fish")
TIMEOUT_SECONDS = 3.0
"""Completion runs on every Tab: a slow or unreachable cluster must not hang the shell."""

log = logging.getLogger(__name__)


def _client(ctx: click.Context) -> tuple[Any, str] | None:
    import httpx2
    from lightkube import Client

    from headwater.cli.kube import load_config

    params = ctx.params
    try:
        config = load_config(params.get("kubeconfig"), params.get("context"))
    except click.ClickException:
        return None
    namespace = params.get("namespace") or config.namespace or "default"
    client = Client(config=config, namespace=namespace, timeout=httpx2.Timeout(TIMEOUT_SECONDS))
    return client, namespace


def _names(ctx: click.Context, kind: Kind) -> list[str]:
    """Names of the kind in the namespace already chosen; [] on any failure."""
    from lightkube.resources import apps_v1, batch_v1

    from headwater.kube import plain_dict
    from headwater.resources import Build, BuildConfig, ImageStream

    resources: dict[str, Any] = {
        "ImageStream": ImageStream,
        # ImageStreamTags are listed from their streams.
        "ImageStreamTag": ImageStream,
        "BuildConfig": BuildConfig,
        "Build": Build,
        "Deployment": apps_v1.Deployment,
        "StatefulSet": apps_v1.StatefulSet,
        "DaemonSet": apps_v1.DaemonSet,
        "CronJob": batch_v1.CronJob,
        "Job": batch_v1.Job,
    }
    # Completion must never fail loudly: no cluster, no permission, a timeout all offer nothing.
    try:
        found = _client(ctx)
        if found is None:
            return []
        client, namespace = found
        objs = [plain_dict(o) for o in client.list(resources[kind.kind], namespace=namespace)]
    except Exception as exc:
        log.debug("completion: listing %s failed: %s", kind.plural, exc)
        return []
    if kind.kind == "ImageStreamTag":
        return [
            f"{o['metadata']['name']}:{t.get('tag')}"
            for o in objs
            for t in (o.get("status") or {}).get("tags") or []
        ]
    return [str(o["metadata"]["name"]) for o in objs]


def complete_kinds(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    names = [n for k in VIEWABLE for n in (*k.short, k.singular, k.plural)]
    if "/" in incomplete:
        kind_text, _, prefix = incomplete.partition("/")
        try:
            kind = resolve(kind_text)
        except KindError:
            return []
        return [
            CompletionItem(f"{kind_text}/{n}") for n in _names(ctx, kind) if n.startswith(prefix)
        ]
    return [CompletionItem(n) for n in names if n.startswith(incomplete)]


def complete_names(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    kind_text = str(ctx.params.get("kind") or "")
    if not kind_text or "/" in kind_text:
        return []
    try:
        kind = resolve(kind_text)
    except KindError:
        return []
    return [CompletionItem(n) for n in _names(ctx, kind) if n.startswith(incomplete)]


def complete_trigger_targets(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """``bc/``, ``deploy/``... then the names of that kind."""
    if "/" not in incomplete:
        prefixes = [f"{k.hint}/" for k in TRIGGERABLE]
        return [CompletionItem(p, type="plain") for p in prefixes if p.startswith(incomplete)]
    kind_text, _, prefix = incomplete.partition("/")
    try:
        kind = resolve(kind_text, TRIGGERABLE)
    except KindError:
        return []
    return [CompletionItem(f"{kind_text}/{n}") for n in _names(ctx, kind) if n.startswith(prefix)]


@click.command("completion")
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the shell completion script for bash, zsh or fish.

    Completes verbs, options, resource types, and the names of ImageStreams,
    tags, BuildConfigs, Builds and workloads from the current cluster.

    \b
    Examples:
      eval "$(headwater completion bash)"         # this shell; add it to ~/.bashrc to keep it
      headwater completion zsh > "${fpath[1]}/_headwater"
      headwater completion fish > ~/.config/fish/completions/headwater.fish
    """
    cls = get_completion_class(shell)
    assert cls is not None  # the Choice admits only shells click knows
    root = ctx.find_root().command
    click.echo(cls(root, {}, "headwater", COMPLETE_VAR).source())
