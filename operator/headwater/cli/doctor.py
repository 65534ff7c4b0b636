"""``headwater doctor``: the usual reasons an app does not come up, each with its fix.

The seed lists them: ImagePullBackOff from a registry the pods' service
account has no pull secret for, builder ImageStreamTags that do not exist,
missing Git and push secrets, imports that fail (TLS, credentials), builds
that wait or fail. :func:`diagnose` looks for them in a :class:`Snapshot` of
one namespace (plain dicts, as the API returns them) and returns
:class:`Finding` s: what is wrong with which object, why, and the commands
that fix it. It is pure; :func:`gather` reads the snapshot (read-only: list
and get, nothing else) and the click command prints the findings.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import click

from headwater.builds.model import buildconfig_of
from headwater.cli.kube import cluster_options
from headwater.imports.lookup import ADMISSION_CONFIGURATION, short_name
from headwater.registry.credentials import (
    PULL_SECRET_TYPES,
    Credentials,
    CredentialsError,
    credentials_for,
    parse_docker_config_secret,
)
from headwater.registry.reference import Reference, ReferenceError, parse_reference
from headwater.workloads.triggers import TRIGGER_ANNOTATIONS

Severity = Literal["error", "warning"]
StreamKey = tuple[str, str]

PULL_FAILURES = frozenset({"ErrImagePull", "ImagePullBackOff"})
BUILD_NUMBER_ANNOTATIONS = ("build.headwater.dev/build-number", "openshift.io/build.number")
_STRATEGY_BLOCKS = ("dockerStrategy", "sourceStrategy", "customStrategy")
_WEBHOOK_BLOCKS = ("github", "gitlab", "bitbucket", "generic")

# What the kubelet's pull error says, in containerd's and CRI-O's words.
_AMBIGUOUS = re.compile(r"may require authorization|repository does not exist or", re.I)
_AUTH = re.compile(
    r"\b401\b|\b403\b|unauthori[sz]ed|forbidden|denied|failed to authorize|"
    r"authentication required|no basic auth credentials|authorization failed",
    re.I,
)
_NOT_FOUND = re.compile(r"not found|manifest unknown|name unknown|code = NotFound", re.I)
_TLS = re.compile(r"x509|certificate|tls:|HTTP response to HTTPS client", re.I)
_UNREACHABLE = re.compile(
    r"connection refused|no such host|i/o timeout|network is unreachable|"
    r"no route to host|context deadline exceeded|dial tcp",
    re.I,
)
Cause = Literal["auth", "ambiguous", "not-found", "tls", "unreachable", "other"]


@dataclass(frozen=True)
class Finding:
    """One problem: the object, what is wrong, why, and the commands that fix it."""

    severity: Severity
    obj: str
    """``kind/name``, as kubectl names objects."""
    problem: str
    why: tuple[str, ...] = ()
    fixes: tuple[str, ...] = ()
    topic: str = ""
    """What the problem is about (``sourceSecret``, ``output``...), for folding build waits in."""

    def lines(self) -> list[str]:
        out = [f"{self.severity}: {self.obj}: {self.problem}"]
        out += [f"  why: {line}" for line in self.why]
        out += [f"  fix: {line}" for line in self.fixes]
        return out


@dataclass(frozen=True)
class Snapshot:
    """What doctor reads of one namespace. ``None`` for a list it could not read."""

    namespace: str
    pods: Sequence[Mapping[str, Any]] = ()
    events: Sequence[Mapping[str, Any]] = ()
    workloads: Sequence[Mapping[str, Any]] = ()
    service_accounts: Sequence[Mapping[str, Any]] | None = ()
    secrets: Sequence[Mapping[str, Any]] | None = ()
    config_maps: Sequence[Mapping[str, Any]] | None = ()
    imagestreams: Sequence[Mapping[str, Any]] | None = ()
    """This namespace's streams."""
    other_streams: Mapping[StreamKey, Mapping[str, Any] | None] = field(default_factory=dict)
    """Streams of other namespaces that objects here refer to: the stream, or None when
    it does not exist; absent when it could not be read."""
    buildconfigs: Sequence[Mapping[str, Any]] = ()
    builds: Sequence[Mapping[str, Any]] = ()
    admission_webhook: bool | None = None
    """Whether the MutatingWebhookConfiguration ``headwater.dev`` (lookupPolicy.local at
    admission) exists; None when that is not known (not readable)."""
    missing_namespaces: frozenset[str] = frozenset()
    """Namespaces that objects here refer to and that do not exist."""


# --- small readers -------------------------------------------------------------------------------


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = obj.get("metadata")
    return metadata if isinstance(metadata, Mapping) else {}


def _name(obj: Mapping[str, Any]) -> str:
    return str(_meta(obj).get("name") or "")


def _names(objs: Sequence[Mapping[str, Any]] | None) -> set[str] | None:
    return None if objs is None else {_name(o) for o in objs}


def _refs(items: Any) -> list[str]:
    """Names of a list of LocalObjectReferences."""
    return [str(r.get("name")) for r in items or [] if isinstance(r, Mapping) and r.get("name")]


def _split_stream_tag(name: str) -> tuple[str, str]:
    stream, _, tag = name.partition(":")
    return stream, tag or "latest"


def _host_secret_name(host: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", host.lower()).strip("-")[:50] + "-pull"


class _World:
    """Look-ups over a Snapshot that every check shares."""

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap
        self.ns = snap.namespace
        self.secrets = None if snap.secrets is None else {_name(s): s for s in snap.secrets}
        self.accounts = (
            None if snap.service_accounts is None else {_name(a): a for a in snap.service_accounts}
        )
        self.config_maps = _names(snap.config_maps)
        self.streams: dict[StreamKey, Mapping[str, Any] | None] = dict(snap.other_streams)
        if snap.imagestreams is not None:
            for stream in snap.imagestreams:
                self.streams[(self.ns, _name(stream))] = stream
        self.registries: set[str] = set()
        self.repositories: dict[str, str] = {}
        """``<registry>/<ns>/<stream>`` → stream name, for this namespace's streams."""
        for stream in snap.imagestreams or []:
            repository = str((stream.get("status") or {}).get("dockerImageRepository") or "")
            if repository:
                self.repositories[repository] = _name(stream)
                self.registries.add(repository.split("/", 1)[0])

    def stream(self, namespace: str, name: str) -> Mapping[str, Any] | Literal[False] | None:
        """The stream; None when it does not exist; False when that is not known."""
        key = (namespace, name)
        if key in self.streams:
            return self.streams[key]
        if namespace == self.ns and self.snap.imagestreams is not None:
            return None
        return False

    def secret_missing(self, name: str) -> bool:
        return self.secrets is not None and name not in self.secrets

    def keyring(self, names: Iterable[str]) -> list[Mapping[str, Credentials]]:
        keyring: list[Mapping[str, Credentials]] = []
        for name in names:
            secret = (self.secrets or {}).get(name)
            if secret is None or secret.get("type") not in PULL_SECRET_TYPES:
                continue
            try:
                keyring.append(
                    parse_docker_config_secret(str(secret["type"]), dict(secret.get("data") or {}))
                )
            except CredentialsError:
                continue
        return keyring

    def has_login(self, image: Reference, names: Iterable[str]) -> bool | None:
        """Whether one of the named pull secrets has a login for ``image`` (None: unknown)."""
        if self.secrets is None:
            return None
        return bool(credentials_for(image, self.keyring(names)))

    def unlinked_logins(self, image: Reference, linked: Iterable[str]) -> list[str]:
        """Docker-config secrets of the namespace with a login for ``image``, not linked yet."""
        skip = set(linked)
        return [
            name
            for name in sorted(self.secrets or {})
            if name not in skip and credentials_for(image, self.keyring([name]))
        ]

    def account_pull_secrets(self, account: str) -> list[str]:
        return _refs(((self.accounts or {}).get(account) or {}).get("imagePullSecrets"))

    def pull_secret_fixes(self, image: Reference, account: str) -> list[str]:
        """Link a secret the namespace has for the registry, else create one and link it."""
        ns = f"-n {self.ns}"
        candidates = self.unlinked_logins(image, self.account_pull_secrets(account))
        if candidates:
            return [f"headwater secrets link {account} {candidates[0]} --for=pull {ns}"]
        name = _host_secret_name(image.domain)
        return [
            f"kubectl create secret docker-registry {name} --docker-server={image.domain}"
            f" --docker-username=<user> --docker-password=<password> {ns}",
            f"headwater secrets link {account} {name} --for=pull {ns}",
        ]

    def builders_of(self, stream: str, tag: str) -> list[Mapping[str, Any]]:
        """BuildConfigs of this namespace whose output is ``stream:tag`` here."""
        found = []
        for bc in self.snap.buildconfigs:
            to = ((bc.get("spec") or {}).get("output") or {}).get("to") or {}
            if to.get("kind") != "ImageStreamTag":
                continue
            if (to.get("namespace") or self.ns) != self.ns:
                continue
            if _split_stream_tag(str(to.get("name") or "")) == (stream, tag):
                found.append(bc)
        return found

    def builds_of(self, bc: str) -> list[Mapping[str, Any]]:
        """The BuildConfig's builds, newest first."""
        mine = [b for b in self.snap.builds if _buildconfig_of(b) == bc]
        return sorted(mine, key=_build_number, reverse=True)


def _buildconfig_of(build: Mapping[str, Any]) -> str:
    """The Build's BuildConfig as the operator reads it (full names first), else its status."""
    return buildconfig_of(build) or str(
        ((build.get("status") or {}).get("config") or {}).get("name") or ""
    )


def _build_number(build: Mapping[str, Any]) -> int:
    annotations = _meta(build).get("annotations") or {}
    for key in BUILD_NUMBER_ANNOTATIONS:
        if str(annotations.get(key) or "").isdigit():
            return int(annotations[key])
    suffix = _name(build).rpartition("-")[2]
    return int(suffix) if suffix.isdigit() else 0


def _phase(build: Mapping[str, Any]) -> str:
    return str((build.get("status") or {}).get("phase") or "New")


def tag_image(stream: Mapping[str, Any] | None, tag: str) -> str | None:
    """The newest image reference of ``tag`` in the stream's status, if any."""
    for entry in (stream or {}).get("status", {}).get("tags") or []:
        if entry.get("tag") == tag and entry.get("items"):
            return str(entry["items"][0].get("dockerImageReference") or "") or None
    return None


def _import_condition(stream: Mapping[str, Any] | None, tag: str) -> Mapping[str, Any] | None:
    for entry in (stream or {}).get("status", {}).get("tags") or []:
        if entry.get("tag") != tag:
            continue
        for condition in entry.get("conditions") or []:
            if condition.get("type") == "ImportSuccess":
                return condition  # type: ignore[no-any-return]
    return None


def _spec_tag(stream: Mapping[str, Any] | None, tag: str) -> Mapping[str, Any] | None:
    for entry in (stream or {}).get("spec", {}).get("tags") or []:
        if entry.get("name") == tag:
            return entry  # type: ignore[no-any-return]
    return None


def classify(message: str) -> Cause:
    """What a pull (or import) error message means."""
    if _AMBIGUOUS.search(message):
        return "ambiguous"
    if _TLS.search(message):
        return "tls"
    if _AUTH.search(message):
        return "auth"
    if _NOT_FOUND.search(message):
        return "not-found"
    if _UNREACHABLE.search(message):
        return "unreachable"
    return "other"


_PULL_NOISE = re.compile(
    r'Back-off pulling image "[^"]*": |ErrImagePull: |rpc error: code = \w+ desc = |'
    r'failed to pull and unpack image "[^"]*": |failed to resolve reference "[^"]*": |'
    r'Failed to pull image "[^"]*": '
)


def pull_reason(message: str) -> str:
    """The innermost part of a kubelet pull error: what the registry or network said."""
    return _PULL_NOISE.sub("", message).strip()


def _short(message: str, limit: int = 300) -> str:
    message = " ".join(message.split())
    return message if len(message) <= limit else message[: limit - 1] + "…"


# --- pods ----------------------------------------------------------------------------------------


def _pod_owner(pod: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(kind, name)`` of the workload that made the pod: a ReplicaSet's Deployment is
    its name less the pod-template-hash, which saves reading ReplicaSets."""
    meta = _meta(pod)
    for owner in meta.get("ownerReferences") or []:
        if not owner.get("controller"):
            continue
        kind, name = str(owner.get("kind")), str(owner.get("name"))
        template_hash = (meta.get("labels") or {}).get("pod-template-hash")
        if kind == "ReplicaSet" and template_hash and name.endswith(f"-{template_hash}"):
            return "Deployment", name.removesuffix(f"-{template_hash}")
        return kind, name
    return None


def _pull_error(snap: Snapshot, pod: str, container: str, waiting: Mapping[str, Any]) -> str:
    """The kubelet's reason: in the waiting message (Kubernetes ≥ 1.30), else the events."""
    message = str(waiting.get("message") or "")
    if re.sub(r'^Back-off pulling image "[^"]*"', "", message).strip(": "):
        return message
    for event in reversed(snap.events):
        involved = event.get("involvedObject") or {}
        text = str(event.get("message") or "")
        if (
            involved.get("name") == pod
            and container in str(involved.get("fieldPath") or container)
            and text.startswith("Failed to pull image")
        ):
            return text
    return message


def _restart_fix(owner: tuple[str, str] | None, pods: Sequence[str], ns: str) -> str:
    if owner and owner[0] in ("Deployment", "StatefulSet", "DaemonSet"):
        return (
            f"kubectl rollout restart {owner[0].lower()}/{owner[1]} -n {ns}"
            "   # new pods get the linked secret"
        )
    return f"kubectl delete pod {' '.join(pods)} -n {ns}   # and create it again, with the secret"


def _pods(world: _World) -> list[Finding]:
    snap = world.snap
    ns = world.ns
    triggered = {
        ("Deployment" if w.get("kind") is None else str(w.get("kind")), _name(w))
        for w in snap.workloads
        if any(k in (_meta(w).get("annotations") or {}) for k in TRIGGER_ANNOTATIONS)
    }
    groups: dict[tuple[Any, ...], list[str]] = defaultdict(list)
    details: dict[tuple[Any, ...], tuple[Mapping[str, Any], str, str, Mapping[str, Any]]] = {}
    for pod in snap.pods:
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        spec = pod.get("spec") or {}
        images = {
            str(c.get("name")): str(c.get("image") or "")
            for key in ("initContainers", "containers")
            for c in spec.get(key) or []
        }
        status = pod.get("status") or {}
        owner = _pod_owner(pod)
        for cs in [
            *(status.get("initContainerStatuses") or []),
            *(status.get("containerStatuses") or []),
        ]:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            reason = str(waiting.get("reason") or "")
            if reason not in PULL_FAILURES and reason != "InvalidImageName":
                continue
            container = str(cs.get("name"))
            image = images.get(container, str(cs.get("image") or ""))
            if reason == "InvalidImageName" and not image.strip() and owner in triggered:
                # The placeholder new-app writes: the workload check says what it waits for.
                continue
            key = (owner or ("Pod", _name(pod)), container, image, reason)
            groups[key].append(_name(pod))
            details.setdefault(key, (pod, container, image, waiting))
    findings = []
    for key, pod_names in groups.items():
        pod, container, image, waiting = details[key]
        owner = _pod_owner(pod)
        subject = f"{owner[0].lower()}/{owner[1]}" if owner else f"pod/{_name(pod)}"
        why: list[str] = []
        if owner:
            why.append(f"pods: {', '.join(sorted(pod_names))}")
        if key[3] == "InvalidImageName":
            findings.append(
                Finding(
                    "error",
                    subject,
                    f"container {container!r} has an invalid image name {image!r}",
                    (*why, _short(str(waiting.get("message") or ""))),
                    (
                        f"kubectl set image {subject} {container}=<image> -n {ns}"
                        if owner
                        else f"kubectl describe pod {_name(pod)} -n {ns}",
                    ),
                )
            )
            continue
        findings.append(
            _pull_finding(world, pod, owner, subject, container, image, waiting, why, pod_names)
        )
    return findings


def _pull_finding(
    world: _World,
    pod: Mapping[str, Any],
    owner: tuple[str, str] | None,
    subject: str,
    container: str,
    image: str,
    waiting: Mapping[str, Any],
    why: list[str],
    pod_names: Sequence[str],
) -> Finding:
    ns = world.ns
    error = _pull_error(world.snap, _name(pod), container, waiting)
    problem = f"container {container!r} cannot pull {image} ({waiting.get('reason')})"
    why.append(f"the node says: {_short(pull_reason(error))}")
    short = short_name(image)
    local = world.stream(ns, short[0]) if short else None
    if short and local:
        # `image: site:latest` of a stream here: the node pulled docker.io/library/site
        # because the name was never replaced. Say why, not that docker.io is unreachable.
        return _lookup_finding(world, pod, owner, subject, problem, why, pod_names, short, local)
    try:
        reference = parse_reference(image)
    except ReferenceError:
        return Finding(
            "error", subject, problem, tuple(why), (f"kubectl describe pod {_name(pod)} -n {ns}",)
        )
    spec = pod.get("spec") or {}
    account = str(spec.get("serviceAccountName") or "default")
    pod_login = world.has_login(reference, _refs(spec.get("imagePullSecrets")))
    account_login = world.has_login(reference, world.account_pull_secrets(account))
    cause = classify(error)
    host = reference.domain
    fixes: list[str] = []
    set_image = (
        f"kubectl set image {subject} {container}=<an image that exists> -n {ns}"
        if owner
        else f"kubectl delete pod {_name(pod)} -n {ns}   # and create it with an image that exists"
    )
    stream = world.repositories.get(reference.name)
    in_registry = host in world.registries
    origin = (
        f" (image stream {stream}'s repository)"
        if stream
        else " (the operator's registry)"
        if in_registry
        else ""
    )

    def secret_fixes() -> list[str]:
        if account_login:
            # Linked after the pod was made: the pod's own list is a copy taken at creation.
            why.append(
                f"service account {account!r} has a pull secret for {host} now, but this pod"
                " was created before it was linked"
            )
            return [_restart_fix(owner, pod_names, ns)]
        why.append(f"service account {account!r} has no pull secret for {host}{origin}")
        return [*world.pull_secret_fixes(reference, account), _restart_fix(owner, pod_names, ns)]

    if cause in ("auth", "ambiguous"):
        if pod_login:
            why.append(f"the pull secret for {host} is refused: its login is wrong or expired")
            fixes.append(
                f"kubectl create secret docker-registry <secret> --docker-server={host}"
                f" --docker-username=<user> --docker-password=<password> -n {ns}"
                " --dry-run=client -o yaml | kubectl apply -f -"
            )
        else:
            fixes += secret_fixes()
        if cause == "ambiguous":
            why.append(f"or {image} does not exist")
    elif cause == "not-found":
        tag = reference.tag or "latest"
        if stream:
            why.append(f"image stream {stream} has no {tag} in the registry yet")
            builders = world.builders_of(stream, tag)
            if builders:
                fixes.append(f"headwater start-build {_name(builders[0])} -n {ns}")
            else:
                fixes.append(
                    f"headwater import-image {stream}:{tag} --from=<image> --confirm -n {ns}"
                )
        else:
            why.append(f"{host} has no {reference.path}:{tag}")
            fixes.append(set_image)
        if pod_login is False and host != "docker.io":
            why.append(f"(if {host} hides images from anonymous pulls, it needs a pull secret:)")
            fixes += secret_fixes()
    elif cause == "tls":
        why.append(f"the nodes' container runtime does not trust {host} (or it serves plain HTTP)")
        fixes.append(
            f"on every node, trust {host} in the runtime (containerd:"
            f" /etc/containerd/certs.d/{host}/hosts.toml), or serve it with a trusted certificate"
        )
    elif cause == "unreachable":
        why.append(f"the node cannot reach {host}: check the name, the port and the network")
        fixes.append(
            f"curl -sS https://{reference.api_host}/v2/   # on a node: the registry must answer"
        )
    else:
        fixes.append(f"kubectl describe pod {_name(pod)} -n {ns}")
        if pod_login is False:
            fixes += secret_fixes()
    return Finding("error", subject, problem, tuple(why), tuple(fixes))


def _lookup_finding(
    world: _World,
    pod: Mapping[str, Any],
    owner: tuple[str, str] | None,
    subject: str,
    problem: str,
    why: list[str],
    pod_names: Sequence[str],
    short: tuple[str, str],
    stream: Mapping[str, Any],
) -> Finding:
    """A short name of an image stream of this namespace that was not resolved, and why."""
    ns = world.ns
    name, tag = short
    restart = _restart_fix(owner, pod_names, ns).partition("   #")[0] + (
        "   # lookup applies when the workload is written again"
    )
    why.append(
        f"{name}:{tag} names image stream {name} of this namespace, but the name was not"
        f" replaced by its image, so the node pulled docker.io/library/{name}:{tag}"
    )
    fixes: list[str] = []
    lookup = bool(((stream.get("spec") or {}).get("lookupPolicy") or {}).get("local"))
    tags = {str(t.get("name")) for t in (stream.get("spec") or {}).get("tags") or []}
    tags |= {str(t.get("tag")) for t in (stream.get("status") or {}).get("tags") or []}
    builders = world.builders_of(name, tag)
    provide = (
        f"headwater start-build {_name(builders[0])} -n {ns}"
        if builders
        else f"headwater import-image {name}:{tag} --from=<image> --confirm -n {ns}"
    )
    if not lookup:
        why.append(f"image stream {name} does not allow lookup (spec.lookupPolicy.local is not"
                   " true)")  # fmt: skip
        fixes += [f"headwater set image-lookup {name} -n {ns}", restart]
    elif tag not in tags:
        listed = ", ".join(sorted(t for t in tags if t and t != "None")) or "none"
        why.append(f"image stream {name} has no tag {tag} (its tags: {listed})")
        fixes += [provide, restart]
    elif not tag_image(stream, tag):
        why.append(f"{name}:{tag} has no image yet: lookup leaves the name as written")
        fixes += [provide, restart]
    elif world.snap.admission_webhook is False:
        why.append(
            f"the admission webhook configuration {ADMISSION_CONFIGURATION!r}"
            " (MutatingWebhookConfiguration) does not exist: the operator applies"
            " lookupPolicy.local at admission, and its webhook is not running (an operator"
            " started without an admission host serves none)"
        )
        fixes += [
            "run the operator with its admission webhook: install deploy/install.yaml, or set"
            " admissionHost (HEADWATER_ADMISSION_HOST) to an address the API server reaches",
            restart,
        ]
    else:
        created = str(_meta(pod).get("creationTimestamp") or "")
        item = (stream.get("status") or {}).get("tags") or []
        image_time = next(
            (
                str((t.get("items") or [{}])[0].get("created") or "")
                for t in item
                if t.get("tag") == tag
            ),
            "",
        )
        if created and image_time and image_time > created:
            why.append(f"the pod was created ({created}) before {name}:{tag} had its image"
                       f" ({image_time})")  # fmt: skip
        else:
            why.append(
                "the pod (or its workload) was written before lookup applied: lookup was"
                " enabled later, or the admission webhook was not running then"
            )
        fixes.append(restart)
    return Finding("error", subject, problem, tuple(why), tuple(fixes))


# --- workload triggers ---------------------------------------------------------------------------


def _workload_triggers(world: _World) -> list[Finding]:
    findings = []
    ns = world.ns
    for workload in world.snap.workloads:
        annotations = _meta(workload).get("annotations") or {}
        text = next((str(annotations[k]) for k in TRIGGER_ANNOTATIONS if k in annotations), None)
        if text is None:
            continue
        subject = f"{str(workload.get('kind') or 'Deployment').lower()}/{_name(workload)}"
        try:
            entries = json.loads(text) if text.strip() else []
        except json.JSONDecodeError as exc:
            findings.append(
                Finding("error", subject, f"its image trigger annotation is not JSON: {exc.msg}")
            )
            continue
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, Mapping) or str(entry.get("paused")).lower() == "true":
                continue
            source = entry.get("from") or {}
            if source.get("kind") != "ImageStreamTag":
                continue
            stream_name, tag = _split_stream_tag(str(source.get("name") or ""))
            source_ns = str(source.get("namespace") or ns)
            finding = _trigger_source(world, subject, source_ns, stream_name, tag)
            if finding is not None:
                findings.append(finding)
    return findings


def _trigger_source(
    world: _World, subject: str, source_ns: str, stream_name: str, tag: str
) -> Finding | None:
    ns = world.ns
    stream = world.stream(source_ns, stream_name)
    where = f"{source_ns}/{stream_name}:{tag}"
    if stream is False:
        return None
    if stream is None:
        builders = world.builders_of(stream_name, tag) if source_ns == ns else []
        if builders:
            return None  # the BuildConfig check reports the missing output stream
        create = (
            (f"kubectl create namespace {source_ns}",)
            if source_ns in world.snap.missing_namespaces
            else ()
        )
        return Finding(
            "error",
            subject,
            f"its image trigger waits for {where}, and image stream {stream_name} does not exist",
            ("the workload keeps its current image (a new-app placeholder never runs)",),
            (
                *create,
                f"headwater import-image {stream_name}:{tag} --from=<image> --confirm"
                f" -n {source_ns}",
            ),
        )
    if tag_image(stream, tag):
        return None
    condition = _import_condition(stream, tag)
    if condition is not None and condition.get("status") == "False":
        return None  # the image stream check reports the failing import
    if _spec_tag(stream, tag) is not None and condition is None:
        return None  # being imported
    builders = world.builders_of(stream_name, tag) if source_ns == ns else []
    for bc in builders:
        builds = world.builds_of(_name(bc))
        if builds and _phase(builds[0]) in ("New", "Pending", "Running", "Failed", "Error"):
            return None  # building, or the build check reports why not
    if builders:
        return Finding(
            "warning",
            subject,
            f"its image trigger waits for {where}, which no build has written yet",
            (f"buildconfig/{_name(builders[0])} builds it and has no build",),
            (f"headwater start-build {_name(builders[0])} -n {ns}",),
        )
    return Finding(
        "error",
        subject,
        f"its image trigger waits for {where}, which has no image, and nothing builds or"
        " imports it",
        (),
        (
            f"headwater import-image {stream_name}:{tag} --from=<image> --confirm -n {source_ns}",
            f"headwater tag <stream>:<tag> {stream_name}:{tag} -n {source_ns}",
        ),
    )


# --- image streams -------------------------------------------------------------------------------


def _imagestreams(world: _World) -> list[Finding]:
    findings = []
    for stream in world.snap.imagestreams or []:
        name = _name(stream)
        for entry in (stream.get("status") or {}).get("tags") or []:
            tag = str(entry.get("tag"))
            condition = _import_condition(stream, tag)
            if condition is None or condition.get("status") != "False":
                continue
            spec_tag = _spec_tag(stream, tag) or {}
            source = str((spec_tag.get("from") or {}).get("name") or "")
            findings.append(_import_finding(world, name, tag, source, condition))
    return findings


def _import_finding(
    world: _World, stream: str, tag: str, source: str, condition: Mapping[str, Any]
) -> Finding:
    ns = world.ns
    reason = str(condition.get("reason") or "")
    message = _short(str(condition.get("message") or ""))
    problem = f"tag {tag}: the import of {source or 'its image'} fails ({reason})"
    why = [message] if message else []
    retry = f"headwater import-image {stream}:{tag} -n {ns}"
    fixes: list[str] = []
    try:
        reference: Reference | None = parse_reference(source) if source else None
    except ReferenceError:
        reference = None
    cause: Cause = {
        "TLSError": "tls",
        "Unauthorized": "auth",
        "Forbidden": "auth",
        "NotFound": "not-found",
        "Unreachable": "unreachable",
        "Timeout": "unreachable",
    }.get(reason, classify(f"{reason} {message}") if reason == "" else "other")  # type: ignore[assignment]
    if cause == "tls":
        why.append("the registry's certificate is not trusted, or it serves plain HTTP")
        fixes.append(f"{retry} --insecure")
        if reference:
            fixes.append(
                f"# or trust it: the operator reads <registryCertsDir>/{reference.domain}/ca.crt"
            )
    elif cause == "auth" and reference is not None:
        login = world.has_login(reference, world.account_pull_secrets("default"))
        if login:
            why.append(f"the pull secret for {reference.domain} is refused: wrong or expired login")
        else:
            why.append(
                f"imports use the pull secrets of service account 'default', which has none"
                f" for {reference.domain}"
            )
            fixes += world.pull_secret_fixes(reference, "default")
        fixes.append(retry)
    elif cause == "not-found":
        why.append(f"{source} does not exist: check the name and tag")
        fixes.append(f"headwater import-image {stream}:{tag} --from=<image that exists> -n {ns}")
    elif cause == "unreachable":
        why.append("the operator cannot reach the registry; it retries on its schedule")
        fixes.append(retry)
    elif reason == "RateLimited":
        return Finding("warning", f"imagestream/{stream}", problem, (*why, "the operator retries"))
    else:
        fixes.append(retry)
    return Finding("error", f"imagestream/{stream}", problem, tuple(why), tuple(fixes))


# --- build configs -------------------------------------------------------------------------------


def _strategy(spec: Mapping[str, Any]) -> Mapping[str, Any]:
    strategy = spec.get("strategy") or {}
    for key in _STRATEGY_BLOCKS:
        if isinstance(strategy.get(key), Mapping):
            return strategy[key]  # type: ignore[no-any-return]
    return {}


def _missing_secret_fix(
    name: str, kind: str, ns: str, host: str | None = None, git_uri: str = ""
) -> str:
    if kind == "git":
        if git_uri.startswith(("ssh://", "git@")) or re.match(r"^[\w.-]+@[\w.-]+:", git_uri):
            return (
                f"kubectl create secret generic {name} --type=kubernetes.io/ssh-auth"
                f" --from-file=ssh-privatekey=<key file> -n {ns}"
            )
        return (
            f"kubectl create secret generic {name} --type=kubernetes.io/basic-auth"
            f" --from-literal=username=<user> --from-literal=password=<token> -n {ns}"
        )
    if kind == "registry":
        return (
            f"kubectl create secret docker-registry {name} --docker-server={host or '<registry>'}"
            f" --docker-username=<user> --docker-password=<password> -n {ns}"
        )
    if kind == "webhook":
        return (
            f"kubectl create secret generic {name}"
            f" --from-literal=WebHookSecretKey=$(openssl rand -hex 20) -n {ns}"
        )
    return f"kubectl create secret generic {name} --from-file=<file> -n {ns}"


def _image_host(reference: Any) -> str | None:
    if not isinstance(reference, Mapping) or reference.get("kind") != "DockerImage":
        return None
    try:
        return parse_reference(str(reference.get("name") or "")).domain
    except ReferenceError:
        return None


def _buildconfigs(world: _World) -> list[Finding]:
    return [f for bc in world.snap.buildconfigs for f in _check_buildconfig(world, bc)]


def _check_buildconfig(world: _World, bc: Mapping[str, Any]) -> list[Finding]:
    findings: list[Finding] = []
    ns = world.ns
    name = _name(bc)
    subject = f"buildconfig/{name}"
    spec = bc.get("spec") or {}
    source = spec.get("source") or {}
    strategy = _strategy(spec)
    output = spec.get("output") or {}

    def add(
        severity: Severity, topic: str, problem: str, why: Sequence[str], fixes: Sequence[str]
    ) -> None:
        findings.append(Finding(severity, subject, problem, tuple(why), tuple(fixes), topic))

    account = str(spec.get("serviceAccount") or "default")
    if world.accounts is not None and account not in world.accounts:
        fixes = [f"kubectl create serviceaccount {account} -n {ns}"]
        if spec.get("serviceAccount"):
            fixes.append(
                f"kubectl patch {subject} -n {ns} --type=json"
                ' -p \'[{"op":"remove","path":"/spec/serviceAccount"}]\''
                "   # or build as 'default'"
            )
        why = (
            ["OpenShift's build account; Headwater builds as 'default' unless told"]
            if account == "builder"
            else []
        )
        add("error", "serviceAccount", f"service account {account!r} does not exist", why, fixes)
    source_secret = (source.get("sourceSecret") or {}).get("name")
    if source_secret and world.secret_missing(str(source_secret)):
        git_uri = str((source.get("git") or {}).get("uri") or "")
        add(
            "error",
            "sourceSecret",
            f"source secret {source_secret!r} does not exist",
            (
                "builds wait (MissingSourceSecret) until it does; it holds the login for"
                f" {git_uri or 'the source'}",
            ),
            (_missing_secret_fix(str(source_secret), "git", ns, git_uri=git_uri),),
        )
    pull_secret = (strategy.get("pullSecret") or {}).get("name")
    if pull_secret and world.secret_missing(str(pull_secret)):
        add(
            "error",
            "pullSecret",
            f"pull secret {pull_secret!r} (of the strategy) does not exist",
            ("builds wait (MissingPullSecret) until it does",),
            (
                _missing_secret_fix(
                    str(pull_secret), "registry", ns, _image_host(strategy.get("from"))
                ),
            ),
        )
    push_secret = (output.get("pushSecret") or {}).get("name")
    if push_secret and world.secret_missing(str(push_secret)):
        host = _image_host(output.get("to")) or next(iter(sorted(world.registries)), None)
        add(
            "error",
            "pushSecret",
            f"push secret {push_secret!r} does not exist",
            ("builds wait (MissingPushSecret) until it does",),
            (_missing_secret_fix(str(push_secret), "registry", ns, host),),
        )
    for entry in source.get("secrets") or []:
        secret = ((entry or {}).get("secret") or {}).get("name")
        if secret and world.secret_missing(str(secret)):
            add(
                "error",
                "inputs",
                f"build input secret {secret!r} does not exist",
                ("the build pod cannot start (the build stays Pending)",),
                (_missing_secret_fix(str(secret), "input", ns),),
            )
    for entry in source.get("configMaps") or []:
        config_map = ((entry or {}).get("configMap") or {}).get("name")
        if config_map and world.config_maps is not None and config_map not in world.config_maps:
            add(
                "error",
                "inputs",
                f"build input config map {config_map!r} does not exist",
                ("the build pod cannot start (the build stays Pending)",),
                (f"kubectl create configmap {config_map} --from-file=<file> -n {ns}",),
            )
    for entry in strategy.get("secrets") or []:
        secret = ((entry or {}).get("secretSource") or {}).get("name")
        if secret and world.secret_missing(str(secret)):
            add(
                "error",
                "inputs",
                f"custom builder secret {secret!r} does not exist",
                ("the build pod cannot start (the build stays Pending)",),
                (_missing_secret_fix(str(secret), "input", ns),),
            )
    _builder_image(world, subject, strategy.get("from"), add)
    for trigger in spec.get("triggers") or []:
        image_change = (trigger or {}).get("imageChange") or {}
        if image_change.get("from") and not image_change.get("paused"):
            _builder_image(world, subject, image_change["from"], add, watched=True)
        for block in _WEBHOOK_BLOCKS:
            ref = (((trigger or {}).get(block) or {}).get("secretReference") or {}).get("name")
            if ref and world.secret_missing(str(ref)):
                add(
                    "warning",
                    "webhook",
                    f"webhook secret {ref!r} does not exist",
                    (f"the {block} webhook cannot be checked against it",),
                    (_missing_secret_fix(str(ref), "webhook", ns),),
                )
    to = output.get("to") or {}
    if to.get("kind") == "ImageStreamTag":
        stream_name, _ = _split_stream_tag(str(to.get("name") or ""))
        to_ns = str(to.get("namespace") or ns)
        if world.stream(to_ns, stream_name) is None:
            body = json.dumps(
                {
                    "apiVersion": "image.headwater.dev/v1",
                    "kind": "ImageStream",
                    "metadata": {"name": stream_name},
                },
                separators=(",", ":"),
            )
            add(
                "error",
                "output",
                f"output image stream {to_ns}/{stream_name} does not exist",
                ("builds wait (InvalidOutputReference) until it does",),
                (f"echo '{body}' | kubectl apply -n {to_ns} -f -",),
            )
    return findings


def _builder_image(
    world: _World, subject: str, reference: Any, add: Any, *, watched: bool = False
) -> None:
    if not isinstance(reference, Mapping) or reference.get("kind") not in (
        "ImageStreamTag",
        "ImageStreamImage",
    ):
        return
    name = str(reference.get("name") or "")
    ref_ns = str(reference.get("namespace") or world.ns)
    if reference.get("kind") == "ImageStreamTag":
        stream_name, tag = _split_stream_tag(name)
    else:
        stream_name, tag = name.partition("@")[0], ""
    stream = world.stream(ref_ns, stream_name)
    what = "the ImageChange trigger's tag" if watched else "the strategy's image"
    why = (
        ["OpenShift ships builder images in the openshift namespace; Headwater does not"]
        if ref_ns == "openshift"
        else []
    )
    fixes: tuple[str, ...] = (
        f"headwater import-image {stream_name}:{tag} --from=<image> --confirm -n {ref_ns}",
        f"headwater tag <stream>:<tag> {stream_name}:{tag} -n {ref_ns}   # or from another tag",
    )
    if ref_ns in world.snap.missing_namespaces:
        # Importing into a namespace that does not exist fails: create it first, or
        # keep the builder in this namespace and point the BuildConfig at it.
        why = [*why, f"namespace {ref_ns} does not exist"]
        fixes = (
            f"kubectl create namespace {ref_ns}",
            fixes[0],
            f"# or import it here (headwater import-image {stream_name}:{tag} --from=<image>"
            f" --confirm -n {world.ns}) and point {subject} at {world.ns}'s stream",
        )
    if stream is False:
        return
    severity: Severity = "warning" if watched else "error"
    if stream is None:
        add(
            severity,
            "from",
            f"{what} {ref_ns}/{name} does not exist (no image stream {stream_name})",
            [*why, "builds wait (InvalidImageReference) until it has an image"]
            if not watched
            else why,
            fixes if tag else fixes[:1],
        )
        return
    if tag and not tag_image(stream, tag):
        condition = _import_condition(stream, tag)
        if condition is not None and condition.get("status") == "False" and ref_ns == world.ns:
            return  # the image stream check explains the failing import
        if _spec_tag(stream, tag) is not None and condition is None:
            return  # being imported
        add(
            severity,
            "from",
            f"{what} {ref_ns}/{name} has no image",
            [*why, "builds wait (InvalidImageReference) until it has one"] if not watched else why,
            fixes,
        )


# --- builds --------------------------------------------------------------------------------------

_WAIT_TOPICS = {
    "MissingSourceSecret": "sourceSecret",
    "MissingPushSecret": "pushSecret",
    "MissingPullSecret": "pullSecret",
    "InvalidOutputReference": "output",
    "InvalidImageReference": "from",
    "CannotRetrieveServiceAccount": "serviceAccount",
}
_FAILURE_HINTS = {
    "FetchSourceFailed": "the clone failed: check source.git.uri and ref, and the source secret",
    "InvalidContextDirectory": "source.contextDir is not in the repository",
    "ManageDockerfileFailed": "no Dockerfile at contextDir/dockerfilePath, or bad .s2i/environment",
    "DockerBuildFailed": "a build step failed: read the log",
    "PushImageToRegistryFailed": "the push was refused: check the push secret and the registry",
    "PostCommitHookFailed": "the postCommit hook failed: read the log",
    "OutOfMemoryKilled": "the build ran out of memory: raise spec.resources.limits.memory",
    "ExceededDeadline": "it ran past completionDeadlineSeconds",
    "PullBuilderImageFailed": "the builder image cannot be pulled or read: its name? pull secret?",
    "GenericBuildFailed": "the custom builder exited non-zero: read the log",
}


def _builds(world: _World, findings: list[Finding]) -> list[Finding]:
    """Waiting and failed builds; a wait the BuildConfig check explains is folded into it."""
    ns = world.ns
    extra: list[Finding] = []
    by_bc: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for build in world.snap.builds:
        by_bc[_buildconfig_of(build)].append(build)
    for bc, builds in sorted(by_bc.items()):
        builds.sort(key=_build_number, reverse=True)
        for build in builds:
            status = build.get("status") or {}
            phase, reason = _phase(build), str(status.get("reason") or "")
            message = _short(str(status.get("message") or ""))
            subject = f"build/{_name(build)}"
            if phase == "New" and reason:
                topic = _WAIT_TOPICS.get(reason)
                index = next(
                    (
                        i
                        for i, f in enumerate(findings)
                        if topic and f.obj == f"buildconfig/{bc}" and f.topic == topic
                    ),
                    None,
                )
                if index is not None:
                    f = findings[index]
                    findings[index] = replace(f, why=(*f.why, f"{subject} waits for it ({reason})"))
                    continue
                fixes = [f"kubectl describe build.build.headwater.dev/{_name(build)} -n {ns}"]
                if reason == "InvalidOutputReference" and "registry" in message:
                    fixes = [
                        "ask the cluster admin to set the operator's `registry`"
                        " (ImageStreamTag outputs are pushed there)"
                    ]
                extra.append(
                    Finding(
                        "error",
                        subject,
                        f"waits in New: {reason}",
                        (message,) if message else (),
                        tuple(fixes),
                    )
                )
            elif phase == "Pending" and reason:
                extra.append(
                    Finding(
                        "error",
                        subject,
                        f"stuck in Pending: {reason}",
                        tuple(x for x in (message, _FAILURE_HINTS.get(reason, "")) if x),
                        (
                            f"headwater logs {subject} -n {ns}",
                            f"headwater cancel-build {_name(build)} -n {ns}",
                        ),
                    )
                )
        newest = builds[0]
        if _phase(newest) in ("Failed", "Error"):
            status = newest.get("status") or {}
            reason = str(status.get("reason") or _phase(newest))
            why = [
                x
                for x in (_short(str(status.get("message") or "")), _FAILURE_HINTS.get(reason, ""))
                if x
            ]
            snippet = [
                line for line in str(status.get("logSnippet") or "").splitlines() if line.strip()
            ]
            why += [f"log: {line}" for line in snippet[-3:]]
            extra.append(
                Finding(
                    "warning",
                    f"build/{_name(newest)}",
                    f"the newest build of {bc} failed: {reason}",
                    tuple(why),
                    (
                        f"headwater logs build/{_name(newest)} -n {ns}",
                        f"headwater start-build {bc} -n {ns}   # once fixed",
                    ),
                )
            )
    return extra


# --- all together ------------------------------------------------------------------------------


def diagnose(snap: Snapshot) -> list[Finding]:
    """Every problem found, errors first."""
    world = _World(snap)
    findings = _buildconfigs(world)
    findings += _builds(world, findings)
    findings += _imagestreams(world)
    findings += _workload_triggers(world)
    findings += _pods(world)
    order = {"error": 0, "warning": 1}
    return sorted(findings, key=lambda f: order[f.severity])


def referenced_streams(
    namespace: str,
    buildconfigs: Sequence[Mapping[str, Any]],
    workloads: Sequence[Mapping[str, Any]],
) -> set[StreamKey]:
    """Streams of other namespaces the BuildConfigs and workload triggers name."""
    found: set[StreamKey] = set()
    for bc in buildconfigs:
        spec = bc.get("spec") or {}
        refs = [_strategy(spec).get("from"), ((spec.get("output") or {}).get("to"))]
        refs += [
            ((t or {}).get("imageChange") or {}).get("from") for t in spec.get("triggers") or []
        ]
        for ref in refs:
            if isinstance(ref, Mapping) and ref.get("kind") in (
                "ImageStreamTag",
                "ImageStreamImage",
            ):
                ns = str(ref.get("namespace") or namespace)
                name = re.split(r"[:@]", str(ref.get("name") or ""))[0]
                if ns != namespace and name:
                    found.add((ns, name))
    for workload in workloads:
        annotations = _meta(workload).get("annotations") or {}
        text = next((str(annotations[k]) for k in TRIGGER_ANNOTATIONS if k in annotations), "")
        try:
            entries = json.loads(text) if text.strip() else []
        except json.JSONDecodeError:
            continue
        for entry in entries if isinstance(entries, list) else []:
            source = entry.get("from") if isinstance(entry, Mapping) else None
            if isinstance(source, Mapping) and source.get("namespace") not in (None, "", namespace):
                found.add(
                    (str(source["namespace"]), _split_stream_tag(str(source.get("name") or ""))[0])
                )
    return found


def report(findings: Sequence[Finding], namespace: str) -> str:
    """The findings as line groups, and a summary line."""
    if not findings:
        return f"No problems found in namespace {namespace}.\n"
    groups = ["\n".join(f.lines()) for f in findings]
    errors = sum(f.severity == "error" for f in findings)
    warnings = len(findings) - errors
    counts = ", ".join(
        f"{n} {word}{'s' if n != 1 else ''}"
        for n, word in ((errors, "error"), (warnings, "warning"))
        if n
    )
    return (
        "\n\n".join(groups)
        + f"\n\n{len(findings)} problem{'s' if len(findings) != 1 else ''}"
        + f" in namespace {namespace} ({counts}).\n"
    )


# --- reading the cluster (read-only) -------------------------------------------------------------


def gather(client: Any, namespace: str) -> tuple[Snapshot, list[str]]:
    """A Snapshot of ``namespace``; the second value says what could not be read and why."""
    from lightkube.core.exceptions import ApiError
    from lightkube.resources.admissionregistration_v1 import MutatingWebhookConfiguration
    from lightkube.resources.apps_v1 import DaemonSet, Deployment, StatefulSet
    from lightkube.resources.batch_v1 import CronJob
    from lightkube.resources.core_v1 import (
        ConfigMap,
        Event,
        Namespace,
        Pod,
        Secret,
        ServiceAccount,
    )

    from headwater.kube import is_gone, plain_dict
    from headwater.resources import Build, BuildConfig, ImageStream

    unread: list[str] = []

    def listed(resource: Any, what: str, **kwargs: Any) -> list[dict[str, Any]] | None:
        try:
            return [plain_dict(o) for o in client.list(resource, namespace=namespace, **kwargs)]
        except ApiError as exc:
            if is_gone(exc):
                unread.append(f"{what}: the API is not installed")
            else:
                unread.append(f"{what}: {exc.status.message}")
            return None

    def exists(resource: Any, name: str) -> bool:
        """Whether the cluster-wide object exists; ApiError when that cannot be known."""
        try:
            client.get(resource, name)
        except ApiError as exc:
            if is_gone(exc):
                return False
            raise
        return True

    def with_kind(items: list[dict[str, Any]] | None, kind: str) -> list[dict[str, Any]]:
        return [{**item, "kind": kind} for item in items or []]

    workloads = [
        *with_kind(listed(Deployment, "deployments"), "Deployment"),
        *with_kind(listed(StatefulSet, "statefulsets"), "StatefulSet"),
        *with_kind(listed(DaemonSet, "daemonsets"), "DaemonSet"),
        *with_kind(listed(CronJob, "cronjobs"), "CronJob"),
    ]
    buildconfigs = listed(BuildConfig, "buildconfigs") or []
    other: dict[StreamKey, Mapping[str, Any] | None] = {}
    for ns, name in sorted(referenced_streams(namespace, buildconfigs, workloads)):
        try:
            other[(ns, name)] = plain_dict(client.get(ImageStream, name, namespace=ns))
        except ApiError as exc:
            if is_gone(exc):
                other[(ns, name)] = None
            else:
                unread.append(f"imagestream {ns}/{name}: {exc.status.message}")
    missing_namespaces = set()
    for ns in sorted({ns for (ns, _), stream in other.items() if stream is None}):
        with contextlib.suppress(ApiError):  # not allowed to read namespaces: no guess
            if not exists(Namespace, ns):
                missing_namespaces.add(ns)
    try:
        webhook: bool | None = exists(MutatingWebhookConfiguration, ADMISSION_CONFIGURATION)
    except ApiError:
        webhook = None  # not allowed to read it: no guess
    secrets = listed(Secret, "secrets")
    snap = Snapshot(
        namespace=namespace,
        pods=listed(Pod, "pods") or [],
        events=listed(Event, "events", fields={"reason": "Failed"}) or [],
        workloads=workloads,
        service_accounts=listed(ServiceAccount, "serviceaccounts"),
        # Only docker-config secrets' data is needed (to match logins to registries).
        secrets=None
        if secrets is None
        else [
            {**s, "data": s.get("data") if s.get("type") in PULL_SECRET_TYPES else {}}
            for s in secrets
        ],
        config_maps=[
            {"metadata": {"name": _name(c)}} for c in listed(ConfigMap, "configmaps") or []
        ],
        imagestreams=listed(ImageStream, "imagestreams"),
        other_streams=other,
        buildconfigs=buildconfigs,
        builds=listed(Build, "builds") or [],
        admission_webhook=webhook,
        missing_namespaces=frozenset(missing_namespaces),
    )
    return snap, unread


@click.command("doctor")
@cluster_options
def doctor(namespace: str | None, context: str | None, kubeconfig: str | None) -> None:
    """Explain why builds, imports and pods of a namespace fail, with the commands that fix them.

    \b
    Looks for (read-only):
      - pods in ImagePullBackOff, and whether their service account has a pull secret
        for the registry (`headwater secrets link default <secret> --for=pull`)
      - BuildConfigs whose builder ImageStreamTag, output stream, source secret,
        push or pull secret, input secrets or service account are missing
      - ImageStream tags whose import fails (TLS, credentials, not found)
      - Builds waiting in New or Pending, and BuildConfigs whose newest build failed
      - workloads whose image trigger names a tag that has no image
      - pods naming a stream of the namespace by short name (`site:latest`) that
        was not resolved: lookup off, the tag missing or empty, the admission
        webhook not running, or the pod older than the lookup

    Exit status: 0 when nothing is found, 1 when problems are found.
    """
    from headwater.cli.kube import connect

    client, chosen = connect(kubeconfig, context, namespace)
    snap, unread = gather(client, chosen)
    for line in unread:
        click.echo(f"note: could not read {line}; those checks are skipped", err=True)
    findings = diagnose(snap)
    click.echo(report(findings, chosen), nl=False)
    raise SystemExit(1 if findings else 0)
