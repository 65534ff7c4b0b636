"""The CLI's connection to the cluster, chosen the way kubectl chooses it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click
from lightkube import Client
from lightkube.config.kubeconfig import KubeConfig, SingleConfig
from lightkube.core.exceptions import ApiError, ConfigError

from headwater import config as operator_settings

OPERATOR_NAMESPACE = "headwater-system"
OPERATOR_CONFIGMAP = "headwater-config"
OPERATOR_CONFIG_KEY = "config.yaml"
"""Where deploy/install.yaml puts the operator and its configuration (HEADWATER_CONFIG_FILE)."""


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


def operator_config(client: Client) -> operator_settings.Config | None:
    """The installed operator's configuration, read from its ConfigMap; None when there
    is none, the user may not read it, or it does not parse (what the CLI then cannot
    know, it does not guess). Settings given to the operator as environment variables
    instead are not seen."""
    from lightkube.resources.core_v1 import ConfigMap

    try:
        found = client.get(ConfigMap, OPERATOR_CONFIGMAP, namespace=OPERATOR_NAMESPACE)
    except ApiError:
        return None
    text = (found.data or {}).get(OPERATOR_CONFIG_KEY)
    if text is None:
        return None
    source = f"ConfigMap {OPERATOR_NAMESPACE}/{OPERATOR_CONFIGMAP}"
    try:
        return operator_settings.config_from_mapping(
            operator_settings.parse_yaml(text, source), source
        )
    except operator_settings.ConfigError:
        return None
