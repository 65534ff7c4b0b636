"""A tag deferred by its registry host's backoff is looked at again when the backoff ends,
not at once: its own due time (past) must not be the stream's next wake-up.

Found by bench/soak.py: after a registry black hole, imports that timed out put the
host in backoff; every stream with a tag due went on reconciling in a loop with no
I/O (tens of thousands of reconciles, a core at 100 %) until the backoff ended.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from headwater.config import Config
from headwater.imports.model import StreamRef
from headwater.imports.plan import tag_key
from headwater.imports.runner import ImportRunner
from headwater.registry.client import RegistryClient
from headwater.registry.reference import parse_reference
from tests.fakekube import FakeKube, running

SOURCE = "registry.example:5000/shop/web:latest"
DIGEST = "sha256:" + "d" * 64


def _time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def stream(condition: dict[str, Any]) -> dict[str, Any]:
    long_ago = datetime.now(UTC) - timedelta(hours=1)
    latest = {
        "tag": "latest",
        "items": [
            {"image": DIGEST, "dockerImageReference": f"x@{DIGEST}", "generation": 1,
             "created": _time(long_ago)},
        ],
        "lastImportTime": _time(long_ago),
        "conditions": [
            {"type": "ImportSuccess", "lastTransitionTime": _time(long_ago), "generation": 1,
             **condition},
        ],
    }  # fmt: skip
    return {
        "apiVersion": "image.headwater.dev/v1",
        "kind": "ImageStream",
        "metadata": {"name": "web", "namespace": "shop", "generation": 1},
        "spec": {
            "tags": [
                {
                    "name": "latest",
                    "from": {"kind": "DockerImage", "name": SOURCE},
                    "importPolicy": {"scheduled": True},
                }
            ]
        },
        "status": {"tags": [latest]},
    }


async def _reconciles_while_backing_off(condition: dict[str, Any]) -> tuple[int, float | None]:
    kube = FakeKube()
    body = kube.add(stream(condition))
    imports = ImportRunner(kube.client, RegistryClient(), Config(import_interval_seconds=5))
    # The tag was last looked at long ago (it is due now), and its host timed out a
    # moment ago: it is asked nothing for a minute.
    imports.checked[tag_key(StreamRef("shop", "web"), "latest")] = datetime.now(UTC) - timedelta(
        hours=1
    )
    imports.backoff.failed(parse_reference(SOURCE).api_host, "Timeout", 60)
    async with running(imports.scheduler):
        await imports.observe(body)
        await asyncio.sleep(0.5)
        return imports.scheduler.reconciles, imports.scheduler.planned(StreamRef("shop", "web"))


async def test_a_scheduled_tag_deferred_by_host_backoff_waits_for_the_backoff() -> None:
    reconciles, planned = await _reconciles_while_backing_off(
        {"status": "True", "reason": "Imported", "message": ""}
    )
    assert reconciles == 1
    assert planned is not None
    assert planned > time.time() + 50


async def test_a_failing_tag_deferred_by_host_backoff_waits_for_the_backoff() -> None:
    reconciles, planned = await _reconciles_while_backing_off(
        {"status": "False", "reason": "Timeout", "message": "no answer within 30s"}
    )
    assert reconciles == 1
    assert planned is not None
    assert planned > time.time() + 50
