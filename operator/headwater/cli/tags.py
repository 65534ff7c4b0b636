"""What ``headwater tag`` and ``headwater import-image`` write, and how to read the result.

Pure functions over plain dicts, so the verbs' logic is tested without a cluster.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from headwater.imports.model import STREAM_NAME_PATTERN, newest_item, status_tag, tag_condition
from headwater.imports.plan import IMPORT_SUCCESS
from headwater.registry.reference import TAG_PATTERN, is_tag

_STREAM_TAG = re.compile(
    r"^(?:(?P<ns>[a-z0-9]([-a-z0-9]*[a-z0-9])?)/)?"
    rf"(?P<stream>{STREAM_NAME_PATTERN})"
    rf"(?::(?P<tag>{TAG_PATTERN}))?$"
)


class TagError(ValueError):
    """A bad argument; the message is the one line the CLI prints."""


@dataclass(frozen=True)
class StreamTag:
    namespace: str
    stream: str
    tag: str

    def __str__(self) -> str:
        return f"{self.stream}:{self.tag}"


def parse_stream_tag(text: str, namespace: str, *, default_tag: str | None = None) -> StreamTag:
    """``[ns/]stream[:tag]``, as ``oc tag`` and ``oc import-image`` take it."""
    match = _STREAM_TAG.match(text)
    tag = match["tag"] if match else None
    if match is None or (tag is None and default_tag is None):
        raise TagError(f"{text!r} is not [namespace/]imagestream:tag")
    return StreamTag(match["ns"] or namespace, match["stream"], tag or default_tag or "")


_DEFAULT_POLICY = {"scheduled": False, "insecure": False, "importMode": "Legacy"}


def kept_tag(existing: Mapping[str, Any] | None, name: str) -> dict[str, Any]:
    """What a rewrite of spec tag ``name`` starts from: the existing entry's settings
    (annotations, importPolicy, referencePolicy, reference), without its ``from`` and
    ``generation``, so a re-run keeps every setting it is not told to change."""
    entry = {
        key: json.loads(json.dumps(value))
        for key, value in (existing or {}).items()
        if key not in ("from", "generation", "name")
    }
    return {"name": name, **entry}


def existing_tag(stream: Mapping[str, Any] | None, name: str) -> Mapping[str, Any] | None:
    """The raw ``spec.tags[]`` entry ``name`` of a stream, if any."""
    for entry in ((stream or {}).get("spec") or {}).get("tags") or []:
        if isinstance(entry, Mapping) and entry.get("name") == name:
            return entry
    return None


def docker_image_tag(
    name: str, source: str, *, existing: Mapping[str, Any] | None = None,
    scheduled: bool | None = None, insecure: bool | None = None, reference: bool | None = None,
    reference_policy: str | None = None, import_mode: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """A spec tag that imports (or, with ``reference``, just points at) an image reference.

    None means "not given": the ``existing`` tag's value is kept, else the default
    (not scheduled, not insecure, Legacy, not a reference, referencePolicy Source).
    """
    entry = kept_tag(existing, name)
    entry["from"] = {"kind": "DockerImage", "name": source}
    entry["reference"] = bool(entry.get("reference")) if reference is None else reference
    policy = dict(entry.get("importPolicy") or {})
    for key, given in (
        ("scheduled", scheduled),
        ("insecure", insecure),
        ("importMode", import_mode),
    ):
        if given is not None:
            policy[key] = given
        elif key not in policy:
            policy[key] = _DEFAULT_POLICY[key]
    entry["importPolicy"] = policy
    ref_policy = dict(entry.get("referencePolicy") or {})
    if reference_policy is not None:
        ref_policy["type"] = reference_policy
    ref_policy.setdefault("type", "Source")
    entry["referencePolicy"] = ref_policy
    return entry


def tag_names(stream: Mapping[str, Any] | None) -> list[str]:
    """The stream's tags, from spec and status, sorted."""
    names = {str(t.get("name")) for t in ((stream or {}).get("spec") or {}).get("tags") or []}
    names |= {str(t.get("tag")) for t in ((stream or {}).get("status") or {}).get("tags") or []}
    return sorted(n for n in names if n and n != "None")


def missing_tag_message(where: str, stream: Mapping[str, Any] | None, tag: str) -> str:
    """``<ns>/<stream>:<tag> does not exist (the stream's tags: a, b)``."""
    names = tag_names(stream)
    listed = f"its tags: {', '.join(names)}" if names else "the stream has no tags"
    return f"{where} does not exist ({listed})"


def stream_tag_tag(
    name: str, source: StreamTag, source_stream: Mapping[str, Any] | None, *, alias: bool,
    existing: Mapping[str, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """A spec tag following another tag (``--alias``), or pinned to its current image (default).

    The ``existing`` tag's other settings (importPolicy, referencePolicy...) are kept.
    """
    reference: dict[str, Any] = {"namespace": source.namespace}
    if alias:
        reference.update(kind="ImageStreamTag", name=str(source))
    else:
        item = newest_item((source_stream or {}).get("status"), source.tag)
        if item is None or not item.get("image"):
            where = f"{source.namespace}/{source}"
            if source.tag not in tag_names(source_stream):
                raise TagError(missing_tag_message(where, source_stream, source.tag))
            raise TagError(f"{where} has no image yet: nothing to pin")
        reference.update(kind="ImageStreamImage", name=f"{source.stream}@{item['image']}")
    entry = kept_tag(existing, name)
    entry["from"] = reference
    return entry


def import_result(
    stream: Mapping[str, Any], tag: str, since_generation: int
) -> tuple[bool, bool, str]:
    """(finished, succeeded, message) for the import of ``tag`` asked at ``since_generation``.

    Finished once the operator has recorded the outcome for that generation and
    removed the request annotation; the message is the pinned reference, or the
    failure's reason and message.
    """
    annotations = (stream.get("metadata") or {}).get("annotations") or {}
    condition = tag_condition(status_tag(stream.get("status"), tag), IMPORT_SUCCESS)
    if condition is None or int(condition.get("generation") or 0) < since_generation:
        return False, False, ""
    if "image.headwater.dev/import-requested" in annotations:
        return False, False, ""
    if condition.get("status") != "True":
        return True, False, f"{condition.get('reason')}: {condition.get('message')}"
    item = newest_item(stream.get("status"), tag) or {}
    return True, True, str(item.get("dockerImageReference") or "")


MAX_ALL_TAGS = 50
"""``import-image --all`` imports at most this many tags (``--max-tags``)."""


def all_tag_sources(tags: list[str], limit: int) -> tuple[list[str], int]:
    """The tags ``import-image --all`` imports, sorted, and how many were left out.

    Names that are no valid ImageStream tag are skipped (and counted as left out).
    """
    valid = sorted({t for t in tags if is_tag(t)})
    left_out = len(set(tags)) - len(valid) + max(0, len(valid) - limit)
    return valid[:limit], left_out


def delete_patch(
    items: Sequence[Mapping[str, Any]] | None, key: str, name: str, path: str
) -> list[dict[str, Any]] | None:
    """A JSON patch removing the element of ``items`` whose ``key`` is ``name``, or None.

    The ``test`` op makes the patch fail (and the caller retry) if the list moved meanwhile.
    """
    for index, item in enumerate(items or []):
        if item.get(key) == name:
            return [
                {"op": "test", "path": f"{path}/{index}/{key}", "value": name},
                {"op": "remove", "path": f"{path}/{index}"},
            ]
    return None


def dry_run_lines(
    tag: str, repository: str, digest: str, media_type: str, platforms: list[tuple[str, str]]
) -> list[str]:
    """What ``import-image --dry-run`` prints: the reference, and an index's platforms."""
    lines = [f"{tag}\t{repository}@{digest}\t{media_type}"]
    lines += [f"  {platform}\t{child}" for platform, child in platforms]
    return lines
