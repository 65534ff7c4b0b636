"""What ``headwater get istag`` and ``headwater describe istag`` print (pure formatting)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from headwater.builds.model import buildconfig_of
from headwater.cli.output import fields, human_duration, mapping_value, when
from headwater.cli.output import table as render_table
from headwater.cli.tables import build_status_text, image_repository, trigger_summary
from headwater.cli.triggers import WEBHOOK_BLOCKS, strategy_from
from headwater.imports.model import spec_tags, tag_condition
from headwater.imports.verification import VERIFIED, Policy, PolicyError, tag_policies
from headwater.registry.client import Resolved
from headwater.timefmt import parse_time


def istag_rows(streams: Sequence[Mapping[str, Any]]) -> list[tuple[str, str, str]]:
    """(NAME, IMAGE REFERENCE, UPDATED) for every tag with an image, as ``oc get istag``."""
    rows = []
    for stream in streams:
        name = (stream.get("metadata") or {}).get("name")
        for entry in (stream.get("status") or {}).get("tags") or []:
            items = entry.get("items") or []
            if items:
                rows.append(
                    (
                        f"{name}:{entry.get('tag')}",
                        str(items[0].get("dockerImageReference") or ""),
                        str(items[0].get("created") or ""),
                    )
                )
    return rows


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded like kubectl's."""
    return render_table(header, rows)


def verification_lines(
    policy: Policy | PolicyError | None, condition: Mapping[str, Any] | None
) -> list[str]:
    """What ``describe`` says of a tag's verification policy and its Verified condition."""
    if policy is None and condition is None:
        return []
    if isinstance(policy, PolicyError):
        wanted = f"invalid policy: {policy}"
    elif policy is not None:
        required = "required for rollouts" if policy.required else "reported only"
        wanted = f"keys {', '.join(policy.keys)} ({required})"
    else:
        wanted = "no policy"
    if condition is None:
        return [f"Verification:\t{wanted}; not checked yet"]
    return [
        f"Verification:\t{wanted}",
        f"Verified:\t{condition.get('status')} ({condition.get('reason')}):"
        f" {condition.get('message', '')}",
    ]


def describe_istag(
    name: str,
    item: Mapping[str, Any],
    resolved: Resolved | None,
    error: str | None,
    verification: Sequence[str] = (),
) -> str:
    """``oc describe istag``: the tag's image from status, its metadata from the registry,
    and (Headwater) whether it verifies against the tag's keys."""
    lines = [
        f"Name:\t\t{name}",
        f"Image Reference:\t{item.get('dockerImageReference', '')}",
        f"Digest:\t\t{item.get('image', '')}",
        f"Tagged:\t\t{item.get('created', '')}",
        *verification,
    ]
    if error is not None:
        lines.append(f"Registry:\t\tnot read: {error}")
        return "\n".join(lines)
    assert resolved is not None
    for platform in resolved.platforms:
        lines.append(f"Platform:\t\t{platform.platform or '?'} {platform.digest}")
    image = resolved.image
    if image is not None:
        lines.append(f"Image Size:\t\t{_size(image.size)} in {image.layers} layer(s)")
        config = image.config
        if config is not None:
            lines += [
                f"Image Created:\t{config.created.isoformat() if config.created else ''}",
                f"Architecture:\t{config.os}/{config.architecture}",
                f"Entrypoint:\t\t{' '.join(config.entrypoint)}",
                f"Command:\t\t{' '.join(config.cmd)}",
                f"Working Dir:\t{config.working_dir}",
                f"User:\t\t{config.user}",
                f"Exposes Ports:\t{', '.join(config.exposed_ports)}",
                "Labels:\t\t" + (", ".join(f"{k}={v}" for k, v in sorted(config.labels.items()))),
            ]
    return "\n".join(lines)


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{size} B"
        value /= 1024
    return f"{size} B"


# --- describe is|bc|build ----------------------------------------------------------
# Layout follows `oc describe`: metadata, then the kind's own sections, then Events.

WEBHOOK_PATH = (
    "/apis/build.headwater.dev/v1"
    "/namespaces/{namespace}/buildconfigs/{name}/webhooks/<secret>/{hook}"
)
"""OpenShift's webhook URL shape, under the operator's webhook endpoint (the secret is
never printed: it is in the Secret the trigger names)."""


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def _header(obj: Mapping[str, Any], now: datetime) -> list[tuple[str, str]]:
    metadata = _meta(obj)
    return [
        ("Name", str(metadata.get("name", ""))),
        ("Namespace", str(metadata.get("namespace", ""))),
        ("Created", when(metadata.get("creationTimestamp"), now)),
        ("Labels", mapping_value(metadata.get("labels"))),
        ("Annotations", mapping_value(_shown_annotations(metadata.get("annotations")))),
    ]


def _shown_annotations(annotations: Mapping[str, Any] | None) -> dict[str, Any]:
    # kubectl's last-applied copy of the whole object is noise in a description.
    skip = {"kubectl.kubernetes.io/last-applied-configuration"}
    return {k: v for k, v in (annotations or {}).items() if k not in skip}


def _ref(ref: Mapping[str, Any] | None, namespace: str) -> str:
    if not ref:
        return "<none>"
    other = ref.get("namespace")
    name = f"{other}/{ref.get('name')}" if other and other != namespace else str(ref.get("name"))
    return f"{ref.get('kind', 'DockerImage')} {name}"


def _env(env: Sequence[Mapping[str, Any]] | None) -> str:
    lines = []
    for var in env or []:
        if "value" in var:
            lines.append(f"{var.get('name')}={var.get('value')}")
        else:
            lines.append(f"{var.get('name')} (from a reference)")
    return "\n".join(lines)


def _source_fields(spec: Mapping[str, Any], namespace: str) -> list[tuple[str, str]]:
    source = spec.get("source") or {}
    out: list[tuple[str, str]] = []
    git = source.get("git") or {}
    kind = str(source.get("type") or ("Git" if git else "None"))
    if kind == "Git" or git:
        out.append(("URL", str(git.get("uri", ""))))
        if git.get("ref"):
            out.append(("Ref", str(git["ref"])))
    if kind == "Binary":
        as_file = (source.get("binary") or {}).get("asFile")
        out.append(("Binary", f"provided as file {as_file!r} on build" if as_file
                    else "provided on build (start-build --from-dir|--from-file|...)"))  # fmt: skip
    if source.get("contextDir"):
        out.append(("Context Dir", str(source["contextDir"])))
    if source.get("dockerfile"):
        out.append(("Dockerfile", str(source["dockerfile"]).rstrip("\n")))
    for image in source.get("images") or []:
        paths = ", ".join(
            f"{p.get('sourcePath')} -> {p.get('destinationDir')}" for p in image.get("paths") or []
        )
        out.append(("Image Source", f"copies {paths} from {_ref(image.get('from'), namespace)}"))
    if source.get("sourceSecret"):
        out.append(("Source Secret", str(source["sourceSecret"].get("name"))))
    for secret in source.get("secrets") or []:
        target = secret.get("destinationDir") or "."
        out.append(("Build Secret", f"{(secret.get('secret') or {}).get('name')} -> {target}"))
    for config_map in source.get("configMaps") or []:
        target = config_map.get("destinationDir") or "."
        name = (config_map.get("configMap") or {}).get("name")
        out.append(("Build ConfigMap", f"{name} -> {target}"))
    return out


def _strategy_fields(spec: Mapping[str, Any], namespace: str) -> list[tuple[str, str]]:
    strategy = spec.get("strategy") or {}
    kind = str(strategy.get("type", ""))
    block = strategy.get({"Docker": "dockerStrategy", "Source": "sourceStrategy",
                          "Custom": "customStrategy"}.get(kind, "")) or {}  # fmt: skip
    out = [("Strategy", kind or "<none>")]
    out += _source_fields(spec, namespace)
    if kind == "Docker":
        out.append(("Dockerfile Path", str(block.get("dockerfilePath") or "Dockerfile")))
    if block.get("from"):
        out.append(("From Image" if kind != "Custom" else "Image", _ref(block["from"], namespace)))
    if kind == "Source" and block.get("scripts"):
        out.append(("Scripts", str(block["scripts"])))
    if block.get("pullSecret"):
        out.append(("Pull Secret", str(block["pullSecret"].get("name"))))
    if block.get("env"):
        out.append(("Environment", _env(block["env"])))
    if block.get("buildArgs"):
        out.append(("Build Args", _env(block["buildArgs"])))
    for flag, label in (("incremental", "Incremental Build"), ("noCache", "No Cache"),
                        ("forcePull", "Force Pull")):  # fmt: skip
        if block.get(flag):
            out.append((label, "yes"))
    output = spec.get("output") or {}
    out.append(("Output to", _ref(output.get("to"), namespace) if output.get("to") else "<none>"))
    if output.get("pushSecret"):
        out.append(("Push Secret", str(output["pushSecret"].get("name"))))
    for label in output.get("imageLabels") or []:
        out.append(("Image Label", f"{label.get('name')}={label.get('value', '')}"))
    hook = spec.get("postCommit") or {}
    if hook:
        command = hook.get("script") or " ".join([*hook.get("command", []), *hook.get("args", [])])
        out.append(("Post Commit Hook", str(command)))
    if spec.get("serviceAccount"):
        out.append(("Service Account", str(spec["serviceAccount"])))
    if spec.get("completionDeadlineSeconds"):
        out.append(("Deadline", f"{spec['completionDeadlineSeconds']}s"))
    return out


def _trigger_fields(bc: Mapping[str, Any], now: datetime) -> list[tuple[str, str]]:
    spec = bc.get("spec") or {}
    namespace = str(_meta(bc).get("namespace", ""))
    name = str(_meta(bc).get("name", ""))
    out = [("Triggered by", trigger_summary(spec))]
    fired = {
        (
            str((s.get("from") or {}).get("namespace") or namespace),
            (s.get("from") or {}).get("name"),
        ): s
        for s in (bc.get("status") or {}).get("imageChangeTriggers") or []
    }
    for trigger in spec.get("triggers") or []:
        kind = str(trigger.get("type"))
        if kind == "ImageChange":
            change = trigger.get("imageChange") or {}
            watched = change.get("from") or strategy_from(spec) or {}
            text = _ref(watched, namespace) + (" (strategy)" if not change.get("from") else "")
            if change.get("paused") in (True, "true"):
                text += ", paused"
            state = fired.get((str(watched.get("namespace") or namespace), watched.get("name")))
            if state and state.get("lastTriggerTime"):
                text += f"\nlast fired {when(state['lastTriggerTime'], now)}"
            out.append(("Image Change Trigger", text))
        elif kind in WEBHOOK_BLOCKS:
            block = trigger.get(WEBHOOK_BLOCKS[kind]) or {}
            path = WEBHOOK_PATH.format(namespace=namespace, name=name, hook=WEBHOOK_BLOCKS[kind])
            secret = (block.get("secretReference") or {}).get("name")
            where = (f"Secret {secret}, key WebHookSecretKey" if secret
                     else "inline in the trigger (deprecated)")  # fmt: skip
            text = f"URL: <operator webhook endpoint>{path}\nSecret: {where}"
            if block.get("allowEnv"):
                text += "\nAllow Env: yes"
            out.append((f"Webhook {kind}", text))
    return out


def _builds_table(builds: Sequence[Mapping[str, Any]], now: datetime) -> list[str]:
    if not builds:
        return ["Builds:\t<none>"]
    rows = []
    for build in builds:
        status = build.get("status") or {}
        rows.append((
            str(_meta(build).get("name")),
            build_status_text(build),
            str(status.get("duration") or ""),
            when(_meta(build).get("creationTimestamp"), now),
        ))  # fmt: skip
    return render_table(("Build", "Status", "Duration", "Creation Time"), rows).splitlines()


def events_section(events: Sequence[Mapping[str, Any]] | None, now: datetime) -> list[str]:
    """kubectl describe's Events table, oldest first; None: the user may not list Events."""
    if events is None:
        return ["Events:  <not readable: forbidden>"]
    if not events:
        return ["Events:  <none>"]

    def last(event: Mapping[str, Any]) -> str:
        return str(event.get("lastTimestamp") or event.get("eventTime")
                   or _meta(event).get("creationTimestamp") or "")  # fmt: skip

    rows = []
    for event in sorted(events, key=last):
        seen = parse_time(last(event))
        first = parse_time(event.get("firstTimestamp")) or seen
        shown = human_duration((now - seen).total_seconds()) if seen else "<unknown>"
        count = int(event.get("count") or 1)
        if count > 1 and first is not None:
            shown += f" (x{count} over {human_duration((now - first).total_seconds())})"
        source = (
            (event.get("source") or {}).get("component") or event.get("reportingComponent") or ""
        )
        rows.append((str(event.get("type", "")), str(event.get("reason", "")), shown,
                     str(source), str(event.get("message", "")).replace("\n", " ")))  # fmt: skip
    header = ("Type", "Reason", "Age", "From", "Message")
    lines = render_table(header, [tuple("-" * len(h) for h in header), *rows]).splitlines()
    return ["Events:", *("  " + line for line in lines)]


def describe_imagestream(stream: Mapping[str, Any], now: datetime) -> str:
    """``oc describe is``: each tag, where it comes from, its history, import state."""
    spec = stream.get("spec") or {}
    status = stream.get("status") or {}
    namespace = str(_meta(stream).get("namespace", ""))
    by_spec = {t.name: t for t in spec_tags(spec)}
    policies = tag_policies(spec)
    by_status = {str(t.get("tag")): t for t in status.get("tags") or []}
    digests = {i.get("image") for t in by_status.values() for i in t.get("items") or []}
    pairs = [
        *_header(stream, now),
        ("Image Repository", image_repository(stream) or "<none: no registry configured>"),
        (
            "Image Lookup",
            f"local={str(bool((spec.get('lookupPolicy') or {}).get('local'))).lower()}",
        ),
        ("Unique Images", str(len(digests - {None}))),
        ("Tags", str(len(set(by_spec) | set(by_status)))),
    ]
    lines = fields(pairs)
    for tag in sorted(set(by_spec) | set(by_status)):
        lines += ["", tag]
        entry, spec_tag = by_status.get(tag) or {}, by_spec.get(tag)
        if spec_tag is None:
            lines.append("  pushed or built here (no spec tag)")
        elif spec_tag.from_kind == "DockerImage":
            verb = "reference to" if spec_tag.reference else "tagged from"
            lines.append(f"  {verb} {spec_tag.from_name}")
            if spec_tag.scheduled:
                lines.append("    updates automatically from the registry (scheduled)")
            if spec_tag.insecure:
                lines.append("    will use insecure HTTPS or HTTP connections")
        elif spec_tag.from_kind:
            where = (f"{spec_tag.from_namespace}/" if spec_tag.from_namespace
                     and spec_tag.from_namespace != namespace else "")  # fmt: skip
            follows = "follows" if spec_tag.from_kind == "ImageStreamTag" else "pinned to"
            lines.append(f"  {follows} {where}{spec_tag.from_name}")
        if spec_tag is not None and spec_tag.reference_policy == "Local":
            lines.append("    consumers pull it through the configured registry (Local)")
        if entry.get("lastImportTime") or entry.get("nextImportTime"):
            lines.append(f"    last import {when(entry.get('lastImportTime'), now)}")
            if entry.get("nextImportTime"):
                lines.append(f"    next import at {entry['nextImportTime']}")
        for index, item in enumerate(entry.get("items") or []):
            marker = "*" if index == 0 else " "
            lines.append(f"  {marker} {item.get('dockerImageReference', '')}")
            lines.append(f"      {when(item.get('created'), now)}")
            for platform in item.get("platforms") or []:
                arch = "/".join(str(platform.get(k)) for k in ("os", "architecture", "variant")
                                if platform.get(k))  # fmt: skip
                lines.append(f"      {arch} {platform.get('digest', '')}")
        verified = tag_condition(entry, VERIFIED)
        for line in verification_lines(policies.get(tag), verified):
            lines.append("  " + line.replace(":\t", ": ", 1))
        for condition in entry.get("conditions") or []:
            if condition.get("type") == VERIFIED:
                continue
            if condition.get("status") == "False":
                lines.append(
                    f"  ! error: Import failed ({condition.get('reason')}): "
                    f"{condition.get('message')} "
                    f"({when(condition.get('lastTransitionTime'), now)})"
                )
        if not entry.get("items"):
            lines.append("  no image yet")
    return "\n".join(lines)


def describe_buildconfig(
    bc: Mapping[str, Any], builds: Sequence[Mapping[str, Any]], now: datetime
) -> str:
    """``oc describe bc``: strategy, source, output, triggers, run policy, recent builds
    (the caller adds the Events)."""
    spec = bc.get("spec") or {}
    namespace = str(_meta(bc).get("namespace", ""))
    latest = str(int((bc.get("status") or {}).get("lastVersion") or 0))
    limits = (
        f"successful {spec.get('successfulBuildsHistoryLimit', 5)}, "
        f"failed {spec.get('failedBuildsHistoryLimit', 5)}"
    )
    lines = fields([*_header(bc, now), ("Latest Version", latest)])
    lines += ["", *fields(_strategy_fields(spec, namespace))]
    policy = [
        ("Build Run Policy", str(spec.get("runPolicy") or "Serial")),
        *_trigger_fields(bc, now),
        ("Builds History Limit", limits),
    ]
    lines += ["", *fields(policy)]
    lines += ["", *_builds_table(builds, now)]
    return "\n".join(lines)


def _person(person: Mapping[str, Any] | None) -> str:
    if not person:
        return ""
    email = person.get("email")
    return f"{person.get('name', '')} <{email}>" if email else str(person.get("name", ""))


def _causes(spec: Mapping[str, Any]) -> str:
    lines = []
    for cause in spec.get("triggeredBy") or []:
        text = str(cause.get("message") or "")
        for key in ("githubWebHook", "gitlabWebHook", "bitbucketWebHook", "genericWebHook"):
            commit = (((cause.get(key) or {}).get("revision") or {}).get("git") or {}).get("commit")
            if commit:
                text += f" (commit {str(commit)[:7]})"
        image = cause.get("imageChangeBuild") or {}
        if image.get("imageID"):
            text += f" ({(image.get('fromRef') or {}).get('name', '')} -> {image['imageID']})"
        lines.append(text)
    return "\n".join(lines) or "<none>"


def describe_build(
    build: Mapping[str, Any], now: datetime, *, colour: Callable[[str], str] | None = None
) -> str:
    """``oc describe build``: status and why, timing, revision, output, stages, log tail
    (the caller adds the Events)."""
    spec = build.get("spec") or {}
    status = build.get("status") or {}
    namespace = str(_meta(build).get("namespace", ""))
    paint = colour or (lambda text: text)
    pairs = [*_header(build, now), ("Status", paint(build_status_text(build)))]
    if status.get("message"):
        pairs.append(("Message", str(status["message"])))
    pairs += [
        ("Started", when(status.get("startTimestamp"), now)),
        (
            "Duration",
            str(
                status.get("duration")
                or (
                    "running"
                    if status.get("startTimestamp") and not status.get("completionTimestamp")
                    else "<none>"
                )
            ),
        ),
        ("Build Config", buildconfig_of(build) or "<none>"),
        ("Build Job", str(status.get("jobName") or "<none>")),
    ]
    lines = fields(pairs)
    revision_pairs: list[tuple[str, str]] = []
    git = ((status.get("revision") or spec.get("revision")) or {}).get("git") or {}
    if git.get("commit"):
        message = str(git.get("message") or "").strip().splitlines()
        revision_pairs.append(
            ("Commit", f"{git['commit']}" + (f" ({message[0]})" if message else ""))
        )
    author, committer = _person(git.get("author")), _person(git.get("committer"))
    if author or committer:
        both = author if author == committer or not committer else f"{author} / {committer}"
        revision_pairs.append(("Author/Committer", both or committer))
    output_pairs: list[tuple[str, str]] = []
    if status.get("outputDockerImageReference"):
        output_pairs.append(("Output Image", str(status["outputDockerImageReference"])))
    digest = ((status.get("output") or {}).get("to") or {}).get("imageDigest")
    if digest:
        output_pairs.append(("Output Digest", str(digest)))
    attested = status.get("provenance") or {}
    if attested.get("error"):
        output_pairs.append(("Provenance", f"none: {attested['error']}"))
    elif attested.get("reference"):
        signed = "signed" if attested.get("signed") else "unsigned (no signing key)"
        count = int(attested.get("dependencies") or 0)
        detail = f"{signed}, {count} dependencies" + (" (capped)" if attested.get("capped") else "")
        output_pairs.append(("Provenance", f"{attested['reference']} ({detail})"))
    strategy = _strategy_fields(spec, namespace)
    # The revision reads best right after the source it was taken from.
    anchors = [i + 1 for i, (k, _) in enumerate(strategy) if k in ("URL", "Ref")]
    at = anchors[-1] if anchors else 1
    strategy[at:at] = revision_pairs
    strategy += output_pairs
    lines += ["", *fields([*strategy, ("Build trigger cause", _causes(spec))])]
    stages = status.get("stages") or []
    if stages:
        rows = [
            (str(s.get("name", "")), str(s.get("startTime", "")),
             f"{int(s.get('durationMilliseconds') or 0) / 1000:g}s")
            for s in stages
        ]  # fmt: skip
        lines += ["", "Build Stages:"]
        lines += [
            "  " + line
            for line in render_table(("Stage", "Started", "Duration"), rows).splitlines()
        ]
    if status.get("logSnippet"):
        lines += ["", "Log Tail:"]
        lines += ["  " + line for line in str(status["logSnippet"]).splitlines()]
    return "\n".join(lines)
