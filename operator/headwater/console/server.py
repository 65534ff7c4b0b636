"""``headwater console``: serve the app on a local address and open the browser."""

from __future__ import annotations

import asyncio
import contextlib
import webbrowser

import click
from aiohttp import web

from headwater.console import security
from headwater.console.app import HUB, OVERVIEW_KINDS, Settings, make_app
from headwater.console.live import Busy
from headwater.console.source import KubeSource


def url_host(address: str) -> str:
    """How a browser names the bound address: loopback wildcard binds as 127.0.0.1."""
    if address in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{address}]" if ":" in address else address


async def serve(source: KubeSource, settings: Settings, open_browser: bool) -> None:
    app = make_app(source, settings)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, settings.address, settings.port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise click.ClickException(
            f"cannot listen on {settings.address}:{settings.port}: {exc.strerror or exc}"
            " (another console? try --port)"
        ) from None
    # The overview of the namespace opened first is rendered from its watches: start
    # them now, while the browser starts.
    with contextlib.suppress(Busy):
        app[HUB].keep(OVERVIEW_KINDS, source.default_namespace)
    url = f"http://{url_host(settings.address)}:{settings.port}/ns/{source.default_namespace}"
    print(f"Headwater console on {url} (Ctrl+C stops it)", flush=True)
    if open_browser:
        # webbrowser may start a process and wait for it: off the event loop.
        await asyncio.to_thread(webbrowser.open, url)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def run(
    kubeconfig: str | None,
    context: str | None,
    namespace: str | None,
    address: str,
    port: int,
    open_browser: bool,
) -> None:
    from headwater.cli.kube import load_config

    single = load_config(kubeconfig, context)
    chosen = namespace or single.namespace or "default"
    source = KubeSource(single, chosen)
    settings = Settings(
        address=address,
        port=port,
        context_name=str(getattr(single, "context_name", "") or ""),
        token=security.new_token(),
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(source, settings, open_browser))
