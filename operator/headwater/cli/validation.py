"""What the API server would say of a Headwater object, worked out offline (and online).

Offline, an object is checked the way the API server's admission of a custom
resource checks it, against the CRD's ``openAPIV3Schema``:

- the structural part (types, required, enums, patterns, lengths, bounds,
  ``maxItems``/``maxProperties``...) with ``jsonschema``, plus the Kubernetes
  extensions it does not know: ``x-kubernetes-int-or-string`` and the keys of
  ``x-kubernetes-list-type: map`` / ``set`` lists;
- every ``x-kubernetes-validations`` CEL rule, evaluated with cel-python
  (``celpy``) on the node it sits on, after the schema's defaults are applied
  and nulls pruned, as the API server does. Transition rules (those reading
  ``oldSelf``) only apply to updates: they are skipped, and said so.

The CRDs ship inside the package (``headwater/crds/``, written by
``hack/gen_crds.py`` with ``crds/``), so an installed CLI checks the same way
as a checkout.

Online, :func:`server_dry_run` applies each object with ``dryRun=All`` and
strict field validation, and returns what the API server answers.
"""

from __future__ import annotations

import copy
import functools
import importlib.resources
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from typing import Any

import celpy
import jsonschema
import jsonschema.validators
import yaml
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.celparser import CELParseError
from celpy.evaluation import CELEvalError
from lightkube import codecs
from lightkube.core.exceptions import ApiError, LoadResourceError
from lightkube.core.resource import NamespacedResource
from lightkube.generic_resource import create_resources_from_crd
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
from lightkube.types import PatchType

Schema = Mapping[str, Any]

PACKAGED_CRDS: Traversable = importlib.resources.files("headwater") / "crds"
"""The CRDs shipped as package data (the same files as the checkout's ``crds/``)."""

OBJECT_META_FIELDS: frozenset[str] = frozenset(ObjectMeta.__struct_fields__)
"""Every field of a Kubernetes ObjectMeta: anything else in ``metadata`` is refused."""


class SchemaError(ValueError):
    """A CRD directory that holds no usable CRD; the message says which and why."""


@dataclass(frozen=True)
class Problem:
    """Why the API server would refuse (``error``), or what was not checked (``info``)."""

    path: str
    """Dotted field path, ``spec.triggers[0].gitlab``; empty for the whole object."""
    message: str
    severity: str = "error"


# --- the CRDs ---------------------------------------------------------------------------------


def load_crd_schemas(directory: Traversable) -> dict[tuple[str, str], dict[str, Any]]:
    """The served openAPIV3Schema of every CRD in ``directory``, by (group, kind).

    SchemaError when a file is not YAML or when the directory holds no CRD at all.
    """
    schemas: dict[tuple[str, str], dict[str, Any]] = {}
    files = sorted(
        (p for p in directory.iterdir() if p.name.endswith((".yaml", ".yml"))),
        key=lambda p: p.name,
    )
    for path in files:
        try:
            docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise SchemaError(f"{path}: not a YAML file: {problem}") from None
        for doc in docs:
            if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc.get("spec") or {}
            names = spec.get("names") if isinstance(spec, Mapping) else None
            if not isinstance(names, Mapping) or not names.get("kind"):
                raise SchemaError(f"{path}: a CustomResourceDefinition without spec.names.kind")
            for version in spec.get("versions") or []:
                if not isinstance(version, Mapping):
                    continue
                schema = (version.get("schema") or {}).get("openAPIV3Schema")
                if version.get("served") and isinstance(schema, dict):
                    schemas[(str(spec.get("group")), str(names["kind"]))] = schema
    if not schemas:
        raise SchemaError(f"{directory}: no CustomResourceDefinition with a schema in *.yaml")
    return schemas


def packaged_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """The schemas of the CRDs shipped with this package."""
    return load_crd_schemas(PACKAGED_CRDS)


# --- paths ------------------------------------------------------------------------------------


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _field_path(path: str, field_path: str) -> str:
    """A rule's ``fieldPath`` (``.git``, ``.tags[0]``) appended to the node's path."""
    if not field_path:
        return path
    return (path + field_path) if path else field_path.lstrip(".")


# --- what the API server does before validating ------------------------------------------------


def _prepared(value: Any, schema: Schema) -> Any:
    """``value`` with nulls pruned and the schema's defaults applied (a copy)."""
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        out: dict[str, Any] = {}
        for key, item in value.items():
            sub = properties.get(key) if key in properties else extra
            sub = sub if isinstance(sub, Mapping) else {}
            if item is None:
                # Pruned when not nullable; allowed (and nothing to check) when nullable.
                continue
            out[key] = _prepared(item, sub)
        for key, sub in properties.items():
            if key not in out and isinstance(sub, Mapping) and "default" in sub:
                out[key] = _prepared(copy.deepcopy(sub["default"]), sub)
        return out
    if isinstance(value, list):
        items = schema.get("items")
        return [_prepared(item, items if isinstance(items, Mapping) else {}) for item in value]
    return value


# --- structural checks ------------------------------------------------------------------------


def _int_or_string(
    validator: Any, enabled: Any, instance: Any, schema: Schema
) -> Iterator[jsonschema.ValidationError]:
    if enabled and (isinstance(instance, bool) or not isinstance(instance, int | str)):
        yield jsonschema.ValidationError(f"expected a number or a string, got {instance!r}")


def _list_type(
    validator: Any, list_type: Any, instance: Any, schema: Schema
) -> Iterator[jsonschema.ValidationError]:
    if not isinstance(instance, list):
        return
    seen: dict[str, int] = {}
    keys = schema.get("x-kubernetes-list-map-keys") or []
    for i, item in enumerate(instance):
        if list_type == "map" and isinstance(item, Mapping):
            key = repr(tuple(item.get(k) for k in keys))
            shown = ", ".join(f"{k}={item.get(k)!r}" for k in keys)
        elif list_type == "set":
            key = repr(item)
            shown = repr(item)
        else:
            continue
        if key in seen:
            yield jsonschema.ValidationError(
                f"[{i}] duplicates [{seen[key]}] ({shown}): the entries of this list must differ"
            )
        seen.setdefault(key, i)


_Validator = jsonschema.validators.extend(  # type: ignore[no-untyped-call]
    jsonschema.Draft4Validator,
    {"x-kubernetes-int-or-string": _int_or_string, "x-kubernetes-list-type": _list_type},
)


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return "a string" if isinstance(value, str) else type(value).__name__


_TYPE_WORDS = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "object": "an object",
    "array": "a list",
}


def _structural_message(error: jsonschema.ValidationError) -> tuple[list[str | int], str]:
    """Where (relative path parts) and what, in the words the rest of convert uses."""
    where: list[str | int] = list(error.absolute_path)
    value: Any = error.instance
    wanted_value: Any = error.validator_value
    kind = error.validator
    if kind == "type":
        wanted = _TYPE_WORDS.get(str(error.validator_value), str(error.validator_value))
        message = f"expected {wanted}, got {_type_name(value)}"
        if not isinstance(value, list | dict):
            message += f" {value!r}"
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if error.validator_value == "string" and number:
            # YAML reads `name: 1.10` as the number 1.1: the tag is not what was written.
            message += ": quote it in the YAML (a tag like 1.10 unquoted reads as 1.1)"
        return where, message
    if kind == "required":
        missing = re.match(r"'([^']+)' is a required property", error.message)
        if missing:
            return [*where, missing.group(1)], "required, and missing"
    if kind == "enum":
        allowed = ", ".join(map(str, wanted_value))
        return where, f"{value!r} is not one of {allowed}"
    if kind == "pattern":
        return where, f"{value!r} does not match {error.validator_value}"
    if kind in ("maxLength", "minLength"):
        size = "at most" if kind == "maxLength" else "at least"
        return where, f"must be {size} {error.validator_value} characters, has {len(value)}"
    if kind in ("maxItems", "minItems", "maxProperties", "minProperties"):
        size = "at most" if kind.startswith("max") else "at least"
        what = "items" if kind.endswith("Items") else "entries"
        return where, f"must have {size} {error.validator_value} {what}, has {len(value)}"
    if kind == "x-kubernetes-list-type":
        index = re.match(r"\[(\d+)\]", error.message)
        if index:
            return [*where, int(index.group(1))], error.message.split(" ", 1)[1]
    return where, error.message


def _structural(value: Any, schema: Schema) -> Iterator[Problem]:
    validator = _Validator(schema)
    errors = sorted(validator.iter_errors(value), key=lambda e: list(map(str, e.absolute_path)))
    for error in errors:
        if error.validator == "anyOf" and error.context:
            # int-or-string's anyOf: the extension's own message says it better.
            continue
        parts, message = _structural_message(error)
        path = ""
        for part in parts:
            path = _join(path, part)
        yield Problem(path, message)


# --- CEL ----------------------------------------------------------------------------------------

_ENVIRONMENT = celpy.Environment()


@functools.cache
def compile_rule(rule: str) -> celpy.Runner:
    """The rule compiled once (cel-python's parser is the slow part)."""
    return _ENVIRONMENT.program(_ENVIRONMENT.compile(rule))


def is_transition_rule(rule: str) -> bool:
    """Whether the rule compares with the stored object (applies to updates only)."""
    return re.search(r"\boldSelf\b", rule) is not None


def evaluate_rule(rule: str, value: Any) -> bool | str:
    """True when the rule holds for ``self = value``, False when not, else the error's text.

    An evaluation error (a missing key, a function cel-python does not have) is
    what the API server reports as a refusal too; its text is returned.
    """
    try:
        result: Any = compile_rule(rule).evaluate({"self": json_to_cel(value)})
    except CELParseError as exc:
        return f"does not compile: {str(exc).splitlines()[0]}"
    except CELEvalError as exc:
        return f"cannot be evaluated: {exc.args[0] if exc.args else exc}"
    if isinstance(result, CELEvalError):
        # cel-python returns some errors as values instead of raising them.
        return f"cannot be evaluated: {result.args[0] if result.args else result}"
    if isinstance(result, celtypes.BoolType):
        return bool(result)
    return f"gives {result!r}, not a boolean"


def rule_sites(value: Any, schema: Schema, path: str = "") -> Iterator[tuple[str, Any, Schema]]:
    """(path, value, schema node) of every node of ``value`` that carries CEL rules."""
    if value is None or not isinstance(schema, Mapping):
        return
    if schema.get("x-kubernetes-validations"):
        yield path, value, schema
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            sub = properties.get(key) if key in properties else extra
            if isinstance(sub, Mapping):
                yield from rule_sites(item, sub, _join(path, str(key)))
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, Mapping):
            for i, item in enumerate(value):
                yield from rule_sites(item, items, _join(path, i))


def _cel(value: Any, schema: Schema) -> Iterator[Problem]:
    skipped: list[str] = []
    for path, node, node_schema in rule_sites(value, schema):
        for entry in node_schema.get("x-kubernetes-validations") or []:
            rule = str(entry.get("rule") or "")
            if is_transition_rule(rule):
                skipped.append(f"{path or '<object>'}: {rule}")
                continue
            outcome = evaluate_rule(rule, node)
            if outcome is True:
                continue
            where = _field_path(path, str(entry.get("fieldPath") or ""))
            message = str(entry.get("message") or f"failed rule: {rule}")
            if outcome is False:
                yield Problem(where, f"{message} (CEL rule: {rule})")
            else:
                yield Problem(where, f"{message}: the CEL rule {outcome} (rule: {rule})")
    for site in skipped:
        yield Problem(
            "",
            f"not checked offline, it applies to updates only (transition rule {site})",
            severity="info",
        )


# --- the object -------------------------------------------------------------------------------


def validate(obj: Mapping[str, Any], schema: Schema) -> list[Problem]:
    """Why the API server would refuse ``obj`` (a Headwater object), from its CRD's schema.

    Unknown fields are not reported here (convert prunes them first); metadata
    is checked against ObjectMeta's field list.
    """
    prepared = _prepared(copy.deepcopy(dict(obj)), schema)
    problems = list(_structural(prepared, schema))
    metadata = prepared.get("metadata")
    if isinstance(metadata, Mapping):
        for key in metadata:
            if key not in OBJECT_META_FIELDS:
                problems.append(Problem(f"metadata.{key}", "not an ObjectMeta field"))
    if not problems:
        # As the API server: CEL rules run on a structurally valid object only.
        problems.extend(_cel(prepared, schema))
    return problems


# --- online -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DryRunResult:
    """What the API server said of one object."""

    obj: str
    """``Kind/name``."""
    accepted: bool
    message: str


def server_dry_run(
    documents: Sequence[Mapping[str, Any]],
    client: Any,
    namespace: str,
    crd_schemas_dir: Traversable = PACKAGED_CRDS,
) -> list[DryRunResult]:
    """Apply each object with ``dryRun=All`` and strict field validation; nothing is stored.

    Server-side apply (force, as the CLI's field manager, ``fieldValidation=Strict``
    as ``kubectl --validate=strict``) validates the whole object as the API server
    serves it: unknown fields, schemas, CEL rules, admission webhooks. ``client``
    is a lightkube ``Client``.
    """
    for path in crd_schemas_dir.iterdir():
        if path.name.endswith(".yaml"):
            for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
                if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                    crd = CustomResourceDefinition.from_dict(doc)
                    assert isinstance(crd, CustomResourceDefinition)
                    create_resources_from_crd(crd)
    results: list[DryRunResult] = []
    for doc in _flatten(documents):
        metadata = doc.get("metadata") or {}
        name = f"{doc.get('kind')}/{metadata.get('name') or '<no name>'}"
        try:
            resource = codecs.from_dict(dict(doc))
        except LoadResourceError as exc:
            results.append(DryRunResult(name, False, f"not checked: {exc}"))
            continue
        namespaced = isinstance(resource, NamespacedResource)
        try:
            # Client.apply has no fieldValidation parameter, and without Strict the API
            # server only warns about unknown fields: the same PATCH as Client.apply,
            # through lightkube's request layer, with the parameter added. The resource
            # class only names the URL.
            client._client.request(
                "patch",
                res=type(resource),
                name=metadata.get("name"),
                namespace=(metadata.get("namespace") or namespace) if namespaced else None,
                # The object as written: the typed model would drop unknown fields.
                obj=dict(doc),
                headers={"Content-Type": PatchType.APPLY.value},
                params={"force": "true", "dryRun": "All", "fieldValidation": "Strict"},
            )
        except ApiError as exc:
            results.append(DryRunResult(name, False, exc.status.message or str(exc)))
            continue
        results.append(DryRunResult(name, True, "accepted (server dry run)"))
    return results


def _flatten(documents: Sequence[Any]) -> Iterator[Mapping[str, Any]]:
    for doc in documents:
        items = doc.get("items") if isinstance(doc, Mapping) else None
        if isinstance(doc, Mapping) and str(doc.get("kind")).endswith("List"):
            yield from _flatten(items if isinstance(items, list) else [])
        elif isinstance(doc, Mapping):
            yield doc
