"""A DeploymentConfig rewritten as an ``apps/v1`` Deployment with image triggers.

What OpenShift's migration guide ("Migrating from DeploymentConfig to
Deployment") says to do by hand:

- ``selector`` (a map) becomes ``selector.matchLabels``; ``replicas``,
  ``template``, ``revisionHistoryLimit``, ``minReadySeconds`` and ``paused``
  are kept;
- strategy ``Rolling`` becomes ``RollingUpdate`` (``maxSurge`` and
  ``maxUnavailable`` kept, ``timeoutSeconds`` as ``progressDeadlineSeconds``),
  ``Recreate`` stays ``Recreate``;
- each ImageChange trigger becomes an entry of the
  ``image.openshift.io/triggers`` annotation, which Headwater honours (one
  per container name, ``paused`` when ``automatic: false``);
- ConfigChange needs nothing: a Deployment rolls out on every template change.

What has no Deployment counterpart (lifecycle hooks, the Custom strategy,
``test``, the deployer pod's settings) is reported, not converted.

Pure: a DeploymentConfig in, a Deployment and ``(severity, path, message)``
notes out.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from headwater.workloads.triggers import ANNOTATION_OPENSHIFT

TRIGGER_ANNOTATION = ANNOTATION_OPENSHIFT
POD_SPEC = "spec.template.spec"

Finding = tuple[str, str, str]
"""(severity, path, message)."""

SERVER_METADATA = (
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "generation",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "ownerReferences",
)
"""Metadata the source cluster set, removed from every converted object."""
_KEPT_SPEC = ("replicas", "revisionHistoryLimit", "minReadySeconds", "paused")


def _hooks(params: Mapping[str, Any], path: str, found: list[Finding]) -> None:
    for hook in ("pre", "mid", "post"):
        if params.get(hook):
            found.append(
                (
                    "warning",
                    f"{path}.{hook}",
                    f"the {hook} lifecycle hook is not converted: a Deployment has no hooks;"
                    " run it as a Job (or an init container) of your own",
                )
            )


def _strategy(strategy: Mapping[str, Any], out_spec: dict[str, Any], found: list[Finding]) -> None:
    kind = strategy.get("type") or "Rolling"
    if kind == "Rolling":
        params = strategy.get("rollingParams") or {}
        rolling = {k: params[k] for k in ("maxSurge", "maxUnavailable") if k in params}
        out_spec["strategy"] = {"type": "RollingUpdate"}
        if rolling:
            out_spec["strategy"]["rollingUpdate"] = rolling
        if params.get("timeoutSeconds") is not None:
            out_spec["progressDeadlineSeconds"] = params["timeoutSeconds"]
            found.append(
                (
                    "info",
                    "spec.strategy.rollingParams.timeoutSeconds",
                    "written as spec.progressDeadlineSeconds: a slow rollout is reported"
                    " (Progressing=False), not rolled back",
                )
            )
        for name in ("updatePeriodSeconds", "intervalSeconds"):
            if params.get(name) is not None:
                found.append(
                    (
                        "info",
                        f"spec.strategy.rollingParams.{name}",
                        "dropped: a Deployment has no such setting",
                    )
                )
        _hooks(params, "spec.strategy.rollingParams", found)
    elif kind == "Recreate":
        params = strategy.get("recreateParams") or {}
        out_spec["strategy"] = {"type": "Recreate"}
        if params.get("timeoutSeconds") is not None:
            found.append(
                (
                    "info",
                    "spec.strategy.recreateParams.timeoutSeconds",
                    "dropped: a Deployment has no such setting",
                )
            )
        _hooks(params, "spec.strategy.recreateParams", found)
    else:
        found.append(
            (
                "warning",
                "spec.strategy",
                f"the {kind} strategy is not converted: the Deployment rolls out with"
                " RollingUpdate (its default)",
            )
        )
    if strategy.get("customParams") and kind != "Custom":
        found.append(
            (
                "warning",
                "spec.strategy.customParams",
                "not converted: the Deployment's own controller rolls it out, no custom"
                " deployer command runs",
            )
        )
    for name in ("resources", "labels", "annotations", "activeDeadlineSeconds"):
        if strategy.get(name):
            found.append(
                (
                    "info",
                    f"spec.strategy.{name}",
                    "dropped: it configured OpenShift's deployer pod, which a Deployment"
                    " does not have",
                )
            )


def _container_list(template: Mapping[str, Any], name: str) -> str | None:
    spec = template.get("spec") or {}
    for list_name in ("containers", "initContainers"):
        for container in spec.get(list_name) or []:
            if isinstance(container, Mapping) and container.get("name") == name:
                return list_name
    return None


def _triggers(
    triggers: Any, template: dict[str, Any], found: list[Finding]
) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    if not isinstance(triggers, list):
        return entries
    for i, trigger in enumerate(triggers):
        if not isinstance(trigger, Mapping):
            continue
        path = f"spec.triggers[{i}]"
        if trigger.get("type") == "ConfigChange":
            found.append(
                (
                    "info",
                    path,
                    "ConfigChange dropped: a Deployment rolls out on every template change anyway",
                )
            )
            continue
        if trigger.get("type") != "ImageChange":
            found.append(("warning", path, f"{trigger.get('type')!r} trigger not converted"))
            continue
        params = trigger.get("imageChangeParams") or {}
        source = params.get("from") if isinstance(params, Mapping) else None
        if not isinstance(source, Mapping) or source.get("kind", "ImageStreamTag") != (
            "ImageStreamTag"
        ):
            found.append(
                (
                    "warning",
                    f"{path}.imageChangeParams.from",
                    "not converted: only an ImageStreamTag can trigger a rollout",
                )
            )
            continue
        ref = {"kind": "ImageStreamTag", "name": source.get("name")}
        if source.get("namespace"):
            ref["namespace"] = source["namespace"]
        for name in params.get("containerNames") or []:
            list_name = _container_list(template, str(name))
            if list_name is None:
                found.append(
                    (
                        "error",
                        f"{path}.imageChangeParams.containerNames",
                        f"no container {name!r} in the template: not converted",
                    )
                )
                continue
            entry: dict[str, Any] = {
                "from": dict(ref),
                "fieldPath": f'{POD_SPEC}.{list_name}[?(@.name=="{name}")].image',
            }
            if not params.get("automatic", False):
                entry["paused"] = True
            entries.append(entry)
            _fill_image(template, list_name, str(name), str(ref["name"] or ""), found)
    return entries


def _fill_image(
    template: dict[str, Any], list_name: str, name: str, tag: str, found: list[Finding]
) -> None:
    for i, container in enumerate((template.get("spec") or {}).get(list_name) or []):
        if not isinstance(container, dict) or container.get("name") != name:
            continue
        image = container.get("image")
        if isinstance(image, str) and image.strip():
            return
        container["image"] = tag
        found.append(
            (
                "info",
                f"{POD_SPEC}.{list_name}[{i}].image",
                f"{'empty' if image is None else repr(image)}, written as {tag!r}: the trigger"
                " replaces it once the tag has an"
                " image (until then pods cannot pull it)",
            )
        )


def to_deployment(dc: Mapping[str, Any]) -> tuple[dict[str, Any], list[Finding]]:
    """``dc`` as an apps/v1 Deployment, and what was changed or not converted."""
    found: list[Finding] = []
    spec = dc.get("spec") if isinstance(dc.get("spec"), Mapping) else {}
    assert isinstance(spec, Mapping)
    metadata = copy.deepcopy(dict(dc.get("metadata") or {}))
    removed = [key for key in SERVER_METADATA if key in metadata]
    for key in removed:
        del metadata[key]
    if removed:
        found.append(
            ("info", "metadata", f"removed what the source cluster set ({', '.join(removed)})")
        )
    out_spec: dict[str, Any] = {}
    for key in _KEPT_SPEC:
        if key in spec:
            out_spec[key] = copy.deepcopy(spec[key])
    selector = spec.get("selector")
    template = copy.deepcopy(spec.get("template") or {})
    if isinstance(selector, Mapping) and selector:
        out_spec["selector"] = {"matchLabels": dict(selector)}
    else:
        labels = (template.get("metadata") or {}).get("labels") or {}
        out_spec["selector"] = {"matchLabels": dict(labels)}
        found.append(
            (
                "info",
                "spec.selector",
                "none: the template's labels are the selector (OpenShift's default)",
            )
        )
    _strategy(spec.get("strategy") or {}, out_spec, found)
    triggers = spec.get("triggers")
    entries = _triggers(triggers, template, found)
    if isinstance(triggers, list) and not any(
        isinstance(t, Mapping) and t.get("type") == "ImageChange" for t in triggers
    ):
        found.append(
            (
                "info",
                "spec.triggers",
                "no ImageChange trigger: no image trigger annotation; the images stay as written",
            )
        )
    out_spec["template"] = template
    if spec.get("test"):
        found.append(
            (
                "warning",
                "spec.test",
                "test: true is not converted: the Deployment keeps its replicas running"
                " (OpenShift scaled a test deployment to zero once it succeeded)",
            )
        )
    annotations = dict(metadata.get("annotations") or {})
    annotations.pop("kubectl.kubernetes.io/last-applied-configuration", None)
    if entries:
        annotations[TRIGGER_ANNOTATION] = json.dumps(entries, separators=(",", ":"))
    if annotations:
        metadata["annotations"] = annotations
    else:
        metadata.pop("annotations", None)
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": out_spec,
    }
    found.insert(
        0,
        (
            "info",
            "",
            "DeploymentConfig written as an apps/v1 Deployment"
            + (" with the image.openshift.io/triggers annotation" if entries else ""),
        ),
    )
    return deployment, found
