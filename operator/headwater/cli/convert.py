"""``headwater convert``: OpenShift manifests rewritten for Headwater, with what differs said.

ImageStreams, BuildConfigs and Builds move from ``image.openshift.io/v1`` and
``build.openshift.io/v1`` (or the legacy ``apiVersion: v1``) to
``image.headwater.dev/v1`` and ``build.headwater.dev/v1``. DeploymentConfigs
become Deployments with the image trigger annotation (:mod:`.deploymentconfig`);
Templates are processed as ``oc process`` does, or kept with their objects
converted (:mod:`.templates`). Everything else passes through unchanged, except
the OpenShift kinds Headwater has no counterpart for and that cannot work
without OpenShift (the virtual ImageStreamTag/ImageStreamImport views,
JenkinsPipeline builds): those are **dropped**, each with an error note saying
what to use instead, so the output can be applied to a plain cluster as it is.

The output is what the API server will accept and keep: fields the CRD
schemas (``crds/*.yaml``) do not declare are removed (the API server would
refuse them under kubectl's strict field validation, or drop them silently),
server-set metadata and ``status`` are removed, and a few OpenShift defaults
the CRDs want spelled out are written out (``source.type``, ``strategy.type``
with its block, capitalised trigger types). Every such change, every field
Headwater accepts but does not honour, and every field whose meaning differs
is reported as a :class:`Note`; the CLI prints them on stderr.

The core here is pure: text in, documents and notes out. Reading files and
printing live in the click command at the end.
"""

from __future__ import annotations

import copy
import json
import random
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import click
import yaml

from headwater.cli import convert_report, deploymentconfig, templates
from headwater.cli.kube import cluster_options, connect
from headwater.cli.validation import (
    OBJECT_META_FIELDS,
    SchemaError,
    load_crd_schemas,
    packaged_schemas,
    server_dry_run,
    validate,
)
from headwater.workloads.triggers import TRIGGER_ANNOTATIONS

Severity = Literal["error", "warning", "info"]
Schemas = Mapping[tuple[str, str], Mapping[str, Any]]
"""openAPIV3Schema by (group, kind)."""

OPENSHIFT_GROUPS = {
    "image.openshift.io": "image.headwater.dev",
    "build.openshift.io": "build.headwater.dev",
}
HEADWATER_KINDS = {
    "ImageStream": "image.headwater.dev",
    "BuildConfig": "build.headwater.dev",
    "Build": "build.headwater.dev",
}
# OpenShift 3 served its kinds under the core group; `oc get -o yaml` of old
# clusters and many templates still say `apiVersion: v1` for them.
_LEGACY_V1_KINDS = {
    "ImageStream": "image.openshift.io",
    "ImageStreamTag": "image.openshift.io",
    "ImageStreamImage": "image.openshift.io",
    "ImageStreamImport": "image.openshift.io",
    "ImageStreamMapping": "image.openshift.io",
    "Image": "image.openshift.io",
    "BuildConfig": "build.openshift.io",
    "Build": "build.openshift.io",
    "BuildRequest": "build.openshift.io",
    "DeploymentConfig": "apps.openshift.io",
    "Route": "route.openshift.io",
    "Template": "template.openshift.io",
    "Project": "project.openshift.io",
}
_PASS_THROUGH_HINTS = {
    "Route": " (on plain Kubernetes: an Ingress or a Gateway HTTPRoute)",
    "Template": " (render it first: `oc process -f FILE --local`)",
}
_VIRTUAL_IMAGE_KINDS = {
    "ImageStreamTag": "`headwater tag` / `headwater import-image` write the stream's spec tag",
    "ImageStreamImage": "pin a tag with `headwater tag <stream>:<tag> <stream>:<new tag>`",
    "ImageStreamImport": "`headwater import-image <stream>:<tag> --from=<image> --confirm`",
    "ImageStreamMapping": "builds and imports write the stream's status",
    "ImageTag": "`headwater tag` writes the stream's spec tag",
    "Image": "images are read from the registry (`headwater describe istag`)",
    "BuildRequest": "`headwater start-build <bc>`",
}
OPENSHIFT_INTERNAL_REGISTRIES = (
    "image-registry.openshift-image-registry.svc:5000/",
    "docker-registry.default.svc:5000/",
)
WORKLOAD_POD_SPECS = {
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
    "Pod": ("spec",),
}
_STRATEGY_BLOCKS = {
    "Docker": "dockerStrategy",
    "Source": "sourceStrategy",
    "Custom": "customStrategy",
}
_TRIGGER_TYPES = {
    t.lower(): t
    for t in ("ConfigChange", "ImageChange", "GitHub", "GitLab", "Bitbucket", "Generic")
}
_TRIGGER_BLOCKS = {
    "ImageChange": "imageChange",
    "GitHub": "github",
    "GitLab": "gitlab",
    "Bitbucket": "bitbucket",
    "Generic": "generic",
}
_WEBHOOK_TYPES = ("GitHub", "GitLab", "Bitbucket", "Generic")
# The operator serves build webhooks on its own endpoint (not the API server), so
# the Git host's hook URL changes; False would say they are not served at all.
WEBHOOKS_SERVED = True

REPO_CRD_DIR = Path(__file__).resolve().parents[3] / "crds"
"""``crds/`` of the checkout this module runs from (absent in an installed package)."""


class ConvertError(ValueError):
    """A file cannot be read or parsed as Kubernetes manifests; the message names it."""


@dataclass(frozen=True)
class Note:
    """One thing to tell the user about one object."""

    severity: Severity
    """error: the API server will refuse the object, or it was skipped; warning: accepted
    but not honoured, or honoured differently; info: what convert changed."""
    source: str
    """File (and document) the object came from."""
    obj: str
    """``Kind/name``."""
    path: str
    """Dotted field path, or empty for the whole object."""
    message: str

    def __str__(self) -> str:
        where = f"{self.obj}: {self.path}" if self.path else self.obj
        return f"{self.severity}: {self.source}: {where}: {self.message}"


@dataclass
class _Context:
    """Notes of one object, collected while it is converted."""

    source: str
    obj: str
    notes: list[Note] = field(default_factory=list)

    def add(self, severity: Severity, path: str, message: str) -> None:
        self.notes.append(Note(severity, self.source, self.obj, path, message))


@dataclass(frozen=True)
class Converted:
    """One input file's documents, converted (skipped objects left out)."""

    source: str
    documents: list[Any]
    notes: list[Note]
    tallies: list[convert_report.Tally] = field(default_factory=list)
    """What became of each input object (a List's items and a Template's objects one by one)."""
    parameters: set[str] = field(default_factory=set)
    """The parameter names of the Templates processed."""


# --- schemas ----------------------------------------------------------------------------------


def load_schemas(crd_dir: Path | None = None) -> dict[tuple[str, str], dict[str, Any]]:
    """The served v1 openAPIV3Schema of every CRD in ``crd_dir``, by (group, kind).

    Without ``crd_dir``: the CRDs shipped in the package (the same as ``crds/``).
    ConvertError when the directory holds no CRD.
    """
    try:
        return load_crd_schemas(crd_dir) if crd_dir is not None else packaged_schemas()
    except SchemaError as exc:
        raise ConvertError(f"--crds {exc}") from None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _prune(value: Any, schema: Mapping[str, Any], path: str, ctx: _Context) -> None:
    """Remove the fields the schema does not declare (the API server would refuse them)."""
    if not isinstance(schema, Mapping) or schema.get("x-kubernetes-preserve-unknown-fields"):
        return
    if isinstance(value, dict):
        properties = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key in list(value):
            sub = _join(path, str(key))
            if isinstance(properties, Mapping) and key in properties:
                _prune(value[key], properties[key], sub, ctx)
            elif isinstance(extra, Mapping):
                _prune(value[key], extra, sub, ctx)
            elif properties is None or extra is True:
                continue
            else:
                del value[key]
                ctx.add(
                    "warning",
                    sub,
                    "not in Headwater's schema: removed (the API server would refuse or drop it)",
                )
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for i, item in enumerate(value):
            _prune(item, schema["items"], f"{path}[{i}]", ctx)


def check_schema(value: Any, schema: Mapping[str, Any], path: str, ctx: _Context) -> None:
    """Remove undeclared fields, then report what the API server would refuse.

    The rest is checked as admission checks it (``headwater.cli.validation``):
    types, required fields, enums, patterns, lengths, list keys, and the CEL
    rules. Nothing is guessed: a value that is wrong is reported, not changed.
    """
    _prune(value, schema, path, ctx)
    for problem in validate(value, schema):
        where = f"{path}.{problem.path}" if path and problem.path else (problem.path or path)
        ctx.add("error" if problem.severity == "error" else "info", where, problem.message)


def schema_notes(obj: Mapping[str, Any], schemas: Schemas, source: str = "") -> list[Note]:
    """What the schema walk says of a Headwater object (a copy: ``obj`` is left alone)."""
    group = str(obj.get("apiVersion") or "").rpartition("/")[0]
    schema = schemas.get((group, str(obj.get("kind"))))
    if schema is None:
        return []
    ctx = _Context(source, _name(obj))
    check_schema(copy.deepcopy(dict(obj)), schema, "", ctx)
    return ctx.notes


# --- kinds --------------------------------------------------------------------------------------


def _group_of(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


def openshift_group(obj: Mapping[str, Any]) -> str | None:
    """The OpenShift API group of ``obj`` (legacy ``v1`` kinds included), else None."""
    group, _ = _group_of(str(obj.get("apiVersion") or ""))
    kind = str(obj.get("kind") or "")
    if group == "" and kind in _LEGACY_V1_KINDS:
        return _LEGACY_V1_KINDS[kind]
    return group if group.endswith(".openshift.io") else None


def _name(obj: Mapping[str, Any]) -> str:
    metadata = obj.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    return f"{obj.get('kind')}/{name or '<no name>'}"


@dataclass
class Options:
    """How Templates are handled: kept with their parameter references, or processed."""

    params: Mapping[str, str] | None = None
    """Parameter values: None keeps Templates; a mapping (even empty) processes them."""
    rng: random.Random | None = None
    """For ``generate: expression`` (default: the system's random source)."""
    tallies: list[convert_report.Tally] = field(default_factory=list)
    parameters: set[str] = field(default_factory=set)


def convert_object(
    obj: dict[str, Any],
    schemas: Schemas | None,
    source: str,
    options: Options | None = None,
) -> tuple[list[Any], list[Note]]:
    """One object converted: ``[]`` when skipped, else ``[object]``; and its notes.

    Lists (``kind: List`` or ``<Kind>List``) are converted item by item and keep their shape.
    A Template is processed (``options.params`` given), or keeps its parameter references
    and has its objects converted.
    """
    opts = options or Options()
    items = obj.get("items")
    if str(obj.get("kind") or "").endswith("List") and isinstance(items, list):
        out = copy.deepcopy({k: v for k, v in obj.items() if k != "items"})
        group = openshift_group(out)
        if group in OPENSHIFT_GROUPS:
            out["apiVersion"] = f"{OPENSHIFT_GROUPS[group]}/v1"
        converted: list[Any] = []
        notes: list[Note] = []
        for item in items:
            if not isinstance(item, dict):
                converted.append(item)
                continue
            result, item_notes = convert_object(item, schemas, source, opts)
            converted.extend(result)
            notes.extend(item_notes)
        out["items"] = converted
        return [out], notes
    if templates.is_template(obj):
        return _convert_template(obj, schemas, source, opts)
    documents, notes = _convert_one(obj, schemas, source)
    outcome: convert_report.Outcome = (
        "dropped" if not documents else "unchanged" if documents == [obj] else "converted"
    )
    opts.tallies.append(convert_report.Tally(source, _name(obj), outcome))
    return documents, notes


def _convert_one(
    obj: dict[str, Any], schemas: Schemas | None, source: str
) -> tuple[list[Any], list[Note]]:
    ctx = _Context(source, _name(obj))
    group = openshift_group(obj)
    kind = str(obj.get("kind") or "")
    if group in OPENSHIFT_GROUPS and kind in HEADWATER_KINDS:
        done = _convert_headwater_kind(obj, kind, schemas, ctx)
        return ([done] if done is not None else []), ctx.notes
    if group in OPENSHIFT_GROUPS:
        how = _VIRTUAL_IMAGE_KINDS.get(kind, "it has no Headwater counterpart")
        ctx.add("error", "", f"{kind} is not an API resource in Headwater: skipped ({how})")
        return [], ctx.notes
    if kind == "DeploymentConfig" and group == "apps.openshift.io":
        deployment, findings = deploymentconfig.to_deployment(obj)
        for severity, path, message in findings:
            ctx.add(cast(Severity, severity), path, message)
        _check_workload(deployment, "Deployment", ctx)
        return [deployment], ctx.notes
    if group is not None:
        ctx.add(
            "warning",
            "",
            f"{group} is OpenShift's, not Headwater's: passed through unchanged; the target"
            " cluster needs that API" + _PASS_THROUGH_HINTS.get(kind, ""),
        )
        return [obj], ctx.notes
    if kind in WORKLOAD_POD_SPECS:
        _check_workload(obj, kind, ctx)
    return [obj], ctx.notes


def _convert_template(
    obj: dict[str, Any], schemas: Schemas | None, source: str, opts: Options
) -> tuple[list[Any], list[Note]]:
    """A Template processed into its objects, or kept with its objects converted."""
    ctx = _Context(source, _name(obj))
    opts.parameters |= templates.parameter_names(obj)
    where = f"{source} ({_name(obj)})"
    notes: list[Note] = []
    if opts.params is not None:
        try:
            processed = templates.process(obj, opts.params, opts.rng)
        except templates.TemplateError as exc:
            raise ConvertError(f"{source}: {_name(obj)}: {exc}") from None
        for name in processed.generated:
            ctx.add("info", f"parameters.{name}", "generated from its expression")
        for name in processed.stripped:
            ctx.add("info", "", f"{name}: its namespace removed (as oc process does)")
        documents: list[Any] = []
        for item in processed.objects:
            result, item_notes = convert_object(item, schemas, where, opts)
            documents.extend(result)
            notes.extend(item_notes)
        return documents, ctx.notes + notes
    out = copy.deepcopy(obj)
    converted: list[Any] = []
    labels = obj.get("labels")
    for item in obj.get("objects") or []:
        if not isinstance(item, dict):
            converted.append(item)
            continue
        if item.get("kind") == "DeploymentConfig" and isinstance(labels, Mapping):
            # Processing labels a DC's pods, not a Deployment's: label them now.
            item = copy.deepcopy(item)
            templates.add_pod_labels(item, labels)
        result, item_notes = convert_object(item, schemas, where, opts)
        converted.extend(result)
        # A field holding ${PARAM} is checked once the template is processed.
        notes.extend(
            n
            for n in item_notes
            if n.severity != "error"
            or not any(templates.holds_reference(d, n.path) for d in [item, *result])
        )
    out["objects"] = converted
    if out.get("apiVersion") != templates.TEMPLATE_API_VERSION:
        out["apiVersion"] = templates.TEMPLATE_API_VERSION
        ctx.add("info", "apiVersion", f"v1 written as {templates.TEMPLATE_API_VERSION}")
    if out != obj:
        ctx.add(
            "info",
            "",
            "its objects converted, its parameter references kept: render it with"
            " `headwater convert --param NAME=VALUE` or `oc process --local`; kubectl cannot"
            " apply a Template to a cluster without OpenShift's template API",
        )
    return [out], ctx.notes + notes


def _convert_headwater_kind(
    original: Mapping[str, Any], kind: str, schemas: Schemas | None, ctx: _Context
) -> dict[str, Any] | None:
    obj = copy.deepcopy(dict(original))
    group = HEADWATER_KINDS[kind]
    obj["apiVersion"] = f"{group}/v1"
    _clean_metadata(obj, ctx)
    if "status" in obj:
        del obj["status"]
        ctx.add("info", "status", "removed: the operator writes status")
    spec = obj.get("spec")
    if isinstance(spec, dict):
        if kind == "ImageStream":
            _fix_imagestream(obj, spec, ctx)
        else:
            if _build_strategy_unsupported(spec, ctx):
                return None
            _fix_build_spec(spec, ctx)
    schema = (schemas or {}).get((group, kind))
    if schema is not None:
        check_schema(obj, schema, "", ctx)
    if isinstance(spec, dict):
        if kind == "ImageStream":
            _notes_imagestream(spec, ctx)
        else:
            _notes_build_spec(spec, ctx, is_build=kind == "Build")
    _notes_cross_namespace(obj, kind, ctx)
    return obj


def _clean_metadata(obj: dict[str, Any], ctx: _Context) -> None:
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict):
        return
    removed = [key for key in deploymentconfig.SERVER_METADATA if key in metadata]
    for key in removed:
        del metadata[key]
    annotations = metadata.get("annotations")
    last_applied = "kubectl.kubernetes.io/last-applied-configuration"
    if isinstance(annotations, dict) and last_applied in annotations:
        # It holds the OpenShift apiVersion: kubectl apply would diff against the wrong object.
        del annotations[last_applied]
        removed.append(f"annotation {last_applied}")
        if not annotations:
            del metadata["annotations"]
    if removed:
        ctx.add(
            "info",
            "metadata",
            f"removed what the source cluster set ({', '.join(removed)}): the target sets its own",
        )
    for key in [k for k in metadata if k not in OBJECT_META_FIELDS]:
        # kubectl's strict validation refuses it; a misspelling (selflink) most of the time.
        del metadata[key]
        ctx.add("warning", f"metadata.{key}", "not a Kubernetes metadata field: removed")


# --- ImageStream --------------------------------------------------------------------------------


def _fix_imagestream(obj: Mapping[str, Any], spec: dict[str, Any], ctx: _Context) -> None:
    metadata = obj.get("metadata") or {}
    stream = str(metadata.get("name") or "")
    namespace = metadata.get("namespace")
    for i, tag in enumerate(spec.get("tags") or []):
        source = tag.get("from") if isinstance(tag, dict) else None
        if not isinstance(source, dict) or source.get("kind") != "ImageStreamTag":
            continue
        name = source.get("name")
        other_ns = source.get("namespace") and source.get("namespace") != namespace
        if isinstance(name, str) and ":" not in name and stream and not other_ns:
            # OpenShift reads a bare tag as a tag of this same stream; the CRD wants stream:tag.
            source["name"] = f"{stream}:{name}"
            ctx.add("info", f"spec.tags[{i}].from.name", f"{name!r} written as {source['name']!r}")


def _notes_imagestream(spec: Mapping[str, Any], ctx: _Context) -> None:
    repository = spec.get("dockerImageRepository")
    tags = [t for t in spec.get("tags") or [] if isinstance(t, Mapping)]
    if repository and not any(t.get("from") for t in tags):
        ctx.add(
            "warning",
            "spec.dockerImageRepository",
            f"{repository} is the stream's only source, and Headwater ignores it (deprecated in"
            " OpenShift): nothing is imported. Give a tag a `from` ({kind: DockerImage, name:"
            f" {repository}:latest}}) or run `headwater import-image"
            f" {ctx.obj.partition('/')[2]}:latest --from={repository}:latest --confirm`",
        )
    elif repository:
        ctx.add(
            "warning",
            "spec.dockerImageRepository",
            "accepted and ignored (deprecated in OpenShift): give each tag a `from`",
        )
    for i, tag in enumerate(spec.get("tags") or []):
        if not isinstance(tag, Mapping):
            continue
        policy = tag.get("referencePolicy") or {}
        if isinstance(policy, Mapping) and policy.get("type") == "Local":
            ctx.add(
                "info",
                f"spec.tags[{i}].referencePolicy.type",
                "Local points consumers at the operator's configured registry; without one"
                " configured they get the source reference",
            )


def _internal_registry(name: object) -> bool:
    return isinstance(name, str) and name.startswith(OPENSHIFT_INTERNAL_REGISTRIES)


_INTERNAL_HINT = (
    "is OpenShift's internal registry, which does not exist here: name an ImageStreamTag"
    " (`kind: ImageStreamTag, name: <stream>:<tag>`) or the image's own registry"
)


def _other_namespace(ref: Any, namespace: str | None) -> str | None:
    """The namespace an ImageStreamTag/ImageStreamImage reference points to, if another."""
    if not isinstance(ref, Mapping) or ref.get("kind") not in (
        "ImageStreamTag",
        "ImageStreamImage",
    ):
        return None
    other = ref.get("namespace")
    return str(other) if other and other != namespace else None


def _grant(role: str, source_ns: str, subject: str) -> str:
    return (
        f"an admin of {source_ns} must grant {role}: `kubectl -n {source_ns} create rolebinding"
        f" <name> --clusterrole={role} {subject}`"
    )


def _notes_cross_namespace(obj: Mapping[str, Any], kind: str, ctx: _Context) -> None:
    """ImageStreamTags of other namespaces, and the grant each needs there."""
    metadata = obj.get("metadata") or {}
    namespace = metadata.get("namespace") if isinstance(metadata, Mapping) else None
    here = namespace or "<this namespace>"
    spec = obj.get("spec") or {}
    if not isinstance(spec, Mapping):
        return
    if kind == "ImageStream":
        for i, tag in enumerate(spec.get("tags") or []):
            source = tag.get("from") if isinstance(tag, Mapping) else None
            other = _other_namespace(source, namespace)
            if other and isinstance(source, Mapping):
                ctx.add(
                    "warning",
                    f"spec.tags[{i}].from.namespace",
                    f"{other}/{source.get('name')}: followed only once the service accounts of"
                    f" {here} may get ImageStreams in {other}; "
                    + _grant("headwater-view", other, f"--group=system:serviceaccounts:{here}"),
                )
        return
    account = spec.get("serviceAccount") or "default"
    subject = f"--serviceaccount={here}:{account}"
    refs: list[tuple[str, Any, str]] = []
    strategy = spec.get("strategy") or {}
    if isinstance(strategy, Mapping):
        for block_name in _STRATEGY_BLOCKS.values():
            block = strategy.get(block_name)
            if isinstance(block, Mapping):
                refs.append((f"spec.strategy.{block_name}.from", block.get("from"), "puller"))
    source = spec.get("source") or {}
    if isinstance(source, Mapping):
        for i, image in enumerate(source.get("images") or []):
            if isinstance(image, Mapping):
                refs.append((f"spec.source.images[{i}].from", image.get("from"), "puller"))
    output = spec.get("output") or {}
    if isinstance(output, Mapping):
        refs.append(("spec.output.to", output.get("to"), "pusher"))
    for path, ref, role in refs:
        other = _other_namespace(ref, namespace)
        if not other or (other == "openshift" and role == "puller"):
            continue  # the openshift namespace has a note of its own
        ctx.add(
            "warning",
            path,
            f"{other}/{ref.get('name')}: another namespace's ImageStreamTag: the build waits"
            f" (Forbidden) until {here}:{account} may "
            + ("pull from" if role == "puller" else "push to")
            + " it; "
            + _grant(f"headwater-image-{role}", other, subject),
        )


def _notes_internal_registry(spec: Mapping[str, Any], ctx: _Context) -> None:
    """Builder and base images on OpenShift's internal registry."""
    strategy = spec.get("strategy") or {}
    if isinstance(strategy, Mapping):
        for block_name in _STRATEGY_BLOCKS.values():
            block = strategy.get(block_name)
            ref = block.get("from") if isinstance(block, Mapping) else None
            if isinstance(ref, Mapping) and _internal_registry(ref.get("name")):
                ctx.add(
                    "warning",
                    f"spec.strategy.{block_name}.from",
                    f"{ref.get('name')} {_INTERNAL_HINT}",
                )
    source = spec.get("source") or {}
    if not isinstance(source, Mapping):
        return
    for i, image in enumerate(source.get("images") or []):
        ref = image.get("from") if isinstance(image, Mapping) else None
        if isinstance(ref, Mapping) and _internal_registry(ref.get("name")):
            ctx.add(
                "warning", f"spec.source.images[{i}].from", f"{ref.get('name')} {_INTERNAL_HINT}"
            )
    dockerfile = source.get("dockerfile")
    if not isinstance(dockerfile, str):
        return
    bases = []
    for line in dockerfile.splitlines():
        words = line.split()
        if words and words[0].upper() == "FROM":
            bases.append(next((w for w in words[1:] if not w.startswith("--")), None))
    docker = strategy.get("dockerStrategy") if isinstance(strategy, Mapping) else None
    if bases and isinstance(docker, Mapping) and docker.get("from"):
        bases.pop()  # the strategy's from replaces the last stage's FROM
    for image in bases:
        if _internal_registry(image):
            ctx.add("warning", "spec.source.dockerfile", f"FROM {image} {_INTERNAL_HINT}")


# --- BuildConfig and Build ----------------------------------------------------------------------


def _build_strategy_unsupported(spec: Mapping[str, Any], ctx: _Context) -> bool:
    strategy = spec.get("strategy")
    if isinstance(strategy, Mapping) and (
        strategy.get("type") == "JenkinsPipeline" or "jenkinsPipelineStrategy" in strategy
    ):
        ctx.add(
            "error",
            "spec.strategy",
            "JenkinsPipeline is not supported (deprecated in OpenShift): skipped; use a Docker or"
            " Source strategy, or run the pipeline in your CI",
        )
        return True
    return False


def _fix_build_spec(spec: dict[str, Any], ctx: _Context) -> None:
    """Write out what OpenShift defaults and the CRD wants explicit."""
    source = spec.get("source")
    if isinstance(source, dict) and not source.get("type"):
        inferred = next(
            (
                t
                for key, t in (
                    ("git", "Git"),
                    ("dockerfile", "Dockerfile"),
                    ("binary", "Binary"),
                    ("images", "Image"),
                )
                if source.get(key) is not None
            ),
            "None",
        )
        source["type"] = inferred
        ctx.add("info", "spec.source.type", f"set to {inferred} (OpenShift infers it)")
    strategy = spec.get("strategy")
    if isinstance(strategy, dict):
        kind = strategy.get("type")
        if not kind:
            present = [t for t, block in _STRATEGY_BLOCKS.items() if block in strategy]
            if len(present) == 1:
                strategy["type"] = kind = present[0]
                ctx.add("info", "spec.strategy.type", f"set to {kind} from its block")
        block = _STRATEGY_BLOCKS.get(str(kind))
        if block and strategy.get(block) is None:
            # OpenShift defaults an empty block for its type; the CRD wants it written.
            strategy[block] = {}
            ctx.add("info", f"spec.strategy.{block}", "added as {} (OpenShift's default)")
    for i, trigger in enumerate(spec.get("triggers") or []):
        if not isinstance(trigger, dict):
            continue
        given = trigger.get("type")
        proper = _TRIGGER_TYPES.get(str(given).lower()) if isinstance(given, str) else None
        if proper and proper != given:
            trigger["type"] = proper
            ctx.add("info", f"spec.triggers[{i}].type", f"{given!r} written as {proper!r}")
        if proper:
            _fix_trigger_block(trigger, proper, f"spec.triggers[{i}]", ctx)
        if proper == "ImageChange" and trigger.get("imageChange") is None:
            trigger["imageChange"] = {}
            ctx.add(
                "info",
                f"spec.triggers[{i}].imageChange",
                "added as {} (watch the strategy's from)",
            )
    _fix_image_stream_tags(spec, "spec", ctx)


def _fix_trigger_block(trigger: dict[str, Any], kind: str, path: str, ctx: _Context) -> None:
    """Put a trigger's body under the key its type wants (``bitbucket`` for Bitbucket).

    A re-cased key (``gitHub``) is renamed; the body of a webhook under another
    webhook's key (``gitlab:`` in a Bitbucket trigger, after ``BitBucket`` was
    re-cased) moves when it is the only one; bodies a trigger of this type
    never reads are removed. Each change is a note.
    """
    right = _TRIGGER_BLOCKS.get(kind)
    if right is None:
        return
    blocks = {block.lower(): block for block in _TRIGGER_BLOCKS.values()}
    for key in [k for k in trigger if k != right and k.lower() == right.lower()]:
        if trigger.get(right) is None:
            trigger[right] = trigger.pop(key)
            ctx.add("info", f"{path}.{key}", f"written as {right!r}")
    webhook_blocks = {_TRIGGER_BLOCKS[t] for t in _WEBHOOK_TYPES}
    others = [
        k
        for k in trigger
        if k != right
        and k.lower() in blocks
        and blocks[k.lower()] != right
        and blocks[k.lower()] in webhook_blocks
        and trigger.get(k) is not None
    ]
    if kind in _WEBHOOK_TYPES and trigger.get(right) is None and len(others) == 1:
        [wrong] = others
        trigger[right] = trigger.pop(wrong)
        ctx.add("info", f"{path}.{wrong}", f"moved to {right}: the trigger's type is {kind}")
        return
    for wrong in others:
        if trigger.get(right) is None:
            break
        del trigger[wrong]
        ctx.add("warning", f"{path}.{wrong}", f"removed: a {kind} trigger reads only {right}")


def _fix_image_stream_tags(value: Any, path: str, ctx: _Context) -> None:
    """``kind: ImageStreamTag`` references without a tag get ``:latest``, as OpenShift reads them.

    Strategy ``from``, ``triggers[].imageChange.from``, ``source.images[].from``,
    ``output.to``, a runtime image: wherever a reference sits in a build spec.
    """
    if isinstance(value, dict):
        name = value.get("name")
        if (
            value.get("kind") == "ImageStreamTag"
            and isinstance(name, str)
            and name
            and ":" not in name
            and "@" not in name
        ):
            value["name"] = f"{name}:latest"
            ctx.add("info", _join(path, "name"), f"{name!r} written as {value['name']!r}")
        for key, item in value.items():
            if key not in ("env", "buildArgs", "dockerfile", "nodeSelector"):
                _fix_image_stream_tags(item, _join(path, str(key)), ctx)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _fix_image_stream_tags(item, f"{path}[{i}]", ctx)


def _env_value_from(block: Mapping[str, Any], path: str, ctx: _Context) -> None:
    for field_name in ("env", "buildArgs"):
        for i, entry in enumerate(block.get(field_name) or []):
            if isinstance(entry, Mapping) and entry.get("valueFrom"):
                ctx.add(
                    "warning",
                    f"{path}.{field_name}[{i}].valueFrom",
                    f"{entry.get('name')}: valueFrom is not resolved: the build fails"
                    " (InvalidEnvironment); put the value in `value`",
                )


def _strategy_from(spec: Mapping[str, Any]) -> Mapping[str, Any] | None:
    strategy = spec.get("strategy")
    if not isinstance(strategy, Mapping):
        return None
    block = strategy.get(_STRATEGY_BLOCKS.get(str(strategy.get("type")), ""))
    found = block.get("from") if isinstance(block, Mapping) else None
    return found if isinstance(found, Mapping) else None


def _notes_build_spec(spec: Mapping[str, Any], ctx: _Context, *, is_build: bool) -> None:
    if is_build:
        ctx.add(
            "warning",
            "",
            "a Build is one run: applying it starts a build at once. Convert the BuildConfig"
            " and start builds with `headwater start-build <bc>` instead",
        )
    account = spec.get("serviceAccount")
    if account == "builder":
        ctx.add(
            "warning",
            "spec.serviceAccount",
            "'builder' is OpenShift's build account and does not exist on plain Kubernetes;"
            " Headwater's default is `default`: create it (`kubectl create serviceaccount"
            " builder`, with a push secret for the registry) or drop the field",
        )
    source = spec.get("source") or {}
    if isinstance(source, Mapping):
        if source.get("images"):
            ctx.add(
                "warning", "spec.source.images", "not honoured: nothing is copied out of images"
            )
        if source.get("type") == "Image":
            ctx.add("warning", "spec.source.type", "Image: the build context is empty")
    strategy = spec.get("strategy") or {}
    if isinstance(strategy, Mapping):
        for kind, block_name in _STRATEGY_BLOCKS.items():
            block = strategy.get(block_name)
            if not isinstance(block, Mapping):
                continue
            path = f"spec.strategy.{block_name}"
            if block.get("volumes"):
                ctx.add("warning", f"{path}.volumes", "not honoured: nothing is mounted")
            policy = block.get("imageOptimizationPolicy")
            if policy and policy != "None":
                ctx.add(
                    "warning",
                    f"{path}.imageOptimizationPolicy",
                    f"{policy}: not honoured, layers are never squashed",
                )
            if block.get("exposeDockerSocket"):
                ctx.add(
                    "warning",
                    f"{path}.exposeDockerSocket",
                    "there is no Docker socket: the build fails (InvalidStrategy)",
                )
            if block.get("buildAPIVersion"):
                ctx.add(
                    "warning",
                    f"{path}.buildAPIVersion",
                    "ignored: BUILD is always a build.headwater.dev/v1 Build",
                )
            _env_value_from(block, path, ctx)
            source_ref = block.get("from")
            if (
                isinstance(source_ref, Mapping)
                and source_ref.get("kind") == "ImageStreamTag"
                and source_ref.get("namespace") == "openshift"
            ):
                ctx.add(
                    "warning",
                    f"{path}.from",
                    f"openshift/{source_ref.get('name')}: OpenShift ships builder images in the"
                    " `openshift` namespace; Headwater does not. Import it first:"
                    f" `headwater import-image {source_ref.get('name')} -n openshift"
                    " --from=<builder image> --confirm`"
                    + (" (Source strategy)" if kind == "Source" else ""),
                )
    if spec.get("mountTrustedCA"):
        ctx.add("warning", "spec.mountTrustedCA", "not honoured: no CA bundle is mounted")
    _notes_internal_registry(spec, ctx)
    hook = spec.get("postCommit")
    if (
        isinstance(hook, Mapping)
        and hook.get("args")
        and not hook.get("command")
        and not hook.get("script")
    ):
        ctx.add(
            "warning",
            "spec.postCommit.args",
            "args alone run as a command through `/bin/sh -c`, not as arguments to the image's"
            " entrypoint as on OpenShift: write the entrypoint in `command` too, or use `script`",
        )
    output = spec.get("output") or {}
    target = output.get("to") if isinstance(output, Mapping) else None
    if isinstance(target, Mapping):
        name = str(target.get("name") or "")
        if target.get("kind") == "DockerImage" and name.startswith(OPENSHIFT_INTERNAL_REGISTRIES):
            ctx.add(
                "warning",
                "spec.output.to",
                f"{name} is OpenShift's internal registry, which does not exist here; push to an"
                " ImageStreamTag (the operator's registry) or a registry of yours",
            )
        if target.get("kind") == "ImageStreamTag" and not output.get("pushSecret"):
            ctx.add(
                "info",
                "spec.output.pushSecret",
                "none: pushed to the operator's registry with a docker-config secret of the"
                " build's service account (OpenShift: builder's), else anonymously",
            )
    strategy_from = _strategy_from(spec)
    for i, trigger in enumerate(spec.get("triggers") or []):
        if not isinstance(trigger, Mapping):
            continue
        block = trigger.get(_TRIGGER_BLOCKS.get(str(trigger.get("type")), ""))
        if (
            trigger.get("type") == "ImageChange"
            and not (isinstance(block, Mapping) and block.get("from"))
            and (strategy_from or {}).get("kind") != "ImageStreamTag"
        ):
            ctx.add(
                "warning",
                f"spec.triggers[{i}]",
                "ImageChange without `from` watches the strategy's from, which is not an"
                " ImageStreamTag: it never fires (name the tag in imageChange.from)",
            )
        if trigger.get("type") in _WEBHOOK_TYPES:
            ctx.add(
                "warning",
                f"spec.triggers[{i}]",
                f"{trigger.get('type')} webhook: "
                + (
                    "the operator serves it at its own address, not the API server's: point"
                    " the Git host at the URL `headwater webhooks <bc>` prints"
                    if WEBHOOKS_SERVED
                    else "accepted, but the operator serves no build webhook endpoint yet;"
                    " start builds with `headwater start-build`"
                ),
            )
            if isinstance(block, Mapping) and block.get("secret") and block.get("secretReference"):
                ctx.add(
                    "warning",
                    f"spec.triggers[{i}].{_TRIGGER_BLOCKS[str(trigger.get('type'))]}",
                    "both secret and secretReference: either one is accepted as the URL secret,"
                    " so the inline secret still starts builds: remove `secret`",
                )
            elif isinstance(block, Mapping) and block.get("secret"):
                ctx.add(
                    "warning",
                    f"spec.triggers[{i}].{_TRIGGER_BLOCKS[str(trigger.get('type'))]}.secret",
                    "the secret is written in the spec (deprecated): move it to a Secret's"
                    " WebHookSecretKey key and name it in secretReference",
                )


# --- workloads ----------------------------------------------------------------------------------


def _check_workload(obj: Mapping[str, Any], kind: str, ctx: _Context) -> None:
    """Point out images on OpenShift's internal registry no trigger will replace."""
    spec: Any = obj
    for key in WORKLOAD_POD_SPECS[kind]:
        spec = spec.get(key) if isinstance(spec, Mapping) else None
    if not isinstance(spec, Mapping):
        return
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    trigger_text = next((str(annotations[k]) for k in TRIGGER_ANNOTATIONS if k in annotations), "")
    try:
        triggers = json.loads(trigger_text) if trigger_text.strip() else []
    except json.JSONDecodeError:
        ctx.add("warning", "metadata.annotations", "the image trigger annotation is not JSON")
        triggers = []
    covered = " ".join(str(t.get("fieldPath") or "") for t in triggers if isinstance(t, Mapping))
    namespace = (obj.get("metadata") or {}).get("namespace")
    here = namespace or "<this namespace>"
    for i, trigger in enumerate(triggers if isinstance(triggers, list) else []):
        source = trigger.get("from") if isinstance(trigger, Mapping) else None
        other = _other_namespace(source, namespace)
        if other and isinstance(source, Mapping):
            ctx.add(
                "warning",
                "metadata.annotations",
                f"trigger {i + 1} follows {other}/{source.get('name')}: applied only once the"
                f" service accounts of {here} may get ImageStreams in {other}; "
                + _grant("headwater-view", other, f"--group=system:serviceaccounts:{here}"),
            )
    prefix = ".".join(WORKLOAD_POD_SPECS[kind])
    for list_name in ("initContainers", "containers"):
        for i, container in enumerate(spec.get(list_name) or []):
            if not isinstance(container, Mapping):
                continue
            image = str(container.get("image") or "")
            if not image.startswith(OPENSHIFT_INTERNAL_REGISTRIES):
                continue
            name = str(container.get("name") or "")
            if f'@.name=="{name}"' in covered or f"{list_name}[{i}]" in covered:
                continue
            stream_tag = image.rsplit("/", 1)[-1]
            if ":" not in stream_tag and "@" not in stream_tag:
                stream_tag += ":latest"
            suggestion = json.dumps(
                [
                    {
                        "from": {"kind": "ImageStreamTag", "name": stream_tag},
                        "fieldPath": f'{prefix}.{list_name}[?(@.name=="{name}")].image',
                    }
                ],
                separators=(",", ":"),
            )
            ctx.add(
                "warning",
                f"{prefix}.{list_name}[{i}].image",
                f"{image} is OpenShift's internal registry, which does not exist here: let the"
                f" ImageStreamTag set the image with the annotation image.openshift.io/triggers:"
                f" '{suggestion}'",
            )


# --- documents ----------------------------------------------------------------------------------


def parse_documents(text: str, source: str) -> list[Any]:
    """The non-empty YAML (or JSON) documents of ``text``; ConvertError if they are not objects."""
    docs: list[Any] | None = None
    if text.lstrip().startswith("{"):
        # JSON first: YAML refuses the tab indentation JSON files often have.
        try:
            docs = [json.loads(text)]
        except json.JSONDecodeError:
            docs = None
    try:
        if docs is None:
            docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConvertError(f"{source}: not valid YAML{where}: {problem}") from None
    for i, doc in enumerate(docs):
        if not isinstance(doc, dict) or not doc.get("apiVersion") or not doc.get("kind"):
            raise ConvertError(
                f"{source}: document {i + 1} is not a Kubernetes object (apiVersion and kind)"
            )
    return docs


def convert_text(
    text: str, source: str, schemas: Schemas | None, options: Options | None = None
) -> Converted:
    """Every document of one file converted, in order."""
    opts = options or Options()
    tallied, known = len(opts.tallies), set(opts.parameters)
    documents: list[Any] = []
    notes: list[Note] = []
    docs = parse_documents(text, source)
    for i, doc in enumerate(docs):
        where = f"{source}[{i + 1}]" if len(docs) > 1 else source
        result, doc_notes = convert_object(doc, schemas, where, opts)
        documents.extend(result)
        notes.extend(doc_notes)
    return Converted(source, documents, notes, opts.tallies[tallied:], opts.parameters - known)


class _Dumper(yaml.SafeDumper):
    """Block style for multi-line strings (inline Dockerfiles, scripts), as people write them."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _represent_str)


def dump_yaml(documents: Sequence[Any]) -> str:
    """A multi-document YAML stream, keys in their original order."""
    return "---\n".join(
        yaml.dump(doc, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=4096)
        for doc in documents
    )


def dump_json(documents: Sequence[Any]) -> str:
    """One object as itself; several as a ``v1`` List (what kubectl prints for many).

    Lists among several documents give their items to the one List: kubectl
    does not read a List inside a List.
    """
    if len(documents) == 1:
        return json.dumps(documents[0], indent=2) + "\n"
    items: list[Any] = []
    for doc in documents:
        nested = doc.get("items") if isinstance(doc, dict) and doc.get("kind") == "List" else None
        items.extend(nested if isinstance(nested, list) else [doc])
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items}, indent=2) + "\n"


def manifest_files(path: Path, recursive: bool) -> Iterator[Path]:
    """``path`` itself, or the .yaml/.yml/.json files of a directory (sorted, like kubectl -f)."""
    if not path.is_dir():
        yield path
        return
    pattern = "**/*" if recursive else "*"
    for found in sorted(path.glob(pattern)):
        if found.is_file() and found.suffix in (".yaml", ".yml", ".json"):
            yield found


def convert_paths(
    paths: Iterable[str],
    recursive: bool,
    schemas: Schemas | None,
    stdin: str = "",
    options: Options | None = None,
) -> tuple[list[Converted], list[str]]:
    """Every file converted, and the messages of those that could not be read or parsed.

    A file with no objects at all (empty, only comments) is such an error too.
    """
    results: list[Converted] = []
    errors: list[str] = []
    for given in paths:
        files = [Path("-")] if given == "-" else list(manifest_files(Path(given), recursive))
        if not files:
            errors.append(f"{given}: no .yaml, .yml or .json files in it")
        for path in files:
            shown = "<stdin>" if str(path) == "-" else str(path)
            try:
                text = stdin if str(path) == "-" else path.read_text(encoding="utf-8")
                if not parse_documents(text, shown):
                    errors.append(f"{shown}: no Kubernetes objects in it")
                    continue
                results.append(convert_text(text, shown, schemas, options))
            except (OSError, UnicodeDecodeError) as exc:
                errors.append(f"{shown}: cannot read: {getattr(exc, 'strerror', None) or exc}")
            except ConvertError as exc:
                errors.append(str(exc))
    return results, errors


# --- the command --------------------------------------------------------------------------------


@click.command("convert")
@click.option(
    "-f",
    "--filename",
    "paths",
    multiple=True,
    required=True,
    type=click.Path(allow_dash=True),
    help="File or directory of manifests (repeatable); - reads stdin.",
)
@click.option(
    "-o",
    "--output",
    type=click.Choice(["yaml", "json"]),
    default="yaml",
    show_default=True,
    help="Output format.",
)
@click.option("-R", "--recursive", is_flag=True, help="Read directories recursively.")
@click.option(
    "--crds",
    "crd_dir",
    type=click.Path(path_type=Path),
    help="Directory of Headwater's CRD files to validate against (default: the ones installed"
    " with this CLI, the same as the repository's crds/).",
)
@click.option(
    "-p",
    "--param",
    "param_args",
    multiple=True,
    metavar="NAME=VALUE",
    help="Process Templates with this parameter value (repeatable), as oc process does.",
)
@click.option(
    "--param-file",
    "param_files",
    multiple=True,
    type=click.Path(allow_dash=False),
    help="NAME=VALUE lines of parameter values (repeatable); --param wins over it.",
)
@click.option(
    "--process",
    is_flag=True,
    help="Process Templates even without --param (defaults and generated values only).",
)
@click.option("--strict", is_flag=True, help="Exit 1 on warnings too, not only on errors.")
@click.option(
    "--server-dry-run",
    is_flag=True,
    help="Also apply every object with dryRun=All (nothing is stored) on the current cluster"
    " and report what the API server says.",
)
@cluster_options
def convert(
    paths: tuple[str, ...],
    output: str,
    recursive: bool,
    crd_dir: Path | None,
    param_args: tuple[str, ...],
    param_files: tuple[str, ...],
    process: bool,
    strict: bool,
    server_dry_run: bool,
    namespace: str | None,
    context: str | None,
    kubeconfig: str | None,
) -> None:
    """Rewrite OpenShift manifests for Headwater; say on stderr what differs.

    ImageStreams, BuildConfigs and Builds (image.openshift.io/v1,
    build.openshift.io/v1, or legacy v1) become image.headwater.dev/v1 and
    build.headwater.dev/v1. Fields Headwater's CRDs do not have are removed,
    server-set metadata and status too; fields accepted but not honoured, or
    that mean something else here, are reported. DeploymentConfigs become
    apps/v1 Deployments with the image.openshift.io/triggers annotation.
    Templates keep their parameter references and have their objects
    converted, or with --param/--param-file/--process are processed as
    `oc process --local` does and their objects converted. Other objects pass
    through unchanged. The virtual ImageStreamTag-like kinds and
    JenkinsPipeline BuildConfigs are dropped, with what to use instead.

    \b
    Examples:
      headwater convert -f openshift/ | kubectl apply -f -
      oc get is,bc,dc -o yaml | headwater convert -f - > headwater.yaml
      headwater convert -f template.yaml -p NAME=web -p REPLICAS=2

    Exit status: 0 when everything was converted or left as it is; 1 when
    an object was dropped or would be refused (an error note), on any
    warning with --strict, or when an input is missing, empty or not
    Kubernetes manifests (one line on stderr, nothing on stdout); 2 for
    usage errors.
    """
    for given in paths:
        # A missing input is a failed request (exit 1, one line), not bad usage.
        if given != "-" and not Path(given).exists():
            raise click.ClickException(f"-f {given}: no such file or directory")
    params: dict[str, str] | None = None
    try:
        if param_files or param_args or process:
            params = {}
            for name in param_files:
                try:
                    text = Path(name).read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError) as exc:
                    raise templates.TemplateError(
                        f"--param-file {name}: cannot read: {getattr(exc, 'strerror', None) or exc}"
                    ) from None
                params.update(templates.parse_param_lines(text, name))
            params.update(templates.parse_param_args(param_args))
    except templates.TemplateError as exc:
        raise click.ClickException(str(exc)) from None
    if crd_dir is not None and not crd_dir.is_dir():
        raise click.ClickException(f"--crds {crd_dir}: not a directory")
    try:
        schemas = load_schemas(crd_dir)
    except ConvertError as exc:
        raise click.ClickException(str(exc)) from None
    stdin = sys.stdin.read() if "-" in paths else ""
    options = Options(params=params)
    results, errors = convert_paths(paths, recursive, schemas, stdin, options)
    unknown = sorted(set(params or {}) - options.parameters)
    if unknown and not errors:
        errors.append(
            f"unknown parameter name{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}:"
            " no Template in the input has " + ("them" if len(unknown) > 1 else "it")
        )
    if errors:
        for message in errors:
            click.echo(f"error: {message}", err=True)
        sys.exit(1)
    notes = [note for result in results for note in result.notes]
    tallies = [tally for result in results for tally in result.tallies]
    for line in convert_report.render(notes, tallies):
        click.echo(line, err=True)
    documents = [doc for result in results for doc in result.documents]
    refused = server_dry_run and _report_server_dry_run(documents, namespace, context, kubeconfig)
    text = dump_json(documents) if output == "json" else dump_yaml(documents)
    click.echo(text, nl=False)
    sys.exit(1 if refused else convert_report.exit_status(notes, strict))


def _report_server_dry_run(
    documents: Sequence[Any], namespace: str | None, context: str | None, kubeconfig: str | None
) -> bool:
    """One stderr line per object: what the API server says of it (nothing is stored).

    True when it refused one.
    """
    client, chosen = connect(kubeconfig, context, namespace)
    refused = False
    for result in server_dry_run(documents, client, chosen):
        severity = "info" if result.accepted else "error"
        refused = refused or not result.accepted
        click.echo(f"{severity}: server dry run: {result.obj}: {result.message}", err=True)
    return refused
