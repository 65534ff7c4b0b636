"""DeploymentConfigs converted to apps/v1 Deployments with Headwater's image trigger annotation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from headwater.cli.convert import REPO_CRD_DIR, Note, convert_object, convert_text, load_schemas
from headwater.workloads.triggers import parse_triggers

DATA = Path(__file__).resolve().parents[1] / "data" / "openshift"
DCS = DATA / "deploymentconfigs"
SCHEMAS = load_schemas(REPO_CRD_DIR)


def converted(path: Path) -> tuple[list[Any], list[Note]]:
    result = convert_text(path.read_text(), path.name, SCHEMAS)
    flat = [i for d in result.documents for i in (d["items"] if d["kind"] == "List" else [d])]
    return flat, result.notes


def found(notes: list[Note]) -> dict[str, tuple[str, str]]:
    return {f"{n.obj} {n.path}".strip(): (n.severity, n.message) for n in notes}


def triggers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    value = json.loads(deployment["metadata"]["annotations"]["image.openshift.io/triggers"])
    assert isinstance(value, list)
    return value


def test_test_deployment_with_a_hook() -> None:
    (deployment,), notes = converted(DCS / "test-deployment-test.yaml")
    assert deployment["apiVersion"] == "apps/v1"
    assert deployment["kind"] == "Deployment"
    spec = deployment["spec"]
    assert spec["selector"] == {"matchLabels": {"name": "deployment-test"}}
    assert spec["replicas"] == 2
    assert spec["strategy"] == {"type": "RollingUpdate"}
    assert spec["template"]["spec"]["containers"][0]["image"] == "docker.io/centos:centos7"
    assert "test" not in spec
    assert "annotations" not in deployment["metadata"]  # no ImageChange trigger
    notes_by = found(notes)
    severity, message = notes_by["DeploymentConfig/deployment-test spec.strategy.rollingParams.pre"]
    assert severity == "warning"
    assert "pre lifecycle hook is not converted" in message
    assert notes_by["DeploymentConfig/deployment-test spec.test"][0] == "warning"
    severity, message = notes_by["DeploymentConfig/deployment-test spec.triggers[0]"]
    assert (severity, message.split(":")[0]) == ("info", "ConfigChange dropped")


def test_one_image_change_trigger_for_two_containers_without_image() -> None:
    (deployment,), notes = converted(DCS / "multi-ict-deployment.yaml")
    assert triggers(deployment) == [
        {
            "from": {"kind": "ImageStreamTag", "name": "ruby-30:latest"},
            "fieldPath": f'spec.template.spec.containers[?(@.name=="{name}")].image',
        }
        for name in ("ruby", "ruby2")
    ]
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert [c["image"] for c in containers] == ["ruby-30:latest", "ruby-30:latest"]
    # Without a selector the template's labels select, as OpenShift defaults it.
    assert deployment["spec"]["selector"] == {"matchLabels": {"app": "example"}}
    # Headwater's own parser accepts the annotation for this Deployment.
    annotation = deployment["metadata"]["annotations"]["image.openshift.io/triggers"]
    assert len(parse_triggers(annotation, "Deployment", "ns")) == 2
    filled = found(notes)["DeploymentConfig/example spec.template.spec.containers[1].image"]
    assert filled[0] == "info"
    assert "empty, written as 'ruby-30:latest'" in filled[1]


def test_custom_params_and_hooks_are_reported() -> None:
    (deployment,), notes = converted(DCS / "custom-deployment.yaml")
    assert deployment["spec"]["strategy"] == {"type": "RollingUpdate"}
    notes_by = found(notes)
    assert notes_by["DeploymentConfig/custom-deployment spec.strategy.customParams"][0] == "warning"
    assert (
        "pre lifecycle hook"
        in (notes_by["DeploymentConfig/custom-deployment spec.strategy.rollingParams.pre"][1])
    )


def test_legacy_list_with_triggers_on_the_openshift_namespace() -> None:
    (deployment,), notes = converted(DCS / "deployment-example.yaml")
    assert [t["from"] for t in triggers(deployment)] == [
        {"kind": "ImageStreamTag", "name": "ruby:latest", "namespace": "openshift"},
        {"kind": "ImageStreamTag", "name": "mongodb:latest", "namespace": "openshift"},
    ]
    grants = [n.message for n in notes if n.path == "metadata.annotations"]
    assert len(grants) == 2
    assert "--clusterrole=headwater-view" in grants[0]
    assert "kubectl -n openshift create rolebinding" in grants[0]


def test_strategies_and_kept_fields() -> None:
    dc: dict[str, Any] = {
        "apiVersion": "apps.openshift.io/v1",
        "kind": "DeploymentConfig",
        "metadata": {"name": "web", "uid": "x", "resourceVersion": "1"},
        "spec": {
            "replicas": 3,
            "revisionHistoryLimit": 4,
            "minReadySeconds": 5,
            "selector": {"app": "web"},
            "strategy": {
                "type": "Rolling",
                "rollingParams": {"maxSurge": "50%", "maxUnavailable": 0, "timeoutSeconds": 300},
                "resources": {"limits": {"cpu": "1"}},
            },
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "initContainers": [{"name": "migrate", "image": " "}],
                    "containers": [{"name": "web", "image": " "}],
                },
            },
            "triggers": [
                {
                    "type": "ImageChange",
                    "imageChangeParams": {
                        "automatic": False,
                        "containerNames": ["web", "migrate"],
                        "from": {"kind": "ImageStreamTag", "name": "web:1", "namespace": "ci"},
                        "lastTriggeredImage": "r/web@sha256:1",
                    },
                }
            ],
        },
        "status": {"latestVersion": 3},
    }
    (deployment,), notes = convert_object(dc, SCHEMAS, "f")
    assert deployment["metadata"]["name"] == "web"
    assert set(deployment["metadata"]) == {"name", "annotations"}
    spec = deployment["spec"]
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": "50%", "maxUnavailable": 0},
    }
    assert spec["progressDeadlineSeconds"] == 300
    assert (spec["replicas"], spec["revisionHistoryLimit"], spec["minReadySeconds"]) == (3, 4, 5)
    assert triggers(deployment) == [
        {
            "from": {"kind": "ImageStreamTag", "name": "web:1", "namespace": "ci"},
            "fieldPath": 'spec.template.spec.containers[?(@.name=="web")].image',
            "paused": True,
        },
        {
            "from": {"kind": "ImageStreamTag", "name": "web:1", "namespace": "ci"},
            "fieldPath": 'spec.template.spec.initContainers[?(@.name=="migrate")].image',
            "paused": True,
        },
    ]
    pod = spec["template"]["spec"]
    assert pod["containers"][0]["image"] == "web:1"
    assert pod["initContainers"][0]["image"] == "web:1"
    notes_by = found(notes)
    assert (
        "spec.progressDeadlineSeconds"
        in (notes_by["DeploymentConfig/web spec.strategy.rollingParams.timeoutSeconds"][1])
    )
    assert "deployer pod" in notes_by["DeploymentConfig/web spec.strategy.resources"][1]
    assert (
        "' ', written as 'web:1'"
        in (notes_by["DeploymentConfig/web spec.template.spec.containers[0].image"][1])
    )
    recreate = {**dc, "spec": {**dc["spec"], "strategy": {"type": "Recreate"}}}
    assert convert_object(recreate, SCHEMAS, "f")[0][0]["spec"]["strategy"] == {"type": "Recreate"}
    custom = {**dc, "spec": {**dc["spec"], "strategy": {"type": "Custom", "customParams": {}}}}
    (out,), custom_notes = convert_object(custom, SCHEMAS, "f")
    assert "strategy" not in out["spec"]
    assert (
        "Custom strategy is not converted"
        in found(custom_notes)["DeploymentConfig/web spec.strategy"][1]
    )


def test_a_trigger_on_a_container_that_does_not_exist_is_an_error() -> None:
    dc = {
        "apiVersion": "apps.openshift.io/v1",
        "kind": "DeploymentConfig",
        "metadata": {"name": "web"},
        "spec": {
            "template": {"spec": {"containers": [{"name": "web", "image": "x"}]}},
            "triggers": [
                {
                    "type": "ImageChange",
                    "imageChangeParams": {
                        "containerNames": ["wbe"],
                        "from": {"kind": "ImageStreamTag", "name": "web:1"},
                    },
                }
            ],
        },
    }
    _, notes = convert_object(dc, SCHEMAS, "f")
    severity, message = found(notes)[
        "DeploymentConfig/web spec.triggers[0].imageChangeParams.containerNames"
    ]
    assert severity == "error"
    assert "no container 'wbe'" in message


def test_converted_deployment_parses_as_yaml_and_again_is_quiet() -> None:
    documents, _ = converted(DATA / "builds" / "build-postcommit-docker.yaml")
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "mydockertest:latest"
    again = convert_text(yaml.safe_dump(deployment), "again", SCHEMAS)
    assert again.documents == [deployment]
    assert again.notes == []
