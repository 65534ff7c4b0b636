"""builds/attest.py: a Complete build's image is signed with the cluster's key, or its
status says why not; a registry failure raises (the work queue retries), never skips.

The Kubernetes side is FakeKube; the registry is test_cosign's loopback registry
(Bearer tokens, push scope for writes).
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from headwater.builds.attest import AttachError, Attester
from headwater.builds.controller import BuildController
from headwater.builds.job import JobSettings
from headwater.builds.model import COMPLETE
from headwater.builds.observe import Observation
from headwater.builds.outputs import Outputs
from headwater.config import Config
from headwater.registry import cosign
from headwater.registry.client import RegistryClient, Repository
from headwater.resources import Build
from tests.fakekube import FakeKube
from tests.unit.test_cosign import DIGEST, Registry, serve_registry

NAMESPACE = "headwater-system"


@pytest.fixture
async def registry() -> AsyncIterator[Registry]:
    async with serve_registry() as state:
        yield state


def _secret(data: dict[str, bytes], name: str = "headwater-signing-key") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "type": "Opaque",
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }


def _build(registry_host: str) -> dict[str, Any]:
    output = f"{registry_host}/shop/web:latest"
    return {
        "metadata": {"namespace": "shop", "name": "web-1"},
        "spec": {"output": {"to": {"kind": "DockerImage", "name": output}}},
        "status": {"phase": "Running", "outputDockerImageReference": output},
    }


def _attester(kube: FakeKube, client: RegistryClient, host: str) -> Attester:
    config = Config()
    settings = JobSettings(builder_image="b", insecure_registries=(host,))
    outputs = Outputs(kube.client, client, config, settings, None)
    return Attester(kube.client, client, config, outputs)


async def test_without_a_key_builds_are_unsigned_and_say_so(registry: Registry) -> None:
    kube = FakeKube()
    async with RegistryClient() as client:
        fields = await _attester(kube, client, registry.host).attach(_build(registry.host), DIGEST)
    assert fields["signature"]["signed"] is False
    assert "headwater-system/headwater-signing-key does not exist" in fields["signature"]["message"]
    assert not registry.manifests


async def test_with_a_key_the_image_is_signed_where_status_says(registry: Registry) -> None:
    key = cosign.generate_key()
    kube = FakeKube()
    kube.add(_secret(cosign.key_secret_data(key, b"pw")))
    async with RegistryClient() as client:
        attester = _attester(kube, client, registry.host)
        fields = await attester.attach(_build(registry.host), DIGEST)
        signature = fields["signature"]
        assert signature["signed"] is True
        assert signature["keyId"] == key.public.fingerprint
        assert signature["reference"] == f"{registry.host}/shop/web:{cosign.signature_tag(DIGEST)}"
        web = Repository(registry.host, "shop/web", insecure=True)
        fetched = await cosign.fetch_signatures(client, web, DIGEST)
        assert fetched is not None
        assert fetched.digest == signature["digest"]
        checks = cosign.verify_layers(fetched, DIGEST, {"cluster": key.public})
        assert cosign.verified_keys(checks) == {"cluster"}
        # A retry (the status write failed after the push) adds no second signature.
        again = await attester.attach(_build(registry.host), DIGEST)
        assert again["signature"]["digest"] == signature["digest"]
    stored = registry.manifests[cosign.signature_tag(DIGEST)]
    assert len(json.loads(stored)["layers"]) == 1


async def test_registry_failure_raises_for_a_retry_then_signs(registry: Registry) -> None:
    kube = FakeKube()
    kube.add(_secret(cosign.key_secret_data(cosign.generate_key(), b"pw")))
    registry.fail_manifest_put = 1
    async with RegistryClient() as client:
        attester = _attester(kube, client, registry.host)
        with pytest.raises(AttachError) as caught:
            await attester.attach(_build(registry.host), DIGEST)
        assert caught.value.reason == "SigningFailed"
        assert cosign.signature_tag(DIGEST) not in registry.manifests
        fields = await attester.attach(_build(registry.host), DIGEST)
    assert fields["signature"]["signed"] is True


async def test_unusable_key_raises_without_leaking_the_password(registry: Registry) -> None:
    data = cosign.key_secret_data(cosign.generate_key(), b"right-password")
    kube = FakeKube()
    kube.add(_secret({**data, "cosign.password": b"wrong-password"}))
    async with RegistryClient() as client:
        with pytest.raises(AttachError) as caught:
            await _attester(kube, client, registry.host).attach(_build(registry.host), DIGEST)
    assert caught.value.reason == "InvalidSigningKey"
    assert "password" in caught.value.message
    assert "wrong-password" not in caught.value.message
    assert "right-password" not in caught.value.message
    assert not registry.manifests


async def test_the_key_is_decrypted_once_per_secret_version(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    kube = FakeKube()
    kube.add(_secret(cosign.key_secret_data(cosign.generate_key(), b"pw")))
    opened = 0
    real = cosign.signing_key_from_secret

    def counting(data: Any) -> cosign.SigningKey:
        nonlocal opened
        opened += 1
        return real(data)

    monkeypatch.setattr(cosign, "signing_key_from_secret", counting)
    async with RegistryClient() as client:
        attester = _attester(kube, client, registry.host)
        first, _ = await attester.signing_key()
        second, _ = await attester.signing_key()
        assert first is second
        assert opened == 1
        replacement = cosign.generate_key()
        kube.add(_secret(cosign.key_secret_data(replacement, b"pw")))
        third, _ = await attester.signing_key()
    assert opened == 2
    assert third is not None
    assert third.public.fingerprint == replacement.public.fingerprint


async def test_no_digest_attaches_nothing(registry: Registry) -> None:
    async with RegistryClient() as client:
        assert (
            await _attester(FakeKube(), client, registry.host).attach(_build(registry.host), None)
            == {}
        )


async def test_finish_signs_before_the_tag_moves_and_a_failure_keeps_the_build_running(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """BuildRuns._finish: the signature is in the registry before Outputs.record moves the
    tag; a refused signature leaves the build Running with the reason, and raises for the
    work queue's retry, which then completes it signed."""
    kube = FakeKube()
    key = cosign.generate_key()
    kube.add(_secret(cosign.key_secret_data(key, b"pw")))
    build = {"apiVersion": "build.headwater.dev/v1", "kind": "Build", **_build(registry.host)}
    kube.add(build)
    signed_when_recorded: list[bool] = []
    async with RegistryClient() as client:
        config = Config()
        settings = JobSettings(builder_image="b", insecure_registries=(registry.host,))
        builds = BuildController(kube.client, client, config, settings)

        async def record(build: Any, seen: Observation) -> None:
            signed_when_recorded.append(cosign.signature_tag(DIGEST) in registry.manifests)

        monkeypatch.setattr(builds.outputs, "record", record)
        registry.fail_manifest_put = 1
        done = Observation(COMPLETE, digest=DIGEST)
        with pytest.raises(AttachError):
            await builds._finish(kube.body(Build, "web-1", "shop"), None, done)
        status = kube.body(Build, "web-1", "shop")["status"]
        assert (status["phase"], status["reason"]) == ("Running", "SigningFailed")
        assert "signature" not in status
        assert signed_when_recorded == []
        await builds._finish(kube.body(Build, "web-1", "shop"), None, done)
        await builds.stop()
    status = kube.body(Build, "web-1", "shop")["status"]
    assert status["phase"] == "Complete"
    assert status["signature"]["signed"] is True
    assert status["signature"]["keyId"] == key.public.fingerprint
    assert signed_when_recorded == [True]


async def test_a_key_the_operator_may_not_read_leaves_builds_unsigned_and_says_why(
    registry: Registry,
) -> None:
    kube = FakeKube()
    kube.fail("get", "secrets", code=403)
    async with RegistryClient() as client:
        fields = await _attester(kube, client, registry.host).attach(_build(registry.host), DIGEST)
    assert fields["signature"]["signed"] is False
    assert "may not read" in fields["signature"]["message"]
