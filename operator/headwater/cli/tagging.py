"""Writing ImageStream tags: what ``tag`` and ``import-image`` do to the API, as functions.

The verbs in :mod:`headwater.cli.main` and the console's actions both call these
(the console never writes a tag its own way). The entries they write come from
the pure functions of :mod:`headwater.cli.tags`.
"""

from __future__ import annotations

import hashlib
from typing import Any

import click

IMAGESTREAM = ("image.headwater.dev", "v1", "ImageStream", "imagestreams")


def policy(value: str | None) -> str | None:
    return value.capitalize() if value is not None else None


def apply_tag(
    client: Any, resource: Any, target: Any, entry: dict[str, Any], annotate: bool
) -> int:
    """Server-side apply of one spec tag (the list is keyed by name); the new generation."""
    from headwater.imports.plan import REQUEST_ANNOTATION

    metadata: dict[str, Any] = {"name": target.stream, "namespace": target.namespace}
    if annotate:
        metadata["annotations"] = {REQUEST_ANNOTATION: target.tag}
    body = {
        "apiVersion": "image.headwater.dev/v1",
        "kind": "ImageStream",
        "metadata": metadata,
        "spec": {"tags": [entry]},
    }
    # A field manager per tag: server-side apply removes what a manager applied
    # before and left out now, so one manager for all tags would drop the others.
    manager = f"headwater-tag-{target.tag}"
    if len(manager) > 128:
        manager = f"headwater-tag-{hashlib.sha256(target.tag.encode()).hexdigest()[:16]}"
    obj = client.apply(
        resource.from_dict(body), namespace=target.namespace, field_manager=manager, force=True
    )
    return int(obj.metadata.generation or 0)


def apply_import(
    client: Any, target: Any, image: str, existing: dict[str, Any] | None, *,
    scheduled: bool | None = None, insecure: bool | None = None,
    reference_policy: str | None = None, import_mode: str | None = None, annotate: bool = True,
) -> int:  # fmt: skip
    """Point ``target`` at ``image`` and (``annotate``) ask the operator to import it now;
    the stream's new generation. Options not given keep the existing tag's settings (a
    re-run changes nothing else). ``import-image`` and the console's "import now"."""
    from lightkube.generic_resource import create_namespaced_resource

    from headwater.cli.tags import docker_image_tag, existing_tag

    entry = docker_image_tag(
        target.tag, image, existing=existing_tag(existing, target.tag), scheduled=scheduled,
        insecure=insecure, reference=False, reference_policy=policy(reference_policy),
        import_mode=import_mode,
    )  # fmt: skip
    resource = create_namespaced_resource(*IMAGESTREAM)
    return apply_tag(client, resource, target, entry, annotate=annotate)


def resolve_tag_source(
    client: Any, source: str, default_ns: str, source_kind: str | None = None,
    reference: bool | None = None,
) -> tuple[Any, dict[str, Any] | None]:  # fmt: skip
    """``tag``'s SOURCE: (the [ns/]stream:tag, its stream) when it names an existing
    ImageStream tag (as oc decides), else (None, None): an image reference."""
    from lightkube.core.exceptions import ApiError
    from lightkube.generic_resource import create_namespaced_resource

    from headwater.cli.tags import TagError, parse_stream_tag
    from headwater.kube import is_gone, plain_dict

    resource = create_namespaced_resource(*IMAGESTREAM)
    source_tag, source_stream = None, None
    if source_kind != "docker" and not reference:
        # As oc does: an existing [ns/]stream:tag is a tag, anything else an image.
        try:
            source_tag = parse_stream_tag(source, default_ns)
        except TagError:
            if source_kind == "istag":
                raise
        if source_tag is not None:
            try:
                source_stream = plain_dict(
                    client.get(resource, source_tag.stream, namespace=source_tag.namespace)
                )
            except ApiError as exc:
                if not is_gone(exc) or source_kind == "istag":
                    raise click.ClickException(
                        f"{source_tag.namespace}/{source_tag}: {exc.status.message}"
                    ) from None
                source_tag = None
    return source_tag, source_stream


def set_tag(
    client: Any, target: Any, source: str, source_tag: Any,
    source_stream: dict[str, Any] | None, destination_stream: dict[str, Any] | None, *,
    alias: bool = False, reference: bool | None = None, scheduled: bool | None = None,
    insecure: bool | None = None, reference_policy: str | None = None, import_now: bool = False,
) -> int:  # fmt: skip
    """Point ``target`` at ``source`` (a tag from :func:`resolve_tag_source`, else an image);
    the stream's new generation. The destination keeps every setting not given.
    ``tag`` and the console's tag/promote action."""
    from lightkube.generic_resource import create_namespaced_resource

    from headwater.cli.tags import docker_image_tag, existing_tag, stream_tag_tag

    resource = create_namespaced_resource(*IMAGESTREAM)
    current = existing_tag(destination_stream, target.tag)
    if source_tag is not None:
        entry = stream_tag_tag(target.tag, source_tag, source_stream, alias=alias, existing=current)
    else:
        # --import imports: unless --reference is given, the tag stops being one.
        if reference is None and import_now:
            reference = False
        entry = docker_image_tag(
            target.tag, source, existing=current, scheduled=scheduled,
            insecure=insecure, reference=reference,
            reference_policy=policy(reference_policy),
        )  # fmt: skip
    return apply_tag(client, resource, target, entry, annotate=import_now)
