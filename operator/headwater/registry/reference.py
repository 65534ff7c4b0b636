"""Image references, parsed and normalised the way Docker, containerd and the kubelet do.

An ImageStream tag's ``from.name``, a pod's ``image`` and a BuildConfig output
all name images in the "familiar" Docker syntax (``busybox``, ``quay.io/x/y:1``).
If Headwater read them differently from the kubelet, it would import one image
and the node would pull another, so this module is a port of the CNCF
distribution ``reference`` package (github.com/distribution/reference:
regexp.go for the grammar, reference.go for ``Parse``, normalize.go for
``ParseNormalizedNamed``, ``ParseDockerRef`` and familiar names) plus the digest
checks of ``opencontainers/go-digest``. Where this module departs from them it
says so at the spot.

The regular expressions are the upstream ones translated to Python: ``re.ASCII``
because Go's ``\\w`` is ASCII-only, and ``fullmatch`` because Python's ``$``
also matches before a trailing newline. None of them has nested ambiguous
repetition, and input is capped in length before any regex runs, so matching
time stays linear in the input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Final

__all__ = [
    "DEFAULT_DOMAIN",
    "DOCKER_HUB_API_HOST",
    "LEGACY_DEFAULT_DOMAIN",
    "NAME_TOTAL_LENGTH_MAX",
    "OFFICIAL_REPO_PREFIX",
    "TAG_PATTERN",
    "Reference",
    "ReferenceError",
    "is_tag",
    "parse_docker_ref",
    "parse_reference",
]

DEFAULT_DOMAIN: Final = "docker.io"
LEGACY_DEFAULT_DOMAIN: Final = "index.docker.io"
OFFICIAL_REPO_PREFIX: Final = "library/"
# "docker.io" is a name, not a registry: Docker Hub serves the v2 API from here.
DOCKER_HUB_API_HOST: Final = "registry-1.docker.io"
DEFAULT_TAG: Final = "latest"
# distribution's RepositoryNameTotalLengthMax (formerly NameTotalLengthMax).
NAME_TOTAL_LENGTH_MAX: Final = 255
_LOCALHOST: Final = "localhost"

# --- grammar, from distribution/reference regexp.go ---------------------------

_ALPHANUMERIC = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_DOMAIN_NAME_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_OPTIONAL_PORT = r"(?::[0-9]+)?"
TAG_PATTERN: Final = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
r"""A Docker tag (regexp.go's ``[\w][\w.-]{0,127}``, Go's ``\w`` being ASCII), unanchored.

The one copy of the tag grammar: the CLI, the trigger parsers, the registry
client and the generated CRD schemas all compose or match this.
"""
_TAG = TAG_PATTERN
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9a-fA-F]{32,}"
_IDENTIFIER = r"[a-f0-9]{64}"
_IPV6_ADDRESS = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN_NAME = _DOMAIN_NAME_COMPONENT + r"(?:\." + _DOMAIN_NAME_COMPONENT + r")*"
_HOST = r"(?:" + _DOMAIN_NAME + r"|" + _IPV6_ADDRESS + r")"
_DOMAIN_AND_PORT = _HOST + _OPTIONAL_PORT
_PATH_COMPONENT = _ALPHANUMERIC + r"(?:" + _SEPARATOR + _ALPHANUMERIC + r")*"
_REMOTE_NAME = _PATH_COMPONENT + r"(?:/" + _PATH_COMPONENT + r")*"
_NAME = r"(?:" + _DOMAIN_AND_PORT + r"/)?" + _REMOTE_NAME

_REFERENCE_RE: Final = re.compile(
    r"(" + _NAME + r")(?::(" + _TAG + r"))?(?:@(" + _DIGEST + r"))?", re.ASCII
)
_ANCHORED_NAME_RE: Final = re.compile(
    r"(?:(" + _DOMAIN_AND_PORT + r")/)?(" + _REMOTE_NAME + r")", re.ASCII
)
_TAG_RE: Final = re.compile(_TAG, re.ASCII)
_DIGEST_RE: Final = re.compile(_DIGEST, re.ASCII)
_IDENTIFIER_RE: Final = re.compile(_IDENTIFIER, re.ASCII)
_DOMAIN_AND_PORT_RE: Final = re.compile(_DOMAIN_AND_PORT, re.ASCII)

# go-digest's registered algorithms and the length of their hex encoding. Any
# other algorithm is well-formed but unsupported, as in go-digest's Validate.
_DIGEST_HEX_LENGTHS: Final = {"sha256": 64, "sha384": 96, "sha512": 128}
_LOWER_HEX_RE: Final = re.compile(r"[a-f0-9]+", re.ASCII)

_PREFIX = "invalid reference format"


class ReferenceError(ValueError):
    """The text is not an image reference; the message says which part is wrong."""


@dataclass(frozen=True)
class Reference:
    """A parsed, normalised image reference.

    Kept as four plain strings rather than distribution's family of
    Named/Tagged/Canonical types: Python callers test ``tag``/``digest`` for
    None instead of type-switching, and equality is field equality.
    """

    domain: str
    """``docker.io`` for Docker Hub, else ``host[:port]`` exactly as written."""
    path: str
    """The repository within the registry; ``library/<name>`` for official images."""
    tag: str | None = None
    digest: str | None = None
    """``<algorithm>:<hex>``; when present it, not the tag, identifies the image."""

    @property
    def name(self) -> str:
        """The repository without tag or digest, which is what credentials and scopes key on."""
        return f"{self.domain}/{self.path}"

    @property
    def api_host(self) -> str:
        """Where the registry's v2 API answers, which differs from the name only for Docker Hub."""
        return DOCKER_HUB_API_HOST if self.domain == DEFAULT_DOMAIN else self.domain

    def with_digest(self, digest: str) -> Reference:
        """Pin to a digest, dropping the tag so the result cannot be read two ways."""
        _validate_digest(digest)
        return replace(self, tag=None, digest=digest)

    def __str__(self) -> str:
        text = self.name
        if self.tag is not None:
            text += ":" + self.tag
        if self.digest is not None:
            text += "@" + self.digest
        return text

    def familiar(self) -> str:
        """The short form people type and ``docker images`` shows (upstream's FamiliarString)."""
        name = self.name
        if self.domain == DEFAULT_DOMAIN:
            name = self.path
            remainder = self.path.removeprefix(OFFICIAL_REPO_PREFIX)
            # Nested names under library/ are not official images (upstream's TODO agrees).
            if remainder != self.path and "/" not in remainder:
                name = remainder
        if self.tag is not None:
            name += ":" + self.tag
        if self.digest is not None:
            name += "@" + self.digest
        return name


def parse_reference(text: str, *, max_length: int = 4096) -> Reference:
    """Parse like distribution's ``ParseNormalizedNamed``: normalise, add no default tag.

    ``max_length`` bounds the work done on text from users and registries before
    any regex sees it; no real reference comes near 4096 characters.
    """
    if not text:
        raise ReferenceError(f"{_PREFIX}: repository name must have at least one component")
    if len(text) > max_length:
        raise ReferenceError(f"{_PREFIX}: reference is longer than {max_length} characters")
    if _IDENTIFIER_RE.fullmatch(text):
        raise ReferenceError(
            f"{_PREFIX}: repository name cannot be a 64-character hexadecimal string,"
            " which is an image ID"
        )
    domain, remainder = _split_docker_domain(text)
    remote = remainder.split(":", 1)[0]
    if remote.lower() != remote:
        raise ReferenceError(f"{_PREFIX}: repository name must be lowercase")
    return _parse(domain + "/" + remainder)


def parse_docker_ref(text: str) -> Reference:
    """Parse like distribution's ``ParseDockerRef``: exactly one of tag or digest in the result.

    This is the form the kubelet and containerd pull by: ``latest`` when
    nothing is given, and the digest alone when both are, since the digest
    decides what is pulled and a tag beside it would only mislead.
    """
    ref = parse_reference(text)
    if ref.digest is not None:
        return replace(ref, tag=None) if ref.tag is not None else ref
    if ref.tag is None:
        return replace(ref, tag=DEFAULT_TAG)
    return ref


def is_tag(text: str) -> bool:
    """Whether ``text`` is a whole Docker tag (``latest``, ``1.0``), per :data:`TAG_PATTERN`."""
    return _TAG_RE.fullmatch(text) is not None


def _split_docker_domain(name: str) -> tuple[str, str]:
    """normalize.go's splitDockerDomain: guess whether the first component is a host."""
    maybe_domain, slash, maybe_remote = name.partition("/")
    if not slash:
        # A single component ("ubuntu", "ubuntu:22.04") is always an official image.
        return DEFAULT_DOMAIN, OFFICIAL_REPO_PREFIX + name
    if maybe_domain == _LOCALHOST:
        domain, remote = maybe_domain, maybe_remote
    elif maybe_domain == LEGACY_DEFAULT_DOMAIN:
        domain, remote = DEFAULT_DOMAIN, maybe_remote
    elif "." in maybe_domain or ":" in maybe_domain:
        domain, remote = maybe_domain, maybe_remote
    elif maybe_domain.lower() != maybe_domain:
        # Repository names are lowercase, so an uppercase first component must be a host.
        domain, remote = maybe_domain, maybe_remote
    else:
        domain, remote = DEFAULT_DOMAIN, name
    if domain == DEFAULT_DOMAIN and "/" not in remote:
        remote = OFFICIAL_REPO_PREFIX + remote
    return domain, remote


def _parse(text: str) -> Reference:
    """reference.go's Parse on an already-normalised ``domain/remainder``."""
    match = _REFERENCE_RE.fullmatch(text)
    if match is None:
        lowered = text.lower()
        if lowered != text and _REFERENCE_RE.fullmatch(lowered):
            raise ReferenceError(f"{_PREFIX}: repository name must be lowercase")
        raise ReferenceError(f"{_PREFIX}: {_diagnose(text)}")
    name, tag, digest = match.group(1, 2, 3)
    name_match = _ANCHORED_NAME_RE.fullmatch(name)
    domain, path = name_match.group(1, 2) if name_match else (None, name)
    if not domain:
        # Upstream returns a reference with an empty domain here: the first
        # component has a dot (so it was taken for a host) but is no valid
        # hostname, e.g. "foo_bar.com/app". Nothing could be pulled from an
        # empty host, so refuse rather than carry it around.
        host = text.split("/", 1)[0]
        raise ReferenceError(f"{_PREFIX}: {host!r} is not a valid registry host")
    if len(path) > NAME_TOTAL_LENGTH_MAX:
        # Upstream (distribution/reference v0.6) limits the path, not domain + path:
        # the path is what a registry stores and limits.
        raise ReferenceError(
            f"{_PREFIX}: repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"
        )
    if digest is not None:
        _validate_digest(digest)
    return Reference(domain=domain, path=path, tag=tag, digest=digest)


def _validate_digest(digest: str) -> None:
    """go-digest's Digest.Validate: registered algorithms with exact-length lowercase hex."""
    if not _DIGEST_RE.fullmatch(digest):
        raise ReferenceError(f"{_PREFIX}: digest must be <algorithm>:<hex>, e.g. sha256:<64 hex>")
    algorithm, _, encoded = digest.partition(":")
    expected = _DIGEST_HEX_LENGTHS.get(algorithm)
    if expected is None:
        raise ReferenceError(f"{_PREFIX}: unsupported digest algorithm {algorithm!r}")
    if len(encoded) != expected:
        raise ReferenceError(
            f"{_PREFIX}: invalid checksum digest length: {algorithm} takes {expected} hex digits"
        )
    if not _LOWER_HEX_RE.fullmatch(encoded):
        raise ReferenceError(
            f"{_PREFIX}: invalid checksum digest format: {algorithm} must be lowercase hex"
        )


def _diagnose(text: str) -> str:
    """Say which part of a non-matching reference is at fault.

    Only for the message: the grammar already decided. The split mirrors the
    grammar, where ``@`` starts the digest and a ``:`` after the last ``/``
    starts the tag.
    """
    rest, at, digest = text.partition("@")
    if at and not _DIGEST_RE.fullmatch(digest):
        return "digest must be <algorithm>:<hex>, e.g. sha256:<64 hex>"
    name, tag = rest, None
    colon = rest.rfind(":")
    if colon > rest.rfind("/"):
        name, tag = rest[:colon], rest[colon + 1 :]
    if tag is not None and not _TAG_RE.fullmatch(tag):
        return (
            "tag must be 1 to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'"
        )
    host, slash, _ = name.partition("/")
    if slash and ("." in host or ":" in host) and not _DOMAIN_AND_PORT_RE.fullmatch(host):
        return f"{host!r} is not a valid registry host[:port]"
    return (
        "repository path components must be lowercase letters and digits,"
        " separated by '.', '_', '__' or dashes, joined by single '/'"
    )
