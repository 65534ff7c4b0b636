"""bench/peers.py's pure helpers: figures from watch histories, /proc readings, ratios."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from bench._peers_lib import (
    cpu_seconds,
    first_after,
    fmt,
    peak_rss_mb,
    ratio,
    ratio_line,
    table,
    value_at,
)


def test_first_after_takes_the_first_match_at_or_after_the_push() -> None:
    history = [(1.0, "a"), (2.0, "b"), (3.0, "c"), (4.0, "b")]
    assert first_after(history, 2.5, lambda v: v == "b") == 4.0
    assert first_after(history, 2.0, lambda v: v == "b") == 2.0
    assert first_after(history, 5.0, lambda v: True) is None


def test_value_at_is_the_last_value_before() -> None:
    history = [(1.0, 10), (2.0, 11)]
    assert value_at(history, 0.5) is None
    assert value_at(history, 2.0) == 10
    assert value_at(history, 9.0) == 11


def test_cpu_seconds_counts_fields_after_a_command_name_with_spaces() -> None:
    # utime 250 and stime 50 ticks; the name holds a space and a parenthesis.
    fields = ["S", *["0"] * 10, "250", "50", *["0"] * 30]
    stat = f"42 (tool (x) y) {' '.join(fields)}"
    assert cpu_seconds(stat) == pytest.approx(3.0)


def test_cpu_seconds_reads_this_process() -> None:
    assert cpu_seconds(Path(f"/proc/{os.getpid()}/stat").read_text()) > 0


def test_peak_rss_reads_vmhwm() -> None:
    assert peak_rss_mb("Name:\tx\nVmHWM:\t  20480 kB\nVmRSS:\t1 kB\n") == 20.0
    with pytest.raises(ValueError, match="VmHWM"):
        peak_rss_mb("Name:\tx\n")


def test_fmt_keeps_three_significant_digits_and_marks_missing() -> None:
    assert fmt(None) == "-"
    assert fmt(math.nan) == "-"
    assert fmt(0) == "0"
    assert fmt(4512.3) == "4512"
    assert fmt(12.345, " ms") == "12.3 ms"
    assert fmt(0.01234) == "0.0123"


def test_ratio_is_ours_over_theirs() -> None:
    assert ratio(1.0, 2.0) == "0.50"
    assert ratio(12.0, 1.0) == "12"
    assert ratio(0.0, 5.0) == "0"
    assert ratio(5.0, 0.0) == "inf"
    assert ratio(None, 1.0) == "-"


def test_ratio_line_leaves_out_missing_pairs() -> None:
    line = ratio_line(
        {
            "poll_p50 hw/keel": (4500.0, 4600.0),
            "push_p50 hw/keel": (3170.0, None),
            "idle_writes hw/flux": (0.0, 80.0),
        }
    )
    assert line == "peers: poll_p50 hw/keel=0.98 idle_writes hw/flux=0"
    assert ratio_line({}) == "peers: (nothing to compare)"


def test_table_aligns_columns() -> None:
    text = table(["name", "n"], [["hw", "1"], ["keel", "10"]])
    lines = text.splitlines()
    assert lines[0] == "  name   n"
    assert lines[2] == "  hw     1"
    assert lines[3] == "  keel  10"
