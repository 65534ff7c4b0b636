"""The guards of a local server that acts with the user's credentials (pure helpers).

- Host header: only the bound address and loopback names, with the bound port,
  so a page on another origin that rebinds its DNS name to 127.0.0.1 gets 421.
- CSRF: a random token per process, required on every POST (form field or the
  ``X-CSRF-Token`` header htmx sends), and a POST's ``Origin``, when the browser
  sends one, must be the console's own; GET never changes anything.
- Token mode (``--token-auth``, a shared console behind a proxy): every request
  carries the user's own bearer token; the CSRF token is then per user, an HMAC
  of a per-process secret and the token's sha256, so no user can learn another's.
- Headers: a CSP without inline script or style, no framing, no referrer, no
  sniffing; and no CORS headers at all (browsers then refuse cross-origin reads).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # Not no-referrer: with it, a form posted without JavaScript carries ``Origin: null``,
    # which the POST check refuses. same-origin still sends nothing to another site.
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_ok(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), str(given).encode())


def new_secret() -> bytes:
    return secrets.token_bytes(32)


BEARER = re.compile(r"^[Bb][Ee][Aa][Rr][Ee][Rr] +([A-Za-z0-9\-._~+/]+=*) *$")
"""``Authorization: Bearer <token68>`` (RFC 6750)."""
MAX_TOKEN_BYTES = 16 * 1024


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer`` header; None when there is none (or it is
    malformed or absurdly long)."""
    if not header or len(header) > MAX_TOKEN_BYTES:
        return None
    found = BEARER.match(header)
    return found.group(1) if found else None


def token_key(token: str) -> str:
    """What a user's token is known by in memory: its sha256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def user_csrf(secret: bytes, key: str) -> str:
    """The CSRF token of one user (token mode): HMAC-SHA256 of the process's secret and the
    user's :func:`token_key`. Another user's page never holds it; the token can't be
    recovered from it."""
    return hmac.new(secret, key.encode(), hashlib.sha256).hexdigest()


def allowed_hosts(address: str, port: int) -> frozenset[str]:
    """The Host header values a request may carry: ``name:port`` (and ``name`` on port 80).

    Loopback names are always allowed; a non-loopback bind address (``--address``)
    is allowed as itself. A wildcard bind (0.0.0.0, ::) allows only loopback names:
    the user asked to be reachable but names no host, so name it with --address.
    """
    names = set(LOOPBACK_NAMES)
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        names.add(address.lower())
    else:
        if not ip.is_unspecified:
            names.add(f"[{address}]" if ip.version == 6 else address)
    hosts = {f"{n}:{port}" for n in names}
    if port == 80:
        hosts |= names
    return frozenset(hosts)


def host_ok(host: str | None, allowed: frozenset[str]) -> bool:
    return host is not None and host.lower() in allowed


def with_hosts(allowed: frozenset[str], hosts: tuple[str, ...]) -> frozenset[str]:
    """``allowed`` and the hosts a proxy serves the console as (``--allowed-host``), each
    exactly as the Host header carries it (``console.example.com``, ``name:8443``)."""
    return allowed | {h.strip().lower() for h in hosts if h.strip()}


def origin_ok(origin: str, allowed: frozenset[str], schemes: tuple[str, ...] = ("http",)) -> bool:
    """An ``Origin`` header of one of the console's own pages (``http://<allowed host>``;
    behind a proxy terminating TLS, ``https`` too)."""
    scheme, sep, host = origin.partition("://")
    return bool(sep) and scheme in schemes and host_ok(host, allowed)
