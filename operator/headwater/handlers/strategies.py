"""Admission: build strategies are gated like OpenShift's, and the spec's author is recorded.

A validating webhook on BuildConfigs and Builds (``failurePolicy: Fail``):
creating one, changing its spec, or adding a start request
(``start.build.headwater.dev/<id>``, which is what ``headwater start-build``
and ``kubectl annotate`` send) is admitted only when the requester may
``create`` ``builds/docker``, ``builds/source`` or ``builds/custom`` in the
namespace, a SubjectAccessReview as that user. A request re-running another
Build (``fromBuild``) needs that Build's strategy too.

A mutating webhook on BuildConfigs records who created the BuildConfig or last
changed its spec (:data:`~headwater.builds.strategies.REQUESTER_ANNOTATION`),
and puts back what was recorded when the spec did not change, so no one can
write another user's name there. Triggered builds are checked as that user
(:meth:`headwater.builds.controller.BuildController._instantiate`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from headwater import access
from headwater.builds.model import GROUP
from headwater.builds.strategies import (
    REQUESTER_ANNOTATION,
    needs_strategy_check,
    new_start_requests,
    recorded_requester,
    requested_builds,
    strategy_grant_hint,
    strategy_subresource,
    strategy_type,
)
from headwater.handlers.admission import memo_admission
from headwater.kube import get_or_none
from headwater.resources import Build


def register(registry: kopf.OperatorRegistry) -> None:
    """Register the handlers (into the admission server's registry)."""
    for plural in ("buildconfigs", "builds"):
        kopf.on.validate(
            GROUP,
            "v1",
            plural,
            id=f"build-strategy-{plural}",
            operations=["CREATE", "UPDATE"],
            side_effects=False,
            # The enforcement itself: with no operator answering, no strategy is used.
            ignore_failures=False,
            # Kept when the operator stops (kopf empties the others): a stopped or
            # restarting operator must not open a window without the check.
            persistent=True,
            registry=registry,
        )(check_strategy)
    kopf.on.mutate(
        GROUP,
        "v1",
        "buildconfigs",
        id="strategy-requester",
        operations=["CREATE", "UPDATE"],
        side_effects=False,
        ignore_failures=False,
        persistent=True,
        registry=registry,
    )(record_requester)


def _write(body: kopf.Body, kwargs: Mapping[str, Any]) -> tuple[str, Any, dict[str, Any]]:
    """(operation, the object before or None, the object as written) of an admission request."""
    old, new = kwargs.get("old"), kwargs.get("new")
    return (
        str(kwargs.get("operation") or ""),
        dict(old) if isinstance(old, Mapping) else None,
        dict(new) if isinstance(new, Mapping) else dict(body),
    )


async def check_strategy(body: kopf.Body, userinfo: Any, memo: kopf.Memo, **kwargs: Any) -> None:
    """Refuse a write that uses a build strategy the requester may not use."""
    operation, before, written = _write(body, kwargs)
    if not needs_strategy_check(operation, before, written):
        return
    metadata = written.get("metadata") or {}
    namespace = str(metadata.get("namespace") or "")
    kube = memo_admission(memo).kube
    requester = access.Requester.of_userinfo(userinfo)
    # (subresource, why) for each strategy this write uses.
    uses = [(strategy_subresource(written.get("spec")), f"the {strategy_type(written.get('spec'))}"
             f" build strategy of {written.get('kind')} {metadata.get('name')}")]  # fmt: skip
    if written.get("kind") == "BuildConfig":
        annotations = metadata.get("annotations") or {}
        keys = new_start_requests(
            ((before or {}).get("metadata") or {}).get("annotations"), annotations
        )
        for name in requested_builds(annotations, keys):
            previous = await get_or_none(kube, Build, name, namespace)
            if previous is None:
                continue  # the operator says the build does not exist
            spec = previous.get("spec")
            uses.append((strategy_subresource(spec),
                         f"re-running build {name} ({strategy_type(spec)} strategy)"))  # fmt: skip
    checked: set[str] = set()
    for subresource, why in uses:
        if subresource in checked:
            continue
        checked.add(subresource)
        if not await access.allowed(kube, requester, access.build_strategy(namespace, subresource)):
            raise kopf.AdmissionError(
                f"{requester.user or 'the requester'} may not create builds/{subresource}"
                f" ({GROUP}) in namespace {namespace}, which {why} needs;"
                f" {strategy_grant_hint(subresource)}",
                code=403,
            )


def record_requester(body: kopf.Body, userinfo: Any, patch: kopf.Patch, **kwargs: Any) -> None:
    """Set the requester annotation to the writer of the spec, or back to what it was."""
    operation, before, written = _write(body, kwargs)
    requester = access.Requester.of_userinfo(userinfo)
    value = recorded_requester(operation, before, written, requester.user, requester.groups)
    current = ((written.get("metadata") or {}).get("annotations") or {}).get(REQUESTER_ANNOTATION)
    if value != current:
        patch.setdefault("metadata", {}).setdefault("annotations", {})[REQUESTER_ANNOTATION] = value
