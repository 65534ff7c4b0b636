"""operator/headwater/registry/reference.py.

Most tables are ported from github.com/distribution/reference (reference_test.go,
normalize_test.go, regexp_test.go); each says which Go test it comes from.
Upstream's ``Parse`` cases are run through ``parse_reference``, which is
``ParseNormalizedNamed``, so their expected domain and path are the normalised
ones (``test_com`` becomes ``docker.io/library/test_com``).
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from headwater.registry import reference as reference_module
from headwater.registry.reference import (
    DEFAULT_DOMAIN,
    DOCKER_HUB_API_HOST,
    Reference,
    ReferenceError,
    parse_docker_ref,
    parse_reference,
)

F64 = "f" * 64
F128 = "f" * 128
DBCC = "dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c"
BE17 = "be178c0543eb17f5f3043021c9e5fcf30285e557a4fc309cce97ff9ca6182912"
HUB = DEFAULT_DOMAIN

# --- reference_test.go: TestReferenceParse ------------------------------------

# (input, domain, path, tag, digest), normalised.
PARSE_VALID: list[tuple[str, str, str, str | None, str | None]] = [
    ("test_com", HUB, "library/test_com", None, None),
    ("test.com:tag", HUB, "library/test.com", "tag", None),
    ("test.com:5000", HUB, "library/test.com", "5000", None),
    ("test.com/repo:tag", "test.com", "repo", "tag", None),
    ("test:5000/repo", "test:5000", "repo", None, None),
    ("test:5000/repo:tag", "test:5000", "repo", "tag", None),
    (f"test:5000/repo@sha256:{F64}", "test:5000", "repo", None, f"sha256:{F64}"),
    (f"test:5000/repo:tag@sha256:{F64}", "test:5000", "repo", "tag", f"sha256:{F64}"),
    ("lowercase:Uppercase", HUB, "library/lowercase", "Uppercase", None),
    # 255 characters of path: the limit is on the path, so this is still valid.
    (
        "a/" * 127 + "a:tag-puts-this-over-max",
        HUB,
        "a/" * 127 + "a",
        "tag-puts-this-over-max",
        None,
    ),
    ("sub-dom1.foo.com/bar/baz/quux", "sub-dom1.foo.com", "bar/baz/quux", None, None),
    (
        "sub-dom1.foo.com/bar/baz/quux:some-long-tag",
        "sub-dom1.foo.com",
        "bar/baz/quux",
        "some-long-tag",
        None,
    ),
    (
        "b.gcr.io/test.example.com/my-app:test.example.com",
        "b.gcr.io",
        "test.example.com/my-app",
        "test.example.com",
        None,
    ),
    ("xn--n3h.com/myimage:xn--n3h.com", "xn--n3h.com", "myimage", "xn--n3h.com", None),
    (
        f"xn--7o8h.com/myimage:xn--7o8h.com@sha512:{F128}",
        "xn--7o8h.com",
        "myimage",
        "xn--7o8h.com",
        f"sha512:{F128}",
    ),
    ("foo_bar.com:8080", HUB, "library/foo_bar.com", "8080", None),
    ("foo/foo_bar.com:8080", HUB, "foo/foo_bar.com", "8080", None),
    ("192.168.1.1", HUB, "library/192.168.1.1", None, None),
    ("192.168.1.1:tag", HUB, "library/192.168.1.1", "tag", None),
    ("192.168.1.1:5000", HUB, "library/192.168.1.1", "5000", None),
    ("192.168.1.1/repo", "192.168.1.1", "repo", None, None),
    ("192.168.1.1:5000/repo", "192.168.1.1:5000", "repo", None, None),
    ("192.168.1.1:5000/repo:5050", "192.168.1.1:5000", "repo", "5050", None),
    ("[2001:db8::1]/repo", "[2001:db8::1]", "repo", None, None),
    ("[2001:db8:1:2:3:4:5:6]/repo:tag", "[2001:db8:1:2:3:4:5:6]", "repo", "tag", None),
    ("[2001:db8::1]:5000/repo", "[2001:db8::1]:5000", "repo", None, None),
    ("[2001:db8::1]:5000/repo:tag", "[2001:db8::1]:5000", "repo", "tag", None),
    (f"[2001:db8::1]:5000/repo@sha256:{F64}", "[2001:db8::1]:5000", "repo", None, f"sha256:{F64}"),
    (
        f"[2001:db8::1]:5000/repo:tag@sha256:{F64}",
        "[2001:db8::1]:5000",
        "repo",
        "tag",
        f"sha256:{F64}",
    ),
    ("[2001:db8::]:5000/repo", "[2001:db8::]:5000", "repo", None, None),
    ("[::1]:5000/repo", "[::1]:5000", "repo", None, None),
]

# (input, a fragment of the message, or "" where upstream only says "invalid reference format").
PARSE_INVALID: list[tuple[str, str]] = [
    ("", "at least one component"),
    (":justtag", ""),
    (f"@sha256:{F64}", ""),
    ("repo@sha256:" + "f" * 34, "digest length"),
    (f"validname@invaliddigest:{F64}", "unsupported digest algorithm"),
    ("Uppercase:tag", "must be lowercase"),
    ("test:5000/Uppercase/lowercase:tag", "must be lowercase"),
    ("a/" * 128 + "a:tag", "must not be more than 255 characters"),
    ("aa/asdf$$^/aa", ""),
    ("[2001:db8::1]", ""),
    ("[2001:db8::1]:5000", ""),
    ("[2001:db8::1]:tag", ""),
    ("[fe80::1%eth0]:5000/repo", ""),
    ("[fe80::1%@invalidzone]:5000/repo", ""),
]


@pytest.mark.parametrize(("text", "domain", "path", "tag", "digest"), PARSE_VALID)
def test_reference_parse(
    text: str, domain: str, path: str, tag: str | None, digest: str | None
) -> None:
    ref = parse_reference(text)
    assert ref == Reference(domain=domain, path=path, tag=tag, digest=digest)
    assert ref.name == f"{domain}/{path}"
    assert parse_reference(str(ref)) == ref


@pytest.mark.parametrize(("text", "fragment"), PARSE_INVALID)
def test_reference_parse_invalid(text: str, fragment: str) -> None:
    with pytest.raises(ReferenceError, match=re.escape(fragment) if fragment else None) as caught:
        parse_reference(text)
    assert str(caught.value).startswith("invalid reference format")


# --- reference_test.go: TestWithNameFailure -----------------------------------

WITH_NAME_FAILURE = [
    "",
    ":justtag",
    f"@sha256:{F64}",
    f"validname@invaliddigest:{F64}",
    "a/" * 128 + "a:tag",
    "aa/asdf$$^/aa",
]


@pytest.mark.parametrize("text", WITH_NAME_FAILURE)
def test_with_name_failure(text: str) -> None:
    with pytest.raises(ReferenceError):
        parse_reference(text)


# --- reference_test.go: TestDomainAndPath and normalize_test.go: TestNormalizedSplitHostname

DOMAIN_AND_PATH = [
    # TestDomainAndPath (upstream's un-normalised "" domain reads as docker.io here)
    ("test.com/foo", "test.com", "foo"),
    ("test_com/foo", HUB, "test_com/foo"),
    ("test:8080/foo", "test:8080", "foo"),
    ("test.com:8080/foo", "test.com:8080", "foo"),
    ("test-com:8080/foo", "test-com:8080", "foo"),
    ("xn--n3h.com:18080/foo", "xn--n3h.com:18080", "foo"),
    # TestNormalizedSplitHostname
    ("test.com/foo", "test.com", "foo"),
    ("test_com/foo", HUB, "test_com/foo"),
    ("docker/migrator", HUB, "docker/migrator"),
    ("test.com:8080/foo", "test.com:8080", "foo"),
    ("test-com:8080/foo", "test-com:8080", "foo"),
    ("foo", HUB, "library/foo"),
    ("xn--n3h.com/foo", "xn--n3h.com", "foo"),
    ("xn--n3h.com:18080/foo", "xn--n3h.com:18080", "foo"),
    ("docker.io/foo", HUB, "library/foo"),
    ("docker.io/library/foo", HUB, "library/foo"),
    ("docker.io/library/foo/bar", HUB, "library/foo/bar"),
]


@pytest.mark.parametrize(("text", "domain", "path"), DOMAIN_AND_PATH)
def test_domain_and_path(text: str, domain: str, path: str) -> None:
    ref = parse_reference(text)
    assert (ref.domain, ref.path) == (domain, path)


# --- reference_test.go: TestSerialization -------------------------------------

SERIALIZATION = [
    ("example.com:8000/named", "example.com:8000/named", None, None),
    ("example.com:8000/named:tagged", "example.com:8000/named", "tagged", None),
    (
        "other.com/named@sha256:1234567890098765432112345667890098765432112345667890098765432112",
        "other.com/named",
        None,
        "sha256:1234567890098765432112345667890098765432112345667890098765432112",
    ),
]


@pytest.mark.parametrize(("text", "name", "tag", "digest"), SERIALIZATION)
def test_serialization(text: str, name: str, tag: str | None, digest: str | None) -> None:
    ref = parse_reference(text)
    assert (ref.name, ref.tag, ref.digest) == (name, tag, digest)
    assert str(ref) == text


# --- reference_test.go: TestParseNamed (ParseNamed = canonical input only) ----

PARSE_NAMED = [
    ("test.com/foo", True),
    ("test:8080/foo", True),
    ("test_com/foo", False),
    ("test.com", False),
    ("foo", False),
    ("library/foo", False),
    ("docker.io/library/foo", True),
    # Ambiguous: the parser adds "library/" to foo.
    ("docker.io/foo", False),
]


@pytest.mark.parametrize(("text", "canonical"), PARSE_NAMED)
def test_parse_named_canonical(text: str, canonical: bool) -> None:
    assert (str(parse_reference(text)) == text) is canonical


# --- reference_test.go: TestWithDigest (short digests) ------------------------


def test_with_digest_validates_like_parse() -> None:
    # Upstream's WithDigest only checks the digest grammar and accepts this
    # 37-digit sha256; with_digest checks it as go-digest does, like parsing.
    ref = parse_reference("test.com:8000/foo:latest")
    with pytest.raises(ReferenceError, match="digest length"):
        ref.with_digest("sha256:1234567890098765432112345667890098765")


def test_with_digest_drops_tag() -> None:
    ref = parse_reference("test.com:8000/foo:latest")
    pinned = ref.with_digest(f"sha256:{DBCC}")
    assert pinned == Reference("test.com:8000", "foo", None, f"sha256:{DBCC}")
    assert str(pinned) == f"test.com:8000/foo@sha256:{DBCC}"


# --- normalize_test.go: TestValidateReferenceName -----------------------------

VALID_REPO_NAMES = [
    "docker/docker",
    "library/debian",
    "debian",
    "docker.io/docker/docker",
    "docker.io/library/debian",
    "docker.io/debian",
    "index.docker.io/docker/docker",
    "index.docker.io/library/debian",
    "index.docker.io/debian",
    "127.0.0.1:5000/docker/docker",
    "127.0.0.1:5000/library/debian",
    "127.0.0.1:5000/debian",
    "192.168.0.1",
    "192.168.0.1:80",
    "192.168.0.1:8/debian",
    "192.168.0.2:25000/debian",
    "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
    "[fc00::1]:5000/docker",
    "[fc00::1]:5000/docker/docker",
    "[fc00:1:2:3:4:5:6:7]:5000/library/debian",
    # Valid with a hostname: no longer mistakable for an image ID.
    "docker.io/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
    "Docker/docker",
    "DOCKER/docker",
]

INVALID_REPO_NAMES = [
    "https://github.com/docker/docker",
    "docker/Docker",
    "-docker",
    "-docker/docker",
    "-docker.io/docker/docker",
    "docker///docker",
    "docker.io/docker/Docker",
    "docker.io/docker///docker",
    "[fc00::1]",
    "[fc00::1]:5000",
    "fc00::1:5000/debian",
    "[fe80::1%eth0]:5000/debian",
    "[2001:db8:3:4::192.0.2.33]:5000/debian",
    "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
]

# --- normalize_test.go: TestValidateRemoteName --------------------------------

VALID_REMOTE_NAMES = [
    "docker/docker",
    "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
    "docker-rules/docker",
    "docker---rules/docker",
    "doc/docker",
    "d/docker",
    "jess/t",
    "dock__er/docker",
]

INVALID_REMOTE_NAMES = [
    "docker/Docker",
    "docker///docker",
    "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
    "-docker/docker",
    "docker-/docker",
    "-docker-/docker",
    "____/____",
    "_docker/_docker",
    "dock..er/docker",
    "dock_.er/docker",
    "dock-.er/docker",
    "docker/",
    "this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_"
    "this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_"
    "this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_"
    "this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255/docker",
]


@pytest.mark.parametrize("text", VALID_REPO_NAMES + VALID_REMOTE_NAMES)
def test_valid_names(text: str) -> None:
    parse_reference(text)


@pytest.mark.parametrize("text", INVALID_REPO_NAMES + INVALID_REMOTE_NAMES)
def test_invalid_names(text: str) -> None:
    with pytest.raises(ReferenceError):
        parse_reference(text)


# --- normalize_test.go: TestParseRepositoryInfo -------------------------------

# (path, familiar, full name, ambiguous spelling or "", domain)
REPOSITORY_INFO = [
    ("fooo/bar", "fooo/bar", "docker.io/fooo/bar", "index.docker.io/fooo/bar", HUB),
    ("library/ubuntu", "ubuntu", "docker.io/library/ubuntu", "library/ubuntu", HUB),
    ("nonlibrary/ubuntu", "nonlibrary/ubuntu", "docker.io/nonlibrary/ubuntu", "", HUB),
    ("other/library", "other/library", "docker.io/other/library", "", HUB),
    (
        "private/moonbase",
        "127.0.0.1:8000/private/moonbase",
        "127.0.0.1:8000/private/moonbase",
        "",
        "127.0.0.1:8000",
    ),
    (
        "privatebase",
        "127.0.0.1:8000/privatebase",
        "127.0.0.1:8000/privatebase",
        "",
        "127.0.0.1:8000",
    ),
    (
        "private/moonbase",
        "example.com/private/moonbase",
        "example.com/private/moonbase",
        "",
        "example.com",
    ),
    ("privatebase", "example.com/privatebase", "example.com/privatebase", "", "example.com"),
    (
        "private/moonbase",
        "example.com:8000/private/moonbase",
        "example.com:8000/private/moonbase",
        "",
        "example.com:8000",
    ),
    (
        "privatebasee",
        "example.com:8000/privatebasee",
        "example.com:8000/privatebasee",
        "",
        "example.com:8000",
    ),
    (
        "library/ubuntu-12.04-base",
        "ubuntu-12.04-base",
        "docker.io/library/ubuntu-12.04-base",
        "index.docker.io/library/ubuntu-12.04-base",
        HUB,
    ),
    ("library/foo", "foo", "docker.io/library/foo", "docker.io/foo", HUB),
    ("library/foo/bar", "library/foo/bar", "docker.io/library/foo/bar", "", HUB),
    ("store/foo/bar", "store/foo/bar", "docker.io/store/foo/bar", "", HUB),
    ("bar", "Foo/bar", "Foo/bar", "", "Foo"),
    ("bar", "FOO/bar", "FOO/bar", "", "FOO"),
]


@pytest.mark.parametrize(
    ("text", "path", "familiar", "full", "domain"),
    [
        pytest.param(spelling, path, familiar, full, domain, id=spelling)
        for path, familiar, full, ambiguous, domain in REPOSITORY_INFO
        for spelling in (familiar, full, ambiguous)
        if spelling
    ],
)
def test_parse_repository_info(text: str, path: str, familiar: str, full: str, domain: str) -> None:
    ref = parse_reference(text)
    assert ref.familiar() == familiar
    assert str(ref) == full
    assert ref.domain == domain
    assert ref.path == path


# --- normalize_test.go: TestParseReferenceWithTagAndDigest, TestInvalidReferenceComponents


def test_parse_reference_with_tag_and_digest() -> None:
    short = "busybox:latest@sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa"
    ref = parse_reference(short)
    assert str(ref) == "docker.io/library/" + short
    assert ref.tag == "latest"
    assert ref.digest is not None
    assert ref.familiar() == short


def test_invalid_reference_components() -> None:
    with pytest.raises(ReferenceError):
        parse_reference("-foo")
    with pytest.raises(ReferenceError):
        parse_reference("busybox").with_digest("foo")


# --- normalize_test.go: TestParseAnyReference (the named cases) ---------------

PARSE_ANY = [
    ("redis", "docker.io/library/redis"),
    ("redis:latest", "docker.io/library/redis:latest"),
    ("docker.io/library/redis:latest", "docker.io/library/redis:latest"),
    (f"redis@sha256:{DBCC}", f"docker.io/library/redis@sha256:{DBCC}"),
    (f"docker.io/library/redis@sha256:{DBCC}", f"docker.io/library/redis@sha256:{DBCC}"),
    ("dmcgowan/myapp", "docker.io/dmcgowan/myapp"),
    ("dmcgowan/myapp:latest", "docker.io/dmcgowan/myapp:latest"),
    ("docker.io/mcgowan/myapp:latest", "docker.io/mcgowan/myapp:latest"),
    (f"dmcgowan/myapp@sha256:{DBCC}", f"docker.io/dmcgowan/myapp@sha256:{DBCC}"),
    (f"docker.io/dmcgowan/myapp@sha256:{DBCC}", f"docker.io/dmcgowan/myapp@sha256:{DBCC}"),
    (DBCC[:-1], f"docker.io/library/{DBCC[:-1]}"),
    ("dbcc1", "docker.io/library/dbcc1"),
]


@pytest.mark.parametrize(("text", "equivalent"), PARSE_ANY)
def test_parse_any_reference_named(text: str, equivalent: str) -> None:
    ref = parse_reference(text)
    assert str(ref) == equivalent
    assert ref == parse_reference(equivalent)


def test_bare_image_id_is_not_a_name() -> None:
    # ParseAnyReference reads this as a digest; as a name it is refused.
    with pytest.raises(ReferenceError, match="hexadecimal"):
        parse_reference(DBCC)


# --- normalize_test.go: TestParseDockerRef ------------------------------------

E669 = "e6693c20186f837fc393390135d8a598a96a833917917789d63766cab6c59582"
PARSE_DOCKER_REF = [
    ("busybox", "docker.io/library/busybox:latest"),
    ("busybox:latest", "docker.io/library/busybox:latest"),
    (f"busybox@sha256:{E669}", f"docker.io/library/busybox@sha256:{E669}"),
    ("library/busybox", "docker.io/library/busybox:latest"),
    ("docker.io/busybox", "docker.io/library/busybox:latest"),
    ("docker.io/library/busybox", "docker.io/library/busybox:latest"),
    ("docker.io/busybox:latest", "docker.io/library/busybox:latest"),
    ("library/busybox:latest", "docker.io/library/busybox:latest"),
    ("docker.io/library/busybox:latest", "docker.io/library/busybox:latest"),
    ("gcr.io/library/busybox", "gcr.io/library/busybox:latest"),
    (
        f"gcr.io/library/busybox:latest@sha256:{E669}",
        f"gcr.io/library/busybox@sha256:{E669}",
    ),
]


@pytest.mark.parametrize(("text", "expected"), PARSE_DOCKER_REF)
def test_parse_docker_ref(text: str, expected: str) -> None:
    ref = parse_docker_ref(text)
    assert str(ref) == expected
    assert (ref.tag is None) != (ref.digest is None)
    assert parse_reference(expected) == ref


# --- regexp_test.go: TestDomainRegexp -----------------------------------------

DOMAIN_REGEXP = [
    ("test.com", True),
    ("test.com:10304", True),
    ("test.com:http", False),
    ("localhost", True),
    ("localhost:8080", True),
    ("a", True),
    ("a.b", True),
    ("ab.cd.com", True),
    ("a-b.com", True),
    ("-ab.com", False),
    ("ab-.com", False),
    ("ab.c-om", True),
    ("ab.-com", False),
    ("ab.com-", False),
    ("0101.com", True),
    ("001a.com", True),
    ("b.gbc.io:443", True),
    ("b.gbc.io", True),
    ("xn--n3h.com", True),
    ("Asdf.com", True),
    ("192.168.1.1:75050", True),
    ("192.168.1.1:750050", True),
    ("[fd00:1:2::3]:75050", True),
    ("[fd00:1:2::3]75050", False),
    ("[fd00:1:2::3]::75050", False),
    ("[fd00:1:2::3%eth0]:75050", False),
    ("[fd00123123123]:75050", True),
    ("[2001:0db8:85a3:0000:0000:8a2e:0370:7334]:75050", True),
    ("[2001:0db8:85a3:0000:0000:8a2e:0370:7334]:750505", True),
    ("fd00:1:2::3:75050", False),
]


@pytest.mark.parametrize(("text", "match"), DOMAIN_REGEXP)
def test_domain_regexp(text: str, match: bool) -> None:
    assert bool(reference_module._DOMAIN_AND_PORT_RE.fullmatch(text)) is match


# --- regexp_test.go: TestFullNameRegexp ---------------------------------------

# (input, (domain, path)) or (input, None) for no match.
FULL_NAME_REGEXP: list[tuple[str, tuple[str, str] | None]] = [
    ("", None),
    ("short", ("", "short")),
    ("simple/name", ("simple", "name")),
    ("library/ubuntu", ("library", "ubuntu")),
    ("docker/stevvooe/app", ("docker", "stevvooe/app")),
    (
        "aa/aa/aa/aa/aa/aa/aa/aa/aa/bb/bb/bb/bb/bb/bb",
        ("aa", "aa/aa/aa/aa/aa/aa/aa/aa/bb/bb/bb/bb/bb/bb"),
    ),
    ("aa/aa/bb/bb/bb", ("aa", "aa/bb/bb/bb")),
    ("a/a/a/a", ("a", "a/a/a")),
    ("a/a/a/a/", None),
    ("a//a/a", None),
    ("a", ("", "a")),
    ("a/aa", ("a", "aa")),
    ("a/aa/a", ("a", "aa/a")),
    ("foo.com", ("", "foo.com")),
    ("foo.com/", None),
    ("foo.com:8080/bar", ("foo.com:8080", "bar")),
    ("foo.com:http/bar", None),
    ("foo.com/bar", ("foo.com", "bar")),
    ("foo.com/bar/baz", ("foo.com", "bar/baz")),
    ("localhost:8080/bar", ("localhost:8080", "bar")),
    ("sub-dom1.foo.com/bar/baz/quux", ("sub-dom1.foo.com", "bar/baz/quux")),
    ("blog.foo.com/bar/baz", ("blog.foo.com", "bar/baz")),
    ("a^a", None),
    ("aa/asdf$$^/aa", None),
    ("asdf$$^/aa", None),
    ("aa-a/a", ("aa-a", "a")),
    ("a/" * 128 + "a", ("a", "a/" * 127 + "a")),
    ("a-/a/a/a", None),
    ("foo.com/a-/a/a", None),
    ("-foo/bar", None),
    ("foo/bar-", None),
    ("foo-/bar", None),
    ("foo/-bar", None),
    ("_foo/bar", None),
    ("foo_bar", ("", "foo_bar")),
    ("foo_bar.com", ("", "foo_bar.com")),
    ("foo_bar.com:8080", None),
    ("foo_bar.com:8080/app", None),
    ("foo.com/foo_bar", ("foo.com", "foo_bar")),
    ("____/____", None),
    ("_docker/_docker", None),
    ("docker_/docker_", None),
    ("b.gcr.io/test.example.com/my-app", ("b.gcr.io", "test.example.com/my-app")),
    ("xn--n3h.com/myimage", ("xn--n3h.com", "myimage")),
    ("xn--7o8h.com/myimage", ("xn--7o8h.com", "myimage")),
    ("example.com/xn--7o8h.com/myimage", ("example.com", "xn--7o8h.com/myimage")),
    (
        "example.com/some_separator__underscore/myimage",
        ("example.com", "some_separator__underscore/myimage"),
    ),
    ("example.com/__underscore/myimage", None),
    ("example.com/..dots/myimage", None),
    ("example.com/.dots/myimage", None),
    ("example.com/nodouble..dots/myimage", None),
    ("docker./docker", None),
    (".docker/docker", None),
    ("docker-/docker", None),
    ("-docker/docker", None),
    ("do..cker/docker", None),
    ("do__cker:8080/docker", None),
    ("do__cker/docker", ("", "do__cker/docker")),
    (
        "registry.io/foo/project--id.module--name.ver---sion--name",
        ("registry.io", "foo/project--id.module--name.ver---sion--name"),
    ),
    ("Asdf.com/foo/bar", ("Asdf.com", "foo/bar")),
    ("Foo/FarB", None),
]


@pytest.mark.parametrize(("text", "subs"), FULL_NAME_REGEXP)
def test_full_name_regexp(text: str, subs: tuple[str, str] | None) -> None:
    match = reference_module._ANCHORED_NAME_RE.fullmatch(text)
    if subs is None:
        assert match is None
    else:
        assert match is not None
        assert (match.group(1) or "", match.group(2)) == subs


# --- regexp_test.go: TestReferenceRegexp --------------------------------------

REFERENCE_REGEXP: list[tuple[str, tuple[str, str, str] | None]] = [
    ("registry.com:8080/myapp:tag", ("registry.com:8080/myapp", "tag", "")),
    (f"registry.com:8080/myapp@sha256:{BE17}", ("registry.com:8080/myapp", "", f"sha256:{BE17}")),
    (
        f"registry.com:8080/myapp:tag2@sha256:{BE17}",
        ("registry.com:8080/myapp", "tag2", f"sha256:{BE17}"),
    ),
    ("registry.com:8080/myapp@sha256:badbadbadbad", None),
    ("registry.com:8080/myapp:invalid~tag", None),
    ("bad_hostname.com:8080/myapp:tag", None),
    # localhost read as a name, with 8080 as its tag
    (f"localhost:8080@sha256:{BE17}", ("localhost", "8080", f"sha256:{BE17}")),
    (f"localhost:8080/name@sha256:{BE17}", ("localhost:8080/name", "", f"sha256:{BE17}")),
    (f"localhost:http/name@sha256:{BE17}", None),
    (f"localhost@sha256:{BE17}", ("localhost", "", f"sha256:{BE17}")),
    ("registry.com:8080/myapp@bad", None),
    ("registry.com:8080/myapp@2bad", None),
]


@pytest.mark.parametrize(("text", "subs"), REFERENCE_REGEXP)
def test_reference_regexp(text: str, subs: tuple[str, str, str] | None) -> None:
    match = reference_module._REFERENCE_RE.fullmatch(text)
    if subs is None:
        assert match is None
    else:
        assert match is not None
        assert (match.group(1), match.group(2) or "", match.group(3) or "") == subs


# --- regexp_test.go: TestIdentifierRegexp -------------------------------------

IDENTIFIER_REGEXP = [
    ("da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf9821", True),
    ("7EC43B381E5AEFE6E04EFB0B3F0693FF2A4A50652D64AEC573905F2DB5889A1C", False),
    ("da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf", False),
    ("sha256:da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf9821", False),
    ("da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf98218482", False),
]


@pytest.mark.parametrize(("text", "match"), IDENTIFIER_REGEXP)
def test_identifier_regexp(text: str, match: bool) -> None:
    assert bool(reference_module._IDENTIFIER_RE.fullmatch(text)) is match


# --- Headwater's own cases ----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        # Upstream returns these with an empty domain; nothing could pull from it.
        ("foo_bar.com/app", "not a valid registry host"),
        ("a.b_c/d", "not a valid registry host"),
        ("x" + "\n", ""),  # Python's "$" would have accepted the newline
        ("busybox:tag\n", ""),
        ("ǆ/x", ""),  # non-ASCII is never a name
        ("busybox:tàg", ""),  # Go's \w is ASCII, and so is ours
        (f"x@SHA256:{F64}", "must be lowercase"),
        (f"x@sha384:{'a' * 64}", "digest length"),
        (f"x.io/y@sha256:{'A' * 64}", "lowercase hex"),
        (f"x@sha1:{'a' * 40}", "unsupported digest algorithm"),
        ("busybox:" + "t" * 129, "tag must be"),
        ("busybox:-tag", "tag must be"),
        ("x.io/y@notadigest", "digest must be"),
        ("x.io:port/y", "registry host"),
    ],
)
def test_more_invalid(text: str, fragment: str) -> None:
    with pytest.raises(ReferenceError, match=re.escape(fragment) if fragment else None):
        parse_reference(text)


def test_input_length_is_capped_before_parsing() -> None:
    with pytest.raises(ReferenceError, match="longer than 4096"):
        parse_reference("a" * 4097)
    with pytest.raises(ReferenceError, match="longer than 10"):
        parse_reference("busybox:latest", max_length=10)


@pytest.mark.parametrize(
    "text",
    [
        "a-" * 2040 + "!",
        "a." * 2000 + "/!",
        "a__" * 1300 + "!",
        "x/" + "a-a." * 1000 + "-/a",
        "[" + "a:" * 2000 + "]/a!",
        "a" * 2000 + "@sha256:" + "a" * 2000 + "!",
    ],
)
def test_pathological_input_is_rejected(text: str) -> None:
    # The grammar has no ambiguous nested repetition; these finish at once.
    with pytest.raises(ReferenceError):
        parse_reference(text)


def test_api_host_and_familiar() -> None:
    hub = parse_reference("busybox:latest")
    assert hub.api_host == DOCKER_HUB_API_HOST
    assert hub.name == "docker.io/library/busybox"
    assert hub.familiar() == "busybox:latest"
    assert parse_reference("index.docker.io/library/busybox") == parse_reference("busybox")
    own = parse_reference("registry.example.com:5000/team/app:1.0")
    assert own.api_host == "registry.example.com:5000"
    assert own.familiar() == str(own)
    assert parse_reference("localhost/app").domain == "localhost"
    assert parse_reference("docker.io/library/a/b").familiar() == "library/a/b"


# --- properties ---------------------------------------------------------------

REFERENCE_ALPHABET = "abcxyzAZ019._-:/@[]%\n"


@given(st.one_of(st.text(max_size=300), st.text(REFERENCE_ALPHABET, max_size=120)))
def test_parse_raises_only_reference_error(text: str) -> None:
    try:
        ref = parse_reference(text)
    except ReferenceError:
        return
    assert parse_reference(str(ref)) == ref


_alnum = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=6)
_separator = st.sampled_from([".", "_", "__", "-", "---"])


@st.composite
def _path_component(draw: st.DrawFn) -> str:
    parts = [draw(_alnum)]
    for _ in range(draw(st.integers(0, 2))):
        parts += [draw(_separator), draw(_alnum)]
    return "".join(parts)


_label = st.from_regex(r"[a-zA-Z0-9]([a-zA-Z0-9-]{0,8}[a-zA-Z0-9])?", fullmatch=True)
_host = st.one_of(
    st.lists(_label, min_size=2, max_size=4).map(".".join),
    st.just("localhost"),
    st.from_regex(r"\[[0-9a-f]{1,4}(:[0-9a-f]{0,4}){1,7}\]", fullmatch=True),
    st.lists(st.integers(0, 255), min_size=4, max_size=4).map(lambda n: ".".join(map(str, n))),
)
_domain = st.one_of(
    st.none(),
    st.tuples(_host, st.none() | st.integers(1, 65535)).map(
        lambda hp: hp[0] if hp[1] is None else f"{hp[0]}:{hp[1]}"
    ),
)
_tag = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", fullmatch=True)
_digest = st.one_of(
    st.from_regex(r"sha256:[a-f0-9]{64}", fullmatch=True),
    st.from_regex(r"sha512:[a-f0-9]{128}", fullmatch=True),
)


@st.composite
def _reference_text(draw: st.DrawFn) -> str:
    domain = draw(_domain)
    path = "/".join(draw(st.lists(_path_component(), min_size=1, max_size=4)))
    text = path if domain is None else f"{domain}/{path}"
    if draw(st.booleans()):
        text += ":" + draw(_tag)
    if draw(st.booleans()):
        text += "@" + draw(_digest)
    return text


@given(_reference_text())
def test_generated_references_round_trip(text: str) -> None:
    try:
        ref = parse_reference(text)
    except ReferenceError as error:
        failure: str | None = str(error)
    else:
        failure = None
    if failure is not None:
        # The generator's only invalid output: a first path component with a
        # dot, which reads as a host, and an underscore, which no host has.
        assert "not a valid registry host" in failure
        return
    again = parse_reference(str(ref))
    assert again == ref
    assert str(again) == str(ref)
    assert parse_reference(ref.familiar()) == ref
    docker_ref = parse_docker_ref(str(ref))
    assert (docker_ref.tag is None) != (docker_ref.digest is None)
