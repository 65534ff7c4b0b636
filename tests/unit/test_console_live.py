"""The console's live overview never drops a change that lands while another is debounced.

Found by the browser tests: a build's Complete and its tag move arrive together
(the operator writes both); the overview showed the tag and kept the build Running.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer, unused_port

from headwater.console.app import DEBOUNCE_SECONDS, Settings, make_app
from tests.consolefake import FakeSource, build, buildconfig, stream


@pytest.fixture
async def client_and_source() -> AsyncIterator[tuple[TestClient[Any, Any], FakeSource]]:
    source = FakeSource("shop")
    source.add("imagestreams", "shop", stream("web"))
    source.add("buildconfigs", "shop", buildconfig("web", last=1))
    source.add("builds", "shop", build("web", 1, "Running", minutes_ago=1))
    port = unused_port()
    app = make_app(source, Settings(address="127.0.0.1", port=port, token="t"))
    async with TestClient(TestServer(app, host="127.0.0.1", port=port)) as client:
        yield client, source


async def _events(response: Any, until: str, wait_seconds: float = 5) -> dict[str, str]:
    """The last data of each event name, read until an event whose data contains ``until``."""
    seen: dict[str, str] = {}

    async def read() -> dict[str, str]:
        event, data = "", []
        while True:
            raw = await response.content.readline()
            if not raw:
                raise AssertionError(f"stream ended; seen {seen}")
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
            elif line == "":
                if event:
                    seen[event] = "\n".join(data)
                    if until in seen[event]:
                        return seen
                event, data = "", []

    try:
        return await asyncio.wait_for(read(), wait_seconds)
    except TimeoutError:
        raise AssertionError(f"no event with {until!r}; last of each: {seen}") from None


async def test_a_change_during_the_debounce_of_another_is_sent(
    client_and_source: tuple[TestClient[Any, Any], FakeSource],
) -> None:
    client, source = client_and_source
    response = await client.get("/ns/shop/overview/events")
    await _events(response, "1 not finished")  # the first full render
    await asyncio.sleep(0)
    moved = stream("web", tags=2)
    source.emit("imagestreams", "shop", "MODIFIED", moved)
    # The build ends while the stream's change waits out its debounce.
    await asyncio.sleep(DEBOUNCE_SECONDS / 5)
    source.emit("builds", "shop", "MODIFIED", build("web", 1, "Complete", minutes_ago=1))
    got = await _events(response, "0 not finished")
    assert "Complete" in got["builds"]
    response.close()
