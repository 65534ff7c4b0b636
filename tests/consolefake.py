"""A :class:`headwater.console.source.Source` over plain dicts, for the console's unit tests.

Objects are kept per (kind, namespace); a list can be made to fail (an ApiError of
any code, or any exception); watches deliver what :meth:`FakeSource.emit` sends.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from lightkube.core.exceptions import ApiError
from lightkube.models.meta_v1 import Status

from headwater.builds.model import ANNOTATION_BUILDCONFIG, ANNOTATION_NUMBER, LABEL_BUILDCONFIG
from headwater.console.source import Kind


def api_error(code: int, reason: str, message: str) -> ApiError:
    return ApiError(status=Status(code=code, reason=reason, message=message))


class FakeSource:
    def __init__(self, namespace: str = "shop") -> None:
        self.default_namespace = namespace
        self.objects: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        self.failures: dict[str, BaseException] = {}
        self.lists: list[tuple[str, str | None]] = []
        self.gets: list[tuple[str, str]] = []
        self.watching: dict[tuple[str, str], int] = defaultdict(int)
        self.queues: dict[tuple[str, str], list[asyncio.Queue[Any]]] = defaultdict(list)
        self.client: Any = None

    def add(self, kind: str, namespace: str, *objs: dict[str, Any]) -> None:
        self.objects[(kind, namespace)].extend(objs)

    async def list(
        self, kind: Kind, namespace: str | None, labels: Mapping[str, str] | None = None
    ) -> tuple[list[dict[str, Any]], str]:
        self.lists.append((kind.key, namespace))
        failure = self.failures.get(kind.key)
        if failure is not None:
            raise failure
        found = list(self.objects[(kind.key, namespace or "")])
        if labels:
            found = [
                o
                for o in found
                if all(
                    ((o.get("metadata") or {}).get("labels") or {}).get(k) == v
                    for k, v in labels.items()
                )
            ]
        return found, "1"

    async def get(self, kind: Kind, name: str, namespace: str | None) -> dict[str, Any]:
        self.gets.append((kind.key, name))
        failure = self.failures.get(kind.key)
        if failure is not None:
            raise failure
        for obj in self.objects[(kind.key, namespace or "")]:
            if obj["metadata"]["name"] == name:
                return obj
        raise api_error(404, "NotFound", f'{kind.key} "{name}" not found')

    async def watch(
        self, kind: Kind, namespace: str, resource_version: str
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        key = (kind.key, namespace)
        self.queues[key].append(queue)
        self.watching[key] += 1
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.watching[key] -= 1
            self.queues[key].remove(queue)

    def emit(self, kind: str, namespace: str, event: str, obj: dict[str, Any]) -> None:
        for queue in self.queues[(kind, namespace)]:
            queue.put_nowait((event, obj))

    def fail_watch(self, kind: str, namespace: str, error: BaseException) -> None:
        for queue in self.queues[(kind, namespace)]:
            queue.put_nowait(error)

    def sync_client(self) -> Any:
        return self.client


NOW = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def stream(name: str, namespace: str = "shop", tags: int = 2) -> dict[str, Any]:
    items = []
    for n in range(tags):
        items.append(
            {
                "tag": f"v{n}",
                "items": [
                    {
                        "created": stamp(NOW - timedelta(minutes=n + 1)),
                        "dockerImageReference": f"registry.example/{name}@sha256:{n:064x}",
                        "image": f"sha256:{n:064x}",
                        "generation": 1,
                    }
                ],
            }
        )
    return {
        "apiVersion": "image.headwater.dev/v1",
        "kind": "ImageStream",
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-is-{name}"},
        "spec": {
            "tags": [
                {"name": f"v{n}", "from": {"kind": "DockerImage", "name": f"r/{name}:v{n}"}}
                for n in range(tags)
            ]
        },
        "status": {"dockerImageRepository": f"registry.local/{namespace}/{name}", "tags": items},
    }


def buildconfig(name: str, namespace: str = "shop", last: int = 0) -> dict[str, Any]:
    return {
        "apiVersion": "build.headwater.dev/v1",
        "kind": "BuildConfig",
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-bc-{name}"},
        "spec": {
            "source": {"type": "Git", "git": {"uri": "https://git.example/x.git", "ref": "main"}},
            "strategy": {"type": "Docker", "dockerStrategy": {}},
            "output": {"to": {"kind": "ImageStreamTag", "name": f"{name}:latest"}},
            "triggers": [{"type": "ImageChange", "imageChange": {}}],
        },
        "status": {"lastVersion": last},
    }


def build(
    bc: str, number: int, phase: str = "Complete", namespace: str = "shop", minutes_ago: int = 10
) -> dict[str, Any]:
    start = NOW - timedelta(minutes=minutes_ago)
    status: dict[str, Any] = {"phase": phase, "startTimestamp": stamp(start)}
    if phase in ("Complete", "Failed", "Error", "Cancelled"):
        status["completionTimestamp"] = stamp(start + timedelta(seconds=75))
    if phase == "Failed":
        status["reason"] = "DockerBuildFailed"
        status["message"] = "Docker build strategy has failed."
        status["logSnippet"] = "step 3/5: RUN make\nmake: *** [all] Error 2"
    return {
        "apiVersion": "build.headwater.dev/v1",
        "kind": "Build",
        "metadata": {
            "name": f"{bc}-{number}",
            "namespace": namespace,
            "uid": f"uid-b-{bc}-{number}",
            "creationTimestamp": stamp(start),
            "labels": {LABEL_BUILDCONFIG: bc},
            "annotations": {ANNOTATION_BUILDCONFIG: bc, ANNOTATION_NUMBER: str(number)},
        },
        "spec": {
            "source": {"type": "Git", "git": {"uri": "https://git.example/x.git"}},
            "strategy": {"type": "Docker"},
        },
        "status": status,
    }


class FakeSyncClient:
    """The synchronous lightkube client the CLI functions use, over plain dicts: ``get``
    answers from ``objects`` (by resource kind and name), ``apply`` and ``patch`` are
    recorded (and refused with ``refuse``, an ApiError)."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.applied: list[tuple[dict[str, Any], str]] = []
        self.patched: list[tuple[str, str, dict[str, Any]]] = []
        self.refuse: BaseException | None = None

    def add(self, obj: dict[str, Any]) -> None:
        self.objects[(obj["kind"], obj["metadata"]["name"])] = obj

    def get(self, resource: Any, name: str, namespace: str | None = None) -> dict[str, Any]:
        kind = resource._api_info.resource.kind
        try:
            return self.objects[(kind, name)]
        except KeyError:
            raise api_error(404, "NotFound", f'{kind} "{name}" not found') from None

    def apply(self, obj: Any, namespace: str | None = None, field_manager: str = "",
              force: bool = False) -> Any:  # fmt: skip
        from types import SimpleNamespace

        if self.refuse is not None:
            raise self.refuse
        self.applied.append((obj.to_dict(), field_manager))
        return SimpleNamespace(metadata=SimpleNamespace(generation=2))

    def patch(self, resource: Any, name: str, patch: dict[str, Any], **kwargs: Any) -> Any:
        if self.refuse is not None:
            raise self.refuse
        self.patched.append((resource._api_info.resource.kind, name, patch))
        return None
