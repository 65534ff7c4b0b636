"""Build webhooks on the real cluster: GitHub and Generic calls to the in-process operator.

The BuildConfig builds a repository on the local git daemon; the test plays
GitHub (a signed push event for the repository's commit) and a hand-rolled
Generic caller, against the operator's webhook port on loopback.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import urllib.error
import urllib.request
import uuid
from typing import Any

import kopf.testing
import pytest

from .helpers import (
    Cluster,
    GitServer,
    build_why,
    builds_of,
    docker_bc,
    eventually,
    imagestream,
    wait_for_phase,
)

pytestmark = pytest.mark.e2e

PREFIX = "/apis/build.headwater.dev/v1/namespaces/{ns}/buildconfigs/{bc}/webhooks/{secret}/{hook}"


def webhook_secret(name: str, value: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "data": {"WebHookSecretKey": base64.b64encode(value.encode()).decode()},
    }


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310 - the operator on loopback
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return int(response.status), json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return int(exc.code), json.loads(exc.read() or b"{}")


def github_push(ref: str, sha: str) -> bytes:
    return json.dumps(
        {
            "ref": ref,
            "before": "0" * 40,
            "after": sha,
            "repository": {"full_name": "shop/web", "default_branch": "main"},
            "head_commit": {
                "id": sha,
                "message": "the webhook commit",
                "author": {"name": "Headwater Tests", "email": "tests@headwater.dev"},
                "committer": {"name": "Headwater Tests", "email": "tests@headwater.dev"},
            },
        }
    ).encode()


def github_headers(event: str, body: bytes, secret: str, delivery: str) -> dict[str, str]:
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/e2e",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": f"sha256={signature}",
    }


def test_github_and_generic_webhooks_start_builds(
    cluster: Cluster,
    namespace: str,
    git_server: GitServer,
    operator_in_process: kopf.testing.KopfRunner,
) -> None:
    cluster.need_registry()
    busybox = cluster.image("busybox")
    repo, sha = git_server.repo(
        {"Dockerfile": f'FROM {busybox}\nRUN echo "built for $GREETING" > /built.txt\n'},
        message="the webhook commit",
    )
    github_secret, generic_secret = uuid.uuid4().hex, uuid.uuid4().hex
    cluster.apply(
        [webhook_secret("gh-hook", github_secret), webhook_secret("generic-hook", generic_secret)],
        namespace,
    )
    cluster.apply(imagestream("web"), namespace)
    cluster.apply(
        docker_bc(
            "web",
            {"type": "Git", "git": {"uri": repo, "ref": "main"}},
            "web:latest",
            triggers=[
                {"type": "GitHub", "github": {"secretReference": {"name": "gh-hook"}}},
                {
                    "type": "Generic",
                    "generic": {"secretReference": {"name": "generic-hook"}, "allowEnv": True},
                },
            ],
        ),
        namespace,
    )
    base = f"http://127.0.0.1:{os.environ['HEADWATER_WEBHOOK_PORT']}"

    def url(hook: str, secret: str, bc: str = "web") -> str:
        return base + PREFIX.format(ns=namespace, bc=bc, secret=secret, hook=hook)

    github = url("github", github_secret)
    ping = b'{"zen": "Keep it logically awesome."}'
    answers: list[tuple[int, dict[str, Any]]] = []

    def pinged() -> bool:
        try:
            answers.append(post(github, ping, github_headers("ping", ping, github_secret, "p-1")))
        except OSError:
            return False  # the operator is still starting: nothing listens yet
        return answers[-1][0] == 200

    eventually("the webhook port to answer a ping", pinged, timeout=60)
    assert "pong" in answers[-1][1]["message"]

    push = github_push("refs/heads/main", sha)
    # A wrong signature, a wrong secret, an unknown BuildConfig, another branch: no build.
    bad = github_headers("push", push, "not-the-secret", "d-bad")
    status, body = post(github, push, bad)
    assert status == 401
    assert "X-Hub-Signature-256" in body["message"]
    refusals = [
        post(url("github", "wrong-secret"), push, github_headers("push", push, github_secret, "x")),
        post(url("github", github_secret, "nope"), push, github_headers("push", push, "s", "y")),
        post(url("gitlab", github_secret), push, {"X-Gitlab-Event": "Push Hook"}),
    ]
    assert [status for status, _ in refusals] == [401, 401, 401]
    assert {body["message"].split(" for ")[1] for _, body in refusals} <= {
        '"web" did not accept your secret',
        '"nope" did not accept your secret',
    }
    assert all(github_secret not in json.dumps(body) for _, body in refusals)
    other = github_push("refs/heads/feature", sha)
    status, body = post(github, other, github_headers("push", other, github_secret, "d-other"))
    assert status == 200
    assert "skipping build" in body["message"]
    assert builds_of(cluster, namespace) == []

    # The push: one build of the pushed commit, however often GitHub delivers it.
    delivery = str(uuid.uuid4())
    headers = github_headers("push", push, github_secret, delivery)
    status, body = post(github, push, headers)
    assert status == 200, body
    name = body["build"]
    assert name == "web-1"
    again_status, again = post(github, push, headers)
    assert (again_status, again["build"]) == (200, name)
    assert [b["metadata"]["name"] for b in builds_of(cluster, namespace)] == [name]

    build = wait_for_phase(cluster, namespace, name)
    assert build["status"]["phase"] == "Complete", build["status"]
    assert build["spec"]["revision"]["git"]["commit"] == sha
    cause = build["spec"]["triggeredBy"][0]
    assert cause["message"] == "GitHub WebHook"
    assert cause["githubWebHook"]["revision"]["git"]["commit"] == sha
    assert cause["githubWebHook"]["revision"]["git"]["message"] == "the webhook commit"
    assert build["status"]["revision"]["git"]["commit"] == sha

    # Generic with an env body: allowEnv lets it into the Build.
    generic_body = json.dumps(
        {"git": {"ref": "main", "commit": sha}, "env": [{"name": "GREETING", "value": "hooks"}]}
    ).encode()
    status, body = post(
        url("generic", generic_secret), generic_body, {"Content-Type": "application/json"}
    )
    assert status == 200, body
    assert body["build"] == "web-2"
    generic = wait_for_phase(cluster, namespace, "web-2")
    assert generic["status"]["phase"] == "Complete", build_why(generic)
    env = generic["spec"]["strategy"]["dockerStrategy"]["env"]
    assert {"name": "GREETING", "value": "hooks"} in env
    assert generic["spec"]["triggeredBy"][0]["message"] == "Generic WebHook"
    assert generic["spec"]["revision"]["git"]["commit"] == sha
    assert len(builds_of(cluster, namespace)) == 2
