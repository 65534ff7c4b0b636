"""Who may run which build strategy, and what a build touches in other namespaces (pure).

OpenShift's model, kept: using a build strategy is the permission to
``create`` the pseudo-subresource ``builds/docker``, ``builds/source`` or
``builds/custom`` (group ``build.headwater.dev``) in the namespace. It is
checked at admission for whoever creates or changes a BuildConfig or Build
or asks for a build, and for triggered builds (ConfigChange, ImageChange,
webhooks), which have no requester of their own, it is checked for the user
recorded as the last one to write the BuildConfig's spec.

A build reads and writes images as its service account: an ImageStreamTag in
another namespace is read with ``get`` and pushed to with ``update`` on
``imagestreams/layers`` there (OpenShift's image-puller and image-pusher).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from headwater.builds.instantiate import REQUEST_PREFIX, RequestError, parse_request
from headwater.builds.model import GROUP

STRATEGY_SUBRESOURCES = {"Docker": "docker", "Source": "source", "Custom": "custom"}
_STRATEGY_KEYS = {
    "Docker": "dockerStrategy",
    "Source": "sourceStrategy",
    "Custom": "customStrategy",
}
REQUESTER_ANNOTATION = f"{GROUP}/strategy-requester"
"""On BuildConfigs, set by the operator's admission webhook: the user (and groups) who
created the BuildConfig or last changed its spec. Triggered builds are checked as them."""
CUSTOM_STRATEGY_ROLE = "headwater-build-strategy-custom"
"""The ClusterRole an admin binds to let a user use the Custom strategy."""
IMAGE_PULLER_ROLE = "headwater-image-puller"
IMAGE_PUSHER_ROLE = "headwater-image-pusher"
IMAGE_REFERENCE_KINDS = frozenset({"ImageStreamTag", "ImageStreamImage"})


def strategy_type(spec: Mapping[str, Any] | None) -> str:
    return str(((spec or {}).get("strategy") or {}).get("type") or "Docker")


def strategy_subresource(spec: Mapping[str, Any] | None) -> str:
    """``docker``, ``source`` or ``custom``: the subresource using this spec's strategy needs."""
    kind = strategy_type(spec)
    return STRATEGY_SUBRESOURCES.get(kind, kind.lower())


def strategy_grant_hint(subresource: str) -> str:
    """Who grants a strategy: edit has docker and source; custom is an admin's to give."""
    if subresource == "custom":
        return f"an admin grants it by binding the ClusterRole {CUSTOM_STRATEGY_ROLE}"
    return "the namespace's edit and admin roles include it"


def new_start_requests(
    old_annotations: Mapping[str, Any] | None, new_annotations: Mapping[str, Any] | None
) -> list[str]:
    """Start request annotations this write adds (or changes)."""
    old = old_annotations or {}
    return sorted(
        key
        for key, value in (new_annotations or {}).items()
        if key.startswith(REQUEST_PREFIX) and old.get(key) != value
    )


def needs_strategy_check(
    operation: str, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None
) -> bool:
    """Does this write use a strategy: a new object, a changed spec, or a new start request?

    Anything else (labels, owner references, finalizers, annotations going
    away, status) is left alone, so the garbage collector and the operator's
    own bookkeeping never need a strategy.
    """
    if new is None:
        return False
    if operation == "CREATE" or old is None:
        return True
    if (old.get("spec") or {}) != (new.get("spec") or {}):
        return True
    return bool(
        new_start_requests(
            (old.get("metadata") or {}).get("annotations"),
            (new.get("metadata") or {}).get("annotations"),
        )
    )


def requested_builds(annotations: Mapping[str, Any] | None, keys: list[str]) -> list[str]:
    """The ``fromBuild`` of each of these start requests (re-running another Build's spec)."""
    found = []
    for key in keys:
        try:
            request = parse_request(key[len(REQUEST_PREFIX) :], str((annotations or {})[key]))
        except (RequestError, KeyError):
            continue  # the operator reports a malformed request on the BuildConfig
        if request.from_build:
            found.append(request.from_build)
    return found


def requester_value(user: str, groups: list[str] | tuple[str, ...]) -> str:
    """The annotation value recording a requester: JSON ``{"user", "groups"}``."""
    return json.dumps({"user": user, "groups": sorted(set(groups))}, separators=(",", ":"))


def parse_requester(value: object) -> tuple[str, tuple[str, ...]] | None:
    """(user, groups) from the annotation value, or None when absent or malformed."""
    if not isinstance(value, str) or not value:
        return None
    try:
        doc = json.loads(value)
    except json.JSONDecodeError:
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("user"), str) or not doc["user"]:
        return None
    groups = doc.get("groups") or []
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        return None
    return doc["user"], tuple(groups)


def recorded_requester(
    operation: str,
    old: Mapping[str, Any] | None,
    new: Mapping[str, Any],
    user: str,
    groups: list[str] | tuple[str, ...],
) -> str | None:
    """The requester annotation a BuildConfig write must end up with (None: absent).

    The writer when it creates the BuildConfig or changes its spec; otherwise
    what was recorded before, whatever the client sent, so that no one can
    put another user's name there.
    """
    old_spec = (old or {}).get("spec") or {}
    if operation == "CREATE" or old is None or old_spec != (new.get("spec") or {}):
        return requester_value(user, groups)
    value = ((old.get("metadata") or {}).get("annotations") or {}).get(REQUESTER_ANNOTATION)
    return str(value) if value is not None else None


@dataclass(frozen=True)
class ImageAccess:
    """A build needs its service account to ``verb`` imagestreams/layers in ``namespace``."""

    namespace: str
    verb: str
    what: str
    """The field asking for it: ``output.to``, ``strategy from``, ``source.images[0].from``…"""

    @property
    def role(self) -> str:
        return IMAGE_PUSHER_ROLE if self.verb == "update" else IMAGE_PULLER_ROLE


def build_service_account(spec: Mapping[str, Any] | None) -> str:
    """The service account a build runs, pulls and pushes as."""
    return str((spec or {}).get("serviceAccount") or "default")


def _foreign(ref: object, namespace: str, kinds: frozenset[str], default_kind: str) -> str | None:
    if not isinstance(ref, Mapping) or not ref.get("name"):
        return None
    if str(ref.get("kind") or default_kind) not in kinds:
        return None
    other = str(ref.get("namespace") or namespace)
    return other if other != namespace else None


def strategy_from(spec: Mapping[str, Any] | None) -> object:
    strategy = (spec or {}).get("strategy") or {}
    block = strategy.get(_STRATEGY_KEYS.get(strategy_type(spec), "dockerStrategy")) or {}
    return block.get("from")


def cross_namespace_access(namespace: str, spec: Mapping[str, Any] | None) -> list[ImageAccess]:
    """What a Build (or BuildConfig) spec reads or writes in other namespaces.

    ``output.to`` (push: ``update``), the strategy's ``from`` (the Custom
    builder image too), ``source.images[].from`` and the tag an ImageChange
    trigger fired on (``triggeredBy``; pull: ``get``). One entry per namespace
    and verb, the first field that asks for it.
    """
    spec = spec or {}
    found: dict[tuple[str, str], ImageAccess] = {}

    def need(other: str | None, verb: str, what: str) -> None:
        if other is not None:
            found.setdefault((other, verb), ImageAccess(other, verb, what))

    to = (spec.get("output") or {}).get("to")
    need(_foreign(to, namespace, frozenset({"ImageStreamTag"}), "ImageStreamTag"), "update",
         "output.to")  # fmt: skip
    need(_foreign(strategy_from(spec), namespace, IMAGE_REFERENCE_KINDS, "DockerImage"), "get",
         "strategy from")  # fmt: skip
    for index, image in enumerate((spec.get("source") or {}).get("images") or []):
        if isinstance(image, Mapping):
            need(
                _foreign(image.get("from"), namespace, IMAGE_REFERENCE_KINDS, "DockerImage"),
                "get",
                f"source.images[{index}].from",
            )
    for cause in spec.get("triggeredBy") or []:
        if isinstance(cause, Mapping):
            ref = (cause.get("imageChangeBuild") or {}).get("fromRef")
            need(
                _foreign(ref, namespace, frozenset({"ImageStreamTag"}), "ImageStreamTag"),
                "get",
                "ImageChange trigger",
            )
    return list(found.values())


def access_refusal(namespace: str, account: str, needed: ImageAccess) -> str:
    """What a build waiting for a grant says, naming the namespace, verb and resource."""
    return (
        f"Forbidden: {needed.what}: service account {namespace}/{account} may not"
        f" {needed.verb} imagestreams/layers in namespace {needed.namespace};"
        f" an admin of {needed.namespace} grants it with a RoleBinding of {needed.role}"
        f" to system:serviceaccount:{namespace}:{account}"
    )
