"""Start requests and the Build they become (pure).

A build is asked for by an annotation on its BuildConfig whose key is
``start.build.headwater.dev/<request-id>`` and whose value is empty or a JSON
object of overrides. One key per request means concurrent requests never
overwrite each other, ``kubectl annotate`` alone can start a build, and the
request id (also a label on the Build it made) makes instantiation
idempotent: after a crash the operator finds the Build a request already
made instead of making a second one.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from headwater.builds.model import (
    ANNOTATION_BUILDCONFIG,
    ANNOTATION_NUMBER,
    ANNOTATION_RUN_POLICY,
    API_VERSION,
    LABEL_BUILDCONFIG,
    LABEL_REQUEST,
    OPENSHIFT_BUILDCONFIG_LABEL,
    OPENSHIFT_LEGACY_BUILDCONFIG_LABEL,
    OPENSHIFT_NUMBER_ANNOTATION,
    OPENSHIFT_START_POLICY_LABEL,
    SERIAL,
    build_name,
    label_value,
)
from headwater.documents import DocumentError, Limits, check_shape

REQUEST_PREFIX = "start.build.headwater.dev/"
REQUEST_MAX_BYTES = 64 * 1024
REQUEST_LIMITS = Limits(max_bytes=REQUEST_MAX_BYTES, max_nodes=10_000, max_depth=16)
"""env and buildArgs (128 pairs each), causes with their revisions: far below both."""
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_ENV_NAME_RE = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_MAX_ENV = 128

# The part of a BuildConfig spec a Build copies (OpenShift's CommonSpec).
COMMON_SPEC_FIELDS = (
    "serviceAccount",
    "source",
    "revision",
    "strategy",
    "output",
    "resources",
    "postCommit",
    "completionDeadlineSeconds",
    "nodeSelector",
    "mountTrustedCA",
)
_STRATEGY_KEYS = {
    "Docker": "dockerStrategy",
    "Source": "sourceStrategy",
    "Custom": "customStrategy",
}


INHERITED_ANNOTATIONS = frozenset({"build.headwater.dev/executor"})
"""BuildConfig annotations its Builds carry (they choose how the build runs)."""


class RequestError(ValueError):
    """A start request that cannot be honoured; the message says why."""


@dataclass(frozen=True)
class StartRequest:
    """One request to start a build, with its overrides."""

    id: str
    env: tuple[tuple[str, str], ...] = ()
    build_args: tuple[tuple[str, str], ...] = ()
    commit: str | None = None
    no_cache: bool | None = None
    incremental: bool | None = None
    binary: Mapping[str, str] | None = None
    """Present for an upload (``start-build --from-*``): ``{}`` or ``{"asFile": name}``."""
    from_build: str | None = None
    """Re-run this Build's spec instead of the BuildConfig's."""
    from_image: str | None = None
    """Pin the strategy's ``from`` to this pull spec (the image an ImageChange
    trigger fired on, or the tag's current image), as OpenShift's Builds record it."""
    causes: tuple[Mapping[str, Any], ...] = field(default=(), hash=False)
    """``triggeredBy`` entries; default: a manual start."""
    triggered: bool = False
    """Asked for on a trigger's behalf (a webhook delivered to a standby replica): the
    strategy is checked for the user recorded as the spec's author, as for any
    triggered build. Only ever adds a check to the one admission made of the writer."""


def _pairs(value: object, what: str) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > _MAX_ENV:
        raise RequestError(f"{what} must be a list of at most {_MAX_ENV} {{name, value}} objects")
    pairs = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise RequestError(f"{what} entries need a string name")
        name, val = item["name"], item.get("value", "")
        if not _ENV_NAME_RE.fullmatch(name):
            raise RequestError(f"{what}: {name!r} is not a valid variable name")
        if not isinstance(val, str):
            raise RequestError(f"{what}: the value of {name} must be a string")
        pairs.append((name, val))
    return tuple(pairs)


def _optional_bool(doc: Mapping[str, Any], key: str) -> bool | None:
    value = doc.get(key)
    if value is None or isinstance(value, bool):
        return value
    raise RequestError(f"{key} must be true or false")


def _optional_str(doc: Mapping[str, Any], key: str, limit: int = 1024) -> str | None:
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > limit:
        raise RequestError(f"{key} must be a non-empty string of at most {limit} characters")
    return value


_KNOWN_KEYS = {
    "env", "buildArgs", "commit", "noCache", "incremental", "binary", "fromBuild", "triggeredBy",
    "fromImage", "triggered",
}  # fmt: skip


def parse_request(request_id: str, value: str) -> StartRequest:
    """The request an annotation value describes; raises RequestError with the reason."""
    if not _REQUEST_ID_RE.fullmatch(request_id):
        raise RequestError(f"request id {request_id!r} must be a DNS-label-like name")
    if len(value.encode()) > REQUEST_MAX_BYTES:
        raise RequestError(f"request is larger than {REQUEST_MAX_BYTES} bytes")
    if not value.strip():
        return StartRequest(id=request_id)
    try:
        doc = json.loads(value)
    except json.JSONDecodeError as exc:
        raise RequestError(f"request is not JSON: {exc.msg} at character {exc.pos}") from None
    except (ValueError, RecursionError):
        raise RequestError("request is not JSON: nested too deeply or a number too long") from None
    try:
        check_shape(doc, REQUEST_LIMITS, "request")
    except DocumentError as exc:
        raise RequestError(str(exc)) from None
    if not isinstance(doc, dict):
        raise RequestError("request must be a JSON object")
    unknown = sorted(set(doc) - _KNOWN_KEYS)
    if unknown:
        raise RequestError(f"unknown request field(s): {', '.join(unknown)}")
    binary = doc.get("binary")
    if binary is not None:
        if not isinstance(binary, dict) or set(binary) - {"asFile"}:
            raise RequestError('binary must be {} or {"asFile": "<name>"}')
        as_file = binary.get("asFile")
        if as_file is not None and (
            not isinstance(as_file, str) or not as_file or "/" in as_file or as_file in (".", "..")
        ):
            raise RequestError("binary.asFile must be a plain file name")
    causes = doc.get("triggeredBy")
    if causes is not None and (
        not isinstance(causes, list) or not all(isinstance(c, dict) for c in causes)
    ):
        raise RequestError("triggeredBy must be a list of objects")
    return StartRequest(
        id=request_id,
        env=_pairs(doc.get("env"), "env"),
        build_args=_pairs(doc.get("buildArgs"), "buildArgs"),
        commit=_optional_str(doc, "commit", 256),
        no_cache=_optional_bool(doc, "noCache"),
        incremental=_optional_bool(doc, "incremental"),
        binary=dict(binary) if binary is not None else None,
        from_build=_optional_str(doc, "fromBuild", 253),
        from_image=_optional_str(doc, "fromImage", 1024),
        causes=tuple(causes or ()),
        triggered=bool(_optional_bool(doc, "triggered")),
    )


def pending_requests(
    annotations: Mapping[str, str] | None,
) -> tuple[list[tuple[str, StartRequest]], list[tuple[str, str]]]:
    """(annotation key, request) for each valid request, and (key, error) for each bad one.

    Requests are taken in key order, so a burst of requests is numbered the
    same way on every replay.
    """
    good: list[tuple[str, StartRequest]] = []
    bad: list[tuple[str, str]] = []
    for key in sorted(annotations or {}):
        if not key.startswith(REQUEST_PREFIX):
            continue
        try:
            good.append((key, parse_request(key[len(REQUEST_PREFIX) :], str(annotations[key]))))  # type: ignore[index]
        except RequestError as exc:
            bad.append((key, str(exc)))
    return good, bad


def request_value(request: StartRequest) -> str:
    """The annotation value that asks for ``request`` (the CLI's side of parse_request)."""
    doc: dict[str, Any] = {}
    if request.env:
        doc["env"] = [{"name": n, "value": v} for n, v in request.env]
    if request.build_args:
        doc["buildArgs"] = [{"name": n, "value": v} for n, v in request.build_args]
    if request.commit:
        doc["commit"] = request.commit
    if request.no_cache is not None:
        doc["noCache"] = request.no_cache
    if request.incremental is not None:
        doc["incremental"] = request.incremental
    if request.binary is not None:
        doc["binary"] = dict(request.binary)
    if request.from_build:
        doc["fromBuild"] = request.from_build
    if request.from_image:
        doc["fromImage"] = request.from_image
    if request.causes:
        doc["triggeredBy"] = [dict(c) for c in request.causes]
    if request.triggered:
        doc["triggered"] = True
    return json.dumps(doc, separators=(",", ":")) if doc else ""


def _merge_env(existing: object, overrides: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    """``existing`` with each override replacing the variable of its name, else appended."""
    result = [dict(e) for e in existing or [] if isinstance(e, dict)]  # type: ignore[attr-defined]
    for name, value in overrides:
        for entry in result:
            if entry.get("name") == name:
                entry.clear()
                entry.update(name=name, value=value)
                break
        else:
            result.append({"name": name, "value": value})
    return result


def build_spec(source_spec: Mapping[str, Any], request: StartRequest) -> dict[str, Any]:
    """The Build spec: the common part of ``source_spec`` with the request's overrides."""
    spec = {k: copy.deepcopy(source_spec[k]) for k in COMMON_SPEC_FIELDS if k in source_spec}
    strategy = spec.setdefault("strategy", {})
    key = _STRATEGY_KEYS.get(str(strategy.get("type")))
    if key is not None:
        block = strategy.setdefault(key, {})
        if request.env:
            block["env"] = _merge_env(block.get("env"), request.env)
        if request.build_args and key == "dockerStrategy":
            block["buildArgs"] = _merge_env(block.get("buildArgs"), request.build_args)
        if request.no_cache is not None and key in ("dockerStrategy", "sourceStrategy"):
            block["noCache"] = request.no_cache
        if request.incremental is not None and key == "sourceStrategy":
            block["incremental"] = request.incremental
        if request.from_image and block.get("from"):
            block["from"] = {"kind": "DockerImage", "name": request.from_image}
    if request.commit:
        git = ((spec.get("source") or {}).get("git")) or {}
        spec["revision"] = {"type": "Git", "git": {"commit": request.commit}}
        if not git:
            raise RequestError("--commit needs a Git source")
    if request.binary is not None:
        source = spec.setdefault("source", {})
        if source.get("type") != "Binary":
            raise RequestError(
                f"an upload needs source type Binary; this build's source is {source.get('type')}"
            )
        source["binary"] = dict(request.binary) or dict(source.get("binary") or {})
    spec["triggeredBy"] = [dict(c) for c in request.causes] or [{"message": "Manually triggered"}]
    return spec


def render_build(
    buildconfig: Mapping[str, Any],
    number: int,
    request: StartRequest,
    source_spec: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The Build object request ``request`` makes as number ``number`` of ``buildconfig``.

    ``source_spec`` is the spec to copy (a Build's, for ``fromBuild``);
    default the BuildConfig's.
    """
    metadata = buildconfig.get("metadata") or {}
    spec = buildconfig.get("spec") or {}
    bc_name = str(metadata["name"])
    policy = str(spec.get("runPolicy") or SERIAL)
    annotations = {
        key: str(value)
        for key, value in (metadata.get("annotations") or {}).items()
        if key in INHERITED_ANNOTATIONS
    }
    labels = {
        **dict(metadata.get("labels") or {}),
        LABEL_BUILDCONFIG: label_value(bc_name),
        OPENSHIFT_BUILDCONFIG_LABEL: label_value(bc_name),
        OPENSHIFT_LEGACY_BUILDCONFIG_LABEL: label_value(bc_name),
        OPENSHIFT_START_POLICY_LABEL: policy,
        LABEL_REQUEST: request.id,
    }
    return {
        "apiVersion": API_VERSION,
        "kind": "Build",
        "metadata": {
            "name": build_name(bc_name, number),
            "namespace": metadata.get("namespace"),
            "labels": labels,
            "annotations": {
                **annotations,
                ANNOTATION_BUILDCONFIG: bc_name,
                ANNOTATION_NUMBER: str(number),
                ANNOTATION_RUN_POLICY: policy,
                OPENSHIFT_BUILDCONFIG_LABEL: bc_name,
                OPENSHIFT_NUMBER_ANNOTATION: str(number),
            },
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": "BuildConfig",
                    "name": bc_name,
                    "uid": metadata.get("uid"),
                    "controller": True,
                }
            ],
        },
        "spec": build_spec(source_spec if source_spec is not None else spec, request),
    }
