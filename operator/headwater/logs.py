"""Log set-up: kopf's formatters (text or JSON) plus a filter that keeps secrets out.

Headwater never logs credentials on purpose; the filter is the safety net for
library messages that echo request headers or URLs with user:password in them.
"""

from __future__ import annotations

import logging
import re

import kopf

from headwater.config import LogFormat

_SECRETS = (
    (re.compile(r"(?i)\b(authorization:\s*)(bearer|basic)\s+[^\s'\",]+"), r"\1\2 <redacted>"),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{16,}"), r"\1 <redacted>"),
    (re.compile(r"(?i)(://[^/\s:@]+:)[^/\s@]+@"), r"\1<redacted>@"),
    (re.compile(r"(?i)\b(password|token|secret)(=|\":\s*\"|:\s*)[^\s&\",]+"), r"\1\2<redacted>"),
)


def redact(text: str) -> str:
    """``text`` with bearer/basic credentials, URL passwords and key=secret values masked."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites each record's message through :func:`redact`."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def configure_logging(log_format: LogFormat, *, verbose: bool = False) -> None:
    """Root logging through kopf's handler, in text or JSON lines."""
    kopf.configure(
        verbose=verbose,
        log_format=kopf.LogFormat.JSON if log_format == "json" else kopf.LogFormat.FULL,
        log_refkey="object" if log_format == "json" else None,
    )
    # httpx2 (under lightkube) logs every request at INFO: the Lease renewal
    # alone would be a line every two seconds.
    for name in ("httpx", "httpx2"):
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.WARNING)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
