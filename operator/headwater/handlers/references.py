"""Admission: a reference into another namespace needs the requester's read access there.

A validating webhook on ImageStreams: a tag that newly points at an
ImageStreamTag or ImageStreamImage in another namespace is admitted only when
the user making the request may ``get`` ImageStreams in that namespace (a
SubjectAccessReview as that user). Resolving such a tag later also needs the
referencing namespace's service accounts to be granted read access (see
:func:`headwater.imports.references.sar_for_namespace_service_accounts`): one
check is about who writes the reference, the other about which namespace
reads the images.
"""

from __future__ import annotations

from typing import Any

import kopf
from lightkube.models.authorization_v1 import ResourceAttributes, SubjectAccessReviewSpec
from lightkube.resources.authorization_v1 import SubjectAccessReview

from headwater.handlers.admission import memo_admission
from headwater.imports.model import new_cross_namespace_sources


def user_review(userinfo: Any, namespace: str) -> SubjectAccessReview:
    """May this requester get ImageStreams in ``namespace``?"""
    info = dict(userinfo or {})
    return SubjectAccessReview(
        spec=SubjectAccessReviewSpec(
            user=info.get("username"),
            uid=info.get("uid"),
            groups=list(info.get("groups") or []),
            extra={k: list(v) for k, v in (info.get("extra") or {}).items()},
            resourceAttributes=ResourceAttributes(
                namespace=namespace,
                verb="get",
                group="image.headwater.dev",
                resource="imagestreams",
            ),
        )
    )


def register(registry: kopf.OperatorRegistry) -> None:
    """Register the validating handler (into the admission server's registry)."""
    kopf.on.validate(
        "image.headwater.dev",
        "v1",
        "imagestreams",
        id="cross-namespace-references",
        operations=["CREATE", "UPDATE"],
        side_effects=False,
        # An early, clear refusal; not the enforcement: resolving a reference is
        # separately gated on the namespace's service accounts. So when no
        # operator answers, ImageStream writes are not blocked.
        ignore_failures=True,
        registry=registry,
    )(check_cross_namespace_references)


async def check_cross_namespace_references(
    body: kopf.Body, userinfo: Any, memo: kopf.Memo, old: Any = None, **_: Any
) -> None:
    """Refuse tags pointing into namespaces whose ImageStreams the requester may not read."""
    metadata = body.get("metadata") or {}
    namespace = str(metadata.get("namespace") or "")
    # The object before this write (the request's oldObject, None on CREATE):
    # references already there are not checked again.
    old_spec = (old or {}).get("spec")
    sources = new_cross_namespace_sources(body.get("spec"), namespace, old_spec)
    if not sources:
        return
    kube = memo_admission(memo).kube
    user = dict(userinfo or {}).get("username") or "the requester"
    for source, tags in sources.items():
        review = await kube.create(user_review(userinfo, source))
        if review.status is None or not review.status.allowed:
            raise kopf.AdmissionError(
                f"spec.tags[{', '.join(tags)}].from.namespace: {user} may not get"
                f" ImageStreams in namespace {source}",
                code=403,
            )
