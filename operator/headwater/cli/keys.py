"""``keys create``: the cluster's signing key pair, in a Secret laid out as cosign's.

``cosign generate-key-pair k8s://<ns>/<name>`` writes a Secret with
``cosign.key`` (the encrypted private key), ``cosign.password`` and
``cosign.pub``; ``headwater keys create`` writes the same, so either tool's key
works with the other (``cosign sign --key k8s://headwater-system/headwater-signing-key``).
The operator signs every built image with it. The password is random and lives
only in the Secret; nothing secret is printed: only the public key, on stdout.
"""

from __future__ import annotations

import base64
import secrets

import click
from lightkube.core.exceptions import ApiError

from headwater.cli.kube import OPERATOR_NAMESPACE, cluster_options, connect, operator_config
from headwater.kube import is_gone
from headwater.registry import cosign

DEFAULT_NAME = "headwater-signing-key"


@click.group("keys")
def keys() -> None:
    """The signing key pair builds are signed with (cosign's format)."""


@keys.command("create")
@click.option(
    "--name",
    help="Name of the Secret (default: the installed operator's signingKeySecret setting,"
    f" else {DEFAULT_NAME}).",
)
@click.option("--force", is_flag=True, help="Replace an existing key pair of that name.")
@cluster_options
def create(
    name: str | None,
    force: bool,
    namespace: str | None,
    context: str | None,
    kubeconfig: str | None,
) -> None:
    """Make an ECDSA P-256 key pair in a Secret of the operator's namespace
    (-n, default the installed operator's, else headwater-system), as `cosign generate-key-pair k8s://NS/NAME`
    does, and print its public key.

    The operator signs every image it builds from then on. Anyone verifying
    uses the public key: `cosign verify --key cosign.pub --insecure-ignore-tlog=true IMAGE`.
    An existing key pair is kept unless --force: images signed with it then
    verify only against the old public key.
    """
    from lightkube.models.meta_v1 import ObjectMeta
    from lightkube.resources.core_v1 import Secret

    client, _ = connect(kubeconfig, context, namespace)
    installed = operator_config(client)
    if name is None:
        name = installed.signing_key_secret if installed is not None else DEFAULT_NAME
    if namespace is None and installed is not None:
        namespace = installed.leader_election.lease_namespace
    ns = namespace or OPERATOR_NAMESPACE
    try:
        client.get(Secret, name, namespace=ns)
        exists = True
    except ApiError as exc:
        if not is_gone(exc):
            raise
        exists = False
    if exists and not force:
        raise click.ClickException(
            f"Secret {ns}/{name} exists; --force replaces the key pair"
            " (images signed with it then verify only against its old public key)"
        )
    key = cosign.generate_key()
    # What `cosign generate-key-pair` asks for; random, and kept only in the Secret.
    password = secrets.token_urlsafe(32).encode()
    data = cosign.key_secret_data(key, password)
    secret = Secret(
        metadata=ObjectMeta(
            name=name,
            namespace=ns,
            labels={"app.kubernetes.io/part-of": "headwater"},
        ),
        type="Opaque",
        # As cosign writes it: a key pair is replaced, never edited in place.
        immutable=True,
        data={k: base64.b64encode(v).decode("ascii") for k, v in data.items()},
    )
    if exists:
        client.delete(Secret, name, namespace=ns)
    client.create(secret)
    click.echo(f"secret/{name} created in namespace {ns} (cosign.key, cosign.password, cosign.pub)",
               err=True)  # fmt: skip
    click.echo(key.public.pem().decode(), nl=False)
