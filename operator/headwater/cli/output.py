"""How the client verbs print: tables, ages, ``-o name|yaml|json``, colour, spinners.

Pure formatting (no cluster), so the look of every verb is unit-tested. The
conventions are kubectl's: three-space column gaps, ``5m``/``3d`` ages,
``kind.group/name`` for ``-o name``, a ``v1/List`` for several objects in
YAML or JSON, managed fields hidden.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TextIO

import click
import yaml

from headwater.timefmt import parse_time

Styler = Callable[[str], str]
_SPIN = "|/-\\"


def colour_enabled(stream: TextIO | None = None) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (no-color.org)."""
    stream = stream if stream is not None else sys.stdout
    return stream.isatty() and not os.environ.get("NO_COLOR")


def styler(colour: bool, **style: Any) -> Styler:
    """A function that paints text with ``click.style(**style)``, or leaves it be."""
    if not colour:
        return lambda text: text
    return lambda text: click.style(text, **style)


_PHASE_COLOURS = {
    "Complete": "green",
    "Failed": "red",
    "Error": "red",
    "Cancelled": "yellow",
    "Running": "cyan",
    "Pending": "cyan",
}


def phase_styler(colour: bool) -> Styler:
    """Paints a build phase (possibly followed by its reason) by the phase's outcome."""

    def paint(text: str) -> str:
        name = _PHASE_COLOURS.get(text.split(" ", 1)[0].capitalize())
        return click.style(text, fg=name) if colour and name else text

    return paint


def table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    no_headers: bool = False,
    styles: Mapping[int, Styler] | None = None,
) -> str:
    """Columns padded like kubectl's; ``styles`` paint cells of a column after padding,
    so escape codes never skew the widths."""
    shown = list(rows) if no_headers else [header, *rows]
    if not shown:
        return ""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for index, row in enumerate(shown):
        cells = []
        for column, (cell, width) in enumerate(zip(row, widths, strict=True)):
            text = str(cell).ljust(width)
            style = (styles or {}).get(column)
            is_header = index == 0 and not no_headers
            if style is not None and not is_header:
                stripped = text.rstrip()
                text = style(stripped) + text[len(stripped) :]
            cells.append(text)
        lines.append("   ".join(cells).rstrip())
    return "\n".join(lines)


def human_duration(seconds: float) -> str:
    """kubectl's HumanDuration: 45s, 2m30s, 12m, 5h10m, 30h, 3d4h, 40d, 2y30d, 9y."""
    if seconds < -1:
        return "<invalid>"
    total = max(int(seconds), 0)
    minutes, hours, days = total // 60, total // 3600, total // 86400
    if total < 120:
        return f"{total}s"
    if minutes < 10:
        rest = total % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{days}d{rest}h" if rest else f"{days}d"
    if days < 365 * 2:
        return f"{days}d"
    if days < 365 * 8:
        years = days // 365
        return f"{years}y{days % 365}d" if days % 365 else f"{years}y"
    return f"{days // 365}y"


def age(value: object, now: datetime) -> str:
    """The AGE column: how long ago a timestamp was; ``<unknown>`` when there is none."""
    moment = parse_time(value)
    if moment is None:
        return "<unknown>"
    return human_duration((now - moment).total_seconds())


def ago(value: object, now: datetime) -> str:
    """``5m ago`` for UPDATED/STARTED columns; empty when it never happened."""
    moment = parse_time(value)
    if moment is None:
        return ""
    return f"{human_duration((now - moment).total_seconds())} ago"


def when(value: object, now: datetime) -> str:
    """A timestamp for describe: the time itself, and how long ago (``<none>`` if unset)."""
    moment = parse_time(value)
    if moment is None:
        return "<none>"
    stamp = moment.astimezone(UTC).strftime("%a, %d %b %Y %H:%M:%S %Z")
    return f"{stamp} ({human_duration((now - moment).total_seconds())} ago)"


def clean(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The object as kubectl prints it: without metadata.managedFields."""
    out = dict(obj)
    metadata = out.get("metadata")
    if isinstance(metadata, Mapping) and "managedFields" in metadata:
        out["metadata"] = {k: v for k, v in metadata.items() if k != "managedFields"}
    return out


def as_list(objs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "List",
        "items": [clean(o) for o in objs],
        "metadata": {"resourceVersion": ""},
    }


def render(
    objs: Sequence[Mapping[str, Any]], fmt: str, name_of: Callable[[Mapping[str, Any]], str],
    *, single: bool,
) -> str:  # fmt: skip
    """``-o name|yaml|json``: one object alone when one was asked for by name, else a List."""
    if fmt == "name":
        return "\n".join(name_of(o) for o in objs)
    doc: Mapping[str, Any] = clean(objs[0]) if single and len(objs) == 1 else as_list(objs)
    if fmt == "json":
        return json.dumps(doc, indent=4, ensure_ascii=False)
    if fmt == "yaml":
        return yaml.safe_dump(dict(doc), sort_keys=False, default_flow_style=False).rstrip("\n")
    raise ValueError(f"unknown output format {fmt!r}")


def fields(pairs: Sequence[tuple[str, str]], indent: str = "") -> list[str]:
    """``Label:  value`` lines aligned on the values, like kubectl describe's tabwriter.

    A value over several lines continues under the first, indented to the same column.
    """
    if not pairs:
        return []
    width = max(len(label) for label, _ in pairs) + 2
    lines = []
    for label, value in pairs:
        head = f"{indent}{label}:".ljust(len(indent) + width)
        parts = str(value).split("\n") or [""]
        lines.append((head + parts[0]).rstrip())
        lines += [(" " * len(head) + part).rstrip() for part in parts[1:]]
    return lines


def mapping_value(values: Mapping[str, Any] | None) -> str:
    """Labels or annotations, one ``key=value`` a line; ``<none>`` when empty."""
    if not values:
        return "<none>"
    return "\n".join(f"{k}={v}" for k, v in sorted(values.items()))


@contextmanager
def spinner(what: str, stream: TextIO | None = None) -> Iterator[None]:
    """A spinner on stderr while a slow call runs, only when stderr is a terminal."""
    out = stream if stream is not None else sys.stderr
    if not out.isatty():
        yield
        return
    stop = threading.Event()

    def spin() -> None:
        turn = 0
        while not stop.wait(0.1):
            out.write(f"\r{what} {_SPIN[turn % len(_SPIN)]}")
            out.flush()
            turn += 1

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        out.write("\r\033[K")
        out.flush()
