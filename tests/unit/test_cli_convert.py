"""``headwater convert`` on the OpenShift manifests of ``tests/data/openshift/``."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from headwater.cli.convert import (
    REPO_CRD_DIR,
    ConvertError,
    Note,
    convert,
    convert_object,
    convert_text,
    dump_json,
    dump_yaml,
    load_schemas,
    parse_documents,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "openshift"
APPLICABLE = sorted(p for p in DATA.iterdir() if p.suffix in (".yaml", ".json"))
SCHEMAS = load_schemas(REPO_CRD_DIR)


def converted(name: str) -> tuple[list[Any], list[Note]]:
    path = DATA / name
    result = convert_text(path.read_text(), name, SCHEMAS)
    return result.documents, result.notes


def by_kind(documents: list[Any], kind: str, name: str) -> dict[str, Any]:
    flat = [i for d in documents for i in (d["items"] if d["kind"] == "List" else [d])]
    return next(d for d in flat if d["kind"] == kind and d["metadata"]["name"] == name)


def messages(notes: list[Note], severity: str | None = None) -> dict[str, str]:
    """``{"Kind/name path": message}`` of the notes (of one severity)."""
    return {
        f"{n.obj} {n.path}".strip(): n.message
        for n in notes
        if severity is None or n.severity == severity
    }


def run(*args: str, stdin: str | None = None) -> Any:
    return CliRunner().invoke(convert, list(args), input=stdin)


# --- the data set -------------------------------------------------------------------------------


def test_schemas_are_the_three_crds() -> None:
    assert set(SCHEMAS) == {
        ("image.headwater.dev", "ImageStream"),
        ("build.headwater.dev", "BuildConfig"),
        ("build.headwater.dev", "Build"),
    }


@pytest.mark.parametrize("path", APPLICABLE, ids=lambda p: p.name)
def test_every_file_converts_to_headwater_groups(path: Path) -> None:
    result = convert_text(path.read_text(), path.name, SCHEMAS)
    flat = [i for d in result.documents for i in (d.get("items") or [d])]
    assert flat
    for obj in flat:
        assert "openshift.io" not in obj["apiVersion"], obj
        assert "status" not in obj or obj["kind"] not in ("ImageStream", "BuildConfig", "Build")
    # Errors only for what is skipped (nothing left that the API server would refuse).
    for note in result.notes:
        if note.severity == "error":
            assert "skipped" in note.message, note


@pytest.mark.parametrize("path", APPLICABLE, ids=lambda p: p.name)
def test_converting_twice_changes_nothing_more(path: Path) -> None:
    once = convert_text(path.read_text(), path.name, SCHEMAS)
    again = convert_text(dump_yaml(once.documents), path.name, SCHEMAS)
    assert again.documents == once.documents
    assert [n for n in again.notes if n.severity != "warning" or "removed" in n.message] == []


def test_seed_imagestream() -> None:
    documents, notes = converted("seed-imagestream-web.yaml")
    original = yaml.safe_load((DATA / "seed-imagestream-web.yaml").read_text())
    assert documents == [{**original, "apiVersion": "image.headwater.dev/v1"}]
    assert notes == []


def test_seed_buildconfig_needs_the_openshift_builder_imported() -> None:
    documents, notes = converted("seed-buildconfig-web.yaml")
    assert documents[0]["apiVersion"] == "build.headwater.dev/v1"
    found = messages(notes)
    builder = found["BuildConfig/web spec.strategy.sourceStrategy.from"]
    assert "openshift/nodejs-20:latest" in builder
    assert "headwater import-image nodejs-20:latest -n openshift --from=<builder image>" in builder
    hook = found["BuildConfig/web spec.triggers[1]"]
    assert hook.startswith("GitHub webhook: the operator serves it at its own address")
    assert "`headwater webhooks <bc>`" in hook


def test_seed_deployment_passes_through_with_the_internal_registry_explained() -> None:
    documents, notes = converted("seed-deployment-web.yaml")
    assert documents == [yaml.safe_load((DATA / "seed-deployment-web.yaml").read_text())]
    (note,) = notes
    assert note.severity == "warning"
    assert note.path == "spec.template.spec.containers[0].image"
    suggested = note.message.split("image.openshift.io/triggers: ", 1)[1].strip("'")
    assert json.loads(suggested) == [
        {
            "from": {"kind": "ImageStreamTag", "name": "web:latest"},
            "fieldPath": 'spec.template.spec.containers[?(@.name=="web")].image',
        }
    ]


def test_deployment_with_a_trigger_annotation_is_unchanged_and_quiet() -> None:
    documents, notes = converted("unsupported-app.yaml")
    deployment = by_kind(documents, "Deployment", "shop")
    original = list(yaml.safe_load_all((DATA / "unsupported-app.yaml").read_text()))[2]
    assert deployment == original
    assert "image.openshift.io/triggers" in deployment["metadata"]["annotations"]
    assert not [n for n in notes if n.obj == "Deployment/shop"]


def test_exported_buildconfig() -> None:
    documents, notes = converted("exported-buildconfig-api.yaml")
    (bc,) = documents
    assert set(bc["metadata"]) == {"annotations", "labels", "name", "namespace"}
    assert bc["metadata"]["annotations"] == {"openshift.io/generated-by": "OpenShiftNewApp"}
    assert "status" not in bc
    spec = bc["spec"]
    assert spec["source"]["type"] == "Git"
    assert spec["strategy"]["type"] == "Docker"
    assert [t["type"] for t in spec["triggers"]] == [
        "GitHub",
        "Generic",
        "ImageChange",
        "ConfigChange",
    ]
    assert spec["triggers"][0]["github"] == {"secretReference": {"name": "api-webhook"}}
    assert spec["triggers"][2]["imageChange"] == {}
    found = messages(notes)
    assert "removed" in found["BuildConfig/api spec.triggers[0].github.allowEnv"]
    account = found["BuildConfig/api spec.serviceAccount"]
    assert "Headwater's default is `default`" in account
    assert "kubectl create serviceaccount builder" in account
    assert "drop the field" in account
    not_honoured = {
        "spec.source.images": "nothing is copied out of images",
        "spec.strategy.dockerStrategy.volumes": "nothing is mounted",
        "spec.strategy.dockerStrategy.imageOptimizationPolicy": "never squashed",
        "spec.strategy.dockerStrategy.env[1].valueFrom": "API_TOKEN: valueFrom is not resolved",
        "spec.mountTrustedCA": "no CA bundle",
        "spec.triggers[1].generic.secret": "move it to a Secret",
    }
    for path, text in not_honoured.items():
        assert text in found[f"BuildConfig/api {path}"]
        assert messages(notes, "warning")[f"BuildConfig/api {path}"]
    changes = messages(notes, "info")
    assert "uid" in changes["BuildConfig/api metadata"]
    assert "last-applied-configuration" in changes["BuildConfig/api metadata"]
    assert changes["BuildConfig/api spec.triggers[0].type"] == "'github' written as 'GitHub'"


def test_exported_build_loses_the_webhook_secret_and_says_it_starts_a_build() -> None:
    documents, notes = converted("exported-build-api-7.yaml")
    (build,) = documents
    assert build["apiVersion"] == "build.headwater.dev/v1"
    assert "ownerReferences" not in build["metadata"]
    assert build["metadata"]["labels"]["openshift.io/build-config.name"] == "api"
    assert "secret" not in build["spec"]["triggeredBy"][0]["genericWebHook"]
    found = messages(notes)
    assert "applying it starts a build" in found["Build/api-7"]
    assert "internal registry" in found["Build/api-7 spec.output.to"]


def test_legacy_v1_list_keeps_its_shape() -> None:
    documents, notes = converted("legacy-v1-list.yaml")
    (listed,) = documents
    assert (listed["apiVersion"], listed["kind"]) == ("v1", "List")
    stream, bc = listed["items"]
    assert stream["apiVersion"] == "image.headwater.dev/v1"
    assert stream["spec"]["tags"][1]["from"] == {"kind": "ImageStreamTag", "name": "api:1.0"}
    assert bc["apiVersion"] == "build.headwater.dev/v1"
    assert bc["spec"]["strategy"] == {"type": "Docker", "dockerStrategy": {}}
    assert bc["spec"]["source"]["type"] == "Git"
    changes = messages(notes, "info")
    assert changes["ImageStream/api spec.tags[1].from.name"] == "'1.0' written as 'api:1.0'"
    assert "OpenShift's default" in changes["BuildConfig/api-legacy spec.strategy.dockerStrategy"]


def test_json_file_with_tabs() -> None:
    documents, notes = converted("exported-imagestream-tools.json")
    (stream,) = documents
    assert stream["spec"]["tags"][0]["name"] == "1.10"
    assert set(stream["metadata"]) == {"name", "namespace"}
    assert {n.path for n in notes} == {"metadata", "status"}


def test_deploymentconfig_converted_and_jenkins_pipeline_dropped() -> None:
    documents, notes = converted("unsupported-app.yaml")
    kinds = [d["kind"] for d in documents]
    assert kinds == ["ImageStream", "Deployment", "Deployment", "Service"]
    deployment = by_kind(documents, "Deployment", "shop-dc")
    annotation = deployment["metadata"]["annotations"]["image.openshift.io/triggers"]
    assert json.loads(annotation) == [
        {
            "from": {"kind": "ImageStreamTag", "name": "shop:latest"},
            "fieldPath": 'spec.template.spec.containers[?(@.name=="shop")].image',
        }
    ]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "shop:latest"
    errors = messages(notes, "error")
    assert list(errors) == ["BuildConfig/shop-pipeline spec.strategy"]
    assert "JenkinsPipeline is not supported" in errors["BuildConfig/shop-pipeline spec.strategy"]
    warnings = messages(notes, "warning")
    assert "ignored" in warnings["ImageStream/shop spec.dockerImageRepository"]


@pytest.mark.parametrize(
    ("kind", "how"),
    [
        ("ImageStreamTag", "headwater tag"),
        ("ImageStreamImport", "headwater import-image"),
        ("BuildRequest", "headwater start-build"),
    ],
)
def test_virtual_kinds_are_skipped(kind: str, how: str) -> None:
    group = "build" if kind == "BuildRequest" else "image"
    obj = {"apiVersion": f"{group}.openshift.io/v1", "kind": kind, "metadata": {"name": "x"}}
    documents, notes = convert_object(obj, SCHEMAS, "f")
    assert documents == []
    assert notes[0].severity == "error"
    assert how in notes[0].message


def test_openshift_only_kinds_pass_through_with_a_warning() -> None:
    path = DATA / "openshift-only" / "route-web.yaml"
    route = convert_text(path.read_text(), "r", SCHEMAS)
    assert route.documents == list(yaml.safe_load_all(path.read_text()))
    (note,) = route.notes
    assert note.severity == "warning"
    assert "passed through unchanged" in note.message
    assert "Ingress" in note.message


def test_a_legacy_template_keeps_its_references_and_converts_its_objects() -> None:
    path = DATA / "openshift-only" / "template-legacy.yaml"
    result = convert_text(path.read_text(), "t", SCHEMAS)
    (template,) = result.documents
    assert template["apiVersion"] == "template.openshift.io/v1"
    assert template["objects"] == [
        {
            "apiVersion": "image.headwater.dev/v1",
            "kind": "ImageStream",
            "metadata": {"name": "${NAME}"},
        }
    ]
    assert template["parameters"] == [{"name": "NAME", "value": "web"}]
    assert {n.severity for n in result.notes} == {"info"}


def test_other_objects_pass_through_untouched() -> None:
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "uid": "u"}}
    documents, notes = convert_object(copy.deepcopy(config), SCHEMAS, "f")
    assert documents == [config]
    assert notes == []


# --- the schema walk --------------------------------------------------------------------------


def bc(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "build.openshift.io/v1",
        "kind": "BuildConfig",
        "metadata": {"name": "b"},
        "spec": spec,
    }


DOCKER = {"type": "Docker", "dockerStrategy": {}}


def test_unquoted_numbers_are_errors_not_guesses() -> None:
    stream = {
        "apiVersion": "image.openshift.io/v1",
        "kind": "ImageStream",
        "metadata": {"name": "web"},
        "spec": {"tags": [{"name": 1.1, "from": {"kind": "DockerImage", "name": "r/web:1.10"}}]},
    }
    documents, notes = convert_object(stream, SCHEMAS, "f")
    assert documents[0]["spec"]["tags"][0]["name"] == 1.1
    found = messages(notes, "error")
    assert "quote it" in found["ImageStream/web spec.tags[0].name"]


def test_enum_type_and_required_errors() -> None:
    spec = {
        "strategy": {"type": "Source", "sourceStrategy": {"forcePull": "yes"}},
        "runPolicy": "Sometimes",
    }
    _, notes = convert_object(bc(spec), SCHEMAS, "f")
    found = messages(notes, "error")
    assert "not one of Serial, Parallel, SerialLatestOnly" in found["BuildConfig/b spec.runPolicy"]
    assert "expected true or false" in found["BuildConfig/b spec.strategy.sourceStrategy.forcePull"]
    assert found["BuildConfig/b spec.strategy.sourceStrategy.from"] == "required, and missing"


def test_nulls_and_int_or_string_quantities_are_fine() -> None:
    spec = {
        "strategy": DOCKER,
        "nodeSelector": None,
        "resources": {"limits": {"cpu": 2, "memory": "1Gi"}},
        "output": None,
    }
    documents, notes = convert_object(bc(spec), SCHEMAS, "f")
    assert documents[0]["spec"]["resources"] == {"limits": {"cpu": 2, "memory": "1Gi"}}
    assert notes == []


def test_strategy_type_inferred_from_the_block_and_custom_notes() -> None:
    custom = {
        "from": {"kind": "DockerImage", "name": "registry.example.com/builder:1"},
        "exposeDockerSocket": True,
        "buildAPIVersion": "build.openshift.io/v1",
        "env": [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
    }
    documents, notes = convert_object(bc({"strategy": {"customStrategy": custom}}), SCHEMAS, "f")
    assert documents[0]["spec"]["strategy"]["type"] == "Custom"
    found = messages(notes, "warning")
    assert (
        "InvalidStrategy" in found["BuildConfig/b spec.strategy.customStrategy.exposeDockerSocket"]
    )
    assert "ignored" in found["BuildConfig/b spec.strategy.customStrategy.buildAPIVersion"]
    assert "valueFrom" in found["BuildConfig/b spec.strategy.customStrategy.env[0].valueFrom"]


def test_image_change_without_a_tag_to_watch() -> None:
    spec = {"strategy": DOCKER, "triggers": [{"type": "ImageChange", "imageChange": {}}]}
    _, notes = convert_object(bc(spec), SCHEMAS, "f")
    assert "never fires" in messages(notes, "warning")["BuildConfig/b spec.triggers[0]"]


def test_source_type_inference() -> None:
    for block, expected in (
        ({"dockerfile": "FROM x"}, "Dockerfile"),
        ({"binary": {}}, "Binary"),
        ({"contextDir": "app"}, "None"),
    ):
        documents, _ = convert_object(bc({"strategy": DOCKER, "source": block}), SCHEMAS, "f")
        assert documents[0]["spec"]["source"]["type"] == expected


def test_without_schemas_nothing_is_removed() -> None:
    obj = bc({"strategy": DOCKER, "surprise": 1})
    documents, notes = convert_object(obj, None, "f")
    assert documents[0]["spec"]["surprise"] == 1
    assert documents[0]["apiVersion"] == "build.headwater.dev/v1"
    assert notes == []


# --- parsing and printing ----------------------------------------------------------------------


def test_broken_files_are_errors() -> None:
    with pytest.raises(ConvertError, match=r"line 11, column 42.*mapping values"):
        parse_documents((DATA / "broken" / "unquoted-colon.yaml").read_text(), "u.yaml")
    with pytest.raises(ConvertError, match="document 1 is not a Kubernetes object"):
        parse_documents((DATA / "broken" / "not-an-object.yaml").read_text(), "n.yaml")
    assert parse_documents("---\n---\n", "empty.yaml") == []


def test_multi_line_strings_stay_blocks() -> None:
    obj = bc(
        {"strategy": DOCKER, "source": {"type": "Dockerfile", "dockerfile": "FROM a\nRUN b\n"}}
    )
    documents, _ = convert_object(obj, SCHEMAS, "f")
    text = dump_yaml(documents)
    assert "dockerfile: |\n      FROM a\n      RUN b\n" in text
    assert yaml.safe_load(text) == documents[0]


# --- the command ---------------------------------------------------------------------------------


def test_command_directory_yaml() -> None:
    result = run("-f", str(DATA))
    # The JenkinsPipeline BuildConfig is dropped: exit 1, everything else still printed.
    assert result.exit_code == 1, result.stderr
    documents = list(yaml.safe_load_all(result.stdout))
    assert len(documents) == 13
    assert "unsupported-app.yaml[2]: DeploymentConfig/shop-dc\n" in result.stderr
    assert "  error: spec.strategy: JenkinsPipeline is not supported" in result.stderr
    assert "openshift-only" not in result.stdout
    assert result.stderr.splitlines()[-1] == (
        "15 objects: 11 converted, 3 left as they are, 1 dropped"
        " (BuildConfig/shop-pipeline); 1 error, 19 warnings"
    )


def test_command_exit_0_only_when_nothing_was_dropped_and_strict_fails_on_warnings() -> None:
    clean = run("-f", str(DATA / "seed-imagestream-web.yaml"))
    assert clean.exit_code == 0
    assert clean.stderr.splitlines()[-1] == "1 object: 1 converted, 0 left as they are, 0 dropped"
    warned = run("-f", str(DATA / "seed-buildconfig-web.yaml"))
    assert warned.exit_code == 0
    assert warned.stderr.splitlines()[-1].endswith("; 2 warnings")
    assert run("-f", str(DATA / "seed-buildconfig-web.yaml"), "--strict").exit_code == 1
    assert run("-f", str(DATA / "seed-imagestream-web.yaml"), "--strict").exit_code == 0
    virtual = {
        "apiVersion": "image.openshift.io/v1",
        "kind": "ImageStreamTag",
        "metadata": {"name": "a:b"},
    }
    dropped = run("-f", "-", stdin=yaml.safe_dump(virtual))
    assert dropped.exit_code == 1
    assert dropped.stdout == ""
    assert "0 converted, 0 left as they are, 1 dropped (ImageStreamTag/a:b)" in dropped.stderr


def test_command_folds_identical_notes_of_one_object() -> None:
    tags = [
        {
            "name": f"v{i}",
            "from": {"kind": "DockerImage", "name": f"r/x:{i}"},
            "referencePolicy": {"type": "Local"},
        }
        for i in range(21)
    ]
    stream = {
        "apiVersion": "image.openshift.io/v1",
        "kind": "ImageStream",
        "metadata": {"name": "x"},
        "spec": {"tags": tags},
    }
    result = run("-f", "-", stdin=yaml.safe_dump(stream))
    assert result.exit_code == 0
    lines = result.stderr.splitlines()
    assert lines[0] == "<stdin>: ImageStream/x"
    assert len(lines) == 3
    assert lines[1].startswith("  info: spec.tags[*].referencePolicy.type: Local points consumers")
    assert lines[1].endswith("(on 21 tags)")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no Kubernetes objects in it"),
        ("# only a comment\n---\n", "no Kubernetes objects in it"),
        ("- a\n- b\n", "document 1 is not a Kubernetes object (apiVersion and kind)"),
        ("a: [\n", "not valid YAML (line 2, column 1)"),
    ],
)
def test_command_bad_input_is_one_line_and_exit_1(text: str, message: str) -> None:
    result = run("-f", "-", stdin=text)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"error: <stdin>: {message}")
    assert result.stderr.count("\n") == 1


def test_command_empty_file_and_empty_directory(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    result = run("-f", str(empty))
    assert result.exit_code == 1
    assert result.stderr == f"error: {empty}: no Kubernetes objects in it\n"
    folder = tmp_path / "nothing"
    folder.mkdir()
    result = run("-f", str(folder))
    assert result.exit_code == 1
    assert result.stderr == f"error: {folder}: no .yaml, .yml or .json files in it\n"


def test_command_recursive_reports_unparseable_files_and_prints_nothing() -> None:
    result = run("-f", str(DATA), "--recursive")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "not-an-object.yaml: document 1 is not a Kubernetes object" in result.stderr
    assert "unquoted-colon.yaml: not valid YAML" in result.stderr


def test_command_json_single_object_and_list() -> None:
    single = run("-f", str(DATA / "seed-imagestream-web.yaml"), "-o", "json")
    assert single.exit_code == 0
    assert json.loads(single.stdout)["apiVersion"] == "image.headwater.dev/v1"
    many = run("-f", str(DATA / "seed-buildconfig-docker-and-python.yaml"), "-o", "json")
    listed = json.loads(many.stdout)
    assert listed["kind"] == "List"
    assert [i["metadata"]["name"] for i in listed["items"]] == ["web-docker", "flask"]


def test_command_stdin() -> None:
    text = (DATA / "seed-buildconfig-web.yaml").read_text()
    result = run("-f", "-", stdin=text)
    assert result.exit_code == 0
    assert yaml.safe_load(result.stdout)["apiVersion"] == "build.headwater.dev/v1"
    assert "<stdin>: BuildConfig/web\n" in result.stderr


def test_command_usage_errors() -> None:
    assert run().exit_code == 2
    assert run("-f", str(DATA), "-o", "xml").exit_code == 2


def test_command_with_an_empty_crd_directory(tmp_path: Path) -> None:
    # Issue 16: a --crds without CRDs is a bad request (one line, exit 1), not a silent skip.
    result = run("-f", str(DATA / "seed-imagestream-web.yaml"), "--crds", str(tmp_path))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert "no CustomResourceDefinition" in result.stderr


def test_json_lists_among_several_documents_are_flattened() -> None:
    # kubectl reads no List inside a List.
    stream = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}
    listed = {"apiVersion": "v1", "kind": "List", "items": [stream, stream]}
    assert json.loads(dump_json([listed, stream]))["items"] == [stream, stream, stream]
    assert json.loads(dump_json([listed])) == listed


def test_command_missing_file_is_a_failed_request_in_one_line(tmp_path: Path) -> None:
    # Issue 19: the docs say exit 1 for a file that cannot be read; click's usage said 2.
    missing = tmp_path / "missing.yaml"
    result = run("-f", str(missing))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == f"Error: -f {missing}: no such file or directory\n"
