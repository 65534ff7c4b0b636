"""cosign's formats (headwater.registry.cosign) against what the real cosign wrote.

tests/data/cosign holds a key pair cosign v2.6.5 generated and the ``.sig`` and
``.att`` manifests, configs and layers it pushed for one image: the known
vectors. Round trips cover what Headwater writes; that cosign accepts it is
proven end to end in tests/e2e/test_signing.py. The registry I/O runs against a
small registry on 127.0.0.1 that wants push-scoped Bearer tokens for writes.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from headwater.registry import cosign
from headwater.registry.client import OCI_MANIFEST, RegistryClient, RegistryError, Repository

DATA = Path(__file__).resolve().parent.parent / "data" / "cosign"
DIGEST = (DATA / "image-digest").read_text().strip()
PASSWORD = (DATA / "cosign.password").read_bytes()
REGISTRY, REPOSITORY = "10.244.0.1:5000", "signing-probe/fixture"
# The cheapest scrypt parameters cosign accepts, so round trips stay fast.
LEGACY = (32768, 8, 1)


def _read(name: str) -> bytes:
    return (DATA / name).read_bytes()


@pytest.fixture(scope="module")
def cosign_key() -> cosign.SigningKey:
    return cosign.decrypt_private_key(_read("cosign.key"), PASSWORD)


@pytest.fixture(scope="module")
def cosign_pub() -> cosign.VerificationKey:
    return cosign.load_public_key(_read("cosign.pub"))


def _fetched(prefix: str) -> cosign.FetchedManifest:
    manifest = _read(f"{prefix}-manifest.json")
    doc = json.loads(manifest)
    layer = doc["layers"][0]
    data = _read(f"{prefix}-layer.json")
    assert cosign.Layer(layer["mediaType"], data).digest == layer["digest"]
    return cosign.FetchedManifest(
        reference=f"{REGISTRY}/{REPOSITORY}:x",
        digest="sha256:" + hashlib.sha256(manifest).hexdigest(),
        layers=(
            cosign.FetchedLayer(layer["digest"], layer["mediaType"], layer["annotations"], data),
        ),
        descriptors=tuple(doc["layers"]),
    )


# --- keys ---------------------------------------------------------------------------


def test_cosign_private_key_opens_with_its_password(
    cosign_key: cosign.SigningKey, cosign_pub: cosign.VerificationKey
) -> None:
    assert cosign_key.public.fingerprint == cosign_pub.fingerprint
    assert _read("cosign.key").startswith(b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----")


def test_wrong_password_is_refused_without_echoing_it() -> None:
    with pytest.raises(cosign.KeyFileError) as caught:
        cosign.decrypt_private_key(_read("cosign.key"), b"not-the-password")
    assert "not-the-password" not in str(caught.value)
    assert "probe-pass" not in str(caught.value)


def test_written_key_round_trips_and_has_cosigns_layout() -> None:
    key = cosign.generate_key()
    pem = cosign.encrypt_private_key(key, b"pw", scrypt_params=LEGACY)
    assert pem.startswith(b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n")
    body = b"".join(pem.splitlines()[1:-1])
    doc = json.loads(base64.b64decode(body))
    # go-securesystemslib's field names and order.
    assert list(doc) == ["kdf", "cipher", "ciphertext"]
    assert doc["kdf"]["name"] == "scrypt"
    assert doc["kdf"]["params"] == {"N": 32768, "r": 8, "p": 1}
    assert len(base64.b64decode(doc["kdf"]["salt"])) == 32
    assert doc["cipher"]["name"] == "nacl/secretbox"
    assert len(base64.b64decode(doc["cipher"]["nonce"])) == 24
    opened = cosign.decrypt_private_key(pem, b"pw")
    assert opened.public.fingerprint == key.public.fingerprint
    with pytest.raises(cosign.KeyFileError):
        cosign.decrypt_private_key(pem, b"")


def test_default_scrypt_parameters_are_cosigns_standard() -> None:
    pem = cosign.encrypt_private_key(cosign.generate_key(), b"")
    doc = json.loads(base64.b64decode(b"".join(pem.splitlines()[1:-1])))
    assert doc["kdf"]["params"] == {"N": 65536, "r": 8, "p": 1}


def test_unsupported_scrypt_parameters_are_refused_before_any_work() -> None:
    pem = cosign.encrypt_private_key(cosign.generate_key(), b"", scrypt_params=LEGACY)
    doc = json.loads(base64.b64decode(b"".join(pem.splitlines()[1:-1])))
    doc["kdf"]["params"]["N"] = 1 << 24  # 16 GiB of scrypt memory
    forged = b"\n".join(
        [
            b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----",
            base64.b64encode(json.dumps(doc).encode()),
            b"-----END ENCRYPTED SIGSTORE PRIVATE KEY-----",
        ]
    )
    with pytest.raises(cosign.KeyFileError, match="scrypt"):
        cosign.decrypt_private_key(forged, b"")


def test_secret_data_round_trip_and_mismatched_public_key() -> None:
    key = cosign.generate_key()
    data = cosign.key_secret_data(key, b"pw")
    assert set(data) == {"cosign.key", "cosign.pub", "cosign.password"}
    assert cosign.signing_key_from_secret(data).public.fingerprint == key.public.fingerprint
    other = cosign.generate_key().public.pem()
    with pytest.raises(cosign.KeyFileError, match=r"cosign\.pub"):
        cosign.signing_key_from_secret({**data, "cosign.pub": other})
    with pytest.raises(cosign.KeyFileError):
        cosign.signing_key_from_secret({"cosign.pub": other})


def test_public_key_must_be_p256() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    p384 = ec.generate_private_key(ec.SECP384R1()).public_key()
    pem = p384.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(cosign.KeyFileError, match="P-256"):
        cosign.load_public_key(pem)
    with pytest.raises(cosign.KeyFileError):
        cosign.load_public_key(b"not a key")


def test_signing_key_repr_shows_no_secret(cosign_key: cosign.SigningKey) -> None:
    assert repr(cosign_key) == f"SigningKey({cosign_key.public.fingerprint})"


# --- signatures: cosign's vectors --------------------------------------------------


def test_simple_signing_payload_is_cosigns_byte_for_byte() -> None:
    payload = cosign.simple_signing_payload(cosign.docker_reference(REGISTRY, REPOSITORY), DIGEST)
    assert payload == _read("sig-layer.json")
    claims = cosign.parse_simple_signing(payload)
    assert claims.image_digest == DIGEST
    assert claims.reference == f"{REGISTRY}/{REPOSITORY}"


def test_docker_hub_reference_is_index_docker_io() -> None:
    assert cosign.docker_reference("docker.io", "library/x") == "index.docker.io/library/x"


def test_cosign_signature_verifies(cosign_pub: cosign.VerificationKey) -> None:
    checks = cosign.verify_layers(_fetched("sig"), DIGEST, {"cosign": cosign_pub})
    assert [(c.kind, c.verified_by, c.problem) for c in checks] == [("signature", ("cosign",), "")]
    assert cosign.verified_keys(checks) == {"cosign"}


def test_cosign_signature_does_not_verify_with_another_key() -> None:
    other = cosign.generate_key().public
    checks = cosign.verify_layers(_fetched("sig"), DIGEST, {"other": other})
    assert checks[0].verified_by == ()
    assert "no configured key" in checks[0].problem


def test_signature_of_another_digest_does_not_count(cosign_pub: cosign.VerificationKey) -> None:
    other_digest = "sha256:" + "0" * 64
    checks = cosign.verify_layers(_fetched("sig"), other_digest, {"cosign": cosign_pub})
    assert checks[0].verified_by == ()
    assert "another image" in checks[0].problem


def test_tampered_payload_does_not_verify(cosign_pub: cosign.VerificationKey) -> None:
    fetched = _fetched("sig")
    layer = fetched.layers[0]
    assert layer.data is not None
    tampered = layer.data.replace(b"signing-probe", b"signing-probf")
    forged = cosign.FetchedManifest(
        fetched.reference,
        fetched.digest,
        (cosign.FetchedLayer(layer.digest, layer.media_type, layer.annotations, tampered),),
        fetched.descriptors,
    )
    assert cosign.verify_layers(forged, DIGEST, {"cosign": cosign_pub})[0].verified_by == ()


def test_build_image_reproduces_cosigns_manifest_and_config() -> None:
    doc = json.loads(_read("sig-manifest.json"))
    layer = doc["layers"][0]
    image = cosign.build_image(
        [cosign.Layer(layer["mediaType"], _read("sig-layer.json"), layer["annotations"])]
    )
    assert image.config == _read("sig-config.json")
    assert image.manifest == _read("sig-manifest.json")


def test_appending_keeps_the_existing_layers_first() -> None:
    doc = json.loads(_read("sig-manifest.json"))
    key = cosign.generate_key()
    payload = cosign.simple_signing_payload("r/x", DIGEST)
    image = cosign.build_image(
        [cosign.signature_layer(payload, key.sign(payload))], keep=doc["layers"]
    )
    built = json.loads(image.manifest)
    assert built["layers"][0] == doc["layers"][0]
    assert len(built["layers"]) == 2
    config = json.loads(image.config)
    assert config["rootfs"]["diff_ids"] == [entry["digest"] for entry in built["layers"]]
    assert len(config["history"]) == 2
    assert image.new_layers[0].digest == built["layers"][1]["digest"]


def test_tags() -> None:
    assert cosign.signature_tag(DIGEST) == DIGEST.replace(":", "-") + ".sig"
    assert cosign.attestation_tag(DIGEST) == DIGEST.replace(":", "-") + ".att"
    with pytest.raises(ValueError, match="digest"):
        cosign.signature_tag("latest")


# --- attestations ------------------------------------------------------------------


def test_pae_matches_the_dsse_spec_vector() -> None:
    # secure-systems-lab/dsse protocol.md's example.
    assert (
        cosign.pae("http://example.com/HelloWorld", b"hello world")
        == b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_cosign_attestation_verifies(cosign_pub: cosign.VerificationKey) -> None:
    checks = cosign.verify_layers(
        _fetched("att"), DIGEST, {"cosign": cosign_pub}, predicate_type=cosign.SLSA_PROVENANCE_V1
    )
    assert checks[0].verified_by == ("cosign",)
    assert checks[0].predicate_type == cosign.SLSA_PROVENANCE_V1
    assert checks[0].statement is not None
    assert (
        checks[0].statement["predicate"]["runDetails"]["builder"]["id"] == "https://example.com/b"
    )
    wrong_type = cosign.verify_layers(
        _fetched("att"), DIGEST, {"cosign": cosign_pub}, predicate_type="https://spdx.dev/Document"
    )
    assert wrong_type[0].verified_by == ()


def test_attestation_layer_and_manifest_are_cosigns() -> None:
    doc = json.loads(_read("att-manifest.json"))
    envelope = _read("att-layer.json")
    layer = cosign.attestation_layer(envelope, cosign.SLSA_PROVENANCE_V1)
    assert dict(layer.annotations) == doc["layers"][0]["annotations"]
    image = cosign.build_image([layer])
    assert image.manifest == _read("att-manifest.json")
    assert image.config == _read("att-config.json")


def test_dsse_round_trip_and_envelope_shape() -> None:
    key = cosign.generate_key()
    statement = json.dumps(
        {"_type": "https://in-toto.io/Statement/v1", "subject": [], "predicateType": "x"}
    ).encode()
    raw = cosign.dsse_sign(statement, key)
    assert list(json.loads(raw)) == ["payloadType", "payload", "signatures"]
    envelope = cosign.parse_envelope(raw)
    assert envelope.payload == statement
    assert envelope.payload_type == cosign.IN_TOTO_PAYLOAD_TYPE
    assert cosign.verify_dsse(envelope, key.public)
    assert not cosign.verify_dsse(envelope, cosign.generate_key().public)
    changed = cosign.Envelope(envelope.payload_type, statement + b" ", envelope.signatures)
    assert not cosign.verify_dsse(changed, key.public)


# --- registry I/O ----------------------------------------------------------------


@dataclass
class Registry:
    """A registry on 127.0.0.1 that keeps blobs and manifests, with Bearer auth whose
    token says its scope; writes need ``push``."""

    port: int = 0
    blobs: dict[str, bytes] = field(default_factory=dict)
    manifests: dict[str, bytes] = field(default_factory=dict)
    scopes: list[str] = field(default_factory=list)
    upload_location: str = ""
    fail_manifest_put: int = 0

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def repo(self) -> Repository:
        """``team/app`` on it, over plain HTTP."""
        return Repository(self.host, "team/app", insecure=True)


@pytest.fixture
async def registry() -> AsyncIterator[Registry]:
    async with serve_registry() as state:
        yield state


@contextlib.asynccontextmanager
async def serve_registry() -> AsyncIterator[Registry]:
    """The registry on a free loopback port, for this module and test_build_attest."""
    state = Registry()

    def scope_of(request: web.Request) -> str | None:
        auth = request.headers.get("Authorization", "")
        return auth.removeprefix("Bearer scope=") if auth.startswith("Bearer scope=") else None

    def challenge() -> web.Response:
        realm = f"http://127.0.0.1:{state.port}/token"
        return web.Response(
            status=401, headers={"WWW-Authenticate": f'Bearer realm="{realm}",service="t"'}
        )

    def allowed(request: web.Request, write: bool) -> bool:
        scope = scope_of(request)
        return scope is not None and (not write or scope.endswith(",push"))

    async def token(request: web.Request) -> web.Response:
        scope = request.query["scope"]
        state.scopes.append(scope)
        return web.json_response({"token": f"scope={scope}", "expires_in": 300})

    async def manifest(request: web.Request) -> web.Response:
        write = request.method == "PUT"
        if not allowed(request, write):
            return challenge()
        ref = request.match_info["reference"]
        if write:
            if state.fail_manifest_put:
                state.fail_manifest_put -= 1
                return web.json_response({"errors": [{"code": "UNKNOWN"}]}, status=500)
            body = await request.read()
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
            state.manifests[ref] = state.manifests[digest] = body
            return web.Response(status=201, headers={"Docker-Content-Digest": digest})
        stored = state.manifests.get(ref)
        if stored is None:
            return web.json_response({"errors": [{"code": "MANIFEST_UNKNOWN"}]}, status=404)
        return web.Response(body=stored, content_type=OCI_MANIFEST)

    async def blob(request: web.Request) -> web.Response:
        if not allowed(request, False):
            return challenge()
        data = state.blobs.get(request.match_info["digest"])
        if data is None:
            return web.Response(status=404)
        return web.Response(body=None if request.method == "HEAD" else data)

    async def start_upload(request: web.Request) -> web.Response:
        if not allowed(request, True):
            return challenge()
        location = state.upload_location or f"/v2/{request.match_info['name']}/blobs/uploads/u1"
        return web.Response(status=202, headers={"Location": location})

    async def finish_upload(request: web.Request) -> web.Response:
        if not allowed(request, True):
            return challenge()
        data = await request.read()
        digest = request.query["digest"]
        assert digest == "sha256:" + hashlib.sha256(data).hexdigest()
        state.blobs[digest] = data
        return web.Response(status=201)

    app = web.Application()
    app.router.add_get("/token", token)
    app.router.add_route("*", "/v2/{name:.+}/manifests/{reference}", manifest)
    app.router.add_post("/v2/{name:.+}/blobs/uploads/", start_upload)
    app.router.add_put("/v2/{name:.+}/blobs/uploads/{id}", finish_upload)
    app.router.add_route("GET", "/v2/{name:.+}/blobs/{digest}", blob)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.port = int(runner.addresses[0][1])
    try:
        yield state
    finally:
        await runner.cleanup()


async def test_attach_signature_pushes_with_push_scope_and_verifies(registry: Registry) -> None:
    key = cosign.generate_key()
    async with RegistryClient() as client:
        attached = await cosign.attach_signature(client, registry.repo, DIGEST, key)
        assert attached.appended
        assert attached.reference == f"{registry.host}/team/app:{cosign.signature_tag(DIGEST)}"
        assert attached.key_id == key.public.fingerprint
        assert registry.scopes
        assert set(registry.scopes) == {"repository:team/app:pull,push"}
        fetched = await cosign.fetch_signatures(client, registry.repo, DIGEST)
    assert fetched is not None
    assert fetched.digest == attached.manifest_digest
    checks = cosign.verify_layers(fetched, DIGEST, {"mine": key.public})
    assert cosign.verified_keys(checks) == {"mine"}


async def test_a_tenants_huge_signature_manifest_is_read_within_one_budget(
    registry: Registry,
) -> None:
    # Whoever may push to the repository writes its .sig manifest: 8 layers of 3 MiB
    # (each under the per-layer limit) must not all be held by the operator.
    size = 3 << 20
    descriptors = []
    for index in range(8):
        data = bytes([index]) * size
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        registry.blobs[digest] = data
        descriptors.append(
            {"mediaType": cosign.SIMPLE_SIGNING_MEDIA_TYPE, "digest": digest, "size": size}
        )
    config = {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": DIGEST, "size": 2}
    manifest = {"schemaVersion": 2, "config": config, "layers": descriptors}
    registry.manifests[cosign.signature_tag(DIGEST)] = json.dumps(manifest).encode()
    async with RegistryClient() as client:
        fetched = await cosign.fetch_signatures(client, registry.repo, DIGEST)
    assert fetched is not None
    assert len(fetched.layers) == 8
    read = [layer.data for layer in fetched.layers if layer.data is not None]
    assert sum(map(len, read)) <= cosign.MAX_FETCH_BYTES
    assert len(read) == cosign.MAX_FETCH_BYTES // size


async def test_attach_appends_to_anothers_signature_and_is_idempotent(registry: Registry) -> None:
    theirs, mine = cosign.generate_key(), cosign.generate_key()
    async with RegistryClient() as client:
        await cosign.attach_signature(client, registry.repo, DIGEST, theirs)
        first = await cosign.attach_signature(client, registry.repo, DIGEST, mine)
        again = await cosign.attach_signature(client, registry.repo, DIGEST, mine)
        fetched = await cosign.fetch_signatures(client, registry.repo, DIGEST)
    assert first.appended
    assert not again.appended
    assert again.manifest_digest == first.manifest_digest
    assert fetched is not None
    assert len(fetched.layers) == 2
    checks = cosign.verify_layers(fetched, DIGEST, {"theirs": theirs.public, "mine": mine.public})
    assert [c.verified_by for c in checks] == [("theirs",), ("mine",)]


@pytest.mark.parametrize("signed", [True, False])
async def test_attach_attestation_round_trip_and_retry(registry: Registry, signed: bool) -> None:
    key = cosign.generate_key() if signed else None
    statement = json.dumps(
        {
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": "team/app", "digest": {"sha256": DIGEST.split(":")[1]}}],
            "predicateType": cosign.SLSA_PROVENANCE_V1,
            "predicate": {},
        }
    ).encode()
    async with RegistryClient() as client:
        first, again = [
            await cosign.attach_attestation(
                client, registry.repo, DIGEST, statement, cosign.SLSA_PROVENANCE_V1, key
            )
            for _ in range(2)
        ]
        fetched = await cosign.fetch_attestations(client, registry.repo, DIGEST)
    assert (first.appended, again.appended) == (True, False)
    assert again.layer_digest == first.layer_digest
    assert first.key_id == again.key_id == (key.public.fingerprint if key is not None else "")
    assert first.reference.endswith(".att")
    assert fetched is not None
    assert len(fetched.layers) == 1
    if key is not None:
        checks = cosign.verify_layers(
            fetched, DIGEST, {"k": key.public}, predicate_type=cosign.SLSA_PROVENANCE_V1
        )
        assert checks[0].verified_by == ("k",)


async def test_no_signatures_is_none(registry: Registry) -> None:
    async with RegistryClient() as client:
        assert await cosign.fetch_signatures(client, registry.repo, DIGEST) is None


async def test_registry_failure_raises_and_records_nothing(registry: Registry) -> None:
    registry.fail_manifest_put = 1
    key = cosign.generate_key()
    async with RegistryClient() as client:
        with pytest.raises(RegistryError) as caught:
            await cosign.attach_signature(client, registry.repo, DIGEST, key)
        assert caught.value.reason == "ServerError"
        assert cosign.signature_tag(DIGEST) not in registry.manifests
        retried = await cosign.attach_signature(client, registry.repo, DIGEST, key)
    assert retried.appended


async def test_upload_location_on_another_host_is_refused(registry: Registry) -> None:
    registry.upload_location = "http://127.0.0.2:1/v2/team/app/blobs/uploads/u1"
    async with RegistryClient() as client:
        with pytest.raises(RegistryError, match="upload location"):
            await client.push_blob(registry.repo, b"data")
    assert not registry.blobs


async def test_the_access_policy_guards_the_write_path(registry: Registry) -> None:
    from headwater.config import AllowedRegistry
    from headwater.registry.policy import AccessPolicy

    allowed = AccessPolicy([AllowedRegistry(registry.host, insecure=True)])
    refused = AccessPolicy([AllowedRegistry("registry.example", insecure=True)])
    key = cosign.generate_key()
    async with RegistryClient(policy=allowed) as client:
        await cosign.attach_signature(client, registry.repo, DIGEST, key)
    assert registry.manifests
    registry.manifests.clear()
    registry.blobs.clear()
    async with RegistryClient(policy=refused) as client:
        with pytest.raises(RegistryError) as caught:
            await cosign.attach_signature(client, registry.repo, DIGEST, key)
        assert caught.value.reason == "NotAllowed"
        with pytest.raises(RegistryError) as blob:
            await client.push_blob(registry.repo, b"x")
        assert blob.value.reason == "NotAllowed"
    assert not registry.manifests
    assert not registry.blobs
    assert registry.scopes == ["repository:team/app:pull,push"]
