"""A fault-injecting proxy on the loopback: in front of the Kubernetes API server, or a registry.

The operator under test is given the kubeconfig this proxy writes (server
``https://127.0.0.1:<port>``, the proxy's self-signed certificate as its CA,
no credentials); the proxy forwards every request to the real API server with
the credentials of the cluster's own kubeconfig. Responses, watch streams
included, are streamed through chunk by chunk, never buffered.

Each request is counted by (verb, resource), the verb derived as the API
server's RequestInfo does (``GET`` on a collection is ``list``, with
``?watch`` it is ``watch``, on an item ``get``; ``POST`` create, ``PUT``
update, ``PATCH`` patch, ``DELETE`` delete or deletecollection).

A :class:`Faults` plan (issue 14), switchable at run time with
``proxy.set_faults``, every draw from one seeded generator:

- errors: a share of writes (``write_rate``), of reads (``read_rate``) and of
  watch requests (``watch_rate``) is answered with a status drawn from
  ``statuses`` (500; 503 and 429 with ``Retry-After: retry_after``) instead
  of being forwarded;
- delays: every request waits ``delay`` seconds plus a uniform draw in
  ``[0, delay_jitter]`` before it is forwarded;
- resets: a share of requests (``reset_rate``) has its TCP connection closed
  without an answer before it is forwarded, another (``lost_answer_rate``)
  after the upstream answered (the write happened, the client never hears);
- cut watches: with ``cut_watches=(lo, hi)`` every watch stream ends after a
  uniform draw in ``[lo, hi]`` seconds, on an event boundary (``cut_mode``
  ``"end"``, as the API server's own timeout does) or with a reset (``"reset"``);
- black hole: for ``blackhole_seconds`` after ``set_faults``, nothing passes:
  streams in flight stall, new requests are never answered (``blackhole_mode``
  ``"hang"``: the client must give up) or held and forwarded once the window
  ends (``"hold"``).

:func:`running_http_proxy` puts the same proxy in front of a plain HTTP(S)
registry: requests are counted by method and path prefix (``/v2/<name>/manifests``),
``GET``/``HEAD`` are reads and the other methods writes, the client's own
``Authorization`` goes through and ``Location`` headers point back at the proxy.

Tests and bench scripts share it::

    with running_api_proxy(kubeconfig, workdir, Faults(write_rate=0.2, seed=1)) as proxy:
        ...  # start the operator with KUBECONFIG=proxy.kubeconfig
        proxy.reset()
        proxy.set_faults(Faults(read_rate=0.1, statuses=(500, 503, 429), cut_watches=(1, 10)))
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
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, NoReturn

import aiohttp
import yaml
from aiohttp import web

from headwater.certs import make_serving_cert

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
READ_VERBS = frozenset({"get", "list"})
REGISTRY_WRITE_VERBS = frozenset({"put", "post", "patch", "delete"})

Flavor = Literal["kubernetes", "registry"]
_STATUS_REASONS = {429: "TooManyRequests", 503: "ServiceUnavailable", 504: "Timeout"}

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


_REGISTRY_KEYWORDS = frozenset({"manifests", "blobs", "tags", "referrers"})
REGISTRY_READ_VERBS = frozenset({"get", "head"})
"""Verbs of :func:`registry_request_info`: the HTTP method, lowercased."""


def registry_request_info(method: str, path: str, query: Mapping[str, str]) -> RequestInfo:
    """Method and path prefix of a registry request: ``/v2/<name>/manifests`` for a manifest,
    ``/v2/<name>/blobs/uploads`` for an upload, the whole path otherwise (``/v2/``)."""
    del query
    parts = [p for p in path.split("/") if p]
    for i, part in enumerate(parts):
        if i >= 2 and part in _REGISTRY_KEYWORDS:
            keep = i + 2 if parts[i + 1 : i + 2] == ["uploads"] else i + 1
            return RequestInfo(method.lower(), "/" + "/".join(parts[:keep]))
    return RequestInfo(method.lower(), path, is_resource=False)


StatusCode = Literal[500, 502, 503, 504, 429]


@dataclass(frozen=True)
class Faults:
    """What the proxy does to requests (see the module's docstring); nothing by default."""

    write_rate: float = 0.0
    """Share of writes (create, update, patch, delete; a registry's PUT, POST, PATCH, DELETE)
    answered with an error."""
    read_rate: float = 0.0
    """Share of reads (get, list; registry GET, HEAD) answered with an error."""
    seed: int = 0
    watch_rate: float = 0.0
    """Share of watch requests answered with an error instead of a stream."""
    statuses: tuple[StatusCode, ...] = (500,)
    """The error of each injected failure, drawn uniformly: e.g. ``(500, 503, 429)``."""
    retry_after: int = 1
    """``Retry-After`` seconds of an injected 503 or 429."""
    delay: float = 0.0
    """Seconds every request waits before it is forwarded."""
    delay_jitter: float = 0.0
    """A further uniform draw in ``[0, delay_jitter]`` seconds per request."""
    reset_rate: float = 0.0
    """Share of requests whose connection is closed, without an answer, before forwarding."""
    lost_answer_rate: float = 0.0
    """Share of requests forwarded, then answered by closing the connection (the answer is lost)."""
    cut_watches: tuple[float, float] | None = None
    """Every watch stream ends after a uniform draw in this range of seconds; one already
    open when the faults are set draws its time then."""
    cut_mode: Literal["end", "reset"] = "end"
    """``end``: the stream ends cleanly after a whole event; ``reset``: the connection is closed."""
    blackhole_seconds: float = 0.0
    """For this long after ``set_faults`` nothing passes (streams in flight stall)."""
    blackhole_mode: Literal["hang", "hold"] = "hang"
    """``hang``: requests of the window are never answered; ``hold``: forwarded when it ends."""


@dataclass(frozen=True)
class Plan:
    """What happens to one request, drawn when it arrives."""

    status: int | None = None
    """Answer with this error instead of forwarding."""
    reset: bool = False
    """Close the connection before forwarding."""
    lose_answer: bool = False
    """Forward, then close the connection instead of answering."""
    delay: float = 0.0
    cut_after: float | None = None
    """End the (watch) stream after this many seconds."""

    @property
    def fault(self) -> str | None:
        """The name counted in :attr:`Counts.faults`; delays and cuts are counted apart."""
        if self.reset:
            return "reset"
        if self.lose_answer:
            return "lost-answer"
        if self.status is not None:
            return str(self.status)
        return None


class FaultSampler:
    """Seeded draws: the same plan and the same order of requests fail the same requests."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self._rng = random.Random(faults.seed)  # noqa: S311 - test faults, not cryptography

    def _rate(self, verb: str) -> float:
        if verb in WRITE_VERBS or verb in REGISTRY_WRITE_VERBS:
            return self.faults.write_rate
        if verb in READ_VERBS or verb in REGISTRY_READ_VERBS:
            return self.faults.read_rate
        if verb == "watch":
            return self.faults.watch_rate
        return 0.0

    def _draw(self, rate: float) -> bool:
        return rate > 0 and self._rng.random() < rate

    def should_fail(self, verb: str) -> bool:
        """Whether a request of ``verb`` is answered with an error (a draw if its rate is set)."""
        return self._draw(self._rate(verb))

    def cut_after(self) -> float | None:
        """Seconds a watch stream runs before it is cut (None: it is not)."""
        cut = self.faults.cut_watches
        return None if cut is None else self._rng.uniform(*cut)

    def plan(self, verb: str) -> Plan:
        """Every fault of one request; draws only for the faults that are switched on."""
        f = self.faults
        if self._draw(f.reset_rate):
            return Plan(reset=True)
        status: int | None = None
        if self.should_fail(verb):
            status = f.statuses[self._rng.randrange(len(f.statuses))] if f.statuses else 500
        delay = f.delay + (self._rng.uniform(0, f.delay_jitter) if f.delay_jitter > 0 else 0.0)
        if status is not None:
            return Plan(status=status, delay=delay)
        if verb == "watch":  # a stream's answer is never lost whole: it is cut
            return Plan(delay=delay, cut_after=self.cut_after())
        return Plan(lose_answer=self._draw(f.lost_answer_rate), delay=delay)


@dataclass(frozen=True)
class Counts:
    """Requests seen by the proxy since the last reset (failed ones included in ``requests``)."""

    requests: Mapping[tuple[str, str], int] = field(default_factory=dict)
    """(verb, resource) -> number of requests."""
    by_namespace: Mapping[tuple[str, str, str], int] = field(default_factory=dict)
    """(namespace, verb, resource) -> number of requests; namespace "" for cluster-wide ones."""
    injected: Mapping[tuple[str, str], int] = field(default_factory=dict)
    """(verb, resource) -> requests answered with an injected error status."""
    faults: Mapping[str, int] = field(default_factory=dict)
    """Fault -> times: ``500``, ``503``, ``429``, ``reset``, ``lost-answer``, ``cut`` (watch
    streams cut), ``delayed``, ``blackholed``."""

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
    ssl: ssl.SSLContext | None
    """None for a plain HTTP upstream."""
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


def _error_body(flavor: Flavor, status: int, message: str, retry_after: int) -> dict[str, Any]:
    if flavor == "registry":
        code = "TOOMANYREQUESTS" if status == 429 else "UNAVAILABLE" if status == 503 else "UNKNOWN"
        return {"errors": [{"code": code, "message": message}]}
    body: dict[str, Any] = {**INJECTED_STATUS, "code": status, "message": message}
    if status in _STATUS_REASONS:
        body["reason"] = _STATUS_REASONS[status]
    if status in (429, 503):
        body["details"] = {"retryAfterSeconds": retry_after}
    return body


class _Cut(Exception):
    """A watch stream's time is up."""


class ApiProxy:
    """The proxy itself, on the running event loop (see :func:`running_api_proxy`).

    ``flavor="kubernetes"`` (the default) fronts an API server: TLS with a kubeconfig
    written for the client, the upstream's credentials, verbs as Kubernetes names them.
    ``flavor="registry"`` fronts any HTTP(S) server, a registry: plain HTTP unless
    ``tls=True``, the client's credentials, requests counted by method and path prefix.
    """

    def __init__(
        self,
        upstream: Upstream,
        workdir: Path,
        faults: Faults | None = None,
        *,
        flavor: Flavor = "kubernetes",
        tls: bool | None = None,
    ) -> None:
        self.upstream = upstream
        self.workdir = workdir
        self.flavor: Flavor = flavor
        self.tls = flavor == "kubernetes" if tls is None else tls
        self.kubeconfig = workdir / "apiproxy.kubeconfig"
        self.ca_file: Path | None = None
        """The proxy's own certificate (its CA) when it serves TLS."""
        self.port = 0
        self._lock = threading.Lock()
        self._sampler = FaultSampler(Faults())
        self._blackhole_until = 0.0
        self._generation = 0
        """Counts ``set_faults``: watch streams in flight draw their cut again when it moves."""
        self._requests: Counter[tuple[str, str]] = Counter()
        self._by_namespace: Counter[tuple[str, str, str]] = Counter()
        self._injected: Counter[tuple[str, str]] = Counter()
        self._faults: Counter[str] = Counter()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.set_faults(faults or Faults())

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>``, as a registry host is written in an image reference."""
        return f"127.0.0.1:{self.port}"

    # --- control, callable from any thread -----------------------------------

    def set_faults(self, faults: Faults) -> None:
        """Switch to ``faults`` now; a black-hole window starts now."""
        with self._lock:
            self._sampler = FaultSampler(faults)
            self._blackhole_until = time.monotonic() + faults.blackhole_seconds
            self._generation += 1

    def blackhole(self, seconds: float, mode: Literal["hang", "hold"] = "hang") -> None:
        """The current faults, plus a black hole of ``seconds`` from now."""
        with self._lock:
            current = self._sampler.faults
        self.set_faults(replace(current, blackhole_seconds=seconds, blackhole_mode=mode))

    def _counts(self) -> Counts:
        return Counts(
            dict(self._requests),
            dict(self._by_namespace),
            dict(self._injected),
            dict(self._faults),
        )

    def snapshot(self) -> Counts:
        with self._lock:
            return self._counts()

    def reset(self) -> Counts:
        """Start counting afresh; returns what was counted until now."""
        with self._lock:
            counts = self._counts()
            self._requests.clear()
            self._by_namespace.clear()
            self._injected.clear()
            self._faults.clear()
            return counts

    # --- serving ------------------------------------------------------------

    async def start(self) -> None:
        server_ssl = None
        if self.tls:
            cert = make_serving_cert(self.workdir / "apiproxy-tls", ["127.0.0.1"])
            server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            server_ssl.load_cert_chain(cert.cert_file, cert.key_file)
            self.ca_file = cert.cert_file
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            auto_decompress=False,
            connector=aiohttp.TCPConnector(
                ssl=self.upstream.ssl if self.upstream.ssl is not None else False, limit=0
            ),
        )
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=server_ssl)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        if self.flavor == "kubernetes" and self.ca_file is not None:
            self._write_kubeconfig(self.ca_file)

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

    # --- faults -------------------------------------------------------------

    def _blackholed(self) -> tuple[float, str]:
        """Seconds left of the black-hole window (0 when none) and its mode."""
        with self._lock:
            return self._blackhole_until - time.monotonic(), self._sampler.faults.blackhole_mode

    async def _through_blackhole(self) -> None:
        """Wait for the black-hole window, if any, to end."""
        left = self._blackholed()[0]
        while left > 0:  # set_faults may end or move the window meanwhile
            await asyncio.sleep(min(left, 0.2))
            left = self._blackholed()[0]

    def _count(self, fault: str) -> None:
        with self._lock:
            self._faults[fault] += 1

    @staticmethod
    def _drop(request: web.Request) -> NoReturn:
        """Close the client's TCP connection without an answer."""
        if request.transport is not None:
            request.transport.abort()
        raise asyncio.CancelledError

    # --- forwarding ---------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        classify = request_info if self.flavor == "kubernetes" else registry_request_info
        info = classify(request.method, request.path, request.query)
        with self._lock:
            key = (info.verb, info.resource)
            self._requests[key] += 1
            self._by_namespace[(info.namespace, *key)] += 1
            plan = self._sampler.plan(info.verb)
            generation = self._generation
            retry_after = self._sampler.faults.retry_after
            if plan.status is not None:
                self._injected[key] += 1
            if plan.fault is not None:
                self._faults[plan.fault] += 1
        left, mode = self._blackholed()
        if left > 0:
            self._count("blackholed")
            if mode == "hang":
                # Never answered: the client gives up (or the proxy stops).
                transport = request.transport
                open_ = transport is not None and not transport.is_closing()
                while open_:
                    await asyncio.sleep(0.2)
                    open_ = transport is not None and not transport.is_closing()
                self._drop(request)
            await self._through_blackhole()
        if plan.delay > 0:
            self._count("delayed")
            await asyncio.sleep(plan.delay)
        if plan.reset:
            self._drop(request)
        body = await request.read()
        if plan.status is not None:
            headers = {"Retry-After": str(retry_after)} if plan.status in (429, 503) else {}
            return web.json_response(
                _error_body(self.flavor, plan.status, "injected", retry_after),
                status=plan.status,
                headers=headers,
            )
        if request.headers.get("Upgrade"):
            return web.json_response(
                {**INJECTED_STATUS, "code": 501, "message": "apiproxy forwards no upgrades"},
                status=501,
            )
        drop = _DROP_REQUEST if self.flavor == "kubernetes" else _DROP_REQUEST - {"authorization"}
        headers = {k: v for k, v in request.headers.items() if k.lower() not in drop}
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
                _error_body(self.flavor, 502, f"apiproxy: {exc}", retry_after), status=502
            )
        async with upstream:
            if plan.lose_answer:
                await upstream.read()
                self._drop(request)
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for k, v in upstream.headers.items():
                if k.lower() in _DROP_RESPONSE:
                    continue
                if k.lower() == "location" and v.startswith(self.upstream.server):
                    v = self.url + v[len(self.upstream.server) :]
                response.headers.add(k, v)
            if (
                self.flavor == "registry"
                and upstream.content_length is not None
                and "Content-Encoding" not in upstream.headers
            ):
                # Registry clients (go-containerregistry: Flux) refuse a manifest
                # answer without its length, a HEAD's included.
                response.content_length = upstream.content_length
            await response.prepare(request)
            if info.verb != "watch":
                await self._pump(upstream, response)
            elif await self._pump_watch(upstream, response, plan.cut_after, generation):
                self._count("cut")
                if self._sampler.faults.cut_mode == "reset":
                    self._drop(request)
            with contextlib.suppress(ConnectionResetError):
                await response.write_eof()
        return response

    async def _pump(self, upstream: aiohttp.ClientResponse, response: web.StreamResponse) -> None:
        """Upstream's body to the client as it comes."""
        with contextlib.suppress(aiohttp.ClientError, ConnectionResetError):
            async for chunk in upstream.content.iter_any():
                await self._through_blackhole()
                await response.write(chunk)

    async def _pump_watch(
        self,
        upstream: aiohttp.ClientResponse,
        response: web.StreamResponse,
        cut_after: float | None,
        generation: int,
    ) -> bool:
        """A watch stream to the client, whole lines only (a cut ends it after an event, never
        inside one); True when it was cut. Faults set while it runs draw its cut again."""
        loop = asyncio.get_running_loop()
        deadline = None if cut_after is None else loop.time() + cut_after
        pending = b""
        with contextlib.suppress(aiohttp.ClientError, ConnectionResetError):
            while True:
                with self._lock:
                    if self._generation != generation:
                        generation = self._generation
                        drawn = self._sampler.cut_after()
                        deadline = None if drawn is None else loop.time() + drawn
                now = loop.time()
                if deadline is not None and now >= deadline:
                    return True
                wait = 0.5 if deadline is None else min(0.5, deadline - now)
                try:
                    chunk = await asyncio.wait_for(upstream.content.readany(), wait)
                except TimeoutError:
                    continue
                if not chunk:
                    break
                await self._through_blackhole()
                pending += chunk
                end = pending.rfind(b"\n") + 1
                if end:
                    await response.write(pending[:end])
                    pending = pending[end:]
            if pending:
                await response.write(pending)
        return False


async def _cancel_all() -> None:
    """Streams still open (watches whose client went away) end with the proxy."""
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


@contextlib.contextmanager
def _serving(proxy: ApiProxy) -> Iterator[ApiProxy]:
    """``proxy`` serving on an event loop of its own, in a background thread."""
    loop = asyncio.new_event_loop()
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


@contextlib.contextmanager
def running_api_proxy(
    kubeconfig: Path, workdir: Path, faults: Faults | None = None
) -> Iterator[ApiProxy]:
    """The proxy serving in a background thread; ``proxy.kubeconfig`` points at it."""
    workdir.mkdir(parents=True, exist_ok=True)
    with _serving(ApiProxy(read_upstream(kubeconfig, workdir), workdir, faults)) as proxy:
        yield proxy


def http_upstream(url: str, ca_file: Path | None = None) -> Upstream:
    """A plain HTTP(S) server, a registry, as the proxy's upstream (no credentials of its own)."""
    url = url.rstrip("/")
    if "://" not in url:
        url = f"http://{url}"
    context = ssl.create_default_context(cafile=str(ca_file)) if ca_file else None
    return Upstream(url, context, None)


@contextlib.contextmanager
def running_http_proxy(
    upstream: str,
    workdir: Path,
    faults: Faults | None = None,
    *,
    ca_file: Path | None = None,
    tls: bool = False,
) -> Iterator[ApiProxy]:
    """The proxy in front of ``upstream`` (``127.0.0.1:5000`` or a URL), a registry:
    ``proxy.address`` is the registry host to use instead."""
    workdir.mkdir(parents=True, exist_ok=True)
    proxy = ApiProxy(http_upstream(upstream, ca_file), workdir, faults, flavor="registry", tls=tls)
    with _serving(proxy) as serving:
        yield serving


def format_counts(counts: Counts) -> str:
    """One line per (verb, resource), most requests first; the faults injected last."""
    rows = sorted(counts.requests.items(), key=lambda kv: (-kv[1], kv[0]))
    lines = [
        f"  {verb:<17} {resource:<40} {n:>6}"
        + (
            f"  ({counts.injected[(verb, resource)]} injected errors)"
            if (verb, resource) in counts.injected
            else ""
        )
        for (verb, resource), n in rows
    ]
    if counts.faults:
        lines.append("  faults: " + ", ".join(f"{k} {n}" for k, n in sorted(counts.faults.items())))
    return "\n".join(lines)
