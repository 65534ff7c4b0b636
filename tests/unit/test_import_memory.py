"""What the import runner keeps per stream: no server-side apply bookkeeping.

bench/scale.py: ``metadata.managedFields`` was a third of each ImageStream body the
runner keeps (10,000 streams: about 4 KB each of the JSON, several times that as
Python objects), and nothing reads it.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from headwater.config import Config
from headwater.imports.model import StreamRef
from headwater.imports.runner import ImportRunner
from headwater.kube import without_managed_fields
from headwater.registry.client import RegistryClient

MANAGED = [{"manager": "headwater", "operation": "Update", "fieldsV1": {"f:status": {}}}]


def body(version: str) -> dict[str, Any]:
    return {
        "apiVersion": "image.headwater.dev/v1",
        "kind": "ImageStream",
        "metadata": {
            "name": "web",
            "namespace": "shop",
            "resourceVersion": version,
            "managedFields": MANAGED,
        },
        "spec": {"tags": []},
    }


def test_without_managed_fields_copies_and_keeps_the_rest() -> None:
    original = body("1")
    slim = without_managed_fields(original)
    assert "managedFields" not in slim["metadata"]
    assert slim["metadata"]["resourceVersion"] == "1"
    assert original["metadata"]["managedFields"] == MANAGED  # the original is untouched
    assert without_managed_fields({"kind": "X"}) == {"kind": "X"}


def test_the_runner_keeps_one_copy_of_the_strings_bodies_repeat() -> None:
    """Interned: a digest (or key) 10,000 streams repeat is kept once."""

    async def scenario() -> None:
        registry = RegistryClient()
        runner = ImportRunner(cast(Any, None), registry, Config())
        try:
            for name in ("a", "b"):
                stream = body("1")
                stream["metadata"]["name"] = name
                # Equal strings, distinct objects, as two JSON documents decode them.
                stream["status"] = {"".join(["dig", "est"]): "".join(["sha256:", "a" * 64])}
                await runner.observe(stream)
            a, b = runner.bodies[StreamRef("shop", "a")], runner.bodies[StreamRef("shop", "b")]
            assert a["status"]["digest"] is b["status"]["digest"]
            assert next(iter(a["status"])) is next(iter(b["status"]))
        finally:
            await runner.scheduler.stop()
            await registry.close()

    asyncio.run(scenario())


def test_the_runner_keeps_bodies_without_managed_fields() -> None:
    async def scenario() -> None:
        registry = RegistryClient()
        runner = ImportRunner(cast(Any, None), registry, Config())
        ref = StreamRef("shop", "web")
        try:
            await runner.observe(body("1"))
            assert "managedFields" not in runner.bodies[ref]["metadata"]
            runner._wrote(ref, body("2"))  # what a status write got back
            assert runner.bodies[ref]["metadata"]["resourceVersion"] == "2"
            assert "managedFields" not in runner.bodies[ref]["metadata"]
        finally:
            await runner.scheduler.stop()
            await registry.close()

    asyncio.run(scenario())
