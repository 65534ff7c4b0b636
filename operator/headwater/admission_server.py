"""Admission served by every replica, leader or standby, for the whole process life.

The admission handlers (:mod:`headwater.handlers.lookup`, ``references``,
``inline_secrets``, ``strategies``) live in a registry of their own, never in
kopf's default one, so kopf's operator (which runs on the leader only) knows
nothing of them. This module serves them with kopf's own request handling
(``serve_admission_request``) behind kopf's own TLS server
(:class:`kopf.WebhookServer`), but with no operator around them: no watches,
no peering, no insights from the cluster. What kopf would take from a running
operator is given here: the resources the handlers are for (a fixed list),
an empty index, and a memo holding an :class:`AdmissionContext` (a Kubernetes
client and the configured registry; nothing only the leader has).

How the API server reaches the replicas, and why it trusts them:

- ``admissionService`` set (the install bundle): the webhook configuration
  ``headwater.dev`` points at that Service (port 443) in the operator's
  namespace, which selects every operator pod. One CA, kept in the Secret
  ``headwater-admission-ca`` there, is the ``caBundle``; the first replica to
  start makes it (create; on 409 it reads the winner's), every replica signs
  a serving certificate of its own with it for the Service's DNS names. Every
  replica writes the same configuration at start, and none clears it on exit.
- only ``admissionHost`` (a local operator): the configuration points at that
  address with a self-signed certificate made at start; on exit only the
  persistent webhooks (the strategy gate) stay, as kopf did.
- neither: no admission.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import logging
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, cast

import kopf
from kopf._cogs.structs import bodies, ephemera, references, reviews
from kopf._core.engines import admission as kopf_admission
from kopf._core.intents.causes import WebhookType
from lightkube import AsyncClient
from lightkube.config.kubeconfig import KubeConfig
from lightkube.core.exceptions import ApiError
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.admissionregistration_v1 import (
    MutatingWebhookConfiguration,
    ValidatingWebhookConfiguration,
)
from lightkube.resources.core_v1 import Secret
from lightkube.types import PatchType

from headwater.certs import CertificateAuthority, ServingCert, make_ca, make_leaf_cert
from headwater.certs import make_serving_cert as make_self_signed_cert
from headwater.config import Config
from headwater.handlers import inline_secrets, lookup, strategies
from headwater.handlers import references as reference_checks
from headwater.handlers.admission import MEMO_ADMISSION, AdmissionContext, hardened
from headwater.imports.lookup import ADMISSION_CONFIGURATION
from headwater.kube import create_or_conflict, is_gone

logger = logging.getLogger(__name__)

CA_SECRET: Final = "headwater-admission-ca"  # noqa: S105  (a name, not a secret)
"""The Secret in the operator's namespace holding the admission CA (``ca.crt``, ``ca.key``)."""
SERVICE_PORT: Final = 443
FIELD_MANAGER: Final = "headwater"
RETRY_SECONDS: Final = 5.0

WEBHOOK_RESOURCES: Final = frozenset(
    references.Resource(group, "v1", plural)
    for group, plural in (
        ("", "pods"),
        ("apps", "deployments"),
        ("apps", "statefulsets"),
        ("apps", "daemonsets"),
        ("batch", "jobs"),
        ("batch", "cronjobs"),
        ("image.headwater.dev", "imagestreams"),
        ("build.headwater.dev", "buildconfigs"),
        ("build.headwater.dev", "builds"),
    )
)
"""Every resource an admission handler is for (kopf would discover them in the cluster)."""


@functools.cache
def admission_registry() -> kopf.OperatorRegistry:
    """The admission handlers, in a registry kopf's operator never sees."""
    registry = kopf.OperatorRegistry()
    lookup.register(registry)
    reference_checks.register(registry)
    inline_secrets.register(registry)
    strategies.register(registry)
    return registry


class _SharedMemo(kopf_admission.MemoGetter):
    """Every request gets the one memo: the handlers keep nothing per object."""

    async def recall_memo(
        self,
        raw_body: bodies.RawBody,
        *,
        memobase: ephemera.AnyMemo | None = None,
        ephemeral: bool = False,
    ) -> ephemera.AnyMemo:
        if memobase is None:
            raise RuntimeError("the admission server always passes its memo")
        return memobase


def webhook_fn(registry: kopf.OperatorRegistry, memo: kopf.Memo) -> reviews.WebhookFn:
    """kopf's ``serve_admission_request`` bound to ``registry`` and ``memo``; no operator."""
    insights = references.Insights(webhook_resources=set(WEBHOOK_RESOURCES))
    fn = functools.partial(
        kopf_admission.serve_admission_request,
        settings=kopf.OperatorSettings(),
        memories=_SharedMemo(),
        memobase=cast(ephemera.AnyMemo, memo),
        registry=registry,
        insights=insights,
        indices={},
    )
    return fn


def service_hosts(service: str, namespace: str) -> list[str]:
    """The names the API server may use for ``service`` (first: the one it uses)."""
    return [
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
        f"{service}.{namespace}",
        service,
    ]


def service_client_config(service: str, namespace: str, ca_pem: bytes) -> dict[str, Any]:
    """The webhooks' ``clientConfig``: the Service in front of every replica, trusted by the CA."""
    return {
        "service": {"namespace": namespace, "name": service, "port": SERVICE_PORT, "path": ""},
        "caBundle": base64.b64encode(ca_pem).decode("ascii"),
    }


def webhook_configurations(
    registry: kopf.OperatorRegistry,
    client_config: Mapping[str, Any],
    operator_namespace: str,
    persistent_only: bool = False,
) -> dict[WebhookType, list[dict[str, Any]]]:
    """The ``webhooks`` of the Mutating and the Validating configuration, as kopf builds them,
    :func:`~headwater.handlers.admission.hardened`."""
    handlers = registry._webhooks.get_all_handlers()
    return {
        reason: hardened(
            kopf_admission.build_webhooks(
                [h for h in handlers if h.reason == reason],
                resources=WEBHOOK_RESOURCES,
                name_suffix=ADMISSION_CONFIGURATION,
                client_config=cast(reviews.WebhookClientConfig, dict(client_config)),
                persistent_only=persistent_only,
            ),
            operator_namespace,
        )
        for reason in (WebhookType.MUTATING, WebhookType.VALIDATING)
    }


_KINDS: Final[dict[WebhookType, Any]] = {
    WebhookType.MUTATING: MutatingWebhookConfiguration,
    WebhookType.VALIDATING: ValidatingWebhookConfiguration,
}


async def write_configurations(
    kube: AsyncClient, webhooks: Mapping[WebhookType, list[dict[str, Any]]]
) -> None:
    """Create ``headwater.dev`` if absent (409 is fine), then set its webhooks (kopf's way,
    so the same RBAC: create, and get/patch of that one name)."""
    for reason, resource in _KINDS.items():
        await create_or_conflict(kube, resource(metadata=ObjectMeta(name=ADMISSION_CONFIGURATION)))
        await kube.patch(
            resource,
            ADMISSION_CONFIGURATION,
            {"webhooks": webhooks[reason]},
            patch_type=PatchType.MERGE,
        )


def ca_from_secret(data: Mapping[str, str] | None) -> CertificateAuthority | None:
    """The CA a Secret's ``data`` holds, or None when it holds none."""
    data = data or {}
    if not data.get("ca.crt") or not data.get("ca.key"):
        return None
    return CertificateAuthority(base64.b64decode(data["ca.crt"]), base64.b64decode(data["ca.key"]))


def ca_secret(namespace: str, ca: CertificateAuthority) -> Secret:
    return Secret(
        metadata=ObjectMeta(
            name=CA_SECRET,
            namespace=namespace,
            labels={
                "app.kubernetes.io/name": "headwater",
                "app.kubernetes.io/part-of": "headwater",
            },
        ),
        type="Opaque",
        data={
            "ca.crt": base64.b64encode(ca.cert_pem).decode("ascii"),
            "ca.key": base64.b64encode(ca.key_pem).decode("ascii"),
        },
    )


async def load_or_create_ca(kube: AsyncClient, namespace: str) -> CertificateAuthority:
    """The admission CA all replicas share: read it, or make it when no replica has yet."""
    for _ in range(3):
        try:
            secret = await kube.get(Secret, CA_SECRET, namespace=namespace)
        except ApiError as exc:
            if not is_gone(exc):
                raise
        else:
            ca = ca_from_secret(secret.data)
            if ca is None:
                raise RuntimeError(
                    f"Secret {namespace}/{CA_SECRET} holds no ca.crt and ca.key;"
                    " delete it and a replica makes a new CA"
                )
            return ca
        ca = await asyncio.to_thread(make_ca, f"headwater admission CA ({namespace})")
        if await create_or_conflict(kube, ca_secret(namespace, ca)) is None:
            continue  # another replica made it first: use theirs
        logger.info("admission: made the CA in Secret %s/%s", namespace, CA_SECRET)
        return ca
    raise RuntimeError(f"Secret {namespace}/{CA_SECRET} keeps appearing and disappearing")


@dataclass(frozen=True)
class Plan:
    """How this replica serves admission (a pure view of the Config)."""

    service: str | None
    host: str | None
    port: int
    namespace: str
    """The operator's namespace: the Service's and the CA Secret's, left out of admission."""

    @classmethod
    def of(cls, config: Config) -> Plan | None:
        if not config.admission_service and not config.admission_host:
            return None
        return cls(
            service=config.admission_service,
            host=None if config.admission_service else config.admission_host,
            port=config.admission_port,
            namespace=config.leader_election.lease_namespace,
        )


async def _server_and_client_config(
    plan: Plan, kube: AsyncClient, directory: Path
) -> tuple[kopf.WebhookServer, dict[str, Any] | None]:
    """The TLS server, and the clientConfig to write (None: the one the server yields)."""
    if plan.service:
        ca = await load_or_create_ca(kube, plan.namespace)
        hosts = service_hosts(plan.service, plan.namespace)
        cert: ServingCert = await asyncio.to_thread(make_leaf_cert, directory, ca, hosts)
        return _tls_server(plan, cert, ca.cert_pem), service_client_config(
            plan.service, plan.namespace, ca.cert_pem
        )
    host = plan.host or ""
    cert = await asyncio.to_thread(make_self_signed_cert, directory, [host])
    return _tls_server(plan, cert, cert.cert_pem, host=host), None


def _tls_server(
    plan: Plan, cert: ServingCert, ca_pem: bytes, host: str | None = None
) -> kopf.WebhookServer:
    return kopf.WebhookServer(
        addr="0.0.0.0",
        port=plan.port,
        host=host,
        certfile=str(cert.cert_file),
        pkeyfile=str(cert.key_file),
        cadata=ca_pem,
    )


async def _serve_once(
    plan: Plan, config: Config, kube: AsyncClient, ready: asyncio.Event | None
) -> None:
    directory = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="headwater-admission-"))
    server, fixed = await _server_and_client_config(plan, kube, directory)
    registry = admission_registry()
    memo = kopf.Memo({MEMO_ADMISSION: AdmissionContext(kube=kube, registry=config.registry)})
    written: dict[str, Any] | None = None
    try:
        async with server as serving:
            async for yielded in serving(webhook_fn(registry, memo)):
                client_config = fixed or dict(yielded)
                await write_configurations(
                    kube, webhook_configurations(registry, client_config, plan.namespace)
                )
                written = client_config
                logger.info(
                    "admission: serving on port %s; webhook configuration %s points at %s",
                    plan.port,
                    ADMISSION_CONFIGURATION,
                    f"Service {plan.namespace}/{plan.service}" if plan.service else plan.host,
                )
                if ready is not None:
                    ready.set()
    finally:
        if written is not None and not plan.service:
            # Only this process answers there: keep only the webhooks that must
            # fail closed (the strategy gate), as kopf did on exit.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    write_configurations(
                        kube,
                        webhook_configurations(
                            registry, written, plan.namespace, persistent_only=True
                        ),
                    ),
                    timeout=10,
                )


async def serve(
    config: Config, kube_config: KubeConfig, ready: asyncio.Event | None = None
) -> None:
    """Serve admission until cancelled; ``ready`` is set once requests can be answered.

    A failure (the API server unreachable at start, the CA Secret unreadable)
    is logged and retried; it never stops the process.
    """
    plan = Plan.of(config)
    if plan is None:
        logger.warning(
            "admission webhook off (no admission service or host): lookupPolicy.local is not"
            " applied and build strategies are not gated (builds/docker, builds/source,"
            " builds/custom)"
        )
        if ready is not None:
            ready.set()
        return
    kube = AsyncClient(config=kube_config, field_manager=FIELD_MANAGER)
    try:
        while True:
            try:
                await _serve_once(plan, config, kube, ready)
            except Exception as exc:  # any failure: log it, retry, keep the process
                logger.error("admission: %s; retrying in %ss", exc, RETRY_SECONDS)
            await asyncio.sleep(RETRY_SECONDS)
    finally:
        await kube.close()
