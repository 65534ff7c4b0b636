"""Registry authentication: ``WWW-Authenticate`` challenges and the token cache.

A registry answers an unauthenticated request with 401 and one or more
challenges (RFC 7235): ``Basic realm="..."`` or ``Bearer realm="...",
service="...",scope="..."`` (the distribution token spec). The parser here
follows the RFC grammar rather than splitting on commas, because quoted
values may hold commas (``scope="repository:a:pull,push"``) and escapes.

Tokens are cached per (realm, service, scope, login) so that thousands of tag
imports against one registry cost one token request per token lifetime, not
one per import. The login part of the key is a fingerprint of the whole login
(username *and* secret), never the username alone: two ImageStreams in
different namespaces may carry the same username with different passwords,
and the wrong password must not borrow the token the right one earned.

Nothing here does I/O; the client (``client.py``) fetches tokens.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Final, NamedTuple

__all__ = [
    "Challenge",
    "ChallengeError",
    "Token",
    "TokenCache",
    "TokenKey",
    "login_fingerprint",
    "parse_www_authenticate",
]

# RFC 7230 tchar: the characters allowed in a token (scheme and parameter names).
_TCHAR: Final = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)
# RFC 7235 token68 (without its trailing "=" padding).
_TOKEN68: Final = frozenset("-._~+/0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_WS: Final = " \t"
# A header longer than this is not a challenge any registry sends; refusing it
# bounds the parser's work on hostile input.
MAX_CHALLENGE_CHARS: Final = 16 * 1024

# Tokens are renewed this long before they expire, so a request never leaves
# with a token that dies in flight: 10 % of the lifetime, at most 30 s.
_RENEW_FRACTION: Final = 0.1
_RENEW_MAX_SECONDS: Final = 30.0
DEFAULT_TOKEN_SECONDS: Final = 60.0
# Past this many entries, expired tokens are dropped when a new one is stored.
_PRUNE_AT: Final = 4096


class ChallengeError(ValueError):
    """A ``WWW-Authenticate`` header that does not follow RFC 7235."""


@dataclass(frozen=True)
class Challenge:
    """One authentication challenge.

    ``scheme`` is lower-cased (schemes are case-insensitive), and so are the
    parameter names; values are kept as sent, with quoted-string escapes undone.
    """

    scheme: str
    params: Mapping[str, str] = field(default_factory=dict, hash=False)
    token68: str | None = None

    @property
    def realm(self) -> str | None:
        return self.params.get("realm")


class _Parser:
    """A cursor over one header value; each method consumes what it names."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in _WS:
            self.pos += 1

    def skip_list_separators(self) -> None:
        # RFC 7230 section 7: recipients accept empty list elements (", ,").
        while self.pos < len(self.text) and self.text[self.pos] in " \t,":
            self.pos += 1

    def token(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in _TCHAR:
            self.pos += 1
        return self.text[start : self.pos]

    def quoted_string(self) -> str:
        assert self.peek() == '"'
        self.pos += 1
        out: list[str] = []
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch == '"':
                self.pos += 1
                return "".join(out)
            if ch == "\\":
                if self.pos + 1 >= len(self.text):
                    break
                out.append(self.text[self.pos + 1])
                self.pos += 2
                continue
            # qdtext excludes control characters other than HTAB.
            if ch != "\t" and (ord(ch) < 0x20 or ord(ch) == 0x7F):
                raise ChallengeError("control character in a quoted string")
            out.append(ch)
            self.pos += 1
        raise ChallengeError("unterminated quoted string")

    def starts_param(self) -> bool:
        """Whether a ``name=value`` parameter starts here (and not a new challenge)."""
        save = self.pos
        try:
            if not self.token():
                return False
            self.skip_ws()
            if self.peek() != "=":
                return False
            self.pos += 1
            self.skip_ws()
            # "name==" or "name=" then a separator is token68 padding, not a parameter.
            return not (self.at_end() or self.peek() in ",=")
        finally:
            self.pos = save


def parse_www_authenticate(header: str) -> list[Challenge]:
    """Parse a ``WWW-Authenticate`` value into its challenges, in order.

    Raises ``ChallengeError`` (and nothing else) when the value is malformed:
    no challenge at all, a parameter without a value, an unterminated quoted
    string, a repeated parameter, or stray characters.
    """
    if len(header) > MAX_CHALLENGE_CHARS:
        raise ChallengeError("challenge too long")
    p = _Parser(header)
    challenges: list[Challenge] = []
    p.skip_list_separators()
    while not p.at_end():
        scheme = p.token()
        if not scheme:
            raise ChallengeError(f"expected an auth scheme at offset {p.pos}")
        params: dict[str, str] = {}
        token68: str | None = None
        had_space = p.peek() in _WS
        p.skip_ws()
        if had_space and not p.at_end() and p.peek() != ",":
            if p.starts_param():
                _parse_params(p, params)
            else:
                token68 = _parse_token68(p)
        challenges.append(Challenge(scheme.lower(), params, token68))
        p.skip_ws()
        if p.at_end():
            break
        if p.peek() != ",":
            raise ChallengeError(f"unexpected {p.peek()!r} at offset {p.pos}")
        p.skip_list_separators()
    if not challenges:
        raise ChallengeError("no challenge")
    return challenges


def _parse_params(p: _Parser, params: dict[str, str]) -> None:
    while True:
        name = p.token().lower()
        p.skip_ws()
        p.pos += 1  # the "=" that starts_param() saw
        p.skip_ws()
        if p.peek() == '"':
            value = p.quoted_string()
        else:
            value = p.token()
            if not value:
                raise ChallengeError(f"parameter {name!r} has no value")
        if name in params:
            # RFC 7235 section 2.1: each parameter name occurs once per challenge.
            # A second realm could be an injected one, so this is not forgiven.
            raise ChallengeError(f"parameter {name!r} repeated")
        params[name] = value
        p.skip_ws()
        if p.peek() != ",":
            return
        # A comma either separates parameters or ends this challenge: look past it.
        save = p.pos
        p.skip_list_separators()
        if p.at_end() or not p.starts_param():
            p.pos = save
            return


def _parse_token68(p: _Parser) -> str:
    start = p.pos
    while not p.at_end() and p.peek() in _TOKEN68:
        p.pos += 1
    if p.pos == start:
        raise ChallengeError(f"unexpected {p.peek()!r} at offset {p.pos}")
    while p.peek() == "=":
        p.pos += 1
    return p.text[start : p.pos]


# --- tokens -------------------------------------------------------------------


class TokenKey(NamedTuple):
    realm: str
    service: str
    scope: str
    login: str
    """``login_fingerprint()`` of the credentials, or "" for anonymous tokens."""


@dataclass(frozen=True)
class Token:
    value: str = field(repr=False)
    expires_at: float
    """``time.monotonic()`` after which the token is no longer used."""


def login_fingerprint(username: str, secret: str) -> str:
    """A one-way digest of a login, so that the cache key holds no secret."""
    if not username and not secret:
        return ""
    return hashlib.sha256(f"{username}\0{secret}".encode()).hexdigest()


def renew_at(issued_at: float, lifetime: float) -> float:
    """When a token issued at ``issued_at`` and valid ``lifetime`` s stops being used."""
    margin = min(_RENEW_MAX_SECONDS, lifetime * _RENEW_FRACTION)
    return issued_at + max(0.0, lifetime - margin)


class TokenCache:
    """Bearer tokens by ``TokenKey``; concurrent misses on one key share one fetch."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tokens: dict[TokenKey, Token] = {}
        self._locks: dict[TokenKey, asyncio.Lock] = {}

    def __len__(self) -> int:
        return len(self._tokens)

    def get(self, key: TokenKey) -> str | None:
        token = self._tokens.get(key)
        if token is None:
            return None
        if self._clock() >= token.expires_at:
            del self._tokens[key]
            return None
        return token.value

    def put(self, key: TokenKey, value: str, lifetime: float) -> None:
        if len(self._tokens) >= _PRUNE_AT:
            now = self._clock()
            for k in [k for k, t in self._tokens.items() if now >= t.expires_at]:
                del self._tokens[k]
            # Still full (a registry handing out day-long tokens for many
            # scopes): the oldest go; they are fetched again when needed.
            for k in list(self._tokens)[: max(0, len(self._tokens) - _PRUNE_AT + 1)]:
                del self._tokens[k]
            for k in [k for k, lock in self._locks.items() if not lock.locked()]:
                del self._locks[k]
        self._tokens.pop(key, None)
        self._tokens[key] = Token(value, renew_at(self._clock(), lifetime))

    def invalidate(self, key: TokenKey, value: str | None = None) -> None:
        """Forget the token for ``key`` (only if it is still ``value``, when given)."""
        token = self._tokens.get(key)
        if token is not None and (value is None or token.value == value):
            del self._tokens[key]

    async def get_or_fetch(
        self, key: TokenKey, fetch: Callable[[], Awaitable[tuple[str, float]]]
    ) -> str:
        """The cached token, or the one ``fetch()`` returns as (token, lifetime seconds)."""
        cached = self.get(key)
        if cached is not None:
            return cached
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            # Another task may have fetched it while this one waited for the lock.
            cached = self.get(key)
            if cached is not None:
                return cached
            value, lifetime = await fetch()
            self.put(key, value, lifetime)
            return value
