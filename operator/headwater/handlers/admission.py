"""The admission webhooks' configuration: a short timeout, and never the system namespaces.

kopf writes the ``headwater.dev`` Mutating/ValidatingWebhookConfigurations
itself (``settings.admission.managed``) and rewrites them whenever its view
of the cluster changes, always with ``timeoutSeconds: 30`` and no
``namespaceSelector``; neither is a setting (kopf 1.45). Both matter on a
shared cluster: every Pod and workload write waits up to the timeout when
the operator is slow, and a webhook that admits writes in kube-system or in
the operator's own namespace can keep the cluster (or the operator itself)
from recovering. A patch after kopf's write would be undone at its next
write, so the function kopf builds the webhooks with is wrapped instead:
each webhook it builds gets :func:`hardened`'s fields before it is written.
A unit test runs kopf's own builder through the wrapper, so a kopf release
that renames it fails the tests rather than silently dropping the fields.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from kopf._core.engines import admission as kopf_admission

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


_Builder = Callable[..., list[dict[str, Any]]]
_ORIGINAL: Final[_Builder] = kopf_admission.build_webhooks


def harden_kopf_webhooks(operator_namespace: str) -> None:
    """Make kopf's managed webhook configurations :func:`hardened` (idempotent)."""

    @functools.wraps(_ORIGINAL)
    def build_webhooks(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        return hardened(_ORIGINAL(*args, **kwargs), operator_namespace)

    kopf_admission.build_webhooks = build_webhooks
