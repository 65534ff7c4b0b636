"""An async client of the OCI distribution API, for ImageStream imports.

What an import needs from a registry is small: the digest a tag points to,
and, when it moved, the image's metadata (config: created, labels, entrypoint,
cmd, user, ports; the platforms of a multi-arch index). What makes it hard is
doing it for thousands of tags on a schedule without being rate-limited or
leaking a password, so this client:

- asks with ``HEAD`` first when the caller already knows a digest, so an
  unchanged tag costs exactly one request (Docker Hub does not count HEADs
  against its pull limit); without a known digest a HEAD would only add a
  round trip, so the manifest is fetched directly;
- sends all four manifest media types in ``Accept``, so the registry serves
  an index as an index instead of down-converting it;
- authenticates like Docker and containerd: anonymous first, then the
  challenge's Basic or Bearer scheme; the challenge is remembered per
  registry, and Bearer tokens are cached (``auth.TokenCache``), so later
  requests go out authenticated at once instead of collecting a 401 each;
- bounds everything: a timeout on every request, a size limit on every body
  read (streamed and cut off, so a hostile registry cannot make the operator
  buffer gigabytes), a limit on redirects and on tag pages;
- checks digests: a manifest fetched by digest, and any body whose
  ``Docker-Content-Digest`` header is given, must hash to it;
- never puts an ``Authorization`` header, a token or a password in an
  exception or a log line, and raises its errors ``from None`` so that a
  logged traceback does not print aiohttp's request info (which holds the
  request headers).

``insecure`` follows containerd and podman for registries marked insecure:
HTTPS without certificate verification first, then plain HTTP when the TLS
connection itself fails; the scheme that worked is remembered per registry.

It knows nothing of Kubernetes (an import-linter contract forbids kopf and
lightkube in this package).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import errno
import hashlib
import json
import logging
import math
import re
import socket
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final, Literal, Protocol

import aiohttp
import aiohttp.abc
from multidict import CIMultiDictProxy
from yarl import URL

from headwater.metrics import REGISTRY_REQUESTS, code_label, registry_label
from headwater.registry.auth import (
    Challenge,
    ChallengeError,
    TokenCache,
    TokenKey,
    login_fingerprint,
    parse_www_authenticate,
)
from headwater.registry.policy import AccessPolicy, NotAllowed
from headwater.registry.reference import is_tag
from headwater.timefmt import parse_time

__all__ = [
    "CONFIG_MEDIA_TYPES",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "INDEX_MEDIA_TYPES",
    "MANIFEST_MEDIA_TYPES",
    "OCI_INDEX",
    "OCI_MANIFEST",
    "BasicCredentials",
    "GuardedResolver",
    "ImageConfig",
    "ImageManifest",
    "Platform",
    "PlatformManifest",
    "RawManifest",
    "RegistryClient",
    "RegistryError",
    "RegistryStats",
    "Repository",
    "Resolved",
    "choose_platform",
    "parse_retry_after",
]

log = logging.getLogger(__name__)

OCI_INDEX: Final = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST_LIST: Final = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST: Final = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST: Final = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_MEDIA_TYPES: Final = (OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_MEDIA_TYPES: Final = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
IMAGE_MEDIA_TYPES: Final = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
CONFIG_MEDIA_TYPES: Final = frozenset(
    {"application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json"}
)
_SCHEMA1_MEDIA_TYPES: Final = frozenset(
    {
        "application/vnd.docker.distribution.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
    }
)
_ACCEPT: Final = ", ".join(MANIFEST_MEDIA_TYPES)
_USER_AGENT: Final = "headwater-registry-client"

# Error bodies are read only to quote the registry's error code; they are small.
_MAX_ERROR_BODY: Final = 64 * 1024
_MAX_REDIRECTS: Final = 5
# A CA bundle is re-read this often, so a rotated bundle (a re-mounted
# ConfigMap) is picked up without a restart.
_SSL_CONTEXT_TTL: Final = 300.0
_MESSAGE_MAX: Final = 300
# Docker's attestation manifests sit in an index beside the images but run nowhere.
_REFERENCE_TYPE_ANNOTATION: Final = "vnd.docker.reference.type"

# The grammar of distribution/reference (regexp.go): validated here because
# these strings become URL paths, and "../" or "?" in them would aim elsewhere.
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_REPOSITORY_RE: Final = re.compile(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*")
_DIGEST_RE: Final = re.compile(
    r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
)
_REGISTRY_RE: Final = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?"
)
_DIGEST_ALGORITHMS: Final = {
    "sha256": hashlib.sha256,
    "sha384": hashlib.sha384,
    "sha512": hashlib.sha512,
}

Reason = Literal[
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "Unreachable",
    "Timeout",
    "TooLarge",
    "InvalidManifest",
    "RateLimited",
    "ServerError",
    "TLSError",
    "InvalidChallenge",
    "NoMatchingPlatform",
    "UnexpectedResponse",
    "NotAllowed",
]

TRANSIENT_REASONS: Final[frozenset[Reason]] = frozenset(
    {"Unreachable", "Timeout", "RateLimited", "ServerError"}
)
"""The RegistryError reasons worth retrying (:attr:`RegistryError.transient`)."""


class BasicCredentials(Protocol):
    """A registry login; ``headwater.registry.credentials.Credentials`` is one.

    An object may also carry ``identity_token`` (an OAuth2 refresh token, as
    ``docker login`` stores for some registries); it is used when set.
    """

    @property
    def username(self) -> str: ...

    @property
    def password(self) -> str: ...


class RegistryError(Exception):
    """A registry call failed; ``reason`` is a CamelCase word for conditions and metrics.

    Reasons: Unauthorized, Forbidden, NotFound, Unreachable, Timeout, TooLarge,
    InvalidManifest, RateLimited, ServerError, TLSError, InvalidChallenge,
    NoMatchingPlatform, UnexpectedResponse (a status the protocol does not
    explain, such as 400 or 405), NotAllowed (the operator's import policy,
    ``allowedRegistriesForImport``, refused the host or address before any
    connection). ``message`` is one line fit for a status condition: it never
    holds credentials or tokens, nor text of the registry's beyond its error
    code, HTTP status and well-formed names (media types, platforms).
    """

    def __init__(
        self,
        reason: Reason,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.reason: Reason = reason
        self.message = message
        self.status = status
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return f"RegistryError({self.reason!r}, {self.message!r}, status={self.status!r})"

    @property
    def transient(self) -> bool:
        """Whether the same call may succeed later (as :func:`headwater.kube.classify`
        sorts API errors): no answer (a connection error, a timeout), 429 or 5xx.
        Everything else is a refusal that repeating will not change (401, 403, 400, a
        manifest the registry will not take, the import policy)."""
        return self.reason in TRANSIENT_REASONS


# --- platforms ----------------------------------------------------------------


@dataclass(frozen=True)
class Platform:
    """An image platform, ``os/architecture[/variant]`` as in an OCI index."""

    os: str
    architecture: str
    variant: str | None = None

    @classmethod
    def parse(cls, text: str) -> Platform:
        parts = text.strip().split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise ValueError(f"platform {text!r} is not os/architecture[/variant]")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    def __str__(self) -> str:
        base = f"{self.os}/{self.architecture}"
        return f"{base}/{self.variant}" if self.variant else base

    def normalized(self) -> Platform:
        """containerd's ``platforms.Normalize``: one spelling per platform."""
        os_name = self.os.lower()
        if os_name == "macos":
            os_name = "darwin"
        arch, variant = _normalize_arch(self.architecture.lower(), (self.variant or "").lower())
        return Platform(os_name, arch, variant or None)


def _normalize_arch(arch: str, variant: str) -> tuple[str, str]:
    # Ported from containerd/platforms database.go normalizeArch.
    if arch == "i386":
        return "386", ""
    if arch in ("x86_64", "x86-64", "amd64"):
        return "amd64", "" if variant == "v1" else variant
    if arch in ("aarch64", "arm64"):
        return "arm64", "" if variant in ("8", "v8", "v8.0") else variant
    if arch == "armhf":
        return "arm", "v7"
    if arch == "armel":
        return "arm", "v6"
    if arch == "arm":
        if variant in ("", "7"):
            return "arm", "v7"
        if variant in ("5", "6", "8"):
            return "arm", "v" + variant
    return arch, variant


# Older variants a machine of a given variant also runs, best first, as
# containerd's platforms.Only() accepts them (an arm/v7 host runs v6 and v5
# images; an amd64/v3 host runs v2 and baseline images).
_COMPATIBLE_VARIANTS: Final[Mapping[tuple[str, str], tuple[str, ...]]] = {
    ("arm", "v8"): ("v8", "v7", "v6", "v5"),
    ("arm", "v7"): ("v7", "v6", "v5"),
    ("arm", "v6"): ("v6", "v5"),
    ("amd64", "v4"): ("v4", "v3", "v2", ""),
    ("amd64", "v3"): ("v3", "v2", ""),
    ("amd64", "v2"): ("v2", ""),
}


def choose_platform(wanted: Platform, candidates: Sequence[Platform | None]) -> int | None:
    """The index of the candidate that best runs on ``wanted``, or None.

    Both sides are normalised first (so ``linux/aarch64`` and ``linux/arm64/v8``
    are one platform); an exact match wins, then the newest older variant the
    wanted one is compatible with. Among equals the first in the index wins, as
    in containerd.
    """
    want = wanted.normalized()
    order = _COMPATIBLE_VARIANTS.get((want.architecture, want.variant or ""), (want.variant or "",))
    best: tuple[int, int] | None = None
    for index, candidate in enumerate(candidates):
        if candidate is None:
            continue
        have = candidate.normalized()
        if have.os != want.os or have.architecture != want.architecture:
            continue
        variant = have.variant or ""
        if variant not in order:
            continue
        rank = order.index(variant)
        if best is None or rank < best[0]:
            best = (rank, index)
    return None if best is None else best[1]


DEFAULT_PLATFORM: Final = Platform("linux", "amd64")
"""What Legacy imports pick from an index, as OpenShift does."""


# --- results ------------------------------------------------------------------


@dataclass(frozen=True)
class ImageConfig:
    """What ``describe istag`` shows, from the image's config blob."""

    created: datetime | None
    labels: Mapping[str, str] = field(hash=False)
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    user: str
    exposed_ports: tuple[str, ...]
    env: tuple[str, ...]
    working_dir: str
    os: str
    architecture: str


@dataclass(frozen=True)
class ImageManifest:
    digest: str
    media_type: str
    size: int
    """The config's size plus the layers' sizes, as OpenShift's image size."""
    config_digest: str
    layers: int
    config: ImageConfig | None
    """None for artifacts whose config is not an image config."""


@dataclass(frozen=True)
class PlatformManifest:
    digest: str
    media_type: str
    platform: Platform | None
    size: int


@dataclass(frozen=True)
class Resolved:
    digest: str
    """What the import records: the index digest (PreserveOriginal, or a single
    manifest), or the chosen platform's manifest digest (Legacy). When
    ``unchanged``, ``known_digest`` echoed back."""
    media_type: str
    image: ImageManifest | None
    """The requested platform's image with its config; None when unchanged, or
    when a PreserveOriginal index has no such platform."""
    platforms: tuple[PlatformManifest, ...]
    """The entries of an index (attestations left out); empty for a single manifest."""
    unchanged: bool
    """True when HEAD's digest equalled ``known_digest`` and nothing else was fetched."""
    reference_digest: str = ""
    """The digest of what the reference itself names (the index, for a
    multi-arch tag), which HEAD returns. Pass it back as ``known_digest``: in
    Legacy mode ``digest`` is a platform's manifest, which HEAD never returns."""


@dataclass(frozen=True)
class RawManifest:
    """A manifest's bytes as the registry served them, checked against their digest."""

    digest: str
    media_type: str
    body: bytes


@dataclass
class RegistryStats:
    """HTTP requests that got an answer (retries and redirects included).

    For the benchmark and metrics; a connection that failed before any answer
    (such as the HTTPS attempt on an insecure plain-HTTP registry) is not counted.
    """

    manifest_requests: int = 0
    blob_requests: int = 0
    token_requests: int = 0
    tag_requests: int = 0


# --- helpers --------------------------------------------------------------------


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delay-seconds or HTTP-date), or None."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text[0].isascii() and (text[0].isdigit() or text[0] == "."):
        try:
            seconds = float(text)
        except ValueError:
            return None
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    reference = now or datetime.now(UTC)
    try:
        return max(0.0, (when - reference).total_seconds())
    except OverflowError:
        return None


def _one_line(text: str, limit: int = _MESSAGE_MAX) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _digest(algorithm: str, data: bytes) -> str | None:
    hasher = _DIGEST_ALGORITHMS.get(algorithm)
    return None if hasher is None else f"{algorithm}:{hasher(data).hexdigest()}"


def _matches_digest(expected: str, data: bytes) -> bool:
    algorithm, _, _ = expected.partition(":")
    actual = _digest(algorithm, data)
    return actual is not None and actual == expected.lower()


_ERROR_CODE_RE: Final = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
_NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+/-]{0,99}")


def _registry_error_code(body: bytes) -> str:
    """``errors[0].code`` from a distribution error body (``MANIFEST_UNKNOWN``), if any.

    Only the code, and only when it has the spec's shape: the ``message`` and
    ``detail`` are the registry's free text, which status conditions never show.
    """
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):  # nested too deep
        return ""
    if not isinstance(doc, dict):
        return ""
    errors = doc.get("errors")
    if not isinstance(errors, list) or not errors or not isinstance(errors[0], dict):
        return ""
    code = errors[0].get("code")
    return code if isinstance(code, str) and _ERROR_CODE_RE.fullmatch(code) else ""


def _name(value: str) -> str:
    """A name the registry sent (a media type, a platform), quoted only when well-formed."""
    return repr(value) if _NAME_RE.fullmatch(value) else "(a malformed name)"


def _strings(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(v for v in value if isinstance(v, str))


def _string(value: object) -> str:
    return value if isinstance(value, str) else ""


def _parse_created(value: object) -> datetime | None:
    when = parse_time(value)
    # Go's zero time means "not set" (some builders write it).
    return None if when is None or when.year <= 1 else when


def parse_image_config(data: bytes) -> ImageConfig:
    """An image config blob (OCI image-spec config.md); unknown or mistyped fields are skipped."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):  # nested too deep
        raise RegistryError("InvalidManifest", "image config is not JSON") from None
    if not isinstance(doc, dict):
        raise RegistryError("InvalidManifest", "image config is not a JSON object")
    config = doc.get("config")
    if not isinstance(config, dict):
        config = {}
    labels = config.get("Labels")
    ports = config.get("ExposedPorts")
    return ImageConfig(
        created=_parse_created(doc.get("created")),
        labels=(
            {k: v for k, v in labels.items() if isinstance(v, str)}
            if isinstance(labels, dict)
            else {}
        ),
        entrypoint=_strings(config.get("Entrypoint")),
        cmd=_strings(config.get("Cmd")),
        user=_string(config.get("User")),
        exposed_ports=tuple(sorted(ports)) if isinstance(ports, dict) else (),
        env=_strings(config.get("Env")),
        working_dir=_string(config.get("WorkingDir")),
        os=_string(doc.get("os")),
        architecture=_string(doc.get("architecture")),
    )


@dataclass(frozen=True)
class _Descriptor:
    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    annotations: Mapping[str, str] = field(default_factory=dict, hash=False)


def _descriptor(value: object, what: str) -> _Descriptor:
    if not isinstance(value, dict):
        raise RegistryError("InvalidManifest", f"{what} is not a descriptor object")
    digest = value.get("digest")
    size = value.get("size")
    media_type = value.get("mediaType")
    if not isinstance(digest, str) or not _DIGEST_RE.fullmatch(digest):
        raise RegistryError("InvalidManifest", f"{what} has no valid digest")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise RegistryError("InvalidManifest", f"{what} has no valid size")
    platform: Platform | None = None
    raw_platform = value.get("platform")
    if isinstance(raw_platform, dict):
        os_name = raw_platform.get("os")
        arch = raw_platform.get("architecture")
        variant = raw_platform.get("variant")
        if isinstance(os_name, str) and isinstance(arch, str) and os_name and arch:
            platform = Platform(
                os_name, arch, variant if isinstance(variant, str) and variant else None
            )
    annotations = value.get("annotations")
    return _Descriptor(
        media_type=media_type if isinstance(media_type, str) else "",
        digest=digest,
        size=size,
        platform=platform,
        annotations=(
            {k: v for k, v in annotations.items() if isinstance(v, str)}
            if isinstance(annotations, dict)
            else {}
        ),
    )


@dataclass(frozen=True)
class _Manifest:
    digest: str
    media_type: str
    doc: Mapping[str, Any] = field(hash=False)
    raw: bytes = field(default=b"", repr=False)


def _manifest_media_type(doc: Mapping[str, Any], content_type: str) -> str:
    declared = doc.get("mediaType")
    if isinstance(declared, str) and declared:
        return declared
    header = content_type.split(";", 1)[0].strip().lower()
    if header in INDEX_MEDIA_TYPES or header in IMAGE_MEDIA_TYPES:
        return header
    # OCI lets both documents omit mediaType; their shape tells them apart.
    if "manifests" in doc:
        return OCI_INDEX
    if "config" in doc and "layers" in doc:
        return OCI_MANIFEST
    return header


def _rel_is_next(params: str) -> bool:
    """Whether a Link's parameters say ``rel="next"`` (rel may list several types).

    Split rather than matched by a regex, which backtracked quadratically on
    a long run of spaces in a header the registry controls.
    """
    for param in params.split(";"):
        name, equals, value = param.partition("=")
        if equals and name.strip().lower() == "rel" and "next" in value.strip().strip('"').split():
            return True
    return False


def _parse_link_next(values: Sequence[str]) -> URL | None:
    """The ``rel="next"`` target of ``Link`` headers (RFC 8288), as distribution sends it."""
    for value in values:
        for match in re.finditer(r"<([^>]*)>([^,]*)", value):
            if _rel_is_next(match.group(2)):
                try:
                    return URL(match.group(1))
                except ValueError:
                    return None
    return None


class _RefusedAddress(OSError):
    """Raised by the resolver for an address the policy refuses (aiohttp wraps OSErrors)."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.EACCES, message)
        self.message = message


class GuardedResolver(aiohttp.abc.AbstractResolver):
    """aiohttp's resolver, with every address it returns checked by the import policy.

    The addresses checked are those the connector then connects to, so a name
    that resolves to a public address when checked and to 169.254.169.254 when
    used (DNS rebinding) cannot slip through: there is only one resolution. IP
    literals never reach a resolver; the client checks them before connecting.
    """

    def __init__(self, policy: AccessPolicy, inner: aiohttp.abc.AbstractResolver | None = None):
        self._policy = policy
        self._inner = inner
        self.refused: list[tuple[str, int, str]] = []
        """(host, port, address) of each refusal, for tests and debugging."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[aiohttp.abc.ResolveResult]:
        if self._inner is None:
            self._inner = aiohttp.DefaultResolver()
        results = await self._inner.resolve(host, port, family)
        for result in results:
            try:
                self._policy.check_address(host, port, result["host"])
            except NotAllowed as exc:
                self.refused.append((host, port, result["host"]))
                raise _RefusedAddress(exc.message) from None
        return results

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()


@dataclass(frozen=True)
class Repository:
    """A repository on a registry and how to reach it: where and as whom a call talks."""

    registry: str
    """The registry's API host (``host[:port]``)."""
    repository: str
    credentials: BasicCredentials | None = None
    insecure: bool = False
    """Plain HTTP (or TLS unchecked) allowed."""
    ca_file: str | None = None
    """A CA bundle that signs the registry's certificate."""


@dataclass(frozen=True)
class _Target(Repository):
    """A :class:`Repository` checked, with the scope one client call asks for."""

    push: bool = False
    """Ask for ``pull,push`` scope (signatures written to the repository)."""

    @property
    def scope(self) -> str:
        return f"repository:{self.repository}:{'pull,push' if self.push else 'pull'}"

    @property
    def login(self) -> str:
        if self.credentials is None:
            return ""
        identity = getattr(self.credentials, "identity_token", None) or ""
        return login_fingerprint(
            self.credentials.username, f"{self.credentials.password}\0{identity}"
        )


@dataclass(frozen=True)
class _Response:
    status: int
    headers: CIMultiDictProxy[str] = field(hash=False)
    body: bytes
    url: URL


class RegistryClient:
    """One per operator: it keeps the connection pool, the token cache and the challenges."""

    def __init__(
        self,
        session: aiohttp.ClientSession | None = None,
        *,
        max_manifest_bytes: int = 4 << 20,
        max_config_bytes: int = 8 << 20,
        max_token_bytes: int = 1 << 20,
        max_push_bytes: int = 16 << 20,
        request_timeout: float = 30.0,
        policy: AccessPolicy | None = None,
    ) -> None:
        """``policy`` (the operator passes one) limits where the client connects;
        without one (the CLI, on a user's machine) any registry is reached."""
        self.policy = policy
        self.resolver = GuardedResolver(policy) if policy is not None else None
        self._session = session
        self._owns_session = session is None
        self.max_manifest_bytes = max_manifest_bytes
        self.max_config_bytes = max_config_bytes
        self.max_token_bytes = max_token_bytes
        self.max_push_bytes = max_push_bytes
        self.request_timeout = request_timeout
        self.stats = RegistryStats()
        self.tokens = TokenCache()
        # Per registry: the challenge it answered with, so later requests carry
        # credentials at once instead of first collecting a 401.
        self._challenges: dict[str, Challenge] = {}
        # Per insecure registry: the scheme that answered last.
        self._schemes: dict[str, str] = {}
        self._ssl_contexts: dict[str, tuple[ssl.SSLContext, float]] = {}

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None and self._owns_session:
            await self._session.close()
            self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # Environment proxies are not trusted implicitly: a caller who wants
            # them passes its own session (trust_env=True).
            connector = (
                aiohttp.TCPConnector(resolver=self.resolver) if self.resolver is not None else None
            )
            self._session = aiohttp.ClientSession(
                headers={"User-Agent": _USER_AGENT}, connector=connector
            )
            self._owns_session = True
        return self._session

    # --- public API -----------------------------------------------------------

    async def resolve(
        self,
        registry: str,
        repository: str,
        reference: str,
        *,
        credentials: BasicCredentials | None = None,
        insecure: bool = False,
        ca_file: str | None = None,
        platform: Platform = DEFAULT_PLATFORM,
        preserve_original: bool = False,
        known_digest: str | None = None,
        pushed_digest: str | None = None,
    ) -> Resolved:
        """What ``repository:reference`` on ``registry`` points to now.

        ``known_digest`` (the previous ``reference_digest``) makes an unchanged
        tag cost one HEAD. ``pushed_digest`` (what a push notification named)
        makes a moved tag cost one HEAD too, when the registry confirms it and it
        is an image (or an index kept whole). Legacy (``preserve_original=False``)
        resolves an index to the ``platform`` image; PreserveOriginal keeps the index.
        """
        target = self._target(Repository(registry, repository, credentials, insecure, ca_file))
        is_digest = _check_reference(reference)
        where = f"{registry}/{repository}{'@' if is_digest else ':'}{reference}"
        self._check_registry(target)
        if pushed_digest is not None and not is_digest:
            head_digest, head_type = await self._head_manifest(target, reference, where)
            if head_digest is not None and head_digest == pushed_digest:
                if head_digest == known_digest:
                    return Resolved(head_digest, head_type, None, (), True, head_digest)
                if head_type in IMAGE_MEDIA_TYPES or (
                    preserve_original and head_type in INDEX_MEDIA_TYPES
                ):
                    return Resolved(head_digest, head_type, None, (), False, head_digest)
            elif head_digest is not None and head_digest == known_digest:
                # Not moved yet (distribution notifies before it moves the tag).
                return Resolved(head_digest, head_type, None, (), True, head_digest)
        elif known_digest is not None:
            head_digest, head_type = await self._head_manifest(target, reference, where)
            if head_digest is not None and head_digest == known_digest:
                return Resolved(
                    digest=known_digest,
                    media_type=head_type,
                    image=None,
                    platforms=(),
                    unchanged=True,
                    reference_digest=known_digest,
                )
        top = await self._get_manifest(
            target, reference, where, expect=reference if is_digest else None
        )
        if top.media_type in IMAGE_MEDIA_TYPES:
            single = await self._image(target, top, where)
            return Resolved(top.digest, top.media_type, single, (), False, top.digest)
        if top.media_type not in INDEX_MEDIA_TYPES:
            raise RegistryError(
                "InvalidManifest", f"{where}: unsupported manifest type {_name(top.media_type)}"
            )
        entries = _index_entries(top.doc, where)
        platforms = tuple(
            PlatformManifest(e.digest, e.media_type, e.platform, e.size) for e in entries
        )
        chosen_index = choose_platform(platform, [e.platform for e in entries])
        chosen = None if chosen_index is None else entries[chosen_index]
        if chosen is None and not preserve_original:
            names = sorted({str(e.platform) for e in entries if e.platform})
            available = ", ".join(n if _NAME_RE.fullmatch(n) else "?" for n in names[:20]) or "none"
            if len(names) > 20:
                available += ", …"
            raise RegistryError(
                "NoMatchingPlatform",
                f"{where}: no image for {platform} (the index has {available})",
            )
        image: ImageManifest | None = None
        if chosen is not None:
            child = await self._get_manifest(
                target, chosen.digest, f"{where} ({platform})", expect=chosen.digest
            )
            if child.media_type not in IMAGE_MEDIA_TYPES:
                raise RegistryError(
                    "InvalidManifest",
                    f"{where}: the {platform} entry is a {_name(child.media_type)}, not an image",
                )
            image = await self._image(target, child, where)
        if preserve_original:
            return Resolved(top.digest, top.media_type, image, platforms, False, top.digest)
        assert image is not None
        return Resolved(image.digest, image.media_type, image, platforms, False, top.digest)

    async def list_tags(
        self,
        registry: str,
        repository: str,
        *,
        credentials: BasicCredentials | None = None,
        insecure: bool = False,
        ca_file: str | None = None,
        page_size: int = 1000,
        limit: int = 10000,
    ) -> list[str]:
        """The repository's tags, following ``Link: <…>; rel="next"`` pages, at most ``limit``."""
        if page_size < 1 or limit < 1:
            raise ValueError("page_size and limit must be positive")
        target = self._target(Repository(registry, repository, credentials, insecure, ca_file))
        where = f"{registry}/{repository}"
        self._check_registry(target)
        path = f"/v2/{repository}/tags/list"
        query = f"n={min(page_size, limit)}"
        tags: list[str] = []
        seen: set[str] = set()
        while len(tags) < limit:
            if query in seen:
                break  # a registry that links a page to itself would loop forever
            seen.add(query)
            response = await self._call(
                target, "GET", path, query, kind="tag", limit=self.max_manifest_bytes
            )
            self._raise_for_status(response, f"{where}: tags")
            try:
                doc = json.loads(response.body)
            except (ValueError, RecursionError):  # nested too deep
                raise RegistryError(
                    "UnexpectedResponse", f"{where}: the tag list is not JSON"
                ) from None
            page = _strings(doc.get("tags")) if isinstance(doc, dict) else ()
            tags.extend(page)
            link = _parse_link_next(response.headers.getall("Link", []))
            if link is None or not page:
                break
            if link.is_absolute() and (
                link.host != response.url.host or link.port != response.url.port
            ):
                # Credentials go to the registry only, never to a host a header names.
                log.warning("%s: ignoring a next-page link to another host", where)
                break
            if link.raw_path != path:
                log.warning("%s: ignoring a next-page link outside the tag list", where)
                break
            query = link.raw_query_string
        return tags[:limit]

    async def has_referrers_api(self, repo: Repository, digest: str) -> bool:
        """Whether the registry serves the OCI referrers API: ``GET
        /v2/<name>/referrers/<digest>`` answers 200 with an image index (a registry
        without it answers 404, or 400/405 for an unknown route). A 429 or 5xx, or no
        answer, raises RegistryError (transient): it says nothing either way."""
        target = self._target(repo)
        if not _DIGEST_RE.fullmatch(digest):
            raise ValueError(f"{digest!r} is not a digest")
        self._check_registry(target)
        response = await self._call(
            target, "GET", f"/v2/{target.repository}/referrers/{digest}", "",
            kind="manifest", accept=OCI_INDEX, limit=self.max_manifest_bytes,
        )  # fmt: skip
        if response.status == 429 or response.status >= 500:
            self._raise_for_status(response, f"{target.registry}: the referrers API")
        if response.status != 200:
            return False
        media_type = response.headers.get("Content-Type", "").split(";", 1)[0].strip()
        return media_type == OCI_INDEX

    # --- raw manifests and blobs, and the write path (signatures) ----------------

    async def get_manifest(
        self, repo: Repository, reference: str, *, push: bool = False
    ) -> RawManifest | None:
        """The manifest ``reference`` names as stored (checked against its digest), or None
        when the registry has none (404). ``push`` authenticates with push scope, so a
        read before a write costs no second token."""
        target = self._target(repo, push=push)
        is_digest = _check_reference(reference)
        where = f"{repo.registry}/{repo.repository}{'@' if is_digest else ':'}{reference}"
        self._check_registry(target)
        try:
            manifest = await self._get_manifest(
                target, reference, where, expect=reference if is_digest else None
            )
        except RegistryError as exc:
            if exc.reason == "NotFound":
                return None
            raise
        return RawManifest(manifest.digest, manifest.media_type, manifest.raw)

    async def get_blob(
        self, repo: Repository, digest: str, *, limit: int, push: bool = False
    ) -> bytes:
        """A blob, at most ``limit`` bytes, checked against ``digest``."""
        target = self._target(repo, push=push)
        if not _DIGEST_RE.fullmatch(digest):
            raise ValueError(f"{digest!r} is not a digest")
        self._check_registry(target)
        return await self._get_blob(
            target, digest, f"{repo.registry}/{repo.repository}", limit=limit
        )

    async def push_blob(self, repo: Repository, data: bytes) -> str:
        """Upload ``data`` as a blob (skipped when the registry has it); its digest.

        A monolithic upload: ``POST /blobs/uploads/`` then ``PUT <Location>?digest=``.
        The upload location must be on the registry itself: credentials never
        follow a ``Location`` elsewhere.
        """
        if len(data) > self.max_push_bytes:
            raise ValueError(f"a blob of {len(data)} bytes is over {self.max_push_bytes}")
        target = self._target(repo, push=True)
        self._check_registry(target)
        repository = repo.repository
        digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
        where = f"{repo.registry}/{repository}: blob {digest}"
        head = await self._call(
            target, "HEAD", f"/v2/{repository}/blobs/{digest}", "", kind="blob", limit=0
        )
        if head.status == 200:
            return digest
        started = await self._call(
            target, "POST", f"/v2/{repository}/blobs/uploads/", "",
            kind="blob", limit=_MAX_ERROR_BODY, body=b"",
        )  # fmt: skip
        if started.status != 202:
            self._raise_for_status(started, f"{where}: upload")
            raise RegistryError(
                "UnexpectedResponse",
                f"{where}: upload answered {started.status}, not 202",
                status=started.status,
            )
        location = started.headers.get("Location", "")
        try:
            url = started.url.join(URL(location)) if location else None
        except ValueError:
            url = None
        if (
            url is None
            or url.host != started.url.host
            or url.port != started.url.port
            or not url.raw_path.startswith("/v2/")
        ):
            raise RegistryError(
                "UnexpectedResponse", f"{where}: the upload location is not on the registry"
            )
        query = url.raw_query_string
        query = (query + "&" if query else "") + f"digest={digest.replace(':', '%3A')}"
        done = await self._call(
            target, "PUT", url.raw_path, query, kind="blob", limit=_MAX_ERROR_BODY,
            body=data, content_type="application/octet-stream",
        )  # fmt: skip
        self._raise_for_status(done, f"{where}: upload")
        return digest

    async def put_manifest(
        self, repo: Repository, reference: str, body: bytes, media_type: str
    ) -> str:
        """Store a manifest under ``reference`` (a tag or its digest); its digest."""
        if len(body) > self.max_manifest_bytes:
            raise ValueError(f"a manifest of {len(body)} bytes is over {self.max_manifest_bytes}")
        target = self._target(repo, push=True)
        registry, repository = repo.registry, repo.repository
        _check_reference(reference)
        self._check_registry(target)
        digest = f"sha256:{hashlib.sha256(body).hexdigest()}"
        response = await self._call(
            target, "PUT", f"/v2/{repository}/manifests/{reference}", "",
            kind="manifest", limit=_MAX_ERROR_BODY, body=body, content_type=media_type,
        )  # fmt: skip
        self._raise_for_status(response, f"{registry}/{repository}:{reference}: manifest")
        answered = response.headers.get("Docker-Content-Digest", "").strip()
        if answered and answered != digest:
            raise RegistryError(
                "InvalidManifest",
                f"{registry}/{repository}:{reference}: the registry stored {answered}, "
                f"not {digest}",
            )
        return digest

    # --- manifests and blobs ----------------------------------------------------

    async def _head_manifest(
        self, target: _Target, reference: str, where: str
    ) -> tuple[str | None, str]:
        """The digest and media type HEAD reports; no digest when HEAD cannot tell."""
        response = await self._call(
            target, "HEAD", f"/v2/{target.repository}/manifests/{reference}", "",
            kind="manifest", accept=_ACCEPT, limit=0,
        )  # fmt: skip
        if response.status in (404, 401, 403, 429) or response.status >= 500:
            self._raise_for_status(response, where)
        if response.status != 200:
            return None, ""  # some registries refuse HEAD (405); GET still works
        digest = response.headers.get("Docker-Content-Digest", "").strip()
        media_type = response.headers.get("Content-Type", "").split(";", 1)[0].strip()
        return digest or None, media_type

    async def _get_manifest(
        self, target: _Target, reference: str, where: str, *, expect: str | None
    ) -> _Manifest:
        response = await self._call(
            target, "GET", f"/v2/{target.repository}/manifests/{reference}", "",
            kind="manifest", accept=_ACCEPT, limit=self.max_manifest_bytes,
        )  # fmt: skip
        self._raise_for_status(response, where)
        body = response.body
        header_digest = response.headers.get("Docker-Content-Digest", "").strip()
        for expected in (expect, header_digest):
            if expected and not _matches_digest(expected, body):
                raise RegistryError(
                    "InvalidManifest", f"{where}: the manifest does not match its digest {expected}"
                )
        digest = expect or header_digest or f"sha256:{hashlib.sha256(body).hexdigest()}"
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError):  # nested too deep
            raise RegistryError("InvalidManifest", f"{where}: the manifest is not JSON") from None
        if not isinstance(doc, dict):
            raise RegistryError("InvalidManifest", f"{where}: the manifest is not a JSON object")
        media_type = _manifest_media_type(doc, response.headers.get("Content-Type", ""))
        if doc.get("schemaVersion") == 1 or media_type in _SCHEMA1_MEDIA_TYPES:
            raise RegistryError(
                "InvalidManifest", f"{where}: Docker schema 1 manifests are not supported"
            )
        return _Manifest(digest, media_type, doc, body)

    async def _image(self, target: _Target, manifest: _Manifest, where: str) -> ImageManifest:
        config = _descriptor(manifest.doc.get("config"), "the manifest's config")
        layers_raw = manifest.doc.get("layers")
        if not isinstance(layers_raw, list):
            raise RegistryError("InvalidManifest", f"{where}: the manifest has no layer list")
        layers = [_descriptor(layer, f"layer {i}") for i, layer in enumerate(layers_raw)]
        image_config: ImageConfig | None = None
        # Artifacts (Helm charts, signatures) have their own config types: nothing to show.
        if config.media_type in CONFIG_MEDIA_TYPES:
            blob = await self._get_blob(target, config.digest, where, limit=self.max_config_bytes)
            image_config = parse_image_config(blob)
        return ImageManifest(
            digest=manifest.digest,
            media_type=manifest.media_type,
            size=config.size + sum(layer.size for layer in layers),
            config_digest=config.digest,
            layers=len(layers),
            config=image_config,
        )

    async def _get_blob(self, target: _Target, digest: str, where: str, *, limit: int) -> bytes:
        what = f"{where}: blob {digest}"
        response = await self._call(
            target, "GET", f"/v2/{target.repository}/blobs/{digest}", "", kind="blob", limit=limit
        )
        origin = response.url.origin()
        for _ in range(_MAX_REDIRECTS):
            if response.status not in (301, 302, 303, 307, 308):
                break
            location = response.headers.get("Location")
            if not location:
                break
            try:
                url = response.url.join(URL(location))
            except ValueError:
                raise RegistryError("UnexpectedResponse", f"{what}: invalid redirect") from None
            if url.scheme not in ("http", "https"):
                raise RegistryError("UnexpectedResponse", f"{what}: redirect to a non-HTTP URL")
            # Storage backends (S3, a CDN) get the request without the registry's
            # token: it is not theirs, and their signed URL carries its own auth.
            same_origin = url.origin() == origin
            if not same_origin and self.policy is not None:
                try:
                    self.policy.check_redirect(
                        url.scheme, url.host or "", url.port or 0, registry=target.registry
                    )
                except NotAllowed as exc:
                    raise RegistryError("NotAllowed", f"{what}: {exc.message}") from None
            try:
                response = await self._send(
                    "GET",
                    url,
                    headers=(await self._auth_header(target)) if same_origin else {},
                    ssl_param=await self._ssl_for(target) if same_origin else True,
                    kind="blob",
                    limit=limit,
                )
            except RegistryError as exc:
                if exc.reason != "NotAllowed":
                    raise
                raise RegistryError("NotAllowed", f"{what}: redirect: {exc.message}") from None
        self._raise_for_status(response, what)
        if not _matches_digest(digest, response.body):
            raise RegistryError("InvalidManifest", f"{what} does not match its digest")
        return response.body

    # --- HTTP with auth -----------------------------------------------------------

    def _check_registry(self, target: _Target) -> None:
        if self.policy is None:
            return
        try:
            self.policy.check_registry(target.registry, insecure=target.insecure)
        except NotAllowed as exc:
            raise RegistryError("NotAllowed", exc.message) from None

    def _target(self, repo: Repository, *, push: bool = False) -> _Target:
        registry, repository = repo.registry, repo.repository
        if not _REGISTRY_RE.fullmatch(registry):
            raise ValueError(f"registry {registry!r} is not host[:port]")
        if len(repository) > 255 or not _REPOSITORY_RE.fullmatch(repository):
            raise ValueError(f"repository {repository!r} is not a valid repository path")
        return _Target(registry, repository, repo.credentials, repo.insecure, repo.ca_file, push)

    async def _call(
        self,
        target: _Target,
        method: str,
        path: str,
        query: str,
        *,
        kind: str,
        limit: int,
        accept: str | None = None,
        body: bytes | None = None,
        content_type: str | None = None,
    ) -> _Response:
        """One API request with authentication; any status comes back (4xx/5xx too)."""
        extra = {"Accept": accept} if accept else {}
        if content_type:
            extra["Content-Type"] = content_type
        sent_auth = await self._auth_header(target)
        response = await self._send_to_registry(
            target, method, path, query, {**extra, **sent_auth}, kind, limit, body
        )
        if response.status != 401:
            return response
        challenge = _choose_challenge(response, target.registry)
        _bounded_put(self._challenges, target.registry, challenge)
        if challenge.scheme == "basic":
            if target.credentials is None or sent_auth:
                return response  # no login, or the login was refused
            fresh = _basic_header(target.credentials)
        else:
            key = self._token_key(target, challenge)
            sent = sent_auth.get("Authorization", "")
            stale = sent.removeprefix("Bearer ") if sent.startswith("Bearer ") else ""
            if stale:
                self.tokens.invalidate(key, stale)
            token = await self.tokens.get_or_fetch(
                key, lambda: self._fetch_token(target, challenge)
            )
            if stale == token:
                return response  # the token just fetched is the one refused
            fresh = {"Authorization": f"Bearer {token}"}
        return await self._send_to_registry(
            target, method, path, query, {**extra, **fresh}, kind, limit, body
        )

    async def _auth_header(self, target: _Target) -> dict[str, str]:
        """Credentials for a registry whose challenge is known; none before the first 401."""
        challenge = self._challenges.get(target.registry)
        if challenge is None:
            return {}
        if challenge.scheme == "basic":
            return _basic_header(target.credentials) if target.credentials else {}
        key = self._token_key(target, challenge)
        token = await self.tokens.get_or_fetch(key, lambda: self._fetch_token(target, challenge))
        return {"Authorization": f"Bearer {token}"}

    @staticmethod
    def _token_key(target: _Target, challenge: Challenge) -> TokenKey:
        return TokenKey(
            realm=challenge.params.get("realm", ""),
            service=challenge.params.get("service", ""),
            scope=target.scope,
            login=target.login,
        )

    async def _fetch_token(self, target: _Target, challenge: Challenge) -> tuple[str, float]:
        """A Bearer token from the challenge's realm (distribution's token and OAuth2 specs)."""
        realm = URL(challenge.params["realm"])
        service = challenge.params.get("service", "")
        scope = target.scope
        where = f"{target.registry}/{target.repository}: token from {realm.host}"
        if self.policy is not None:
            # Before any credential leaves: the realm is the registry's to name,
            # and a hostile registry names the cluster's insides.
            registry_scheme = (
                self._schemes.get(target.registry, "https") if target.insecure else "https"
            )
            try:
                self.policy.check_realm(
                    realm.scheme, realm.host or "", realm.port or 0,
                    registry=target.registry, registry_scheme=registry_scheme,
                )  # fmt: skip
            except NotAllowed as exc:
                raise RegistryError(
                    "NotAllowed", f"{target.registry}/{target.repository}: {exc.message}"
                ) from None
        # The registry's TLS settings (insecure, its CA) apply to the realm only
        # when the realm is on the registry's host; elsewhere it is verified.
        if realm.host != URL(f"https://{target.registry}").host:
            target = dataclasses.replace(target, insecure=False)
        ssl_param = await self._ssl_for(target)
        credentials = target.credentials
        identity_token = getattr(credentials, "identity_token", None) if credentials else None
        headers: dict[str, str] = {}
        if isinstance(identity_token, str) and identity_token:
            # OAuth2 refresh-token grant, as docker and containerd send it.
            method = "POST"
            form = {
                "grant_type": "refresh_token",
                "refresh_token": identity_token,
                "service": service,
                "scope": scope,
                "client_id": "headwater",
            }
            url = realm
            data: dict[str, str] | None = form
        else:
            method = "GET"
            query = {"scope": scope}
            if service:
                query["service"] = service
            if credentials is not None:
                query["account"] = credentials.username
                headers.update(_basic_header(credentials))
            url = realm.update_query(query)
            data = None
        try:
            response = await self._send(
                method, url, headers=headers, ssl_param=ssl_param, kind="token",
                limit=self.max_token_bytes, data=data,
            )  # fmt: skip
        except RegistryError as exc:
            if exc.reason != "NotAllowed":
                raise
            raise RegistryError(
                "NotAllowed",
                f"{target.registry}/{target.repository}: the Bearer realm: {exc.message}",
            ) from None
        if response.status in (401, 403):
            raise RegistryError(
                "Unauthorized",
                f"{where}: the token server refused the login",
                status=response.status,
            )
        self._raise_for_status(response, where)
        try:
            doc = json.loads(response.body)
        except (ValueError, RecursionError):  # nested too deep
            raise RegistryError(
                "UnexpectedResponse", f"{where}: the token answer is not JSON"
            ) from None
        token = None
        if isinstance(doc, dict):
            token = doc.get("token") or doc.get("access_token")
        if not isinstance(token, str) or not token:
            raise RegistryError("UnexpectedResponse", f"{where}: the token answer has no token")
        expires_in = doc.get("expires_in")
        lifetime = (
            float(expires_in)
            if isinstance(expires_in, int | float)
            and not isinstance(expires_in, bool)
            and expires_in > 0
            else 60.0
        )
        return token, min(lifetime, 24 * 3600.0)

    async def _send_to_registry(
        self,
        target: _Target,
        method: str,
        path: str,
        query: str,
        headers: Mapping[str, str],
        kind: str,
        limit: int,
        body: bytes | None = None,
    ) -> _Response:
        """Send to the registry, trying HTTPS then plain HTTP for an insecure one."""
        if not target.insecure:
            schemes = ["https"]
        else:
            last = self._schemes.get(target.registry, "https")
            schemes = [last, "http" if last == "https" else "https"]
        error: RegistryError | None = None
        for scheme in schemes:
            url = URL.build(
                scheme=scheme,
                authority=target.registry,
                path=path,
                query_string=query,
                encoded=True,
            )
            try:
                response = await self._send(
                    method, url, headers=headers, ssl_param=await self._ssl_for(target),
                    kind=kind, limit=limit, data=body,
                )  # fmt: skip
            except RegistryError as exc:
                if exc.reason not in ("TLSError", "Unreachable"):
                    raise
                error = error or exc
                continue
            if target.insecure:
                _bounded_put(self._schemes, target.registry, scheme)
            return response
        assert error is not None
        raise error

    async def _ssl_for(self, target: _Target) -> ssl.SSLContext | bool:
        if target.insecure:
            return False
        if not target.ca_file:
            return True
        cached = self._ssl_contexts.get(target.ca_file)
        now = time.monotonic()
        if cached is not None and now - cached[1] < _SSL_CONTEXT_TTL:
            return cached[0]
        try:
            # Reading the bundle (and the system's) is disk I/O: off the event loop.
            context = await asyncio.to_thread(_make_ssl_context, target.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise RegistryError(
                "TLSError",
                f"{target.registry}: cannot load the CA bundle {target.ca_file}: "
                f"{exc.strerror or exc}",
            ) from None
        self._ssl_contexts[target.ca_file] = (context, now)
        return context

    async def _send(
        self,
        method: str,
        url: URL,
        *,
        headers: Mapping[str, str],
        ssl_param: ssl.SSLContext | bool,
        kind: str,
        limit: int,
        data: Mapping[str, str] | bytes | None = None,
    ) -> _Response:
        """One HTTP exchange, bounded in time and size; transport failures become RegistryError."""
        host = url.host or "?"
        where = f"{host}{':' + str(url.port) if url.explicit_port else ''}"
        if self.policy is not None:
            # IP literals never reach the resolver: checked here, before connecting.
            try:
                self.policy.check_literal(host, url.port)
            except NotAllowed as exc:
                raise RegistryError("NotAllowed", exc.message) from None
        session = self._get_session()
        try:
            async with (
                asyncio.timeout(self.request_timeout),
                session.request(
                    method,
                    url,
                    headers=dict(headers),
                    data=dict(data) if isinstance(data, Mapping) else data,
                    ssl=ssl_param,
                    allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=self.request_timeout),
                ) as response,
            ):
                status = response.status
                counter = f"{kind}_requests"
                setattr(self.stats, counter, getattr(self.stats, counter) + 1)
                REGISTRY_REQUESTS.labels(
                    registry=registry_label(where), kind=kind, code=code_label(status)
                ).inc()
                if method == "HEAD" or 300 <= status < 400:
                    body = b""
                elif status < 300:
                    body = await _read_limited(response, limit, f"{where}{url.path}")
                else:
                    try:
                        body = await _read_limited(response, _MAX_ERROR_BODY, "error body")
                    except RegistryError:
                        body = b""
                log.debug("%s %s%s -> %d", method, where, url.path, status)
                return _Response(status, response.headers, body, response.url)
        except TimeoutError:
            raise RegistryError(
                "Timeout", f"{where}: no answer within {self.request_timeout:g}s"
            ) from None
        except aiohttp.ClientSSLError as exc:
            detail = _tls_detail(exc)
            if "WRONG_VERSION_NUMBER" in detail:
                detail += (
                    "; the registry may speak plain HTTP: then mark it insecure"
                    " (--insecure, or importPolicy.insecure: true on the tag)"
                )
            raise RegistryError("TLSError", f"{where}: TLS failed: {detail}") from None
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, _RefusedAddress):
                raise RegistryError("NotAllowed", exc.os_error.message) from None
            raise RegistryError(
                "Unreachable",
                f"{where}: cannot connect: {_one_line(exc.strerror or type(exc).__name__, 120)}",
            ) from None
        except aiohttp.ClientResponseError as exc:
            # Not HTTP at all (e.g. a TLS server answering plain HTTP); exc.request_info
            # holds the request headers, so only the message is kept.
            raise RegistryError(
                "Unreachable", f"{where}: invalid HTTP answer ({type(exc).__name__})"
            ) from None
        except aiohttp.ClientError as exc:
            raise RegistryError(
                "Unreachable", f"{where}: connection failed: {type(exc).__name__}"
            ) from None

    def _raise_for_status(self, response: _Response, what: str) -> None:
        status = response.status
        if 200 <= status < 300:
            return
        detail = _registry_error_code(response.body)
        suffix = f" ({status}{' ' + detail if detail else ''})"
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        reason: Reason
        if status == 401:
            reason, text = "Unauthorized", "authentication required or refused"
        elif status == 403:
            reason, text = "Forbidden", "access denied"
        elif status == 404:
            reason, text = "NotFound", "not found"
        elif status == 429:
            reason, text = "RateLimited", "rate limited"
        elif status >= 500:
            reason, text = "ServerError", "registry error"
        else:
            reason, text = "UnexpectedResponse", "unexpected answer"
        if retry_after is not None and reason in ("RateLimited", "ServerError"):
            text += f", retry after {retry_after:g}s"
        raise RegistryError(
            reason, f"{what}: {text}{suffix}", status=status, retry_after=retry_after
        )


_MAX_REGISTRIES: Final = 1024
"""Registries whose challenge and scheme are remembered; tenants choose the hosts."""


def _bounded_put(table: dict[str, Any], key: str, value: Any) -> None:
    """Set ``key`` as the most recent entry; forget the oldest beyond ``_MAX_REGISTRIES``."""
    table.pop(key, None)
    table[key] = value
    while len(table) > _MAX_REGISTRIES:
        del table[next(iter(table))]


def _check_reference(reference: str) -> bool:
    """Whether ``reference`` is a digest (else a tag); ValueError when it is neither."""
    if _DIGEST_RE.fullmatch(reference):
        return True
    if is_tag(reference):
        return False
    raise ValueError(f"reference {reference!r} is neither a tag nor a digest")


def _index_entries(doc: Mapping[str, Any], where: str) -> list[_Descriptor]:
    manifests = doc.get("manifests")
    if not isinstance(manifests, list):
        raise RegistryError("InvalidManifest", f"{where}: the index has no manifest list")
    entries = [_descriptor(m, f"index entry {i}") for i, m in enumerate(manifests)]
    return [e for e in entries if _REFERENCE_TYPE_ANNOTATION not in e.annotations]


def _choose_challenge(response: _Response, registry: str) -> Challenge:
    headers = response.headers.getall("WWW-Authenticate", [])
    if not headers:
        raise RegistryError("Unauthorized", f"{registry}: 401 without a challenge", status=401)
    try:
        challenges = [c for h in headers for c in parse_www_authenticate(h)]
    except ChallengeError as exc:
        raise RegistryError(
            "InvalidChallenge", f"{registry}: malformed WWW-Authenticate: {exc}", status=401
        ) from None
    # Bearer first, as docker and containerd prefer it when both are offered.
    for scheme in ("bearer", "basic"):
        for challenge in challenges:
            if challenge.scheme != scheme:
                continue
            if scheme == "bearer":
                realm = challenge.realm
                try:
                    url = URL(realm) if realm else None
                except ValueError:
                    url = None
                if url is None or url.scheme not in ("http", "https") or not url.host:
                    raise RegistryError(
                        "InvalidChallenge",
                        f"{registry}: Bearer challenge without an http(s) realm",
                        status=401,
                    )
            return challenge
    schemes = ", ".join(sorted({c.scheme for c in challenges}))
    raise RegistryError(
        "Unauthorized", f"{registry}: unsupported authentication scheme(s): {schemes}", status=401
    )


def _basic_header(credentials: BasicCredentials) -> dict[str, str]:
    raw = f"{credentials.username}:{credentials.password}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode("ascii")}


def _make_ssl_context(ca_file: str) -> ssl.SSLContext:
    # The system's roots stay trusted beside the bundle: a token realm on a
    # public host must still verify.
    context = ssl.create_default_context()
    context.load_verify_locations(cafile=ca_file)
    return context


def _tls_detail(exc: aiohttp.ClientSSLError) -> str:
    cause = getattr(exc, "certificate_error", None) or exc.os_error
    return _one_line(str(getattr(cause, "verify_message", None) or cause), 160)


async def _read_limited(response: aiohttp.ClientResponse, limit: int, what: str) -> bytes:
    """The body, or RegistryError("TooLarge") as soon as it passes ``limit`` bytes."""
    length = response.content_length
    if length is not None and length > limit:
        raise RegistryError(
            "TooLarge", f"{what}: {length} bytes, over the limit of {limit}", status=response.status
        )
    chunks: list[bytes] = []
    total = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        total += len(chunk)
        if total > limit:
            raise RegistryError(
                "TooLarge", f"{what}: over the limit of {limit} bytes", status=response.status
            )
        chunks.append(chunk)
    return b"".join(chunks)
