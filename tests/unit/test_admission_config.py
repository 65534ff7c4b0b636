"""The admission webhooks kopf writes have a short timeout and leave the system namespaces out."""

from __future__ import annotations

from collections.abc import Iterator

import kopf
import pytest
from kopf._cogs.structs.references import Resource
from kopf._core.engines import admission as kopf_admission

from headwater.handlers import admission, lookup, references


@pytest.fixture
def restore_kopf() -> Iterator[None]:
    """kopf's own builder for the test (an operator run earlier in this process may have
    wrapped it), and whatever was there afterwards."""
    current = kopf_admission.build_webhooks
    kopf_admission.build_webhooks = admission._ORIGINAL
    yield
    kopf_admission.build_webhooks = current


RESOURCES = [
    Resource("", "v1", "pods"),
    Resource("apps", "v1", "deployments"),
    Resource("image.headwater.dev", "v1", "imagestreams"),
]


def built(registry: kopf.OperatorRegistry) -> list[dict[str, object]]:
    # What kopf's configuration manager calls (by the module's global name).
    return kopf_admission.build_webhooks(
        registry._webhooks.get_all_handlers(),
        resources=RESOURCES,
        name_suffix="headwater.dev",
        client_config={"url": "https://10.0.0.1:9443"},
    )


@pytest.mark.usefixtures("restore_kopf")
def test_kopf_writes_a_5s_timeout_and_a_namespace_selector() -> None:
    registry = kopf.OperatorRegistry()
    lookup.register(registry)
    references.register(registry)
    before = built(registry)
    assert before
    assert all(w["timeoutSeconds"] == 30 for w in before)
    assert all("namespaceSelector" not in w for w in before)

    admission.harden_kopf_webhooks("headwater-system")
    admission.harden_kopf_webhooks("headwater-system")  # idempotent enough: re-election
    after = built(registry)
    assert [w["name"] for w in after] == [w["name"] for w in before]
    for webhook in after:
        assert webhook["timeoutSeconds"] == 5
        assert webhook["namespaceSelector"] == {
            "matchExpressions": [
                {
                    "key": "kubernetes.io/metadata.name",
                    "operator": "NotIn",
                    "values": ["headwater-system", "kube-system"],
                }
            ]
        }
        assert webhook["clientConfig"]
        assert webhook["failurePolicy"]


def test_hardened_never_raises_a_shorter_timeout() -> None:
    out = admission.hardened([{"name": "a", "timeoutSeconds": 2}, {"name": "b"}], "ops")
    assert [w["timeoutSeconds"] for w in out] == [2, 5]
