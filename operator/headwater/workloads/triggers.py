"""Image triggers on workloads: the ``image.openshift.io/triggers`` annotation (pure).

A Deployment, StatefulSet, DaemonSet, CronJob or Job may carry a JSON list of
triggers, each naming an ImageStreamTag and the container image field it
feeds::

    [{"from": {"kind": "ImageStreamTag", "name": "web:latest", "namespace": "shop"},
      "fieldPath": "spec.template.spec.containers[?(@.name==\\"web\\")].image",
      "paused": false}]

The grammar is OpenShift's (openshift/library-go ``pkg/image/trigger``): the
field path is the kind's pod spec path, then ``containers[...]`` or
``initContainers[...]`` with an index (``[0]``) or an exact name selector
(``[?(@.name=="web")]``), then ``.image``; duplicate field paths are invalid.
Where OpenShift silently skips a path it does not understand, Headwater
refuses the whole annotation with a message saying what is wrong. ``paused``
may also be the string ``"true"``/``"false"``, as many published examples
write it; unknown keys are ignored, as Go's JSON decoding does.

Nothing here talks to Kubernetes: the caller hands in the workload and a
look-up of the tags' current images, and gets back what to change and the
server-side apply body that changes exactly that.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from headwater.documents import DocumentError, Limits, check_shape
from headwater.imports.lookup import POD_SPEC_PATHS, pod_spec
from headwater.imports.model import STREAM_NAME_PATTERN
from headwater.imports.tagfeed import TagImage
from headwater.imports.verification import PolicyError, parse_keys
from headwater.registry.reference import TAG_PATTERN

ANNOTATION_HEADWATER = "image.headwater.dev/triggers"
ANNOTATION_OPENSHIFT = "image.openshift.io/triggers"
TRIGGER_ANNOTATIONS = (ANNOTATION_HEADWATER, ANNOTATION_OPENSHIFT)
"""Both keys are read; when a workload carries both, Headwater's own wins (first here)."""
FIELD_MANAGER = "headwater-triggers"
"""The server-side apply field manager that owns the image fields triggers set."""
MAX_ANNOTATION_BYTES = 64 * 1024
MAX_TRIGGERS = 64
ANNOTATION_LIMITS = Limits(max_bytes=MAX_ANNOTATION_BYTES, max_nodes=4096, max_depth=8)
"""64 triggers of a few values each: from, fieldPath, paused."""

Key = tuple[str, str, str]
Lookup = Callable[[str, str, str], TagImage | None]
Gate = Callable[["ImageTrigger", TagImage], str | None]
"""Why this trigger may not roll out this image (it does not verify), or None."""


@dataclass(frozen=True)
class WorkloadKind:
    """A kind the annotation works on, and where its pod spec is."""

    group: str
    version: str
    kind: str
    plural: str
    immutable_template: bool = False
    """A Job's pod template cannot change once the Job exists."""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"

    @property
    def pod_spec_path(self) -> tuple[str, ...]:
        return tuple(POD_SPEC_PATHS[self.kind])

    @property
    def field_prefix(self) -> str:
        return ".".join(self.pod_spec_path) + "."


WORKLOAD_KINDS: Mapping[str, WorkloadKind] = {
    k.kind: k
    for k in (
        WorkloadKind("apps", "v1", "Deployment", "deployments"),
        WorkloadKind("apps", "v1", "StatefulSet", "statefulsets"),
        WorkloadKind("apps", "v1", "DaemonSet", "daemonsets"),
        WorkloadKind("batch", "v1", "CronJob", "cronjobs"),
        WorkloadKind("batch", "v1", "Job", "jobs", immutable_template=True),
    )
}


class TriggerError(ValueError):
    """The annotation (or what it points at in the workload) is not usable; the message says why."""


@dataclass(frozen=True)
class ImageTrigger:
    """One entry of the annotation."""

    namespace: str
    """The source stream's namespace (the workload's when ``from.namespace`` is absent)."""
    stream: str
    tag: str
    field_path: str
    init: bool
    """The container is one of ``initContainers``."""
    name: str | None
    """The container named by ``[?(@.name=="...")]``, else None."""
    index: int | None
    """The container at ``[N]``, else None."""
    paused: bool = False
    verify_keys: tuple[str, ...] = ()
    """``"verify": {"keys": [...]}``: roll out only images signed by one of these keys."""

    @property
    def key(self) -> Key:
        return (self.namespace, self.stream, self.tag)

    @property
    def source(self) -> str:
        return f"{self.namespace}/{self.stream}:{self.tag}"


@dataclass(frozen=True)
class ImageChange:
    """A container image the triggers want different from what the workload has."""

    container: str
    init: bool
    old: str
    new: str
    trigger: ImageTrigger


@dataclass(frozen=True)
class Plan:
    """What converging a workload to its triggers' tags takes."""

    changes: tuple[ImageChange, ...] = ()
    waiting: tuple[ImageTrigger, ...] = ()
    """Unpaused triggers whose tag has no image (yet): left alone until it has one."""
    apply: Mapping[str, Any] | None = None
    """The server-side apply body; None when there is nothing to write."""
    blocked: str | None = None
    """Why ``changes`` cannot be written (a Job's template is immutable)."""
    unverified: tuple[tuple[ImageTrigger, TagImage, str], ...] = ()
    """Images a trigger would roll out but may not (they do not verify), and why:
    the container keeps its image."""


_STREAM_TAG = re.compile(rf"^(?P<stream>{STREAM_NAME_PATTERN}):(?P<tag>{TAG_PATTERN})$")
_NAMESPACE = re.compile(r"^[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?$")
_CONTAINER = re.compile(
    r"^(?P<list>containers|initContainers)\[(?P<selector>[^\]]*)\](?P<rest>.*)$"
)
_NAME_SELECTOR = re.compile(r'^\?\(@\.name=="(?P<name>[^"]+)"\)$')


def trigger_annotation(body: Mapping[str, Any]) -> tuple[str, str] | None:
    """The annotation key in force on ``body`` and its value, if any."""
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    for key in TRIGGER_ANNOTATIONS:
        if key in annotations:
            return key, str(annotations[key] or "")
    return None


def parse_field_path(path: str, kind: str) -> tuple[bool, str | None, int | None]:
    """``(init, name, index)`` of the container a field path names in a ``kind``."""
    workload = _workload_kind(kind)
    prefix = workload.field_prefix
    example = f'{prefix}containers[?(@.name=="web")].image'
    if not path.startswith(prefix):
        raise TriggerError(
            f"fieldPath {path!r}: a {kind}'s containers are under {prefix}, e.g. {example}"
        )
    match = _CONTAINER.match(path[len(prefix) :])
    if match is None:
        raise TriggerError(
            f"fieldPath {path!r}: expected {prefix}containers[...].image or"
            f" {prefix}initContainers[...].image"
        )
    if match["rest"] != ".image":
        raise TriggerError(
            f"fieldPath {path!r}: only a container's image can be set (the path must end in .image)"
        )
    selector = match["selector"]
    init = match["list"] == "initContainers"
    if selector.isascii() and selector.isdigit():
        return init, None, int(selector)
    named = _NAME_SELECTOR.match(selector)
    if named is None:
        raise TriggerError(
            f"fieldPath {path!r}: the container selector {selector!r} must be an index like"
            f' [0] or a name like [?(@.name=="web")]'
        )
    return init, named["name"], None


def parse_triggers(value: str, kind: str, namespace: str) -> tuple[ImageTrigger, ...]:
    """The triggers of an annotation on a ``kind`` in ``namespace``; TriggerError if invalid."""
    _workload_kind(kind)
    size = len(value.encode())
    if size > MAX_ANNOTATION_BYTES:
        raise TriggerError(f"the annotation is {size} bytes; at most {MAX_ANNOTATION_BYTES}")
    if not value.strip():
        return ()
    try:
        entries = json.loads(value)
    except json.JSONDecodeError as exc:
        raise TriggerError(
            f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except (ValueError, RecursionError):
        raise TriggerError("not valid JSON: nested too deeply or a number too long") from None
    try:
        check_shape(entries, ANNOTATION_LIMITS, "the annotation")
    except DocumentError as exc:
        raise TriggerError(str(exc)) from None
    if entries is None:
        return ()
    if not isinstance(entries, list):
        raise TriggerError("must be a JSON array of triggers")
    if len(entries) > MAX_TRIGGERS:
        raise TriggerError(f"{len(entries)} triggers; at most {MAX_TRIGGERS}")
    triggers: list[ImageTrigger] = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(entries):
        trigger = _parse_entry(i, entry, kind, namespace)
        if trigger.field_path in seen:
            raise TriggerError(
                f"[{i}].fieldPath: duplicate of [{seen[trigger.field_path]}].fieldPath"
                f" ({trigger.field_path})"
            )
        seen[trigger.field_path] = i
        triggers.append(trigger)
    return tuple(triggers)


def _parse_entry(i: int, entry: Any, kind: str, namespace: str) -> ImageTrigger:
    if not isinstance(entry, dict):
        raise TriggerError(f"[{i}]: must be an object with from and fieldPath")
    source = entry.get("from")
    if not isinstance(source, dict):
        raise TriggerError(f"[{i}].from: required, an object with kind and name")
    source_kind = source.get("kind")
    if source_kind != "ImageStreamTag":
        shown = "missing" if source_kind is None else repr(source_kind)
        raise TriggerError(f"[{i}].from.kind: {shown}; only ImageStreamTag is supported")
    name = source.get("name")
    match = _STREAM_TAG.match(name) if isinstance(name, str) else None
    if match is None:
        raise TriggerError(f"[{i}].from.name: {name!r} is not <stream>:<tag>")
    source_namespace = source.get("namespace") or namespace
    if not isinstance(source_namespace, str) or not _NAMESPACE.match(source_namespace):
        raise TriggerError(f"[{i}].from.namespace: {source_namespace!r} is not a namespace name")
    path = entry.get("fieldPath")
    if not isinstance(path, str) or not path:
        raise TriggerError(f"[{i}].fieldPath: required, a string")
    try:
        init, container, index = parse_field_path(path, kind)
    except TriggerError as exc:
        raise TriggerError(f"[{i}].{exc}") from None
    return ImageTrigger(
        namespace=source_namespace,
        stream=match["stream"],
        tag=match["tag"],
        field_path=path,
        init=init,
        name=container,
        index=index,
        paused=_parse_paused(i, entry.get("paused", False)),
        verify_keys=_parse_verify(i, entry.get("verify")),
    )


def _parse_verify(i: int, value: Any) -> tuple[str, ...]:
    """``"verify": {"keys": ["headwater"]}``: the keys a rolled-out image must be signed by."""
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise TriggerError(f'[{i}].verify: expected an object like {{"keys": ["headwater"]}}')
    unknown = sorted(set(value) - {"keys"})
    if unknown:
        raise TriggerError(f"[{i}].verify: unknown field(s) {', '.join(unknown)}; known: keys")
    try:
        return parse_keys(value.get("keys"), f"[{i}].verify.keys")
    except PolicyError as exc:
        raise TriggerError(str(exc)) from None


def _parse_paused(i: int, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise TriggerError(f"[{i}].paused: {value!r}; expected true or false")


def _workload_kind(kind: str) -> WorkloadKind:
    found = WORKLOAD_KINDS.get(kind)
    if found is None:
        raise TriggerError(
            f"image triggers are not supported on a {kind or 'object without a kind'};"
            f" only on {', '.join(WORKLOAD_KINDS)}"
        )
    return found


def _containers(spec: Mapping[str, Any], init: bool) -> list[Mapping[str, Any]]:
    found = spec.get("initContainers" if init else "containers") or []
    return [c for c in found if isinstance(c, Mapping)]


def container_name(trigger: ImageTrigger, spec: Mapping[str, Any]) -> str:
    """The name of the container ``trigger`` sets in this pod spec; TriggerError if none."""
    containers = _containers(spec, trigger.init)
    what = "initContainers" if trigger.init else "containers"
    if trigger.index is not None:
        if trigger.index >= len(containers):
            raise TriggerError(
                f"{trigger.field_path}: no container at index {trigger.index}"
                f" ({len(containers)} {what})"
            )
        return str(containers[trigger.index].get("name") or "")
    if not any(c.get("name") == trigger.name for c in containers):
        raise TriggerError(f"{trigger.field_path}: no {what} entry named {trigger.name!r}")
    return str(trigger.name)


def owned_images(body: Mapping[str, Any], manager: str = FIELD_MANAGER) -> set[tuple[bool, str]]:
    """``(init, name)`` of the containers whose image ``manager`` owns by server-side apply."""
    kind = WORKLOAD_KINDS.get(str(body.get("kind")))
    if kind is None:
        return set()
    owned: set[tuple[bool, str]] = set()
    for entry in (body.get("metadata") or {}).get("managedFields") or []:
        if entry.get("manager") != manager or entry.get("operation") != "Apply":
            continue
        if entry.get("subresource"):
            continue
        node: Any = entry.get("fieldsV1") or {}
        for key in kind.pod_spec_path:
            node = node.get(f"f:{key}") if isinstance(node, Mapping) else None
        if not isinstance(node, Mapping):
            continue
        for init, field in ((False, "containers"), (True, "initContainers")):
            for item, fields in (node.get(f"f:{field}") or {}).items():
                if not item.startswith("k:") or not isinstance(fields, Mapping):
                    continue
                if "f:image" not in fields:
                    continue
                try:
                    item_key = json.loads(item[2:])
                except ValueError:
                    continue
                if isinstance(item_key, dict) and isinstance(item_key.get("name"), str):
                    owned.add((init, item_key["name"]))
    return owned


def plan_workload(
    body: Mapping[str, Any],
    triggers: Iterable[ImageTrigger],
    lookup: Lookup,
    manager: str = FIELD_MANAGER,
    gate: Gate | None = None,
) -> Plan:
    """What it takes to give ``body``'s containers their triggers' current images.

    Paused triggers are skipped. A trigger whose tag has no image yet waits.
    When every image already matches, the plan has no body: no write, so no
    rollout and no watch event that would bring the workload back here.
    ``gate`` refuses images that do not verify: such a container keeps its image
    (the plan lists it in ``unverified``), the others roll out.
    """
    kind = _workload_kind(str(body.get("kind") or ""))
    spec = pod_spec(kind.kind, body) or {}
    targets: dict[tuple[bool, str], ImageTrigger] = {}
    desired: dict[tuple[bool, str], tuple[str, ImageTrigger]] = {}
    waiting: list[ImageTrigger] = []
    for trigger in triggers:
        if trigger.paused:
            continue
        target = (trigger.init, container_name(trigger, spec))
        other = targets.get(target)
        if other is not None:
            raise TriggerError(
                f"{other.field_path} and {trigger.field_path} both set the image of"
                f" container {target[1]!r}"
            )
        targets[target] = trigger
        found = lookup(trigger.namespace, trigger.stream, trigger.tag)
        if found is None:
            waiting.append(trigger)
            continue
        desired[target] = (found.pull_spec, trigger)
    current = {
        (init, str(c.get("name"))): str(c.get("image") or "")
        for init in (False, True)
        for c in _containers(spec, init)
    }
    unverified: list[tuple[ImageTrigger, TagImage, str]] = []
    if gate is not None:
        for target, (image, trigger) in list(desired.items()):
            if current.get(target) == image:
                continue
            found = lookup(trigger.namespace, trigger.stream, trigger.tag)
            why = gate(trigger, found) if found is not None else None
            if why is not None and found is not None:
                unverified.append((trigger, found, why))
                del desired[target]
    changes = tuple(
        ImageChange(name, init, current.get((init, name), ""), image, trigger)
        for (init, name), (image, trigger) in desired.items()
        if current.get((init, name)) != image
    )
    if not changes:
        return Plan(waiting=tuple(waiting), unverified=tuple(unverified))
    if kind.immutable_template:
        return Plan(
            changes=changes,
            waiting=tuple(waiting),
            unverified=tuple(unverified),
            blocked=(
                "a Job's pod template cannot change once the Job exists; create Jobs with"
                " the image already resolved (e.g. through lookupPolicy.local) or use a CronJob"
            ),
        )
    return Plan(
        changes=changes,
        waiting=tuple(waiting),
        unverified=tuple(unverified),
        apply=apply_body(body, {k: v[0] for k, v in desired.items()}, current, manager),
    )


def apply_body(
    body: Mapping[str, Any],
    images: Mapping[tuple[bool, str], str],
    current: Mapping[tuple[bool, str], str],
    manager: str = FIELD_MANAGER,
) -> dict[str, Any]:
    """The server-side apply body setting ``images`` (and nothing but image fields).

    Containers are a list keyed by name, so each entry is just ``name`` and
    ``image``. Server-side apply removes a field its manager applied before
    and leaves out now (when no other manager has it), and a container
    without an image is invalid: so images this manager owns but does not
    set now (a paused trigger, a tag gone) are applied again at their current
    value, keeping them as they are.
    """
    kind = _workload_kind(str(body.get("kind") or ""))
    spec = pod_spec(kind.kind, body) or {}
    wanted = dict(images)
    for target in owned_images(body, manager):
        if target not in wanted and target in current:
            wanted[target] = current[target]
    lists: dict[str, list[dict[str, str]]] = {}
    for init, field in ((True, "initContainers"), (False, "containers")):
        # In the workload's own order, so the body is the same for the same state.
        entries = [
            {"name": str(c.get("name")), "image": wanted[(init, str(c.get("name")))]}
            for c in _containers(spec, init)
            if (init, str(c.get("name"))) in wanted
        ]
        if entries:
            lists[field] = entries
    metadata = body.get("metadata") or {}
    node: dict[str, Any] = lists
    for key in reversed(kind.pod_spec_path):
        node = {key: node}
    return {
        "apiVersion": kind.api_version,
        "kind": kind.kind,
        "metadata": {"name": metadata.get("name"), "namespace": metadata.get("namespace")},
        **node,
    }
