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


def cluster_options(fn: Any) -> Any:
    """-n/--namespace, --context and --kubeconfig, as kubectl takes them."""
    fn = click.option("--kubeconfig", metavar="PATH", help="Path of the kubeconfig file.")(fn)
    fn = click.option("--context", metavar="NAME", help="Kubeconfig context to use.")(fn)
    fn = click.option(
        "-n", "--namespace", metavar="NS", help="Namespace (default: the context's)."
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
