"""``headwater``: the command line entry point.

Only ``operator run`` exists so far; the ``oc`` verbs (start-build, logs,
tag, import-image, ...) join this group as their issues land.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import sys

import click

from headwater import __version__
from headwater.config import ConfigError, load_config, unknown_env_vars


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="headwater")
def cli() -> None:
    """Headwater: OpenShift's ImageStreams, BuildConfigs and Builds on any Kubernetes."""


@cli.group()
def operator() -> None:
    """Run the Headwater operator."""


@operator.command("run")
@click.option(
    "--namespace",
    "-n",
    metavar="NS",
    help="Watch only this namespace (default: $HEADWATER_NAMESPACE, else all namespaces).",
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
    namespace: str | None,
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

    if namespace and all_namespaces:
        raise click.UsageError("--namespace and --all-namespaces exclude each other")
    try:
        config = load_config(os.environ)
        changes: dict[str, object] = {}
        if all_namespaces:
            changes["namespace"] = None
        elif namespace:
            from headwater.config import parse_namespace

            changes["namespace"] = parse_namespace(namespace, "--namespace")
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


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="headwater")
