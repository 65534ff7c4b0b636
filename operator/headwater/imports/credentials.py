"""Credentials for imports: a namespace's pull secrets, a registry's CA, and the logins tried.

A tag is resolved with each login of the namespace's keyring that matches its
registry, in turn (as the kubelet does), then anonymously. The keyring is the
pull secrets of the namespace's ``default`` service account plus the admin's
``importPullSecrets``, read at most every ``KEYRING_TTL`` seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.resources.core_v1 import Secret, ServiceAccount

from headwater.imports.history import Failed, Imported, Outcome, Unchanged
from headwater.imports.model import SpecTag
from headwater.imports.throttle import HostBackoff, RepositoryLocks
from headwater.registry.client import Platform, RegistryClient, RegistryError, Resolved
from headwater.registry.credentials import (
    PULL_SECRET_TYPES,
    Credentials,
    CredentialsError,
    credentials_for,
    parse_docker_config_secret,
)
from headwater.registry.reference import Reference

logger = logging.getLogger(__name__)

KEYRING_TTL = 60.0
MAX_PULL_SECRETS = 16
"""Pull secrets read per namespace (each up to 1 MiB, parsed on the event loop)."""
MAX_LOGINS = 3
"""Matching logins tried per import before the anonymous try."""

Keyring = list[Mapping[str, Credentials]]
"""A namespace's docker-config secrets, each as registry -> credentials."""


def ca_file(certs_dir: str | None, domain: str) -> str | None:
    """``<registryCertsDir>/<host[:port]>/ca.crt`` when the admin put one there."""
    if not certs_dir:
        return None
    path = Path(certs_dir) / domain / "ca.crt"
    return str(path) if path.is_file() else None


async def keyring(
    kube: AsyncClient,
    namespace: str,
    pull_secrets: Sequence[str],
    cache: dict[str, tuple[float, Keyring]],
) -> Keyring:
    """Pull secrets of the namespace's default service account and ``pull_secrets``,
    kept in ``cache`` for ``KEYRING_TTL`` seconds."""
    cached = cache.get(namespace)
    if cached is not None and time.monotonic() - cached[0] < KEYRING_TTL:
        return cached[1]
    found: Keyring = []
    try:
        account = await kube.get(ServiceAccount, "default", namespace=namespace)
        names = [s.name for s in account.imagePullSecrets or [] if s.name]
    except ApiError as exc:
        logger.warning("no default service account in %s: %s", namespace, exc.status.reason)
        names = []
    names += [n for n in pull_secrets if n not in names]
    if len(names) > MAX_PULL_SECRETS:
        logger.warning(
            "namespace %s: %d pull secrets, only the first %d are read",
            namespace, len(names), MAX_PULL_SECRETS,
        )  # fmt: skip
        names = names[:MAX_PULL_SECRETS]
    for name in names:
        try:
            secret = await kube.get(Secret, name, namespace=namespace)
        except ApiError as exc:
            logger.warning("pull secret %s/%s: %s", namespace, name, exc.status.reason)
            continue
        if secret.type not in PULL_SECRET_TYPES:
            continue
        try:
            found.append(parse_docker_config_secret(secret.type, dict(secret.data or {})))
        except CredentialsError as exc:
            logger.warning("pull secret %s/%s ignored: %s", namespace, name, exc)
    cache[namespace] = (time.monotonic(), found)
    return found


async def resolve(
    registry: RegistryClient,
    image: Reference,
    tag: SpecTag,
    known: str | None,
    logins: Keyring,
    *,
    platform: Platform,
    ca_file: str | None,
    locks: RepositoryLocks,
    backoff: HostBackoff,
    back_off: bool = True,
    namespace: str = "",
    pushed: str | None = None,
) -> Outcome:
    """Resolve with each matching credential in turn (as the kubelet does), then anonymously.

    Each try holds the repository's lock for its login; a failure of the host
    (not of the login) backs the host off when ``back_off``.
    """
    candidates: list[Credentials | None] = [*credentials_for(image, logins)[:MAX_LOGINS], None]
    error: RegistryError | None = None
    for credentials in candidates:
        login = credentials.username if credentials is not None else ""
        try:
            async with locks.hold((image.api_host, image.path, login, namespace)):
                resolved = await registry.resolve(
                    image.api_host,
                    image.path,
                    image.digest or image.tag or "latest",
                    credentials=credentials,
                    insecure=tag.insecure,
                    ca_file=ca_file,
                    platform=platform,
                    preserve_original=tag.import_mode == "PreserveOriginal",
                    known_digest=known,
                    pushed_digest=pushed,
                )
        except RegistryError as exc:
            error = exc
            if exc.reason == "NotAllowed":
                break  # the admin's policy, not the registry: no other login helps
            if exc.reason in ("Unauthorized", "Forbidden"):
                continue
            if back_off:
                backoff.failed(image.api_host, exc.reason, exc.retry_after)
            break
        except ValueError as exc:
            return Failed("InvalidImageReference", str(exc))
        backoff.succeeded(image.api_host)
        if resolved.unchanged:
            return Unchanged()
        return Imported(
            image=resolved.digest,
            docker_image_reference=f"{image.name}@{resolved.digest}",
            platforms=_platforms(resolved) if tag.import_mode == "PreserveOriginal" else (),
            message=f"imported {tag.from_name}",
            reference_digest=resolved.reference_digest or resolved.digest,
        )
    assert error is not None
    return Failed(error.reason, error.message)


def _platforms(resolved: Resolved) -> tuple[Mapping[str, str], ...]:
    """An index's entries as status ``platforms`` (os, architecture, variant, digest)."""
    entries = []
    for entry in resolved.platforms:
        platform = entry.platform
        fields = {
            "os": platform.os if platform else "",
            "architecture": platform.architecture if platform else "",
            "variant": (platform.variant or "") if platform else "",
            "digest": entry.digest,
        }
        entries.append({k: v for k, v in fields.items() if v})
    return tuple(entries)
