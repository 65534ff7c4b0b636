"""builds/attestations.py against a loopback registry: where the provenance goes (the
OCI referrers API when the registry serves it, else cosign's ``.att`` tag), and what a
failure does (a transient one raises for the work queue's retry; a refusal is
recorded in status.provenance and an Event, and the build completes).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx2
import pytest
from aiohttp import web

from headwater.builds.attest import AttachError, Attester
from headwater.builds.attestations import Attestations
from headwater.builds.controller import BuildController
from headwater.builds.job import JobSettings
from headwater.builds.model import COMPLETE
from headwater.builds.observe import Observation
from headwater.builds.outputs import Outputs
from headwater.builds.provenance import Reported
from headwater.config import Config
from headwater.registry import cosign
from headwater.registry.client import OCI_INDEX, OCI_MANIFEST, RegistryClient, Repository
from headwater.resources import Build
from tests.fakekube import FakeKube

NAMESPACE = "headwater-system"


@dataclass
class Registry:
    """A registry on 127.0.0.1 without auth; ``referrers`` turns the OCI referrers
    API on; ``fail_puts`` are HTTP statuses the next manifest PUTs answer."""

    referrers: bool = False
    port: int = 0
    blobs: dict[str, bytes] = field(default_factory=dict)
    manifests: dict[str, bytes] = field(default_factory=dict)
    fail_puts: list[int] = field(default_factory=list)
    referrer_calls: int = 0
    referrers_content_type: str = OCI_INDEX
    referrers_status: int = 200
    fail_gets: dict[str, list[int]] = field(default_factory=dict)
    """Statuses the next GETs/HEADs of a manifest reference answer."""

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"


@contextlib.asynccontextmanager
async def serve(registry: Registry) -> AsyncIterator[Registry]:
    async def manifest(request: web.Request) -> web.Response:
        ref = request.match_info["reference"]
        if request.method == "PUT":
            if registry.fail_puts:
                status = registry.fail_puts.pop(0)
                return web.json_response({"errors": [{"code": "X"}]}, status=status)
            body = await request.read()
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
            registry.manifests[ref] = registry.manifests[digest] = body
            return web.Response(status=201, headers={"Docker-Content-Digest": digest})
        failing = registry.fail_gets.get(ref)
        if failing:
            return web.json_response({"errors": [{"code": "X"}]}, status=failing.pop(0))
        stored = registry.manifests.get(ref)
        if stored is None:
            return web.json_response({"errors": [{"code": "MANIFEST_UNKNOWN"}]}, status=404)
        digest = "sha256:" + hashlib.sha256(stored).hexdigest()
        headers = {"Docker-Content-Digest": digest, "Content-Type": OCI_MANIFEST}
        return web.Response(body=None if request.method == "HEAD" else stored, headers=headers)

    async def referrers(request: web.Request) -> web.Response:
        registry.referrer_calls += 1
        if not registry.referrers:
            return web.Response(status=404)
        if registry.referrers_status != 200:
            return web.Response(status=registry.referrers_status)
        digest = request.match_info["digest"]
        found = []
        for key, body in registry.manifests.items():
            doc = json.loads(body)
            if key.startswith("sha256:") and (doc.get("subject") or {}).get("digest") == digest:
                found.append(
                    {
                        "mediaType": OCI_MANIFEST,
                        "digest": key,
                        "size": len(body),
                        "artifactType": doc.get("artifactType"),
                    }
                )
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": found}
        return web.Response(
            body=json.dumps(index), headers={"Content-Type": registry.referrers_content_type}
        )

    async def blob(request: web.Request) -> web.Response:
        data = registry.blobs.get(request.match_info["digest"])
        if data is None:
            return web.Response(status=404)
        return web.Response(body=None if request.method == "HEAD" else data)

    async def start_upload(request: web.Request) -> web.Response:
        location = f"/v2/{request.match_info['name']}/blobs/uploads/u1"
        return web.Response(status=202, headers={"Location": location})

    async def finish_upload(request: web.Request) -> web.Response:
        data = await request.read()
        registry.blobs[request.query["digest"]] = data
        return web.Response(status=201)

    app = web.Application()
    app.router.add_route("*", "/v2/{name:.+}/manifests/{reference}", manifest)
    app.router.add_get("/v2/{name:.+}/referrers/{digest}", referrers)
    app.router.add_post("/v2/{name:.+}/blobs/uploads/", start_upload)
    app.router.add_put("/v2/{name:.+}/blobs/uploads/{id}", finish_upload)
    app.router.add_route("GET", "/v2/{name:.+}/blobs/{digest}", blob)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", registry.port)
    await site.start()
    registry.port = int(runner.addresses[0][1])
    try:
        yield registry
    finally:
        await runner.cleanup()


def _image(registry: Registry) -> str:
    """An image in ``shop/web``; its digest."""
    config = b'{"architecture":"amd64","os":"linux"}'
    layer = b"layer"
    for blob in (config, layer):
        registry.blobs["sha256:" + hashlib.sha256(blob).hexdigest()] = blob
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": "sha256:" + hashlib.sha256(config).hexdigest(),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": "sha256:" + hashlib.sha256(layer).hexdigest(),
                    "size": len(layer),
                }
            ],
        }
    ).encode()
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    registry.manifests[digest] = registry.manifests["latest"] = manifest
    return digest


def _build(host: str) -> dict[str, Any]:
    output = f"{host}/shop/web:latest"
    return {
        "apiVersion": "build.headwater.dev/v1",
        "kind": "Build",
        "metadata": {"namespace": "shop", "name": "web-1", "uid": "u-1"},
        "spec": {"output": {"to": {"kind": "DockerImage", "name": output}}},
        "status": {"phase": "Running", "outputDockerImageReference": output},
    }


def _attestations(kube: FakeKube, client: RegistryClient, host: str) -> Attestations:
    config = Config()
    settings = JobSettings(builder_image="b", insecure_registries=(host,))
    outputs = Outputs(kube.client, client, config, settings, None)
    attester = Attester(kube.client, client, config, outputs)
    return Attestations(kube.client, client, settings, outputs, attester)


def _seen(digest: str) -> Observation:
    return Observation("Complete", digest=digest, start="2026-12-05T09:00:00Z")


def _statement(registry: Registry, layer_digest: str) -> dict[str, Any]:
    envelope = json.loads(registry.blobs[layer_digest])
    statement: dict[str, Any] = json.loads(base64.b64decode(envelope["payload"]))
    return statement


def _secret(key: cosign.SigningKey) -> dict[str, Any]:
    data = cosign.key_secret_data(key, b"pw")
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "headwater-signing-key", "namespace": NAMESPACE},
        "type": "Opaque",
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }


# --- the referrers API, or the tag scheme ---------------------------------------------


async def test_with_the_referrers_api_the_statement_is_a_referrer_with_subject() -> None:
    key = cosign.generate_key()
    kube = FakeKube()
    kube.add(_secret(key))
    async with serve(Registry(referrers=True)) as registry, RegistryClient() as client:
        digest = _image(registry)
        assert await client.has_referrers_api(
            Repository(registry.host, "shop/web", insecure=True), digest
        )
        seen = await _attestations(kube, client, registry.host).attach(
            _build(registry.host), _seen(digest)
        )
    record = seen.provenance
    assert record is not None
    assert record["scheme"] == "referrers", record
    manifest_digest = record["reference"].rpartition("@")[2]
    assert record["reference"] == f"{registry.host}/shop/web@{manifest_digest}"
    manifest = json.loads(registry.manifests[manifest_digest])
    image = registry.manifests[digest]
    assert manifest["subject"] == {
        "mediaType": OCI_MANIFEST,
        "digest": digest,
        "size": len(image),
    }
    assert manifest["artifactType"] == cosign.DSSE_MEDIA_TYPE
    [layer] = manifest["layers"]
    assert layer["annotations"]["predicateType"] == "https://slsa.dev/provenance/v1"
    assert manifest["config"]["digest"] in registry.blobs
    statement = _statement(registry, layer["digest"])
    assert statement["subject"][0]["digest"] == {"sha256": digest.removeprefix("sha256:")}
    # No cosign tag beside it.
    assert cosign.attestation_tag(digest) not in registry.manifests
    assert record["signed"] is True
    assert record["keyId"] == key.public.fingerprint


async def test_without_the_referrers_api_the_statement_is_in_the_att_tag() -> None:
    kube = FakeKube()
    async with serve(Registry(referrers=False)) as registry, RegistryClient() as client:
        digest = _image(registry)
        assert not await client.has_referrers_api(
            Repository(registry.host, "shop/web", insecure=True), digest
        )
        seen = await _attestations(kube, client, registry.host).attach(
            _build(registry.host), _seen(digest)
        )
    record = seen.provenance
    assert record is not None
    tag = cosign.attestation_tag(digest)
    assert record == {**record, "scheme": "tag", "reference": f"{registry.host}/shop/web:{tag}"}
    assert record["signed"] is False  # no key Secret
    manifest = json.loads(registry.manifests[tag])
    assert "subject" not in manifest
    [layer] = manifest["layers"]
    envelope = json.loads(registry.blobs[layer["digest"]])
    assert envelope["signatures"] == []
    assert (
        _statement(registry, layer["digest"])["predicate"]["runDetails"]["metadata"]["invocationId"]
        == "u-1"
    )
    assert registry.referrer_calls >= 1


async def test_an_answer_that_is_not_an_index_is_no_referrers_api() -> None:
    """A registry that answers 200 to any path (a catch-all front page) has no API."""
    fake = Registry(referrers=True, referrers_content_type="text/html")
    async with serve(fake) as registry, RegistryClient() as client:
        digest = _image(registry)
        assert not await client.has_referrers_api(
            Repository(registry.host, "shop/web", insecure=True), digest
        )
        registry.referrers_content_type = f"{OCI_INDEX}; charset=utf-8"
        assert await client.has_referrers_api(
            Repository(registry.host, "shop/web", insecure=True), digest
        )


async def test_a_failing_referrers_probe_is_retried_not_taken_for_no_api() -> None:
    """A registry with the API that answers 503 once: no fallback to the tag scheme
    (the statement would land where referrers clients do not look)."""
    kube = FakeKube()
    fake = Registry(referrers=True, referrers_status=503)
    async with serve(fake) as registry, RegistryClient() as client:
        digest = _image(registry)
        attestations = _attestations(kube, client, registry.host)
        with pytest.raises(AttachError):
            await attestations.attach(_build(registry.host), _seen(digest))
        registry.referrers_status = 200
        seen = await attestations.attach(_build(registry.host), _seen(digest))
    assert seen.provenance is not None
    assert seen.provenance["scheme"] == "referrers"
    assert cosign.attestation_tag(digest) not in registry.manifests


# --- failures: retried, or recorded --------------------------------------------------


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_a_transient_failure_raises_for_a_retry_then_attaches(status: int) -> None:
    kube = FakeKube()
    async with serve(Registry(fail_puts=[status])) as registry, RegistryClient() as client:
        digest = _image(registry)
        attestations = _attestations(kube, client, registry.host)
        with pytest.raises(AttachError) as caught:
            await attestations.attach(_build(registry.host), _seen(digest))
        assert caught.value.reason == "ProvenanceFailed"
        assert cosign.attestation_tag(digest) not in registry.manifests
        assert not kube.all("events", "shop")
        seen = await attestations.attach(_build(registry.host), _seen(digest))
    assert seen.provenance is not None
    assert seen.provenance["scheme"] == "tag"
    assert cosign.attestation_tag(digest) in registry.manifests


async def test_an_unreachable_registry_is_transient() -> None:
    kube = FakeKube()
    async with serve(Registry()) as registry:
        host = registry.host
    async with RegistryClient() as client:
        attestations = _attestations(kube, client, host)
        with pytest.raises(AttachError):
            await attestations.attach(_build(host), _seen("sha256:" + "a" * 64))


@pytest.mark.parametrize("error", [httpx2.ReadTimeout("slow"), 503])
async def test_a_kubernetes_api_failure_that_may_pass_is_retried(
    error: httpx2.ReadTimeout | int,
) -> None:
    kube = FakeKube()
    if isinstance(error, int):
        kube.fail("get", "serviceaccounts", code=error)
    else:
        kube.fail("get", "serviceaccounts", error=error)
    async with serve(Registry()) as registry, RegistryClient() as client:
        digest = _image(registry)
        with pytest.raises(AttachError) as caught:
            await _attestations(kube, client, registry.host).attach(
                _build(registry.host), _seen(digest)
            )
    assert caught.value.reason == "ProvenanceFailed"


@pytest.mark.parametrize("status", [400, 401, 403])
async def test_a_refusal_is_recorded_with_an_event_and_the_build_completes(status: int) -> None:
    kube = FakeKube()
    async with serve(Registry(fail_puts=[status])) as registry, RegistryClient() as client:
        digest = _image(registry)
        seen = await _attestations(kube, client, registry.host).attach(
            _build(registry.host), _seen(digest)
        )
    assert seen.phase == "Complete"
    assert seen.provenance is not None
    assert set(seen.provenance) == {"error"}
    assert str(status) in seen.provenance["error"]
    [event] = kube.all("events", "shop")
    assert event["type"] == "Warning"
    assert event["reason"] == "ProvenanceNotAttached"
    assert event["involvedObject"]["name"] == "web-1"
    assert event["message"] == seen.provenance["error"]


async def test_a_base_image_lookup_that_fails_transiently_is_retried_not_left_unresolved() -> None:
    """A 5xx while resolving a FROM image (kaniko reports no digest) would otherwise
    leave it 'unresolved' in a statement that is never written again."""
    kube = FakeKube()
    async with serve(Registry()) as registry, RegistryClient() as client:
        digest = _image(registry)
        registry.manifests["v1"] = registry.manifests[digest]  # the base: shop/web:v1
        base = f"{registry.host}/shop/web:v1"
        seen = dataclasses.replace(_seen(digest), reported=Reported(references=(base,)))
        registry.fail_gets["v1"] = [502]
        attestations = _attestations(kube, client, registry.host)
        with pytest.raises(AttachError):
            await attestations.attach(_build(registry.host), seen)
        attached = await attestations.attach(_build(registry.host), seen)
        assert attached.provenance is not None
        tag = cosign.attestation_tag(digest)
        [layer] = json.loads(registry.manifests[tag])["layers"]
        statement = _statement(registry, layer["digest"])
    definition = statement["predicate"]["buildDefinition"]
    assert definition["internalParameters"]["dependencies"]["unresolved"] == []
    [dependency] = definition["resolvedDependencies"]
    assert dependency["digest"] == {"sha256": digest.removeprefix("sha256:")}
    assert dependency["annotations"]["headwater.dev/inRegistry"] is True


# --- BuildRuns._finish: the tag moves only after the provenance is attached ----------


async def _finish_twice(
    registry: Registry, monkeypatch: pytest.MonkeyPatch, first_fails: bool
) -> tuple[FakeKube, list[bool], dict[str, Any]]:
    """_finish on a Complete build; when ``first_fails``, a first call that raised."""
    kube = FakeKube()
    kube.add(_build(registry.host))
    digest = _image(registry)
    attested_when_recorded: list[bool] = []
    async with RegistryClient() as client:
        settings = JobSettings(builder_image="b", insecure_registries=(registry.host,))
        builds = BuildController(kube.client, client, Config(), settings)

        async def record(build: Any, seen: Observation) -> None:
            attested_when_recorded.append(cosign.attestation_tag(digest) in registry.manifests)

        monkeypatch.setattr(builds.outputs, "record", record)
        done = Observation(COMPLETE, digest=digest)
        if first_fails:
            with pytest.raises(AttachError):
                await builds._finish(kube.body(Build, "web-1", "shop"), None, done)
            status = kube.body(Build, "web-1", "shop")["status"]
            assert (status["phase"], status["reason"]) == ("Running", "ProvenanceFailed")
            assert "503" in status["message"]
            assert "provenance" not in status
            assert attested_when_recorded == []  # the tag did not move
        await builds._finish(kube.body(Build, "web-1", "shop"), None, done)
        await builds.stop()
    return kube, attested_when_recorded, kube.body(Build, "web-1", "shop")["status"]


async def test_finish_a_transient_failure_keeps_the_build_running_then_completes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with serve(Registry(fail_puts=[503])) as registry:
        kube, recorded, status = await _finish_twice(registry, monkeypatch, first_fails=True)
    assert status["phase"] == "Complete"
    assert status["provenance"]["scheme"] == "tag"
    assert recorded == [True]  # the tag moved once, with the provenance in the registry
    assert "ProvenanceNotAttached" not in [e["reason"] for e in kube.all("events", "shop")]


async def test_finish_a_refusal_completes_the_build_with_the_error_and_an_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with serve(Registry(fail_puts=[403])) as registry:
        kube, recorded, status = await _finish_twice(registry, monkeypatch, first_fails=False)
    assert status["phase"] == "Complete"
    assert "403" in status["provenance"]["error"]
    assert recorded == [False]  # the tag moved without provenance
    reasons = [e["reason"] for e in kube.all("events", "shop")]
    assert reasons.count("ProvenanceNotAttached") == 1, reasons
