"""Inputs a tenant controls cannot stall the operator's event loop or blow up its memory.

Each hostile input here is one that, before these bounds, held the event loop
for seconds to hours or expanded to hundreds of megabytes; each must now be
refused (or handled) in well under a second.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from headwater.builds.instantiate import RequestError, parse_request
from headwater.builds.observe import _report
from headwater.builds.webhooks import HookCall, decide
from headwater.documents import DocumentError, Limits, load_json, load_yaml
from headwater.imports.notifications import NotificationError, parse_notification
from headwater.registry.client import RegistryError, _parse_link_next, parse_image_config
from headwater.registry.credentials import (
    CredentialsError,
    _glob_match,
    _key_matches,
    credentials_for,
    parse_docker_config_secret,
)
from headwater.registry.reference import parse_reference
from headwater.workloads.triggers import TriggerError, parse_triggers
from tests.hostile import LAUGHS, docker_config_data, star_glob
from tests.unit.test_build_webhooks import ALL, SECRET, SECRETS, buildconfig, trigger

BUDGET = 1.0
"""Seconds any one hostile input may take (the issue's bound)."""


@contextmanager
def within(seconds: float = BUDGET) -> Iterator[None]:
    started = time.perf_counter()
    yield
    took = time.perf_counter() - started
    assert took < seconds, f"took {took:.2f}s"


# --- YAML and JSON documents -------------------------------------------------------------

YAML = {"Content-Type": "application/yaml"}
JSON = {"Content-Type": "application/json"}
SMALL = Limits(max_bytes=4096, max_nodes=50, max_depth=5)


def generic(body: bytes, headers: dict[str, str]) -> HookCall:
    return HookCall("shop", "web", SECRET, "generic", "POST", headers, body)


def test_billion_laughs_webhook_body_is_refused_at_once() -> None:
    assert len(LAUGHS) < 500
    with within():
        result = decide(generic(LAUGHS, YAML), ALL, SECRETS)
    assert result.status == 400
    assert "alias" in result.body["message"] or "anchor" in result.body["message"]
    assert len(json.dumps(result.body)) < 1000


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (b"a: &x 1\nb: 2\n", "anchors"),
        (b"a: *x\n", "aliases"),
        (b"[" * 30 + b"]" * 30, "deeper"),
        (b"[" + b"1," * 60 + b"1]", "more than 50"),
        (b"a: 2001-12-14\n", "date"),
        (b"a: !!binary aGk=\n", "bytes"),
        (b"a: !!python/object:os.system ls\n", "not YAML"),
        (b"? [a]\n: b\n", "not YAML"),
        (b"x" * 5000, "larger"),
    ],
)
def test_yaml_documents_outside_the_bounds(text: bytes, fragment: str) -> None:
    with within(), pytest.raises(DocumentError, match=fragment):
        load_yaml(text, SMALL)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (b"[" * 100_000, "deeper"),
        (b'{"a":' * 100_000, "deeper"),
        (b"[" * 30 + b"]" * 30, "deeper"),
        (b"[" + b"1," * 60 + b"1]", "more than 50"),
        (b"1" * 5000, "too long"),
        (b"\xff", "UTF-8"),
        (b'{"a": 1', "not JSON"),
    ],
)
def test_json_documents_outside_the_bounds(text: bytes, fragment: str) -> None:
    limits = Limits(max_bytes=1 << 20, max_nodes=50, max_depth=5)
    with within(), pytest.raises(DocumentError, match=fragment):
        load_json(text, limits)


def test_documents_within_the_bounds_load() -> None:
    assert load_yaml(b"git:\n  ref: main\nenv: [{name: A, value: '1'}]\n", SMALL) == {
        "git": {"ref": "main"},
        "env": [{"name": "A", "value": "1"}],
    }
    assert load_yaml(b"", SMALL) is None
    assert load_json(b'{"a": [1, 2.5, true, null, "x"]}', SMALL) == {"a": [1, 2.5, True, None, "x"]}


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 200_000 + b"]" * 200_000,
        b'{"ref": "refs/heads/x", "a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"ref": 1' + b"0" * 5000 + b"}",
    ],
)
def test_deep_or_huge_json_webhook_payloads_are_a_400(body: bytes) -> None:
    headers = {"Content-Type": "application/json", "X-GitHub-Event": "push"}
    hook = HookCall("shop", "web", SECRET, "github", "POST", headers, body)
    with within():
        result = decide(hook, ALL, SECRETS)
    assert result.status == 400, result.body


def test_a_huge_ref_is_not_echoed_back() -> None:
    body = json.dumps({"git": {"ref": "x" * 200_000}}).encode()
    with within():
        result = decide(generic(body, JSON), ALL, SECRETS)
    assert result.status == 200
    assert len(result.body["message"]) < 400


def test_generic_bodies_are_capped_smaller_than_provider_payloads() -> None:
    body = json.dumps({"git": {"ref": "main"}, "pad": "x" * 300_000}).encode()
    result = decide(generic(body, JSON), ALL, SECRETS)
    assert result.status == 413, result.body


def test_bitbucket_raw_author_with_a_long_run_of_spaces_is_linear() -> None:
    raw = "a" + " " * 500_000 + "x"
    target = {"hash": "9f1c2e3d4b5a69788796a5b4c3d2e1f009182736", "author": {"raw": raw}}
    event = {
        "push": {"changes": [{"new": {"type": "branch", "name": "main", "target": target}}]},
    }
    bc = buildconfig(trigger("Bitbucket", "bb"))
    headers = {"Content-Type": "application/json", "X-Event-Key": "repo:push"}
    hook = HookCall("shop", "web", SECRET, "bitbucket", "POST", headers, json.dumps(event).encode())
    with within():
        result = decide(hook, bc, SECRETS)
    assert result.status == 200, result.body


# --- pull secrets ---------------------------------------------------------------------------


@pytest.mark.parametrize("stars", [10, 30, 200])
def test_glob_with_many_stars_is_matched_in_linear_time(stars: int) -> None:
    pattern = star_glob("a", "b", stars)
    with within(0.1):
        assert not _glob_match(pattern, "a" * 63)
        assert _glob_match(pattern, "a" * stars + "b")


def test_pull_secret_with_pathological_keys_matches_quickly() -> None:
    key = star_glob("a", "b.example.com")
    data = docker_config_data([key])
    keyring = [parse_docker_config_secret("kubernetes.io/dockerconfigjson", data)]
    image = parse_reference("a" * 40 + ".example.com/shop/web:1")
    with within(0.1):
        assert credentials_for(image, keyring) == []
    with within(0.1):
        assert _key_matches(key, "aaaaaaaaaab.example.com")


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("*", "", True),
        ("*", "abc", True),
        ("a*c", "abbbc", True),
        ("a*c", "abbbd", False),
        ("a**c", "ac", True),
        ("*.b", "a.b", True),
        ("?", "", False),
        ("?", "/", False),
        ("*", "a/b", False),
        ("[a-c]x", "bx", True),
        ("[^a-c]x", "dx", True),
        ("[^a-c]x", "ax", False),
        ("[^a]", "/", False),
        ("[c-a]", "b", False),
        ("\\*", "*", True),
        ("\\*", "a", False),
        ("[", "[", False),
        ("a\\", "a", False),
        ("*[a-", "a", False),
    ],
)
def test_glob_semantics_follow_go_filepath_match(pattern: str, name: str, expected: bool) -> None:
    assert _glob_match(pattern, name) is expected


# --- annotations, start requests, termination messages, notifications ------------------------


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize(
    ("parse", "error"),
    [
        (lambda v: parse_request("r1", v), RequestError),
        (lambda v: parse_triggers(v, "Deployment", "shop"), TriggerError),
    ],
)
def test_annotation_json_that_is_too_deep_is_an_error_not_a_crash(
    parse: Callable[[str], Any], error: type[Exception]
) -> None:
    for value in (nested(20_000), '{"env": ' + nested(20_000) + "}", "1" * 5000):
        with within(), pytest.raises(error):
            parse(value)


def test_termination_message_that_is_too_deep_is_ignored() -> None:
    with within():
        assert _report("{" + '"a":' * 3000 + "1" + "}" * 3000) is None
        assert _report('{"a": ' + "1" * 5000 + "}") is None


def test_notifications_too_deep_are_a_400() -> None:
    with within(), pytest.raises(NotificationError):
        parse_notification(b'{"events": ' + nested(200_000).encode() + b"}")


def test_registry_answers_nested_too_deep_are_a_registry_error() -> None:
    with within(), pytest.raises(RegistryError, match="not JSON"):
        parse_image_config(b'{"config": ' + nested(100_000).encode() + b"}")


def test_link_headers_are_parsed_in_linear_time() -> None:
    hostile = "<https://r.example/v2/x/tags/list?n=1>; rel=" + " " * 8000 + "x"
    with within(0.1):
        assert _parse_link_next([hostile] * 100) is None
    assert _parse_link_next(['</v2/x/tags/list?last=a>; rel="next"']) is not None
    assert _parse_link_next(['</v2/x/tags/list?last=a>; rel="prev next"']) is not None
    assert _parse_link_next(['</v2/x/tags/list?last=a>; rel="prev"']) is None


def test_a_pull_secret_with_too_many_registries_is_refused() -> None:
    data = docker_config_data(f"r{i}.example" for i in range(300))
    with pytest.raises(CredentialsError, match="more than 256"):
        parse_docker_config_secret("kubernetes.io/dockerconfigjson", data)
