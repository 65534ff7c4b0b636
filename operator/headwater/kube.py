"""The one small Kubernetes adapter every controller uses.

Every API call the operator makes goes through lightkube's ``AsyncClient``; the
decisions about what its failures *mean* live here and nowhere else:

- :func:`classify` sorts any exception into one of five kinds
  (:class:`Failure`): retry later (``TRANSIENT``), read again and retry
  (``CONFLICT``), the object is gone (``GONE``), the request can never succeed
  as it is (``INVALID``), or the operator lacks a permission (``FORBIDDEN``).
  No module outside this one compares an HTTP status code.
- :func:`get_or_none`, :func:`patch_status` (with a resourceVersion
  precondition) and :func:`create_or_conflict` are the three calls whose
  outcomes every controller needs to tell apart.

The work queue (:mod:`headwater.workqueue`) retries whatever a reconcile
raises with backoff; a reconcile only catches what it handles itself (a gone
object, a conflict it re-reads for).
"""

from __future__ import annotations

import enum
import ssl
import sys
from collections.abc import Callable, Mapping
from typing import Any, cast

import httpx2 as httpx
from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.types import PatchType


class Failure(enum.StrEnum):
    """What a failed API call means for the caller."""

    TRANSIENT = "transient"
    """The API server, the network or a quota: the same request may succeed later."""
    CONFLICT = "conflict"
    """Someone else wrote first (409): read again and redo."""
    GONE = "gone"
    """The object (or its namespace) does not exist (404, 410)."""
    INVALID = "invalid"
    """The request can never succeed as it is (400, 422, an admission denial)."""
    FORBIDDEN = "forbidden"
    """The operator lacks a permission (401, 403): an admin must grant it."""


def status_code(exc: BaseException) -> int | None:
    """The HTTP status of an API error, else None."""
    if isinstance(exc, ApiError):
        return int(exc.status.code or 0)
    return None


def classify(exc: BaseException) -> Failure:
    """What ``exc`` (from any API call) means: retry, re-read, gone, invalid or forbidden.

    Anything that is not an answer of the API server (a timeout, a reset
    connection, a TLS error) is transient: the request may never have arrived.
    """
    code = status_code(exc)
    if code is None:
        return Failure.TRANSIENT
    if code == 409:
        return Failure.CONFLICT
    if code in (404, 410):
        return Failure.GONE
    if code in (401, 403):
        return Failure.FORBIDDEN
    if code in (400, 405, 406, 413, 415, 422):
        return Failure.INVALID
    return Failure.TRANSIENT  # 429, 5xx, and anything unexpected: try again later


def is_gone(exc: BaseException) -> bool:
    return isinstance(exc, ApiError) and classify(exc) is Failure.GONE


def is_unauthorized(exc: BaseException) -> bool:
    """The API server refused the credentials themselves (401): not a missing permission
    (403, also :attr:`Failure.FORBIDDEN`), the token is expired, revoked or unknown."""
    return status_code(exc) == 401


def is_conflict(exc: BaseException) -> bool:
    return isinstance(exc, ApiError) and classify(exc) is Failure.CONFLICT


def already_exists(exc: BaseException) -> bool:
    """A create that found the name taken (409 AlreadyExists, not a write conflict)."""
    return (
        isinstance(exc, ApiError)
        and status_code(exc) == 409
        and str(exc.status.reason or "") == "AlreadyExists"
    )


TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    httpx.HTTPError,
    ssl.SSLError,
    ConnectionError,
    TimeoutError,
)
"""Failures below HTTP: the request may not have reached the API server."""

API_ERRORS: tuple[type[BaseException], ...] = (ApiError, *TRANSPORT_ERRORS)
"""Everything an API call can raise that :func:`classify` knows."""


def plain_dict(obj: Any) -> dict[str, Any]:
    """A lightkube object as the plain dict kopf bodies are (its metadata included)."""
    if isinstance(obj, dict):
        return obj
    to_dict = cast(Callable[[], dict[str, Any]], obj.to_dict)
    return to_dict()


def without_managed_fields(body: Mapping[str, Any]) -> dict[str, Any]:
    """``body`` without ``metadata.managedFields`` (a shallow copy), for bodies kept in
    memory: server-side apply's bookkeeping is a third of an ImageStream's size and no
    decision reads it."""
    metadata = body.get("metadata")
    if not isinstance(metadata, Mapping) or "managedFields" not in metadata:
        return dict(body)
    return {**body, "metadata": {k: v for k, v in metadata.items() if k != "managedFields"}}


INTERNED_MAX = 128
"""Longer strings (messages, annotations' JSON) are kept as they are."""


def compact_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """``body`` as kept in memory for long: without ``metadata.managedFields``, its keys
    and short strings interned. 10,000 ImageStreams repeat the same keys and mostly the
    same values (digests, times, reasons): interned, a stream's body takes about half
    the memory (bench/scale.py)."""
    return cast(dict[str, Any], _interned(without_managed_fields(body)))


def _interned(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {sys.intern(k) if isinstance(k, str) else k: _interned(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_interned(v) for v in value]
    if isinstance(value, str) and len(value) <= INTERNED_MAX:
        return sys.intern(value)
    return value


def resource_version(body: Mapping[str, Any] | None) -> int | None:
    """A body's resourceVersion as a number (etcd's revision, which every API server
    in use hands out); None for anything else, which then never counts as stale."""
    text = str(((body or {}).get("metadata") or {}).get("resourceVersion") or "")
    return int(text) if text.isdigit() else None


def older(body: Mapping[str, Any], than: Mapping[str, Any] | None) -> bool:
    """True when ``body`` is an older version of ``than`` (numeric resourceVersions)."""
    new, old = resource_version(body), resource_version(than)
    return new is not None and old is not None and new < old


async def get_or_none(
    kube: AsyncClient, resource: Any, name: str, namespace: str | None = None
) -> dict[str, Any] | None:
    """The object as a plain dict, or None when it does not exist."""
    try:
        obj = await kube.get(resource, name, namespace=namespace)
    except ApiError as exc:
        if is_gone(exc):
            return None
        raise
    return plain_dict(obj)


async def patch_status(
    kube: AsyncClient,
    status_resource: Any,
    name: str,
    namespace: str | None,
    status: Mapping[str, Any],
    *,
    resource_version: str | None = None,
) -> dict[str, Any] | None:
    """Merge-patch ``status``; the updated object, or None when it is gone.

    With ``resource_version`` the write happens only on that version of the
    object: a concurrent writer makes it raise a CONFLICT (409) for the caller
    to read again.
    """
    body: dict[str, Any] = {"status": dict(status)}
    if resource_version is not None:
        body["metadata"] = {"resourceVersion": resource_version}
    try:
        obj = await kube.patch(
            status_resource, name, body, namespace=namespace, patch_type=PatchType.MERGE
        )
    except ApiError as exc:
        if is_gone(exc):
            return None
        raise
    return plain_dict(obj)


async def create_or_conflict(kube: AsyncClient, obj: Any) -> dict[str, Any] | None:
    """Create ``obj``; the created object, or None when one of that name exists already."""
    try:
        created = await kube.create(obj)
    except ApiError as exc:
        if already_exists(exc):
            return None
        raise
    return plain_dict(created)
