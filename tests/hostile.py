"""Hostile inputs shared by the unit tests and the e2e stall test: built once, so both
prove the operator against the same bodies."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable

LAUGHS = b"""git:
  a: &a [x,x,x,x,x,x,x,x,x]
  b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
  c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
  d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
  e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
  f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
  g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
  h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
  i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
  ref: *i
"""
"""A billion laughs as a Generic webhook body: about 460 bytes; ``str()`` of what
PyYAML's safe_load makes of it is ~2 GB."""


def star_glob(char: str, tail: str, stars: int = 10) -> str:
    """``*c*c...*c*<tail>``: against a long run of ``c`` not followed by ``tail``, a
    backtracking matcher tries every way to spread the run over the stars."""
    return f"*{char}" * stars + f"*{tail}"


def docker_config_data(registries: Iterable[str], user: bytes = b"u:p") -> dict[str, str]:
    """A ``kubernetes.io/dockerconfigjson`` Secret's data with one entry per registry key."""
    auth = base64.b64encode(user).decode()
    doc = json.dumps({"auths": {key: {"auth": auth} for key in registries}}).encode()
    return {".dockerconfigjson": base64.b64encode(doc).decode()}
