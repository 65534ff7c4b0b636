"""What a Complete build attaches to its image before its output tag moves: a cosign
signature, and its SLSA provenance (:mod:`headwater.builds.attestations`).

The seam is :meth:`Attester.attach`, called once by ``BuildRuns._finish`` after
the pushed digest was verified (``Outputs.verify``) and before the output tag is
recorded (``Outputs.record``), so a rollout that checks signatures sees the
signature by the time the tag moves. It returns the Build status fields to
write (``signature``; ``provenance`` joins it), or raises :class:`AttachError`,
which the Build work queue retries with backoff: a build is never reported
Complete with a signature it does not have, and never dropped unsigned while a
key exists.

The key is the cosign key pair in the Secret ``config.signing_key_secret`` of
the operator's namespace (``headwater keys create``). Without that Secret,
builds complete unsigned and their status says why. The decrypted key is kept
in memory per Secret version (scrypt costs 0.3 s and 64 MiB, off the event loop).
The signature is pushed with the build's own push secret, to the repository the
build pushed to, as ``<repository>:sha256-<hex>.sig``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.resources.core_v1 import Secret

from headwater.builds.outputs import Outputs
from headwater.config import Config
from headwater.kube import Failure, classify, is_gone
from headwater.registry import cosign
from headwater.registry.client import RegistryClient, RegistryError, Repository
from headwater.registry.reference import ReferenceError, parse_reference

log = logging.getLogger(__name__)

SIGNATURE_STATUS = "signature"
"""The Build status field that says where the signature lives (or why there is none)."""


class AttachError(Exception):
    """Signing (or attaching) failed while a key exists: retried, never skipped.

    ``reason`` is a CamelCase word; ``message`` fits a status condition and holds
    no secret.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Target:
    """Where a build's image lives and how to write beside it: what each attachment needs."""

    repo: Repository
    """The output's repository, with the build's push secret's login for that registry."""
    digest: str
    """The verified digest the build pushed."""


@dataclass(frozen=True)
class _CachedKey:
    version: tuple[str, str]
    key: cosign.SigningKey


class Attester:
    """Signs built images with the cluster's key; one per operator (it caches the key)."""

    def __init__(
        self, kube: AsyncClient, registry: RegistryClient, config: Config, outputs: Outputs
    ) -> None:
        self.kube = kube
        self.registry = registry
        self.config = config
        self.outputs = outputs
        self._key: _CachedKey | None = None
        self._lock = asyncio.Lock()

    @property
    def key_secret(self) -> tuple[str, str]:
        """(namespace, name) of the signing key Secret: the operator's namespace."""
        return self.config.leader_election.lease_namespace, self.config.signing_key_secret

    async def signing_key(self) -> tuple[cosign.SigningKey | None, str]:
        """The cluster's signing key, or None and why builds go unsigned.

        AttachError when the Secret exists but cannot be used (a broken key is
        fixed by replacing it; the builds wait for that rather than go unsigned).
        """
        namespace, name = self.key_secret
        try:
            secret = await self.kube.get(Secret, name, namespace=namespace)
        except ApiError as exc:
            if is_gone(exc):
                return None, (
                    f"no signing key: Secret {namespace}/{name} does not exist"
                    " (headwater keys create makes one)"
                )
            if classify(exc) is Failure.FORBIDDEN:
                return None, (
                    f"no signing key: the operator may not read Secret {namespace}/{name}"
                    " (its RBAC grants get on that name only)"
                )
            raise
        metadata = secret.metadata
        version = (
            str(metadata.uid if metadata else ""),
            str(metadata.resourceVersion if metadata else ""),
        )
        async with self._lock:
            cached = self._key
            if cached is not None and cached.version == version:
                return cached.key, ""
            try:
                data = {
                    k: base64.b64decode(v, validate=True) for k, v in (secret.data or {}).items()
                }
            except (binascii.Error, ValueError):
                raise AttachError(
                    "InvalidSigningKey", f"Secret {namespace}/{name}: a value is not base64"
                ) from None
            try:
                key = await asyncio.to_thread(cosign.signing_key_from_secret, data)
            except cosign.KeyFileError as exc:
                raise AttachError(
                    "InvalidSigningKey", f"Secret {namespace}/{name}: {exc}"
                ) from None
            self._key = _CachedKey(version, key)
            log.info(
                "signing key %s/%s loaded (public key %s)", namespace, name, key.public.fingerprint
            )
            return key, ""

    async def target(self, build: Mapping[str, Any], digest: str) -> Target:
        """Where the build pushed ``digest``, with its push secret's login."""
        output = str((build.get("status") or {}).get("outputDockerImageReference") or "")
        try:
            parse_reference(output)
        except ReferenceError as exc:
            raise AttachError("InvalidOutputReference", f"output {output!r}: {exc}") from None
        return Target(await self.outputs.output_repository(build, output), digest)

    async def attach(self, build: Mapping[str, Any], digest: str | None) -> dict[str, Any]:
        """Sign the verified ``digest`` a build pushed; the Build status fields to write.

        Called once per Complete build, before its output tag moves. Idempotent (a
        retry after a partial failure adds no second signature). AttachError when
        a key exists and the registry refused: the caller lets the work queue retry.
        """
        if not digest or not (build.get("status") or {}).get("outputDockerImageReference"):
            return {}
        key, why = await self.signing_key()
        if key is None:
            return {SIGNATURE_STATUS: {"signed": False, "message": why}}
        target = await self.target(build, digest)
        fields = {SIGNATURE_STATUS: await self._sign(target, key)}
        # The provenance slice attaches its signed attestation here, with the same
        # target and key, and adds its own status field.
        return fields

    async def _sign(self, target: Target, key: cosign.SigningKey) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            attached = await cosign.attach_signature(self.registry, target.repo, target.digest, key)
        except RegistryError as exc:
            raise AttachError("SigningFailed", f"pushing the signature failed: {exc}") from None
        except ValueError as exc:
            raise AttachError("SigningFailed", f"cannot sign: {exc}") from None
        log.info(
            "signed %s/%s@%s in %.0f ms (%s)",
            target.repo.registry, target.repo.repository, target.digest,
            (time.perf_counter() - started) * 1000, attached.reference,
        )  # fmt: skip
        return {
            "signed": True,
            "reference": attached.reference,
            "digest": attached.manifest_digest,
            "keyId": attached.key_id,
        }
