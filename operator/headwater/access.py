"""Access reviews: may this user, or this namespace's service account, do that there?

Every permission Headwater checks on someone's behalf is one
SubjectAccessReview made here: the requester of an admission request (who
may use which build strategy, who may point a tag into another namespace),
and a namespace's service accounts (whose images a tag, a workload trigger or
a build may read, and where a build may push). The API server's authorizer
answers; Headwater never interprets RBAC itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lightkube import AsyncClient
from lightkube.models.authorization_v1 import ResourceAttributes, SubjectAccessReviewSpec
from lightkube.resources.authorization_v1 import SubjectAccessReview

IMAGE_GROUP = "image.headwater.dev"
BUILD_GROUP = "build.headwater.dev"


@dataclass(frozen=True)
class Requester:
    """Who asks: a user name and the groups the authenticator gave them.

    A SubjectAccessReview does not look groups up: a review for a user bound
    through a group (``system:authenticated``, a team group) needs them given.
    """

    user: str
    groups: tuple[str, ...] = ()
    uid: str | None = None
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def of_userinfo(cls, userinfo: object) -> Requester:
        """The requester of an admission request (its ``userInfo``)."""
        info: Mapping[str, Any] = userinfo if isinstance(userinfo, Mapping) else {}
        extra = info.get("extra") or {}
        return cls(
            user=str(info.get("username") or ""),
            groups=tuple(str(g) for g in info.get("groups") or []),
            uid=str(info["uid"]) if info.get("uid") else None,
            extra={str(k): tuple(str(x) for x in v or []) for k, v in extra.items()},
        )

    @classmethod
    def service_account(cls, namespace: str, name: str = "default") -> Requester:
        """A service account as its token authenticates (its user name and groups)."""
        return cls(
            user=f"system:serviceaccount:{namespace}:{name}",
            groups=(
                "system:serviceaccounts",
                f"system:serviceaccounts:{namespace}",
                "system:authenticated",
            ),
        )


@dataclass(frozen=True)
class Permission:
    """A verb on a resource (and subresource) of an API group, in a namespace."""

    namespace: str
    verb: str
    group: str
    resource: str
    subresource: str | None = None

    @property
    def resource_name(self) -> str:
        """``imagestreams/layers``, ``builds/custom``: as RBAC rules spell it."""
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource

    def __str__(self) -> str:
        return f"{self.verb} {self.resource_name}.{self.group} in namespace {self.namespace}"


def review(requester: Requester, permission: Permission) -> SubjectAccessReview:
    """The SubjectAccessReview asking whether ``requester`` has ``permission``."""
    return SubjectAccessReview(
        spec=SubjectAccessReviewSpec(
            user=requester.user,
            uid=requester.uid,
            groups=list(requester.groups),
            extra={k: list(v) for k, v in requester.extra.items()} or None,
            resourceAttributes=ResourceAttributes(
                namespace=permission.namespace,
                verb=permission.verb,
                group=permission.group,
                resource=permission.resource,
                subresource=permission.subresource,
            ),
        )
    )


async def allowed(kube: AsyncClient, requester: Requester, permission: Permission) -> bool:
    """Ask the API server; an error propagates (callers decide whether it refuses)."""
    answer = await kube.create(review(requester, permission))
    return bool(answer.status is not None and answer.status.allowed)


def image_layers(namespace: str, verb: str) -> Permission:
    """OpenShift's image access: ``get`` (pull) or ``update`` (push) on imagestreams/layers."""
    return Permission(namespace, verb, IMAGE_GROUP, "imagestreams", "layers")


def build_strategy(namespace: str, subresource: str) -> Permission:
    """OpenShift's strategy gate: ``create`` on builds/docker, builds/source or builds/custom."""
    return Permission(namespace, "create", BUILD_GROUP, "builds", subresource)
