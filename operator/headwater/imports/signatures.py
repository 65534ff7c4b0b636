"""Reading an image's cosign signatures for the :class:`~headwater.imports.verifier.Verifier`.

The formats are :mod:`headwater.registry.cosign`'s; this module only supplies
what the operator knows: the namespace's pull secrets (the same logins imports
use), per-registry CAs and which hosts are plain HTTP. A fetch is one manifest
GET of ``sha256-<hex>.sig`` plus one blob GET per signature layer (cosign
appends a layer per signing; usually one), behind the verifier's per-host
token and backoff.
"""

from __future__ import annotations

import dataclasses
import logging

from lightkube import AsyncClient

from headwater.config import Config
from headwater.imports import credentials
from headwater.imports.credentials import Keyring
from headwater.imports.keys import KeyStore, PublicKey
from headwater.imports.runner import ImportRunner
from headwater.imports.verifier import Fetch, FetchFailed, Signatures, Verifier
from headwater.registry.client import RegistryClient, RegistryError, Repository
from headwater.registry.cosign import (
    FetchedManifest,
    fetch_signatures,
    verified_keys,
    verify_layers,
)
from headwater.registry.credentials import Credentials, credentials_for
from headwater.registry.reference import ReferenceError, parse_reference

logger = logging.getLogger(__name__)


def cosign_fetch(
    kube: AsyncClient,
    registry: RegistryClient,
    config: Config,
    keyrings: dict[str, tuple[float, Keyring]],
) -> Fetch:
    """The verifier's fetch: each signature layer as a one-layer manifest (so the verifier
    counts signatures, and checks each on its own).

    Plain HTTP where the tag imports with ``importPolicy.insecure`` (``insecure``) or
    the registry is one of the configured insecure hosts; the registry policy still
    refuses plain HTTP to a registry the admin did not allow it for.
    """

    async def fetch(
        reference: str, digest: str, namespace: str, insecure: bool
    ) -> Signatures | FetchFailed:
        try:
            image = parse_reference(reference)
        except ReferenceError as exc:
            return FetchFailed(str(exc), reason="InvalidImageReference")
        logins = await credentials.keyring(kube, namespace, config.import_pull_secrets, keyrings)
        candidates: list[Credentials | None] = [
            *credentials_for(image, logins)[: credentials.MAX_LOGINS],
            None,
        ]
        error: RegistryError | None = None
        for login in candidates:
            try:
                repo = Repository(
                    image.api_host,
                    image.path,
                    credentials=login,
                    insecure=insecure or image.domain in config.insecure_hosts,
                    ca_file=credentials.ca_file(config.registry_certs_dir, image.domain),
                )
                found = await fetch_signatures(registry, repo, digest)
            except RegistryError as exc:
                error = exc
                if exc.reason == "NotAllowed":
                    break  # the admin's policy, not the registry: no other login helps
                if exc.reason in ("Unauthorized", "Forbidden"):
                    continue
                break
            if found is None:
                return Signatures(())
            return Signatures(
                tuple(dataclasses.replace(found, layers=(layer,)) for layer in found.layers)
            )
        assert error is not None
        return FetchFailed(error.message, reason=error.reason, retry_after=error.retry_after)

    return fetch


def cosign_check(signature: object, key: PublicKey, digest: str) -> bool:
    """Whether ``key`` made this signature layer over ``digest`` (as ``cosign verify --key``)."""
    if not isinstance(signature, FetchedManifest):
        return False
    checks = verify_layers(signature, digest, {key.name: key.key})
    return key.name in verified_keys(checks) and all(c.kind == "signature" for c in checks)


def make_verifier(
    kube: AsyncClient, registry: RegistryClient, config: Config, runner: ImportRunner
) -> Verifier:
    """The operator's verifier: the cluster's keys, cosign's formats, and the import
    runner's registry budget (its per-host buckets and backoff) and pull secrets."""
    verifier = Verifier(
        KeyStore(kube, config),
        cosign_fetch(kube, registry, config, runner.keyrings),
        cosign_check,
        buckets=runner.buckets,
        backoff=runner.backoff,
    )
    runner.verifier = verifier
    verifier.subscribe(runner.on_verdict)
    return verifier
