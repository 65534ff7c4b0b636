"""``headwater console``: serve the app on a local address and open the browser; or, in
token mode, serve every user behind a proxy with their own token."""

from __future__ import annotations

import asyncio
import contextlib
import webbrowser

import click
from aiohttp import web

from headwater.console import security
from headwater.console.app import HUB, OVERVIEW_KINDS, Settings, make_app, make_token_app
from headwater.console.live import Busy
from headwater.console.source import KubeSource, in_cluster, with_token


def url_host(address: str) -> str:
    """How a browser names the bound address: loopback wildcard binds as 127.0.0.1."""
    if address in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{address}]" if ":" in address else address


async def serve(source: KubeSource, settings: Settings, open_browser: bool) -> None:
    await serve_app(make_app(source, settings), source, settings, open_browser)


async def serve_app(
    app: web.Application, source: KubeSource | None, settings: Settings, open_browser: bool
) -> None:
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
    if source is None:
        # Token mode: nothing is read before a user asks, with their own token.
        url = f"http://{url_host(settings.address)}:{settings.port}/"
        print(f"Headwater console (token mode) on {url}, behind your proxy", flush=True)
    else:
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
    token_auth: bool = False,
    allowed_hosts: tuple[str, ...] = (),
) -> None:
    from headwater.cli.kube import load_config

    if token_auth:
        run_token_mode(kubeconfig, context, namespace, address, port, allowed_hosts)
        return
    single = load_config(kubeconfig, context)
    chosen = namespace or single.namespace or "default"
    source = KubeSource(single, chosen)
    settings = Settings(
        address=address,
        port=port,
        context_name=str(getattr(single, "context_name", "") or ""),
        token=security.new_token(),
        allowed_hosts=allowed_hosts,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(source, settings, open_browser))


def run_token_mode(
    kubeconfig: str | None,
    context: str | None,
    namespace: str | None,
    address: str,
    port: int,
    allowed_hosts: tuple[str, ...],
) -> None:
    """Token mode: the cluster from the pod (in-cluster address and CA) or, when
    ``--kubeconfig``/``--context`` is given, from that context's cluster entry alone;
    each user acts with the bearer token their request carries."""
    from headwater.cli.kube import load_config

    chosen = namespace or "default"
    if kubeconfig or context:
        cluster = load_config(kubeconfig, context)._replace(user=None)
    else:
        cluster = in_cluster(chosen)

    def make_source(token: str) -> KubeSource:
        return KubeSource(with_token(cluster, token), chosen)

    settings = Settings(
        address=address, port=port, context_name="", token_auth=True,
        allowed_hosts=allowed_hosts,
    )  # fmt: skip
    app = make_token_app(make_source, settings)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_app(app, None, settings, open_browser=False))
