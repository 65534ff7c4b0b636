"""Thin kopf handlers, one module per kind.

Importing this package registers the handlers with kopf's default registry
and does nothing else; :mod:`headwater.runtime` imports it before starting kopf.
"""

from __future__ import annotations

from headwater.handlers import (
    build,
    buildconfig,
    imagestream,
    lifecycle,
    lookup,
    references,
    workloads,
)

__all__ = [
    "build",
    "buildconfig",
    "imagestream",
    "lifecycle",
    "lookup",
    "references",
    "workloads",
]
