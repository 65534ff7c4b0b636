"""``webhooks BC``: print a BuildConfig's webhook URLs, like ``oc start-build --list-webhooks``.

The secret is part of each URL by design (that is how OpenShift's webhook
URLs, and the Git hosts' hook settings, work), so this prints it, to stdout
only: it is never logged, and a Secret that cannot be read leaves ``<secret>``
in its URL with the reason on stderr.
"""

from __future__ import annotations

import base64
import binascii
import os

import click
from lightkube import Client
from lightkube.core.exceptions import ApiError

from headwater.builds.webhooks import HOOK_TYPES, WEBHOOK_SECRET_KEY, hook_urls, shared_secret
from headwater.cli.kube import OPERATOR_NAMESPACE, cluster_options, connect
from headwater.kube import is_gone, plain_dict

URL_ENV = "HEADWATER_WEBHOOK_URL"
LOCAL_BASE = "http://127.0.0.1:8082"
WEBHOOK_SERVICE = "headwater-webhooks"
"""Where deploy/install.yaml puts the operator and the Service of its webhook port."""
PORT_FORWARD_HINT = (
    "no --url-base or $HEADWATER_WEBHOOK_URL: the URLs below are for "
    f"`kubectl port-forward -n {OPERATOR_NAMESPACE} svc/{WEBHOOK_SERVICE} 8082`; "
    "give Git hosts the address your Ingress exposes the Service at"
)
LOCAL_HINT = (
    "no --url-base or $HEADWATER_WEBHOOK_URL, and no Service "
    f"{OPERATOR_NAMESPACE}/{WEBHOOK_SERVICE} (the operator is not installed): the URLs below "
    "are for an operator run on this host (e.g. `make run`), which serves the webhook port "
    "itself (config webhookPort, default 8082; no port-forward)"
)
_PREFIXES = ("bc/", "buildconfig/", "buildconfigs/", "buildconfig.build.headwater.dev/")


def _secret_value(client: Client, namespace: str, name: str) -> bytes | None:
    from lightkube.resources.core_v1 import Secret

    try:
        secret = client.get(Secret, name, namespace=namespace)
    except ApiError as exc:
        click.echo(f"warning: Secret {name}: {exc.status.message}", err=True)
        return None
    encoded = (secret.data or {}).get(WEBHOOK_SECRET_KEY)
    if not encoded:
        click.echo(f"warning: Secret {name} has no {WEBHOOK_SECRET_KEY} key", err=True)
        return None
    try:
        value = shared_secret(base64.b64decode(encoded, validate=True))
    except (binascii.Error, ValueError):
        click.echo(f"warning: Secret {name}: {WEBHOOK_SECRET_KEY} is not base64", err=True)
        return None
    if not value:
        click.echo(f"warning: Secret {name}: {WEBHOOK_SECRET_KEY} is empty", err=True)
        return None
    return value


def _installed(client: Client) -> bool:
    """Whether the installed operator's webhook Service exists (True when not readable)."""
    from lightkube.resources.core_v1 import Service

    try:
        client.get(Service, WEBHOOK_SERVICE, namespace=OPERATOR_NAMESPACE)
    except ApiError as exc:
        return not is_gone(exc)
    return True


@click.command("webhooks")
@click.argument("buildconfig")
@click.option(
    "--type",
    "hook_type",
    type=click.Choice(["all", *HOOK_TYPES]),
    default="all",
    show_default=True,
    help="Only this kind of webhook trigger (oc start-build --list-webhooks=TYPE).",
)
@click.option(
    "--url-base",
    metavar="URL",
    help=f"Where Git hosts reach the operator's webhook port (default: ${URL_ENV}).",
)
@cluster_options
def webhooks(
    buildconfig: str,
    hook_type: str,
    url_base: str | None,
    namespace: str | None,
    context: str | None,
    kubeconfig: str | None,
) -> None:
    """Print the webhook URL of each GitHub, GitLab, Bitbucket or Generic trigger of BUILDCONFIG.

    One URL per line, secret included (it is how the hooks authenticate):
    paste it into the Git host's webhook settings, or `curl -X POST` the
    Generic one. The base is --url-base, else $HEADWATER_WEBHOOK_URL, else
    http://127.0.0.1:8082: a `kubectl port-forward` to the headwater-webhooks
    Service of an installed operator, or the port an operator run on this
    host (`make run`) serves itself.
    """
    from headwater.resources import BuildConfig

    name = buildconfig
    for prefix in _PREFIXES:
        name = name.removeprefix(prefix)
    base = url_base or os.environ.get(URL_ENV)
    client, ns = connect(kubeconfig, context, namespace)
    if not base:
        click.echo(PORT_FORWARD_HINT if _installed(client) else LOCAL_HINT, err=True)
        base = LOCAL_BASE
    try:
        bc = plain_dict(client.get(BuildConfig, name, namespace=ns))
    except ApiError as exc:
        if is_gone(exc):
            raise click.ClickException(
                f'buildconfig.build.headwater.dev "{name}" not found in namespace {ns}'
            ) from None
        raise
    hooks = tuple(HOOK_TYPES) if hook_type == "all" else (hook_type,)
    secrets: dict[str, bytes | None] = {}
    for trigger in (bc.get("spec") or {}).get("triggers") or []:
        kind = next((h for h, k in HOOK_TYPES.items() if k == trigger.get("type")), None)
        if kind not in hooks:
            continue
        ref = (trigger.get(kind) or {}).get("secretReference") or {}
        secret_name = ref.get("name")
        if secret_name and secret_name not in secrets:
            secrets[secret_name] = _secret_value(client, ns, str(secret_name))
    urls = hook_urls(bc, secrets, base, hooks)
    if not urls:
        which = "webhook" if hook_type == "all" else HOOK_TYPES[hook_type]
        raise click.ClickException(f"buildconfig {name} has no {which} triggers")
    for found in urls:
        click.echo(found.url)
