"""Admission warning on BuildConfigs whose webhook triggers carry their secret inline.

``kubectl apply`` and ``kubectl create`` print the warning at once; the
BuildConfig is never refused for it (the OpenShift form still works). The
build controller also keeps an ``InlineWebhookSecret`` condition and posts a
Warning Event, so an operator running without admission says it too.
"""

from __future__ import annotations

from typing import Any

import kopf

from headwater.builds.webhooks import inline_secret_fields, inline_secret_warning


def warn_inline_secrets(body: kopf.Body, warnings: list[str], **_: Any) -> None:
    """Add the warning when the object's triggers hold an inline secret."""
    fields = inline_secret_fields(body)
    if fields:
        warnings.append(inline_secret_warning(fields))


def register(registry: kopf.OperatorRegistry) -> None:
    """Register the validating handler (into the admission server's registry)."""
    kopf.on.validate(
        "build.headwater.dev",
        "v1",
        "buildconfigs",
        id="inline-webhook-secrets",
        operations=["CREATE", "UPDATE"],
        side_effects=False,
        # A warning only: when no operator answers, BuildConfig writes go on.
        ignore_failures=True,
        registry=registry,
    )(warn_inline_secrets)
