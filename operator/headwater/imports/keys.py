"""The cluster's named verification keys: where each public key comes from, read when used.

* ``headwater``: the public half of the cluster signing key, ``cosign.pub`` of
  the Secret ``signingKeySecret`` (default ``headwater-signing-key``) in the
  operator's namespace (the layout
  ``cosign generate-key-pair k8s://<ns>/<name>`` writes).
* Each ``verificationKeys`` entry of the operator's config: the PEM itself, or
  a data key of a Secret or ConfigMap in the operator's namespace.

Keys are never read from any other namespace. A tenant names keys; it cannot
supply key material: otherwise a tenant could make another team's rollout
depend on a key it controls (a trigger following a tag across namespaces),
or point the operator at another namespace's objects. A team that signs with
its own key asks an admin to add it (one line of config, or a Secret).

What was read is kept for :data:`KEY_TTL_SECONDS`, so a rotated or newly
created key takes effect within that time, and verifying costs no API read
in the steady state. A missing key or bad key material is an answer
(:class:`KeyProblem`), never an exception.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from dataclasses import dataclass

from lightkube import AsyncClient
from lightkube.resources.core_v1 import ConfigMap, Secret

from headwater.config import Config, VerificationKey
from headwater.imports.verification import (
    BUILTIN_KEY,
    REASON_INVALID_KEY,
    REASON_KEY_NOT_FOUND,
)
from headwater.kube import API_ERRORS, Failure, classify
from headwater.registry.cosign import KeyFileError
from headwater.registry.cosign import VerificationKey as CosignKey
from headwater.registry.cosign import load_public_key as load_cosign_key

PUBLIC_KEY_DATA = "cosign.pub"
KEY_TTL_SECONDS = 60.0


@dataclass(frozen=True)
class PublicKey:
    """A usable verification key."""

    name: str
    key: CosignKey
    fingerprint: str
    """sha256 of the DER SubjectPublicKeyInfo: what verdicts are cached under, so a
    rotated key is never answered from the old key's verdicts."""


@dataclass(frozen=True)
class KeyProblem:
    """Why a named key cannot be used (a Verified condition's reason and message)."""

    reason: str
    message: str


def load_public_key(name: str, pem: bytes | str) -> PublicKey | KeyProblem:
    """A cosign public key (ECDSA P-256, PEM), or what is wrong with it."""
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = load_cosign_key(data)
    except KeyFileError as exc:
        return KeyProblem(REASON_INVALID_KEY, f"key {name}: {exc}")
    return PublicKey(name, key, key.fingerprint)


def key_sources(config: Config) -> dict[str, VerificationKey]:
    """Every named key and where it comes from (the built-in one first)."""
    sources = {
        BUILTIN_KEY: VerificationKey(
            BUILTIN_KEY, secret=config.signing_key_secret, key=PUBLIC_KEY_DATA
        )
    }
    for entry in config.verification_keys:
        sources.setdefault(entry.name, entry)
    return sources


class KeyStore:
    """Named public keys, read from the operator's namespace when used and kept a while."""

    def __init__(
        self,
        kube: AsyncClient,
        config: Config,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kube = kube
        self.namespace = config.leader_election.lease_namespace
        self.sources = key_sources(config)
        self.monotonic = monotonic
        self._cache: dict[str, tuple[float, PublicKey | KeyProblem]] = {}
        self.reads = 0
        """API reads made (a figure for tests and benchmarks)."""

    def names(self) -> list[str]:
        return sorted(self.sources)

    async def get(self, name: str) -> PublicKey | KeyProblem:
        """The key named ``name``, or why it cannot be used. API errors other than
        "not found" and "forbidden" raise: the caller retries, nothing is decided."""
        now = self.monotonic()
        cached = self._cache.get(name)
        if cached is not None and cached[0] > now:
            return cached[1]
        found = await self._load(name)
        self._cache[name] = (now + KEY_TTL_SECONDS, found)
        return found

    def forget(self) -> None:
        """Read every key again at its next use (``headwater import-image``)."""
        self._cache.clear()

    async def _load(self, name: str) -> PublicKey | KeyProblem:
        source = self.sources.get(name)
        if source is None:
            known = ", ".join(sorted(self.sources))
            return KeyProblem(
                REASON_KEY_NOT_FOUND,
                f"key {name}: no such verification key (known: {known}); an admin adds"
                " keys under verificationKeys in the operator's config",
            )
        if source.public_key is not None:
            return load_public_key(name, source.public_key)
        kind = "Secret" if source.secret else "ConfigMap"
        object_name = str(source.secret or source.config_map)
        where = f"{kind} {self.namespace}/{object_name}"
        self.reads += 1
        try:
            if source.secret:
                secret = await self.kube.get(Secret, object_name, namespace=self.namespace)
                raw = (secret.data or {}).get(source.key)
                value = base64.b64decode(raw) if raw is not None else None
            else:
                config_map = await self.kube.get(ConfigMap, object_name, namespace=self.namespace)
                text = (config_map.data or {}).get(source.key)
                value = text.encode() if text is not None else None
        except API_ERRORS as exc:
            failure = classify(exc)
            if failure is Failure.GONE:
                hint = " (headwater keys create makes it)" if name == BUILTIN_KEY else ""
                return KeyProblem(REASON_KEY_NOT_FOUND, f"key {name}: {where} not found{hint}")
            if failure is Failure.FORBIDDEN:
                return KeyProblem(
                    REASON_KEY_NOT_FOUND, f"key {name}: the operator may not read {where}"
                )
            raise
        if value is None:
            return KeyProblem(REASON_KEY_NOT_FOUND, f"key {name}: {where} has no {source.key}")
        return load_public_key(name, value)
