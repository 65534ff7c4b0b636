"""The import policy (allowedRegistriesForImport, refused ranges, realms, redirects), pure."""

from __future__ import annotations

import pytest

from headwater.config import AllowedRegistry, Config
from headwater.registry.policy import AccessPolicy, NotAllowed, split_host_port

CLUSTER = [("10.96.0.0/12", "in the Service range"), ("10.244.0.0/16", "in the Pod range")]


def policy(*entries: str | tuple[str, bool], **kwargs: object) -> AccessPolicy:
    allowed = [
        AllowedRegistry(e, False) if isinstance(e, str) else AllowedRegistry(e[0], e[1])
        for e in entries
    ]
    return AccessPolicy(allowed, refused=CLUSTER, **kwargs)  # type: ignore[arg-type]


def refused(check: object, *args: object, **kwargs: object) -> str:
    with pytest.raises(NotAllowed) as caught:
        check(*args, **kwargs)  # type: ignore[operator]
    return caught.value.message


@pytest.mark.parametrize(
    ("authority", "expected"),
    [
        ("quay.io", ("quay.io", None)),
        ("Quay.IO:5000", ("quay.io", 5000)),
        ("[::1]:5000", ("::1", 5000)),
        ("[fe80::1]", ("fe80::1", None)),
        ("127.0.0.1:80", ("127.0.0.1", 80)),
    ],
)
def test_split_host_port(authority: str, expected: tuple[str, int | None]) -> None:
    assert split_host_port(authority) == expected


# --- the registry of an import -------------------------------------------------------


def test_an_empty_list_allows_public_hosts_securely() -> None:
    p = policy()
    p.check_registry("quay.io", insecure=False)
    p.check_registry("registry.example.com:5000", insecure=False)
    p.check_registry("192.0.2.10:5000", insecure=False)  # not internal: allowed


def test_an_empty_list_allows_no_insecure_access() -> None:
    message = refused(policy().check_registry, "quay.io", insecure=True)
    assert message == (
        "insecure access (plain HTTP or unverified TLS) to quay.io is not allowed: "
        "an entry for it in allowedRegistriesForImport needs insecure: true"
    )


@pytest.mark.parametrize(
    ("registry", "what"),
    [
        ("127.0.0.1:5000", "loopback"),
        ("127.8.9.10", "loopback"),
        ("169.254.169.254", "link-local"),
        ("[::1]:5000", "loopback"),
        ("[fe80::1]:5000", "link-local"),
        ("[::ffff:169.254.169.254]", "link-local"),
        ("0.0.0.0:5000", "unspecified"),
        ("[::]", "unspecified"),
        ("10.96.0.1:443", "in the Service range"),
        ("10.244.3.4:5000", "in the Pod range"),
    ],
)
def test_internal_addresses_are_refused_unless_listed(registry: str, what: str) -> None:
    message = refused(policy().check_registry, registry, insecure=False)
    assert f"is {what}: refused unless the host is listed in allowedRegistriesForImport" in (
        message
    )
    listed = policy((registry, False))
    listed.check_registry(registry, insecure=False)


def test_a_non_empty_list_allows_only_listed_hosts() -> None:
    p = policy("quay.io", "*.example.com", "ghcr.io:*", "registry.local:5000")
    for ok in (
        "quay.io",
        "a.example.com",
        "a.b.example.com",
        "ghcr.io:8443",
        "registry.local:5000",
    ):
        p.check_registry(ok, insecure=False)
    for bad in ("docker.io", "example.com", "quay.io:5000", "registry.local:5001", "evil.io"):
        assert refused(p.check_registry, bad, insecure=False) == (
            f"registry {bad} is not allowed: it is not listed in allowedRegistriesForImport"
        )


def test_an_entry_without_a_port_matches_the_default_ports() -> None:
    p = policy("quay.io")
    p.check_registry("quay.io:443", insecure=False)
    p.check_registry("quay.io", insecure=False)
    p.check_literal("quay.io", 80)
    refused(p.check_registry, "quay.io:8443", insecure=False)
    # An entry with 443 also names the registry written without a port.
    policy("quay.io:443").check_registry("quay.io", insecure=False)


def test_globs_are_case_insensitive_and_match_whole_names() -> None:
    p = policy("*.Example.com")
    p.check_registry("REG.example.COM", insecure=False)
    refused(p.check_registry, "example.com.evil.io", insecure=False)
    refused(p.check_registry, "exampleXcom", insecure=False)


def test_docker_hub_is_listed_as_docker_io() -> None:
    p = policy("docker.io")
    p.check_registry("registry-1.docker.io", insecure=False)
    p.check_registry("index.docker.io", insecure=False)


def test_insecure_needs_both_the_tag_and_the_entry() -> None:
    p = policy(("plain.example.com:5000", True), "tls.example.com")
    p.check_registry("plain.example.com:5000", insecure=True)
    p.check_registry("plain.example.com:5000", insecure=False)  # TLS is never refused
    assert "its entry in allowedRegistriesForImport needs insecure: true" in refused(
        p.check_registry, "tls.example.com", insecure=True
    )


def test_a_wildcard_never_opens_internal_addresses() -> None:
    p = policy(("*", True))
    p.check_registry("anything.example.com", insecure=True)
    assert "is link-local" in refused(p.check_registry, "169.254.169.254", insecure=False)
    assert "is loopback" in refused(p.check_address, "localhost", 5000, "127.0.0.1")
    # An exact host with any port does.
    policy(("127.0.0.1:*", True)).check_registry("127.0.0.1:41234", insecure=True)


def test_a_resolved_address_is_checked_against_the_name_listed() -> None:
    p = policy("registry.internal:5000")
    p.check_address("registry.internal", 5000, "10.96.5.5")  # listed: the admin meant it
    message = refused(p.check_address, "evil.example.com", 443, "169.254.169.254")
    assert message == (
        "evil.example.com:443 resolves to 169.254.169.254, which is link-local: "
        "refused unless the host is listed in allowedRegistriesForImport"
    )
    assert "is loopback" in refused(p.check_address, "rebind.example.com", 443, "::ffff:127.0.0.1")


def test_the_operators_own_registries_are_listed_implicitly() -> None:
    config = Config(
        registry="10.244.0.1:5000/builds",
        registry_insecure=True,
        insecure_registries=("10.244.0.1:5002",),
        allowed_registries_for_import=(AllowedRegistry("quay.io"),),
    )
    p = AccessPolicy.from_config(config)
    p.check_registry("10.244.0.1:5000", insecure=True)
    p.check_registry("10.244.0.1:5002", insecure=True)
    p.check_registry("quay.io", insecure=False)
    assert "in the cluster's Pod range (podCIDRs)" in refused(
        p.check_address, "10.244.0.1", 5001, "10.244.0.1"
    )
    assert "not listed" in refused(p.check_registry, "10.244.0.1:5001", insecure=False)
    secure = AccessPolicy.from_config(Config(registry="reg.example.com"))
    refused(secure.check_registry, "reg.example.com", insecure=True)


def test_the_cluster_ranges_come_from_the_config() -> None:
    p = AccessPolicy.from_config(Config(service_cidrs=("172.30.0.0/16",), pod_cidrs=()))
    assert "Service range (serviceCIDRs)" in refused(p.check_registry, "172.30.0.1", insecure=False)
    p.check_registry("10.244.0.7:5000", insecure=False)
    p.check_registry("10.96.0.1", insecure=False)


# --- realms and redirects ------------------------------------------------------------


def test_a_realm_may_be_https_anywhere_public() -> None:
    p = policy("docker.io")
    p.check_realm(
        "https", "auth.docker.io", 443, registry="registry-1.docker.io", registry_scheme="https"
    )


def test_a_realm_on_the_registrys_own_host_and_port_may_be_plain_http_when_it_is() -> None:
    p = policy(("127.0.0.1:5000", True))
    p.check_realm("http", "127.0.0.1", 5000, registry="127.0.0.1:5000", registry_scheme="http")
    # A registry spoken to over HTTPS (listed secure): no downgrade for the token.
    secure = policy("127.0.0.1:5000")
    assert "a realm must be https" in refused(
        secure.check_realm,
        "http",
        "127.0.0.1",
        5000,
        registry="127.0.0.1:5000",
        registry_scheme="https",
    )


def test_a_plain_http_realm_elsewhere_is_refused_unless_listed_insecure() -> None:
    p = policy(("127.0.0.1:5000", True))
    message = refused(
        p.check_realm, "http", "127.0.0.1", 5001, registry="127.0.0.1:5000", registry_scheme="http"
    )
    assert message == (
        "the Bearer realm http://127.0.0.1:5001 of 127.0.0.1:5000 is refused: a realm must be "
        "https, on the registry's own host, or listed in allowedRegistriesForImport"
    )
    assert message.endswith("allowedRegistriesForImport")
    listed_secure = policy(("127.0.0.1:5000", True), "token.example.com:80")
    assert refused(
        listed_secure.check_realm,
        "http",
        "token.example.com",
        80,
        registry="127.0.0.1:5000",
        registry_scheme="http",
    ).endswith("with insecure: true")
    policy(("127.0.0.1:*", True)).check_realm(
        "http", "127.0.0.1", 5001, registry="127.0.0.1:5000", registry_scheme="http"
    )


def test_redirects_must_be_https_or_listed_insecure() -> None:
    p = policy(("cdn.local:8080", True))
    p.check_redirect("https", "cdn.example.com", 443, registry="quay.io")
    p.check_redirect("http", "cdn.local", 8080, registry="quay.io")
    assert refused(p.check_redirect, "http", "169.254.169.254", 80, registry="quay.io") == (
        "quay.io redirected to plain HTTP at 169.254.169.254:80, which is refused: "
        "a redirect must be https or listed in allowedRegistriesForImport with insecure: true"
    )
    # https passes here; the address check before connecting refuses it.
    p.check_redirect("https", "169.254.169.254", 443, registry="quay.io")
    assert "is link-local" in refused(p.check_literal, "169.254.169.254", 443)
