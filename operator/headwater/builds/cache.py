"""The registry layer cache of a build (pure): whether a build uses one, and where it lives.

A Docker or S2I build whose output is a registry image keeps its layers in a
cache repository of the output's registry (kaniko ``--cache-repo``, buildah
``--cache-to``/``--cache-from``), so a rebuild after a source change reuses
every step before the change instead of starting cold in a fresh pod.

Where: the operator's ``buildCache.repository`` template applied to the output's
repository path, by default ``<output repository>-cache``. The output is
tenant-controlled (a DockerImage name, or an ImageStreamTag's namespace and
stream), so the cache reference is derived from the *parsed* output and checked
again after: it is on the output's registry host, names no tag or digest, passes
the same reference grammar as the output, and differs from it. The template is
the admin's (validated when the config loads) and can only add path components
before the repository and a suffix (no ``/``) after it, so the cache of one
repository never lands in another team's directory, nor on another registry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from headwater.config import CACHE_REPOSITORY_PLACEHOLDER, BuildCache, BuildDefaults
from headwater.registry.reference import ReferenceError, parse_reference

_STRATEGY_BLOCKS = {"Docker": "dockerStrategy", "Source": "sourceStrategy"}


class CacheError(ValueError):
    """No cache reference can be derived from the output (the build runs without a cache)."""


def cache_repository(output_image: str, template: str = BuildCache().repository) -> str:
    """The cache repository (``host[:port]/path``, no tag) of ``output_image``.

    Raises CacheError when the derived name is no valid repository of the output's
    registry (too long, say); the caller then builds without a cache.
    """
    try:
        output = parse_reference(output_image)
    except ReferenceError as exc:
        raise CacheError(f"output {output_image!r}: {exc}") from None
    prefix, found, suffix = template.partition(CACHE_REPOSITORY_PLACEHOLDER)
    if not found or "/" in suffix or template == CACHE_REPOSITORY_PLACEHOLDER:
        raise CacheError(f"cache repository template {template!r} is not [prefix/]{{repository}}")
    path = f"{prefix}{output.path}{suffix}"
    candidate = f"{output.domain}/{path}"
    try:
        cache = parse_reference(candidate)
    except ReferenceError as exc:
        raise CacheError(f"cache repository {candidate!r}: {exc}") from None
    # Belt and braces: the grammar read it as exactly the text made, on the same host.
    if (
        cache.domain != output.domain
        or cache.path != path
        or cache.tag is not None
        or cache.digest is not None
        or cache.path == output.path
    ):
        raise CacheError(f"cache repository {candidate!r} is not a repository of {output.domain}")
    return cache.name


def wants_cache(
    spec: Mapping[str, Any], defaults: BuildDefaults, settings: BuildCache | None = None
) -> bool:
    """Whether a build with ``spec`` uses the layer cache (given it has a registry output):
    the operator's ``buildCache.enabled``, then the strategy's ``noCache``, else
    ``buildDefaults.noCache``. Custom builds never (the builder image is the user's)."""
    if settings is not None and not settings.enabled:
        return False
    strategy = spec.get("strategy") or {}
    key = _STRATEGY_BLOCKS.get(str(strategy.get("type") or "Docker"))
    if key is None:
        return False
    block = strategy.get(key) or {}
    no_cache = block.get("noCache")
    if no_cache is None:
        return not defaults.no_cache
    return not bool(no_cache)


def build_cache_repository(
    spec: Mapping[str, Any],
    output_image: str | None,
    defaults: BuildDefaults,
    settings: BuildCache,
) -> str | None:
    """The cache repository a build reads and writes; None: it builds without a cache
    (cache off for it, no output, or no valid cache name for its output)."""
    if not output_image or not wants_cache(spec, defaults, settings):
        return None
    try:
        return cache_repository(output_image, settings.repository)
    except CacheError:
        return None
