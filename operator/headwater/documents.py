"""Documents from outside the operator (JSON or YAML), parsed within fixed bounds.

Everything the operator parses runs on its one event loop, which also renews
the leader Lease and answers every webhook; a document that takes seconds to
parse, or expands to gigabytes once turned into text, stalls or kills all of
them. So every document a tenant or a remote caller controls is parsed here,
and refused when it is:

- larger than ``max_bytes`` (checked before parsing);
- nested deeper than ``max_depth`` or made of more than ``max_nodes`` values;
- YAML with an anchor or an alias (``&a`` / ``*a``), which is how a few
  hundred bytes become gigabytes ("billion laughs"): PyYAML shares the aliased
  objects, so loading is quick, but the first ``str()`` or ``json.dumps`` of
  the result writes out every copy. Refused while composing, before any
  object exists;
- not plain JSON data (YAML's timestamps, binaries, sets; integers of more
  digits than Python converts).

Pure: no I/O, no kopf.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import yaml

__all__ = ["DocumentError", "Limits", "check_shape", "load_json", "load_yaml", "shown"]


@dataclass(frozen=True)
class Limits:
    """How large a document may be: bytes, values (every scalar, list and map) and depth."""

    max_bytes: int
    max_nodes: int
    max_depth: int


class DocumentError(ValueError):
    """The document is refused; the message says why, without quoting it."""


_JSON_SCALARS: Final = (str, int, float, bool, type(None))
_SHOWN_MAX: Final = 200


def shown(value: object, limit: int = _SHOWN_MAX) -> str:
    """``repr(value)`` for a message, cut to ``limit`` characters.

    Only for values already within :class:`Limits` (or plain strings): the
    repr of a bounded value is bounded, and the cut keeps messages short.
    """
    text = repr(value) if not isinstance(value, str) else repr(value[: limit + 1])
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_shape(doc: Any, limits: Limits, what: str = "body") -> None:
    """Refuse ``doc`` unless it is plain JSON data within ``limits`` (walked without recursion)."""
    nodes = 0
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        nodes += 1
        if nodes > limits.max_nodes:
            raise DocumentError(f"{what} has more than {limits.max_nodes} values")
        if depth > limits.max_depth:
            raise DocumentError(f"{what} is nested deeper than {limits.max_depth} levels")
        if isinstance(value, Mapping):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise DocumentError(f"{what}: keys must be strings")
                stack.append((item, depth + 1))
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)
        elif not isinstance(value, _JSON_SCALARS):
            raise DocumentError(f"{what} holds a {type(value).__name__}: only JSON values")


def load_json(data: bytes | str, limits: Limits, what: str = "body") -> Any:
    """The JSON document in ``data``, or DocumentError."""
    size = len(data.encode() if isinstance(data, str) else data)
    if size > limits.max_bytes:
        raise DocumentError(f"{what} is larger than {limits.max_bytes} bytes")
    try:
        doc = json.loads(data)
    except json.JSONDecodeError as exc:
        raise DocumentError(
            f"{what} is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except UnicodeDecodeError:
        raise DocumentError(f"{what} is not UTF-8") from None
    except RecursionError:
        raise DocumentError(f"{what} is nested deeper than {limits.max_depth} levels") from None
    except ValueError:  # an integer of more digits than int() converts
        raise DocumentError(f"{what} is not JSON: a number is too long") from None
    check_shape(doc, limits, what)
    return doc


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses anchors and aliases and counts values while composing."""

    def __init__(self, stream: bytes, limits: Limits, what: str) -> None:
        super().__init__(stream)
        self.limits = limits
        self.what = what
        self.nodes = 0
        self.depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            raise DocumentError(f"{self.what}: YAML aliases (*name) are not accepted")
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if getattr(event, "anchor", None) is not None:
            raise DocumentError(f"{self.what}: YAML anchors (&name) are not accepted")
        self.nodes += 1
        if self.nodes > self.limits.max_nodes:
            raise DocumentError(f"{self.what} has more than {self.limits.max_nodes} values")
        self.depth += 1
        try:
            if self.depth > self.limits.max_depth:
                raise DocumentError(
                    f"{self.what} is nested deeper than {self.limits.max_depth} levels"
                )
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def load_yaml(data: bytes, limits: Limits, what: str = "body") -> Any:
    """The one YAML document in ``data`` (None when empty), or DocumentError."""
    if len(data) > limits.max_bytes:
        raise DocumentError(f"{what} is larger than {limits.max_bytes} bytes")
    loader = _BoundedLoader(data, limits, what)
    try:
        doc = loader.get_single_data()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise DocumentError(f"{what} is not YAML: {problem}{where}") from None
    except (ValueError, RecursionError) as exc:
        if isinstance(exc, DocumentError):
            raise
        raise DocumentError(f"{what} is not YAML: a value cannot be read") from None
    finally:
        loader.dispose()
    check_shape(doc, limits, what)
    return doc
