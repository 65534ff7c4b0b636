"""Static checks of the CRDs in ``crds/`` and the admission corpus in ``tests/crds/``.

No network: the real API server checks the same corpus in
``tests/e2e/test_crd_admission.py``. Here a small structural walker stands in
for admission (types, required, enums, patterns, bounds, unknown fields,
list-map keys, and the from.name grammar rules), so a broken valid example is
caught without a cluster.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from tests import hack_scripts

REPO = Path(__file__).resolve().parents[2]
CRD_DIR = REPO / "crds"
CORPUS = REPO / "tests" / "crds"
VALID = sorted((CORPUS / "valid").glob("*.yaml"))
INVALID = sorted((CORPUS / "invalid").glob("*.yaml"))

CRD_FILES = {
    "ImageStream": "imagestreams.image.headwater.dev.yaml",
    "BuildConfig": "buildconfigs.build.headwater.dev.yaml",
    "Build": "builds.build.headwater.dev.yaml",
}
GROUPS = {
    "ImageStream": "image.headwater.dev",
    "BuildConfig": "build.headwater.dev",
    "Build": "build.headwater.dev",
}
SHORT_NAMES = {"ImageStream": ["is"], "BuildConfig": ["bc"], "Build": ["hwbuild"]}
COLUMNS = {
    "ImageStream": {
        "Image Repository": ".status.dockerImageRepository",
        "Tags": ".status.tags[*].tag",
        "Updated": ".status.tags[0].items[0].created",
    },
    "BuildConfig": {
        "Type": ".spec.strategy.type",
        "From": ".spec.source.type",
        "Latest": ".status.lastVersion",
    },
    "Build": {
        "Type": ".spec.strategy.type",
        "From": ".spec.source.type",
        "Status": ".status.phase",
        "Started": ".status.startTimestamp",
        "Duration": ".status.duration",
    },
}
CONDITION_FIELDS = [
    "conditions[].type",
    "conditions[].status",
    "conditions[].reason",
    "conditions[].message",
    "conditions[].lastTransitionTime",
    "conditions[].observedGeneration",
]
#: Status fields the product writes (PRODUCT.md, API.md), as dotted paths; ``[]`` = array items.
STATUS_FIELDS = {
    "ImageStream": [
        "observedGeneration",
        *CONDITION_FIELDS,
        "dockerImageRepository",
        "publicDockerImageRepository",
        "tags[].tag",
        "tags[].items[].created",
        "tags[].items[].dockerImageReference",
        "tags[].items[].image",
        "tags[].items[].generation",
        "tags[].items[].platforms",
        "tags[].conditions[].type",
        "tags[].conditions[].status",
        "tags[].conditions[].reason",
        "tags[].conditions[].message",
        "tags[].conditions[].lastTransitionTime",
        "tags[].conditions[].generation",
        "tags[].lastImportTime",
        "tags[].nextImportTime",
    ],
    "BuildConfig": [
        "observedGeneration",
        *CONDITION_FIELDS,
        "lastVersion",
        "imageChangeTriggers[].lastTriggeredImageID",
        "imageChangeTriggers[].from.name",
        "imageChangeTriggers[].from.namespace",
        "imageChangeTriggers[].lastTriggerTime",
    ],
    "Build": [
        "observedGeneration",
        *CONDITION_FIELDS,
        "phase",
        "cancelled",
        "reason",
        "message",
        "startTimestamp",
        "completionTimestamp",
        "duration",
        "outputDockerImageReference",
        "output.to.imageDigest",
        "config.kind",
        "config.name",
        "config.namespace",
        "stages[].name",
        "stages[].startTime",
        "stages[].durationMilliseconds",
        "stages[].steps[].name",
        "logSnippet",
        "revision.type",
        "revision.git.commit",
        "revision.git.author.name",
        "revision.git.author.email",
        "revision.git.committer.name",
        "revision.git.message",
    ],
}
BUILD_PHASES = ["New", "Pending", "Running", "Complete", "Failed", "Error", "Cancelled"]


def load_generator() -> ModuleType:
    return hack_scripts.load("gen_crds")


def load_crd(kind: str) -> dict[str, Any]:
    doc = yaml.safe_load((CRD_DIR / CRD_FILES[kind]).read_text())
    assert isinstance(doc, dict)
    return doc


def version(kind: str) -> dict[str, Any]:
    versions = load_crd(kind)["spec"]["versions"]
    assert len(versions) == 1
    v = versions[0]
    assert isinstance(v, dict)
    return v


def root_schema(kind: str) -> dict[str, Any]:
    schema = version(kind)["schema"]["openAPIV3Schema"]
    assert isinstance(schema, dict)
    return schema


def walk(schema: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node with its dotted path (array items as ``[]``)."""
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from walk(sub, f"{path}.{name}")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from walk(schema["additionalProperties"], f"{path}.*")
    if "items" in schema:
        yield from walk(schema["items"], f"{path}[]")


def lookup(schema: dict[str, Any], dotted: str) -> dict[str, Any] | None:
    node: dict[str, Any] | None = schema
    for part in dotted.split("."):
        name, is_array = (part[:-2], True) if part.endswith("[]") else (part, False)
        if node is None:
            return None
        node = node.get("properties", {}).get(name)
        if node is not None and is_array:
            node = node.get("items")
    return node


# --- generator and CRD shape ----------------------------------------------------------------


def test_committed_crds_equal_generator_output() -> None:
    rendered: dict[str, str] = load_generator().render_all()
    for name, content in rendered.items():
        assert (CRD_DIR / name).read_text() == content, (
            f"crds/{name} is stale: run python hack/gen_crds.py"
        )


def test_kustomization_lists_the_three_crds() -> None:
    kustomization = yaml.safe_load((CRD_DIR / "Kustomization").read_text())
    assert kustomization["kind"] == "Kustomization"
    assert sorted(kustomization["resources"]) == sorted(CRD_FILES.values())


@pytest.mark.parametrize("kind", list(CRD_FILES))
def test_names_scope_category(kind: str) -> None:
    crd = load_crd(kind)
    spec = crd["spec"]
    assert crd["metadata"]["name"] == f"{spec['names']['plural']}.{GROUPS[kind]}"
    assert spec["group"] == GROUPS[kind]
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == kind
    assert spec["names"]["shortNames"] == SHORT_NAMES[kind]
    assert "headwater" in spec["names"]["categories"]
    v = version(kind)
    assert v["name"] == "v1"
    assert v["served"]
    assert v["storage"]
    assert v["subresources"] == {"status": {}}


def test_build_short_name_does_not_clash() -> None:
    assert not {"build", "br"} & set(SHORT_NAMES["Build"])


@pytest.mark.parametrize("kind", list(CRD_FILES))
def test_printer_columns(kind: str) -> None:
    columns = {c["name"]: c for c in version(kind)["additionalPrinterColumns"]}
    for name, json_path in COLUMNS[kind].items():
        assert columns[name]["jsonPath"] == json_path
    if kind == "Build":
        assert columns["Started"]["type"] == "date"
    if kind == "ImageStream":
        assert columns["Tags"]["type"] == "string"


@pytest.mark.parametrize("kind", list(CRD_FILES))
def test_schema_is_structural(kind: str) -> None:
    for path, node in walk(root_schema(kind), "<root>"):
        assert "x-kubernetes-preserve-unknown-fields" not in node, path
        if node.get("x-kubernetes-int-or-string"):
            continue
        assert "type" in node, f"{path} has no type"
        if node["type"] == "object" and path not in ("<root>.metadata",):
            assert "properties" in node or "additionalProperties" in node, path


@pytest.mark.parametrize("kind", list(CRD_FILES))
def test_spec_strings_and_arrays_are_bounded(kind: str) -> None:
    """CEL cost estimates need bounds on everything a rule (or self == oldSelf) can reach."""
    for path, node in walk(root_schema(kind)["properties"]["spec"], "spec"):
        if node.get("type") == "string" and "enum" not in node:
            assert "maxLength" in node, f"{path} has no maxLength"
        if node.get("type") == "array":
            assert "maxItems" in node, f"{path} has no maxItems"


@pytest.mark.parametrize("kind", list(CRD_FILES))
def test_status_fields_declared(kind: str) -> None:
    status = root_schema(kind)["properties"]["status"]
    for field in STATUS_FIELDS[kind]:
        assert lookup(status, field) is not None, f"status.{field} is not declared"
    condition = lookup(status, "conditions[]")
    assert condition is not None
    assert condition["properties"]["status"]["enum"] == ["True", "False", "Unknown"]
    assert condition["properties"]["lastTransitionTime"]["format"] == "date-time"


def test_build_phase_enum_and_immutable_spec() -> None:
    schema = root_schema("Build")
    assert schema["properties"]["status"]["properties"]["phase"]["enum"] == BUILD_PHASES
    rules = schema["properties"]["spec"]["x-kubernetes-validations"]
    assert {"rule": "self == oldSelf", "message": "spec is immutable once a Build is created"} in [
        {"rule": r["rule"], "message": r["message"]} for r in rules
    ]
    assert "triggeredBy" in schema["properties"]["spec"]["properties"]


def test_tags_are_list_maps() -> None:
    schema = root_schema("ImageStream")
    spec_tags = schema["properties"]["spec"]["properties"]["tags"]
    status_tags = schema["properties"]["status"]["properties"]["tags"]
    assert spec_tags["x-kubernetes-list-type"] == "map"
    assert spec_tags["x-kubernetes-list-map-keys"] == ["name"]
    assert status_tags["x-kubernetes-list-type"] == "map"
    assert status_tags["x-kubernetes-list-map-keys"] == ["tag"]


def test_defaults() -> None:
    bc = root_schema("BuildConfig")["properties"]["spec"]["properties"]
    assert bc["runPolicy"]["default"] == "Serial"
    assert bc["successfulBuildsHistoryLimit"]["default"] == 5
    assert bc["failedBuildsHistoryLimit"]["default"] == 5
    docker = bc["strategy"]["properties"]["dockerStrategy"]["properties"]
    assert docker["dockerfilePath"]["default"] == "Dockerfile"
    tag = root_schema("ImageStream")["properties"]["spec"]["properties"]["tags"]["items"]
    assert tag["properties"]["importPolicy"]["properties"]["importMode"]["default"] == "Legacy"
    assert tag["properties"]["referencePolicy"]["properties"]["type"]["default"] == "Source"


def test_every_cel_rule_has_a_message() -> None:
    for kind in CRD_FILES:
        for path, node in walk(root_schema(kind), kind):
            for r in node.get("x-kubernetes-validations", []):
                assert r.get("message"), f"{path}: rule {r['rule']!r} has no message"


# --- grammars -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "ok"),
    [
        ("registry.example.com/shop/web:1.2.0", True),
        ("localhost:5000/web@sha256:" + "a" * 64, True),
        ("docker.io/library/nginx:1.27@sha256:" + "0" * 64, True),
        ("nginx", True),
        ("[::1]:5000/a/b:c", True),
        ("https://registry.example.com/web", False),
        ("registry.example.com/Shop/web", False),
        ("web:", False),
        ("web@sha256:abc", False),
        ("a:b:c", False),
    ],
)
def test_docker_image_grammar(ref: str, ok: bool) -> None:
    pattern: str = load_generator().DOCKER_IMAGE_PATTERN
    assert bool(re.match(pattern, ref)) is ok


# --- the corpus -----------------------------------------------------------------------------


def header(path: Path) -> tuple[str, str]:
    lines = path.read_text().splitlines()
    assert len(lines) > 2, path
    assert lines[0].startswith("# expect: "), f"{path.name}: first line must be '# expect: ...'"
    assert lines[1].startswith("# why: "), f"{path.name}: second line must be '# why: ...'"
    return lines[0].removeprefix("# expect: ").strip(), lines[1].removeprefix("# why: ").strip()


def single_doc(path: Path) -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert len(docs) == 1, f"{path.name}: one object per file"
    assert isinstance(docs[0], dict)
    return docs[0]


def test_corpus_sizes() -> None:
    assert len(INVALID) >= 30
    assert len(VALID) >= 7
    names = [p.name for p in INVALID]
    assert all(re.match(r"^\d\d-[a-z0-9-]+\.yaml$", n) for n in names), names


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_file_shape(path: Path) -> None:
    expect, why = header(path)
    assert expect
    assert why
    doc = single_doc(path)
    assert doc["kind"] in CRD_FILES
    assert doc["apiVersion"] == f"{GROUPS[doc['kind']]}/v1"
    assert "namespace" not in doc["metadata"]


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_valid_file_matches_a_crd(path: Path) -> None:
    doc = single_doc(path)
    assert doc["kind"] in CRD_FILES, path.name
    assert doc["apiVersion"] == f"{GROUPS[doc['kind']]}/v1"
    assert "namespace" not in doc["metadata"]


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_valid_file_passes_schema(path: Path) -> None:
    doc = single_doc(path)
    errors = validate(doc, root_schema(doc["kind"]), "")
    assert not errors, errors


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_valid_file_passes_jsonschema_if_installed(path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    doc = single_doc(path)
    jsonschema.validate(doc, to_json_schema(root_schema(doc["kind"])))


# The invalid files that break only structural rules (not CEL, not unknown-field strictness,
# which the walker also models) are rejected by the walker too: a sanity check of the walker.
WALKER_CATCHES = [
    "tag-name-colon",
    "duplicate-tag-names",
    "dockerimage-with-scheme",
    "istag-without-tag",
    "import-mode-unknown",
    "imagestream-unknown-field",
    "strategy-missing",
    "output-to-without-name",
    "negative-successful-history-limit",
    "completion-deadline-zero",
    "env-bad-name",
    "nodeselector-non-string",
    "resources-bad-quantity",
]


@pytest.mark.parametrize("short", WALKER_CATCHES)
def test_walker_rejects(short: str) -> None:
    [path] = [p for p in INVALID if p.name[3:-5] == short]
    expect, _ = header(path)
    doc = single_doc(path)
    errors = validate(doc, root_schema(doc["kind"]), "")
    assert any(expect in e for e in errors), (expect, errors)


# --- a tiny structural validator ------------------------------------------------------------

_KIND_NAME_RULE = re.compile(r"^self\.kind != '(\w+)' \|\| self\.name\.matches\(r'(.*)'\)$")
_DATE_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def _type_ok(value: Any, type_: str) -> bool:
    if type_ == "object":
        return isinstance(value, dict)
    if type_ == "array":
        return isinstance(value, list)
    if type_ == "string":
        return isinstance(value, str)
    if type_ == "boolean":
        return isinstance(value, bool)
    if type_ == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if type_ == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    raise AssertionError(f"unknown type {type_}")


def validate(value: Any, schema: dict[str, Any], path: str) -> list[str]:
    """Errors of ``value`` against a structural schema, with API-server-like paths."""
    here = path or "<root>"
    if schema.get("x-kubernetes-int-or-string"):
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            return [f"{here}: must be an integer or a string"]
        if (
            isinstance(value, str)
            and "pattern" in schema
            and not re.search(schema["pattern"], value)
        ):
            return [f"{here}: should match {schema['pattern']}"]
        return []
    if value is None:
        return [] if schema.get("nullable") else [f"{here}: must not be null"]
    if not _type_ok(value, schema["type"]):
        return [f"{here}: must be of type {schema['type']}"]
    errors: list[str] = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{here}: Unsupported value {value!r}")
    if isinstance(value, str):
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(f"{here}: Too long")
        if "minLength" in schema and len(value) < schema["minLength"]:
            errors.append(f"{here}: Too short")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{here}: should match {schema['pattern']}")
        if schema.get("format") == "date-time" and not _DATE_TIME.match(value):
            errors.append(f"{here}: not a date-time")
    if isinstance(value, int) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{here}: should be greater than or equal to {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{here}: should be less than or equal to {schema['maximum']}")
    if isinstance(value, dict):
        errors.extend(_validate_object(value, schema, path))
    if isinstance(value, list):
        errors.extend(_validate_array(value, schema, path))
    return errors


def _validate_object(value: dict[str, Any], schema: dict[str, Any], path: str) -> list[str]:
    here = path or "<root>"
    errors: list[str] = []
    props: dict[str, Any] = schema.get("properties", {})
    extra = schema.get("additionalProperties")
    for key, sub in value.items():
        sub_path = f"{path}.{key}" if path else key
        if key in props:
            errors.extend(validate(sub, props[key], sub_path))
        elif isinstance(extra, dict):
            errors.extend(validate(sub, extra, sub_path))
        elif props:
            errors.append(f'unknown field "{sub_path}"')
    for key in schema.get("required", []):
        if key not in value:
            errors.append(f"{path}.{key}: Required value" if path else f"{key}: Required value")
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        errors.append(f"{here}: too many properties")
    for r in schema.get("x-kubernetes-validations", []):
        m = _KIND_NAME_RULE.match(r["rule"])
        name = value.get("name")
        if m and value.get("kind") == m.group(1) and not re.match(m.group(2), str(name)):
            errors.append(f"{path}{r.get('fieldPath', '')}: {r['message']}")
    return errors


def _validate_array(value: list[Any], schema: dict[str, Any], path: str) -> list[str]:
    errors: list[str] = []
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        errors.append(f"{path}: Too many")
    for i, item in enumerate(value):
        errors.extend(validate(item, schema["items"], f"{path}[{i}]"))
    if schema.get("x-kubernetes-list-type") == "map":
        keys = schema["x-kubernetes-list-map-keys"]
        seen: set[tuple[Any, ...]] = set()
        for i, item in enumerate(value):
            if isinstance(item, dict):
                key = tuple(item.get(k) for k in keys)
                if key in seen:
                    errors.append(f"{path}[{i}]: Duplicate value")
                seen.add(key)
    return errors


def to_json_schema(schema: Any) -> Any:
    """The CRD schema as plain JSON Schema (drop Kubernetes extensions, honour nullable)."""
    if isinstance(schema, list):
        return [to_json_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {
        k: to_json_schema(v)
        for k, v in schema.items()
        if not k.startswith("x-kubernetes-") and k not in ("nullable", "default")
    }
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("pattern", None)
    if "properties" in schema and "additionalProperties" not in schema:
        out["additionalProperties"] = False
    return out


def test_walker_accepts_status_shapes() -> None:
    """A status like the operator writes passes the schema (fields are declared, not pruned)."""
    now = datetime(2026, 1, 1).isoformat() + "Z"
    status = {
        "phase": "Complete",
        "startTimestamp": now,
        "completionTimestamp": now,
        "duration": "1m30s",
        "output": {"to": {"imageDigest": "sha256:" + "a" * 64}},
        "conditions": [
            {
                "type": "Succeeded",
                "status": "True",
                "reason": "Complete",
                "message": "",
                "lastTransitionTime": now,
                "observedGeneration": 1,
            }
        ],
        "stages": [
            {
                "name": "FetchInputs",
                "startTime": now,
                "durationMilliseconds": 3,
                "steps": [{"name": "FetchGitSource", "startTime": now, "durationMilliseconds": 3}],
            }
        ],
        "config": {"kind": "BuildConfig", "name": "web", "namespace": "ns"},
    }
    schema = root_schema("Build")["properties"]["status"]
    assert validate(status, schema, "status") == []
