"""Workload image triggers: kopf wiring for the five kinds.

Every watch event of a Deployment, StatefulSet, DaemonSet, CronJob or Job
carrying a trigger annotation goes to :class:`~headwater.workloads.controller.WorkloadTriggers`.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from typing import Any

import kopf

from headwater.handlers.lifecycle import MEMO_WORKLOADS
from headwater.workloads.controller import WorkloadTriggers
from headwater.workloads.triggers import TRIGGER_ANNOTATIONS, WORKLOAD_KINDS, trigger_annotation


def memo_workload_triggers(memo: kopf.Memo) -> WorkloadTriggers:
    """The workload trigger controller the start-up handler made."""
    controller = memo.get(MEMO_WORKLOADS)
    if not isinstance(controller, WorkloadTriggers):
        raise RuntimeError("no workload triggers on kopf's memo: the start-up handler did not run")
    return controller


def _handler(key: str) -> Callable[..., Awaitable[None]]:
    async def workload_triggers(
        type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any
    ) -> None:
        """Converge a workload carrying the ``key`` trigger annotation."""
        # kopf's body is a view over the event; the controller keeps it past this event.
        plain = copy.deepcopy(dict(body))
        found = trigger_annotation(plain)
        if found is not None and found[0] != key:
            return  # both keys present: the other key's handler has this event
        await memo_workload_triggers(memo).on_event(type, plain)

    return workload_triggers


def register(registry: kopf.OperatorRegistry) -> None:
    """One event handler per kind and annotation key (kopf filters on one key at a time)."""
    for kind in WORKLOAD_KINDS.values():
        for key in TRIGGER_ANNOTATIONS:
            kopf.on.event(
                group=kind.group,
                version=kind.version,
                plural=kind.plural,
                id=f"image-triggers-{key.split('/')[0]}",
                annotations={key: kopf.PRESENT},
                registry=registry,
            )(_handler(key))


register(kopf.get_default_registry())
