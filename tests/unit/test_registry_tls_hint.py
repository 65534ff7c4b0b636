"""A registry that speaks plain HTTP to a TLS client: the error names the fix (issue 19).

The server is on loopback; it answers the TLS ClientHello with a plain HTTP line,
which is what a plain-HTTP registry does.
"""

from __future__ import annotations

import asyncio

import pytest

from headwater.registry.client import RegistryClient, RegistryError


async def test_plain_http_registry_names_insecure_and_the_import_policy() -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server, RegistryClient() as registry:
        with pytest.raises(RegistryError) as caught:
            await registry.resolve(f"127.0.0.1:{port}", "app", "v1", insecure=False)
    assert caught.value.reason == "TLSError"
    message = caught.value.message
    assert "plain HTTP" in message
    assert "--insecure" in message
    assert "importPolicy.insecure: true" in message
