"""An in-memory stand-in for lightkube's ``AsyncClient``, for unit tests of the controllers.

It keeps objects as the API server would, as far as ImportRunner, BuildController
and WorkloadTriggers can tell: per-object resourceVersions from one counter (as
etcd hands them out), a 409 when a write carries a stale
``metadata.resourceVersion``, ``generation`` bumped on spec changes, status
subresources that change only ``status`` (and main-resource writes that leave
``status`` alone), 404 for a missing object, 409 AlreadyExists on create.
Answers are lightkube objects (``.to_dict()``, ``.metadata``), deep copies, like
a decoded response. SubjectAccessReviews are answered, not stored.

Faults are injected per verb/resource/subresource/name/namespace, for a number
of calls: an API error of any code, or any exception (``httpx2.ReadTimeout``),
raised before the request takes effect or, with ``applied=True``, after (an
answer lost on its way back). Every call is recorded (:class:`Call`), so a test
can count GETs, LISTs and writes; every successful write is queued as a watch
event (:attr:`FakeKube.events`) a test can deliver, delay or drop.

Example::

    kube = FakeKube()
    kube.add({"apiVersion": "image.headwater.dev/v1", "kind": "ImageStream",
              "metadata": {"name": "web", "namespace": "shop"}, "spec": {}})
    kube.fail("patch", "imagestreams", subresource="status", code=500)
    kube.fail("get", "imagestreams", error=httpx2.ReadTimeout("slow"), times=2)
    runner = ImportRunner(kube.client, ...)
    ...
    assert kube.count("patch", "imagestreams", subresource="status") == 2
    assert kube.body(ImageStream, "web", "shop")["status"]["tags"]

Not modelled: finalizers and deletionTimestamp (a delete removes at once), owner
references and garbage collection, strategic-merge list keys (STRATEGIC and
APPLY patches are JSON merge patches; APPLY does not create a missing object),
JSON patches, watches (see :attr:`FakeKube.events`), admission and validation.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import itertools
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import httpx2
from lightkube import AsyncClient, codecs
from lightkube.core.exceptions import ApiError
from lightkube.core.resource import NamespacedResource
from lightkube.operators import Operator
from lightkube.resources.authorization_v1 import SubjectAccessReview
from lightkube.types import PatchType

import headwater.resources  # noqa: F401 - registers Headwater's kinds with lightkube's codec
from headwater.workqueue import Backoff, WorkQueue

Body = dict[str, Any]
Key = tuple[str, str | None, str]
"""(resource plural, namespace or None for cluster-wide kinds, name)."""

REASONS: Mapping[int, str] = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Gone",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}

STATUS_SUBRESOURCES = frozenset(
    {
        "imagestreams",
        "buildconfigs",
        "builds",
        "deployments",
        "statefulsets",
        "daemonsets",
        "cronjobs",
        "jobs",
        "pods",
        "namespaces",
    }
)
"""Kinds whose main endpoint ignores ``status`` (it is written through ``/status``)."""

WRITES = frozenset({"create", "patch", "replace", "delete"})


def api_error(
    code: int, message: str | None = None, reason: str | None = None, *, method: str = "GET"
) -> ApiError:
    """An ApiError as lightkube raises it for a ``Status`` answer of ``code``."""
    request = httpx2.Request(method, "https://fake-kube.invalid/api")
    status = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "code": code,
        "reason": reason or REASONS.get(code, "Unknown"),
        "message": message or f"fake API error {code}",
    }
    return ApiError(request=request, response=httpx2.Response(code, request=request, json=status))


@dataclass(frozen=True)
class Call:
    """One request the code under test made."""

    verb: str
    """get, list, create, patch, replace or delete."""
    resource: str
    """The plural: ``imagestreams``, ``subjectaccessreviews``."""
    name: str | None
    namespace: str | None
    subresource: str | None = None
    body: Any = None
    """What a write sent (a plain dict); None for reads and deletes."""
    options: Mapping[str, Any] = field(default_factory=dict)
    """patch_type, field_manager, force, labels, fields, cascade ... as given."""
    error: BaseException | None = None
    """What the call raised, if it did."""

    @property
    def write(self) -> bool:
        return self.verb in WRITES


@dataclass
class Fault:
    """An injected failure; see :meth:`FakeKube.fail`."""

    verb: str | None
    resource: str | None
    subresource: str | None
    name: str | None
    namespace: str | None
    times: int | None
    error: Callable[[], BaseException]
    applied: bool
    hits: int = 0

    def matches(self, verb: str, resource: str, sub: str | None, name: str | None,
                namespace: str | None) -> bool:  # fmt: skip
        if self.times is not None and self.hits >= self.times:
            return False
        if self.subresource is not None and self.subresource != (sub or ""):
            return False
        return all(
            want is None or want == got
            for want, got in (
                (self.verb, verb),
                (self.resource, resource),
                (self.name, name),
                (self.namespace, namespace),
            )
        )

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.hits >= self.times


@dataclass(frozen=True)
class WatchEvent:
    """A change a watch would have delivered: ADDED, MODIFIED or DELETED, and the object."""

    type: str
    resource: str
    body: Body


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge key by key, ``None`` removes, anything else replaces."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _plural(res: Any) -> tuple[str, str | None]:
    info = res._api_info
    return str(info.plural), info.action


def _main_class(res: Any) -> Any:
    """The resource class of ``res`` itself, or of its parent when ``res`` is a subresource."""
    info = res._api_info
    if info.parent is None:
        return res
    from lightkube.core.resource_registry import resource_registry

    parent = info.parent
    version = f"{parent.group}/{parent.version}" if parent.group else parent.version
    found = resource_registry.get(version, parent.kind) or resource_registry.load(
        version, parent.kind
    )
    return found if found is not None else res


def _namespaced(res: Any) -> bool:
    return issubclass(res, NamespacedResource)


def _to_dict(obj: Any) -> Body:
    if isinstance(obj, Mapping):
        return copy.deepcopy(dict(obj))
    body: Body = obj.to_dict()
    return copy.deepcopy(body)


def _spec_of(body: Mapping[str, Any]) -> Body:
    """Everything a generation counts: the body without metadata, status and type."""
    skip = ("metadata", "status", "apiVersion", "kind")
    return {k: v for k, v in body.items() if k not in skip}


def _selected(value: str | None, want: Any) -> bool:
    """Whether a label (or field) ``value`` satisfies one term of a lightkube selector."""
    if want is None:
        return value is not None
    if isinstance(want, str):
        return value == want
    if isinstance(want, Operator):
        name = want.op_name
        if name == "exists":
            return value is not None
        if name == "not_exists":
            return value is None
        if name == "equal":
            return bool(value == want.value)
        if name == "not_equal":
            return bool(value != want.value)
        if name == "in_":
            return value in list(want.value)
        if name == "not_in":
            return value not in list(want.value)
        raise ValueError(f"unknown selector operator {name}")
    if isinstance(want, Iterable):
        return value in list(want)
    raise ValueError(f"selector value {want!r}")


def _field(body: Mapping[str, Any], path: str) -> str | None:
    node: Any = body
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return None if node is None else str(node)


class FakeKube:
    """Objects in memory behind lightkube's ``AsyncClient`` interface."""

    def __init__(
        self,
        *,
        allow_reviews: bool | Callable[[Mapping[str, Any]], bool] = True,
        namespace: str = "default",
        status_subresources: Iterable[str] = STATUS_SUBRESOURCES,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.objects: dict[Key, Body] = {}
        self.calls: list[Call] = []
        self.faults: list[Fault] = []
        self.events: list[WatchEvent] = []
        """Every successful write, in order, as a watch would deliver it."""
        self.allow_reviews = allow_reviews
        """The answer to SubjectAccessReviews: a bool, or a function of the review's spec."""
        self.namespace = namespace
        self.status_subresources = frozenset(status_subresources)
        self.clock = clock
        self._versions = itertools.count(1000)
        self._uids = itertools.count(1)
        self._names = itertools.count(1)

    @property
    def client(self) -> AsyncClient:
        """This fake, typed as what the code under test takes."""
        return cast(AsyncClient, self)

    # --- for tests: seeding, faults, inspection --------------------------------------------------

    def add(self, obj: Any) -> Body:
        """Store ``obj`` (a dict with apiVersion/kind, or a lightkube object) as it is,
        status included, filling in uid, resourceVersion, generation; no call recorded."""
        res = codecs.from_dict(_to_dict(obj)) if isinstance(obj, Mapping) else obj
        body = _to_dict(obj)
        plural, _ = _plural(type(res))
        metadata = body.setdefault("metadata", {})
        namespace = metadata.get("namespace") or (
            self.namespace if _namespaced(type(res)) else None
        )
        if namespace is not None:
            metadata["namespace"] = namespace
        metadata.setdefault("uid", f"uid-{next(self._uids)}")
        metadata.setdefault("generation", 1)
        metadata.setdefault("creationTimestamp", self._now())
        metadata["resourceVersion"] = self._next_version()
        self.objects[(plural, namespace, str(metadata["name"]))] = body
        return copy.deepcopy(body)

    def stored(self, res: Any, name: str, namespace: str | None = None) -> Body | None:
        """A copy of the stored object (``res``: a resource class or its plural), or None."""
        plural = res if isinstance(res, str) else _plural(res)[0]
        if namespace is None and (isinstance(res, str) or _namespaced(res)):
            namespace = self.namespace if not isinstance(res, str) else namespace
        body = self.objects.get((plural, namespace, name))
        return copy.deepcopy(body) if body is not None else None

    def body(self, res: Any, name: str, namespace: str | None = None) -> Body:
        """A copy of the stored object, which must exist."""
        found = self.stored(res, name, namespace)
        assert found is not None, f"no {res} {namespace}/{name} stored"
        return found

    def all(self, plural: str, namespace: str | None = None) -> list[Body]:
        """Copies of every stored object of a kind (``events`` too), oldest write first."""
        found = [
            b for (p, ns, _), b in self.objects.items()
            if p == plural and (namespace is None or ns == namespace)
        ]  # fmt: skip
        return [copy.deepcopy(b) for b in found]

    def fail(
        self,
        verb: str | None = None,
        resource: str | None = None,
        *,
        subresource: str | None = None,
        name: str | None = None,
        namespace: str | None = None,
        times: int | None = 1,
        code: int = 500,
        reason: str | None = None,
        message: str | None = None,
        error: BaseException | Callable[[], BaseException] | None = None,
        applied: bool = False,
    ) -> Fault:
        """Make the next ``times`` matching calls (None: every one) fail.

        ``None`` matches anything; ``subresource=""`` matches only the main
        resource. The failure is an API error of ``code`` (and ``reason``), or
        ``error`` (an exception, or a function making one). With ``applied`` the
        request takes effect first and then fails, as when the answer is lost.
        """
        if error is None:
            make: Callable[[], BaseException] = lambda: api_error(code, message, reason)  # noqa: E731
        elif isinstance(error, BaseException):
            instance = error
            make = lambda: instance  # noqa: E731
        else:
            make = error
        fault = Fault(verb, resource, subresource, name, namespace, times, make, applied)
        self.faults.append(fault)
        return fault

    def heal(self) -> None:
        """Remove every injected fault."""
        self.faults.clear()

    def count(
        self,
        verb: str | None = None,
        resource: str | None = None,
        *,
        subresource: str | None = None,
        name: str | None = None,
        namespace: str | None = None,
    ) -> int:
        """How many calls matched (failed ones included); arguments as in :meth:`fail`."""
        return sum(
            1
            for c in self.calls
            if (verb is None or c.verb == verb)
            and (resource is None or c.resource == resource)
            and (subresource is None or (c.subresource or "") == subresource)
            and (name is None or c.name == name)
            and (namespace is None or c.namespace == namespace)
        )

    @property
    def writes(self) -> list[Call]:
        return [c for c in self.calls if c.write]

    def drain_events(self) -> list[WatchEvent]:
        """The watch events queued since the last drain."""
        events, self.events = self.events, []
        return events

    # --- lightkube's AsyncClient ----------------------------------------------------------------

    async def get(self, res: Any, name: str, *, namespace: str | None = None) -> Any:
        plural, sub = _plural(res)
        ns = self._ns(res, namespace)
        call = Call("get", plural, name, ns, sub)

        def run() -> Any:
            return res.from_dict(self._existing(plural, ns, name))

        return await self._call(call, run)

    def list(
        self,
        res: Any,
        *,
        namespace: str | None = None,
        chunk_size: int | None = None,
        labels: Mapping[str, Any] | None = None,
        fields: Mapping[str, Any] | None = None,
    ) -> AsyncIterator[Any]:
        plural, sub = _plural(res)
        ns = None if namespace == "*" else self._ns(res, namespace)
        options = {k: v for k, v in (("labels", labels), ("fields", fields)) if v is not None}
        call = Call("list", plural, None, ns, sub, options=options)

        def run() -> list[Any]:
            found = []
            for (p, obj_ns, _), body in self.objects.items():
                if p != plural or (ns is not None and obj_ns != ns):
                    continue
                obj_labels = (body.get("metadata") or {}).get("labels") or {}
                if not all(_selected(obj_labels.get(k), v) for k, v in (labels or {}).items()):
                    continue
                if not all(_selected(_field(body, k), v) for k, v in (fields or {}).items()):
                    continue
                found.append(res.from_dict(copy.deepcopy(body)))
            return found

        async def items() -> AsyncIterator[Any]:
            for obj in await self._call(call, run):
                yield obj

        return items()

    async def create(
        self,
        obj: Any,
        name: str | None = None,
        *,
        namespace: str | None = None,
        field_manager: str | None = None,
        dry_run: bool = False,
    ) -> Any:
        res = type(obj)
        plural, sub = _plural(res)
        body = _to_dict(obj)
        metadata = body.setdefault("metadata", {})
        ns = self._ns(res, namespace or metadata.get("namespace"))
        if isinstance(obj, SubjectAccessReview):
            call = Call("create", plural, None, None, None, body)
            return await self._call(call, lambda: self._review(body))
        if not metadata.get("name") and metadata.get("generateName"):
            metadata["name"] = f"{metadata['generateName']}{next(self._names):05d}"
        obj_name = str(metadata.get("name") or "")
        options = {"field_manager": field_manager} if field_manager else {}
        call = Call("create", plural, obj_name, ns, sub, copy.deepcopy(body), options)

        def run() -> Any:
            if (plural, ns, obj_name) in self.objects:
                raise api_error(
                    409, f'{plural} "{obj_name}" already exists', "AlreadyExists", method="POST"
                )
            if ns is not None:
                metadata["namespace"] = ns
            metadata.pop("resourceVersion", None)
            metadata["uid"] = f"uid-{next(self._uids)}"
            metadata["generation"] = 1
            metadata["creationTimestamp"] = self._now()
            if plural in self.status_subresources:
                body.pop("status", None)
            return res.from_dict(self._store("ADDED", plural, ns, obj_name, body))

        return await self._call(call, run)

    async def patch(
        self,
        res: Any,
        name: str,
        obj: Any,
        *,
        namespace: str | None = None,
        patch_type: PatchType = PatchType.STRATEGIC,
        field_manager: str | None = None,
        force: bool = False,
        dry_run: bool = False,
    ) -> Any:
        plural, sub = _plural(res)
        ns = self._ns(res, namespace)
        patch = _to_dict(obj)
        options: dict[str, Any] = {"patch_type": patch_type}
        if field_manager is not None:
            options["field_manager"] = field_manager
        if force:
            options["force"] = force
        call = Call("patch", plural, name, ns, sub, copy.deepcopy(patch), options)

        def run() -> Any:
            if patch_type is PatchType.JSON:
                raise NotImplementedError("FakeKube does not do JSON patches")
            current = self._existing(plural, ns, name)
            self._precondition(current, patch)
            merged = merge_patch(current, patch)
            return res.from_dict(self._update(plural, ns, name, current, merged, sub))

        return await self._call(call, run)

    async def replace(
        self,
        obj: Any,
        name: str | None = None,
        *,
        namespace: str | None = None,
        field_manager: str | None = None,
        dry_run: bool = False,
    ) -> Any:
        res = type(obj)
        plural, sub = _plural(res)
        body = _to_dict(obj)
        metadata = body.setdefault("metadata", {})
        ns = self._ns(res, namespace or metadata.get("namespace"))
        obj_name = str(name or metadata.get("name") or "")
        call = Call("replace", plural, obj_name, ns, sub, copy.deepcopy(body))

        def run() -> Any:
            current = self._existing(plural, ns, obj_name)
            self._precondition(current, body)
            return res.from_dict(self._update(plural, ns, obj_name, current, body, sub))

        return await self._call(call, run)

    async def apply(
        self,
        obj: Any,
        name: str | None = None,
        *,
        namespace: str | None = None,
        field_manager: str | None = None,
        force: bool = False,
        dry_run: bool = False,
    ) -> Any:
        """A server-side apply: here a merge patch of the existing object."""
        body = _to_dict(obj)
        metadata = body.get("metadata") or {}
        return await self.patch(
            type(obj),
            str(name or metadata.get("name") or ""),
            body,
            namespace=namespace or metadata.get("namespace"),
            patch_type=PatchType.APPLY,
            field_manager=field_manager,
            force=force,
        )

    async def delete(
        self,
        res: Any,
        name: str,
        *,
        namespace: str | None = None,
        grace_period: int | None = None,
        cascade: Any = None,
        dry_run: bool = False,
    ) -> None:
        plural, sub = _plural(res)
        ns = self._ns(res, namespace)
        options = {"cascade": cascade} if cascade is not None else {}
        call = Call("delete", plural, name, ns, sub, options=options)

        def run() -> None:
            body = self._existing(plural, ns, name)
            del self.objects[(plural, ns, name)]
            body["metadata"]["resourceVersion"] = self._next_version()
            self.events.append(WatchEvent("DELETED", plural, body))

        await self._call(call, run)

    async def close(self) -> None:
        return None

    # --- the server's side ---------------------------------------------------------------------

    async def _call(self, call: Call, run: Callable[[], Any]) -> Any:
        await asyncio.sleep(0)  # an API call yields to the event loop, as real I/O does
        fault = next(
            (
                f
                for f in self.faults
                if f.matches(call.verb, call.resource, call.subresource, call.name, call.namespace)
            ),
            None,
        )
        if fault is not None:
            fault.hits += 1
            if fault.exhausted:
                self.faults.remove(fault)
            error = fault.error()
            if fault.applied:  # the request took effect; the caller sees only the error
                with contextlib.suppress(BaseException):
                    run()
            self.calls.append(_with_error(call, error))
            raise error
        try:
            result = run()
        except BaseException as exc:
            self.calls.append(_with_error(call, exc))
            raise
        self.calls.append(call)
        return result

    def _ns(self, res: Any, namespace: str | None) -> str | None:
        if not _namespaced(_main_class(res)):
            return None
        return namespace or self.namespace

    def _existing(self, plural: str, namespace: str | None, name: str) -> Body:
        body = self.objects.get((plural, namespace, name))
        if body is None:
            where = f" in namespace {namespace}" if namespace else ""
            raise api_error(404, f'{plural} "{name}" not found{where}')
        return copy.deepcopy(body)

    @staticmethod
    def _precondition(current: Mapping[str, Any], write: Mapping[str, Any]) -> None:
        wanted = (write.get("metadata") or {}).get("resourceVersion")
        have = current["metadata"]["resourceVersion"]
        if wanted and str(wanted) != have:
            name = current["metadata"].get("name")
            raise api_error(
                409,
                f'Operation cannot be fulfilled on "{name}": the object has been modified; '
                "please apply your changes to the latest version and try again",
                method="PATCH",
            )

    def _update(
        self,
        plural: str,
        namespace: str | None,
        name: str,
        current: Body,
        new: Body,
        subresource: str | None,
    ) -> Body:
        """Store ``new`` as the next version of ``current``, as the endpoint written allows."""
        if subresource == "status":
            result = copy.deepcopy(current)
            if "status" in new:
                result["status"] = copy.deepcopy(new["status"])
            else:
                result.pop("status", None)
        else:
            result = copy.deepcopy(dict(new))
            kept = ("uid", "creationTimestamp", "generation", "namespace", "name")
            result["metadata"] = {
                **dict(new.get("metadata") or {}),
                **{k: current["metadata"][k] for k in kept if k in current["metadata"]},
            }
            if plural in self.status_subresources:
                if "status" in current:
                    result["status"] = copy.deepcopy(current["status"])
                else:
                    result.pop("status", None)
            if _spec_of(result) != _spec_of(current):
                result["metadata"]["generation"] = (
                    int(current["metadata"].get("generation") or 0) + 1
                )
        return self._store("MODIFIED", plural, namespace, name, result)

    def _store(self, event: str, plural: str, namespace: str | None, name: str, body: Body) -> Body:
        body["metadata"]["resourceVersion"] = self._next_version()
        self.objects[(plural, namespace, name)] = body
        self.events.append(WatchEvent(event, plural, copy.deepcopy(body)))
        return copy.deepcopy(body)

    def _review(self, body: Body) -> SubjectAccessReview:
        spec = body.get("spec") or {}
        allowed = self.allow_reviews(spec) if callable(self.allow_reviews) else self.allow_reviews
        answer = {**body, "status": {"allowed": bool(allowed)}}
        return cast(SubjectAccessReview, SubjectAccessReview.from_dict(answer))

    def _next_version(self) -> str:
        return str(next(self._versions))

    def _now(self) -> str:
        return self.clock().strftime("%Y-%m-%dT%H:%M:%SZ")


def _with_error(call: Call, error: BaseException) -> Call:
    return dataclasses.replace(call, error=error)


# --- driving work queues in tests ----------------------------------------------------------


def fast(*queues: WorkQueue[Any]) -> None:
    """Retry failures within milliseconds (the backoff's shape is tested on its own)."""
    for queue in queues:
        queue.backoff = Backoff(base=0.002, max_delay=0.02)


@contextlib.asynccontextmanager
async def running(queue: WorkQueue[Any]) -> AsyncIterator[WorkQueue[Any]]:
    """Run ``queue``'s dispatch loop for the block (controllers that start it themselves
    on first use need no such block)."""
    queue.start()
    try:
        yield queue
    finally:
        await queue.stop()


async def converged(*queues: WorkQueue[Any], timeout: float = 5.0) -> None:  # noqa: ASYNC109
    """Wait until no key of ``queues`` is due now, running, or waiting to be retried."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        for queue in queues:
            await asyncio.wait_for(queue.settle(), timeout)
        if not any(queue.failures for queue in queues):
            for queue in queues:  # one more pass: a delivery may have queued more work
                await asyncio.wait_for(queue.settle(), timeout)
            if not any(queue.failures for queue in queues):
                return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"still failing: {[dict(q.failures) for q in queues]}")
        await asyncio.sleep(0.005)
