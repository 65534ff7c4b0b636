"""Kubernetes times (metav1.Time): RFC 3339, written in UTC, read into aware datetimes.

The one place that writes or reads a timestamp of an object: conditions,
status fields, events, build and pod times, image configs' ``created``.
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["format_time", "parse_time"]


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with second precision, as metav1.Time serialises."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: conditions need an aware time")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: object) -> datetime | None:
    """An RFC 3339 timestamp (``2026-01-02T03:04:05Z``, any fraction) as an aware datetime.

    None for anything else (missing, empty, not a string, not a time). A time
    without an offset is taken as UTC, so results always compare.
    """
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
