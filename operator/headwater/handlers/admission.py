"""What every admission handler shares: its context on ``memo``, and the webhooks' hardening.

The handlers are served by every replica (:mod:`headwater.admission_server`),
outside kopf's operator, so they hold no state of the leader's: only a
Kubernetes client and the configured registry (:class:`AdmissionContext`).

kopf's ``build_webhooks`` writes ``timeoutSeconds: 30`` and no
``namespaceSelector``; neither is a setting (kopf 1.45). Both matter on a
shared cluster: every Pod and workload write waits up to the timeout when
the operator is slow, and a webhook that admits writes in kube-system or in
the operator's own namespace can keep the cluster (or the operator itself)
from recovering. Each webhook built gets :func:`hardened`'s fields before
it is written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import kopf
from lightkube import AsyncClient

TIMEOUT_SECONDS: Final = 5
"""How long the API server waits for an answer (Kubernetes allows 1 to 30)."""
NAMESPACE_LABEL: Final = "kubernetes.io/metadata.name"
"""Set by the API server on every namespace (Kubernetes 1.21+), so selectable."""
SYSTEM_NAMESPACES: Final = ("kube-system",)


def namespace_selector(excluded: Iterable[str]) -> dict[str, Any]:
    """A selector matching every namespace except ``excluded`` (by name)."""
    return {
        "matchExpressions": [
            {"key": NAMESPACE_LABEL, "operator": "NotIn", "values": sorted(set(excluded))}
        ]
    }


def hardened(
    webhooks: Iterable[Mapping[str, Any]], operator_namespace: str
) -> list[dict[str, Any]]:
    """``webhooks`` with ``timeoutSeconds`` at most 5 and the system namespaces left out."""
    selector = namespace_selector((*SYSTEM_NAMESPACES, operator_namespace))
    out = []
    for webhook in webhooks:
        patched = dict(webhook)
        patched["timeoutSeconds"] = min(int(webhook.get("timeoutSeconds") or 30), TIMEOUT_SECONDS)
        patched["namespaceSelector"] = selector
        out.append(patched)
    return out


MEMO_ADMISSION: Final = "admission"


@dataclass(frozen=True)
class AdmissionContext:
    """All an admission handler may use: nothing only the leader has."""

    kube: AsyncClient
    registry: str | None
    """The configured registry host (short names resolve to images there)."""


def memo_admission(memo: kopf.Memo) -> AdmissionContext:
    """The context the admission server put on ``memo``."""
    context = memo.get(MEMO_ADMISSION)
    if not isinstance(context, AdmissionContext):
        raise RuntimeError("no admission context on memo: not called by the admission server")
    return context
