"""The CLI's connection to the cluster, chosen the way kubectl chooses it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click
from lightkube import Client
from lightkube.config.kubeconfig import KubeConfig, SingleConfig
from lightkube.core.exceptions import ConfigError


def load_config(kubeconfig: str | None, context: str | None) -> SingleConfig:
    """The kubeconfig context kubectl would use: --kubeconfig, $KUBECONFIG, ~/.kube/config."""
    path = kubeconfig or os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    try:
        config = KubeConfig.from_file(path.split(os.pathsep)[0])
        single = config.get(context)
    except (ConfigError, OSError) as exc:
        raise click.ClickException(f"kubeconfig {path}: {exc}") from None
    if single is None:
        raise click.ClickException(f"kubeconfig {path}: no context to use")
    return single


CLUSTER_OPTIONS = ("namespace", "context", "kubeconfig")
"""The global flags: accepted before the verb (``headwater -n shop logs ...``) and after it."""


def _from_root(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """A verb's -n/--context/--kubeconfig; not given after the verb: the value given before it."""
    if value is not None or param.name is None:
        return value
    return ctx.find_root().params.get(param.name)


def cluster_options(fn: Any, *, after_verb: bool = True) -> Any:
    """-n/--namespace, --context and --kubeconfig, as kubectl takes them.

    On a verb (``after_verb``) a flag not given falls back to the same flag given
    before the verb, on the root command, as kubectl and oc accept both places.
    """
    callback = _from_root if after_verb else None
    fn = click.option(
        "--kubeconfig", metavar="PATH", callback=callback, help="Path of the kubeconfig file."
    )(fn)
    fn = click.option(
        "--context", metavar="NAME", callback=callback, help="Kubeconfig context to use."
    )(fn)
    fn = click.option(
        "-n",
        "--namespace",
        metavar="NS",
        callback=callback,
        help="Namespace (default: the context's).",
    )(fn)
    return fn


def connect(
    kubeconfig: str | None, context: str | None, namespace: str | None
) -> tuple[Client, str]:
    """A client for ``--kubeconfig``/``$KUBECONFIG``/``~/.kube/config`` and ``--context``,
    and the namespace: ``-n``, else the context's, else ``default``."""
    single = load_config(kubeconfig, context)
    chosen = namespace or single.namespace or "default"
    return Client(config=single, namespace=chosen, field_manager="headwater-cli"), chosen
