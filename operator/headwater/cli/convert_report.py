"""What ``headwater convert`` prints on stderr: notes per object, folded, and a summary.

The notes of each object are printed under one heading (``<file>:
<Kind>/<name>``); the same message on many fields of one object is printed
once (``spec.tags[*].referencePolicy.type: … (on 21 tags)``). The last line
counts the objects: converted, left as they are, dropped (naming them).
Pure: notes in, lines out; the exit status follows from the notes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

Outcome = Literal["converted", "unchanged", "dropped"]


class NoteLike(Protocol):
    @property
    def severity(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def obj(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def message(self) -> str: ...


@dataclass(frozen=True)
class Tally:
    """What became of one input object."""

    source: str
    obj: str
    outcome: Outcome


_INDEX = re.compile(r"\[\d+\]")
_SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}


def _fold(notes: Sequence[NoteLike]) -> list[str]:
    """One object's notes as lines, identical messages on like paths folded into one."""
    groups: dict[tuple[str, str, str], list[NoteLike]] = {}
    for note in notes:
        key = (note.severity, _INDEX.sub("[*]", note.path), note.message)
        groups.setdefault(key, []).append(note)
    lines = []
    for (severity, pattern, message), members in sorted(
        groups.items(), key=lambda item: _SEVERITY_ORDER.get(item[0][0], 3)
    ):
        if len(members) == 1:
            path = members[0].path
            lines.append(f"  {severity}: {path + ': ' if path else ''}{message}")
            continue
        listed = re.findall(r"([A-Za-z]+)\[\*\]", pattern)
        what = listed[-1] if listed else "fields"
        lines.append(f"  {severity}: {pattern}: {message} (on {len(members)} {what})")
    return lines


def render(notes: Sequence[NoteLike], tallies: Sequence[Tally]) -> list[str]:
    """The report's lines: each object's notes under its heading, then the summary."""
    by_object: dict[tuple[str, str], list[NoteLike]] = {}
    for note in notes:
        by_object.setdefault((note.source, note.obj), []).append(note)
    lines: list[str] = []
    for (source, obj), members in by_object.items():
        lines.append(f"{source}: {obj}")
        lines.extend(_fold(members))
    lines.append(summary(tallies, notes))
    return lines


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def summary(tallies: Sequence[Tally], notes: Iterable[NoteLike] = ()) -> str:
    """``12 objects: 9 converted, 2 left as they are, 1 dropped (DeploymentConfig/x)``."""
    counts = {o: [t for t in tallies if t.outcome == o] for o in ("converted", "unchanged")}
    dropped = [t.obj for t in tallies if t.outcome == "dropped"]
    parts = [
        f"{len(counts['converted'])} converted",
        f"{len(counts['unchanged'])} left as they are",
        f"{len(dropped)} dropped" + (f" ({', '.join(dropped)})" if dropped else ""),
    ]
    severities = [n.severity for n in notes]
    problems = [
        _plural(severities.count(s), s) for s in ("error", "warning") if severities.count(s)
    ]
    line = f"{_plural(len(tallies), 'object')}: {', '.join(parts)}"
    return line + (f"; {', '.join(problems)}" if problems else "")


def exit_status(notes: Iterable[NoteLike], strict: bool) -> int:
    """1 when anything was dropped or would be refused (an error), or warned of with strict."""
    severities = {n.severity for n in notes}
    return 1 if "error" in severities or (strict and "warning" in severities) else 0
