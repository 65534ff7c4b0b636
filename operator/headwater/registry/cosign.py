"""cosign's formats: keys, signatures and attestations, as cosign v2 writes and reads them.

Everything here is checked against sigstore/cosign v2.6.5 (and the libraries it
uses: sigstore/sigstore's payload package, go-securesystemslib's ``encrypted``
and ``dsse`` packages, go-containerregistry's empty image), and against
signatures the real cosign made (tests/unit/fixtures/cosign):

- **Keys.** ECDSA P-256. The public key is a PKIX ``PUBLIC KEY`` PEM. The private
  key is a PEM block of type ``ENCRYPTED SIGSTORE PRIVATE KEY`` (older cosigns
  wrote ``ENCRYPTED COSIGN PRIVATE KEY``; both are read) whose bytes are the JSON
  of go-securesystemslib's ``encrypted`` package: the PKCS #8 DER of the key,
  sealed with NaCl secretbox (XSalsa20-Poly1305) under a key that scrypt derives
  from the password (``{"kdf":{"name":"scrypt","params":{"N":65536,"r":8,"p":1},
  "salt":…},"cipher":{"name":"nacl/secretbox","nonce":…},"ciphertext":…}``).
  ``cosign generate-key-pair k8s://ns/name`` keeps the three in a Secret as
  ``cosign.key``, ``cosign.password`` and ``cosign.pub`` (:func:`key_secret_data`).
- **Signatures** (``cosign sign``). The signed payload is a "simple signing"
  document naming the image digest (:func:`simple_signing_payload`); the
  signature is ECDSA over SHA-256 of those bytes, ASN.1 DER, base64 in the layer
  annotation ``dev.cosignproject.cosign/signature``. The layer's media type is
  ``application/vnd.dev.cosign.simplesigning.v1+json``. Signatures of
  ``<repo>@sha256:<hex>`` live in an OCI image manifest tagged
  ``<repo>:sha256-<hex>.sig``, one layer per signature; a new signature is
  appended, never put in place of another's.
- **Attestations** (``cosign attest``). An in-toto statement wrapped in a DSSE
  envelope (payload type ``application/vnd.in-toto+json``, the signature over
  DSSE's pre-authentication encoding, :func:`pae`); the layer's media type is
  ``application/vnd.dsse.envelope.v1+json``, its annotations
  ``predicateType`` and an empty ``dev.cosignproject.cosign/signature``; the
  manifest is tagged ``sha256-<hex>.att``.
- The manifests' config blob is go-containerregistry's config of an empty
  image with those layers (zero times, empty os and architecture).

No transparency log (Rekor) or certificate (Fulcio) is involved: the layers
carry no bundle, so ``cosign verify`` needs ``--insecure-ignore-tlog=true``.

The module is pure but for the ``attach_*`` and ``fetch_*`` coroutines at the
end, which talk to a registry through :class:`RegistryClient`. It knows nothing
of Kubernetes. Nothing here logs or returns a private key or a password.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import nacl.exceptions
import nacl.secret
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from headwater.registry.client import (
    OCI_MANIFEST,
    RegistryClient,
    RegistryError,
    Repository,
)

__all__ = [
    "ATTESTATION_SUFFIX",
    "COSIGN_PRIVATE_KEY_PEM",
    "DSSE_MEDIA_TYPE",
    "IN_TOTO_PAYLOAD_TYPE",
    "PREDICATE_TYPE_ANNOTATION",
    "SECRET_PASSWORD",
    "SECRET_PRIVATE_KEY",
    "SECRET_PUBLIC_KEY",
    "SIGNATURE_ANNOTATION",
    "SIGNATURE_SUFFIX",
    "SIGSTORE_PRIVATE_KEY_PEM",
    "SIMPLE_SIGNING_MEDIA_TYPE",
    "SIMPLE_SIGNING_TYPE",
    "SLSA_PROVENANCE_V1",
    "Attached",
    "Envelope",
    "FetchedLayer",
    "FetchedManifest",
    "KeyFileError",
    "Layer",
    "LayerCheck",
    "SignatureImage",
    "SigningKey",
    "SimpleSigning",
    "VerificationKey",
    "attach_attestation",
    "attach_attestation_referrer",
    "attach_signature",
    "attestation_layer",
    "attestation_tag",
    "build_image",
    "decrypt_private_key",
    "docker_reference",
    "dsse_sign",
    "dsse_unsigned",
    "encrypt_private_key",
    "fetch_attestations",
    "fetch_signatures",
    "generate_key",
    "key_secret_data",
    "load_public_key",
    "pae",
    "parse_envelope",
    "parse_simple_signing",
    "referrer_manifest",
    "signature_layer",
    "signature_tag",
    "signing_key_from_secret",
    "simple_signing_payload",
    "verified_keys",
    "verify_dsse",
    "verify_layers",
]

SIMPLE_SIGNING_MEDIA_TYPE: Final = "application/vnd.dev.cosign.simplesigning.v1+json"
"""The media type of a signature layer (cosign pkg/types SimpleSigningMediaType)."""
SIMPLE_SIGNING_TYPE: Final = "cosign container image signature"
"""``critical.type`` of a simple-signing payload (sigstore payload.CosignSignatureType)."""
DSSE_MEDIA_TYPE: Final = "application/vnd.dsse.envelope.v1+json"
"""The media type of an attestation layer (cosign pkg/types DssePayloadType)."""
IN_TOTO_PAYLOAD_TYPE: Final = "application/vnd.in-toto+json"
"""The DSSE ``payloadType`` of an in-toto statement (cosign pkg/types IntotoPayloadType)."""
SIGNATURE_ANNOTATION: Final = "dev.cosignproject.cosign/signature"
PREDICATE_TYPE_ANNOTATION: Final = "predicateType"
SLSA_PROVENANCE_V1: Final = "https://slsa.dev/provenance/v1"
"""What ``cosign verify-attestation --type slsaprovenance1`` looks for."""
SIGNATURE_SUFFIX: Final = "sig"
ATTESTATION_SUFFIX: Final = "att"
SIGSTORE_PRIVATE_KEY_PEM: Final = "ENCRYPTED SIGSTORE PRIVATE KEY"
COSIGN_PRIVATE_KEY_PEM: Final = "ENCRYPTED COSIGN PRIVATE KEY"
SECRET_PRIVATE_KEY: Final = "cosign.key"  # noqa: S105 - a Secret's key name
SECRET_PASSWORD: Final = "cosign.password"  # noqa: S105
SECRET_PUBLIC_KEY: Final = "cosign.pub"  # noqa: S105
"""The Secret keys ``cosign generate-key-pair k8s://ns/name`` writes."""

_OCI_CONFIG: Final = "application/vnd.oci.image.config.v1+json"
_GO_ZERO_TIME: Final = "0001-01-01T00:00:00Z"
_DIGEST_RE: Final = re.compile(r"sha256:[0-9a-f]{64}")
# go-securesystemslib accepts exactly these scrypt parameters (Legacy, Standard,
# OWASP) and writes Standard; refusing others bounds the work a key file costs.
_SCRYPT_PARAMS: Final = frozenset({(32768, 8, 1), (65536, 8, 1), (131072, 8, 1)})
_SCRYPT_DEFAULT: Final = (65536, 8, 1)
_SALT_BYTES: Final = 32
# Per fetched layer and per manifest: a signature or a provenance statement is
# kilobytes; anything near these is not one.
MAX_LAYER_BYTES: Final = 4 << 20
MAX_LAYERS: Final = 256
"""Layers read from one .sig/.att manifest (cosign appends one per signing)."""
MAX_FETCH_BYTES: Final = 16 << 20
"""Blob bytes read for one .sig/.att manifest in all: the manifest is written by
whoever may push to the repository (a tenant), and 256 layers of 4 MiB each
would hold 1 GiB in the operator. Layers past it are listed, not fetched."""


class KeyFileError(ValueError):
    """A key file or Secret that cannot be used (wrong password, not ECDSA P-256, malformed).

    The message never holds key material or the password.
    """


# --- keys --------------------------------------------------------------------------


@dataclass(frozen=True)
class VerificationKey:
    """An ECDSA P-256 public key."""

    key: ec.EllipticCurvePublicKey = field(repr=False)

    @property
    def fingerprint(self) -> str:
        """``sha256:<hex>`` of the key's DER SubjectPublicKeyInfo (what status shows as keyId)."""
        der = self.key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return "sha256:" + hashlib.sha256(der).hexdigest()

    def pem(self) -> bytes:
        """The PKIX PEM ``cosign.pub`` holds."""
        return self.key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def verify(self, data: bytes, signature: bytes) -> bool:
        """Whether ``signature`` (ASN.1 DER) is this key's ECDSA/SHA-256 signature of ``data``."""
        try:
            self.key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError):
            return False
        return True


@dataclass(frozen=True)
class SigningKey:
    """An ECDSA P-256 private key. Its repr shows only the public fingerprint."""

    key: ec.EllipticCurvePrivateKey = field(repr=False)

    @property
    def public(self) -> VerificationKey:
        return VerificationKey(self.key.public_key())

    def sign(self, data: bytes) -> bytes:
        """ECDSA over SHA-256 of ``data``, ASN.1 DER, as cosign signs with a P-256 key."""
        return self.key.sign(data, ec.ECDSA(hashes.SHA256()))

    def __repr__(self) -> str:
        return f"SigningKey({self.public.fingerprint})"


def generate_key() -> SigningKey:
    """A new ECDSA P-256 key (what ``cosign generate-key-pair`` makes)."""
    return SigningKey(ec.generate_private_key(ec.SECP256R1()))


def load_public_key(pem: bytes) -> VerificationKey:
    """A ``cosign.pub`` (PKIX PEM); KeyFileError unless it is an ECDSA P-256 key."""
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError):
        raise KeyFileError("the public key is not a PEM PUBLIC KEY") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise KeyFileError("the public key is not an ECDSA P-256 key")
    return VerificationKey(key)


def _scrypt(password: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    # hashlib's default memory cap (32 MiB) is below what N=65536, r=8 needs (64 MiB).
    return hashlib.scrypt(
        password, salt=salt, n=n, r=r, p=p, maxmem=2 * 128 * r * n + (1 << 20), dklen=32
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def encrypt_private_key(
    key: SigningKey, password: bytes, *, scrypt_params: tuple[int, int, int] = _SCRYPT_DEFAULT
) -> bytes:
    """The ``cosign.key`` PEM of ``key`` sealed with ``password`` (may be empty), as cosign
    writes it: ``ENCRYPTED SIGSTORE PRIVATE KEY``, go-securesystemslib ``encrypted`` JSON.

    CPU- and memory-heavy (scrypt, 64 MiB): call it off the event loop.
    """
    if scrypt_params not in _SCRYPT_PARAMS:
        raise ValueError(f"scrypt parameters {scrypt_params} are not ones cosign accepts")
    der = key.key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    salt = os.urandom(_SALT_BYTES)
    nonce = os.urandom(nacl.secret.SecretBox.NONCE_SIZE)
    n, r, p = scrypt_params
    box = nacl.secret.SecretBox(_scrypt(password, salt, n, r, p))
    ciphertext = box.encrypt(der, nonce).ciphertext
    # Go's encoding/json: struct field order, []byte as standard base64, no spaces.
    document = {
        "kdf": {"name": "scrypt", "params": {"N": n, "r": r, "p": p}, "salt": _b64(salt)},
        "cipher": {"name": "nacl/secretbox", "nonce": _b64(nonce)},
        "ciphertext": _b64(ciphertext),
    }
    return _pem(SIGSTORE_PRIVATE_KEY_PEM, json.dumps(document, separators=(",", ":")).encode())


def _pem(kind: str, data: bytes) -> bytes:
    body = base64.b64encode(data).decode("ascii")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return ("\n".join([f"-----BEGIN {kind}-----", *lines, f"-----END {kind}-----"]) + "\n").encode()


_PEM_RE: Final = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.DOTALL)


def decrypt_private_key(pem: bytes, password: bytes) -> SigningKey:
    """The key in a ``cosign.key`` (either PEM type cosign writes), opened with ``password``.

    KeyFileError for a wrong password, a malformed file or a key that is not ECDSA
    P-256. CPU- and memory-heavy (scrypt): call it off the event loop.
    """
    match = _PEM_RE.search(pem[: 64 * 1024])
    if match is None:
        raise KeyFileError("the private key is not a PEM block")
    if match.group(1).decode() not in (SIGSTORE_PRIVATE_KEY_PEM, COSIGN_PRIVATE_KEY_PEM):
        raise KeyFileError(f"unsupported PEM type {match.group(1).decode()!r}")
    try:
        raw = base64.b64decode(b"".join(match.group(2).split()), validate=True)
        document = json.loads(raw)
        kdf, cipher = document["kdf"], document["cipher"]
        params = kdf["params"]
        n, r, p = int(params["N"]), int(params["r"]), int(params["p"])
        salt = base64.b64decode(kdf["salt"], validate=True)
        nonce = base64.b64decode(cipher["nonce"], validate=True)
        ciphertext = base64.b64decode(document["ciphertext"], validate=True)
        names = (kdf["name"], cipher["name"])
    except (ValueError, TypeError, KeyError):
        raise KeyFileError("the private key is not cosign's encrypted key format") from None
    if names != ("scrypt", "nacl/secretbox"):
        raise KeyFileError("the private key uses an unknown KDF or cipher")
    if (n, r, p) not in _SCRYPT_PARAMS:
        raise KeyFileError("the private key's scrypt parameters are unsupported")
    if len(nonce) != nacl.secret.SecretBox.NONCE_SIZE:
        raise KeyFileError("the private key's nonce has the wrong size")
    box = nacl.secret.SecretBox(_scrypt(password, salt, n, r, p))
    try:
        der = box.decrypt(ciphertext, nonce)
    except nacl.exceptions.CryptoError:
        raise KeyFileError("the password does not open the private key") from None
    try:
        key = serialization.load_der_private_key(der, password=None)
    except (ValueError, TypeError):
        raise KeyFileError("the private key is not PKCS #8") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise KeyFileError("the private key is not an ECDSA P-256 key")
    return SigningKey(key)


def key_secret_data(key: SigningKey, password: bytes) -> dict[str, bytes]:
    """The data of a Secret as ``cosign generate-key-pair k8s://ns/name`` writes it."""
    return {
        SECRET_PRIVATE_KEY: encrypt_private_key(key, password),
        SECRET_PUBLIC_KEY: key.public.pem(),
        SECRET_PASSWORD: password,
    }


def signing_key_from_secret(data: Mapping[str, bytes]) -> SigningKey:
    """The key of a cosign key Secret's (decoded) data; KeyFileError when it is unusable.

    The public key, when present, must be the private key's.
    """
    private = data.get(SECRET_PRIVATE_KEY)
    if not private:
        raise KeyFileError(f"the Secret has no {SECRET_PRIVATE_KEY}")
    key = decrypt_private_key(private, data.get(SECRET_PASSWORD) or b"")
    public = data.get(SECRET_PUBLIC_KEY)
    if public and load_public_key(public).fingerprint != key.public.fingerprint:
        raise KeyFileError(f"{SECRET_PUBLIC_KEY} is not the public key of {SECRET_PRIVATE_KEY}")
    return key


# --- payloads ----------------------------------------------------------------------


def _go_json(value: object) -> bytes:
    """JSON as Go's encoding/json writes it: compact, UTF-8, HTML characters escaped.

    Mappings keep their insertion order (build them in the Go struct's field
    order; Go sorts map keys, so pass those sorted).
    """
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    for char, escape in (
        ("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
        ("\u2028", "\\u2028"), ("\u2029", "\\u2029"),
    ):  # fmt: skip
        text = text.replace(char, escape)
    return text.encode()


def signature_tag(image_digest: str) -> str:
    """``sha256-<hex>.sig``: where cosign keeps the signatures of ``image_digest``."""
    return _suffix_tag(image_digest, SIGNATURE_SUFFIX)


def attestation_tag(image_digest: str) -> str:
    """``sha256-<hex>.att``: where cosign keeps the attestations of ``image_digest``."""
    return _suffix_tag(image_digest, ATTESTATION_SUFFIX)


def _suffix_tag(image_digest: str, suffix: str) -> str:
    if not _DIGEST_RE.fullmatch(image_digest):
        raise ValueError(f"{image_digest!r} is not a sha256 digest")
    return image_digest.replace(":", "-", 1) + "." + suffix


def docker_reference(registry: str, repository: str) -> str:
    """The repository as go-containerregistry names it (``Repository.Name()``), which
    cosign writes as the payload's ``docker-reference``: Docker Hub is ``index.docker.io``."""
    if registry in ("docker.io", "registry-1.docker.io", "index.docker.io"):
        registry = "index.docker.io"
    return f"{registry}/{repository}"


def simple_signing_payload(
    reference: str, image_digest: str, optional: Mapping[str, Any] | None = None
) -> bytes:
    """The payload ``cosign sign`` signs for ``reference@image_digest``, byte for byte.

    ``reference`` is a repository (:func:`docker_reference`); ``optional`` holds
    the ``-a key=value`` annotations (None writes ``null``, as cosign does).
    """
    if not _DIGEST_RE.fullmatch(image_digest):
        raise ValueError(f"{image_digest!r} is not a sha256 digest")
    return _go_json(
        {
            "critical": {
                "identity": {"docker-reference": reference},
                "image": {"docker-manifest-digest": image_digest},
                "type": SIMPLE_SIGNING_TYPE,
            },
            "optional": dict(sorted(optional.items())) if optional is not None else None,
        }
    )


@dataclass(frozen=True)
class SimpleSigning:
    """What a simple-signing payload claims."""

    reference: str
    image_digest: str
    optional: Mapping[str, Any] = field(default_factory=dict, hash=False)


def parse_simple_signing(payload: bytes) -> SimpleSigning:
    """A simple-signing payload's claims; ValueError unless it is a cosign signature payload."""
    try:
        doc = json.loads(payload)
        critical = doc["critical"]
        kind = critical["type"]
        reference = critical["identity"]["docker-reference"]
        digest = critical["image"]["docker-manifest-digest"]
        optional = doc.get("optional") or {}
    except (ValueError, TypeError, KeyError, RecursionError):
        raise ValueError("not a simple-signing payload") from None
    if kind != SIMPLE_SIGNING_TYPE:
        raise ValueError("the payload's type is not a cosign container image signature")
    if not isinstance(reference, str) or not isinstance(digest, str):
        raise ValueError("the payload's identity or digest is not a string")
    if not isinstance(optional, dict):
        raise ValueError("the payload's optional part is not an object")
    return SimpleSigning(reference, digest, optional)


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding, what a DSSE signature signs:
    ``DSSEv1 <len(type)> <type> <len(payload)> <payload>`` (lengths in bytes)."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


@dataclass(frozen=True)
class Envelope:
    """A DSSE envelope: ``payload`` decoded, ``signatures`` as (keyid, DER signature)."""

    payload_type: str
    payload: bytes
    signatures: tuple[tuple[str, bytes], ...]


def dsse_sign(payload: bytes, key: SigningKey, payload_type: str = IN_TOTO_PAYLOAD_TYPE) -> bytes:
    """The DSSE envelope cosign writes for ``payload`` signed with ``key`` (keyid empty)."""
    signature = key.sign(pae(payload_type, payload))
    return _go_json(
        {
            "payloadType": payload_type,
            "payload": _b64(payload),
            "signatures": [{"keyid": "", "sig": _b64(signature)}],
        }
    )


def dsse_unsigned(payload: bytes, payload_type: str = IN_TOTO_PAYLOAD_TYPE) -> bytes:
    """A DSSE envelope of ``payload`` with no signature (no signing key configured):
    the statement is there to read, but nothing vouches for it."""
    return _go_json({"payloadType": payload_type, "payload": _b64(payload), "signatures": []})


def _b64decode_any(text: str) -> bytes:
    # DSSE allows standard and URL-safe base64, padded or not.
    padded = text + "=" * (-len(text) % 4)
    alphabet = b"-_" if ("-" in text or "_" in text) else None
    return base64.b64decode(padded, altchars=alphabet, validate=True)


def parse_envelope(data: bytes) -> Envelope:
    """A DSSE envelope; ValueError when malformed."""
    try:
        doc = json.loads(data)
        payload_type = doc["payloadType"]
        payload = _b64decode_any(doc["payload"])
        signatures = tuple(
            (str(s.get("keyid") or ""), _b64decode_any(s["sig"])) for s in doc["signatures"]
        )
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
        raise ValueError("not a DSSE envelope") from None
    if not isinstance(payload_type, str):
        raise ValueError("the envelope's payloadType is not a string")
    return Envelope(payload_type, payload, signatures)


def verify_dsse(envelope: Envelope, key: VerificationKey) -> bool:
    """Whether one of the envelope's signatures is ``key``'s over its PAE."""
    message = pae(envelope.payload_type, envelope.payload)
    return any(key.verify(message, signature) for _, signature in envelope.signatures)


# --- images ----------------------------------------------------------------------


@dataclass(frozen=True)
class Layer:
    """One layer of a signature or attestation image: its bytes and its annotations."""

    media_type: str
    data: bytes = field(repr=False)
    annotations: Mapping[str, str] = field(default_factory=dict, hash=False)

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.data).hexdigest()


def signature_layer(payload: bytes, signature: bytes) -> Layer:
    """The layer ``cosign sign`` writes: the payload, its signature in the annotation."""
    return Layer(SIMPLE_SIGNING_MEDIA_TYPE, payload, {SIGNATURE_ANNOTATION: _b64(signature)})


def attestation_layer(envelope: bytes, predicate_type: str) -> Layer:
    """The layer ``cosign attest`` writes: the DSSE envelope, its predicate type annotated."""
    return Layer(
        DSSE_MEDIA_TYPE,
        envelope,
        {SIGNATURE_ANNOTATION: "", PREDICATE_TYPE_ANNOTATION: predicate_type},
    )


@dataclass(frozen=True)
class _Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict, hash=False)

    def json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "size": self.size}
        out["digest"] = self.digest
        if self.annotations:
            out["annotations"] = dict(sorted(self.annotations.items()))
        return out


@dataclass(frozen=True)
class SignatureImage:
    """A signature/attestation image ready to push: its manifest, its config and the
    blobs of the layers it adds (those it keeps from an earlier manifest are in the
    repository already)."""

    manifest: bytes
    config: bytes
    new_layers: tuple[Layer, ...]

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.manifest).hexdigest()

    @property
    def config_digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.config).hexdigest()


def build_image(
    layers: Sequence[Layer], *, keep: Sequence[Mapping[str, Any]] = ()
) -> SignatureImage:
    """The OCI manifest and config of a cosign signature/attestation image (pure).

    ``keep`` are the layer descriptors of the existing ``.sig``/``.att`` manifest
    (as in its JSON); ``layers`` are appended after them, as cosign appends. The
    bytes are go-containerregistry's: an empty image (OCI media types, zero
    times) with one history entry per layer and the layers' digests as diff ids
    (cosign's layers are uncompressed).
    """
    descriptors = [_parse_descriptor(d) for d in keep]
    descriptors += [
        _Descriptor(layer.media_type, layer.digest, len(layer.data), layer.annotations)
        for layer in layers
    ]
    config = _go_json(
        {
            "architecture": "",
            "created": _GO_ZERO_TIME,
            "history": [{"created": _GO_ZERO_TIME} for _ in descriptors],
            "os": "",
            "rootfs": {"type": "layers", "diff_ids": [d.digest for d in descriptors]},
            "config": {},
        }
    )
    manifest = _go_json(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": _OCI_CONFIG,
                "size": len(config),
                "digest": "sha256:" + hashlib.sha256(config).hexdigest(),
            },
            "layers": [d.json() for d in descriptors],
        }
    )
    return SignatureImage(manifest, config, tuple(layers))


def _parse_descriptor(value: object) -> _Descriptor:
    if not isinstance(value, Mapping):
        raise ValueError("a layer descriptor is not an object")
    media_type, digest, size = value.get("mediaType"), value.get("digest"), value.get("size")
    annotations = value.get("annotations") or {}
    if not isinstance(media_type, str) or not isinstance(digest, str):
        raise ValueError("a layer descriptor has no media type or digest")
    if not re.fullmatch(r"[a-z0-9]+:[0-9a-f]{32,}", digest):
        raise ValueError("a layer descriptor's digest is malformed")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ValueError("a layer descriptor's size is malformed")
    if not isinstance(annotations, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
    ):
        raise ValueError("a layer descriptor's annotations are not strings")
    return _Descriptor(media_type, digest, size, dict(annotations))


# --- fetched manifests and their verification --------------------------------------


@dataclass(frozen=True)
class FetchedLayer:
    """A layer of a fetched ``.sig``/``.att`` manifest, with its blob (checked against
    its digest), or ``data`` None when it was too large or not fetched."""

    digest: str
    media_type: str
    annotations: Mapping[str, str] = field(hash=False)
    data: bytes | None = field(repr=False)


@dataclass(frozen=True)
class FetchedManifest:
    """A ``.sig``/``.att`` manifest as the registry holds it."""

    reference: str
    """``<registry>/<repository>:sha256-<hex>.sig`` (or ``.att``)."""
    digest: str
    """The manifest's own digest."""
    layers: tuple[FetchedLayer, ...]
    descriptors: tuple[Mapping[str, Any], ...] = field(hash=False)
    """The manifest's layer descriptors as JSON, to append to (:func:`build_image`)."""


@dataclass(frozen=True)
class LayerCheck:
    """One layer's verification against the configured keys."""

    index: int
    digest: str
    media_type: str
    kind: Literal["signature", "attestation", "other"]
    verified_by: tuple[str, ...]
    """Names of the keys whose signature is valid AND whose claims name the image
    (the payload's digest, or an in-toto subject); empty when none."""
    predicate_type: str = ""
    """For an attestation: the statement's predicateType (from the verified payload)."""
    statement: Mapping[str, Any] | None = field(default=None, hash=False)
    """For an attestation that verified: the in-toto statement."""
    problem: str = ""
    """Why no key verifies it ("" when one does): fit for a condition message."""


def verify_layers(
    fetched: FetchedManifest,
    image_digest: str,
    keys: Mapping[str, VerificationKey],
    *,
    predicate_type: str | None = None,
) -> tuple[LayerCheck, ...]:
    """Check each layer of a fetched ``.sig``/``.att`` manifest against ``keys`` (name -> key),
    as ``cosign verify --key`` (signature layers) and ``cosign verify-attestation --key``
    (attestation layers; with ``predicate_type``, other predicate types do not verify) do,
    without the transparency log. Pure; the caller fetched the blobs."""
    checks = []
    for index, layer in enumerate(fetched.layers):
        if layer.media_type == SIMPLE_SIGNING_MEDIA_TYPE:
            checks.append(_check_signature(index, layer, image_digest, keys))
        elif layer.media_type == DSSE_MEDIA_TYPE:
            checks.append(_check_attestation(index, layer, image_digest, keys, predicate_type))
        else:
            checks.append(
                LayerCheck(index, layer.digest, layer.media_type, "other", (), problem="not cosign")
            )
    return tuple(checks)


def verified_keys(checks: Sequence[LayerCheck]) -> frozenset[str]:
    """The names of the keys at least one layer verifies against."""
    return frozenset(name for check in checks for name in check.verified_by)


def _check_signature(
    index: int, layer: FetchedLayer, image_digest: str, keys: Mapping[str, VerificationKey]
) -> LayerCheck:
    def failed(problem: str) -> LayerCheck:
        return LayerCheck(index, layer.digest, layer.media_type, "signature", (), problem=problem)

    if layer.data is None:
        return failed("the signature payload was not fetched")
    try:
        signature = base64.b64decode(layer.annotations.get(SIGNATURE_ANNOTATION, ""), validate=True)
    except ValueError:
        return failed("the signature annotation is not base64")
    if not signature:
        return failed("the layer has no signature")
    names = tuple(name for name, key in keys.items() if key.verify(layer.data, signature))
    if not names:
        return failed("no configured key verifies the signature")
    try:
        claims = parse_simple_signing(layer.data)
    except ValueError as exc:
        return failed(str(exc))
    if claims.image_digest != image_digest:
        return failed("the signature is of another image digest")
    return LayerCheck(index, layer.digest, layer.media_type, "signature", names)


def _check_attestation(
    index: int,
    layer: FetchedLayer,
    image_digest: str,
    keys: Mapping[str, VerificationKey],
    predicate_type: str | None,
) -> LayerCheck:
    def failed(problem: str, kind: str = "") -> LayerCheck:
        return LayerCheck(
            index, layer.digest, layer.media_type, "attestation", (), kind, problem=problem
        )

    if layer.data is None:
        return failed("the attestation was not fetched")
    try:
        envelope = parse_envelope(layer.data)
    except ValueError as exc:
        return failed(str(exc))
    if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE:
        return failed("the envelope does not hold an in-toto statement")
    names = tuple(name for name, key in keys.items() if verify_dsse(envelope, key))
    if not names:
        return failed("no configured key verifies the attestation")
    try:
        statement = json.loads(envelope.payload)
        subjects = statement.get("subject") or []
        kind = statement.get("predicateType")
        digests = {"sha256:" + str((s.get("digest") or {}).get("sha256")) for s in subjects}
    except (ValueError, TypeError, AttributeError, RecursionError):
        return failed("the attestation's statement is malformed")
    kind = kind if isinstance(kind, str) else ""
    if image_digest not in digests:
        return failed("no subject of the statement is the image", kind)
    if predicate_type is not None and kind != predicate_type:
        return failed(f"the predicate type is {kind!r}", kind)
    return LayerCheck(index, layer.digest, layer.media_type, "attestation", names, kind, statement)


# --- registry I/O --------------------------------------------------------------------


@dataclass(frozen=True)
class Attached:
    """Where a signature or attestation now lives."""

    reference: str
    """``<registry>/<repository>:sha256-<hex>.sig`` (or ``.att``)."""
    manifest_digest: str
    """The digest of that manifest after the push (or as found, when nothing was added)."""
    layer_digest: str
    """The layer that holds this signature (an equivalent existing one when not appended)."""
    key_id: str
    """The signing key's fingerprint (:attr:`VerificationKey.fingerprint`)."""
    appended: bool
    """False when an equal payload signed by the same key was there already (a retry)."""


async def fetch_signatures(
    client: RegistryClient, repo: Repository, image_digest: str, *, push: bool = False
) -> FetchedManifest | None:
    """The ``sha256-<hex>.sig`` manifest of ``image_digest`` with its layers' blobs,
    or None when the image has no signatures. RegistryError on other failures.
    ``push`` asks for a push-scoped token (when about to append)."""
    return await _fetch(client, repo, signature_tag(image_digest), push=push)


async def fetch_attestations(
    client: RegistryClient, repo: Repository, image_digest: str, *, push: bool = False
) -> FetchedManifest | None:
    """The ``sha256-<hex>.att`` manifest of ``image_digest`` with its layers' blobs, or None."""
    return await _fetch(client, repo, attestation_tag(image_digest), push=push)


async def _fetch(
    client: RegistryClient, repo: Repository, tag: str, *, push: bool
) -> FetchedManifest | None:
    where = f"{repo.registry}/{repo.repository}:{tag}"
    raw = await client.get_manifest(repo, tag, push=push)
    if raw is None:
        return None
    try:
        doc = json.loads(raw.body)
        descriptors = doc["layers"] if isinstance(doc, dict) else None
        if not isinstance(descriptors, list):
            raise ValueError("no layer list")
        parsed = [_parse_descriptor(d) for d in descriptors]
    except (ValueError, TypeError, KeyError, RecursionError):
        raise RegistryError("InvalidManifest", f"{where}: not a signature manifest") from None
    if len(parsed) > MAX_LAYERS:
        raise RegistryError(
            "TooLarge", f"{where}: {len(parsed)} layers, over the limit of {MAX_LAYERS}"
        )
    layers = []
    budget = MAX_FETCH_BYTES
    for descriptor in parsed:
        data: bytes | None = None
        limit = min(MAX_LAYER_BYTES, budget)
        if descriptor.size <= limit and descriptor.media_type in (
            SIMPLE_SIGNING_MEDIA_TYPE,
            DSSE_MEDIA_TYPE,
        ):
            data = await client.get_blob(repo, descriptor.digest, limit=limit, push=push)
            budget -= len(data)
        layers.append(
            FetchedLayer(descriptor.digest, descriptor.media_type, descriptor.annotations, data)
        )
    return FetchedManifest(
        reference=where,
        digest=raw.digest,
        layers=tuple(layers),
        descriptors=tuple(d.json() for d in parsed),
    )


async def attach_signature(
    client: RegistryClient,
    repo: Repository,
    image_digest: str,
    key: SigningKey,
    *,
    optional: Mapping[str, Any] | None = None,
) -> Attached:
    """Sign ``repo``'s ``image_digest`` as ``cosign sign --key`` does and append the
    signature to its ``.sig`` manifest (made when missing), with push-scoped auth.

    Idempotent: when the manifest already holds this payload signed by ``key`` (an
    earlier attempt that pushed before failing), nothing is added. RegistryError
    when the registry refuses; the caller retries.
    """
    reference = docker_reference(repo.registry, repo.repository)
    payload = simple_signing_payload(reference, image_digest, optional)
    existing = await fetch_signatures(client, repo, image_digest, push=True)
    public = key.public
    if existing is not None:
        for check in verify_layers(existing, image_digest, {"self": public}):
            found = existing.layers[check.index]
            if check.verified_by and found.data == payload:
                return Attached(
                    existing.reference, existing.digest, found.digest, public.fingerprint, False
                )
    # Signing is a fast operation (ECDSA, under a millisecond): no thread needed.
    layer = signature_layer(payload, key.sign(payload))
    return await _append(
        client, repo, signature_tag(image_digest), layer, existing, public.fingerprint
    )


async def attach_attestation(
    client: RegistryClient,
    repo: Repository,
    image_digest: str,
    statement: bytes,
    predicate_type: str,
    key: SigningKey | None,
) -> Attached:
    """Sign an in-toto ``statement`` (its JSON bytes, whose subject names ``image_digest``)
    in a DSSE envelope as ``cosign attest --key`` does, and append it to the image's
    ``.att`` manifest. Idempotent like :func:`attach_signature` (same statement bytes,
    same key: nothing added). ``key`` None: the envelope has no signature (key_id "")."""
    existing = await fetch_attestations(client, repo, image_digest, push=True)
    key_id = _key_id(key)
    found = _attested(existing, image_digest, statement, key)
    if existing is not None and found is not None:
        return Attached(existing.reference, existing.digest, found.digest, key_id, False)
    layer = _attestation(statement, predicate_type, key)
    return await _append(client, repo, attestation_tag(image_digest), layer, existing, key_id)


def _key_id(key: SigningKey | None) -> str:
    """The fingerprint an attachment names: "" for an unsigned envelope."""
    return key.public.fingerprint if key is not None else ""


def _attestation(statement: bytes, predicate_type: str, key: SigningKey | None) -> Layer:
    """The attestation layer: ``statement``'s DSSE envelope, signed by ``key`` (unsigned
    when None), annotated with ``predicate_type``."""
    envelope = dsse_sign(statement, key) if key is not None else dsse_unsigned(statement)
    return attestation_layer(envelope, predicate_type)


def _attested(
    existing: FetchedManifest | None, image_digest: str, statement: bytes, key: SigningKey | None
) -> FetchedLayer | None:
    """The layer of ``existing`` that already holds ``statement`` from ``key`` (an earlier
    attempt), or None. Unsigned: the same envelope bytes; signed: a layer ``key`` verifies
    whose payload is ``statement``."""
    if existing is None:
        return None
    if key is None:
        envelope = dsse_unsigned(statement)
        return next((found for found in existing.layers if found.data == envelope), None)
    for check in verify_layers(existing, image_digest, {"self": key.public}):
        found = existing.layers[check.index]
        if (
            check.verified_by
            and found.data is not None
            and parse_envelope(found.data).payload == statement
        ):
            return found
    return None


async def _append(
    client: RegistryClient,
    repo: Repository,
    tag: str,
    layer: Layer,
    existing: FetchedManifest | None,
    key_id: str,
) -> Attached:
    image = build_image([layer], keep=existing.descriptors if existing is not None else ())
    digest = await _push(client, repo, tag, layer, image.config, image.manifest)
    return Attached(f"{repo.registry}/{repo.repository}:{tag}", digest, layer.digest, key_id, True)


async def _push(
    client: RegistryClient,
    repo: Repository,
    reference: str,
    layer: Layer,
    config: bytes,
    manifest: bytes,
) -> str:
    """Push ``layer`` and ``config`` (together), then ``manifest`` as ``reference``: its digest."""
    await asyncio.gather(client.push_blob(repo, layer.data), client.push_blob(repo, config))
    return await client.put_manifest(repo, reference, manifest, OCI_MANIFEST)


# --- the OCI referrers API (registries that have it) -----------------------------------

EMPTY_MEDIA_TYPE: Final = "application/vnd.oci.empty.v1+json"
"""The config of an artifact manifest that has none (OCI image spec 1.1)."""
EMPTY_BLOB: Final = b"{}"


def referrer_manifest(layer: Layer, subject: Mapping[str, Any], artifact_type: str) -> bytes:
    """An OCI 1.1 artifact manifest holding ``layer`` whose ``subject`` is the image
    (``{"mediaType", "digest", "size"}``): what ``GET /v2/<name>/referrers/<digest>``
    lists. Its ``artifactType`` is the layer's (``application/vnd.dsse.envelope.v1+json``)
    unless given; the layer's annotations name the predicate type, as in ``.att``."""
    layer_descriptor = _Descriptor(
        layer.media_type, layer.digest, len(layer.data), layer.annotations
    ).json()
    return _go_json(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": {
                "mediaType": EMPTY_MEDIA_TYPE,
                "digest": "sha256:" + hashlib.sha256(EMPTY_BLOB).hexdigest(),
                "size": len(EMPTY_BLOB),
            },
            "layers": [layer_descriptor],
            "subject": {
                "mediaType": str(subject["mediaType"]),
                "digest": str(subject["digest"]),
                "size": int(subject["size"]),
            },
        }
    )


async def attach_attestation_referrer(
    client: RegistryClient,
    repo: Repository,
    image_digest: str,
    statement: bytes,
    predicate_type: str,
    key: SigningKey | None,
) -> Attached:
    """Push the (signed, or unsigned when ``key`` is None) DSSE envelope of ``statement``
    as an OCI referrer of ``repo``'s ``image_digest``, stored by its own digest."""
    where = f"{repo.registry}/{repo.repository}"
    image = await client.get_manifest(repo, image_digest, push=True)
    if image is None:
        raise RegistryError("NotFound", f"{where}@{image_digest} is not there")
    layer = _attestation(statement, predicate_type, key)
    subject = {"mediaType": image.media_type, "digest": image.digest, "size": len(image.body)}
    manifest = referrer_manifest(layer, subject, DSSE_MEDIA_TYPE)
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    await _push(client, repo, digest, layer, EMPTY_BLOB, manifest)
    return Attached(f"{where}@{digest}", digest, layer.digest, _key_id(key), True)
