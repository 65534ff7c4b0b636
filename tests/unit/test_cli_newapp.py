"""``headwater new-app``: arguments to an App, and an App to manifests (no cluster)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from headwater.cli.convert import REPO_CRD_DIR, load_schemas, schema_notes
from headwater.cli.newapp import (
    PLACEHOLDER_IMAGE,
    App,
    Builder,
    GitSource,
    NewAppError,
    derive_name,
    describe,
    is_git_url,
    new_app,
    next_steps,
    parse_builder,
    plan_app,
    render,
)

SECRET = "0123456789abcdef0123456789abcdef01234567"
REPO_URL = "https://git.example.com/shop/web.git"
SCHEMAS = load_schemas(REPO_CRD_DIR)


def kinds(objects: list[dict[str, Any]]) -> list[str]:
    return [f"{o['kind']}/{o['metadata']['name']}" for o in objects]


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    return next(
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    )


def schema_problems(obj: dict[str, Any]) -> list[str]:
    return [str(n) for n in schema_notes(obj, SCHEMAS)]


# --- arguments ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "git"),
    [
        ("https://github.com/example/shop-web.git", True),
        ("http://10.244.0.1:8080/repo", True),
        ("git://10.244.0.1:9418/repo-1.git", True),
        ("ssh://git@git.example.com/shop/web.git", True),
        ("git@github.com:example/shop-web.git", True),
        ("file:///srv/git/web.git", True),
        ("registry.example.com/shop/web:1.2.0", False),
        ("busybox@sha256:" + "a" * 64, False),
        ("nginx", False),
    ],
)
def test_is_git_url(text: str, git: bool) -> None:
    assert is_git_url(text) is git


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("https://github.com/example/shop-web.git", "shop-web"),
        ("https://github.com/example/Shop_Web.git#main", "shop-web"),
        ("git@github.com:example/api.git", "api"),
        ("https://git.example.com/team/", "team"),
        ("registry.example.com/shop/web:1.2.0", "web"),
        ("nginx", "nginx"),
        ("registry.example.com/shop/2048@sha256:" + "b" * 64, ""),
        ("Not An Image", ""),
    ],
)
def test_derive_name(text: str, name: str) -> None:
    assert derive_name(text) == name


def test_git_app_defaults_to_docker() -> None:
    app = plan_app(REPO_URL, webhook_secret=SECRET)
    assert app == App(name="web", git=GitSource(REPO_URL), strategy="Docker", webhook_secret=SECRET)


def test_builder_tilde_means_source_strategy() -> None:
    app = plan_app(f"openshift/nodejs-20~{REPO_URL}#main", name="shop")
    assert app.strategy == "Source"
    assert app.builder == Builder("nodejs-20", "latest", namespace="openshift")
    assert app.git == GitSource(REPO_URL, ref="main")
    assert len(app.webhook_secret) == 40


def test_image_stream_option_and_explicit_docker_strategy() -> None:
    app = plan_app(REPO_URL, strategy="docker", image_stream="base:9", ref="v1", context_dir="svc")
    assert app.strategy == "Docker"
    assert app.builder == Builder("base", "9")
    assert app.git == GitSource(REPO_URL, ref="v1", context_dir="svc")


def test_builder_image_with_a_registry_is_imported_into_its_own_stream() -> None:
    assert parse_builder("quay.io/org/python:3.11", "web") == Builder(
        "python", "3.11", image="quay.io/org/python:3.11"
    )
    assert parse_builder("localhost:5000/web", "web") == Builder(
        "web-builder", "latest", image="localhost:5000/web"
    )
    # A bare name:tag is a stream of the app's namespace, never Docker Hub.
    assert parse_builder("python:3.11", "web") == Builder("python", "3.11")


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (REPO_URL, {"strategy": "source"}, "needs a builder"),
        (f"a:1~{REPO_URL}", {"image_stream": "b:1"}, "give the builder once"),
        (f"{REPO_URL}#main", {"ref": "dev"}, "give one"),
        (REPO_URL, {"name": "Web"}, "--name 'Web'"),
        (REPO_URL, {"name": "x" * 59}, "at most 58"),
        (REPO_URL, {"env": ["1X=2"]}, "--env '1X=2'"),
        (REPO_URL, {"build_env": ["NOVALUE"]}, "--build-env 'NOVALUE'"),
        (REPO_URL, {"ports": [0]}, "--port 0"),
        (REPO_URL, {"image_stream": "Not/Valid/x"}, "is neither"),
        ("registry.example.com/shop/web:1", {"ref": "main"}, "--ref is for Git sources"),
        ("registry.example.com/shop/web:1", {"strategy": "docker"}, "--strategy is for Git"),
        ("Shop/Web", {"name": "web"}, "neither a Git URL nor an image"),
        ("https://git.example.com/123.git", {}, "give --name"),
    ],
)
def test_bad_arguments(args: str, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(NewAppError, match=re.escape(message)):
        plan_app(args, **kwargs)


# --- rendering ----------------------------------------------------------------------------------


def test_docker_app_manifests() -> None:
    objects = render(plan_app(REPO_URL, webhook_secret=SECRET, env=["MODE=prod"]))
    assert kinds(objects) == [
        "ImageStream/web",
        "Secret/web-generic-webhook-secret",
        "BuildConfig/web",
        "Deployment/web",
        "Service/web",
    ]
    for obj in objects:
        assert obj["metadata"]["labels"] == {"app": "web", "app.kubernetes.io/name": "web"}
        assert "namespace" not in obj["metadata"]
    assert find(objects, "ImageStream")["spec"] == {"lookupPolicy": {"local": False}}
    secret = find(objects, "Secret")
    assert secret["stringData"] == {"WebHookSecretKey": SECRET}
    bc = find(objects, "BuildConfig")
    assert bc["spec"] == {
        "source": {"type": "Git", "git": {"uri": REPO_URL}},
        "strategy": {"type": "Docker", "dockerStrategy": {}},
        "output": {"to": {"kind": "ImageStreamTag", "name": "web:latest"}},
        "triggers": [
            {
                "type": "Generic",
                "generic": {"secretReference": {"name": "web-generic-webhook-secret"}},
            },
            {"type": "ConfigChange"},
        ],
    }
    deployment = find(objects, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container == {
        "name": "web",
        "image": PLACEHOLDER_IMAGE,
        "ports": [{"containerPort": 8080, "protocol": "TCP"}],
        "env": [{"name": "MODE", "value": "prod"}],
    }
    triggers = json.loads(deployment["metadata"]["annotations"]["image.openshift.io/triggers"])
    assert triggers == [
        {
            "from": {"kind": "ImageStreamTag", "name": "web:latest"},
            "fieldPath": 'spec.template.spec.containers[?(@.name=="web")].image',
            "paused": False,
        }
    ]
    assert deployment["spec"]["selector"] == {"matchLabels": {"deployment": "web"}}
    assert deployment["spec"]["template"]["metadata"]["labels"]["deployment"] == "web"
    service = find(objects, "Service")
    assert service["spec"] == {
        "selector": {"deployment": "web"},
        "ports": [{"name": "8080-tcp", "port": 8080, "targetPort": 8080, "protocol": "TCP"}],
    }


def test_s2i_app_watches_its_builder() -> None:
    app = plan_app(
        f"openshift/python-311:latest~{REPO_URL}", name="flask", context_dir="app",
        build_env=["PIP_INDEX_URL=https://pypi.example.com/simple"], webhook_secret=SECRET,
    )  # fmt: skip
    bc = find(render(app), "BuildConfig")
    assert bc["spec"]["source"]["contextDir"] == "app"
    assert bc["spec"]["strategy"] == {
        "type": "Source",
        "sourceStrategy": {
            "from": {
                "kind": "ImageStreamTag",
                "name": "python-311:latest",
                "namespace": "openshift",
            },
            "env": [{"name": "PIP_INDEX_URL", "value": "https://pypi.example.com/simple"}],
        },
    }
    assert {"type": "ImageChange", "imageChange": {}} in bc["spec"]["triggers"]


def test_builder_image_stream_is_created_and_imported() -> None:
    app = plan_app(
        f"registry.example.com/s2i/python:3.11~{REPO_URL}", insecure=True, webhook_secret=SECRET
    )
    objects = render(app)
    assert kinds(objects)[:2] == ["ImageStream/python", "ImageStream/web"]
    assert find(objects, "ImageStream", "python")["spec"]["tags"] == [
        {
            "name": "3.11",
            "from": {"kind": "DockerImage", "name": "registry.example.com/s2i/python:3.11"},
            "importPolicy": {"insecure": True, "importMode": "Legacy"},
            "referencePolicy": {"type": "Source"},
        }
    ]
    strategy = find(objects, "BuildConfig")["spec"]["strategy"]["sourceStrategy"]
    assert strategy["from"] == {"kind": "ImageStreamTag", "name": "python:3.11"}


def test_image_app_imports_and_deploys_the_reference() -> None:
    app = plan_app("registry.example.com/shop/web:1.2.0", namespace="shop", ports=[8080, 9090])
    objects = render(app)
    assert kinds(objects) == ["ImageStream/web", "Deployment/web", "Service/web"]
    assert all(o["metadata"]["namespace"] == "shop" for o in objects)
    tag = find(objects, "ImageStream")["spec"]["tags"][0]
    assert (tag["name"], tag["from"]["name"]) == ("1.2.0", "registry.example.com/shop/web:1.2.0")
    deployment = find(objects, "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example.com/shop/web:1.2.0"
    assert "web:1.2.0" in deployment["metadata"]["annotations"]["image.openshift.io/triggers"]
    assert [p["port"] for p in find(objects, "Service")["spec"]["ports"]] == [8080, 9090]


def test_image_by_digest_uses_latest_and_no_service() -> None:
    digest = "sha256:" + "c" * 64
    app = plan_app(f"registry.example.com/shop/web@{digest}", service=False)
    objects = render(app)
    assert kinds(objects) == ["ImageStream/web", "Deployment/web"]
    assert find(objects, "ImageStream")["spec"]["tags"][0]["name"] == "latest"


@pytest.mark.parametrize(
    "source",
    [REPO_URL, f"openshift/nodejs-20~{REPO_URL}", f"quay.io/o/b:1~{REPO_URL}", "nginx:1.25"],
)
def test_headwater_objects_fit_the_crds(source: str) -> None:
    for obj in render(plan_app(source, name="app", webhook_secret=SECRET)):
        if obj["apiVersion"].startswith(("image.headwater.dev", "build.headwater.dev")):
            assert schema_problems(obj) == []


def test_describe_and_next_steps() -> None:
    objects = render(plan_app(f"nodejs-20~{REPO_URL}", webhook_secret=SECRET))
    assert describe(objects[0]) == 'imagestream.image.headwater.dev "web"'
    assert describe(objects[1]) == 'secret "web-generic-webhook-secret"'
    app = plan_app(f"nodejs-20~{REPO_URL}")
    steps = "\n".join(next_steps(app, "shop", builder_missing=True))
    assert "headwater logs -f bc/web -n shop" in steps
    assert "headwater import-image nodejs-20:latest --from=<builder image> --confirm" in steps
    assert "import-image" not in "\n".join(next_steps(app, "shop"))
    assert "kubectl port-forward svc/web 8080 -n shop" in steps
    assert "Generic webhook URL: headwater webhooks web -n shop" in steps
    # A Docker build has no builder tag to wait for (issue 19).
    docker_steps = "\n".join(next_steps(plan_app(REPO_URL), "shop"))
    assert "builder" not in docker_steps
    assert "A build starts now (ConfigChange trigger); follow it: headwater logs -f bc/" in (
        docker_steps
    )
    image_steps = "\n".join(next_steps(plan_app("registry.example.com/shop/web:1"), "shop"))
    assert "kubectl rollout status deployment/web -n shop" in image_steps


# --- the command ---------------------------------------------------------------------------------


def test_command_prints_yaml_with_the_namespace() -> None:
    result = CliRunner().invoke(new_app, [REPO_URL, "-o", "yaml", "-n", "shop"])
    assert result.exit_code == 0, result.output
    documents = list(yaml.safe_load_all(result.stdout))
    assert [d["kind"] for d in documents] == [
        "ImageStream", "Secret", "BuildConfig", "Deployment", "Service",
    ]  # fmt: skip
    assert {d["metadata"]["namespace"] for d in documents} == {"shop"}
    assert documents[3]["spec"]["template"]["spec"]["containers"][0]["image"] == " "
    assert "webhook secret" in result.stderr


def test_command_prints_json_list() -> None:
    result = CliRunner().invoke(new_app, ["registry.example.com/shop/web:1.2.0", "-o", "json"])
    assert result.exit_code == 0
    listed = json.loads(result.stdout)
    assert listed["kind"] == "List"
    assert [i["kind"] for i in listed["items"]] == ["ImageStream", "Deployment", "Service"]
    assert result.stderr == ""


def test_command_usage_error_is_exit_2() -> None:
    result = CliRunner().invoke(new_app, [REPO_URL, "--strategy", "source", "-o", "yaml"])
    assert result.exit_code == 2
    assert "needs a builder" in result.stderr


def test_command_without_a_cluster_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    result = CliRunner().invoke(new_app, [REPO_URL])
    assert result.exit_code == 1
    assert "kubeconfig" in result.stderr
