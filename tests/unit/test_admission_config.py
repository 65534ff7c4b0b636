"""The admission webhooks written have a short timeout, leave the system namespaces out,
and point at the Service in front of every replica (or at the one local address)."""

from __future__ import annotations

import base64

from kopf._core.intents.causes import WebhookType

from headwater import admission_server
from headwater.admission_server import (
    admission_registry,
    service_client_config,
    webhook_configurations,
)
from headwater.handlers import admission

CA = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
SELECTOR = {
    "matchExpressions": [
        {
            "key": "kubernetes.io/metadata.name",
            "operator": "NotIn",
            "values": ["headwater-system", "kube-system"],
        }
    ]
}


def test_the_webhooks_point_at_the_service_with_the_shared_ca() -> None:
    config = service_client_config("headwater-admission", "headwater-system", CA)
    built = webhook_configurations(admission_registry(), config, "headwater-system")
    mutating, validating = built[WebhookType.MUTATING], built[WebhookType.VALIDATING]
    assert {w["name"] for w in mutating} == {
        *(f"lookup-{p}.headwater.dev" for p in ("pods", "deployments", "statefulsets",
                                                 "daemonsets", "jobs", "cronjobs")),
        "strategy-requester.headwater.dev",
    }  # fmt: skip
    assert {w["name"] for w in validating} == {
        "cross-namespace-references.headwater.dev",
        "inline-webhook-secrets.headwater.dev",
        "build-strategy-buildconfigs.headwater.dev",
        "build-strategy-builds.headwater.dev",
    }
    for webhook in (*mutating, *validating):
        client = webhook["clientConfig"]
        assert "url" not in client
        handler_id = webhook["name"].removesuffix(".headwater.dev")
        # kopf routes a request to one handler by the path's last segment.
        assert client["service"] == {
            "namespace": "headwater-system",
            "name": "headwater-admission",
            "port": 443,
            "path": f"/{handler_id}",
        }
        assert base64.b64decode(client["caBundle"]) == CA
        assert webhook["timeoutSeconds"] == 5
        assert webhook["namespaceSelector"] == SELECTOR
        assert webhook["rules"], webhook["name"]  # the fixed resource list matches each handler


def test_the_rules_name_the_handlers_resources() -> None:
    config = {"url": "https://10.0.0.1:9443"}
    built = webhook_configurations(admission_registry(), config, "headwater-system")
    by_name = {w["name"]: w for ws in built.values() for w in ws}
    assert by_name["lookup-pods.headwater.dev"]["rules"][0]["resources"] == ["pods"]
    assert by_name["lookup-pods.headwater.dev"]["failurePolicy"] == "Ignore"
    strategy = by_name["build-strategy-builds.headwater.dev"]
    assert strategy["rules"][0]["apiGroups"] == ["build.headwater.dev"]
    assert strategy["failurePolicy"] == "Fail"
    assert strategy["clientConfig"]["url"] == "https://10.0.0.1:9443/build-strategy-builds"


def test_a_local_operator_leaves_only_the_strategy_gate_on_exit() -> None:
    built = webhook_configurations(
        admission_registry(), {"url": "https://10.0.0.1:9443"}, "ops", persistent_only=True
    )
    assert {w["name"] for ws in built.values() for w in ws} == {
        "strategy-requester.headwater.dev",
        "build-strategy-buildconfigs.headwater.dev",
        "build-strategy-builds.headwater.dev",
    }


def test_hardened_never_raises_a_shorter_timeout() -> None:
    out = admission.hardened([{"name": "a", "timeoutSeconds": 2}, {"name": "b"}], "ops")
    assert [w["timeoutSeconds"] for w in out] == [2, 5]


def test_every_handler_resource_is_in_the_fixed_list() -> None:
    """kopf would discover them; here a handler whose resource is missing would get no rule."""
    handlers = admission_registry()._webhooks.get_all_handlers()
    for handler in handlers:
        assert handler.selector is not None
        assert any(handler.selector.check(r) for r in admission_server.WEBHOOK_RESOURCES), handler
