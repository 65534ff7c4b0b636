"""What ``headwater get istag`` and ``headwater describe istag`` print (pure formatting)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from headwater.registry.client import Resolved


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
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["   ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in [header, *rows]]  # fmt: skip
    return "\n".join(lines)


def describe_istag(
    name: str, item: Mapping[str, Any], resolved: Resolved | None, error: str | None
) -> str:
    """``oc describe istag``: the tag's image from status, its metadata from the registry."""
    lines = [
        f"Name:\t\t{name}",
        f"Image Reference:\t{item.get('dockerImageReference', '')}",
        f"Digest:\t\t{item.get('image', '')}",
        f"Tagged:\t\t{item.get('created', '')}",
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
