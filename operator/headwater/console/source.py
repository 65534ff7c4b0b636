"""What the console reads, and how an API failure reads to a person.

:class:`Source` is the console's whole view of the cluster: list a kind in a
namespace (chunked, once), get one object, watch a kind from a resourceVersion,
and a synchronous lightkube client for the CLI functions the actions call.
:class:`KubeSource` is the real one, built from the CLI's kubeconfig handling
(the user's own credentials); unit tests pass a store of plain dicts. In token
mode each user gets a KubeSource of their own, built by :func:`with_token` from
the cluster alone (:func:`in_cluster` or a kubeconfig's cluster entry) and the
user's bearer token: never the pod's service account, never a kubeconfig's user.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import click

UNAUTHORIZED = 401
REFUSED_MESSAGE = "your token was refused by the Kubernetes API server (401 Unauthorized)"
LIST_CHUNK = 500
"""Objects per list request (limit/continue): 2,000 Builds are four requests."""


@dataclass(frozen=True)
class Kind:
    """A kind the console shows: its lightkube resource, found by ``key``."""

    key: str
    label: str


IMAGESTREAMS = Kind("imagestreams", "ImageStreams")
BUILDCONFIGS = Kind("buildconfigs", "BuildConfigs")
BUILDS = Kind("builds", "Builds")
DEPLOYMENTS = Kind("deployments", "Deployments")
STATEFULSETS = Kind("statefulsets", "StatefulSets")
DAEMONSETS = Kind("daemonsets", "DaemonSets")
CRONJOBS = Kind("cronjobs", "CronJobs")
REPLICASETS = Kind("replicasets", "ReplicaSets")
PODS = Kind("pods", "Pods")
EVENTS = Kind("events", "Events")
NAMESPACES = Kind("namespaces", "Namespaces")

KINDS = {
    k.key: k
    for k in (
        IMAGESTREAMS, BUILDCONFIGS, BUILDS, DEPLOYMENTS, STATEFULSETS, DAEMONSETS, CRONJOBS,
        REPLICASETS, PODS, EVENTS, NAMESPACES,
    )
}  # fmt: skip


def resource(kind: Kind) -> Any:
    from lightkube.resources import apps_v1, batch_v1, core_v1

    from headwater import resources

    return {
        "imagestreams": resources.ImageStream,
        "buildconfigs": resources.BuildConfig,
        "builds": resources.Build,
        "deployments": apps_v1.Deployment,
        "statefulsets": apps_v1.StatefulSet,
        "daemonsets": apps_v1.DaemonSet,
        "cronjobs": batch_v1.CronJob,
        "replicasets": apps_v1.ReplicaSet,
        "pods": core_v1.Pod,
        "events": core_v1.Event,
        "namespaces": core_v1.Namespace,
    }[kind.key]


class Problem(Exception):
    """An API failure as the page says it: ``title`` (Forbidden, Not found, ...) and text."""

    def __init__(self, title: str, message: str, status: int = 502) -> None:
        super().__init__(f"{title}: {message}")
        self.title = title
        self.message = message
        self.status = status


def problem(exc: BaseException, doing: str = "") -> Problem:
    """Any error talking to the cluster (or refused by the CLI's checks) as a :class:`Problem`."""
    import httpx2
    from lightkube.core.exceptions import ApiError

    prefix = f"{doing}: " if doing else ""
    if isinstance(exc, Problem):
        return exc
    if isinstance(exc, ApiError):
        from headwater.kube import Failure, classify, is_unauthorized

        message = str(exc.status.message or exc.status.reason or "error")
        if is_unauthorized(exc):
            return Problem("Unauthorized", prefix + REFUSED_MESSAGE, UNAUTHORIZED)
        failure = classify(exc)
        if failure is Failure.FORBIDDEN:
            return Problem("Forbidden", f"{prefix}you may not do this: {message}", 403)
        if failure is Failure.GONE:
            return Problem("Not found", prefix + message, 404)
        if failure is Failure.CONFLICT:
            return Problem("Conflict", prefix + message + "; try again", 409)
        if failure is Failure.INVALID:
            return Problem("Invalid", prefix + message, 422)
        return Problem(str(exc.status.reason or "API error"), prefix + message, 502)
    if isinstance(exc, httpx2.HTTPStatusError):
        # An answer that is not a Kubernetes Status: the API group itself is not served.
        code = exc.response.status_code
        path = exc.request.url.path
        if code == UNAUTHORIZED:
            return Problem("Unauthorized", prefix + REFUSED_MESSAGE, UNAUTHORIZED)
        if code == 404:
            return Problem(
                "Not found",
                f"{prefix}the API server does not serve {path}: are Headwater's CRDs installed?",
                404,
            )
        if code == 403:
            return Problem("Forbidden", f"{prefix}you may not do this ({path})", 403)
        return Problem("API error", f"{prefix}HTTP {code} from {path}", 502)
    if isinstance(exc, click.ClickException):
        return Problem("Refused", prefix + exc.format_message(), 422)
    if isinstance(exc, httpx2.TimeoutException | TimeoutError):
        return Problem("Timeout", f"{prefix}the API server did not answer in time", 504)
    if isinstance(exc, httpx2.TransportError):
        return Problem("Unreachable", f"{prefix}cannot reach the Kubernetes API server: {exc}", 502)
    raise exc


def refused(exc: BaseException) -> bool:
    """The API server refused the credentials themselves (401): not a permission, the token."""
    try:
        return problem(exc).status == UNAUTHORIZED
    except BaseException:
        return False


def is_problem(exc: BaseException) -> bool:
    try:
        problem(exc)
    except BaseException:
        return False
    return True


class Source(Protocol):
    """The cluster as the console sees it, as the user."""

    default_namespace: str

    async def list(
        self, kind: Kind, namespace: str | None, labels: Mapping[str, str] | None = None
    ) -> tuple[list[dict[str, Any]], str]:
        """Every object of ``kind`` (plain dicts) and the list's resourceVersion."""

    async def get(self, kind: Kind, name: str, namespace: str | None) -> dict[str, Any]: ...

    def watch(
        self, kind: Kind, namespace: str, resource_version: str
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """(ADDED|MODIFIED|DELETED, object) from ``resource_version`` on."""

    def sync_client(self) -> Any:
        """A synchronous lightkube Client, for the CLI functions (run in a thread)."""


class KubeSource:
    """The real :class:`Source`: lightkube clients from the user's kubeconfig."""

    def __init__(self, config: Any, namespace: str) -> None:
        self.config = config
        self.default_namespace = namespace
        self._async: Any = None
        self._sync: Any = None

    def _client(self) -> Any:
        if self._async is None:
            from lightkube import AsyncClient

            self._async = AsyncClient(
                config=self.config,
                namespace=self.default_namespace,
                field_manager="headwater-console",
            )
        return self._async

    def sync_client(self) -> Any:
        if self._sync is None:
            from lightkube import Client

            self._sync = Client(
                config=self.config, namespace=self.default_namespace, field_manager="headwater-cli"
            )
        return self._sync

    def connect(self) -> None:
        """Make both clients now (reading the CA, building the TLS context): token mode
        calls this in a thread for each new user, not on the event loop."""
        self._client()
        self.sync_client()

    async def list(
        self, kind: Kind, namespace: str | None, labels: Mapping[str, str] | None = None
    ) -> tuple[list[dict[str, Any]], str]:
        from headwater.kube import plain_dict

        res = resource(kind)
        kwargs: dict[str, Any] = {"chunk_size": LIST_CHUNK}
        if kind is not NAMESPACES:
            kwargs["namespace"] = namespace
        if labels:
            kwargs["labels"] = dict(labels)
        listing = self._client().list(res, **kwargs)
        out = [plain_dict(obj) async for obj in listing]
        try:
            version = str(listing.resourceVersion)
        except Exception:
            version = ""
        return out, version

    async def get(self, kind: Kind, name: str, namespace: str | None) -> dict[str, Any]:
        from headwater.kube import plain_dict

        return plain_dict(await self._client().get(resource(kind), name, namespace=namespace))

    async def watch(
        self, kind: Kind, namespace: str, resource_version: str
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        from headwater.kube import plain_dict

        async for event, obj in self._client().watch(
            resource(kind), namespace=namespace, resource_version=resource_version or None
        ):
            yield str(event), plain_dict(obj)

    async def close(self) -> None:
        if self._async is not None:
            await self._async.close()
        if self._sync is not None:
            self._sync.close()


SERVICE_ACCOUNT_CA = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"


def in_cluster(namespace: str) -> Any:
    """The cluster of the pod the console runs in (its API server's address and CA, as
    every in-cluster client finds them), with no user: :func:`with_token` adds each
    user's own token. The service account's token is never read."""
    import os

    from lightkube.config.kubeconfig import KubeConfig
    from lightkube.config.models import Cluster

    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    port = os.environ.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        raise click.ClickException(
            "--token-auth: not in a pod (KUBERNETES_SERVICE_HOST is not set); "
            "name the cluster with --kubeconfig (only its cluster entry is used)"
        )
    host = f"[{host}]" if ":" in host else host
    cluster = Cluster(server=f"https://{host}:{port}", certificate_auth=SERVICE_ACCOUNT_CA)
    return KubeConfig.from_one(cluster=cluster, namespace=namespace).get()


def with_token(cluster_config: Any, token: str) -> Any:
    """``cluster_config`` (a lightkube SingleConfig) acting as the bearer of ``token``:
    its cluster (address, CA) kept, any user it had replaced."""
    from lightkube.config.models import User

    return cluster_config._replace(user=User(token=token))
