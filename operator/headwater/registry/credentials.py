"""Pull secrets, read and matched to images the way the kubelet does.

A user who can pull an image in a pod expects Headwater to import it with the
same secret, so this module ports the kubelet's credential provider
(kubernetes/kubernetes pkg/credentialprovider: config.go for the secret
formats, keyring.go for which entry applies to which image). It departs from
the kubelet in three deliberate ways, each marked where it happens:

- a path in a key matches whole path segments only (the kubelet lets
  ``quay.io/foo`` match ``quay.io/foobar``, which hands one organisation's
  password to another's registry requests);
- every spelling of Docker Hub (``docker.io``, ``index.docker.io``,
  ``registry-1.docker.io``, ``https://index.docker.io/v1/``) matches Docker Hub
  images as an ordinary match, where the kubelet keeps ``index.docker.io`` as a
  fallback and ignores ``registry-1.docker.io``;
- all matches are returned, most specific first, so the caller can try each
  in turn, where the kubelet's fallback applies only when nothing else matched.

Secret material never reaches a message: errors name the Secret's data key
and the registry entry, and are raised ``from None`` so that a logged
traceback does not print the decoder's error, which may quote the input.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

from headwater.registry.reference import DEFAULT_DOMAIN, Reference

__all__ = [
    "DOCKERCFG_KEY",
    "DOCKERCFG_TYPE",
    "DOCKER_CONFIG_JSON_KEY",
    "DOCKER_CONFIG_JSON_TYPE",
    "MAX_REGISTRIES",
    "MAX_SECRET_BYTES",
    "PULL_SECRET_TYPES",
    "Credentials",
    "CredentialsError",
    "credentials_for",
    "parse_docker_config_secret",
]

# The API server caps a whole Secret at 1 MiB, so anything larger is not a Secret's data.
MAX_SECRET_BYTES: Final = 1 << 20
MAX_REGISTRIES: Final = 256
"""Entries one pull secret may hold: each is matched against every image imported with
it, on the operator's event loop; real secrets hold a handful."""
DOCKER_CONFIG_JSON_TYPE: Final = "kubernetes.io/dockerconfigjson"
DOCKER_CONFIG_JSON_KEY: Final = ".dockerconfigjson"
DOCKERCFG_TYPE: Final = "kubernetes.io/dockercfg"
DOCKERCFG_KEY: Final = ".dockercfg"
PULL_SECRET_TYPES: Final = frozenset({DOCKER_CONFIG_JSON_TYPE, DOCKERCFG_TYPE})
"""The Secret types that hold registry credentials (a pull or push secret)."""

_DATA_KEYS: Final = {DOCKER_CONFIG_JSON_TYPE: DOCKER_CONFIG_JSON_KEY, DOCKERCFG_TYPE: DOCKERCFG_KEY}
# Base64 grows data by 4/3; checked before decoding so a huge value costs nothing.
_MAX_ENCODED_CHARS: Final = (MAX_SECRET_BYTES + 2) // 3 * 4
_DOCKER_HUB_HOSTS: Final = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
_ENTRY_FIELDS: Final = ("username", "password", "email", "auth", "identitytoken")
_MAX_NAME_IN_MESSAGE: Final = 100


class CredentialsError(ValueError):
    """A pull secret cannot be read; the message names the key, never the content."""


@dataclass(frozen=True)
class Credentials:
    """One registry login from a pull secret.

    The secret fields are left out of ``repr`` because dataclasses, log lines
    and assertion messages all print objects by their repr.
    """

    username: str
    password: str = field(repr=False)
    identity_token: str | None = field(default=None, repr=False)
    """An OAuth2 refresh token (``identitytoken``), exchanged at the token endpoint."""


def parse_docker_config_secret(secret_type: str, data: Mapping[str, str]) -> dict[str, Credentials]:
    """Read the logins of a Secret's ``.data`` (base64 values), keyed as the secret keys them.

    Like the kubelet, one malformed entry makes the whole secret unusable,
    rather than silently pulling anonymously with what is left. Unlike the
    kubelet, a secret of another type or without its data key is an error
    here, not silence, so the user learns why their secret is not used.
    Entries with neither a login nor a token are dropped: they would only
    send an empty Basic login.
    """
    key = _DATA_KEYS.get(secret_type)
    if key is None:
        raise CredentialsError(
            f"secret type {_quote(secret_type)} is not {DOCKER_CONFIG_JSON_TYPE!r}"
            f" or {DOCKERCFG_TYPE!r}"
        )
    encoded = data.get(key)
    if not isinstance(encoded, str):
        raise CredentialsError(f"secret of type {secret_type!r} has no {key!r} key")
    if not encoded:
        raise CredentialsError(f"{key!r} is empty")
    if len(encoded) > _MAX_ENCODED_CHARS:
        raise CredentialsError(f"{key!r} is larger than {MAX_SECRET_BYTES} bytes")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise CredentialsError(f"{key!r} is not valid base64") from None
    if len(raw) > MAX_SECRET_BYTES:
        raise CredentialsError(f"{key!r} is larger than {MAX_SECRET_BYTES} bytes")
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError):
        # JSONDecodeError and UnicodeDecodeError quote the input; neither is kept.
        raise CredentialsError(f"{key!r} is not valid JSON") from None
    if not isinstance(document, dict):
        raise CredentialsError(f"{key!r} is not a JSON object")
    if key == DOCKER_CONFIG_JSON_KEY:
        auths = document.get("auths")
        if not isinstance(auths, dict):
            # A legacy .dockercfg body in a dockerconfigjson secret lands here.
            raise CredentialsError(f'{key!r} has no "auths" object')
    else:
        auths = document
    if len(auths) > MAX_REGISTRIES:
        raise CredentialsError(f"{key!r} has more than {MAX_REGISTRIES} registry entries")
    result: dict[str, Credentials] = {}
    for registry, entry in auths.items():
        credentials = _parse_entry(key, registry, entry)
        if credentials is not None:
            result[registry] = credentials
    return result


def _parse_entry(key: str, registry: str, entry: Any) -> Credentials | None:
    """config.go's DockerConfigEntry.UnmarshalJSON, plus ``identitytoken``."""
    where = f"{key!r} entry {_quote(registry)}"
    if not isinstance(entry, dict):
        raise CredentialsError(f"{where} is not a JSON object")
    values: dict[str, str] = {}
    for name in _ENTRY_FIELDS:
        value = entry.get(name)
        if value is None:  # Go's json leaves a string empty for null or absence
            value = ""
        if not isinstance(value, str):
            raise CredentialsError(f"{where}: {name!r} is not a string")
        values[name] = value
    username, password = values["username"], values["password"]
    if values["auth"]:
        # "auth" wins over username/password, as in the kubelet and the Docker CLI.
        username, password = _decode_auth(values["auth"], where)
    token = values["identitytoken"] or None
    if not (username or password or token):
        return None
    return Credentials(username=username, password=password, identity_token=token)


def _decode_auth(auth: str, where: str) -> tuple[str, str]:
    """config.go's decodeDockerConfigFieldAuth: base64 of ``user:password``, padding optional."""
    padded = auth + "=" * (-len(auth) % 4)
    try:
        decoded = base64.b64decode(padded, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise CredentialsError(f"{where}: 'auth' is not base64 of UTF-8 text") from None
    username, colon, password = decoded.partition(":")
    if not colon:
        raise CredentialsError(f"{where}: 'auth' must be base64 of 'username:password'")
    return username, password


def _quote(name: object) -> str:
    """repr of a name, cut short: names go into messages, whole documents must not."""
    shown = repr(name)
    return shown if len(shown) <= _MAX_NAME_IN_MESSAGE else shown[:_MAX_NAME_IN_MESSAGE] + "..."


# --- matching, from keyring.go ------------------------------------------------


class _Location(NamedTuple):
    """A registry location split as keyring.go's SplitURL splits it."""

    labels: tuple[str, ...]
    port: str
    path: str
    """"" or "/segment[/segment...]" without a trailing slash."""
    literal: bool
    """A bracketed IPv6 host, compared as a whole rather than as glob labels."""


def credentials_for(
    image: Reference, keyring: Sequence[Mapping[str, Credentials]]
) -> list[Credentials]:
    """Every login in the keyring that applies to ``image``, most specific first.

    ``keyring`` is one mapping per pull secret, in the order the secrets are
    listed. Ordering follows keyring.go (keys in reverse lexical order, which
    puts ``quay.io/org`` before ``quay.io`` and literal hosts before globs),
    except that a longer path always comes first, which only matters once
    Docker Hub's aliases are matched directly. Equal keys keep secret order.
    Duplicate logins are returned once.
    """
    target = _image_location(image)
    hub = image.domain == DEFAULT_DOMAIN
    matches: list[tuple[str, int, Credentials]] = []
    for secret in keyring:
        for raw_key, credentials in secret.items():
            parsed = _parse_key(raw_key)
            if parsed is None:
                continue
            index_key, location = parsed
            if hub and not location.port and ".".join(location.labels) in _DOCKER_HUB_HOSTS:
                location = location._replace(labels=target.labels)
            if _locations_match(location, target):
                matches.append((index_key, location.path.count("/"), credentials))
    # Two stable sorts: the second key is primary, ties keep the first order.
    matches.sort(key=lambda match: match[0], reverse=True)
    matches.sort(key=lambda match: match[1], reverse=True)
    result: list[Credentials] = []
    for _, _, credentials in matches:
        if credentials not in result:
            result.append(credentials)
    return result


def _key_matches(key: str, target: str) -> bool:
    """keyring.go's Add normalisation of ``key`` then URLsMatchStr against a schemeless target.

    Works on strings so the kubelet's own tables, whose targets are not all
    valid image names, can be run against it.
    """
    parsed_key = _parse_key(key)
    parsed_target = _parse_key(target)
    if parsed_key is None or parsed_target is None:
        return False
    return _locations_match(parsed_key[1], parsed_target[1])


def _image_location(image: Reference) -> _Location:
    parsed = _parse_key(image.name)
    if parsed is None:  # only for a Reference built by hand with a nonsense domain
        return _Location(
            labels=(image.domain.lower(),), port="", path="/" + image.path, literal=True
        )
    return parsed[1]


@functools.lru_cache(maxsize=8192)
def _parse_key(key: str) -> tuple[str, _Location] | None:
    """Split a keyring key into its index string and location; None for keys to ignore.

    The index string is what keyring.go sorts on: host plus path, with the
    scheme and a leading ``/v1`` or ``/v2`` removed (the Docker CLI writes
    ``https://index.docker.io/v1/``). Keys url.Parse would reject are skipped,
    as the kubelet logs and skips them.
    """
    rest = key
    for scheme in ("https://", "http://"):
        if rest.startswith(scheme):
            rest = rest[len(scheme) :]
            break
    for stop in "?#":
        rest = rest.split(stop, 1)[0]
    host, slash, path = rest.partition("/")
    path = slash + path
    if path.startswith(("/v1/", "/v2/")):
        path = path[3:]
    path = path.rstrip("/")
    if not host or "@" in host:
        return None
    split = _split_host_port(host)
    if split is None:
        return None
    name, port, literal = split
    labels = (name,) if literal else tuple(name.split("."))
    return host + path, _Location(labels=labels, port=port, path=path, literal=literal)


def _split_host_port(host: str) -> tuple[str, str, bool] | None:
    """net.SplitHostPort as keyring.go's SplitURL uses it, with url.Parse's port check."""
    host = host.lower()  # DNS names are case-insensitive; the kubelet compares bytes
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            return None
        address, after = host[: end + 1], host[end + 1 :]
        if not after:
            return address, "", True
        if not after.startswith(":") or not after[1:].isdigit():
            return None
        return address, after[1:], True
    name, colon, port = host.partition(":")
    if not colon:
        return name, "", False
    if not port.isascii() or not port.isdigit() or ":" in port:
        return None
    return name, port, False


def _locations_match(glob: _Location, target: _Location) -> bool:
    """keyring.go's URLsMatch, with path prefixes on segment boundaries."""
    if glob.port != target.port:
        return False
    if len(glob.labels) != len(target.labels):
        return False
    # Deliberate departure: the kubelet uses a plain string prefix here.
    if glob.path and not (target.path == glob.path or target.path.startswith(glob.path + "/")):
        return False
    if glob.literal or target.literal:
        # Brackets would read as a glob character class; the kubelet's own
        # result is that "[::1]" never matches itself.
        return glob.labels == target.labels
    return all(
        _glob_match(pattern, label)
        for pattern, label in zip(glob.labels, target.labels, strict=True)
    )


def _glob_match(pattern: str, name: str) -> bool:
    """Go's path/filepath.Match on one label, in O(len(pattern) * len(name)) steps at worst.

    A regex translation of the glob (``*`` as ``[^/]*``) backtracked
    exponentially in the number of stars: a key with ten ``*`` held the event
    loop for 30 s. Here the classic two-pointer algorithm is used: on a
    mismatch only the last star seen takes one more character, because any
    earlier star's choice can be reproduced by the last one.
    """
    tokens = _glob_tokens(pattern)
    if tokens is None:
        return False
    p = n = 0
    star_p, star_n = -1, 0
    while n < len(name):
        if p < len(tokens) and tokens[p] is _STAR:
            star_p, star_n = p, n
            p += 1
        elif p < len(tokens) and _token_matches(tokens[p], name[n]):
            p += 1
            n += 1
        elif star_p >= 0 and name[star_n] != "/":
            # The last star swallows one more character; retry after it.
            star_n += 1
            p, n = star_p + 1, star_n
        else:
            return False
    while p < len(tokens) and tokens[p] is _STAR:
        p += 1
    return p == len(tokens)


class _Class(NamedTuple):
    """A ``[...]`` class: inclusive (low, high) ranges, maybe negated."""

    negate: bool
    ranges: tuple[tuple[str, str], ...]


_Token = str | _Class | None
"""One glob element: a literal character, ``?`` (as _ANY), a class, or a star (as _STAR)."""
_STAR: Final = None
_ANY: Final = _Class(negate=True, ranges=())


def _token_matches(token: _Token, char: str) -> bool:
    if isinstance(token, str):
        return token == char
    assert token is not None
    if token.negate:
        # Go's "[^...]" and "?" never match the separator.
        return char != "/" and not any(lo <= char <= hi for lo, hi in token.ranges)
    return any(lo <= char <= hi for lo, hi in token.ranges)


@functools.lru_cache(maxsize=256)
def _glob_tokens(pattern: str) -> tuple[_Token, ...] | None:
    """Go's path/filepath.Match pattern syntax as tokens; None for a malformed pattern.

    Go's Match reports a malformed pattern as an error, which the kubelet
    treats as no match; None does the same here.
    """
    out: list[_Token] = []
    i, n = 0, len(pattern)
    while i < n:
        char = pattern[i]
        if char == "*":
            if not out or out[-1] is not _STAR:  # "**" is "*"
                out.append(_STAR)
            i += 1
        elif char == "?":
            out.append(_ANY)
            i += 1
        elif char == "\\":
            if i + 1 >= n:
                return None
            out.append(pattern[i + 1])
            i += 2
        elif char == "[":
            parsed = _glob_class(pattern, i + 1)
            if parsed is None:
                return None
            token, i = parsed
            out.append(token)
        else:
            out.append(char)
            i += 1
    return tuple(out)


def _glob_class(pattern: str, i: int) -> tuple[_Class, int] | None:
    """A filepath.Match ``[...]`` class from just after ``[``: the class and the next index."""
    n = len(pattern)
    negate = i < n and pattern[i] == "^"
    if negate:
        i += 1
    ranges: list[tuple[str, str]] = []
    count = 0
    while True:
        if i < n and pattern[i] == "]" and count:
            i += 1
            break
        low = _glob_class_char(pattern, i)
        if low is None:
            return None
        lo, i = low
        hi = lo
        if pattern[i] == "-":
            high = _glob_class_char(pattern, i + 1)
            if high is None:
                return None
            hi, i = high
        count += 1
        if lo <= hi:  # Go accepts an inverted range that matches nothing
            ranges.append((lo, hi))
    return _Class(negate, tuple(ranges)), i


def _glob_class_char(pattern: str, i: int) -> tuple[str, int] | None:
    """filepath.Match's getEsc: one possibly escaped class character, and more must follow."""
    n = len(pattern)
    if i >= n or pattern[i] in "-]":
        return None
    if pattern[i] == "\\":
        i += 1
        if i >= n:
            return None
    if i + 1 >= n:
        return None
    return pattern[i], i + 1
