"""SLSA v1 provenance of a Complete build (pure): what the build pod reports of its
inputs, and the in-toto Statement that attests to them.

The Statement (``https://in-toto.io/Statement/v1``) carries the predicate
``https://slsa.dev/provenance/v1`` with

- ``subject``: the pushed image, ``<registry>/<repository>`` and its sha256 digest;
- ``buildDefinition.buildType``: :data:`BUILD_TYPE`, which docs/supply-chain.md
  describes field by field;
- ``externalParameters``: the Build's spec as it ran (credentials in Git URLs removed);
- ``internalParameters``: the executor and the cluster settings that changed the
  build (names of environment variables, never their values);
- ``resolvedDependencies``: the Git commit, then every base or builder image with its
  sha256 digest, each annotated with where the digest came from and what the
  operator checked of it;
- ``runDetails``: the builder (Headwater's version and the cluster's identity), the
  Build's uid as the invocation id, and the start and finish times.

What the pod reports is bounded: the kubelet cuts a termination message at 4 KiB,
so at most :data:`MAX_IMAGES` image references (each at most :data:`MAX_REFERENCE`
characters) are read, and a report that had more says so (``capped``), which the
Statement repeats.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from headwater.registry.reference import Reference, ReferenceError, parse_reference

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://headwater.dev/provenance/build/v1"
"""What Headwater's provenance means, versioned: docs/supply-chain.md, "Provenance"."""
BUILDER_ID = "https://headwater.dev/builder"
ANNOTATION_PREFIX = "headwater.dev/"

MAX_IMAGES = 10
"""Image references read from one report (a Dockerfile's FROM lines, buildah's pulls)."""
MAX_REFERENCE = 200
"""Longest image reference read from a report; a longer one is dropped (and capped set)."""

# Where an image dependency's digest came from.
PINNED = "pinned"
"""The FROM line (as the fetch step left it) names the digest: the executor pulled that."""
EXECUTOR = "executor"
"""The executor reported the digest it pulled (buildah, after the build)."""
REGISTRY = "registry"
"""The operator resolved the tag in the registry after the build (kaniko reports nothing)."""

# What the operator checked of an image dependency.
CHECK_IN_REGISTRY = "inRegistry"
"""The registry has a manifest of that digest in that repository."""
CHECK_BASE_LAYERS = "baseLayers"
"""The built image's layer list starts with this image's layers (the last stage's base)."""

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_SCRATCH = "scratch"


@dataclass(frozen=True)
class Reported:
    """Image references a build pod reported, bounded."""

    references: tuple[str, ...] = ()
    """The FROM images of the final Dockerfile, every stage, in order (the fetch step)."""
    pulled: tuple[tuple[str, str], ...] = ()
    """(reference, digest) of the images the executor pulled (buildah; empty for kaniko)."""
    capped: bool = False
    """A report had more than :data:`MAX_IMAGES` (or overlong) entries: some were left out."""
    last: str = ""
    """The base image of the stage pushed (a stage name followed to its FROM image)."""


def _bounded_strings(value: object) -> tuple[tuple[str, ...], bool]:
    if not isinstance(value, list):
        return (), False
    kept: list[str] = []
    capped = False
    for item in value:
        if not isinstance(item, str) or not item or len(item) > MAX_REFERENCE:
            capped = True
            continue
        if item in kept:
            continue
        if len(kept) == MAX_IMAGES:
            capped = True
            break
        kept.append(item)
    return tuple(kept), capped


def reported_images(
    fetch_report: Mapping[str, Any] | None, build_report: Mapping[str, Any] | None
) -> Reported:
    """What the fetch step (``from``) and the executor (``pulled``) reported, bounded.

    ``pulled`` entries are ``<reference>@sha256:<hex>``; any other shape is left out.
    """
    fetch, build = fetch_report or {}, build_report or {}
    references, capped = _bounded_strings(fetch.get("from"))
    if fetch.get("fromCapped") is True:
        capped = True
    raw_pulled, pulled_capped = _bounded_strings(build.get("pulled"))
    pulled: list[tuple[str, str]] = []
    for entry in raw_pulled:
        name, _, digest = entry.rpartition("@")
        if not name or not _DIGEST.fullmatch(digest):
            pulled_capped = True
            continue
        pulled.append((name, digest))
    if build.get("pulledCapped") is True:
        pulled_capped = True
    last = fetch.get("lastFrom")
    last = last if isinstance(last, str) and len(last) <= MAX_REFERENCE else ""
    return Reported(references, tuple(pulled), capped or pulled_capped, last)


def image_reference(text: str) -> Reference | None:
    """A reported image reference, normalised; None for ``scratch``, a build argument
    (``$BASE``) or anything that does not parse."""
    if text.lower() == _SCRATCH or "$" in text:
        return None
    try:
        return parse_reference(text)
    except ReferenceError:
        return None


def same_image(a: Reference, b: Reference) -> bool:
    """The same repository and tag (``latest`` when none is written)."""
    return a.name == b.name and (a.tag or "latest") == (b.tag or "latest")


@dataclass(frozen=True)
class ImageDependency:
    """A base or builder image the build pulled, with its digest."""

    reference: str
    """As the Dockerfile (or the pull report) names it."""
    repository: str
    """``<registry>/<path>``, normalised."""
    digest: str
    source: str
    """:data:`PINNED`, :data:`EXECUTOR` or :data:`REGISTRY`."""
    checks: Mapping[str, bool] = field(default_factory=dict)
    """Check name (:data:`CHECK_IN_REGISTRY`, :data:`CHECK_BASE_LAYERS`) to its result."""


@dataclass(frozen=True)
class Provenance:
    """Every fact the Statement holds besides the Build itself."""

    image: str
    """The pushed repository, ``<registry>/<path>``."""
    digest: str
    executor: str
    """``kaniko``, ``buildah`` or ``custom``."""
    headwater_version: str
    cluster_id: str
    """The cluster's identity: the uid of its ``kube-system`` namespace."""
    started: str | None
    finished: str | None
    images: tuple[ImageDependency, ...] = ()
    unresolved: tuple[str, ...] = ()
    """FROM references no digest could be found for (build arguments, gone tags)."""
    capped: bool = False
    internal: Mapping[str, Any] = field(default_factory=dict)
    """Operator settings that changed the build (no values of secrets)."""


def without_credentials(url: str) -> str:
    """A URL without its user information (``https://user:token@host`` -> ``https://host``)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if not parts.scheme or "@" not in parts.netloc:
        return url  # no credentials, or scp-like git@host:path (a user name, no password)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def _scrub(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The spec with credentials taken out of its Git URLs."""
    out: dict[str, Any] = _copy(spec)
    git = (out.get("source") or {}).get("git")
    if isinstance(git, dict):
        for key in ("uri", "httpProxy", "httpsProxy"):
            if isinstance(git.get(key), str):
                git[key] = without_credentials(git[key])
    return out


def _copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_copy(v) for v in value]
    return value


def git_dependency(spec: Mapping[str, Any], revision: Mapping[str, Any] | None) -> dict[str, Any]:
    """The Git commit as a ResourceDescriptor, or {} (no Git source, or no commit reported)."""
    git_source = (spec.get("source") or {}).get("git") or {}
    commit = str(((revision or {}).get("git") or {}).get("commit") or "")
    uri = str(git_source.get("uri") or "")
    if not uri or not re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", commit):
        return {}
    ref = str(git_source.get("ref") or "")
    location = f"git+{without_credentials(uri)}"
    return {
        "uri": f"{location}@{ref}" if ref else location,
        "digest": {"gitCommit": commit},
    }


def _image_descriptor(image: ImageDependency) -> dict[str, Any]:
    annotations: dict[str, Any] = {
        f"{ANNOTATION_PREFIX}reference": image.reference,
        f"{ANNOTATION_PREFIX}digestSource": image.source,
    }
    for check, result in sorted(image.checks.items()):
        annotations[f"{ANNOTATION_PREFIX}{check}"] = result
    return {
        "uri": f"oci://{image.repository}@{image.digest}",
        "name": image.reference,
        "digest": {"sha256": image.digest.removeprefix("sha256:")},
        "annotations": annotations,
    }


def builder_id(version: str, cluster_id: str) -> str:
    return f"{BUILDER_ID}/{version}/clusters/{cluster_id}"


def statement(build: Mapping[str, Any], facts: Provenance) -> dict[str, Any]:
    """The in-toto Statement v1 with the SLSA v1 provenance of ``build``."""
    metadata = build.get("metadata") or {}
    spec = build.get("spec") or {}
    dependencies: list[dict[str, Any]] = []
    git = git_dependency(spec, (build.get("status") or {}).get("revision"))
    if git:
        dependencies.append(git)
    dependencies += [_image_descriptor(image) for image in facts.images]
    internal: dict[str, Any] = {"executor": facts.executor, **facts.internal}
    internal["dependencies"] = {
        "limit": MAX_IMAGES,
        "capped": facts.capped,
        "unresolved": list(facts.unresolved),
    }
    run_metadata: dict[str, Any] = {"invocationId": str(metadata.get("uid") or "")}
    if facts.started:
        run_metadata["startedOn"] = facts.started
    if facts.finished:
        run_metadata["finishedOn"] = facts.finished
    return {
        "_type": STATEMENT_TYPE,
        "subject": [
            {"name": facts.image, "digest": {"sha256": facts.digest.removeprefix("sha256:")}}
        ],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "build": {
                        "namespace": str(metadata.get("namespace") or ""),
                        "name": str(metadata.get("name") or ""),
                        "buildConfig": str(
                            ((build.get("status") or {}).get("config") or {}).get("name") or ""
                        ),
                    },
                    "spec": _scrub(spec),
                },
                "internalParameters": internal,
                "resolvedDependencies": dependencies,
            },
            "runDetails": {
                "builder": {
                    "id": builder_id(facts.headwater_version, facts.cluster_id),
                    "version": {"headwater": facts.headwater_version},
                },
                "metadata": run_metadata,
            },
        },
    }
