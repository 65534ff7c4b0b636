"""operator/headwater/registry/credentials.py.

The matching tables are ported from kubernetes/kubernetes
pkg/credentialprovider/keyring_test.go and the secret parsing ones from
pkg/credentialprovider/config_test.go; each says which Go test it comes from
and where Headwater deliberately differs.
"""

from __future__ import annotations

import base64
import json
import re
import string
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from headwater.registry.credentials import (
    DOCKER_CONFIG_JSON_KEY,
    DOCKER_CONFIG_JSON_TYPE,
    DOCKERCFG_KEY,
    DOCKERCFG_TYPE,
    MAX_SECRET_BYTES,
    Credentials,
    CredentialsError,
    _key_matches,
    credentials_for,
    parse_docker_config_secret,
)
from headwater.registry.reference import ReferenceError, parse_reference

FOO = Credentials("foo", "bar")


def b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode()


def json_secret(document: Any) -> dict[str, str]:
    return {DOCKER_CONFIG_JSON_KEY: b64(json.dumps(document))}


def dockercfg_secret(document: Any) -> dict[str, str]:
    return {DOCKERCFG_KEY: b64(json.dumps(document))}


def lookup(image: str, *secrets: Mapping[str, Credentials]) -> list[Credentials]:
    return credentials_for(parse_reference(image), list(secrets))


# --- keyring_test.go: TestURLsMatch -------------------------------------------

URLS_MATCH = [
    # match when there is no path component
    ("*.kubernetes.io", "prefix.kubernetes.io", True),
    ("prefix.*.io", "prefix.kubernetes.io", True),
    ("prefix.kubernetes.*", "prefix.kubernetes.io", True),
    ("*-good.kubernetes.io", "prefix-good.kubernetes.io", True),
    # match with path components
    ("*.kubernetes.io/blah", "prefix.kubernetes.io/blah", True),
    ("prefix.*.io/foo", "prefix.kubernetes.io/foo/bar", True),
    # match with path components and ports
    ("*.kubernetes.io:1111/blah", "prefix.kubernetes.io:1111/blah", True),
    ("prefix.*.io:1111/foo", "prefix.kubernetes.io:1111/foo/bar", True),
    # no match when number of parts mismatch
    ("*.kubernetes.io", "kubernetes.io", False),
    ("*.*.kubernetes.io", "prefix.kubernetes.io", False),
    ("*.*.kubernetes.io", "kubernetes.io", False),
    ("*kubernetes.io", "a.kubernetes.io", False),
    # match when number of parts match
    ("*kubernetes.io", "kubernetes.io", True),
    ("*.*.*.kubernetes.io", "a.b.c.kubernetes.io", True),
    # no match when some parts mismatch
    ("kubernetes.io", "kubernetes.com", False),
    ("k*.io", "quay.io", False),
    # no match when ports mismatch
    ("*.kubernetes.io:1234/blah", "prefix.kubernetes.io:1111/blah", False),
    ("prefix.*.io/foo", "prefix.kubernetes.io:1111/foo/bar", False),
]


@pytest.mark.parametrize(("glob", "target", "expected"), URLS_MATCH)
def test_urls_match(glob: str, target: str, expected: bool) -> None:
    assert _key_matches(glob, target) is expected


# --- keyring_test.go: TestDockerKeyringForGlob and TestKeyringMiss ------------

FOR_GLOB = [
    ("https://hello.kubernetes.io", "hello.kubernetes.io"),
    ("https://*.docker.io", "prefix.docker.io"),
    ("https://prefix.*.io", "prefix.docker.io"),
    ("https://prefix.docker.*", "prefix.docker.io"),
    ("https://*.docker.io/path", "prefix.docker.io/path"),
    ("https://prefix.*.io/path", "prefix.docker.io/path/subpath"),
    ("https://prefix.docker.*/path", "prefix.docker.io/path"),
    ("https://*.docker.io:8888", "prefix.docker.io:8888"),
    ("https://prefix.*.io:8888", "prefix.docker.io:8888"),
    ("https://prefix.docker.*:8888", "prefix.docker.io:8888"),
    ("https://*.docker.io/path:1111", "prefix.docker.io/path:1111"),
    ("https://*.docker.io/v1/", "prefix.docker.io/path:1111"),
    ("https://*.docker.io/v2/", "prefix.docker.io/path:1111"),
    ("https://prefix.docker.*/path:1111", "prefix.docker.io/path:1111"),
    ("prefix.docker.io:1111", "prefix.docker.io:1111/path"),
    ("*.docker.io:1111", "prefix.docker.io:1111/path"),
]

KEYRING_MISS = [
    ("https://hello.kubernetes.io", "world.mesos.org/foo/bar"),
    ("https://*.docker.com", "prefix.docker.io"),
    ("https://suffix.*.io", "prefix.docker.io"),
    ("https://prefix.docker.c*", "prefix.docker.io"),
    ("https://prefix.*.io/path:1111", "prefix.docker.io/path/subpath:1111"),
    ("suffix.*.io", "prefix.docker.io"),
]


def _keyring_from_config(key: str) -> dict[str, Credentials]:
    # The Go tests write {key: {"email": ..., "auth": base64("foo:bar")}} as a .dockercfg.
    secret = dockercfg_secret({key: {"email": "foo@bar.baz", "auth": b64("foo:bar")}})
    return parse_docker_config_secret(DOCKERCFG_TYPE, secret)


def _image_or_none(text: str) -> str | None:
    try:
        parse_reference(text)
    except ReferenceError:
        return None
    return text


@pytest.mark.parametrize(("glob", "target"), FOR_GLOB)
def test_docker_keyring_for_glob(glob: str, target: str) -> None:
    keyring = _keyring_from_config(glob)
    assert keyring == {glob: FOO}
    assert _key_matches(glob, target + "/foo/bar")
    # Most targets are also image names; those go through credentials_for too.
    image = _image_or_none(target + "/foo/bar")
    if image is not None:
        assert lookup(image, keyring) == [FOO]


@pytest.mark.parametrize(("glob", "target"), KEYRING_MISS)
def test_keyring_miss(glob: str, target: str) -> None:
    keyring = _keyring_from_config(glob)
    assert not _key_matches(glob, target + "/foo/bar")
    image = _image_or_none(target + "/foo/bar")
    if image is not None:
        assert lookup(image, keyring) == []


# --- keyring_test.go: the Docker Hub tests and TestIsDefaultRegistryMatch -----

HUB_KEYRING = {"https://index.docker.io/v1/": FOO}


def test_keyring_miss_with_docker_hub_credentials() -> None:
    assert lookup("world.mesos.org/foo/bar", HUB_KEYRING) == []


def test_keyring_hit_with_unqualified_docker_hub() -> None:
    assert lookup("google/docker-registry", HUB_KEYRING) == [FOO]


def test_keyring_hit_with_unqualified_library_docker_hub() -> None:
    assert lookup("jenkins", HUB_KEYRING) == [FOO]


def test_keyring_hit_with_qualified_docker_hub() -> None:
    # Upstream looks up "index.docker.io/v1//google/docker-registry", which is
    # no image name; the qualified image is what it stands for.
    assert lookup("index.docker.io/google/docker-registry", HUB_KEYRING) == [FOO]


IS_DEFAULT_REGISTRY = [
    ("foo/bar", True),
    ("docker.io/foo/bar", True),
    ("index.docker.io/foo/bar", True),
    ("foo", True),
    ("", False),
    ("registry.tld/foo/bar", False),
    ("registry:5000/foo/bar", False),
    ("myhostdocker.io/foo/bar", False),
]


@pytest.mark.parametrize(("image", "expected"), IS_DEFAULT_REGISTRY)
def test_is_default_registry_match(image: str, expected: bool) -> None:
    # isDefaultRegistryMatch decides whether index.docker.io's login applies.
    # "" is no image at all here, so it cannot match.
    if not image:
        with pytest.raises(ReferenceError):
            parse_reference(image)
        return
    assert (lookup(image, {"index.docker.io": FOO}) == [FOO]) is expected


# --- keyring_test.go: TestDockerKeyringLookup and TestIssue3797 ---------------

ADA = Credentials("ada", "smash")
GRACE = Credentials("grace", "squash")
REX = Credentials("rex", "tiny arms")

# Upstream looks up bare hosts ("bar.example.com"); an image needs a path, so
# those become "<host>/app", which no key's path covers either.
KEYRING_LOOKUP = [
    # direct match
    ("bar.example.com/app", [ADA]),
    # direct match deeper than other possible matches
    ("bar.example.com/pong", [GRACE, ADA]),
    # no direct match, deeper path ignored
    ("bar.example.com/ping", [ADA]),
    # Deliberately different: upstream matches "pong" as a string prefix of
    # "pongz" and returns [GRACE, ADA]; paths match whole segments here.
    ("bar.example.com/pongz", [ADA]),
    # match regardless of sub-path
    ("bar.example.com/pong/pang", [GRACE, ADA]),
    # no host match
    ("example.com/app", []),
    ("foo.example.com/app", []),
]


@pytest.mark.parametrize(("image", "expected"), KEYRING_LOOKUP)
def test_docker_keyring_lookup(image: str, expected: list[Credentials]) -> None:
    keyring = {"bar.example.com/pong": GRACE, "bar.example.com": ADA}
    assert lookup(image, keyring) == expected


@pytest.mark.parametrize("image", ["quay.io/app", "quay.io/foo", "quay.io/foo/bar"])
def test_issue_3797(image: str) -> None:
    # A key with a scheme and a /v1/ path still matches every image on the host.
    assert lookup(image, {"https://quay.io/v1/": REX}) == [REX]


# --- Headwater's own matching rules -------------------------------------------


@pytest.mark.parametrize(
    "key", ["https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io"]
)
@pytest.mark.parametrize("image", ["busybox", "library/busybox:1", "docker.io/team/app"])
def test_every_docker_hub_spelling_matches_hub_images(key: str, image: str) -> None:
    assert lookup(image, {key: FOO}) == [FOO]
    assert lookup("quay.io/team/app", {key: FOO}) == []


def test_docker_hub_keys_with_paths() -> None:
    keyring = {"docker.io/team": GRACE, "index.docker.io": ADA}
    assert lookup("team/app", keyring) == [GRACE, ADA]
    assert lookup("other/app", keyring) == [ADA]
    assert lookup("docker.io/library/busybox", {"docker.io/library": REX}) == [REX]
    # A port is a different endpoint, even for Docker Hub's names.
    assert lookup("busybox", {"index.docker.io:443": FOO}) == []


@pytest.mark.parametrize(
    ("key", "image", "expected"),
    [
        ("registry.example.com:5000", "registry.example.com:5000/app", True),
        ("registry.example.com:5000", "registry.example.com/app", False),
        ("registry.example.com", "registry.example.com:5000/app", False),
        ("registry.example.com:5001", "registry.example.com:5000/app", False),
        ("https://registry.example.com:5000/v2/", "registry.example.com:5000/a/b", True),
        ("http://registry.example.com/team", "registry.example.com/team/app", True),
        ("registry.example.com/team/", "registry.example.com/team/app", True),
        ("registry.example.com/team", "registry.example.com/team", True),
        ("registry.example.com/team", "registry.example.com/teams/app", False),
        ("registry.example.com/team/app", "registry.example.com/team", False),
        ("REGISTRY.Example.com", "registry.example.com/app", True),
        ("registry.example.com", "Registry.Example.COM/app", True),
        ("*.example.com", "registry.example.com/app", True),
        ("*.example.com", "example.com/app", False),
        # "?" starts a URL query, as url.Parse reads it, so it is no glob in a key.
        ("r?g.example.com", "reg.example.com/app", False),
        ("r[a-e]g.example.com", "reg.example.com/app", True),
        ("r[^a-e]g.example.com", "reg.example.com/app", False),
        ("r[^x]g.example.com", "reg.example.com/app", True),
        ("r[s-z]g.example.com", "reg.example.com/app", False),
        ("r[z-a]g.example.com", "reg.example.com/app", False),  # Go accepts, matches nothing
        ("r[eg.example.com", "reg.example.com/app", False),  # malformed glob
        ("[reg.example.com", "reg.example.com/app", False),  # unclosed IPv6 bracket
        ("re\\g.example.com", "reg.example.com/app", True),
        ("[::1]:5000", "[::1]:5000/app", True),
        ("[::1]", "[::1]/app", True),
        ("[::1]", "[::2]/app", False),
        ("registry.example.com:http", "registry.example.com/app", False),
        ("user@registry.example.com", "registry.example.com/app", False),
        ("", "registry.example.com/app", False),
    ],
)
def test_key_matching(key: str, image: str, expected: bool) -> None:
    assert (lookup(image, {key: FOO}) == [FOO]) is expected


def test_order_most_specific_first_then_secret_order() -> None:
    first = {
        "registry.example.com": Credentials("host-1", "p"),
        "*.example.com": Credentials("glob", "p"),
        "registry.example.com/team": Credentials("team", "p"),
    }
    second = {
        "https://registry.example.com/v1/": Credentials("host-2", "p"),
        "registry.example.com/team/app": Credentials("app", "p"),
    }
    found = lookup("registry.example.com/team/app:1", first, second)
    assert [c.username for c in found] == ["app", "team", "host-1", "host-2", "glob"]


def test_duplicate_logins_are_returned_once() -> None:
    keyring = [{"docker.io": FOO, "index.docker.io": FOO}, {"https://index.docker.io/v1/": FOO}]
    assert credentials_for(parse_reference("busybox"), keyring) == [FOO]


# --- config_test.go: secret formats -------------------------------------------


def test_docker_config_json_decode() -> None:
    # TestDockerConfigJsonJSONDecode
    auths = {
        "http://foo.example.com": {
            "username": "foo",
            "password": "bar",
            "email": "foo@example.com",
        },
        "http://bar.example.com": {
            "username": "bar",
            "password": "baz",
            "email": "bar@example.com",
        },
    }
    parsed = parse_docker_config_secret(DOCKER_CONFIG_JSON_TYPE, json_secret({"auths": auths}))
    assert parsed == {
        "http://foo.example.com": Credentials("foo", "bar"),
        "http://bar.example.com": Credentials("bar", "baz"),
    }


def test_dockercfg_decode() -> None:
    # TestDockerConfigJSONDecode: the legacy flat map of a .dockercfg
    document = {
        "http://foo.example.com": {
            "username": "foo",
            "password": "bar",
            "email": "foo@example.com",
        },
        "http://bar.example.com": {
            "username": "bar",
            "password": "baz",
            "email": "bar@example.com",
        },
    }
    parsed = parse_docker_config_secret(DOCKERCFG_TYPE, dockercfg_secret(document))
    assert parsed == {
        "http://foo.example.com": Credentials("foo", "bar"),
        "http://bar.example.com": Credentials("bar", "baz"),
    }


def test_read_docker_config_file() -> None:
    # TestReadDockerConfigFile: the auth decodes to "foo:bar\n", kept as it is.
    body = (
        '{ "auths": { "http://foo.example.com":{"auth":"Zm9vOmJhcgo=","email":"foo@example.com"}}}'
    )
    secret = {DOCKER_CONFIG_JSON_KEY: b64(body)}
    parsed = parse_docker_config_secret(DOCKER_CONFIG_JSON_TYPE, secret)
    assert parsed == {"http://foo.example.com": Credentials("foo", "bar\n")}


# TestDockerConfigEntryJSONDecode: (entry, expected credentials, or None for failure)
ENTRY_DECODE: list[tuple[str, Credentials | None]] = [
    # simple case, just decode the fields
    (
        '{"username": "foo", "password": "bar", "email": "foo@example.com"}',
        Credentials("foo", "bar"),
    ),
    # auth field decodes to username & password
    ('{"auth": "Zm9vOmJhcg==", "email": "foo@example.com"}', Credentials("foo", "bar")),
    # auth field overrides username & password
    (
        '{"username": "foo", "password": "bar", "auth": "cGluZzpwb25n",'
        ' "email": "foo@example.com"}',
        Credentials("ping", "pong"),
    ),
    # poorly-formatted auth causes failure
    ('{"auth": "pants", "email": "foo@example.com"}', None),
    # invalid JSON causes failure
    ('{"email": false}', None),
]


@pytest.mark.parametrize(("entry", "expected"), ENTRY_DECODE)
def test_docker_config_entry_json_decode(entry: str, expected: Credentials | None) -> None:
    secret = {DOCKER_CONFIG_JSON_KEY: b64('{"auths": {"r.example.com": ' + entry + "}}")}
    if expected is None:
        with pytest.raises(CredentialsError, match=re.escape("'r.example.com'")):
            parse_docker_config_secret(DOCKER_CONFIG_JSON_TYPE, secret)
    else:
        parsed = parse_docker_config_secret(DOCKER_CONFIG_JSON_TYPE, secret)
        assert parsed == {"r.example.com": expected}


# TestDecodeDockerConfigFieldAuth, plus unpadded base64, which the kubelet accepts too.
FIELD_AUTH: list[tuple[str, tuple[str, str] | None]] = [
    ("Zm9vOmJhcg==", ("foo", "bar")),
    ("cGFudHM=", None),  # good base64, but no colon
    ("pants", None),  # bad base64
    ("Zm9vOmJhcg", ("foo", "bar")),
    (b64("user:pass:with:colons"), ("user", "pass:with:colons")),
    (b64(b"\xff:x"), None),  # not UTF-8
]


@pytest.mark.parametrize(("auth", "expected"), FIELD_AUTH)
def test_decode_docker_config_field_auth(auth: str, expected: tuple[str, str] | None) -> None:
    secret = dockercfg_secret({"r.example.com": {"auth": auth}})
    if expected is None:
        with pytest.raises(CredentialsError, match="'auth'"):
            parse_docker_config_secret(DOCKERCFG_TYPE, secret)
    else:
        parsed = parse_docker_config_secret(DOCKERCFG_TYPE, secret)
        assert parsed == {"r.example.com": Credentials(*expected)}


# --- Headwater's own secret rules ---------------------------------------------


def test_identity_token_is_kept() -> None:
    secret = json_secret(
        {"auths": {"r.example.com": {"auth": b64("<token>:"), "identitytoken": "t0k"}}}
    )
    parsed = parse_docker_config_secret(DOCKER_CONFIG_JSON_TYPE, secret)
    assert parsed == {"r.example.com": Credentials("<token>", "", identity_token="t0k")}


def test_empty_entries_are_dropped_and_nulls_are_empty() -> None:
    document = {
        "auths": {
            "empty.example.com": {},
            "null.example.com": {"username": None, "password": None, "email": "x@example.com"},
            "r.example.com": {"username": "u", "password": "p", "serveraddress": "ignored"},
        }
    }
    parsed = parse_docker_config_secret(DOCKER_CONFIG_JSON_TYPE, json_secret(document))
    assert parsed == {"r.example.com": Credentials("u", "p")}


@pytest.mark.parametrize(
    ("secret_type", "data", "fragment"),
    [
        ("Opaque", json_secret({"auths": {}}), "is not 'kubernetes.io/dockerconfigjson'"),
        (DOCKER_CONFIG_JSON_TYPE, dockercfg_secret({}), "has no '.dockerconfigjson' key"),
        (DOCKERCFG_TYPE, json_secret({}), "has no '.dockercfg' key"),
        (DOCKER_CONFIG_JSON_TYPE, {DOCKER_CONFIG_JSON_KEY: ""}, "is empty"),
        (DOCKER_CONFIG_JSON_TYPE, {DOCKER_CONFIG_JSON_KEY: "not base64!"}, "not valid base64"),
        (DOCKER_CONFIG_JSON_TYPE, {DOCKER_CONFIG_JSON_KEY: "é"}, "not valid base64"),
        (DOCKER_CONFIG_JSON_TYPE, {DOCKER_CONFIG_JSON_KEY: b64("{")}, "not valid JSON"),
        (DOCKER_CONFIG_JSON_TYPE, {DOCKER_CONFIG_JSON_KEY: b64(b"\xff")}, "not valid JSON"),
        (DOCKER_CONFIG_JSON_TYPE, {DOCKER_CONFIG_JSON_KEY: b64("[" * 100_000)}, "not valid JSON"),
        (DOCKER_CONFIG_JSON_TYPE, json_secret([]), "not a JSON object"),
        # A legacy .dockercfg body under the new key.
        (DOCKER_CONFIG_JSON_TYPE, json_secret({"r.example.com": {}}), 'no "auths" object'),
        (DOCKER_CONFIG_JSON_TYPE, json_secret({"auths": []}), 'no "auths" object'),
        (DOCKERCFG_TYPE, dockercfg_secret({"r.example.com": "x"}), "is not a JSON object"),
        (DOCKERCFG_TYPE, dockercfg_secret({"r.example.com": {"password": 1}}), "not a string"),
        (
            DOCKER_CONFIG_JSON_TYPE,
            {DOCKER_CONFIG_JSON_KEY: "A" * ((MAX_SECRET_BYTES // 3 + 1) * 4)},
            "larger than",
        ),
    ],
)
def test_bad_secrets(secret_type: str, data: dict[str, str], fragment: str) -> None:
    with pytest.raises(CredentialsError, match=fragment) as caught:
        parse_docker_config_secret(secret_type, data)
    # Nothing of the decoder's own error, which may quote the input, is attached.
    assert caught.value.__cause__ is None


def test_max_sized_secret_is_accepted() -> None:
    padding = " " * (MAX_SECRET_BYTES - 64)
    body = '{"auths": {}}' + padding
    assert len(body) <= MAX_SECRET_BYTES
    secret = {DOCKER_CONFIG_JSON_KEY: b64(body)}
    assert parse_docker_config_secret(DOCKER_CONFIG_JSON_TYPE, secret) == {}


def test_credentials_repr_hides_secrets() -> None:
    credentials = Credentials("robot", "hunter2", identity_token="tok-123")
    assert "hunter2" not in repr(credentials)
    assert "tok-123" not in repr(credentials)
    assert "robot" in repr(credentials)
    assert "hunter2" not in str({"r": credentials})


# --- properties ---------------------------------------------------------------

# Prefixes no message contains, so a hit can only be a leak.
_username = st.text("0123456789", min_size=1, max_size=12).map(lambda s: "u" + s)
# Printable and unescaped by repr, so a leak into a repr would show verbatim.
_password = st.text(
    string.ascii_letters + string.digits + "!#$%&()*+,-./;<=>?@[]^_{|}~ ", max_size=24
).map(lambda s: "pw-" + s)
_token = st.text("abcdef0123456789", min_size=1, max_size=24).map(lambda s: "tk" + s)


@given(_username, _password, _token)
def test_parsed_credentials_hide_secrets(username: str, password: str, token: str) -> None:
    document = {
        "auths": {
            "a.example.com": {"auth": b64(f"{username}:{password}")},
            "b.example.com": {"username": username, "password": password, "identitytoken": token},
        }
    }
    parsed = parse_docker_config_secret(DOCKER_CONFIG_JSON_TYPE, json_secret(document))
    assert parsed["a.example.com"] == Credentials(username, password)
    assert parsed["b.example.com"].identity_token == token
    for shown in (repr(parsed), str(parsed), repr(list(parsed.values()))):
        assert password not in shown
        assert token not in shown


def _broken_secrets(password: str, token: str) -> list[tuple[str, dict[str, str]]]:
    """Secrets that fail to parse while holding the password and token somewhere."""
    entry = {"username": "u", "password": password, "identitytoken": token}
    return [
        # the password where a colon was expected
        (DOCKERCFG_TYPE, dockercfg_secret({"r.example.com": {"auth": b64(password + token)}})),
        # broken JSON around the secrets
        (DOCKER_CONFIG_JSON_TYPE, {DOCKER_CONFIG_JSON_KEY: b64(json.dumps(entry)[:-1])}),
        # a non-string beside them
        (DOCKERCFG_TYPE, dockercfg_secret({"r.example.com": {**entry, "email": 1}})),
        # the secrets under the wrong type
        (DOCKER_CONFIG_JSON_TYPE, dockercfg_secret({"r.example.com": entry})),
        (DOCKER_CONFIG_JSON_TYPE, json_secret({"r.example.com": entry})),
        # invalid UTF-8 after them
        (DOCKERCFG_TYPE, {DOCKERCFG_KEY: b64(json.dumps(entry).encode() + b"\xff")}),
        # bad base64 made of them
        (DOCKERCFG_TYPE, {DOCKERCFG_KEY: password + token + "!"}),
        (DOCKERCFG_TYPE, dockercfg_secret({"r.example.com": {"auth": token + "!"}})),
    ]


@given(_password, _token)
def test_errors_never_show_secrets(password: str, token: str) -> None:
    for secret_type, data in _broken_secrets(password, token):
        with pytest.raises(CredentialsError) as caught:
            parse_docker_config_secret(secret_type, data)
        error = caught.value
        for shown in (str(error), repr(error)):
            assert password not in shown
            assert token not in shown
            assert data.get(DOCKERCFG_KEY, data.get(DOCKER_CONFIG_JSON_KEY, "x")) not in shown
        assert error.__cause__ is None
        assert error.__context__ is None or error.__suppress_context__
