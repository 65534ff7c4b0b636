"""Pure parts of the registry client: challenges, tokens, Retry-After, platforms, configs.

The cases for ``WWW-Authenticate`` come from RFC 7235 and from what registries
send (distribution, Docker Hub, GHCR, Quay, Harbor); the platform cases from
containerd's platforms package (database_test.go, compare_test.go).
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from headwater.registry.auth import (
    Challenge,
    ChallengeError,
    TokenCache,
    TokenKey,
    login_fingerprint,
    parse_www_authenticate,
    renew_at,
)
from headwater.registry.client import (
    Platform,
    RegistryError,
    choose_platform,
    parse_image_config,
    parse_retry_after,
)

# --- WWW-Authenticate -------------------------------------------------------------


def test_basic() -> None:
    assert parse_www_authenticate('Basic realm="Registry Realm"') == [
        Challenge("basic", {"realm": "Registry Realm"})
    ]


def test_bearer_with_all_parameters() -> None:
    header = (
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/busybox:pull,push",error="insufficient_scope"'
    )

    [challenge] = parse_www_authenticate(header)

    assert challenge.scheme == "bearer"
    assert challenge.realm == "https://auth.docker.io/token"
    assert dict(challenge.params) == {
        "realm": "https://auth.docker.io/token",
        "service": "registry.docker.io",
        "scope": "repository:library/busybox:pull,push",
        "error": "insufficient_scope",
    }


def test_scheme_and_names_are_case_insensitive_values_are_not() -> None:
    [challenge] = parse_www_authenticate('BEARER Realm="https://A/Token", SERVICE=Quay.IO')

    assert challenge.scheme == "bearer"
    assert dict(challenge.params) == {"realm": "https://A/Token", "service": "Quay.IO"}


def test_quoted_strings_hold_commas_equals_and_escapes() -> None:
    header = r'Bearer realm="https://r/t?a=1,b=2", scope="x \"quoted\" \\ y", service=s'

    [challenge] = parse_www_authenticate(header)

    assert dict(challenge.params) == {
        "realm": "https://r/t?a=1,b=2",
        "scope": 'x "quoted" \\ y',
        "service": "s",
    }


def test_whitespace_around_equals_and_empty_list_elements() -> None:
    header = ' , Bearer realm = "r" ,, service=\t"s" ,'

    assert parse_www_authenticate(header) == [Challenge("bearer", {"realm": "r", "service": "s"})]


def test_several_challenges_in_one_header() -> None:
    header = 'Basic realm="basic", Bearer realm="https://t/token",service="svc", Negotiate'

    assert parse_www_authenticate(header) == [
        Challenge("basic", {"realm": "basic"}),
        Challenge("bearer", {"realm": "https://t/token", "service": "svc"}),
        Challenge("negotiate", {}),
    ]


def test_token68() -> None:
    assert parse_www_authenticate("Negotiate YIIBhgYGKwYBBQUCoII=, Basic realm=x") == [
        Challenge("negotiate", {}, "YIIBhgYGKwYBBQUCoII="),
        Challenge("basic", {"realm": "x"}),
    ]


def test_a_parameter_without_value_is_token68_by_the_grammar() -> None:
    # RFC 7235's token68 may end in "=": the client rejects it for lack of a realm.
    assert parse_www_authenticate("Bearer realm=") == [Challenge("bearer", {}, "realm=")]


def test_empty_quoted_value() -> None:
    assert parse_www_authenticate('Bearer realm="",service=""') == [
        Challenge("bearer", {"realm": "", "service": ""})
    ]


@pytest.mark.parametrize(
    "header",
    [
        "",
        "   ",
        ",",
        'Bearer realm="unterminated',
        'Bearer realm="ends in a backslash\\',
        "Bearer realm=,service=x",
        'Bearer realm="a",realm="b"',
        'Bearer realm="a" service="b"',
        '="x"',
        'Bearer realm="a"; service="b"',
        "Basic=realm",
        'Bearer realm="ctl\x01char"',
        "Bearer (comment)",
        "B" * 20_000,
    ],
)
def test_malformed(header: str) -> None:
    with pytest.raises(ChallengeError):
        parse_www_authenticate(header)


@given(st.text(max_size=300))
def test_arbitrary_text_parses_or_raises_challenge_error(header: str) -> None:
    try:
        challenges = parse_www_authenticate(header)
    except ChallengeError:
        return
    assert challenges
    assert all(c.scheme and c.scheme == c.scheme.lower() for c in challenges)


_TOKEN_CHARS = st.sampled_from(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^_`|~"
)
_TOKENS = st.text(_TOKEN_CHARS, min_size=1, max_size=12)
_VALUES = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E) | st.just("\t"), max_size=40
)


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@given(
    st.lists(
        st.tuples(
            _TOKENS,
            st.dictionaries(_TOKENS.map(str.lower), _VALUES, max_size=4),
        ),
        min_size=1,
        max_size=3,
    )
)
def test_quoted_challenges_round_trip(challenges: list[tuple[str, dict[str, str]]]) -> None:
    header = ", ".join(
        f"{scheme} " + ", ".join(f"{name}={_quote(value)}" for name, value in params.items())
        for scheme, params in challenges
    )

    parsed = parse_www_authenticate(header)

    assert [(c.scheme, dict(c.params)) for c in parsed] == [
        (scheme.lower(), params) for scheme, params in challenges
    ]


# --- tokens ---------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


KEY = TokenKey("https://auth/token", "registry", "repository:a/b:pull", "")


def test_renewal_margin_is_ten_percent_at_most_thirty_seconds() -> None:
    assert renew_at(0.0, 60.0) == pytest.approx(54.0)
    assert renew_at(0.0, 3600.0) == pytest.approx(3570.0)


def test_token_cache_expires_before_the_token_does() -> None:
    clock = Clock()
    cache = TokenCache(clock)
    cache.put(KEY, "t1", 60.0)

    clock.now += 53
    assert cache.get(KEY) == "t1"
    clock.now += 2
    assert cache.get(KEY) is None


def test_token_cache_invalidates_only_the_refused_token() -> None:
    cache = TokenCache(Clock())
    cache.put(KEY, "new", 60.0)

    cache.invalidate(KEY, "old")
    assert cache.get(KEY) == "new"
    cache.invalidate(KEY, "new")
    assert cache.get(KEY) is None


async def test_concurrent_misses_share_one_fetch() -> None:
    cache = TokenCache(Clock())
    fetches = 0

    async def fetch() -> tuple[str, float]:
        nonlocal fetches
        fetches += 1
        await asyncio.sleep(0.01)
        return f"token-{fetches}", 300.0

    tokens = await asyncio.gather(*(cache.get_or_fetch(KEY, fetch) for _ in range(20)))

    assert set(tokens) == {"token-1"}
    assert fetches == 1


def test_login_fingerprint_separates_passwords_and_hides_them() -> None:
    right = login_fingerprint("alice", "s3cret")

    assert right != login_fingerprint("alice", "guess")
    assert right != login_fingerprint("alic", "es3cret")
    assert "s3cret" not in right
    assert login_fingerprint("", "") == ""


# --- Retry-After ------------------------------------------------------------------------

NOW = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        ("1.5", 1.5),
        ("Tue, 02 Jan 2024 03:05:05 GMT", 60.0),
        ("Tue, 02 Jan 2024 03:00:00 GMT", 0.0),  # in the past: now
        ("Tuesday, 02-Jan-24 03:04:15 GMT", 10.0),  # RFC 850, still allowed
        (None, None),
        ("", None),
        ("-5", None),
        ("soon", None),
        ("1e999", None),
        ("nan", None),
    ],
)
def test_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == seconds


@given(st.text(max_size=60))
def test_retry_after_never_raises(value: str) -> None:
    result = parse_retry_after(value, now=NOW)
    assert result is None or result >= 0


# --- platforms ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "platform"),
    [
        ("linux/amd64", Platform("linux", "amd64")),
        ("linux/arm64/v8", Platform("linux", "arm64", "v8")),
        ("windows/amd64", Platform("windows", "amd64")),
    ],
)
def test_platform_parse_and_str(text: str, platform: Platform) -> None:
    assert Platform.parse(text) == platform
    assert str(platform) == text


@pytest.mark.parametrize("text", ["linux", "linux/", "/amd64", "a/b/c/d", ""])
def test_platform_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="os/architecture"):
        Platform.parse(text)


@pytest.mark.parametrize(
    ("given_", "normal"),
    [
        ("linux/x86_64", "linux/amd64"),
        ("linux/x86-64", "linux/amd64"),
        ("linux/amd64/v1", "linux/amd64"),
        ("linux/amd64/v3", "linux/amd64/v3"),
        ("linux/aarch64", "linux/arm64"),
        ("linux/arm64/v8", "linux/arm64"),
        ("linux/arm64/8", "linux/arm64"),
        ("linux/armhf", "linux/arm/v7"),
        ("linux/armel", "linux/arm/v6"),
        ("linux/arm", "linux/arm/v7"),
        ("linux/arm/6", "linux/arm/v6"),
        ("linux/i386", "linux/386"),
        ("Linux/AMD64", "linux/amd64"),
        ("macos/arm64", "darwin/arm64"),
    ],
)
def test_platform_normalisation(given_: str, normal: str) -> None:
    assert str(Platform.parse(given_).normalized()) == normal


INDEX = [
    Platform("linux", "amd64"),
    Platform("linux", "arm64", "v8"),
    Platform("linux", "arm", "v6"),
    Platform("linux", "arm", "v7"),
    Platform("windows", "amd64"),
    None,  # an entry without a platform is never chosen
]


@pytest.mark.parametrize(
    ("wanted", "index"),
    [
        ("linux/amd64", 0),
        ("linux/x86_64", 0),
        ("linux/arm64", 1),
        ("linux/aarch64", 1),
        ("linux/arm64/v8", 1),
        ("linux/arm/v7", 3),  # exact beats the older compatible v6
        ("linux/arm", 3),
        ("linux/arm/v6", 2),
        ("linux/arm/v8", 3),  # newest compatible 32-bit variant
        ("linux/amd64/v3", 0),  # a v3 machine runs baseline amd64
        ("windows/amd64", 4),
        ("linux/s390x", None),
        ("linux/arm/v5", None),  # v5 runs neither v6 nor v7
        ("darwin/amd64", None),
    ],
)
def test_choose_platform(wanted: str, index: int | None) -> None:
    assert choose_platform(Platform.parse(wanted), INDEX) == index


def test_choose_platform_prefers_the_first_of_equals() -> None:
    candidates = [Platform("linux", "arm64", "v8"), Platform("linux", "aarch64")]
    assert choose_platform(Platform("linux", "arm64"), candidates) == 0


def test_choose_platform_baseline_amd64_does_not_take_a_newer_variant() -> None:
    assert choose_platform(Platform("linux", "amd64"), [Platform("linux", "amd64", "v3")]) is None


# --- image configs ----------------------------------------------------------------------


def test_config_with_mistyped_fields_keeps_what_it_can() -> None:
    blob = json.dumps(
        {
            "created": "not a time",
            "os": "linux",
            "architecture": 7,
            "config": {
                "Labels": {"ok": "yes", "bad": 1},
                "Cmd": ["a", 2, "b"],
                "Entrypoint": None,
                "ExposedPorts": ["80/tcp"],
                "User": None,
            },
        }
    ).encode()

    config = parse_image_config(blob)

    assert config.created is None
    assert dict(config.labels) == {"ok": "yes"}
    assert config.cmd == ("a", "b")
    assert config.entrypoint == ()
    assert config.exposed_ports == ()
    assert (config.os, config.architecture, config.user) == ("linux", "", "")


def test_config_go_zero_time_is_no_time() -> None:
    config = parse_image_config(b'{"created": "0001-01-01T00:00:00Z"}')
    assert config.created is None


@pytest.mark.parametrize("blob", [b"not json", b"[1, 2]", b'"string"'])
def test_config_that_is_not_an_object(blob: bytes) -> None:
    with pytest.raises(RegistryError) as caught:
        parse_image_config(blob)
    assert caught.value.reason == "InvalidManifest"
