"""``-l/--selector`` as kubectl takes it, turned into lightkube's label selector.

lightkube wants ``{key: value | operator}``; users type ``app=web,tier!=db,env in
(a,b),!legacy``. Parsing here (rather than passing the text through) checks
the syntax before any request and gives a one-line error naming the bad part.
"""

from __future__ import annotations

import re

from lightkube import operators
from lightkube.core.client import LabelValue

Selector = dict[str, LabelValue]

_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VALUE = r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_SET = re.compile(rf"^(?P<key>{_KEY})\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)$")
_BINARY = re.compile(rf"^(?P<key>{_KEY})\s*(?P<op>==|=|!=)\s*(?P<value>{_VALUE})$")
_EXISTS = re.compile(rf"^(?P<neg>!)?\s*(?P<key>{_KEY})$")


class SelectorError(ValueError):
    pass


def _split(text: str) -> list[str]:
    """Requirements are comma-separated, except for the commas inside ``in (...)``."""
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p.strip() for p in parts]


def parse_selector(text: str) -> Selector:
    """kubectl's label selector syntax; raises SelectorError on the first bad requirement."""
    out: Selector = {}
    for part in _split(text):
        if not part:
            raise SelectorError(f"selector {text!r}: empty requirement")
        key, value = _requirement(text, part)
        if key in out:
            # lightkube takes one requirement per key.
            raise SelectorError(f"selector {text!r}: {key!r} appears twice")
        out[key] = value
    return out


def _requirement(text: str, part: str) -> tuple[str, LabelValue]:
    if match := _SET.match(part):
        values = [v.strip() for v in match["values"].split(",")]
        if not all(re.fullmatch(_VALUE, v) for v in values):
            raise SelectorError(f"selector {text!r}: bad value in {part!r}")
        op = operators.in_ if match["op"] == "in" else operators.not_in
        return match["key"], op(values)
    if match := _BINARY.match(part):
        if match["op"] == "!=":
            return match["key"], operators.not_equal(match["value"])
        return match["key"], operators.equal(match["value"])
    if match := _EXISTS.match(part):
        return match["key"], operators.not_exists() if match["neg"] else operators.exists()
    raise SelectorError(f"selector {text!r}: cannot parse {part!r}")
