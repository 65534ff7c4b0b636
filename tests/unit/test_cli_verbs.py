"""The ``get``, ``describe``, ``set triggers`` and ``completion`` verbs, with the cluster
client faked at its edge (no network)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import click
import httpx2
import pytest
from click.testing import CliRunner
from lightkube.core.exceptions import ApiError
from lightkube.models.meta_v1 import Status

from headwater.cli import settriggers, views
from headwater.cli.main import cli, main


class Obj:
    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body

    def to_dict(self) -> dict[str, Any]:
        return self.body


def api_error(code: int, reason: str, message: str) -> ApiError:
    return ApiError(status=Status(code=code, reason=reason, message=message))


class FakeClient:
    """Objects by kind; what was patched."""

    def __init__(self, objs: dict[str, list[dict[str, Any]]], fail: Exception | None = None):
        self.objs = objs
        self.fail = fail
        self.patches: list[tuple[str, str, dict[str, Any]]] = []

    def _kind(self, resource: Any) -> str:
        return str(resource._api_info.resource.kind)

    def list(self, resource: Any, namespace: str | None = None, **_: Any) -> Iterator[Obj]:
        if self.fail is not None:
            raise self.fail
        return iter(Obj(o) for o in self.objs.get(self._kind(resource), []))

    def get(self, resource: Any, name: str, namespace: str | None = None) -> Obj:
        for body in self.objs.get(self._kind(resource), []):
            if body["metadata"]["name"] == name:
                return Obj(body)
        raise api_error(404, "NotFound", f'"{name}" not found')

    def patch(self, resource: Any, name: str, patch: dict[str, Any], **_: Any) -> None:
        self.patches.append((self._kind(resource), name, patch))


BC = {
    "apiVersion": "build.headwater.dev/v1",
    "kind": "BuildConfig",
    "metadata": {"name": "web", "namespace": "shop", "resourceVersion": "7"},
    "spec": {
        "source": {"type": "Git", "git": {"uri": "https://example.com/web.git"}},
        "strategy": {"type": "Docker", "dockerStrategy": {}},
        "triggers": [{"type": "ConfigChange"}],
    },
    "status": {"lastVersion": 2},
}
DEPLOY = {
    "metadata": {"name": "web", "namespace": "shop", "resourceVersion": "3"},
    "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "x"}]}}},
}

STREAM = {
    "metadata": {"name": "web", "namespace": "shop"},
    "spec": {"tags": [{"name": "latest", "from": {"kind": "DockerImage", "name": "x/web"}}]},
}


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeClient:
    client = FakeClient({"BuildConfig": [BC], "Deployment": [DEPLOY], "ImageStream": [STREAM]})
    for module in (views, settriggers):
        monkeypatch.setattr(module, "connect", lambda *a: (client, "shop"))
    return client


def run(*args: str) -> click.testing.Result:
    return CliRunner().invoke(cli, list(args))


@pytest.mark.parametrize(
    "verb", [("get",), ("describe",), ("set", "triggers"), ("completion",), ("set",)]
)
def test_every_new_verb_has_help_with_an_example(verb: tuple[str, ...]) -> None:
    result = run(*verb, "--help")
    assert result.exit_code == 0
    if verb != ("set",):
        assert "Example" in result.output, result.output


def test_root_help_documents_exit_status() -> None:
    result = run("--help")
    assert "Exit status:" in result.output
    assert "2  bad usage" in result.output


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts(shell: str) -> None:
    result = run("completion", shell)
    assert result.exit_code == 0
    assert "_HEADWATER_COMPLETE" in result.output
    assert run("completion", "tcsh").exit_code == 2


def test_get_table_name_and_missing(fake: FakeClient) -> None:
    table = run("get", "bc")
    assert table.exit_code == 0, table.output
    assert table.output.splitlines() == [
        "NAME   TYPE     FROM   LATEST",
        "web    Docker   Git    2",
    ]
    assert run("get", "bc/web", "-o", "name").output == "buildconfig.build.headwater.dev/web\n"
    missing = run("get", "bc", "web", "nope")
    assert missing.exit_code == 1
    assert missing.output.splitlines()[-1] == (
        'Error: buildconfigs.build.headwater.dev "nope" not found in namespace shop'
    )
    assert "web    Docker" in missing.output
    empty = run("get", "builds")
    assert empty.exit_code == 0
    assert "No resources found in shop namespace." in empty.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("get", "pods"), "unknown resource type 'pods'"),
        (("get", "bc", "web", "-A"), "cannot be retrieved by name across all namespaces"),
        (("get", "bc", "-l", "a b"), "cannot parse"),
        (("get", "bc", "-o", "toml"), "Invalid value for '-o'"),
        (("set", "triggers", "web"), "expected TYPE/NAME"),
        (("set", "triggers", "pod/web"), "unknown resource type 'pod'"),
        (("set", "triggers", "bc/web", "--remove"), "--remove needs the trigger"),
    ],
)
def test_usage_errors_exit_2_before_any_request(
    args: tuple[str, ...], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_cluster(*_: object) -> None:
        raise AssertionError("connected")

    monkeypatch.setattr(views, "connect", no_cluster)
    monkeypatch.setattr(settriggers, "connect", no_cluster)
    result = run(*args)
    assert result.exit_code == 2
    assert message in result.output


def test_api_and_connection_errors_are_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    for fail, expected in (
        (api_error(403, "Forbidden", "buildconfigs is forbidden: User x cannot list"),
         "Error: Forbidden: buildconfigs is forbidden: User x cannot list"),
        (httpx2.ConnectError("[Errno 111] Connection refused"),
         "Error: cannot reach the Kubernetes API server (the API server): "
         "[Errno 111] Connection refused; check --context/--kubeconfig"),
    ):  # fmt: skip
        client = FakeClient({}, fail=fail)
        monkeypatch.setattr(views, "connect", lambda *a, c=client: (c, "shop"))
        result = run("get", "bc")
        assert result.exit_code == 1
        assert result.output.splitlines() == [expected]


def test_set_triggers_table_and_patch(fake: FakeClient) -> None:
    table = run("set", "triggers", "bc/web", "deploy/web")
    assert table.exit_code == 0, table.output
    assert [line.split() for line in table.output.splitlines()] == [
        ["NAME", "TYPE", "VALUE", "AUTO"],
        ["buildconfigs/web", "config", "true"],
        ["deployments/web", "config", "true"],
    ]
    added = run("set", "triggers", "deploy/web", "--from-image=web:latest")
    assert added.exit_code == 0, added.output
    assert added.output == "deployment.apps/web triggers updated\n"
    assert fake.patches == [
        ("Deployment", "web", {"metadata": {"resourceVersion": "3", "annotations": {
            "image.openshift.io/triggers":
                '[{"from":{"kind":"ImageStreamTag","name":"web:latest"},'
                '"fieldPath":"spec.template.spec.containers[?(@.name==\\"web\\")].image"}]'}}}),
    ]  # fmt: skip
    # A typo is written (as oc does) but said, on stderr (issue 19).
    typo = run("set", "triggers", "deploy/web", "--from-image=sitee:latest")
    assert typo.exit_code == 0, typo.output
    assert typo.stderr.startswith("warning: imagestream shop/sitee does not exist:")
    tag_typo = run("set", "triggers", "deploy/web", "--from-image=web:lates")
    assert "warning: shop/web:lates does not exist (its tags: latest):" in tag_typo.stderr
    refused = run("set", "triggers", "deploy/web", "--from-image=sitee:latest", "-c", "x")
    assert refused.exit_code == 1
    assert refused.output == "Error: deployment/web has no container x (it has: web)\n"
    same = run("set", "triggers", "bc/web", "--from-config")
    assert same.output == "buildconfig.build.headwater.dev/web triggers unchanged\n"
    webhook = run("set", "triggers", "deploy/web", "--from-github")
    assert webhook.exit_code == 1
    assert webhook.output == "Error: deployment/web: webhooks trigger BuildConfigs only\n"


def test_kubectl_plugin_names_itself(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.setattr(sys, "argv", ["/venv/bin/kubectl-headwater", "get", "--help"])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("Usage: kubectl headwater get")
