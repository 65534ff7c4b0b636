"""``set triggers`` (pure): read, edit and print the triggers of BuildConfigs and workloads.

BuildConfigs keep triggers in ``spec.triggers``; Deployments, StatefulSets,
DaemonSets, CronJobs and Jobs in the ``image.openshift.io/triggers``
annotation (``image.headwater.dev/triggers`` when a workload already uses
that key), a JSON list written exactly as ``oc set triggers`` writes it: Go's
``json.Marshal`` of library-go's ``ObjectFieldTrigger``, so compact, keys in
the order from, fieldPath, paused, the namespace only when it differs from
the workload's, and ``paused`` only when true (``omitempty``)::

    [{"from":{"kind":"ImageStreamTag","name":"web:latest"},
      "fieldPath":"spec.template.spec.containers[?(@.name==\\"web\\")].image"}]

Where Headwater differs from oc, on purpose:

- ``--auto``/``--manual`` without a trigger type pause or resume image
  triggers (BuildConfig ``imageChange.paused``, annotation ``paused``); oc
  also removes or adds a BuildConfig's ConfigChange trigger and pauses a
  Deployment's rollout, which surprises more than it helps.
- ``--manual --from-image`` on a BuildConfig keeps the trigger, paused; oc
  drops it (its BuildConfig API had no ``paused`` then).
- Webhook triggers reference a new Secret (key ``WebHookSecretKey``) instead
  of an inline secret, which OpenShift deprecated.
- ``--from-image`` on a workload with a single container needs no ``-c``;
  init containers get an ``initContainers[...]`` path.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from headwater.builds.model import LABEL_BUILDCONFIG, label_value
from headwater.cli.tags import TagError, missing_tag_message, parse_stream_tag, tag_names
from headwater.imports.lookup import POD_SPEC_PATHS
from headwater.workloads.triggers import (
    ANNOTATION_OPENSHIFT,
    TRIGGER_ANNOTATIONS,
)

# Key and annotation names, not secrets.
WEBHOOK_SECRET_KEY = "WebHookSecretKey"  # noqa: S105
SECRET_MADE_FOR = "build.headwater.dev/webhook-secret-for"  # noqa: S105
"""On Secrets ``set triggers`` made: the BuildConfig's name; ``--remove`` deletes only these."""

WEBHOOK_BLOCKS = {
    "GitHub": "github",
    "GitLab": "gitlab",
    "Bitbucket": "bitbucket",
    "Generic": "generic",
}
"""Trigger type -> the block that carries it."""

_FIELD_PATH = re.compile(
    r"(?P<list>initContainers|containers)\[(?:\?\(@\.name==(?P<q>[\"'])(?P<name>.+?)(?P=q)\)"
    r"|(?P<index>\d+))\]\.image$"
)

Row = tuple[str, str, str]
"""TYPE, VALUE, AUTO."""


class TriggerError(ValueError):
    """A bad request; the message is the one line the CLI prints."""


@dataclass(frozen=True)
class ImageRef:
    """``--from-image``: an ImageStreamTag; namespace "" means the object's own."""

    namespace: str
    name: str

    def matches(self, ref: Mapping[str, Any] | None, own_namespace: str) -> bool:
        if not ref or ref.get("kind", "ImageStreamTag") != "ImageStreamTag":
            return False
        theirs = str(ref.get("namespace") or own_namespace)
        return ref.get("name") == self.name and theirs == (self.namespace or own_namespace)

    def reference(self, own_namespace: str) -> dict[str, str]:
        """The ObjectReference, namespace only when it is another one (as oc writes it)."""
        ref = {"kind": "ImageStreamTag", "name": self.name}
        if self.namespace and self.namespace != own_namespace:
            ref["namespace"] = self.namespace
        return ref


def missing_image(
    ref: ImageRef, stream: Mapping[str, Any] | None, own_namespace: str
) -> str | None:
    """What ``--from-image`` names that does not exist (a typo?), or None.

    ``stream`` is the ImageStream read, None when it does not exist. The trigger
    is written anyway, as oc does: it fires once the tag exists and has an image.
    """
    namespace = ref.namespace or own_namespace
    stream_name, _, tag = ref.name.partition(":")
    later = "the trigger is written, and fires only once it exists and has an image"
    if stream is None:
        return f"imagestream {namespace}/{stream_name} does not exist: {later}"
    if tag not in tag_names(stream):
        return f"{missing_tag_message(f'{namespace}/{ref.name}', stream, tag)}: {later}"
    return None


def parse_image(text: str) -> ImageRef:
    """``[namespace/]stream:tag``; registries, digests and missing tags are refused, as oc does."""
    try:
        tag = parse_stream_tag(text, "")
    except TagError:
        raise TriggerError(
            f"--from-image {text!r}: expected an ImageStreamTag, [namespace/]stream:tag"
        ) from None
    return ImageRef(tag.namespace, str(tag))


@dataclass(frozen=True)
class TriggerOptions:
    """The flags of ``set triggers``, checked by :func:`make_options`."""

    from_config: bool = False
    from_image: ImageRef | None = None
    containers: tuple[str, ...] = ()
    webhook: str | None = None
    """GitHub, GitLab, Bitbucket or Generic."""
    allow_env: bool = False
    remove: bool = False
    remove_all: bool = False
    auto: bool = False
    manual: bool = False

    @property
    def count(self) -> int:
        return sum((self.from_config, self.from_image is not None, self.webhook is not None))

    @property
    def print_table(self) -> bool:
        """No flags at all: list the triggers."""
        return not (self.count or self.remove or self.remove_all or self.auto or self.manual)

    @property
    def reset(self) -> bool:
        """--auto or --manual alone: resume or pause every image trigger."""
        return self.count == 0 and (self.auto or self.manual)


def make_options(
    *, from_config: bool = False, from_image: str | None = None, containers: str | None = None,
    github: bool = False, gitlab: bool = False, bitbucket: bool = False, webhook: bool = False,
    webhook_allow_env: bool = False, remove: bool = False, remove_all: bool = False,
    auto: bool = False, manual: bool = False,
) -> TriggerOptions:  # fmt: skip
    """Check the flags as oc does, with its rules and clearer messages."""
    hooks = [
        name
        for name, given in (
            ("GitHub", github),
            ("GitLab", gitlab),
            ("Bitbucket", bitbucket),
            ("Generic", webhook or webhook_allow_env),
        )
        if given
    ]
    count = sum((from_config, from_image is not None, github, gitlab, bitbucket, webhook,
                 webhook_allow_env))  # fmt: skip
    if auto and manual:
        raise TriggerError("use at most one of --auto and --manual")
    if remove and remove_all:
        raise TriggerError("use either --remove or --remove-all")
    if remove_all and (count or auto or manual):
        raise TriggerError("--remove-all may not be used with any other trigger flag")
    if remove and count < 1:
        raise TriggerError(
            "--remove needs the trigger to remove: --from-config, --from-image, "
            "--from-github, --from-gitlab, --from-bitbucket or --from-webhook"
        )
    if count > 1:
        raise TriggerError("set one trigger type at a time")
    if containers is not None and from_image is None:
        raise TriggerError("-c/--containers goes with --from-image")
    names = tuple(n.strip() for n in (containers or "").split(",") if n.strip())
    return TriggerOptions(
        from_config=from_config,
        from_image=parse_image(from_image) if from_image is not None else None,
        containers=names,
        webhook=hooks[0] if hooks else None,
        allow_env=webhook_allow_env,
        remove=remove,
        remove_all=remove_all,
        auto=auto,
        manual=manual,
    )


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def _namespace(obj: Mapping[str, Any]) -> str:
    return str(_meta(obj).get("namespace") or "")


def _show(ref: Mapping[str, Any] | None, own_namespace: str) -> str:
    if not ref:
        return ""
    name = str(ref.get("name") or "")
    other = ref.get("namespace")
    return f"{other}/{name}" if other and other != own_namespace else name


# --- BuildConfig -------------------------------------------------------------------


def strategy_from(spec: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The builder image the strategy names (what a from-less ImageChange trigger watches)."""
    strategy = spec.get("strategy") or {}
    for key in ("sourceStrategy", "dockerStrategy", "customStrategy"):
        block = strategy.get(key)
        if isinstance(block, Mapping) and block.get("from"):
            found: Mapping[str, Any] = block["from"]
            return found
    return None


def watched_image(trigger: Mapping[str, Any], spec: Mapping[str, Any]) -> Mapping[str, Any] | None:
    change = trigger.get("imageChange") or {}
    if change.get("from"):
        explicit: Mapping[str, Any] = change["from"]
        return explicit
    builder = strategy_from(spec)
    return builder if builder and builder.get("kind") == "ImageStreamTag" else None


def webhook_secret_name(trigger: Mapping[str, Any]) -> str | None:
    block = trigger.get(WEBHOOK_BLOCKS.get(str(trigger.get("type")), "")) or {}
    name = (block.get("secretReference") or {}).get("name")
    return str(name) if name else None


def buildconfig_rows(bc: Mapping[str, Any]) -> list[Row]:
    """oc's table: the config row first, then image triggers, then webhooks."""
    spec = bc.get("spec") or {}
    namespace = _namespace(bc)
    triggers = list(spec.get("triggers") or [])
    config = any(t.get("type") == "ConfigChange" for t in triggers)
    rows: list[Row] = [("config", "", str(config).lower())]
    watches_builder = False
    for trigger in triggers:
        if trigger.get("type") != "ImageChange":
            continue
        change = trigger.get("imageChange") or {}
        watched = watched_image(trigger, spec)
        value = _show(watched, namespace) or "<strategy image is not an ImageStreamTag>"
        if not change.get("from"):
            watches_builder = True
            value += " (strategy)"
        rows.append(("image", value, str(not _paused(change.get("paused"))).lower()))
    builder = strategy_from(spec)
    if not watches_builder and builder and builder.get("kind") == "ImageStreamTag":
        # As oc does: the builder image could trigger builds, and does not.
        rows.append(("image", f"{_show(builder, namespace)} (strategy)", "false"))
    for trigger in triggers:
        kind = str(trigger.get("type"))
        if kind not in WEBHOOK_BLOCKS:
            continue
        block = trigger.get(WEBHOOK_BLOCKS[kind]) or {}
        secret = webhook_secret_name(trigger)
        value = f"secret/{secret}" if secret else "<inline secret>"
        if block.get("allowEnv"):
            value += ", allowenv"
        rows.append(("webhook" if kind == "Generic" else kind.lower(), value, ""))
    return rows


@dataclass(frozen=True)
class BuildConfigEdit:
    triggers: list[dict[str, Any]]
    removed_secrets: tuple[str, ...]
    """Secrets the removed webhook triggers referenced (the caller deletes the ones it made)."""


def edit_buildconfig(
    bc: Mapping[str, Any], opts: TriggerOptions, webhook_secret: str | None = None
) -> BuildConfigEdit:
    """The BuildConfig's new ``spec.triggers``; ``webhook_secret`` names the Secret a new
    webhook trigger references (the caller makes it)."""
    spec = bc.get("spec") or {}
    namespace = _namespace(bc)
    triggers = [json.loads(json.dumps(t)) for t in spec.get("triggers") or []]

    def removing(keep: Sequence[dict[str, Any]]) -> BuildConfigEdit:
        gone = [t for t in triggers if t not in keep]
        secrets = tuple(s for t in gone if (s := webhook_secret_name(t)))
        return BuildConfigEdit(list(keep), secrets)

    def is_image(t: Mapping[str, Any], ref: ImageRef) -> bool:
        return t.get("type") == "ImageChange" and ref.matches(watched_image(t, spec), namespace)

    if opts.remove_all:
        return removing([])
    if opts.remove:
        keep = triggers
        if opts.from_config:
            keep = [t for t in keep if t.get("type") != "ConfigChange"]
        if opts.from_image is not None:
            ref = opts.from_image
            keep = [t for t in keep if not is_image(t, ref)]
        if opts.webhook is not None:
            keep = [t for t in keep if t.get("type") != opts.webhook]
        return removing(keep)
    if opts.reset:
        for trigger in triggers:
            if trigger.get("type") == "ImageChange":
                _set_paused(trigger.setdefault("imageChange", {}), opts.manual)
        return BuildConfigEdit(triggers, ())
    if opts.from_config and not any(t.get("type") == "ConfigChange" for t in triggers):
        triggers.append({"type": "ConfigChange"})
    if opts.from_image is not None:
        ref = opts.from_image
        existing = [t for t in triggers if is_image(t, ref)]
        for trigger in existing:
            # Neither --auto nor --manual: the trigger keeps its state (a re-run changes nothing).
            if opts.auto or opts.manual:
                _set_paused(trigger.setdefault("imageChange", {}), opts.manual)
        if not existing:
            change: dict[str, Any] = {}
            builder = strategy_from(spec)
            fromless = any(
                t.get("type") == "ImageChange" and not (t.get("imageChange") or {}).get("from")
                for t in triggers
            )
            # oc's canonical form: watching the builder image is an ImageChange without from.
            if not (ref.matches(builder, namespace) and not fromless):
                change["from"] = ref.reference(namespace)
            _set_paused(change, opts.manual)
            triggers.append({"type": "ImageChange", "imageChange": change})
    if opts.webhook is not None:
        if not webhook_secret:
            raise TriggerError("a webhook trigger needs a Secret")
        block: dict[str, Any] = {"secretReference": {"name": webhook_secret}}
        if opts.webhook == "Generic" and opts.allow_env:
            block["allowEnv"] = True
        triggers.append({"type": opts.webhook, WEBHOOK_BLOCKS[opts.webhook]: block})
    return BuildConfigEdit(triggers, ())


def _paused(value: object) -> bool:
    """``paused`` as published examples write it too: true, or the string "true"."""
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _set_paused(block: dict[str, Any], paused: bool) -> None:
    if paused:
        block["paused"] = True
    else:
        block.pop("paused", None)


def webhook_secret(bc: Mapping[str, Any], webhook: str, value: str, suffix: str) -> dict[str, Any]:
    """The Secret a new webhook trigger references: owned by the BuildConfig (deleted
    with it), marked as made by ``set triggers`` so ``--remove`` may delete it."""
    metadata = _meta(bc)
    name = str(metadata.get("name"))
    tail = f"-{webhook.lower()}-webhook-{suffix}"
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name[: 253 - len(tail)].rstrip("-.") + tail,
            "namespace": metadata.get("namespace"),
            "labels": {LABEL_BUILDCONFIG: label_value(name)},
            "annotations": {SECRET_MADE_FOR: name},
            "ownerReferences": [
                {
                    "apiVersion": str(bc.get("apiVersion") or "build.headwater.dev/v1"),
                    "kind": "BuildConfig",
                    "name": name,
                    "uid": metadata.get("uid"),
                }
            ],
        },
        "type": "Opaque",
        "stringData": {WEBHOOK_SECRET_KEY: value},
    }


# --- workloads (the annotation) ----------------------------------------------------


def pod_spec(obj: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    node: Any = obj
    for key in POD_SPEC_PATHS[kind]:
        node = node.get(key) if isinstance(node, Mapping) else None
    return node if isinstance(node, Mapping) else {}


def container_names(obj: Mapping[str, Any], kind: str) -> tuple[list[str], list[str]]:
    """(containers, init containers) of the workload's pod template."""
    spec = pod_spec(obj, kind)
    return (
        [str(c.get("name")) for c in spec.get("containers") or []],
        [str(c.get("name")) for c in spec.get("initContainers") or []],
    )


def field_path(kind: str, container: str, init: bool = False) -> str:
    """library-go's path to a container's image, by name."""
    prefix = ".".join(POD_SPEC_PATHS[kind])
    return f'{prefix}.{"initContainers" if init else "containers"}[?(@.name=="{container}")].image'


def read_annotation(obj: Mapping[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """(the annotation key in use, its entries); Headwater's key wins when both are set,
    as the operator reads them."""
    annotations = _meta(obj).get("annotations") or {}
    for key in TRIGGER_ANNOTATIONS:
        if key in annotations:
            try:
                entries = json.loads(annotations[key] or "[]")
            except json.JSONDecodeError as exc:
                raise TriggerError(f"annotation {key} is not JSON: {exc.msg}") from None
            if entries is None:
                # `oc set triggers --remove-all` writes null.
                entries = []
            if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
                raise TriggerError(f"annotation {key} is not a JSON list of triggers")
            return key, entries
    return ANNOTATION_OPENSHIFT, []


def annotation_json(entries: Sequence[Mapping[str, Any]]) -> str:
    """Compact JSON, as Go's json.Marshal writes it (keys in the entries' order)."""
    return json.dumps(list(entries), separators=(",", ":"))


def trigger_entry(
    ref: ImageRef, kind: str, container: str, own_namespace: str, *, init: bool, paused: bool
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "from": ref.reference(own_namespace),
        "fieldPath": field_path(kind, container, init),
    }
    if paused:
        entry["paused"] = True
    return entry


def entry_container(entry: Mapping[str, Any], obj: Mapping[str, Any], kind: str) -> str | None:
    """The container an entry's fieldPath names (by name or by index), or None."""
    match = _FIELD_PATH.search(str(entry.get("fieldPath") or ""))
    if match is None:
        return None
    if match["name"] is not None:
        return match["name"]
    containers, init = container_names(obj, kind)
    names = init if match["list"] == "initContainers" else containers
    index = int(match["index"])
    return names[index] if index < len(names) else None


def workload_rows(obj: Mapping[str, Any], kind: str) -> list[Row]:
    """A Deployment's config row (not paused), then one image row per annotation entry."""
    rows: list[Row] = []
    if kind == "Deployment":
        paused = bool((obj.get("spec") or {}).get("paused"))
        rows.append(("config", "", str(not paused).lower()))
    _, entries = read_annotation(obj)
    namespace = _namespace(obj)
    for entry in entries:
        container = entry_container(entry, obj, kind) or f"<{entry.get('fieldPath')}>"
        value = f"{_show(entry.get('from'), namespace)} ({container})"
        rows.append(("image", value, str(not _paused(entry.get("paused"))).lower()))
    return rows


@dataclass(frozen=True)
class WorkloadEdit:
    key: str
    value: str | None
    """The new annotation value; None removes the annotation."""
    paused: bool | None = None
    """A Deployment's new spec.paused (--from-config), or None to leave it."""
    replaced: tuple[tuple[str, str], ...] = ()
    """(container, the tag its replaced trigger watched): triggers --from-image replaced."""


def edit_workload(obj: Mapping[str, Any], kind: str, opts: TriggerOptions) -> WorkloadEdit:
    name = f"{kind.lower()}/{_meta(obj).get('name')}"
    if opts.webhook is not None:
        raise TriggerError(f"{name}: webhooks trigger BuildConfigs only")
    if opts.from_config and kind != "Deployment":
        raise TriggerError(f"{name}: --from-config applies to BuildConfigs and Deployments")
    key, entries = read_annotation(obj)
    namespace = _namespace(obj)
    paused: bool | None = None

    replaced: list[tuple[str, str]] = []

    def result(new: Sequence[Mapping[str, Any]]) -> WorkloadEdit:
        return WorkloadEdit(key, annotation_json(new) if new else None, paused, tuple(replaced))

    if opts.remove_all:
        return result([])
    if opts.remove:
        if opts.from_config:
            # Like oc: without its config trigger, a Deployment does not roll out.
            paused = True
        if opts.from_image is not None:
            ref = opts.from_image
            wanted = set(opts.containers)
            entries = [
                e
                for e in entries
                if not (
                    ref.matches(e.get("from"), namespace)
                    and (not wanted or entry_container(e, obj, kind) in wanted)
                )
            ]
        return result(entries)
    if opts.reset:
        for entry in entries:
            _set_paused(entry, opts.manual)
        return result(entries)
    if opts.from_config:
        paused = False
    if opts.from_image is not None:
        containers, init = container_names(obj, kind)
        names = list(opts.containers)
        if not names:
            if len(containers) != 1:
                raise TriggerError(
                    f"{name} has {len(containers)} containers ({', '.join(containers)}): "
                    "name the one(s) to update with -c/--containers"
                )
            names = containers
        unknown = [n for n in names if n not in containers and n not in init]
        if unknown:
            raise TriggerError(
                f"{name} has no container {', '.join(unknown)} "
                f"(it has: {', '.join([*containers, *init])})"
            )
        # One trigger per container: the new one replaces whatever fed it before (the
        # caller says which it replaced). The same tag again keeps its paused state
        # unless --auto or --manual says otherwise.
        before = {entry_container(e, obj, kind): e for e in entries}
        entries = [e for e in entries if entry_container(e, obj, kind) not in names]
        for container in names:
            old = before.get(container)
            same = old is not None and opts.from_image.matches(old.get("from"), namespace)
            if old is not None and not same:
                replaced.append((container, _show(old.get("from"), namespace)))
            keep = same and not (opts.auto or opts.manual)
            entries.append(
                trigger_entry(
                    opts.from_image,
                    kind,
                    container,
                    namespace,
                    init=container not in containers,
                    paused=_paused((old or {}).get("paused")) if keep else opts.manual,
                )
            )
    return result(entries)
