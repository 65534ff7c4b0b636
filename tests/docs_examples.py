"""The runnable examples of ``docs/*.md``: parsing them and checking their output.

A runnable example is a ```` ```console ```` block right after the line
``<!-- runnable -->`` (an HTML comment, so it does not show on the page).
Inside it, a line starting with ``$ `` is a command (a trailing ``\\``
continues it on the next line, and a here-document ``<<EOF`` takes the lines
up to its terminator) and the lines after it, up to the next command, are
what the doc says it prints:

- each such line must match one line of the command's output (stdout and
  stderr together, trailing spaces ignored), in the order written; output
  lines the doc leaves out are allowed;
- ``...`` in a line matches any text (a digest, an age, a pod's name).

A command must exit 0; a doc that shows a failure writes ``cmd || echo "exit $?"``
and the line ``exit 1`` as its output.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

MARKER = "<!-- runnable -->"
_HEREDOC = re.compile(r"<<-?\s*(['\"]?)(\w+)\1")
ELLIPSIS = "..."


@dataclass(frozen=True)
class Step:
    """One command of a doc and the lines the doc says it prints."""

    source: str
    line: int
    command: str
    expected: tuple[str, ...]

    def where(self) -> str:
        return f"{self.source}:{self.line}"


class DocFormatError(ValueError):
    """A runnable marker not followed by a console block, or a block with no command."""


def parse(text: str, source: str) -> list[Step]:
    """Every step of the runnable blocks of one Markdown text, in order."""
    lines = text.splitlines()
    steps: list[Step] = []
    i = 0
    while i < len(lines):
        if lines[i].strip() != MARKER:
            i += 1
            continue
        j = i + 1
        while j < len(lines) and not lines[j].strip():
            j += 1
        if j >= len(lines) or lines[j].strip() != "```console":
            raise DocFormatError(
                f"{source}:{i + 1}: {MARKER} must be followed by a ```console block"
            )
        end = j + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        if end >= len(lines):
            raise DocFormatError(f"{source}:{j + 1}: the console block is never closed")
        block = _parse_block(lines[j + 1 : end], source, j + 2)
        if not block:
            raise DocFormatError(f"{source}:{j + 1}: a runnable block without a `$ ` command")
        steps += block
        i = end + 1
    return steps


def _parse_block(lines: list[str], source: str, first_line: int) -> list[Step]:
    steps: list[Step] = []
    command: list[str] = []
    expected: list[str] = []
    start = first_line
    continued = False
    heredoc: str | None = None

    def flush() -> None:
        if command:
            steps.append(Step(source, start, "\n".join(command), tuple(expected)))

    for offset, line in enumerate(lines):
        if heredoc is not None:
            command.append(line)
            if line.strip() == heredoc:
                heredoc = None
            continue
        if continued:
            command.append(line)
            continued = line.endswith("\\")
            heredoc = _heredoc(line)
            continue
        if line.startswith("$ "):
            flush()
            command, expected = [line[2:]], []
            start = first_line + offset
            continued = line.endswith("\\")
            heredoc = _heredoc(line)
        elif command:
            expected.append(line.rstrip())
        elif line.strip():
            raise DocFormatError(
                f"{source}:{first_line + offset}: output before the block's first `$ ` command"
            )
    if heredoc is not None:
        raise DocFormatError(f"{source}:{start}: the here-document {heredoc} is never closed")
    flush()
    return steps


def _heredoc(line: str) -> str | None:
    match = _HEREDOC.search(line)
    return match.group(2) if match else None


def _pattern(expected: str) -> re.Pattern[str]:
    return re.compile(".*?".join(re.escape(part) for part in expected.split(ELLIPSIS)))


def mismatch(expected: tuple[str, ...], output: str) -> str | None:
    """Why ``output`` does not show ``expected`` in order, or None when it does."""
    actual = [line.rstrip() for line in output.splitlines()]
    position = 0
    for want in expected:
        if not want.strip():
            continue
        pattern = _pattern(want)
        while position < len(actual) and not pattern.fullmatch(actual[position]):
            position += 1
        if position == len(actual):
            return f"the doc says it prints {want!r}, which is not in the output (in this order)"
        position += 1
    return None


def runnable_docs(docs: Path) -> list[Path]:
    """The Markdown files under ``docs`` that hold runnable examples."""
    return sorted(p for p in docs.glob("*.md") if MARKER in p.read_text())
