"""ImageStream handlers (imagestreams.v1.image.headwater.dev).

Every watch event hands the stream to the import runner, which queues it (its
work queue decides what, if anything, to import, follows aliases and writes
status, retrying failures), and to the tag feed; a deletion drops the stream
from the queue and wakes the streams that aliased it.
"""

from __future__ import annotations

import copy
from typing import Any

import kopf

from headwater.handlers.lifecycle import memo_import_runner, memo_tag_feed


@kopf.on.event(group="image.headwater.dev", version="v1", plural="imagestreams")
async def reconcile_imagestream(
    type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any
) -> None:
    """Converge the ImageStream's tags and status."""
    runner = memo_import_runner(memo)
    feed = memo_tag_feed(memo)
    metadata = body.get("metadata") or {}
    if type == "DELETED":
        runner.forget(str(metadata.get("namespace")), str(metadata.get("name")))
        feed.forget(str(metadata.get("namespace")), str(metadata.get("name")))
        return
    # kopf's body is a view over the event; the runner keeps it past this event.
    plain = copy.deepcopy(dict(body))
    await runner.observe(plain)
    await feed.observe(plain)
