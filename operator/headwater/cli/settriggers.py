"""``set triggers``: list and edit the triggers of BuildConfigs and workloads, like oc.

The edits are pure (:mod:`headwater.cli.triggers`); this module reads the
object, writes the result with a merge patch guarded by the resourceVersion
it read (a concurrent change makes it read and edit again), and makes or
deletes the webhook Secrets.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any, cast

import click
from lightkube import Client
from lightkube.core.exceptions import ApiError
from lightkube.types import PatchType

from headwater.cli.completion import complete_trigger_targets
from headwater.cli.kinds import BUILDCONFIG, TRIGGERABLE, Kind, KindError, split_target
from headwater.cli.kube import cluster_options, connect
from headwater.cli.output import table
from headwater.cli.triggers import (
    SECRET_MADE_FOR,
    ImageRef,
    TriggerError,
    TriggerOptions,
    buildconfig_rows,
    edit_buildconfig,
    edit_workload,
    make_options,
    missing_image,
    webhook_secret,
    workload_rows,
)
from headwater.kube import Failure, classify, is_conflict, is_gone, plain_dict

ATTEMPTS = 3
"""Read-edit-write rounds before giving up on an object others keep changing."""
WEBHOOK_SECRET_BYTES = 20
"""oc generates 20 characters; 20 random bytes (40 hex digits) is stronger and URL-safe."""


def _resource(kind: Kind) -> Any:
    from lightkube.resources import apps_v1, batch_v1

    from headwater.resources import BuildConfig

    return {
        "BuildConfig": BuildConfig,
        "Deployment": apps_v1.Deployment,
        "StatefulSet": apps_v1.StatefulSet,
        "DaemonSet": apps_v1.DaemonSet,
        "CronJob": batch_v1.CronJob,
        "Job": batch_v1.Job,
    }[kind.kind]


def _read(client: Client, kind: Kind, name: str, namespace: str) -> dict[str, Any]:
    try:
        return plain_dict(client.get(_resource(kind), name, namespace=namespace))
    except ApiError as exc:
        if is_gone(exc):
            raise click.ClickException(
                f'{kind.qualified} "{name}" not found in namespace {namespace}'
            ) from None
        raise


def _patch(client: Client, kind: Kind, name: str, namespace: str, patch: Mapping[str, Any]) -> bool:
    """Apply a merge patch; False when the object changed since it was read (409)."""
    try:
        client.patch(_resource(kind), name, dict(patch), namespace=namespace,
                     patch_type=PatchType.MERGE)  # fmt: skip
    except ApiError as exc:
        if is_conflict(exc):
            return False
        raise
    return True


def _version(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def _edit_buildconfig(client: Client, name: str, namespace: str, opts: TriggerOptions) -> None:
    from lightkube.resources.core_v1 import Secret

    for _ in range(ATTEMPTS):
        bc = _read(client, BUILDCONFIG, name, namespace)
        secret: dict[str, Any] | None = None
        if opts.webhook is not None and not opts.remove:
            secret = webhook_secret(
                bc, opts.webhook, secrets.token_hex(WEBHOOK_SECRET_BYTES), secrets.token_hex(3)
            )
        try:
            edit = edit_buildconfig(bc, opts, secret["metadata"]["name"] if secret else None)
        except TriggerError as exc:
            raise click.ClickException(str(exc)) from None
        if edit.triggers == list((bc.get("spec") or {}).get("triggers") or []):
            click.echo(f"{BUILDCONFIG.object_name(name)} triggers unchanged")
            return
        if secret is not None:
            client.create(cast(Secret, Secret.from_dict(secret)), namespace=namespace)
        patch = {
            "metadata": {"resourceVersion": _version(bc)},
            "spec": {"triggers": edit.triggers},
        }
        if not _patch(client, BUILDCONFIG, name, namespace, patch):
            if secret is not None:
                client.delete(Secret, secret["metadata"]["name"], namespace=namespace)
            continue
        click.echo(f"{BUILDCONFIG.object_name(name)} triggers updated")
        if secret is not None:
            click.echo(
                f"secret/{secret['metadata']['name']} created: the {opts.webhook} webhook's "
                "secret, key WebHookSecretKey (headwater describe bc shows the URL)"
            )
        _delete_made_secrets(client, name, namespace, edit.removed_secrets)
        return
    raise click.ClickException(f"{BUILDCONFIG.object_name(name)} keeps changing; try again")


def _delete_made_secrets(client: Client, bc: str, namespace: str, names: tuple[str, ...]) -> None:
    """Delete the removed webhooks' Secrets that `set triggers` made for this BuildConfig;
    Secrets made by hand may serve other BuildConfigs and stay."""
    from lightkube.resources.core_v1 import Secret

    for secret_name in names:
        try:
            secret = client.get(Secret, secret_name, namespace=namespace)
        except ApiError as exc:
            if classify(exc) in (Failure.GONE, Failure.FORBIDDEN):
                continue
            raise
        annotations = (secret.metadata.annotations if secret.metadata else None) or {}
        if annotations.get(SECRET_MADE_FOR) == bc:
            client.delete(Secret, secret_name, namespace=namespace)
            click.echo(f"secret/{secret_name} deleted")


def _edit_workload(
    client: Client, kind: Kind, name: str, namespace: str, opts: TriggerOptions
) -> None:
    label = kind.object_name(name)
    for _ in range(ATTEMPTS):
        obj = _read(client, kind, name, namespace)
        try:
            edit = edit_workload(obj, kind.kind, opts)
        except TriggerError as exc:
            raise click.ClickException(str(exc)) from None
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        paused = bool((obj.get("spec") or {}).get("paused"))
        if annotations.get(edit.key) == edit.value and edit.paused in (None, paused):
            click.echo(f"{label} triggers unchanged")
            return
        patch: dict[str, Any] = {
            "metadata": {"resourceVersion": _version(obj), "annotations": {edit.key: edit.value}}
        }
        if edit.paused is not None:
            patch["spec"] = {"paused": edit.paused}
        if _patch(client, kind, name, namespace, patch):
            click.echo(f"{label} triggers updated")
            for container, watched in edit.replaced:
                click.echo(
                    f"warning: {label}: container {container}'s trigger on {watched} was"
                    f" replaced by the one on {opts.from_image.name if opts.from_image else ''}",
                    err=True,
                )
            return
    raise click.ClickException(f"{label} keeps changing; try again")


def apply_triggers(
    client: Client, kind: Kind, name: str, namespace: str, opts: TriggerOptions
) -> None:
    """Edit one object's triggers as ``set triggers`` does (``set triggers`` and the
    console's pause/resume action); what changed is echoed, a refusal raises."""
    if kind is BUILDCONFIG:
        _edit_buildconfig(client, name, namespace, opts)
    else:
        _edit_workload(client, kind, name, namespace, opts)


def _missing_image(client: Client, ref: ImageRef, namespace: str) -> str | None:
    """What to say when --from-image names a stream or tag that does not exist."""
    from headwater.resources import ImageStream

    stream_name = ref.name.partition(":")[0]
    try:
        stream: dict[str, Any] | None = plain_dict(
            client.get(ImageStream, stream_name, namespace=ref.namespace or namespace)
        )
    except ApiError as exc:
        if not is_gone(exc):
            return None  # not allowed to read it (another namespace): nothing to say
        stream = None
    return missing_image(ref, stream, namespace)


@click.command("triggers")
@click.argument(
    "targets", nargs=-1, required=True, metavar="TYPE/NAME...",
    shell_complete=complete_trigger_targets,
)  # fmt: skip
@click.option("--from-config", is_flag=True, help="Build on configuration change (Deployments: "
              "roll out on template change, i.e. not paused).")  # fmt: skip
@click.option("--from-image", metavar="[NS/]IS:TAG", help="An ImageStreamTag to trigger on.")
@click.option(
    "-c", "--containers", metavar="NAMES",
    help="Workloads: comma-separated containers --from-image updates (default: the only one).",
)  # fmt: skip
@click.option("--from-github", is_flag=True, help="A GitHub webhook, with a new secret.")
@click.option("--from-gitlab", is_flag=True, help="A GitLab webhook, with a new secret.")
@click.option("--from-bitbucket", is_flag=True, help="A Bitbucket webhook, with a new secret.")
@click.option("--from-webhook", is_flag=True, help="A generic webhook, with a new secret.")
@click.option("--from-webhook-allow-env", is_flag=True,
              help="A generic webhook that may set build env vars, with a new secret.")  # fmt: skip
@click.option("--remove", is_flag=True, help="Remove the trigger(s) the --from-* flag names.")
@click.option("--remove-all", is_flag=True, help="Remove every trigger.")
@click.option("--auto", is_flag=True, help="Resume image triggers (all, or --from-image's).")
@click.option("--manual", is_flag=True, help="Pause image triggers (all, or --from-image's).")
@cluster_options
def set_triggers(
    targets: tuple[str, ...], from_config: bool, from_image: str | None, containers: str | None,
    from_github: bool, from_gitlab: bool, from_bitbucket: bool, from_webhook: bool,
    from_webhook_allow_env: bool, remove: bool, remove_all: bool, auto: bool, manual: bool,
    namespace: str | None, context: str | None, kubeconfig: str | None,
) -> None:  # fmt: skip
    """List or change the triggers of BuildConfigs and workloads, like `oc set triggers`.

    TYPE is bc|buildconfig, deploy|deployment, sts|statefulset, ds|daemonset,
    cj|cronjob or job. Without flags, prints a table of each object's
    triggers. BuildConfigs keep triggers in spec.triggers; workloads in the
    image.openshift.io/triggers annotation, written as oc writes it.

    \b
    Examples (the seed's BuildConfig and Deployment "web"):
      headwater set triggers bc/web                      # the table
      headwater set triggers bc/web --from-github        # a webhook, with a new Secret
      headwater set triggers bc/web --from-image=openshift/nodejs-20:latest
      headwater set triggers bc/web --from-config --remove
      headwater set triggers bc/web --manual             # pause image triggers
      headwater set triggers deploy/web --from-image=web:latest -c web
      headwater set triggers deploy/web --remove-all

    Webhook flags make a Secret (key WebHookSecretKey, a random value, owned
    by the BuildConfig) and reference it; --remove deletes the Secrets it made.
    """
    try:
        opts = make_options(
            from_config=from_config, from_image=from_image, containers=containers,
            github=from_github, gitlab=from_gitlab, bitbucket=from_bitbucket,
            webhook=from_webhook, webhook_allow_env=from_webhook_allow_env, remove=remove,
            remove_all=remove_all, auto=auto, manual=manual,
        )  # fmt: skip
        parsed = [split_target(t, TRIGGERABLE) for t in targets]
    except (TriggerError, KindError) as exc:
        raise click.UsageError(str(exc)) from None
    client, default_ns = connect(kubeconfig, context, namespace)
    if opts.print_table:
        rows = []
        for kind, name in parsed:
            obj = _read(client, kind, name, default_ns)
            try:
                found = (buildconfig_rows(obj) if kind is BUILDCONFIG
                         else workload_rows(obj, kind.kind))  # fmt: skip
            except TriggerError as exc:
                raise click.ClickException(f"{kind.plural}/{name}: {exc}") from None
            rows += [(f"{kind.plural}/{name}", *row) for row in found]
        click.echo(table(("NAME", "TYPE", "VALUE", "AUTO"), rows))
        return
    missing = (
        _missing_image(client, opts.from_image, default_ns)
        if opts.from_image is not None and not opts.remove
        else None
    )
    for kind, name in parsed:
        apply_triggers(client, kind, name, default_ns, opts)
    if missing:
        # Said once the triggers are written (a refused edit says only why).
        click.echo(f"warning: {missing}", err=True)
