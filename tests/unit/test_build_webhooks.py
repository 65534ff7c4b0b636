"""Build webhooks: the pure decision, the rate limiter, the aiohttp handler and the CLI."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
import yaml
from click.testing import CliRunner
from lightkube.core.exceptions import ApiError
from lightkube.models.meta_v1 import ObjectMeta, Status
from lightkube.resources.core_v1 import Secret, Service

from headwater.builds import webhooks
from headwater.builds.instantiate import RequestError, StartRequest, build_spec
from headwater.builds.webhook_server import BuildWebhooks
from headwater.builds.webhooks import (
    MAX_BODY_BYTES,
    HookCall,
    HookResult,
    RateLimiter,
    decide,
    hook_urls,
    redacted_path,
    referenced_secrets,
    request_id,
    webhook_path,
)
from headwater.cli import webhooks as cli_webhooks
from headwater.servers import REGISTRY_NOTIFICATIONS_PATH, start_site, webhook_app

SECRET = "Sup3r-s3cret-token"
OTHER_SECRET = "the-other-one"
SHA = "9f1c2e3d4b5a69788796a5b4c3d2e1f009182736"
OLDER = "1111111111111111111111111111111111111111"
ID_RE = r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"


def trigger(kind: str, secret_name: str | None = None, **block: Any) -> dict[str, Any]:
    hook = kind.lower()
    if secret_name:
        block["secretReference"] = {"name": secret_name}
    return {"type": kind, hook: block}


def buildconfig(
    *triggers: dict[str, Any], ref: str = "main", git: bool = True, name: str = "web"
) -> dict[str, Any]:
    source: dict[str, Any] = {"type": "Dockerfile", "dockerfile": "FROM scratch"}
    if git:
        source = {"type": "Git", "git": {"uri": "https://example.com/web.git"}}
        if ref:
            source["git"]["ref"] = ref
    return {
        "apiVersion": "build.headwater.dev/v1",
        "kind": "BuildConfig",
        "metadata": {"name": name, "namespace": "shop", "uid": "u-1"},
        "spec": {
            "source": source,
            "strategy": {"type": "Docker", "dockerStrategy": {}},
            "triggers": list(triggers),
        },
    }


SECRETS: dict[str, bytes | None] = {
    "gh": SECRET.encode(),
    "gl": SECRET.encode(),
    "bb": SECRET.encode(),
    "gen": SECRET.encode(),
    "other": OTHER_SECRET.encode(),
    "missing": None,
}
ALL = buildconfig(
    trigger("GitHub", "gh"),
    trigger("GitLab", "gl"),
    trigger("Bitbucket", "bb"),
    trigger("Generic", "gen"),
)


def call(
    hook: str,
    body: bytes | dict[str, Any] = b"",
    headers: Mapping[str, str] | None = None,
    *,
    secret: str = SECRET,
    method: str = "POST",
    name: str = "web",
) -> HookCall:
    raw = json.dumps(body).encode() if isinstance(body, dict) else body
    return HookCall("shop", name, secret, hook, method, dict(headers or {}), raw)


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def github_push(ref: str = "refs/heads/main", sha: str = SHA, **extra: Any) -> dict[str, Any]:
    return {
        "ref": ref,
        "before": OLDER,
        "after": sha,
        "repository": {"full_name": "shop/web", "default_branch": "main"},
        "head_commit": {
            "id": sha,
            "message": "Fix the thing",
            "author": {"name": "Ada", "email": "ada@example.com", "username": "ada"},
            "committer": {"name": "GitHub", "email": "noreply@github.com"},
        },
        **extra,
    }


def github_headers(
    event: str = "push", delivery: str = "72d3162e-cc78-11e3-81ab-4c9367dc0958", **extra: str
) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "User-Agent": "GitHub-Hookshot/abc",
        **extra,
    }


def started(result: HookResult) -> StartRequest:
    assert result.status == 200, result.body
    assert result.request is not None, result.body
    return result.request


def cause(request: StartRequest) -> dict[str, Any]:
    assert len(request.causes) == 1
    return dict(request.causes[0])


# --- URL shape and prechecks -----------------------------------------------------------


def test_paths_follow_openshift_and_the_redacted_one_hides_the_secret() -> None:
    assert webhook_path("shop", "web", "a/b c", "github") == (
        "/apis/build.headwater.dev/v1/namespaces/shop/buildconfigs/web/webhooks/a%2Fb%20c/github"
    )
    assert redacted_path("shop", "web", "generic") == (
        "/apis/build.headwater.dev/v1/namespaces/shop/buildconfigs/web/webhooks/<redacted>/generic"
    )
    assert SECRET not in call("github").redacted_path
    assert SECRET not in repr(call("github"))


@pytest.mark.parametrize(
    ("hook_call", "status"),
    [
        (call("gitea"), 404),
        (call("github", method="GET"), 405),
        (call("generic", method="PUT"), 405),
        (call("generic", b"x" * (MAX_BODY_BYTES + 1)), 413),
        (call("generic", name="Not_A_Name"), 401),
        (call("generic", secret=""), 401),
    ],
)
def test_prechecks(hook_call: HookCall, status: int) -> None:
    result = decide(hook_call, ALL, SECRETS)
    assert result.status == status
    assert result.request is None
    assert SECRET not in json.dumps(result.body)


def test_a_body_at_the_limit_is_accepted() -> None:
    body = b" " * MAX_BODY_BYTES
    assert started(decide(call("generic", body), ALL, SECRETS))


# --- secrets ------------------------------------------------------------------------------


def test_refusals_are_uniform_whichever_part_failed() -> None:
    no_bc = decide(call("github", github_push(), github_headers()), None, SECRETS)
    no_trigger = decide(
        call("github", github_push(), github_headers()),
        buildconfig(trigger("Generic", "gen")),
        SECRETS,
    )
    wrong = decide(call("github", github_push(), github_headers(), secret="guess"), ALL, SECRETS)
    missing_secret = decide(
        call("github", github_push(), github_headers()),
        buildconfig(trigger("GitHub", "missing")),
        SECRETS,
    )
    deleted = dict(ALL, metadata={**ALL["metadata"], "deletionTimestamp": "2024-01-01T00:00:00Z"})
    being_deleted = decide(call("github", github_push(), github_headers()), deleted, SECRETS)
    results = [no_bc, no_trigger, wrong, missing_secret, being_deleted]
    assert {(r.status, json.dumps(r.body)) for r in results} == {
        (401, json.dumps(no_bc.body)),
    }
    assert "did not accept your secret" in no_bc.body["message"]
    assert all(r.request is None for r in results)
    assert "guess" not in json.dumps(wrong.body)


def test_the_inline_secret_and_any_of_several_triggers_match() -> None:
    bc = buildconfig(
        trigger("Generic", "other"),
        trigger("Generic", secret="inline-secret-value"),
        trigger("Generic", "gen", allowEnv=True),
    )
    assert referenced_secrets(bc, "generic") == ["other", "gen"]
    for secret in (OTHER_SECRET, "inline-secret-value", SECRET):
        assert started(decide(call("generic", secret=secret), bc, SECRETS))
    # The env rule follows the trigger that matched.
    env = {"env": [{"name": "A", "value": "1"}]}
    with_env = started(
        decide(call("generic", env, {"Content-Type": "application/json"}), bc, SECRETS)
    )
    assert with_env.env == (("A", "1"),)
    no_env = decide(
        call("generic", env, {"Content-Type": "application/json"}, secret=OTHER_SECRET), bc, SECRETS
    )
    assert started(no_env).env == ()


def test_secrets_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    bc = buildconfig(trigger("GitHub", "other"), trigger("GitHub", "gh"))
    body = json.dumps(github_push()).encode()
    headers = github_headers(**{"X-Hub-Signature-256": sign(body)})
    assert started(decide(call("github", body, headers), bc, SECRETS))
    offered = [pair for pair in seen if SECRET.encode() in pair]
    # Both triggers' secrets were compared with the URL's, then the signature.
    assert (OTHER_SECRET.encode(), SECRET.encode()) in seen
    assert (SECRET.encode(), SECRET.encode()) in offered
    assert any(a.startswith(b"sha256=") for a, _ in seen)
    seen.clear()
    gitlab = {
        "X-Gitlab-Event": "Push Hook",
        "X-Gitlab-Token": SECRET,
        "Content-Type": "application/json",
    }
    decide(call("gitlab", gitlab_push(), gitlab), ALL, SECRETS)
    assert (SECRET.encode(), SECRET.encode()) in seen
    assert len(seen) == 2  # the URL secret, then the token header


# --- GitHub ---------------------------------------------------------------------------------


def test_github_push_starts_a_build_of_the_pushed_commit() -> None:
    request = started(decide(call("github", github_push(), github_headers()), ALL, SECRETS))
    assert request.commit == SHA
    assert request.id == "github-72d3162e-cc78-11e3-81ab-4c9367dc0958"
    assert cause(request) == {
        "message": "GitHub WebHook",
        "githubWebHook": {
            "revision": {
                "type": "Git",
                "git": {
                    "commit": SHA,
                    "author": {"name": "Ada", "email": "ada@example.com"},
                    "committer": {"name": "GitHub", "email": "noreply@github.com"},
                    "message": "Fix the thing",
                },
            }
        },
    }
    # The Build it becomes builds that commit and records the cause.
    spec = build_spec(ALL["spec"], request)
    assert spec["revision"] == {"type": "Git", "git": {"commit": SHA}}
    assert spec["triggeredBy"][0]["githubWebHook"]["revision"]["git"]["commit"] == SHA


def test_github_ping_and_other_events_build_nothing() -> None:
    ping = decide(call("github", {"zen": "hi"}, github_headers("ping")), ALL, SECRETS)
    assert ping.status == 200
    assert ping.request is None
    assert "pong" in ping.body["message"]
    issues = decide(call("github", {"action": "opened"}, github_headers("issues")), ALL, SECRETS)
    assert (issues.status, issues.request) == (200, None)
    missing = decide(
        call("github", github_push(), {"Content-Type": "application/json"}), ALL, SECRETS
    )
    assert missing.status == 400
    assert "X-GitHub-Event" in missing.body["message"]


@pytest.mark.parametrize(
    ("ref", "bc_ref", "default", "builds"),
    [
        ("refs/heads/main", "main", "main", True),
        ("refs/heads/main", "refs/heads/main", "main", True),
        ("refs/heads/feature", "main", "main", False),
        ("refs/tags/v1.0", "main", "main", False),
        # An empty ref: the repository's default branch, as the payload names it...
        ("refs/heads/trunk", "", "trunk", True),
        ("refs/heads/main", "", "trunk", False),
        # ...else master or main.
        ("refs/heads/master", "", None, True),
        ("refs/heads/main", "", None, True),
        ("refs/heads/develop", "", None, False),
    ],
)
def test_github_builds_only_pushes_to_the_configured_branch(
    ref: str, bc_ref: str, default: str | None, builds: bool
) -> None:
    push = github_push(ref)
    push["repository"] = {"default_branch": default} if default else {}
    bc = buildconfig(trigger("GitHub", "gh"), ref=bc_ref)
    result = decide(call("github", push, github_headers()), bc, SECRETS)
    assert result.status == 200
    assert (result.request is not None) is builds
    if not builds:
        assert "skipping build" in result.body["message"]


def test_github_deleted_branch_builds_nothing() -> None:
    push = github_push(sha="0" * 40, deleted=True)
    push["head_commit"] = None
    result = decide(call("github", push, github_headers()), ALL, SECRETS)
    assert (result.status, result.request) == (200, None)


def test_github_signature_is_checked_when_sent() -> None:
    body = json.dumps(github_push()).encode()
    good = github_headers(**{"X-Hub-Signature-256": sign(body)})
    assert started(decide(call("github", body, good), ALL, SECRETS)).commit == SHA
    upper = github_headers(
        **{"X-Hub-Signature-256": sign(body).upper().replace("SHA256", "sha256")}
    )
    assert started(decide(call("github", body, upper), ALL, SECRETS))
    for wrong in (sign(body, "other"), sign(body + b" "), "sha1=abc", ""):
        headers = github_headers(**{"X-Hub-Signature-256": wrong})
        result = decide(call("github", body, headers), ALL, SECRETS)
        assert result.status == 401, wrong
        assert result.request is None
        assert "X-Hub-Signature-256" in result.body["message"]
        assert SECRET not in json.dumps(result.body)
    # A ping with a bad signature is refused too: the signature comes first.
    ping = github_headers("ping", **{"X-Hub-Signature-256": sign(b"x")})
    assert decide(call("github", body, ping), ALL, SECRETS).status == 401
    # No header: GitHub sends none when no secret is set on its side.
    assert started(decide(call("github", body, github_headers()), ALL, SECRETS))


def test_github_form_encoded_payloads_and_bad_bodies() -> None:
    form = urlencode({"payload": json.dumps(github_push())}).encode()
    headers = github_headers(**{"Content-Type": "application/x-www-form-urlencoded"})
    assert started(decide(call("github", form, headers), ALL, SECRETS)).commit == SHA
    bad = decide(call("github", b'{"ref": ', github_headers()), ALL, SECRETS)
    assert bad.status == 400
    assert bad.body["message"].startswith("body is not JSON: Expecting value at line 1")
    text = decide(
        call("github", b"{}", github_headers(**{"Content-Type": "text/plain"})), ALL, SECRETS
    )
    assert text.status == 415
    no_ref = decide(call("github", {"after": SHA}, github_headers()), ALL, SECRETS)
    assert no_ref.status == 400
    array = decide(call("github", b"[]", github_headers()), ALL, SECRETS)
    assert array.status == 400
    bad_sha = decide(call("github", github_push(sha="; rm -rf /"), github_headers()), ALL, SECRETS)
    assert bad_sha.status == 400


# --- GitLab ---------------------------------------------------------------------------------


def gitlab_push(ref: str = "refs/heads/main", checkout: str | None = SHA) -> dict[str, Any]:
    return {
        "object_kind": "push",
        "ref": ref,
        "before": OLDER,
        "after": checkout or "0" * 40,
        "checkout_sha": checkout,
        "project": {"default_branch": "main"},
        "commits": [
            {"id": OLDER, "message": "older", "author": {"name": "Bo", "email": "bo@x"}},
            {"id": SHA, "message": "newest\n", "author": {"name": "Cy", "email": "cy@x"}},
        ],
    }


def gitlab_headers(event: str = "Push Hook", **extra: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Gitlab-Event": event,
        "X-Gitlab-Event-UUID": "13792a34-cac6-4fda-95a8-c58e00a3954e",
        **extra,
    }


def test_gitlab_push_builds_the_checkout_sha() -> None:
    request = started(decide(call("gitlab", gitlab_push(), gitlab_headers()), ALL, SECRETS))
    assert request.commit == SHA
    assert request.id == "gitlab-13792a34-cac6-4fda-95a8-c58e00a3954e"
    assert cause(request) == {
        "message": "GitLab WebHook",
        "gitlabWebHook": {
            "revision": {
                "type": "Git",
                "git": {
                    "commit": SHA,
                    "author": {"name": "Cy", "email": "cy@x"},
                    "committer": {"name": "Cy", "email": "cy@x"},
                    "message": "newest\n",
                },
            }
        },
    }


def test_gitlab_token_events_branches_and_deletions() -> None:
    token_ok = gitlab_headers(**{"X-Gitlab-Token": SECRET})
    assert started(decide(call("gitlab", gitlab_push(), token_ok), ALL, SECRETS))
    token_bad = gitlab_headers(**{"X-Gitlab-Token": "nope"})
    refused = decide(call("gitlab", gitlab_push(), token_bad), ALL, SECRETS)
    assert (refused.status, refused.request) == (401, None)
    assert SECRET not in json.dumps(refused.body)
    tag = decide(call("gitlab", gitlab_push(), gitlab_headers("Tag Push Hook")), ALL, SECRETS)
    assert (tag.status, tag.request) == (200, None)
    other = decide(call("gitlab", gitlab_push("refs/heads/dev"), gitlab_headers()), ALL, SECRETS)
    assert (other.status, other.request) == (200, None)
    gone = decide(call("gitlab", gitlab_push(checkout=None), gitlab_headers()), ALL, SECRETS)
    assert (gone.status, gone.request) == (200, None)
    assert (
        decide(call("gitlab", gitlab_push(), {"X-Gitlab-Event": "Push Hook"}), ALL, SECRETS).status
        == 415
    )
    assert decide(call("gitlab", b"{", gitlab_headers()), ALL, SECRETS).status == 400
    missing = decide(
        call("gitlab", gitlab_push(), {"Content-Type": "application/json"}), ALL, SECRETS
    )
    assert missing.status == 400


# --- Bitbucket ------------------------------------------------------------------------------


def bitbucket_push(*branches: tuple[str, str | None]) -> dict[str, Any]:
    changes = []
    for name, sha in branches:
        new = None
        if sha is not None:
            new = {
                "type": "branch",
                "name": name,
                "target": {
                    "hash": sha,
                    "message": f"commit on {name}",
                    "author": {"raw": "Di Ng <di@example.com>", "user": {"display_name": "Di"}},
                },
            }
        changes.append({"new": new, "old": {"type": "branch", "name": name}})
    return {"push": {"changes": changes}, "repository": {"full_name": "shop/web"}}


def bitbucket_headers(event: str = "repo:push", **extra: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Event-Key": event,
        "X-Request-UUID": "afe4ab4d-9f8b-4ac1-a1c1-000000000001",
        **extra,
    }


def test_bitbucket_cloud_push_builds_the_configured_branch() -> None:
    body = bitbucket_push(("main", SHA), ("feature", OLDER))
    request = started(decide(call("bitbucket", body, bitbucket_headers()), ALL, SECRETS))
    assert request.commit == SHA
    assert request.id == "bitbucket-afe4ab4d-9f8b-4ac1-a1c1-000000000001"
    git = cause(request)["bitbucketWebHook"]["revision"]["git"]
    assert git["author"] == {"name": "Di Ng", "email": "di@example.com"}
    assert git["message"] == "commit on main"
    other = decide(
        call("bitbucket", bitbucket_push(("feature", SHA)), bitbucket_headers()), ALL, SECRETS
    )
    assert (other.status, other.request) == (200, None)
    deleted = decide(
        call("bitbucket", bitbucket_push(("main", None)), bitbucket_headers()), ALL, SECRETS
    )
    assert (deleted.status, deleted.request) == (200, None)
    empty = decide(call("bitbucket", {"push": {"changes": []}}, bitbucket_headers()), ALL, SECRETS)
    assert empty.status == 400


def test_bitbucket_server_ping_events_and_signature() -> None:
    server = {
        "changes": [
            {"ref": {"displayId": "main", "type": "BRANCH"}, "toHash": SHA, "type": "UPDATE"}
        ]
    }
    body = json.dumps(server).encode()
    headers = bitbucket_headers("repo:refs_changed", **{"X-Hub-Signature": sign(body)})
    request = started(decide(call("bitbucket", body, headers), ALL, SECRETS))
    assert request.commit == SHA
    bad = bitbucket_headers("repo:refs_changed", **{"X-Hub-Signature": sign(body, "x")})
    assert decide(call("bitbucket", body, bad), ALL, SECRETS).status == 401
    ping = decide(call("bitbucket", b"", bitbucket_headers("diagnostics:ping")), ALL, SECRETS)
    assert (ping.status, ping.request) == (200, None)
    pr = decide(call("bitbucket", {}, bitbucket_headers("pullrequest:created")), ALL, SECRETS)
    assert (pr.status, pr.request) == (200, None)
    assert (
        decide(call("bitbucket", {}, {"Content-Type": "application/json"}), ALL, SECRETS).status
        == 400
    )


# --- Generic --------------------------------------------------------------------------------


JSON = {"Content-Type": "application/json"}


def test_generic_without_a_body_builds_the_configured_ref() -> None:
    request = started(decide(call("generic"), ALL, SECRETS, new_id=lambda: "abc123"))
    assert request.commit is None
    assert request.id == "generic-abc123"
    assert cause(request) == {"message": "Generic WebHook", "genericWebHook": {}}
    # Any content type is fine without a body (curl -X POST sends none, or a form type).
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert started(decide(call("generic", b"", form), ALL, SECRETS))


def test_generic_git_body_as_json_and_yaml() -> None:
    doc = {
        "git": {
            "uri": "https://example.com/web.git",
            "ref": "main",
            "commit": SHA,
            "author": {"name": "Ed", "email": "ed@x"},
            "committer": {"name": "Fi", "email": "fi@x"},
            "message": "by hand",
        }
    }
    request = started(decide(call("generic", doc, JSON), ALL, SECRETS))
    assert request.commit == SHA
    assert cause(request)["genericWebHook"]["revision"]["git"] == {
        "commit": SHA,
        "author": {"name": "Ed", "email": "ed@x"},
        "committer": {"name": "Fi", "email": "fi@x"},
        "message": "by hand",
    }
    for media in ("application/yaml", "application/x-yaml; charset=utf-8"):
        as_yaml = yaml.safe_dump(doc).encode()
        assert started(decide(call("generic", as_yaml, {"Content-Type": media}), ALL, SECRETS))
    other = decide(call("generic", {"git": {"ref": "dev", "commit": SHA}}, JSON), ALL, SECRETS)
    assert (other.status, other.request) == (200, None)
    refs = {
        "git": {
            "refs": [
                {"ref": "refs/heads/dev", "commit": OLDER},
                {"ref": "refs/heads/main", "commit": SHA},
            ]
        }
    }
    assert started(decide(call("generic", refs, JSON), ALL, SECRETS)).commit == SHA
    no_match = {"git": {"refs": [{"ref": "refs/heads/dev", "commit": OLDER}]}}
    assert decide(call("generic", no_match, JSON), ALL, SECRETS).request is None
    # A Build of a BuildConfig without a Git source ignores the git block.
    plain = buildconfig(trigger("Generic", "gen"), git=False)
    ignored = started(decide(call("generic", doc, JSON), plain, SECRETS))
    assert ignored.commit is None
    build_spec(plain["spec"], ignored)  # no "--commit needs a Git source"


def test_generic_env_only_with_allow_env() -> None:
    doc = {
        "env": [{"name": "GREETING", "value": "hi"}],
        "dockerStrategyOptions": {"buildArgs": [{"name": "V", "value": "2"}], "noCache": True},
    }
    allowed = buildconfig(trigger("Generic", "gen", allowEnv=True))
    request = started(decide(call("generic", doc, JSON), allowed, SECRETS))
    assert request.env == (("GREETING", "hi"),)
    assert request.build_args == (("V", "2"),)
    assert request.no_cache is True
    spec = build_spec(allowed["spec"], request)
    assert spec["strategy"]["dockerStrategy"]["env"] == [{"name": "GREETING", "value": "hi"}]
    result = decide(call("generic", doc, JSON), ALL, SECRETS)
    ignored = started(result)
    assert (ignored.env, ignored.build_args, ignored.no_cache) == ((), (), None)
    assert result.body["warnings"] == [
        "env ignored: the Generic trigger does not set allowEnv",
        "dockerStrategyOptions ignored: the Generic trigger does not set allowEnv",
    ]
    bad_name = {"env": [{"name": "1=x", "value": "v"}]}
    assert decide(call("generic", bad_name, JSON), allowed, SECRETS).status == 400
    not_list = {"env": {"A": "b"}}
    assert decide(call("generic", not_list, JSON), allowed, SECRETS).status == 400


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (b"{}", {"Content-Type": "text/plain"}, 415),
        (b"{}", {}, 415),
        (b'{"git": ', JSON, 400),
        (b"[1, 2]", JSON, 400),
        (b"\xff\xfe", JSON, 400),
        (b"git: [unclosed", {"Content-Type": "application/yaml"}, 400),
        (b"- a list", {"Content-Type": "application/yaml"}, 400),
        (b'{"git": "main"}', JSON, 400),
        (b'{"git": {"commit": "HEAD~1"}}', JSON, 400),
    ],
)
def test_generic_bad_bodies(body: bytes, headers: dict[str, str], status: int) -> None:
    result = decide(call("generic", body, headers), ALL, SECRETS)
    assert result.status == status, result.body
    assert result.request is None
    assert result.body["message"]


# --- request ids ----------------------------------------------------------------------------


def test_request_ids_are_deterministic_per_delivery_and_label_safe() -> None:
    first = started(decide(call("github", github_push(), github_headers()), ALL, SECRETS))
    again = started(decide(call("github", github_push(), github_headers()), ALL, SECRETS))
    other = started(
        decide(call("github", github_push(), github_headers(delivery="d-2")), ALL, SECRETS)
    )
    assert first.id == again.id != other.id
    long = "x" * 80
    weird = "a b/c"
    ids = [
        request_id(call("github", headers={"X-GitHub-Delivery": long}), lambda: "r"),
        request_id(call("github", headers={"X-GitHub-Delivery": weird}), lambda: "r"),
        request_id(call("generic", headers={"Idempotency-Key": "deploy-42"}), lambda: "r"),
        request_id(call("gitlab"), lambda: "f" * 100),
    ]
    assert ids[0] == request_id(call("github", headers={"X-GitHub-Delivery": long}), lambda: "s")
    assert ids[0].startswith("github-")
    assert ids[2] == "generic-deploy-42"
    assert all(re.fullmatch(ID_RE, i) for i in ids), ids
    # Without a delivery id, each call is its own request.
    a = started(decide(call("generic"), ALL, SECRETS))
    b = started(decide(call("generic"), ALL, SECRETS))
    assert a.id != b.id


# --- rate limiting -------------------------------------------------------------------------


def test_rate_limit_is_a_token_bucket_per_address() -> None:
    limiter = RateLimiter(per_minute=30, burst=10)
    assert all(limiter.take("10.0.0.1", 0.0)[0] for _ in range(10))
    allowed, retry = limiter.take("10.0.0.1", 0.0)
    assert not allowed
    assert retry == 2  # 0.5 tokens a second
    assert limiter.take("10.0.0.2", 0.0) == (True, 0)  # another address has its own bucket
    assert limiter.take("10.0.0.1", 2.0) == (True, 0)  # refilled one
    assert not limiter.take("10.0.0.1", 2.0)[0]
    # A long pause refills up to the burst, no more.
    assert sum(limiter.take("10.0.0.1", 1000.0)[0] for _ in range(20)) == 10


def test_rate_limit_memory_is_bounded() -> None:
    limiter = RateLimiter(per_minute=30, burst=1, max_addresses=100)
    for i in range(1000):
        limiter.take(f"10.0.{i // 256}.{i % 256}", float(i))
    assert len(limiter) == 100
    # The most recently seen survive: this one is still empty.
    assert not limiter.take("10.0.3.231", 999.0)[0]


# --- URLs for the CLI ----------------------------------------------------------------------


def test_hook_urls_include_the_secret_or_a_placeholder() -> None:
    bc = buildconfig(
        trigger("GitHub", "gh"),
        trigger("Generic", "missing", allowEnv=True),
        trigger("GitLab", secret="inline"),
        {"type": "ConfigChange"},
    )
    urls = hook_urls(bc, SECRETS, "https://hooks.example.com/")
    base = "https://hooks.example.com/apis/build.headwater.dev/v1/namespaces/shop/buildconfigs/web"
    assert [(u.hook, u.url, u.secret_known) for u in urls] == [
        ("github", f"{base}/webhooks/{SECRET}/github", True),
        ("generic", f"{base}/webhooks/<secret>/generic", False),
        ("gitlab", f"{base}/webhooks/inline/gitlab", True),
    ]
    assert [u.hook for u in hook_urls(bc, SECRETS, "http://x", ["gitlab"])] == ["gitlab"]


# --- the aiohttp handler -------------------------------------------------------------------


class Fake:
    """The handler's edges: a BuildConfig, Secrets, and the builds it was asked for."""

    def __init__(self, bc: dict[str, Any] | None = None) -> None:
        self.bc = bc if bc is not None else ALL
        self.secrets = dict(SECRETS)
        self.started: list[tuple[str, str, StartRequest]] = []
        self.reads = 0
        self.fail: Exception | None = None

    async def read_buildconfig(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        self.reads += 1
        if self.fail is not None:
            raise self.fail
        return self.bc if name == self.bc["metadata"]["name"] else None

    async def read_secret(self, namespace: str, name: str) -> bytes | None:
        return self.secrets.get(name)

    async def instantiate(self, namespace: str, name: str, request: StartRequest) -> str:
        if request.env and request.env[0][0] == "FAIL":
            raise RequestError("no such thing")
        for number, (_, _, earlier) in enumerate(self.started, 1):
            if earlier.id == request.id:
                return f"{name}-{number}"
        self.started.append((namespace, name, request))
        return f"{name}-{len(self.started)}"

    def hooks(self, **kwargs: Any) -> BuildWebhooks:
        return BuildWebhooks(self.read_buildconfig, self.read_secret, self.instantiate, **kwargs)


def url(hook: str, secret: str = SECRET, name: str = "web", namespace: str = "shop") -> str:
    return webhook_path(namespace, name, secret, hook)


async def on_push(_: Any) -> tuple[int, int]:
    return 0, 0


@asynccontextmanager
async def serve(app: aiohttp.web.Application) -> AsyncIterator[aiohttp.ClientSession]:
    """The app served as the operator serves it (start_site: no access log), and a client."""
    runner = await start_site(app, "127.0.0.1", 0)
    try:
        host, port = runner.addresses[0][:2]
        async with aiohttp.ClientSession(f"http://{host}:{port}") as client:
            yield client
    finally:
        await runner.cleanup()


async def test_server_starts_builds_and_answers_every_case(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    fake = Fake(buildconfig(trigger("GitHub", "gh"), trigger("Generic", "gen", allowEnv=True)))
    hooks = fake.hooks(limiter=RateLimiter(burst=100))
    async with serve(webhook_app(None, on_push, hooks.routes())) as client:
        body = json.dumps(github_push()).encode()
        headers = github_headers(**{"X-Hub-Signature-256": sign(body)})
        responses = []
        ok = await client.post(url("github"), data=body, headers=headers)
        responses.append(await ok.text())
        assert ok.status == 200
        assert (await ok.json())["build"] == "web-1"
        again = await client.post(url("github"), data=body, headers=headers)
        assert (await again.json())["build"] == "web-1"  # a redelivery: the same build
        assert len(fake.started) == 1
        assert fake.started[0][2].commit == SHA
        cases = [
            ("get", url("github"), b"", {}, 405),
            ("post", url("github", secret="wrong-" + SECRET), body, headers, 401),
            ("post", url("github", name="nope"), body, headers, 401),
            ("post", url("gitlab"), body, headers, 401),
            (
                "post",
                url("github"),
                body,
                github_headers(**{"X-Hub-Signature-256": sign(b"")}),
                401,
            ),
            ("post", url("github"), body, github_headers("ping"), 200),
            ("post", url("svn"), body, headers, 404),
            ("post", url("generic"), b"{", JSON, 400),
            ("post", url("generic"), b"x", {"Content-Type": "text/plain"}, 415),
            ("post", url("generic"), json.dumps({"env": [{"name": "FAIL"}]}).encode(), JSON, 422),
        ]
        for method, path, data, hdrs, status in cases:
            response = await client.request(method, path, data=data, headers=hdrs)
            responses.append(await response.text())
            assert response.status == status, (path.replace(SECRET, "S"), await response.text())
        generic = await client.post(
            url("generic"), json={"env": [{"name": "GREETING", "value": "hi"}]}
        )
        assert generic.status == 200
        assert (await generic.json())["build"] == "web-2"
        assert fake.started[-1][2].env == (("GREETING", "hi"),)
        # No registry notifications without their token.
        assert (await client.post(REGISTRY_NOTIFICATIONS_PATH, json={})).status == 404
    assert all(SECRET not in text for text in responses)
    assert SECRET not in caplog.text
    assert "<redacted>" in caplog.text


async def test_server_size_limit_rate_limit_and_failures(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    fake = Fake()
    now = [0.0]
    hooks = fake.hooks(limiter=RateLimiter(per_minute=60, burst=3), clock=lambda: now[0])
    async with serve(webhook_app("tok", on_push, hooks.routes())) as client:
        big = await client.post(url("generic"), data=b"x" * (MAX_BODY_BYTES + 10), headers=JSON)
        assert big.status == 413
        assert fake.reads == 0  # refused before any API read
        fake.fail = RuntimeError("boom")
        failed = await client.post(url("generic"))
        assert failed.status == 500
        assert SECRET not in await failed.text()
        fake.fail = None
        assert (await client.post(url("generic"))).status == 200
        limited = await client.post(url("generic"))
        assert limited.status == 429
        assert limited.headers["Retry-After"] == "1"
        now[0] = 1.0
        assert (await client.post(url("generic"))).status == 200
        # The registry endpoint is there with a token.
        auth = {"Authorization": "Bearer tok"}
        assert (
            await client.post(REGISTRY_NOTIFICATIONS_PATH, json={"repository": "a/b"}, headers=auth)
        ).status == 202
    assert "boom" in caplog.text  # the traceback is logged, under the redacted path
    assert SECRET not in caplog.text


async def test_server_refuses_namespaces_it_does_not_serve() -> None:
    fake = Fake()
    hooks = fake.hooks(namespaces=("elsewhere", "other"))
    async with serve(webhook_app(None, on_push, hooks.routes())) as client:
        response = await client.post(url("generic"))
        assert response.status == 401
        assert fake.reads == 0


async def test_server_serves_each_of_its_namespaces() -> None:
    fake = Fake()
    hooks = fake.hooks(namespaces=("elsewhere", "shop"))
    async with serve(webhook_app(None, on_push, hooks.routes())) as client:
        await client.post(url("generic"))
        assert fake.reads > 0


async def test_server_maps_a_buildconfig_deleted_meanwhile_to_the_refusal() -> None:
    fake = Fake()

    async def gone(namespace: str, name: str, request: StartRequest) -> str:
        raise ApiError(status=Status(code=404, reason="NotFound", message="gone"))

    hooks = BuildWebhooks(fake.read_buildconfig, fake.read_secret, gone)
    async with serve(webhook_app(None, on_push, hooks.routes())) as client:
        response = await client.post(url("generic"))
        assert response.status == 401
        assert "did not accept your secret" in (await response.json())["message"]


# --- CLI ------------------------------------------------------------------------------------


class Obj:
    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body

    def to_dict(self) -> dict[str, Any]:
        return self.body


class CliClient:
    def __init__(self, bc: dict[str, Any], secrets: dict[str, bytes]) -> None:
        self.bc = bc
        self.secrets = secrets
        self.installed = True

    def get(self, resource: Any, name: str, namespace: str | None = None) -> Any:
        if resource is Service:
            if not self.installed:
                raise ApiError(status=Status(code=404, reason="NotFound", message="not found"))
            return Service(metadata=ObjectMeta(name=name, namespace=namespace))
        if resource is Secret:
            if name not in self.secrets:
                raise ApiError(status=Status(code=404, reason="NotFound", message="not found"))
            data = {"WebHookSecretKey": base64.b64encode(self.secrets[name]).decode()}
            return Secret(metadata=ObjectMeta(name=name), data=data)
        if name != self.bc["metadata"]["name"]:
            raise ApiError(status=Status(code=404, reason="NotFound", message="not found"))
        return Obj(self.bc)


def test_cli_prints_one_url_per_trigger(monkeypatch: pytest.MonkeyPatch) -> None:
    bc = buildconfig(
        trigger("GitHub", "gh"),
        trigger("Generic", "gone"),
        trigger("GitLab", "gl"),
    )
    client = CliClient(bc, {"gh": b"ghsecret", "gl": b"glsecret"})
    monkeypatch.setattr(cli_webhooks, "connect", lambda *a: (client, "shop"))
    monkeypatch.delenv("HEADWATER_WEBHOOK_URL", raising=False)
    runner = CliRunner()
    result = runner.invoke(cli_webhooks.webhooks, ["bc/web"])
    assert result.exit_code == 0, result.output
    path = "/apis/build.headwater.dev/v1/namespaces/shop/buildconfigs/web/webhooks"
    assert result.stdout.splitlines() == [
        f"http://127.0.0.1:8082{path}/ghsecret/github",
        f"http://127.0.0.1:8082{path}/<secret>/generic",
        f"http://127.0.0.1:8082{path}/glsecret/gitlab",
    ]
    assert "port-forward -n headwater-system svc/headwater-webhooks 8082" in result.stderr
    assert "Secret gone" in result.stderr
    assert "ghsecret" not in result.stderr
    monkeypatch.setenv("HEADWATER_WEBHOOK_URL", "https://ci.example.com")
    only = runner.invoke(cli_webhooks.webhooks, ["web", "--type", "gitlab"])
    assert only.stdout.splitlines() == [f"https://ci.example.com{path}/glsecret/gitlab"]
    assert only.stderr == ""
    given = runner.invoke(cli_webhooks.webhooks, ["web", "--type=github", "--url-base", "http://h"])
    assert given.stdout.splitlines() == [f"http://h{path}/ghsecret/github"]
    none = runner.invoke(cli_webhooks.webhooks, ["web", "--type", "bitbucket"])
    assert none.exit_code == 1
    assert "no Bitbucket triggers" in none.stderr
    missing = runner.invoke(cli_webhooks.webhooks, ["nope"])
    assert missing.exit_code == 1
    assert "not found" in missing.stderr
    # Not installed (`make run`): no Service to port-forward to; the operator's own port.
    client.installed = False
    monkeypatch.delenv("HEADWATER_WEBHOOK_URL")
    local = runner.invoke(cli_webhooks.webhooks, ["web", "--type", "gitlab"])
    assert local.stdout.splitlines() == [f"http://127.0.0.1:8082{path}/glsecret/gitlab"]
    assert "port-forward" not in local.stderr.replace("no port-forward", "")
    assert "no Service headwater-system/headwater-webhooks" in local.stderr
    assert "webhookPort, default 8082" in local.stderr


def test_module_constants_match_the_crd() -> None:
    # The trigger blocks are named after the URL segment (CRD: trigger()).
    assert webhooks.HOOK_TYPES == {
        "github": "GitHub",
        "gitlab": "GitLab",
        "bitbucket": "Bitbucket",
        "generic": "Generic",
    }


# --- secrets made with `kubectl create secret generic --from-file` (issue 16) ----------------


async def test_operator_reads_a_webhook_secret_without_its_trailing_newline() -> None:
    """``--from-file=WebHookSecretKey=f`` keeps the file's newline; no URL carries it."""
    from tests.fakekube import FakeKube

    kube = FakeKube()
    for name, value in (("gh", b"ghsecret\n"), ("blank", b" \r\n"), ("plain", b"s3cret")):
        kube.add(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": name, "namespace": "shop"},
                "data": {"WebHookSecretKey": base64.b64encode(value).decode()},
            }
        )

    async def instantiate(*_: Any) -> str:
        raise AssertionError("not called")

    hooks = BuildWebhooks.for_operator(kube.client, instantiate, ())
    assert await hooks.read_secret("shop", "gh") == b"ghsecret"
    assert await hooks.read_secret("shop", "plain") == b"s3cret"
    # Only whitespace: no secret at all (an empty secret would match an empty URL segment).
    assert await hooks.read_secret("shop", "blank") is None


def test_cli_prints_the_url_of_a_secret_with_a_trailing_newline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = CliClient(buildconfig(trigger("GitHub", "gh")), {"gh": b"ghsecret\n"})
    monkeypatch.setattr(cli_webhooks, "connect", lambda *a: (client, "shop"))
    monkeypatch.setenv("HEADWATER_WEBHOOK_URL", "https://ci.example.com")
    result = CliRunner().invoke(cli_webhooks.webhooks, ["bc/web"])
    assert result.exit_code == 0, result.output
    path = "/apis/build.headwater.dev/v1/namespaces/shop/buildconfigs/web/webhooks"
    assert result.stdout.splitlines() == [f"https://ci.example.com{path}/ghsecret/github"]
