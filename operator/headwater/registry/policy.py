"""Where the operator may connect to read images: the import policy against SSRF.

A namespace editor writes the ``from.name`` of an ImageStream tag, and the
operator connects there, from inside the cluster, with the namespace's pull
secrets. Without a policy that makes the operator a proxy into the cluster's
network: the cloud's metadata endpoint (169.254.169.254), the API server's
Service address, a pod's port, the node's loopback. This module decides,
without I/O, whether a connection may be made:

- **The registry** of an import (an ImageStream tag, ``import-image``, a
  builder image, an output check): with ``allowedRegistriesForImport`` empty
  any host may be named; with entries, only a host an entry matches. Plain
  HTTP or unverified TLS (``importPolicy.insecure``) needs an entry with
  ``insecure: true`` as well: both the tenant and the admin must ask for it.
- **A Bearer token realm** the registry names: https, or on the registry's
  own host and port, or listed (plain HTTP to a listed realm needs its entry's
  ``insecure``). Credentials go to a realm only after it passed.
- **A redirect** (a blob on a CDN): https, or to the registry itself, or
  listed; a redirect never carries the registry's credentials elsewhere.
- **Every address connected to**: loopback, link-local, unspecified,
  multicast, ``0.0.0.0/8`` and the cluster's Service and Pod ranges are
  refused unless the host is listed by an entry without a wildcard in its
  host part (so ``*`` never opens the metadata endpoint). The client checks
  IP literals before connecting and resolved names in its DNS resolver, so
  the address checked is the address connected to (DNS rebinding gains
  nothing).

The operator's own ``registry`` (with ``registryInsecure``) and the
``insecureRegistries`` of builds are listed implicitly: the admin named them.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, TypeAlias

from headwater.config import AllowedRegistry, Config

__all__ = [
    "ALWAYS_REFUSED",
    "AccessPolicy",
    "NotAllowed",
    "split_host_port",
]

Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network
Address: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address

SETTING: Final = "allowedRegistriesForImport"

ALWAYS_REFUSED: Final[tuple[tuple[str, str], ...]] = (
    ("0.0.0.0/8", "unspecified"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("224.0.0.0/4", "multicast"),
    ("255.255.255.255/32", "broadcast"),
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("fe80::/10", "link-local"),
    ("ff00::/8", "multicast"),
    # AWS's instance metadata service over IPv6 (a unique local address).
    ("fd00:ec2::254/128", "cloud metadata"),
)
# Docker Hub is named docker.io but served from these hosts.
_ALIASES: Final = {
    "registry-1.docker.io": "docker.io",
    "index.docker.io": "docker.io",
}
_DEFAULT_PORTS: Final = (443, 80)


class NotAllowed(Exception):
    """A connection the policy refuses; the message names the setting that would allow it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def split_host_port(authority: str) -> tuple[str, int | None]:
    """``host[:port]`` (``[v6]:port`` too) as a lower-case host without brackets and a port."""
    text = authority.strip().lower()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, ""
    return host, int(port_text) if port_text.isdigit() else None


@dataclass(frozen=True)
class _Entry:
    host: str
    """Lower case, IPv6 without brackets; may hold ``*``."""
    port: int | None
    """None: the default ports; -1: any port."""
    insecure: bool
    implicit: bool = False

    @classmethod
    def parse(cls, entry: AllowedRegistry, *, implicit: bool = False) -> _Entry:
        host, _, port_text = entry.domain_name.rpartition(":")
        if not host or "]" in port_text or (":" in host and not host.endswith("]")):
            host, port_text = entry.domain_name, ""
        if port_text == "*":
            port: int | None = -1
        else:
            port = int(port_text) if port_text.isdigit() else None
        return cls(host.strip("[]").lower(), port, entry.insecure, implicit)

    @property
    def wildcard(self) -> bool:
        return "*" in self.host

    def matches(self, host: str, port: int | None) -> bool:
        if self.port == -1:
            port_ok = True
        elif self.port is None:
            port_ok = port is None or port in _DEFAULT_PORTS
        else:
            port_ok = port == self.port or (port is None and self.port in _DEFAULT_PORTS)
        if not port_ok:
            return False
        names = {host, _ALIASES.get(host, host)}
        if not self.wildcard:
            return self.host in names or _same_ip(self.host, host)
        return any(fnmatch.fnmatchcase(name, self.host) for name in names)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = "" if self.port is None else ":*" if self.port == -1 else f":{self.port}"
        return host + port


def _same_ip(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return False


def _ip(host: str) -> Address | None:
    try:
        address = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _authority(host: str, port: int | None) -> str:
    shown = f"[{host}]" if ":" in host else host
    return shown if port is None else f"{shown}:{port}"


class AccessPolicy:
    """The admin's ``allowedRegistriesForImport`` and the refused address ranges."""

    def __init__(
        self,
        allowed: Sequence[AllowedRegistry] = (),
        *,
        implicit: Sequence[AllowedRegistry] = (),
        refused: Iterable[tuple[str, str]] = (),
    ) -> None:
        self.entries = tuple(_Entry.parse(e) for e in allowed)
        self.implicit = tuple(_Entry.parse(e, implicit=True) for e in implicit)
        self.restricted = bool(self.entries)
        ranges = [*ALWAYS_REFUSED, *refused]
        self.refused: tuple[tuple[Network, str], ...] = tuple(
            (ipaddress.ip_network(cidr, strict=False), what) for cidr, what in ranges
        )

    @classmethod
    def from_config(cls, config: Config) -> AccessPolicy:
        implicit = [AllowedRegistry(r, insecure=True) for r in config.insecure_registries]
        if config.registry_host:
            implicit.append(AllowedRegistry(config.registry_host, config.registry_insecure))
        return cls(
            config.allowed_registries_for_import,
            implicit=implicit,
            refused=[
                *(
                    (c, "in the cluster's Service range (serviceCIDRs)")
                    for c in config.service_cidrs
                ),
                *((c, "in the cluster's Pod range (podCIDRs)") for c in config.pod_cidrs),
            ],
        )

    def _entry(self, host: str, port: int | None, *, exact: bool = False) -> _Entry | None:
        """The entry that lists ``host:port`` (an insecure one first), or None."""
        found = [
            e
            for e in (*self.implicit, *self.entries)
            if e.matches(host, port) and not (exact and e.wildcard)
        ]
        found.sort(key=lambda e: not e.insecure)
        return found[0] if found else None

    # --- the registry of an import -----------------------------------------------

    def check_registry(self, registry: str, *, insecure: bool) -> None:
        """Whether an import may read from ``registry`` (host[:port]), insecurely or not."""
        host, port = split_host_port(registry)
        entry = self._entry(host, port)
        if entry is None and self.restricted:
            raise NotAllowed(f"registry {registry} is not allowed: it is not listed in {SETTING}")
        if insecure and (entry is None or not entry.insecure):
            listed = "its entry" if entry is not None else "an entry for it"
            raise NotAllowed(
                f"insecure access (plain HTTP or unverified TLS) to {registry} is not allowed: "
                f"{listed} in {SETTING} needs insecure: true"
            )
        address = _ip(host)
        if address is not None:
            self.check_address(host, port, address)

    # --- token realms and redirects ------------------------------------------------

    def check_realm(
        self, scheme: str, host: str, port: int, *, registry: str, registry_scheme: str
    ) -> None:
        """A Bearer realm: https, or the registry's own host and port, or listed."""
        reg_host, reg_port = split_host_port(registry)
        reg_effective = reg_port or (443 if registry_scheme == "https" else 80)
        shown = f"{scheme}://{_authority(host, port)}"
        if host == reg_host and port == reg_effective:
            if scheme == "https" or registry_scheme == "http":
                return
        elif scheme == "https":
            return
        entry = self._entry(host, port)
        if entry is not None and (scheme == "https" or entry.insecure):
            return
        raise NotAllowed(
            f"the Bearer realm {shown} of {registry} is refused: a realm must be https, "
            f"on the registry's own host, or listed in {SETTING}"
            + (" with insecure: true" if entry is not None else "")
        )

    def check_redirect(self, scheme: str, host: str, port: int, *, registry: str) -> None:
        """A redirect away from the registry: https, or listed (plain HTTP: insecure)."""
        if scheme == "https":
            return
        entry = self._entry(host, port)
        if entry is not None and entry.insecure:
            return
        raise NotAllowed(
            f"{registry} redirected to plain HTTP at {_authority(host, port)}, which is refused: "
            f"a redirect must be https or listed in {SETTING} with insecure: true"
        )

    # --- addresses -------------------------------------------------------------------

    def refused_range(self, address: Address) -> str | None:
        """What makes ``address`` internal (loopback, a Service range...), or None."""
        for network, what in self.refused:
            if address.version == network.version and address in network:
                return what
        return None

    def check_address(self, host: str, port: int | None, address: Address | str) -> None:
        """Refuse an internal ``address`` of ``host:port`` unless the host is listed exactly."""
        ip = _ip(address) if isinstance(address, str) else address
        if ip is None:
            raise NotAllowed(f"{_authority(host, port)}: {address!r} is not an IP address")
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        what = self.refused_range(ip)
        if what is None or self._entry(host, port, exact=True) is not None:
            return
        named = "" if _same_ip(host, str(ip)) else f" resolves to {ip}, which"
        raise NotAllowed(
            f"{_authority(host, port)}{named} is {what}: refused unless the host is listed "
            f"in {SETTING}"
        )

    def check_literal(self, host: str, port: int | None) -> None:
        """Before connecting: an IP literal host is checked here (no resolver sees it)."""
        address = _ip(host)
        if address is not None:
            self.check_address(host, port, address)
