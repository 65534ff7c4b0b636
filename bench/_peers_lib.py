"""Pure helpers of ``bench/peers.py``: figures from histories, /proc readings, the ratio line.

Kept apart from the bench (which needs a cluster) so unit tests cover them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

T = TypeVar("T")

CLOCK_TICKS = 100
"""``sysconf(_SC_CLK_TCK)`` on Linux; the unit of utime/stime in /proc/<pid>/stat."""


def first_after(
    history: Sequence[tuple[float, T]], since: float, matches: Callable[[T], bool]
) -> float | None:
    """The time of the first entry at or after ``since`` whose value ``matches``."""
    for seen, value in history:
        if seen >= since and matches(value):
            return seen
    return None


def value_at(history: Sequence[tuple[float, T]], when: float) -> T | None:
    """The value last seen before ``when`` (None when nothing was seen yet)."""
    found: T | None = None
    for seen, value in history:
        if seen >= when:
            break
        found = value
    return found


def cpu_seconds(stat: str, ticks: int = CLOCK_TICKS) -> float:
    """utime + stime of a ``/proc/<pid>/stat`` line, in seconds.

    The command name (field 2) may hold spaces and parentheses: fields are
    counted after its last ``)``.
    """
    rest = stat[stat.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state): utime is field 14, stime field 15.
    return (int(rest[11]) + int(rest[12])) / ticks


def peak_rss_mb(status: str) -> float:
    """VmHWM (peak resident set) of a ``/proc/<pid>/status`` text, in MiB."""
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise ValueError("no VmHWM line")


def fmt(value: float | None, unit: str = "") -> str:
    """A figure for the table: ``-`` when not measured, else 3 significant digits."""
    if value is None or math.isnan(value):
        return "-"
    if value == 0:
        return f"0{unit}"
    digits = max(0, 2 - math.floor(math.log10(abs(value))))
    return f"{value:.{digits}f}{unit}"


def ratio(ours: float | None, theirs: float | None) -> str:
    """Headwater's figure over the peer's, two significant digits; ``-`` when either is
    missing, ``0`` when ours is 0, ``inf`` when only theirs is 0."""
    if ours is None or theirs is None:
        return "-"
    if ours == 0:
        return "0"
    if theirs == 0:
        return "inf"
    value = ours / theirs
    digits = max(0, 1 - math.floor(math.log10(abs(value))))
    return f"{value:.{digits}f}"


def ratio_line(pairs: Mapping[str, tuple[float | None, float | None]]) -> str:
    """``peers: <figure> hw/<peer>=<ratio> ...`` from ``{"poll_p50 hw/keel": (hw, keel)}``,
    the pairs with a figure missing left out."""
    parts = []
    for key, (ours, theirs) in pairs.items():
        text = ratio(ours, theirs)
        if text != "-":
            figure, _, peer = key.partition(" ")
            parts.append(f"{figure} {peer}={text}")
    return "peers: " + (" ".join(parts) if parts else "(nothing to compare)")


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain aligned table, first column left-aligned, the others right-aligned."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        out = [str(cells[0]).ljust(widths[0])]
        out += [str(c).rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "  " + "  ".join(out)

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])
