"""Run a command in a pod's container with a local file as its stdin, through the
API server's ``pods/exec`` WebSocket: the path ``kubectl cp`` takes, because a
developer's machine can usually reach the API server and nothing else.

lightkube's client speaks no WebSocket, so aiohttp (already a dependency) does
the talking; the server, TLS settings and credentials still come from the
lightkube kubeconfig objects the rest of the CLI uses, through lightkube's own
helpers, so every kind of user lightkube supports works here too: client
certificates, ``token``, ``tokenFile``, exec plugins that print a token
(``client.authentication.k8s.io/v1beta1`` or ``v1alpha1``, not ``v1``: lightkube's
limit) and username/password; an ``auth-provider`` user is refused with a clear
error, as lightkube refuses it.

Protocols: ``v5.channel.k8s.io`` can close stdin (the frame ``[255, 0]``), so
the command sees EOF and finishes. ``v4.channel.k8s.io`` cannot; on v4 the
command runs as ``sh -c 'head -c <size> | <command>'`` so that it stops reading
after ``size`` bytes on its own (the container then needs ``sh`` and
``head``). Each protocol is offered alone, in order: a refused handshake starts
nothing, whereas a command already started under the wrong protocol could not
be taken back.

Draining: when the command exits while stdin still has bytes on the way (a
``tar`` that fails early), some clusters at times never end the exec, or report
Success for a non-zero exit (seen on Kubernetes 1.35 with containerd 1.6, with
``kubectl exec -i`` as with this module). So by default the
command runs as ``sh -c '<command>; rc=$?; cat >/dev/null; exit $rc'``
(inside the v4 ``head`` pipeline too): the process lives until stdin is used up
and its exit code arrives every time. ``drain_stdin=False`` runs the command
bare on v5, for containers without ``sh`` and ``cat``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import ssl
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO
from urllib.parse import quote, urlencode

import aiohttp
import httpx2 as httpx
from lightkube.config.client_adapter import user_auth, verify_cluster
from lightkube.config.kubeconfig import SingleConfig
from lightkube.config.models import User
from lightkube.core.exceptions import ConfigError
from yarl import URL

STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
# v5's extra channel: its one-byte payload names the stream to close.
CLOSE = 255
V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"
PROTOCOLS = (V5, V4)
CLOSE_STDIN = bytes([CLOSE, STDIN])
# Enough for any error report; a chatty command must not fill the CLI's memory.
OUTPUT_LIMIT = 1024 * 1024
SUPPORTED_AUTH = (
    "client certificates, token, tokenFile, exec plugins (client.authentication.k8s.io/"
    "v1beta1 or v1alpha1) and username/password"
)


class ExecError(RuntimeError):
    """The command could not be run; the message is one line, never a credential."""


class NotRunError(ExecError):
    """The API server took the exec but reports that the command never ran."""


@dataclass(frozen=True)
class ExecResult:
    """The command's exit code and the first ``OUTPUT_LIMIT`` bytes of each stream."""

    exit_code: int
    stdout: bytes
    stderr: bytes


# --- The pure parts: URLs, frames, statuses -------------------------------------------


def pod_path(namespace: str, pod: str) -> str:
    return f"/api/v1/namespaces/{quote(namespace, safe='')}/pods/{quote(pod, safe='')}"


def exec_url(server: str, namespace: str, pod: str, container: str, command: Sequence[str]) -> str:
    """The exec subresource's URL; the command is one ``command=`` parameter per argument."""
    if not command:
        raise ValueError("an exec needs a command")
    path = f"{pod_path(namespace, pod)}/exec"
    params = [
        ("container", container),
        *(("command", arg) for arg in command),
        ("stdin", "true"),
        ("stdout", "true"),
        ("stderr", "true"),
    ]
    # quote rather than quote_plus: "%20" means a space to every parser.
    return f"{server.rstrip('/')}{path}?{urlencode(params, quote_via=quote)}"


# Keeps the process alive until stdin is used up: see the module doc.
_DRAIN = "; rc=$?; cat >/dev/null; exit $rc"


def remote_command(
    command: Sequence[str], protocol: str, size: int, *, drain: bool = True
) -> list[str]:
    """What runs in the container: on v4, which cannot close stdin, ``head`` stops
    reading after ``size`` bytes so that ``command`` sees EOF all the same; with
    ``drain``, ``cat`` then swallows what ``command`` left unread."""
    cmd = shlex.join(command)
    if protocol == V5:
        return ["sh", "-c", cmd + _DRAIN] if drain else list(command)
    return [
        "sh",
        "-c",
        f"head -c {size} | {{ {cmd}{_DRAIN}; }}" if drain else f"head -c {size} | {cmd}",
    ]


def encode_frame(channel: int, data: bytes = b"") -> bytes:
    if not 0 <= channel <= 255:
        raise ValueError(f"channel {channel} is not a byte")
    return bytes([channel]) + data


def decode_frame(frame: bytes) -> tuple[int, bytes]:
    """(channel, payload) of a binary frame."""
    if not frame:
        raise ExecError("the API server sent an empty exec frame")
    return frame[0], frame[1:]


def exit_code_from_status(payload: bytes) -> int:
    """The exit code in the error channel's ``metav1.Status``; ``ExecError`` when the
    command never ran (no such executable, container gone)."""
    try:
        status = json.loads(payload)
    except ValueError:
        status = None
    if not isinstance(status, dict):
        raise ExecError(f"the API server sent an unreadable exec status: {payload[:200]!r}")
    if status.get("status") == "Success":
        return 0
    details = status.get("details")
    causes = details.get("causes") if isinstance(details, dict) else None
    for cause in causes if isinstance(causes, list) else []:
        if isinstance(cause, dict) and cause.get("reason") == "ExitCode":
            try:
                return int(str(cause.get("message")))
            except ValueError:
                break
    message = " ".join(str(status.get("message") or status.get("reason") or "").split())
    raise NotRunError(f"the command could not run: {message or 'no reason given'}")


def container_problem(pod: Mapping[str, Any], container: str) -> str | None:
    """Why ``container`` of this pod object cannot take an exec, if it cannot."""
    meta = pod.get("metadata") or {}
    name = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
    spec = pod.get("spec") or {}
    kinds = ("containers", "initContainers", "ephemeralContainers")
    names = [str(c.get("name")) for kind in kinds for c in spec.get(kind) or []]
    if container not in names:
        return f"pod {name} has no container {container!r} (it has: {', '.join(names)})"
    status = pod.get("status") or {}
    phase = status.get("phase") or "Pending"
    if phase in ("Succeeded", "Failed"):
        return f"pod {name} has finished ({phase}): exec needs a running container"
    kinds = ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses")
    statuses = [s for kind in kinds for s in status.get(kind) or []]
    state = next((s.get("state") or {} for s in statuses if s.get("name") == container), {})
    if "running" in state:
        return None
    if "waiting" in state:
        reason = (state["waiting"] or {}).get("reason") or "waiting"
        return f"container {container!r} of pod {name} is not running yet ({reason})"
    if "terminated" in state:
        ended = state["terminated"] or {}
        reason = ended.get("reason") or "terminated"
        return (
            f"container {container!r} of pod {name} has stopped "
            f"({reason}, exit code {ended.get('exitCode')})"
        )
    return f"container {container!r} of pod {name} has not started yet (pod {phase})"


def shown_server(server: str) -> str:
    """The server URL for messages, without any user:password in it."""
    try:
        return str(URL(server).with_user(None))
    except ValueError:
        return "the API server"


class RedactedHeaders(dict[str, str]):
    """Request headers whose repr shows names only: they carry credentials."""

    def __repr__(self) -> str:
        return "{" + ", ".join(f"{k!r}: '<redacted>'" for k in self) + "}"


# --- Connection settings from the kubeconfig ------------------------------------------


class Credentials:
    """The kubeconfig user's ``Authorization`` header, made by lightkube's own httpx
    auth flow, and made again (token file re-read, exec plugin re-run) after a 401."""

    def __init__(self, user: User | None, server: str) -> None:
        try:
            self._auth = user_auth(user) if user is not None else None
        except ConfigError as exc:
            raise ExecError(f"kubeconfig user: {exc}; supported are {SUPPORTED_AUTH}") from None
        self._server = server
        self._flow: AsyncGenerator[httpx.Request, httpx.Response] | None = None
        self._request: httpx.Request | None = None

    def __repr__(self) -> str:
        return f"Credentials({type(self._auth).__name__ if self._auth else 'none'})"

    async def headers(self) -> RedactedHeaders:
        if self._auth is None:
            return RedactedHeaders()
        await self.aclose()
        self._flow = self._auth.async_auth_flow(httpx.Request("GET", self._server))
        self._request = await self._step(None)
        return self._headers(self._request)

    async def refresh(self) -> RedactedHeaders | None:
        """New headers after a 401, or None when the user has nothing fresher."""
        if self._flow is None or self._request is None:
            return None
        rejected = self._request.headers.get("Authorization")
        retry = await self._step(httpx.Response(401, request=self._request))
        if retry is None:
            # Flows like lightkube's exec plugin's end after one request, but a
            # new flow re-runs the plugin once its cached token is rejected.
            fresh = await self.headers()
            if fresh.get("Authorization") != rejected:
                return fresh
            assert self._request is not None
            retry = await self._step(httpx.Response(401, request=self._request))
        if retry is None:
            return None
        self._request = retry
        return self._headers(retry)

    async def aclose(self) -> None:
        if self._flow is not None:
            flow, self._flow = self._flow, None
            await flow.aclose()

    async def _step(self, response: httpx.Response | None) -> httpx.Request | None:
        assert self._flow is not None
        try:
            if response is None:
                request: httpx.Request = await self._flow.__anext__()
            else:
                request = await self._flow.asend(response)
        except StopAsyncIteration:
            return None
        except ConfigError as exc:
            # Exec plugin or token file failures; lightkube's message names the
            # command or file and the plugin's stderr, not the token.
            raise ExecError(f"kubeconfig user: {exc}; supported are {SUPPORTED_AUTH}") from None
        except (ValueError, KeyError, TypeError):
            raise ExecError("kubeconfig user: the exec plugin printed no status.token") from None
        return request

    @staticmethod
    def _headers(request: httpx.Request | None) -> RedactedHeaders:
        value = request.headers.get("Authorization") if request is not None else None
        return RedactedHeaders({"Authorization": value} if value else {})


@dataclass(frozen=True)
class Endpoint:
    """The API server and how to reach it; its repr shows no credential."""

    server: str
    ssl: ssl.SSLContext | bool
    credentials: Credentials

    @classmethod
    def from_config(cls, config: SingleConfig) -> Endpoint:
        server = config.cluster.server.rstrip("/")
        tls: ssl.SSLContext | bool = True
        if server.startswith("https:"):
            # lightkube's own TLS set-up: CA file or data, insecure-skip-tls-verify,
            # client certificate and key (files or data).
            try:
                tls = verify_cluster(config.cluster, config.user or User(), config.abs_file)
            except (ConfigError, OSError, ValueError) as exc:
                raise ExecError(
                    f"kubeconfig: cannot set up TLS for {shown_server(server)}: {exc}"
                ) from None
        return cls(server, tls, Credentials(config.user, server))


# --- The exec itself --------------------------------------------------------------------


class _Capped:
    def __init__(self, limit: int = OUTPUT_LIMIT) -> None:
        self.data = bytearray()
        self.limit = limit

    def add(self, chunk: bytes) -> None:
        room = self.limit - len(self.data)
        if room > 0:
            self.data += chunk[:room]


def _connection_problem(server: str, exc: aiohttp.ClientError) -> str:
    where = f"the API server {shown_server(server)}"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        reason = getattr(exc.certificate_error, "verify_message", "") or exc.certificate_error
        return (
            f"{where} has a certificate the kubeconfig's certificate-authority does not "
            f"vouch for ({reason})"
        )
    if isinstance(exc, aiohttp.ClientSSLError):
        return f"TLS with {where} failed ({exc.os_error}); check the kubeconfig's certificates"
    if isinstance(exc, aiohttp.ClientConnectorError):
        errno = exc.os_error.errno
        reason = os.strerror(errno) if errno else str(exc.os_error)
        return f"cannot connect to {where}: {reason}; is the cluster up and the kubeconfig right?"
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return f"{where} did not answer in time"
    return f"talking to {where} failed: {type(exc).__name__}"


def _handshake_problem(
    exc: aiohttp.WSServerHandshakeError, protocol: str, namespace: str, pod: str, container: str
) -> str:
    target = f"container {container!r} of pod {namespace}/{pod}"
    if exc.status == 401:
        return "the API server rejected the kubeconfig's credentials (401): log in again"
    if exc.status == 403:
        if "json" not in (exc.headers.get("Content-Type", "") if exc.headers else ""):
            # The kubelet's WebSocket server answers a protocol it lacks with a bare 403.
            return f"the cluster refused the {protocol} exec protocol for {target}"
        return (
            f"forbidden: the kubeconfig's user may not exec into pod {namespace}/{pod} "
            f"(it needs 'create' on pods/exec in namespace {namespace})"
        )
    if exc.status == 404:
        return f"pod {namespace}/{pod} not found"
    if exc.status == 101:
        return f"the API server did not upgrade the exec into {target} to a WebSocket"
    return f"exec into {target} was refused: HTTP {exc.status} {exc.message}"


async def _diagnose(
    session: aiohttp.ClientSession,
    endpoint: Endpoint,
    headers: Mapping[str, str],
    namespace: str,
    pod: str,
    container: str,
) -> str | None:
    """Why an exec could not start, read off the pod: aiohttp drops a failed
    handshake's body (the API server's explanation), and a kubelet's refusal
    after the upgrade reads less plainly than the pod's status."""
    url = endpoint.server + pod_path(namespace, pod)
    try:
        async with session.get(URL(url, encoded=True), headers=headers, ssl=endpoint.ssl) as resp:
            if resp.status == 404:
                return f"pod {namespace}/{pod} not found"
            if resp.status != 200:
                return None
            obj = await resp.json()
    except (aiohttp.ClientError, ValueError):
        return None
    return container_problem(obj, container) if isinstance(obj, dict) else None


async def _open(
    session: aiohttp.ClientSession,
    endpoint: Endpoint,
    namespace: str,
    pod: str,
    container: str,
    command: Sequence[str],
    size: int,
    protocols: Sequence[str],
    drain: bool,
) -> tuple[aiohttp.ClientWebSocketResponse[bool], str, Mapping[str, str]]:
    headers = await endpoint.credentials.headers()
    problem = ""
    for index, protocol in enumerate(protocols):
        url = exec_url(
            endpoint.server,
            namespace,
            pod,
            container,
            remote_command(command, protocol, size, drain=drain),
        )
        refreshed = False
        while True:
            try:
                ws = await session.ws_connect(
                    URL(url, encoded=True), protocols=[protocol], headers=headers, ssl=endpoint.ssl
                )
            except aiohttp.WSServerHandshakeError as exc:
                if exc.status == 401 and not refreshed:
                    refreshed = True
                    fresh = await endpoint.credentials.refresh()
                    if fresh is not None:
                        headers = fresh
                        continue
                failed = exc
                break
            except aiohttp.ClientError as exc:
                raise ExecError(_connection_problem(endpoint.server, exc)) from None
            if ws.protocol != protocol:
                # The command runs already, under a protocol we did not ask for.
                await ws.close()
                raise ExecError(f"the API server answered {ws.protocol!r}, not {protocol}")
            return ws, protocol, headers
        problem = _handshake_problem(failed, protocol, namespace, pod, container)
        if failed.status != 401:
            found = await _diagnose(session, endpoint, headers, namespace, pod, container)
            if found:
                raise ExecError(found)
        # A server without this protocol answers 400 or 403: try the next one.
        if failed.status not in (400, 403) or index + 1 == len(protocols):
            break
    raise ExecError(problem or "no exec protocol to offer")


async def _send(
    ws: aiohttp.ClientWebSocketResponse[bool],
    stdin: BinaryIO,
    size: int,
    chunk: int,
    progress: Callable[[int], None] | None,
    close_stdin: bool,
) -> None:
    sent = 0
    while sent < size:
        try:
            # In a thread: a slow disk must not stall the WebSocket's pings.
            data = await asyncio.to_thread(stdin.read, min(chunk, size - sent))
        except OSError as exc:
            raise ExecError(f"cannot read what to upload: {exc.strerror or exc}") from None
        if not data:
            raise ExecError(f"the upload ended after {sent} of the {size} bytes announced")
        await ws.send_bytes(encode_frame(STDIN, data))
        sent += len(data)
        if progress is not None:
            progress(sent)
    if close_stdin:
        await ws.send_bytes(CLOSE_STDIN)


async def _receive(ws: aiohttp.ClientWebSocketResponse[bool]) -> ExecResult:
    stdout, stderr, status = _Capped(), _Capped(), bytearray()
    async for msg in ws:
        if msg.type == aiohttp.WSMsgType.ERROR:
            raise ExecError(f"the exec connection broke: {type(ws.exception()).__name__}")
        if msg.type != aiohttp.WSMsgType.BINARY or not msg.data:
            continue
        channel, data = decode_frame(msg.data)
        if channel == STDOUT:
            stdout.add(data)
        elif channel == STDERR:
            stderr.add(data)
        elif channel == ERROR:
            status += data
    if not status:
        raise ExecError(
            f"the exec connection closed (code {ws.close_code}) before the command's "
            "exit status arrived"
        )
    return ExecResult(exit_code_from_status(bytes(status)), bytes(stdout.data), bytes(stderr.data))


async def _stream(
    ws: aiohttp.ClientWebSocketResponse[bool],
    protocol: str,
    stdin: BinaryIO,
    size: int,
    chunk: int,
    progress: Callable[[int], None] | None,
) -> ExecResult:
    # Both ways at once: the command may write (or fail) before it has read everything.
    sender = asyncio.create_task(_send(ws, stdin, size, chunk, progress, protocol == V5))
    receiver = asyncio.create_task(_receive(ws))
    try:
        done, _ = await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
        if sender in done:
            failure = sender.exception()
            # A command that exits before reading everything closes the
            # connection under the sender: its exit status tells the story.
            if failure is not None and not isinstance(failure, ConnectionError):
                raise failure
        return await receiver
    finally:
        for task in (sender, receiver):
            task.cancel()
        await asyncio.gather(sender, receiver, return_exceptions=True)


async def exec_with_stdin(
    config: SingleConfig,
    namespace: str,
    pod: str,
    container: str,
    command: Sequence[str],
    stdin: BinaryIO,
    *,
    size: int,
    progress: Callable[[int], None] | None = None,
    chunk: int = 64 * 1024,
    # The CLI's API: callers give one number, not an asyncio.timeout() of their own.
    timeout: float = 600,  # noqa: ASYNC109
    protocols: Sequence[str] = PROTOCOLS,
    drain_stdin: bool = True,
) -> ExecResult:
    """Run ``command`` in ``container`` with the next ``size`` bytes of ``stdin`` as its
    standard input; ``progress`` gets the bytes sent so far after each chunk.

    A non-zero exit is an ``ExecResult``, not an error; ``ExecError`` means the
    command could not run or finish (API server unreachable, forbidden, pod or
    container missing or not running, ``timeout`` seconds over). On v4 the
    command is wrapped in ``sh -c 'head -c <size> | ...'``; ``drain_stdin`` is
    explained in the module doc.
    """
    if size < 0:
        raise ValueError("size must be >= 0")
    if chunk <= 0:
        raise ValueError("chunk must be > 0")
    if not protocols or any(p not in PROTOCOLS for p in protocols):
        raise ValueError(f"protocols must be some of {PROTOCOLS}")
    endpoint = Endpoint.from_config(config)
    try:
        async with (
            asyncio.timeout(timeout),
            aiohttp.ClientSession(
                trust_env=True,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=30),
            ) as session,
        ):
            ws, protocol, headers = await _open(
                session, endpoint, namespace, pod, container, command, size, protocols, drain_stdin
            )
            async with ws:
                try:
                    return await _stream(ws, protocol, stdin, size, chunk, progress)
                except NotRunError:
                    # The API server upgrades first and asks the kubelet after,
                    # so a container that is not running shows up only here;
                    # the pod says it more plainly than the kubelet's message.
                    found = await _diagnose(session, endpoint, headers, namespace, pod, container)
                    if found is None:
                        raise
                    raise ExecError(found) from None
    except TimeoutError:
        raise ExecError(
            f"the exec in pod {namespace}/{pod} did not finish within {timeout:g}s"
        ) from None
    finally:
        await endpoint.credentials.aclose()


def upload(
    config: SingleConfig,
    namespace: str,
    pod: str,
    container: str,
    command: Sequence[str],
    stdin: BinaryIO,
    *,
    size: int,
    progress: Callable[[int], None] | None = None,
    timeout: float = 600,
    protocols: Sequence[str] = PROTOCOLS,
    drain_stdin: bool = True,
) -> ExecResult:
    """``exec_with_stdin`` for synchronous callers (the CLI). On a cluster that only
    speaks v4 the command becomes ``sh -c 'head -c <size> | <command>'`` (plus
    the drain, see the module doc)."""
    return asyncio.run(
        exec_with_stdin(
            config,
            namespace,
            pod,
            container,
            command,
            stdin,
            size=size,
            progress=progress,
            timeout=timeout,
            protocols=protocols,
            drain_stdin=drain_stdin,
        )
    )
