"""Whether the import schedule can be kept: scheduled tags per registry host against its rate.

Every scheduled tag is checked once per ``importIntervalSeconds``, but a
registry host gets at most its rate of checks a minute (``importRates``, else
``importRatePerMinute``). When a host has more scheduled tags than its rate
can check in one interval, each of them is really checked about every
``tags / rate`` instead: the streams that import from it get the condition
``ImportScheduleMet`` (status False, reason ``RateLimited``) naming the host,
its rate and that effective interval, and the metrics
``headwater_import_effective_interval_seconds{registry}`` and
``headwater_import_schedule_behind{registry}`` say so per host. The condition
goes when the schedule can be kept again.
"""

from __future__ import annotations

import collections
import math
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from headwater.conditions import get_condition, remove_condition, set_condition
from headwater.imports.model import SpecTag, StreamRef
from headwater.metrics import (
    IMPORT_EFFECTIVE_INTERVAL,
    IMPORT_SCHEDULE_BEHIND,
    IMPORT_SCHEDULED_TAGS,
    registry_label,
)
from headwater.registry.reference import ReferenceError, parse_reference

SCHEDULE_MET = "ImportScheduleMet"
RATE_LIMITED = "RateLimited"
_EVERY = re.compile(r"about every (\d+) s")
DRIFT = 0.1
"""A changed effective interval is written only when it differs by more than this
fraction from the one the condition gives (or with another write): a stream added
to a host must not cost a write on every other stream of that host."""


def scheduled_hosts(tags: Iterable[SpecTag]) -> collections.Counter[str]:
    """The registry hosts (API hosts) of a stream's scheduled tags, with how many each."""
    hosts: collections.Counter[str] = collections.Counter()
    for tag in tags:
        if not tag.importable or not tag.scheduled or "@" in tag.from_name:
            continue
        try:
            hosts[parse_reference(tag.from_name).api_host] += 1
        except ReferenceError:
            continue
    return hosts


class Schedule:
    """Scheduled tags per host, kept up to date as streams come, change and go."""

    def __init__(self, interval: int, rate: Callable[[str], int]) -> None:
        self.interval = interval
        self.rate = rate
        """Requests per minute of a host's scheduled lane."""
        self._streams: dict[StreamRef, collections.Counter[str]] = {}
        self._hosts: collections.Counter[str] = collections.Counter()

    def observe(self, ref: StreamRef, tags: Iterable[SpecTag]) -> None:
        hosts = scheduled_hosts(tags)
        old = self._streams.get(ref)
        if old == hosts:
            return
        if hosts:
            self._streams[ref] = hosts
        else:
            self._streams.pop(ref, None)
        self._change(old or collections.Counter(), hosts)

    def forget(self, ref: StreamRef) -> None:
        old = self._streams.pop(ref, None)
        if old:
            self._change(old, collections.Counter())

    def _change(self, old: Mapping[str, int], new: Mapping[str, int]) -> None:
        for host in set(old) | set(new):
            self._hosts[host] += new.get(host, 0) - old.get(host, 0)
            if self._hosts[host] <= 0:
                del self._hosts[host]
        self._publish({registry_label(host) for host in set(old) | set(new)})

    def tags(self, host: str) -> int:
        """Scheduled tags that import from ``host``."""
        return self._hosts.get(host, 0)

    def effective_interval(self, host: str) -> int:
        """About how often each scheduled tag of ``host`` is really checked, in seconds."""
        needed = math.ceil(self.tags(host) * 60 / self.rate(host))
        return max(self.interval, needed)

    def behind(self, host: str) -> bool:
        return self.effective_interval(host) > self.interval

    def _publish(self, labels: set[str]) -> None:
        by_label: dict[str, list[str]] = collections.defaultdict(list)
        for host in self._hosts:
            label = registry_label(host)
            if label in labels:
                by_label[label].append(host)
        for label in labels:
            hosts = by_label.get(label, [])
            worst = max((self.effective_interval(h) for h in hosts), default=self.interval)
            IMPORT_SCHEDULED_TAGS.labels(registry=label).set(sum(self.tags(h) for h in hosts))
            IMPORT_EFFECTIVE_INTERVAL.labels(registry=label).set(worst)
            IMPORT_SCHEDULE_BEHIND.labels(registry=label).set(1 if worst > self.interval else 0)

    def condition(
        self,
        ref: StreamRef,
        conditions: Iterable[Mapping[str, Any]] | None,
        generation: int,
        now: datetime,
    ) -> list[dict[str, Any]]:
        """The stream's conditions with ``ImportScheduleMet`` False while one of its
        hosts is behind; without it otherwise."""
        behind = [h for h in self._streams.get(ref, ()) if self.behind(h)]
        if not behind:
            if get_condition(conditions, SCHEDULE_MET) is None:
                return [dict(c) for c in conditions or ()]
            return [dict(c) for c in remove_condition(conditions, SCHEDULE_MET)]
        host = max(behind, key=self.effective_interval)
        every = self.effective_interval(host)
        current = get_condition(conditions, SCHEDULE_MET)
        if current is not None and current["status"] == "False":
            match = _EVERY.search(current["message"])
            if (
                match is not None
                and host in current["message"]
                and abs(int(match.group(1)) - every) <= DRIFT * every
            ):
                return [dict(c) for c in conditions or ()]
        message = (
            f"{self.tags(host)} scheduled tags import from {host} at"
            f" {self.rate(host)} requests a minute: each is checked about every {every} s,"
            f" not every {self.interval} s (raise importRates for {host})"
        )
        return [
            dict(c)
            for c in set_condition(
                conditions, SCHEDULE_MET, "False", RATE_LIMITED, message, generation, now
            )
        ]
