"""OpenShift Templates, processed the way ``oc process --local`` does.

A ``kind: Template`` (``template.openshift.io/v1``, or OpenShift 3's
``apiVersion: v1``) holds objects with parameter references and a list of
parameters. Processing it, as OpenShift's library-go
``pkg/template/templateprocessing`` does:

- each parameter's value is the one given (``--param``, ``--param-file``),
  else its ``value``, else, with ``generate: expression``, a random string
  made from its ``from`` expression (see :func:`generate_expression`); a
  ``required`` parameter left empty is an error;
- in every string of every object (map keys included), ``${NAME}`` is
  replaced by the value; a string that is exactly ``${{NAME}}`` is replaced
  by the value read as JSON (a number, a boolean, an object), or kept as a
  string when it is not JSON;
- a namespace written into an object is removed unless it holds a parameter
  reference, and the template's ``labels`` are added to every object (and to
  a DeploymentConfig's pod template).

Pure functions: the CLI gives values in and gets objects back.
"""

from __future__ import annotations

import copy
import json
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

STRING_REF = re.compile(r"\$\{([a-zA-Z0-9_]+?)\}")
"""``${NAME}``: replaced inside a string."""
NON_STRING_REF = re.compile(r"^\$\{\{([a-zA-Z0-9_]+)\}\}$")
"""``${{NAME}}``, the whole string: replaced by the value as JSON."""
ANY_REF = re.compile(r"\$\{\{?[a-zA-Z0-9_]+\}?\}")

TEMPLATE_API_VERSION = "template.openshift.io/v1"

# library-go pkg/template/generator/expressionvalue.go, as written there.
ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
NUMERALS = "0123456789"
SYMBOLS = "~!@#$%^&*()-_+={}[]\\|<,>.?/\"';:`"
ASCII = ALPHABET + NUMERALS + SYMBOLS
_RANGE = re.compile(r"(\\?[a-zA-Z0-9]-?[a-zA-Z0-9]?)")
_GENERATOR = re.compile(r"\[([a-zA-Z0-9\-\\]+)\](\{([0-9]+)\})")
MAX_EXPRESSION = 4096
"""Longest ``from`` expression accepted (a template is somebody else's file)."""
MAX_GENERATED = 65536
"""Longest value an expression may generate."""
_EXPRESSION = re.compile(r"\[(\\w|\\d|\\a|\\A)|([a-zA-Z0-9]\-[a-zA-Z0-9])+\]")


class TemplateError(ValueError):
    """A template cannot be processed (a required parameter is empty, a bad expression)."""


def is_template(obj: Mapping[str, Any]) -> bool:
    """``kind: Template`` of OpenShift's template group, or of the legacy core ``v1``."""
    api_version = str(obj.get("apiVersion") or "")
    return obj.get("kind") == "Template" and api_version in ("v1", TEMPLATE_API_VERSION)


# --- the expression generator -------------------------------------------------------------------


def _alphabet_slice(first: str, last: str) -> str:
    left, right = ASCII.find(first), ASCII.rfind(last)
    if left > right:
        raise TemplateError(f"invalid range specified: {first}-{last}")
    # OpenShift's slice leaves out the range's last character: [a-z] never yields z.
    return ASCII[left:right]


def generate_expression(expression: str, rng: random.Random | None = None) -> str:
    """``expression`` with each ``[ranges]{n}`` replaced by n random characters of the ranges.

    OpenShift's grammar, quirks included: a range is ``x-y`` (``[a-z]``,
    ``[A-F0-9]``; its last character is never chosen, as in OpenShift), or
    ``\\w`` (letters, digits, ``_``), ``\\d`` (digits), ``\\a`` (letters and
    digits), ``\\A`` (symbols); n is 1 to 255. Text outside the brackets is
    kept (``0x[A-F0-9]{4}``). Values come from the system's random source
    unless ``rng`` is given. The expression is at most :data:`MAX_EXPRESSION`
    characters long and its value at most :data:`MAX_GENERATED`.
    """
    if len(expression) > MAX_EXPRESSION:
        raise TemplateError(f"expression longer than {MAX_EXPRESSION} characters")
    chooser = rng or random.SystemRandom()
    while match := _GENERATOR.search(expression):
        whole = match.group(0)
        brace = whole.rindex("{")
        ranges = whole[:brace]
        if not _EXPRESSION.search(ranges):
            raise TemplateError(f"malformed expression syntax: {ranges}")
        digits = whole[brace + 1 : -1]
        length = int(digits) if len(digits) <= 3 else 0  # int() of a huge string is slow
        if not 0 < length <= 255:
            raise TemplateError(f"range must be within [1-255] characters ({length})")
        alphabet = ""
        for found in _RANGE.finditer(ranges):
            first, last = found.group(0)[0], found.group(0)[-1]
            alphabet += {
                "\\w": ALPHABET + NUMERALS + "_",
                "\\d": NUMERALS,
                "\\a": ALPHABET + NUMERALS,
                "\\A": SYMBOLS,
            }.get(first + last) or _alphabet_slice(first, last)
        alphabet = "".join(dict.fromkeys(alphabet))
        if not alphabet:
            raise TemplateError(f"empty range in expression: {whole}")
        generated = "".join(chooser.choice(alphabet) for _ in range(length))
        expression = expression.replace(whole, generated, 1)
        if len(expression) > MAX_GENERATED:
            raise TemplateError(f"expression generates more than {MAX_GENERATED} characters")
    return expression


# --- parameter files ----------------------------------------------------------------------------


def parse_param_lines(text: str, source: str) -> dict[str, str]:
    """``NAME=VALUE`` lines (as ``oc process --param-file`` reads them).

    Blank lines and ``#`` comments are skipped; the value is everything after
    the first ``=``; a value wholly in double or single quotes loses them
    (double quotes read ``\\n`` as a newline).
    """
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or not name:
            raise TemplateError(f"{source}:{number}: expected NAME=VALUE, got {stripped!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1].replace("\\n", "\n").replace('\\"', '"')
        elif len(value) >= 2 and value[0] == value[-1] == "'":
            value = value[1:-1]
        values[name] = value
    return values


def parse_param_args(args: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``--param NAME=VALUE`` arguments; the value may hold ``=``."""
    values: dict[str, str] = {}
    for arg in args:
        name, sep, value = arg.partition("=")
        if not sep or not name.strip():
            raise TemplateError(f"--param {arg}: expected NAME=VALUE")
        values[name.strip()] = value
    return values


# --- processing ---------------------------------------------------------------------------------


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass
class Processed:
    """A template's objects with the parameters substituted, and what was done."""

    objects: list[Any]
    generated: list[str] = field(default_factory=list)
    """Names of the parameters whose values were generated."""
    stripped: list[str] = field(default_factory=list)
    """``Kind/name`` of objects whose hard-coded namespace was removed."""


def parameter_values(
    template: Mapping[str, Any], given: Mapping[str, str], rng: random.Random | None = None
) -> tuple[dict[str, str], list[str]]:
    """Every parameter's value, and the names of those generated."""
    values: dict[str, str] = {}
    generated: list[str] = []
    for i, param in enumerate(template.get("parameters") or []):
        if not isinstance(param, Mapping) or not param.get("name"):
            raise TemplateError(f"parameters[{i}] has no name")
        name = str(param["name"])
        value = _text(param.get("value"))
        generate = param.get("generate")
        if name in given:
            # oc: a given value replaces the default and the generator.
            value, generate = given[name], None
        if not value and generate:
            if generate != "expression":
                raise TemplateError(f"unknown generator {generate!r} for parameter {name}")
            try:
                value = generate_expression(_text(param.get("from")), rng)
            except TemplateError as exc:
                raise TemplateError(f"parameter {name}: {exc}") from None
            generated.append(name)
        if not value and param.get("required"):
            raise TemplateError(
                f"parameter {name} is required and must be specified (--param {name}=VALUE)"
            )
        values[name] = value
    return values, generated


def substitute(value: Any, values: Mapping[str, str]) -> Any:
    """``value`` (any JSON-like data) with the parameter references replaced."""
    if isinstance(value, str):
        whole = NON_STRING_REF.match(value)
        if whole and whole.group(1) in values:
            text = values[whole.group(1)]
            try:
                return json.loads(text)
            except ValueError:
                return text
        return STRING_REF.sub(lambda m: values.get(m.group(1), m.group(0)), value)
    if isinstance(value, list):
        return [substitute(item, values) for item in value]
    if isinstance(value, dict):
        return {
            (substitute(k, values) if isinstance(k, str) else k): substitute(v, values)
            for k, v in value.items()
        }
    return value


def add_pod_labels(dc: dict[str, Any], labels: Mapping[str, Any]) -> None:
    """A DeploymentConfig's pod template gets the template's labels too (oc does so)."""
    template = (dc.get("spec") or {}).get("template")
    if isinstance(template, dict) and labels:
        meta = template.setdefault("metadata", {})
        meta["labels"] = {**(meta.get("labels") or {}), **labels}


def _add_labels(obj: dict[str, Any], labels: Mapping[str, Any]) -> None:
    metadata = obj.setdefault("metadata", {})
    if isinstance(metadata, dict):
        metadata["labels"] = {**(metadata.get("labels") or {}), **labels}
    if obj.get("kind") == "DeploymentConfig":
        add_pod_labels(obj, labels)


def process(
    template: Mapping[str, Any], given: Mapping[str, str], rng: random.Random | None = None
) -> Processed:
    """The template's objects, processed (a copy: ``template`` is left alone)."""
    values, generated = parameter_values(template, given, rng)
    labels = substitute(copy.deepcopy(template.get("labels") or {}), values)
    result = Processed([], generated)
    for i, item in enumerate(template.get("objects") or []):
        if not isinstance(item, dict):
            raise TemplateError(f"objects[{i}] is not an object")
        obj = copy.deepcopy(item)
        metadata = obj.get("metadata")
        if isinstance(metadata, dict) and metadata.get("namespace"):
            namespace = metadata["namespace"]
            if not (isinstance(namespace, str) and STRING_REF.search(namespace)):
                del metadata["namespace"]
                result.stripped.append(f"{obj.get('kind')}/{metadata.get('name')}")
        obj = substitute(obj, values)
        if isinstance(labels, Mapping) and labels:
            _add_labels(obj, labels)
        result.objects.append(obj)
    return result


def parameter_names(template: Mapping[str, Any]) -> set[str]:
    """The names of the template's parameters."""
    return {
        str(p["name"])
        for p in template.get("parameters") or []
        if isinstance(p, Mapping) and p.get("name")
    }


def value_at(obj: Any, path: str) -> Any:
    """The value at a note's dotted path (``spec.tags[0].name``), or None."""
    current = obj
    for key, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", path):
        if index:
            if not isinstance(current, list) or int(index) >= len(current):
                return None
            current = current[int(index)]
        elif isinstance(current, Mapping):
            current = current.get(key)
        else:
            return None
    return current


def holds_reference(obj: Any, path: str) -> bool:
    """Whether the field at ``path`` is a string with a parameter reference in it."""
    value = value_at(obj, path) if path else None
    return isinstance(value, str) and bool(ANY_REF.search(value))
