"""What attaching costs a build: the time from the pushed digest verified (``_finish``
entered) to the output tag recorded (``Outputs.record`` returned), on the real cluster
and registry, for five builds each with

- ``off``: nothing attached (Attester.attach and Attestations.attach made no-ops here);
- ``unsigned``: the provenance attached, no signing key (the signature step only
  reads that the Secret is missing);
- ``signed``: the signature and the signed provenance (a cosign key pair in a Secret).

Not collected with the suite (the file name is not ``test_*``); run it on its own:

    HEADWATER_KEEP_CLUSTER=1 flock /tmp/hw-e2e.lock .venv/bin/python -m pytest \\
        tests/e2e/bench_provenance.py -q -s

It prints one line per mode (median and each build, in ms), also appended to
``$HEADWATER_BENCH_OUT`` (default /tmp/provenance-attach-bench.txt); docs/supply-chain.md
(Provenance, cost) quotes it.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kopf.testing
import pytest

from headwater.builds.attest import Attester
from headwater.builds.attestations import Attestations
from headwater.builds.controller import BuildController
from headwater.builds.outputs import Outputs
from headwater.registry import cosign

from .helpers import (
    OPERATOR_NAMESPACE,
    Cluster,
    build_of_request,
    docker_bc,
    imagestream,
    start_build,
    wait_for_phase,
)

pytestmark = pytest.mark.e2e

BUILDS = 5
RESULTS = Path(os.environ.get("HEADWATER_BENCH_OUT", "/tmp/provenance-attach-bench.txt"))
"""Where the lines are appended too."""


@pytest.fixture
def timed(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Seconds from _finish entered to Outputs.record returned, per Complete build."""
    spans: list[float] = []
    finish, record = BuildController._finish, Outputs.record
    entered: dict[str, float] = {}

    async def timed_finish(self: BuildController, build: Any, *args: Any) -> None:
        entered[str(build["metadata"]["uid"])] = time.perf_counter()
        await finish(self, build, *args)

    async def timed_record(self: Outputs, build: Any, seen: Any) -> Any:
        result = await record(self, build, seen)
        began = entered.pop(str(build["metadata"]["uid"]), None)
        if began is not None:
            spans.append(time.perf_counter() - began)
        return result

    monkeypatch.setattr(BuildController, "_finish", timed_finish)
    monkeypatch.setattr(Outputs, "record", timed_record)
    return spans


@pytest.fixture
def key_secret(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = f"provenance-bench-{uuid.uuid4().hex[:6]}"
    monkeypatch.setenv("HEADWATER_SIGNING_KEY_SECRET", name)
    yield name
    cluster.kubectl(
        "delete", "secret", name, "-n", OPERATOR_NAMESPACE, "--ignore-not-found", check=False
    )


@pytest.mark.parametrize("mode", ["off", "unsigned", "signed"])
def test_attach_cost(
    mode: str,
    cluster: Cluster,
    namespace: str,
    key_secret: str,
    timed: list[float],
    monkeypatch: pytest.MonkeyPatch,
    operator_in_process: kopf.testing.KopfRunner,
) -> None:
    registry = cluster.need_registry()
    if mode == "off":

        async def no_signature(self: Attester, build: Any, digest: Any) -> dict[str, Any]:
            return {}

        async def no_provenance(self: Attestations, build: Any, seen: Any) -> Any:
            return seen

        monkeypatch.setattr(Attester, "attach", no_signature)
        monkeypatch.setattr(Attestations, "attach", no_provenance)
    if mode == "signed":
        data = cosign.key_secret_data(cosign.generate_key(), uuid.uuid4().hex.encode())
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": key_secret, "namespace": OPERATOR_NAMESPACE},
            "stringData": {k: v.decode() for k, v in data.items()},
        }
        cluster.kubectl("apply", "-f", "-", input=json.dumps(secret))
    busybox = cluster.image("busybox")
    dockerfile = f"FROM {busybox} AS tools\nRUN echo tool > /tool\nFROM {busybox}\n"
    cluster.apply(imagestream("bench"), namespace)
    for run in range(BUILDS):
        source = {"type": "Dockerfile", "dockerfile": dockerfile + f"RUN echo {run} > /run\n"}
        cluster.apply(docker_bc("bench", source, "bench:latest"), namespace)
        name = build_of_request(cluster, namespace, start_build(cluster, namespace, "bench"))
        build = wait_for_phase(cluster, namespace, name)
        assert build["status"]["phase"] == "Complete", build["status"]
        provenance = build["status"].get("provenance") or {}
        assert bool(provenance.get("reference")) == (mode != "off"), provenance
        assert provenance.get("signed", False) == (mode == "signed"), provenance
    assert registry
    assert len(timed) == BUILDS, timed
    ms = [round(s * 1000) for s in timed]
    line = f"attach cost, {mode}: median {statistics.median(ms)} ms; builds {ms}\n"
    # kopf's test runner holds sys.stdout while the operator runs: the real one.
    assert sys.__stdout__ is not None
    sys.__stdout__.write("\n" + line)
    with RESULTS.open("a") as out:
        out.write(line)
