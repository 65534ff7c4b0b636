"""Issue 16, items 1 and 2: ``convert`` validates against the real CRDs, and fixes what it can.

Offline validation (``headwater.cli.validation``) is checked against the CRD
admission corpus of ``tests/crds/``: each invalid file is reported at the
field its header names, each valid file passes. Every CEL rule of ``crds/`` is
evaluated by cel-python on a valid sample, so a rule cel-python cannot
evaluate fails here rather than being skipped silently.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from headwater.cli import validation
from headwater.cli.convert import (
    REPO_CRD_DIR,
    ConvertError,
    Note,
    _Context,
    check_schema,
    convert,
    convert_object,
    load_schemas,
)
from headwater.cli.validation import (
    OBJECT_META_FIELDS,
    PACKAGED_CRDS,
    evaluate_rule,
    is_transition_rule,
    packaged_schemas,
    rule_sites,
    validate,
)

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests" / "crds"
VALID = sorted((CORPUS / "valid").glob("*.yaml"))
INVALID = sorted((CORPUS / "invalid").glob("*.yaml"))
DATA = REPO / "tests" / "data" / "openshift"
SCHEMAS = packaged_schemas()
GROUPS = {
    "ImageStream": "image.headwater.dev",
    "BuildConfig": "build.headwater.dev",
    "Build": "build.headwater.dev",
}


def schema_of(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return SCHEMAS[(GROUPS[str(obj["kind"])], str(obj["kind"]))]


def notes_of(notes: list[Note], severity: str) -> dict[str, str]:
    """``{path: message}``; several messages at one path are joined with `` | ``."""
    found: dict[str, str] = {}
    for n in notes:
        if n.severity == severity:
            found[n.path] = f"{found[n.path]} | {n.message}" if n.path in found else n.message
    return found


def errors(notes: list[Note]) -> dict[str, str]:
    return notes_of(notes, "error")


def run(*args: str) -> Any:
    return CliRunner().invoke(convert, list(args))


# --- the CRDs ship in the package ------------------------------------------------------------


def test_packaged_crds_are_the_repository_crds() -> None:
    packaged = {p.name: p.read_text() for p in PACKAGED_CRDS.iterdir() if p.name.endswith(".yaml")}
    repo = {p.name: p.read_text() for p in REPO_CRD_DIR.glob("*.yaml")}
    assert packaged == repo
    assert len(packaged) == 3


def test_pyproject_ships_the_crds_as_package_data() -> None:
    import tomllib

    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "crds/*.yaml" in pyproject["tool"]["setuptools"]["package-data"]["headwater"]
    dependencies = " ".join(pyproject["project"]["dependencies"])
    assert "cel-python" in dependencies
    assert "jsonschema" in dependencies


def test_convert_uses_the_packaged_crds_by_default() -> None:
    assert load_schemas() == load_schemas(REPO_CRD_DIR) == SCHEMAS
    assert set(SCHEMAS) == {(g, k) for k, g in GROUPS.items()}


def test_crds_option_without_crds_is_one_line_and_exit_1(tmp_path: Path) -> None:
    source = str(DATA / "seed-imagestream-web.yaml")
    (tmp_path / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n")
    (tmp_path / "notes.txt").write_text("hello")
    for bad in (tmp_path, tmp_path / "notes.txt", tmp_path / "missing"):
        result = run("-f", source, "--crds", str(bad))
        assert result.exit_code == 1, result.output
        assert result.stdout == ""
        assert result.stderr.count("\n") == 1, result.stderr
        assert result.stderr.startswith("Error: --crds ")
    (tmp_path / "broken.yaml").write_text("a: [\n")
    result = run("-f", source, "--crds", str(tmp_path))
    assert result.exit_code == 1
    assert "broken.yaml: not a YAML file" in result.stderr
    assert result.stderr.count("\n") == 1
    with pytest.raises(ConvertError, match="no CustomResourceDefinition"):
        load_schemas(REPO / "tests" / "data")


# --- every CEL rule evaluates ------------------------------------------------------------------


def all_rules() -> Iterator[tuple[str, str, str]]:
    """(kind, schema path, rule) of every rule in crds/."""

    def walk(schema: Mapping[str, Any], path: str) -> Iterator[tuple[str, str]]:
        for entry in schema.get("x-kubernetes-validations") or []:
            yield path, str(entry["rule"])
        for key, sub in (schema.get("properties") or {}).items():
            yield from walk(sub, f"{path}.{key}")
        for key in ("items", "additionalProperties"):
            if isinstance(schema.get(key), Mapping):
                yield from walk(schema[key], f"{path}[]")

    for (_, kind), schema in SCHEMAS.items():
        for path, rule in walk(schema, ""):
            yield kind, path, rule


def _schema_path(path: str) -> str:
    """``spec.triggers[0].github`` -> ``.spec.triggers[].github`` (the rule's place)."""
    import re

    return "." + re.sub(r"\[\d+\]", "[]", path) if path else ""


def _every_rule_sample() -> dict[str, Any]:
    """A valid BuildConfig spec with a node for every rule of the BuildConfig/Build schemas."""
    env = [
        {"name": "A", "value": "1"},
        {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
    ]
    return {
        "source": {
            "type": "Git",
            "git": {"uri": "https://git.example.com/a.git"},
            "images": [
                {"from": {"kind": "ImageStreamTag", "name": "tools:1.0"}, "paths": []},
                {"from": {"kind": "DockerImage", "name": "registry.example.com/a/b:1"}},
                {"from": {"kind": "ImageStreamImage", "name": "tools@sha256:" + "a" * 64}},
            ],
        },
        "strategy": {
            "type": "Source",
            "sourceStrategy": {"from": {"kind": "ImageStreamTag", "name": "py:3"}, "env": env},
        },
        "postCommit": {"script": "make test"},
        "output": {"to": {"kind": "ImageStreamTag", "name": "web:latest"}},
        "triggers": [
            {"type": "ConfigChange"},
            {"type": "ImageChange", "imageChange": {}},
            {"type": "GitHub", "github": {"secretReference": {"name": "hook"}}},
            {"type": "GitLab", "gitlab": {"secretReference": {"name": "hook"}}},
            {"type": "Bitbucket", "bitbucket": {"secretReference": {"name": "hook"}}},
            {"type": "Generic", "generic": {"secretReference": {"name": "hook"}}},
        ],
    }


def _samples() -> list[dict[str, Any]]:
    samples = [yaml.safe_load(p.read_text()) for p in VALID]
    spec = _every_rule_sample()
    env = spec["strategy"]["sourceStrategy"]["env"]
    builder = {"kind": "DockerImage", "name": "registry.example.com/builder:1"}
    strategies = [
        spec["strategy"],
        {"type": "Docker", "dockerStrategy": {"env": env, "buildArgs": env, "from": builder}},
        {"type": "Custom", "customStrategy": {"env": env, "from": builder}},
        {"type": "Docker", "dockerStrategy": {"from": {"kind": "ImageStreamTag", "name": "a:1"}}},
        {"type": "Custom", "customStrategy": {"from": {"kind": "ImageStreamTag", "name": "a:1"}}},
    ]
    for kind in ("BuildConfig", "Build"):
        for strategy in strategies:
            body = copy.deepcopy({**spec, "strategy": strategy})
            if kind == "Build":
                del body["triggers"]
                body["triggeredBy"] = [
                    {"message": "manual"},
                    {"message": "image", "imageChangeBuild": {"fromRef": spec["output"]["to"]}},
                ]
            samples.append({"kind": kind, "metadata": {"name": "x"}, "spec": body})
    for sample in samples:
        sample["apiVersion"] = f"{GROUPS[sample['kind']]}/v1"
    return samples


def test_every_cel_rule_compiles_and_evaluates_true_on_a_valid_sample() -> None:
    # A rule cel-python cannot compile or evaluate (a Kubernetes CEL library function it
    # lacks) fails here, instead of being skipped by convert without a word.
    evaluated: set[tuple[str, str, str]] = set()
    for sample in _samples():
        assert [p for p in validate(sample, schema_of(sample)) if p.severity == "error"] == []
        for path, value, node in rule_sites(sample, schema_of(sample)):
            for entry in node["x-kubernetes-validations"]:
                rule = entry["rule"]
                if is_transition_rule(rule):
                    continue
                assert evaluate_rule(rule, value) is True, (sample["kind"], path, rule)
                evaluated.add((sample["kind"], _schema_path(path), rule))
    wanted = {r for r in all_rules() if not is_transition_rule(r[2])}
    assert len(wanted) > 30
    assert wanted - evaluated == set()


def test_transition_rules_are_skipped_offline_and_said() -> None:
    transition = [r for r in all_rules() if is_transition_rule(r[2])]
    assert transition == [("Build", ".spec", "self == oldSelf")]
    build = yaml.safe_load((CORPUS / "valid" / "build-web-1.yaml").read_text())
    problems = validate(build, schema_of(build))
    assert [p.severity for p in problems] == ["info"]
    assert "self == oldSelf" in problems[0].message
    assert "updates only" in problems[0].message


def test_a_rule_cel_python_cannot_evaluate_is_an_error_not_a_pass() -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}},
        "x-kubernetes-validations": [
            {"rule": "self.name.lowerAscii() == self.name", "message": "lower case"}
        ],
    }
    [problem] = validate({"name": "a"}, schema)
    assert problem.severity == "error"
    assert "cannot be evaluated" in problem.message
    assert "lowerAscii" in problem.message
    assert "does not compile" in str(evaluate_rule("self.name(", {}))


def test_kubernetes_extensions_int_or_string_and_list_keys() -> None:
    spec = {
        "strategy": {"type": "Docker", "dockerStrategy": {}},
        "resources": {"limits": {"cpu": 2, "memory": "1Gi"}, "requests": {"cpu": True}},
    }
    bc = {"apiVersion": "build.headwater.dev/v1", "kind": "BuildConfig", "metadata": {}}
    found = {p.path: p.message for p in validate({**bc, "spec": spec}, schema_of(bc))}
    assert list(found) == ["spec.resources.requests.cpu"]
    assert "a number or a string" in found["spec.resources.requests.cpu"]


# --- the admission corpus -------------------------------------------------------------------


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_valid_corpus_has_no_errors(path: Path) -> None:
    obj = yaml.safe_load(path.read_text())
    ctx = _Context(path.name, "x")
    check_schema(copy.deepcopy(obj), schema_of(obj), "", ctx)
    assert [n for n in ctx.notes if n.severity != "info"] == []


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_corpus_is_reported_at_the_field(path: Path) -> None:
    # What the API server refuses (tests/e2e/test_crd_admission.py) convert reports as an
    # error at the same field, or removes with a warning when the field is unknown.
    expect = path.read_text().splitlines()[0].removeprefix("# expect: ").strip()
    obj = yaml.safe_load(path.read_text())
    ctx = _Context(path.name, "x")
    check_schema(obj, schema_of(obj), "", ctx)
    at_field = {n.severity for n in ctx.notes if n.path == expect}
    assert at_field & {"error", "warning"}, (expect, ctx.notes)
    if "warning" in at_field:
        assert "removed" in notes_of(ctx.notes, "warning")[expect]


def test_refusal_names_the_field_and_the_rule() -> None:
    bc = {
        "apiVersion": "build.openshift.io/v1",
        "kind": "BuildConfig",
        "metadata": {"name": "b"},
        "spec": {
            "source": {"type": "Git"},
            "strategy": {"type": "Docker", "dockerStrategy": {}},
            "triggers": [{"type": "Generic", "generic": {}, "github": {"secret": "s"}}],
        },
    }
    _, notes = convert_object(bc, SCHEMAS, "f")
    found = errors(notes)
    assert "git is required when type is Git" in found["spec.source.git"]
    assert "self.type != 'Git' || has(self.git)" in found["spec.source.git"]
    # A second webhook body under a Generic trigger is removed (a Generic trigger reads generic).
    assert "spec.triggers[0].github" in notes_of(notes, "warning")


def test_patterns_and_lengths_are_errors() -> None:
    stream = {
        "apiVersion": "image.openshift.io/v1",
        "kind": "ImageStream",
        "metadata": {"name": "web"},
        "spec": {
            "tags": [
                {"name": "v" * 200, "from": {"kind": "DockerImage", "name": "Web:1"}},
                {"name": "ok", "from": {"kind": "DockerImage", "name": "web:1"}},
                {"name": "ok", "from": {"kind": "DockerImage", "name": "web:2"}},
            ]
        },
    }
    _, notes = convert_object(stream, SCHEMAS, "f")
    found = errors(notes)
    assert "at most 128 characters" in found["spec.tags[0].name"]
    assert "duplicates [1]" in found["spec.tags[2]"]


# --- fixes, each a note --------------------------------------------------------------------------


def openshift_bc(spec: dict[str, Any], **metadata: Any) -> dict[str, Any]:
    return {
        "apiVersion": "build.openshift.io/v1",
        "kind": "BuildConfig",
        "metadata": {"name": "web", **metadata},
        "spec": spec,
    }


def test_istag_without_tag_gets_latest_everywhere_in_a_build_spec() -> None:
    bare = {"kind": "ImageStreamTag", "name": "b"}
    spec = {
        "source": {
            "type": "Git",
            "git": {"uri": "https://git.example.com/web.git"},
            "images": [{"from": {"kind": "ImageStreamTag", "name": "tools"}, "paths": []}],
        },
        "strategy": {
            "type": "Source",
            "sourceStrategy": {"from": {"kind": "ImageStreamTag", "name": "nodejs"}},
        },
        "output": {"to": {"kind": "ImageStreamTag", "name": "web"}},
        "triggers": [
            {"type": "ImageChange", "imageChange": {"from": bare}},
            {"type": "ImageChange", "imageChange": {}},
        ],
    }
    [done], notes = convert_object(openshift_bc(spec), SCHEMAS, "f")
    assert errors(notes) == {}
    out = done["spec"]
    assert out["strategy"]["sourceStrategy"]["from"]["name"] == "nodejs:latest"
    assert out["triggers"][0]["imageChange"]["from"]["name"] == "b:latest"
    assert out["source"]["images"][0]["from"]["name"] == "tools:latest"
    assert out["output"]["to"]["name"] == "web:latest"
    info = notes_of(notes, "info")
    assert info["spec.strategy.sourceStrategy.from.name"] == "'nodejs' written as 'nodejs:latest'"
    assert info["spec.triggers[0].imageChange.from.name"] == "'b' written as 'b:latest'"


@pytest.mark.parametrize(
    ("given", "body_key", "proper", "right_key"),
    [
        ("BitBucket", "gitlab", "Bitbucket", "bitbucket"),
        ("bitbucket", "bitBucket", "Bitbucket", "bitbucket"),
        ("Github", "gitHub", "GitHub", "github"),
        ("github", "generic", "GitHub", "github"),
        ("Gitlab", "github", "GitLab", "gitlab"),
    ],
)
def test_webhook_body_moves_under_the_key_of_its_type(
    given: str, body_key: str, proper: str, right_key: str
) -> None:
    spec = {
        "source": {"type": "Git", "git": {"uri": "https://git.example.com/web.git"}},
        "strategy": {"type": "Docker", "dockerStrategy": {}},
        "triggers": [{"type": given, body_key: {"secretReference": {"name": "hook"}}}],
    }
    [done], notes = convert_object(openshift_bc(spec), SCHEMAS, "f")
    assert errors(notes) == {}, notes
    assert done["spec"]["triggers"][0] == {
        "type": proper,
        right_key: {"secretReference": {"name": "hook"}},
    }
    assert f"spec.triggers[0].{body_key}" in notes_of(notes, "info")


def test_unknown_metadata_fields_are_removed() -> None:
    spec = {"strategy": {"type": "Docker", "dockerStrategy": {}}}
    bc = openshift_bc(spec, selflink="/apis/x", Labels={"a": "b"}, labels={"app": "web"})
    [done], notes = convert_object(bc, SCHEMAS, "f")
    assert done["metadata"] == {"name": "web", "labels": {"app": "web"}}
    warned = notes_of(notes, "warning")
    assert warned["metadata.selflink"] == "not a Kubernetes metadata field: removed"
    assert "metadata.Labels" in warned
    assert errors(notes) == {}
    assert {"name", "namespace", "labels", "annotations", "finalizers"} <= OBJECT_META_FIELDS
    assert "selflink" not in OBJECT_META_FIELDS


def test_validate_reports_unknown_metadata_of_a_headwater_object() -> None:
    obj: dict[str, Any] = {"apiVersion": "image.headwater.dev/v1", "kind": "ImageStream"}
    obj["metadata"] = {"name": "a", "selflink": "x"}
    assert [(p.path, p.message) for p in validation.validate(obj, schema_of(obj))] == [
        ("metadata.selflink", "not an ObjectMeta field")
    ]


def test_the_corpus_converts_without_refusals() -> None:
    result = run("-f", str(DATA))
    assert "does not match" not in result.stderr
    assert "CEL rule" not in result.stderr
    assert "required, and missing" not in result.stderr
