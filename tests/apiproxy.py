"""An HTTPS proxy in front of the Kubernetes API server that counts requests and injects 500s.

The operator under test is given the kubeconfig this proxy writes (server
``https://127.0.0.1:<port>``, the proxy's self-signed certificate as its CA,
no credentials); the proxy forwards every request to the real API server with
the credentials of the cluster's own kubeconfig. Responses, watch streams
included, are streamed through chunk by chunk, never buffered.

Each request is counted by (verb, resource), the verb derived as the API
server's RequestInfo does (``GET`` on a collection is ``list``, with
``?watch`` it is ``watch``, on an item ``get``; ``POST`` create, ``PUT``
update, ``PATCH`` patch, ``DELETE`` delete or deletecollection). A
:class:`Faults` plan answers a seeded fraction of writes and of reads (never
watches) with a 500 ``Status`` instead of forwarding them.

Tests and bench scripts share it::

    with running_api_proxy(kubeconfig, workdir, Faults(write_rate=0.2, seed=1)) as proxy:
        ...  # start the operator with KUBECONFIG=proxy.kubeconfig
        proxy.reset()
        ...
        counts = proxy.snapshot()

The proxy runs its own event loop in a background thread, so synchronous
tests and asyncio benches use it alike.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random
import ssl
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

from headwater.certs import make_serving_cert

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
READ_VERBS = frozenset({"get", "list"})

INJECTED_STATUS = {
    "kind": "Status",
    "apiVersion": "v1",
    "metadata": {},
    "status": "Failure",
    "code": 500,
    "reason": "InternalError",
    "message": "injected",
}

# Hop-by-hop headers (RFC 9110 7.6.1) and what this proxy sets itself.
_DROP_REQUEST = frozenset(
    {
        "host",
        "authorization",
        "connection",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "accept-encoding",
    }
)
_DROP_RESPONSE = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"}
)
_WRITE_METHODS = {"POST": "create", "PUT": "update", "PATCH": "patch"}
# Subresources of a namespace itself (/api/v1/namespaces/<ns>/status), as the API server has them.
_NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})


@dataclass(frozen=True)
class RequestInfo:
    """What the API server's RequestInfo resolver makes of a request (the parts counted here)."""

    verb: str
    resource: str
    """``imagestreams``, ``imagestreams/status``; the path for a non-resource request."""
    namespace: str = ""
    name: str = ""
    is_resource: bool = True


def _is_watch(query: Mapping[str, str]) -> bool:
    return query.get("watch", "").lower() in ("1", "true")


def request_info(method: str, path: str, query: Mapping[str, str]) -> RequestInfo:
    """Verb and resource of one API request, after k8s.io/apiserver's RequestInfoFactory."""
    method = method.upper()
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"]:
        rest = parts[2:]  # api, version
    elif parts[:1] == ["apis"]:
        rest = parts[3:]  # apis, group, version
    else:
        rest = []
    if not rest:
        return RequestInfo(method.lower(), path, is_resource=False)
    watch_prefix = rest[0] == "watch"
    if watch_prefix:  # the deprecated /api/v1/watch/... spelling
        rest = rest[1:]
        if not rest:
            return RequestInfo(method.lower(), path, is_resource=False)
    namespace = ""
    if rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    if len(rest) > 2:
        resource = f"{resource}/{rest[2]}"
    if method in ("GET", "HEAD") and (watch_prefix or _is_watch(query)):
        verb = "watch"
    elif method in ("GET", "HEAD"):
        verb = "get" if name else "list"
    elif method == "DELETE":
        verb = "delete" if name else "deletecollection"
    else:
        verb = _WRITE_METHODS.get(method, method.lower())
    return RequestInfo(verb, resource, namespace, name)


@dataclass(frozen=True)
class Faults:
    """Which fraction of writes and of reads (get, list; never watch) is answered 500."""

    write_rate: float = 0.0
    read_rate: float = 0.0
    seed: int = 0


class FaultSampler:
    """Seeded draws: the same plan and the same order of requests fail the same requests."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self._rng = random.Random(faults.seed)  # noqa: S311 - test faults, not cryptography

    def should_fail(self, verb: str) -> bool:
        if verb in WRITE_VERBS:
            rate = self.faults.write_rate
        elif verb in READ_VERBS:
            rate = self.faults.read_rate
        else:
            return False
        if rate <= 0:
            return False
        return self._rng.random() < rate


@dataclass(frozen=True)
class Counts:
    """Requests seen by the proxy since the last reset (failed ones included in ``requests``)."""

    requests: Mapping[tuple[str, str], int] = field(default_factory=dict)
    """(verb, resource) -> number of requests."""
    by_namespace: Mapping[tuple[str, str, str], int] = field(default_factory=dict)
    """(namespace, verb, resource) -> number of requests; namespace "" for cluster-wide ones."""
    injected: Mapping[tuple[str, str], int] = field(default_factory=dict)
    """(verb, resource) -> requests answered with the injected 500."""

    def total(self, verbs: frozenset[str] | None = None, namespace: str | None = None) -> int:
        if namespace is None:
            return sum(n for (v, _), n in self.requests.items() if verbs is None or v in verbs)
        return sum(
            n
            for (ns, v, _), n in self.by_namespace.items()
            if ns == namespace and (verbs is None or v in verbs)
        )

    def by_verb(self) -> dict[str, int]:
        out: Counter[str] = Counter()
        for (verb, _), n in self.requests.items():
            out[verb] += n
        return dict(out)

    def injected_total(self) -> int:
        return sum(self.injected.values())


def _materialise(entry: Mapping[str, Any], key: str, workdir: Path, filename: str) -> str | None:
    """A kubeconfig field as a file path: ``key`` as given, or ``key-data`` written out."""
    if entry.get(key):
        return str(entry[key])
    data = entry.get(f"{key}-data")
    if not data:
        return None
    path = workdir / filename
    path.write_bytes(base64.b64decode(data))
    path.chmod(0o600)
    return str(path)


@dataclass(frozen=True)
class Upstream:
    server: str
    ssl: ssl.SSLContext
    token: str | None


def read_upstream(kubeconfig: Path, workdir: Path) -> Upstream:
    """The current context's API server and credentials (client certificate or token)."""
    config = yaml.safe_load(kubeconfig.read_text())

    def named(kind: str, name: str) -> Mapping[str, Any]:
        for item in config.get(f"{kind}s") or []:
            if item.get("name") == name:
                return item.get(kind) or {}
        raise ValueError(f"{kubeconfig}: no {kind} named {name!r}")

    context_name = config.get("current-context") or config["contexts"][0]["name"]
    context = named("context", context_name)
    cluster = named("cluster", context["cluster"])
    user = named("user", context["user"]) if context.get("user") else {}
    ca = _materialise(cluster, "certificate-authority", workdir, "upstream-ca.crt")
    ctx = ssl.create_default_context(cafile=ca)
    cert = _materialise(user, "client-certificate", workdir, "upstream-client.crt")
    key = _materialise(user, "client-key", workdir, "upstream-client.key")
    if cert and key:
        ctx.load_cert_chain(cert, key)
    return Upstream(str(cluster["server"]).rstrip("/"), ctx, user.get("token"))


class ApiProxy:
    """The proxy itself, on the running event loop (see :func:`running_api_proxy`)."""

    def __init__(self, upstream: Upstream, workdir: Path, faults: Faults | None = None) -> None:
        self.upstream = upstream
        self.workdir = workdir
        self.kubeconfig = workdir / "apiproxy.kubeconfig"
        self.port = 0
        self._lock = threading.Lock()
        self._sampler = FaultSampler(faults or Faults())
        self._requests: Counter[tuple[str, str]] = Counter()
        self._by_namespace: Counter[tuple[str, str, str]] = Counter()
        self._injected: Counter[tuple[str, str]] = Counter()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    # --- control, callable from any thread -----------------------------------

    def set_faults(self, faults: Faults) -> None:
        with self._lock:
            self._sampler = FaultSampler(faults)

    def snapshot(self) -> Counts:
        with self._lock:
            return Counts(dict(self._requests), dict(self._by_namespace), dict(self._injected))

    def reset(self) -> Counts:
        """Start counting afresh; returns what was counted until now."""
        with self._lock:
            counts = Counts(dict(self._requests), dict(self._by_namespace), dict(self._injected))
            self._requests.clear()
            self._by_namespace.clear()
            self._injected.clear()
            return counts

    # --- serving ------------------------------------------------------------

    async def start(self) -> None:
        cert = make_serving_cert(self.workdir / "apiproxy-tls", ["127.0.0.1"])
        server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_ssl.load_cert_chain(cert.cert_file, cert.key_file)
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            auto_decompress=False,
            connector=aiohttp.TCPConnector(ssl=self.upstream.ssl, limit=0),
        )
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=server_ssl)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        self._write_kubeconfig(cert.cert_file)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def _write_kubeconfig(self, ca_file: Path) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "apiproxy",
                    "cluster": {
                        "server": f"https://127.0.0.1:{self.port}",
                        "certificate-authority": str(ca_file),
                    },
                }
            ],
            # The proxy holds the credentials; the client needs none.
            "users": [{"name": "apiproxy", "user": {"token": "apiproxy"}}],
            "contexts": [
                {"name": "apiproxy", "context": {"cluster": "apiproxy", "user": "apiproxy"}}
            ],
            "current-context": "apiproxy",
        }
        self.kubeconfig.write_text(json.dumps(config, indent=2))

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        info = request_info(request.method, request.path, request.query)
        with self._lock:
            key = (info.verb, info.resource)
            self._requests[key] += 1
            self._by_namespace[(info.namespace, *key)] += 1
            fail = self._sampler.should_fail(info.verb)
            if fail:
                self._injected[key] += 1
        body = await request.read()
        if fail:
            return web.json_response(INJECTED_STATUS, status=500)
        if request.headers.get("Upgrade"):
            return web.json_response(
                {**INJECTED_STATUS, "code": 501, "message": "apiproxy forwards no upgrades"},
                status=501,
            )
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _DROP_REQUEST}
        headers["Accept-Encoding"] = "identity"
        if self.upstream.token:
            headers["Authorization"] = f"Bearer {self.upstream.token}"
        assert self._session is not None
        try:
            upstream = await self._session.request(
                request.method,
                self.upstream.server + request.path_qs,
                headers=headers,
                data=body or None,
                allow_redirects=False,
            )
        except aiohttp.ClientError as exc:
            return web.json_response(
                {**INJECTED_STATUS, "code": 502, "message": f"apiproxy: {exc}"}, status=502
            )
        async with upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for k, v in upstream.headers.items():
                if k.lower() not in _DROP_RESPONSE:
                    response.headers.add(k, v)
            await response.prepare(request)
            with contextlib.suppress(aiohttp.ClientError, ConnectionResetError):
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
            with contextlib.suppress(ConnectionResetError):
                await response.write_eof()
        return response


async def _cancel_all() -> None:
    """Streams still open (watches whose client went away) end with the proxy."""
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


@contextlib.contextmanager
def running_api_proxy(
    kubeconfig: Path, workdir: Path, faults: Faults | None = None
) -> Iterator[ApiProxy]:
    """The proxy serving in a background thread; ``proxy.kubeconfig`` points at it."""
    workdir.mkdir(parents=True, exist_ok=True)
    loop = asyncio.new_event_loop()
    proxy = ApiProxy(read_upstream(kubeconfig, workdir), workdir, faults)
    thread = threading.Thread(target=loop.run_forever, name="apiproxy", daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(proxy.start(), loop).result(timeout=30)
        yield proxy
    finally:
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(proxy.stop(), loop).result(timeout=30)
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(_cancel_all(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def format_counts(counts: Counts) -> str:
    """One line per (verb, resource), most requests first."""
    rows = sorted(counts.requests.items(), key=lambda kv: (-kv[1], kv[0]))
    return "\n".join(
        f"  {verb:<17} {resource:<40} {n:>6}"
        + (
            f"  ({counts.injected[(verb, resource)]} injected 500)"
            if (verb, resource) in counts.injected
            else ""
        )
        for (verb, resource), n in rows
    )
