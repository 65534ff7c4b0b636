"""Inline webhook secrets in a BuildConfig: found, warned about at admission, a condition."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import kopf

from headwater.builds.buildconfigs import INLINE_WEBHOOK_SECRET
from headwater.builds.controller import BuildController
from headwater.builds.job import settings_from_config
from headwater.builds.webhooks import inline_secret_fields, inline_secret_warning
from headwater.config import Config
from headwater.handlers.inline_secrets import register, warn_inline_secrets
from headwater.resources import BuildConfig
from tests.fakekube import FakeKube

NOW = datetime(2026, 12, 4, 20, 0, tzinfo=UTC)


def buildconfig(*triggers: dict[str, Any], generation: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "build.headwater.dev/v1",
        "kind": "BuildConfig",
        "metadata": {
            "name": "web",
            "namespace": "shop",
            "uid": "u-1",
            "generation": generation,
            "resourceVersion": "7",
        },
        "spec": {"triggers": list(triggers)},
        "status": {},
    }


INLINE_GITHUB = {"type": "GitHub", "github": {"secret": "s3cr3t"}}
INLINE_GENERIC = {"type": "Generic", "generic": {"secret": "other", "allowEnv": True}}
REFERENCED = {"type": "GitLab", "gitlab": {"secretReference": {"name": "hook"}}}


def test_inline_secret_fields() -> None:
    bc = buildconfig(REFERENCED, INLINE_GITHUB, {"type": "ConfigChange"}, INLINE_GENERIC)
    assert inline_secret_fields(bc) == ["spec.triggers[1].github.secret",
                                        "spec.triggers[3].generic.secret"]  # fmt: skip
    assert inline_secret_fields(buildconfig(REFERENCED)) == []
    # A block that does not belong to the trigger's type is not read by the webhooks either.
    assert inline_secret_fields(buildconfig({"type": "GitLab", "github": {"secret": "x"}})) == []
    assert inline_secret_fields({"spec": {"triggers": ["junk", None]}}) == []
    assert inline_secret_fields({}) == []


def test_warning_names_fields_and_the_fix_never_the_secret() -> None:
    text = inline_secret_warning(inline_secret_fields(buildconfig(INLINE_GITHUB)))
    assert "spec.triggers[0].github.secret" in text
    assert "secretReference" in text
    assert "WebHookSecretKey" in text
    assert "s3cr3t" not in text


def test_admission_handler_warns_and_never_refuses() -> None:
    warnings: list[str] = []
    warn_inline_secrets(kopf.Body(cast(Any, buildconfig(INLINE_GITHUB))), warnings)
    assert len(warnings) == 1
    assert "github.secret" in warnings[0]
    quiet: list[str] = []
    warn_inline_secrets(kopf.Body(cast(Any, buildconfig(REFERENCED))), quiet)
    assert quiet == []


def test_admission_handler_is_a_non_blocking_validating_webhook() -> None:
    registry = kopf.OperatorRegistry()
    register(registry)
    [handler] = registry._webhooks.get_all_handlers()
    assert handler.id == "inline-webhook-secrets"
    assert handler.ignore_failures is True
    assert handler.reason.value == "validating"


def patches(kube: FakeKube) -> list[dict[str, Any]]:
    return [c.body for c in kube.writes if c.verb == "patch"]


def controller(kube: FakeKube) -> BuildController:
    config = Config()
    return BuildController(
        kube.client, cast(Any, None), config, settings_from_config(config), clock=lambda: NOW
    )


def conditions_after(patch: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in patch["status"].get("conditions") or []}


async def test_condition_and_one_event_while_a_secret_is_inline() -> None:
    kube = FakeKube()
    bc = kube.add(buildconfig(INLINE_GITHUB))
    await controller(kube)._write_buildconfig_status(bc, 0)
    [patch] = patches(kube)
    condition = conditions_after(patch)[INLINE_WEBHOOK_SECRET]
    assert condition["status"] == "True"
    assert "spec.triggers[0].github.secret" in condition["message"]
    [event] = kube.all("events")
    assert event["type"] == "Warning"
    assert event["reason"] == INLINE_WEBHOOK_SECRET
    assert event["involvedObject"]["name"] == "web"

    # The same spec again: status unchanged, no write and no second Event.
    bc = kube.body(BuildConfig, "web", "shop")
    await controller(kube)._write_buildconfig_status(bc, 0)
    assert len(patches(kube)) == 1
    assert len(kube.all("events")) == 1


async def test_condition_goes_when_the_secret_moves_to_a_secret_reference() -> None:
    kube = FakeKube()
    bc = kube.add(buildconfig(INLINE_GITHUB))
    await controller(kube)._write_buildconfig_status(bc, 0)
    await kube.patch(BuildConfig, "web", {"spec": {"triggers": [REFERENCED]}}, namespace="shop")
    fixed = kube.body(BuildConfig, "web", "shop")
    assert fixed["metadata"]["generation"] == 2
    await controller(kube)._write_buildconfig_status(fixed, 0)
    last = patches(kube)[-1]["status"]["conditions"]
    assert INLINE_WEBHOOK_SECRET not in {c["type"] for c in last}
    assert len(kube.all("events")) == 1  # nothing new to warn about
