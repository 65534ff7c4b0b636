"""Build verbs: ``start-build``, ``cancel-build`` and ``logs``.

``start-build`` asks the operator for a build the way any client can: it
adds a ``start.build.headwater.dev/<request-id>`` annotation to the
BuildConfig (the operator turns it into ``<bc>-<n>``), finds the Build by the
request id, and for a binary build streams the local source into the build
pod's waiting ``fetch-source`` container through the pods/exec API.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, BinaryIO

import click

from headwater.builds.instantiate import REQUEST_PREFIX, StartRequest, request_value
from headwater.builds.model import (
    BUILD_CONTAINER,
    CANCELLED,
    COMPLETE,
    FETCH_CONTAINER,
    LABEL_BUILD,
    LABEL_BUILDCONFIG,
    LABEL_REQUEST,
    NEW,
    PENDING,
    RUNNING,
    TERMINAL,
    build_name,
    build_number,
    build_of_child,
    buildconfig_of,
    label_value,
)
from headwater.builds.scripts import (
    UPLOAD_ARCHIVE_COMMAND,
    UPLOAD_TAR_COMMAND,
    upload_file_command,
)
from headwater.cli.kube import cluster_options, connect, load_config
from headwater.kube import is_gone, plain_dict

EXIT_FAILED = 1
REFUSAL_REASONS = ("BuildConfigInstantiateFailed", "InvalidBuildRequest")
CANCEL_ANNOTATION = "build.headwater.dev/cancel-requested"
_ENV_HELP = "NAME=VALUE; repeatable."
_SPIN = "|/-\\"


def _pairs(values: tuple[str, ...], option: str) -> tuple[tuple[str, str], ...]:
    out = []
    for value in values:
        name, sep, val = value.partition("=")
        if not sep or not name:
            raise click.UsageError(f"{option} {value!r}: expected NAME=VALUE")
        out.append((name, val))
    return tuple(out)


def _resources() -> tuple[Any, Any]:
    from headwater.resources import Build, BuildConfig

    return Build, BuildConfig


def _spinner(what: str, show: bool = True) -> Iterator[None]:
    """Yields once per poll, drawing a spinner on a terminal (unless not ``show``)."""
    turn = 0
    while True:
        if show and sys.stderr.isatty():
            click.echo(f"\r{what} {_SPIN[turn % 4]}", nl=False, err=True)
            turn += 1
        yield


def _clear_spinner() -> None:
    if sys.stderr.isatty():
        click.echo("\r\033[K", nl=False, err=True)


def _refusal(client: Any, namespace: str, bc: str, request: str) -> str | None:
    """The operator's Warning Event refusing ``request``, if it posted one."""
    from lightkube.resources.core_v1 import Event

    for event in client.list(
        Event, namespace=namespace, fields={"involvedObject.name": bc, "type": "Warning"}
    ):
        if request in (event.message or "") and event.reason in REFUSAL_REASONS:
            return str(event.message)
    return None


def _wait_for_request(
    client: Any, namespace: str, bc: str, request: str, timeout: float, show: bool = True
) -> str:
    build, _ = _resources()
    deadline = time.monotonic() + timeout
    spinner = _spinner("waiting for the operator to create the build", show)
    for polls, _ in enumerate(spinner, 1):
        found = list(client.list(build, namespace=namespace, labels={LABEL_REQUEST: request}))
        if found:
            _clear_spinner()
            return str(found[0].metadata.name)
        refused = _refusal(client, namespace, bc, request) if polls % 4 == 0 else None
        if refused:
            _clear_spinner()
            raise click.ClickException(f"the operator refused the build: {refused}")
        if time.monotonic() > deadline:
            _clear_spinner()
            raise click.ClickException(
                f"no build for request {request} after {timeout:g}s: "
                "is the Headwater operator running?"
            )
        time.sleep(0.25)
    raise AssertionError("unreachable")


def request_build(
    client: Any, namespace: str, bc_name: str, request: StartRequest, show: bool = True
) -> str:
    """Ask the operator for a build of ``bc_name`` (the start annotation) and wait for the
    Build it makes: its name. Refused requests and a missing BuildConfig raise
    ClickException; other API errors raise ApiError. ``start-build``, ``cancel-build
    --restart`` and the console's start and rebuild actions all start builds here."""
    from lightkube.core.exceptions import ApiError
    from lightkube.types import PatchType

    _, bc_resource = _resources()
    try:
        client.get(bc_resource, bc_name, namespace=namespace)
    except ApiError as exc:
        if is_gone(exc):
            raise click.ClickException(
                f'buildconfig "{bc_name}" not found in {namespace}'
            ) from None
        raise
    client.patch(
        bc_resource,
        bc_name,
        {"metadata": {"annotations": {f"{REQUEST_PREFIX}{request.id}": request_value(request)}}},
        namespace=namespace,
        patch_type=PatchType.MERGE,
    )
    return _wait_for_request(client, namespace, bc_name, request.id, 60, show)


def new_request_id() -> str:
    return f"cli-{uuid.uuid4().hex[:12]}"


def request_cancel(client: Any, namespace: str, name: str) -> None:
    """Ask the operator to cancel build ``name`` (the annotation ``cancel-build`` sets)."""
    from lightkube.types import PatchType

    build_resource, _ = _resources()
    client.patch(
        build_resource,
        name,
        {"metadata": {"annotations": {CANCEL_ANNOTATION: "true"}}},
        namespace=namespace,
        patch_type=PatchType.MERGE,
    )


def _build_pod(client: Any, namespace: str, name: str) -> dict[str, Any] | None:
    from lightkube.resources.core_v1 import Pod

    pods = [
        plain_dict(p)
        for p in client.list(Pod, namespace=namespace, labels={LABEL_BUILD: label_value(name)})
        if build_of_child(plain_dict(p).get("metadata") or {}) == name
    ]
    pods.sort(key=lambda p: str(p["metadata"].get("creationTimestamp") or ""))
    return pods[-1] if pods else None


def _container_state(pod: dict[str, Any] | None, container: str) -> dict[str, Any]:
    if pod is None:
        return {}
    status = pod.get("status") or {}
    for key in ("initContainerStatuses", "containerStatuses"):
        for entry in status.get(key) or []:
            if entry.get("name") == container:
                state: dict[str, Any] = entry.get("state") or {}
                return state
    return {}


def get_build(client: Any, namespace: str, name: str) -> dict[str, Any]:
    from lightkube.core.exceptions import ApiError

    build, _ = _resources()
    try:
        return plain_dict(client.get(build, name, namespace=namespace))
    except ApiError as exc:
        if is_gone(exc):
            raise click.ClickException(f'build "{name}" not found in {namespace}') from None
        raise click.ClickException(str(exc.status.message)) from None


def _phase(build: dict[str, Any]) -> str:
    return str((build.get("status") or {}).get("phase") or NEW)


def _wait_for_upload_slot(client: Any, namespace: str, name: str, timeout: float) -> str:
    """The build pod once its fetch-source container waits for input; its name."""
    deadline = time.monotonic() + timeout
    for _ in _spinner(f"waiting for build {name} to accept the upload"):
        pod = _build_pod(client, namespace, name)
        if _container_state(pod, FETCH_CONTAINER).get("running") and pod is not None:
            _clear_spinner()
            return str(pod["metadata"]["name"])
        build = get_build(client, namespace, name)
        if _phase(build) in TERMINAL:
            _clear_spinner()
            raise click.ClickException(f"build {name} ended ({_phase(build)}) before the upload")
        if time.monotonic() > deadline:
            _clear_spinner()
            raise click.ClickException(f"build {name}'s pod did not start within {timeout:g}s")
        time.sleep(0.3)
    raise AssertionError("unreachable")


def _upload(
    kubeconfig: str | None,
    context: str | None,
    namespace: str,
    pod: str,
    command: tuple[str, ...],
    stream: BinaryIO,
    size: int,
    what: str,
) -> None:
    from headwater.cli.podexec import ExecError, upload

    config = load_config(kubeconfig, context)
    with click.progressbar(
        length=size, label=f"Uploading {what}", file=sys.stderr, show_percent=True
    ) as bar:
        sent = [0]

        def progress(total: int) -> None:
            bar.update(total - sent[0])
            sent[0] = total

        try:
            result = upload(
                config, namespace, pod, FETCH_CONTAINER, list(command), stream,
                size=size, progress=progress,
            )  # fmt: skip
        except ExecError as exc:
            raise click.ClickException(f"upload failed: {exc}") from None
    if result.exit_code != 0:
        detail = result.stderr.decode(errors="replace").strip().splitlines()
        raise click.ClickException(
            f"upload failed in the build pod (exit {result.exit_code}): "
            + (detail[-1] if detail else "no output")
        )
    click.echo(f"Uploaded {what}: {size} bytes", err=True)


def _binary_input(
    from_dir: str | None, from_file: str | None, from_archive: str | None, from_repo: str | None,
    commit: str | None,
) -> tuple[tuple[str, ...], BinaryIO, int, str, dict[str, str]] | None:  # fmt: skip
    """(upload command, stream, size, description, binary spec) for the --from-* option given."""
    from headwater.cli.archive import ArchiveError, make_archive

    chosen = [o for o in (from_dir, from_file, from_archive, from_repo) if o]
    if not chosen:
        return None
    if len(chosen) > 1:
        raise click.UsageError(
            "use only one of --from-dir, --from-file, --from-archive, --from-repo"
        )
    if from_file:
        path = Path(from_file)
        if not path.is_file():
            raise click.UsageError(f"--from-file {from_file}: no such file")
        size = path.stat().st_size
        return (
            upload_file_command(path.name),
            path.open("rb"),
            size,
            f'file "{path}"',
            {"asFile": path.name},
        )
    if from_archive:
        path = Path(from_archive)
        if not path.is_file():
            raise click.UsageError(f"--from-archive {from_archive}: no such file")
        gz = path.suffix in (".gz", ".tgz")
        if not gz and path.suffix != ".tar":
            raise click.UsageError("--from-archive takes a .tar, .tar.gz or .tgz file")
        command = UPLOAD_ARCHIVE_COMMAND if gz else UPLOAD_TAR_COMMAND
        return command, path.open("rb"), path.stat().st_size, f'archive "{path}"', {}
    spool = tempfile.TemporaryFile()  # noqa: SIM115 - handed to the caller, closed there
    if from_repo:
        repo = Path(from_repo)
        if not repo.is_dir():
            raise click.UsageError(f"--from-repo {from_repo}: no such directory")
        # The committed tree (of --commit, else HEAD), as `git archive` gives it.
        result = subprocess.run(
            ["git", "-C", str(repo), "archive", "--format=tar.gz", commit or "HEAD"],
            stdout=spool,
            stderr=subprocess.PIPE,
            check=False,
        )
        if result.returncode != 0:
            raise click.UsageError(
                f"--from-repo {from_repo}: {result.stderr.decode(errors='replace').strip()}"
            )
        description = f'repository "{repo}" at {commit or "HEAD"}'
    else:
        assert from_dir is not None
        try:
            stats = make_archive(Path(from_dir), spool)
        except ArchiveError as exc:
            raise click.UsageError(f"--from-dir {from_dir}: {exc}") from None
        description = (
            f'directory "{from_dir}" ({stats.files} files, {stats.bytes_uncompressed} bytes)'
        )
    size = spool.tell()
    spool.seek(0)
    return UPLOAD_ARCHIVE_COMMAND, spool, size, description, {}


def waiting_line(build: Mapping[str, Any], pod: Mapping[str, Any] | None, container: str) -> str:
    """What ``logs -f`` waits for, in one line: the build's phase, reason and message
    (``waiting for the build pod: New (MissingPushSecret): ...``), or, once the pod
    exists, the step's container state."""
    status = build.get("status") or {}
    phase = str(status.get("phase") or NEW)
    reason, message = str(status.get("reason") or ""), str(status.get("message") or "")
    if pod is not None:
        waiting = _container_state(dict(pod), container).get("waiting") or {}
        if not reason and waiting.get("reason"):
            reason, message = str(waiting["reason"]), str(waiting.get("message") or "")
        what = f"the {container} step of pod {(pod.get('metadata') or {}).get('name')}"
    else:
        what = "the build pod"
    line = f"waiting for {what}: {phase}"
    if reason:
        line += f" ({reason})"
    if message:
        line += f": {' '.join(message.split())}"
    return line


def ended_line(build: Mapping[str, Any]) -> str:
    """Why a followed build has no log: it ended before its pod ran."""
    status = build.get("status") or {}
    phase = str(status.get("phase") or NEW)
    name = (build.get("metadata") or {}).get("name")
    detail = ": ".join(str(x) for x in (status.get("reason"), status.get("message")) if x)
    return f"build {name} ended ({phase}) before its log began" + (f": {detail}" if detail else "")


def _to_stderr(line: str) -> None:
    click.echo(line, err=True)


class _Waiting:
    """Says what ``logs -f`` waits for (on stderr), again only when it changes."""

    def __init__(self, say: Callable[[str], None] = _to_stderr) -> None:
        self.last = ""
        self._say = say

    def say(self, line: str) -> None:
        if line != self.last:
            self.last = line
            self._say(line)


def _steps(
    client: Any, namespace: str, name: str, follow: bool, waiting: _Waiting
) -> tuple[str, ...]:
    """The containers of the build's pod in the order they run (Custom builds have one)."""
    while True:
        pod = _build_pod(client, namespace, name)
        if pod is not None:
            spec = pod.get("spec") or {}
            names = [c["name"] for c in [*spec.get("initContainers", []), *spec["containers"]]]
            return tuple(c for c in (FETCH_CONTAINER, BUILD_CONTAINER) if c in names)
        build = get_build(client, namespace, name)
        if _phase(build) in TERMINAL:
            if (build.get("status") or {}).get("startTimestamp"):
                raise click.ClickException(
                    f"build {name} has no pod any more ({_phase(build)}); its log is gone with it"
                )
            raise click.ClickException(ended_line(build))
        if not follow:
            raise click.ClickException(f"build {name} has no pod yet ({_phase(build)})")
        waiting.say(waiting_line(build, None, FETCH_CONTAINER))
        time.sleep(0.3)


def stream_logs(
    client: Any, namespace: str, name: str, follow: bool, out: IO[str],
    say: Callable[[str], None] = _to_stderr,
) -> None:  # fmt: skip
    """Print the build's log: the fetch step, then the build step, as each runs.

    Following, it says what it waits for (``say``: on stderr) when that changes, and
    a build that ends before any log was printed is an error (exit 1), not a silent
    wait. ``logs`` and the console's live log both read the log here.
    """
    waiting = _Waiting(say)
    printed = False
    for container in _steps(client, namespace, name, follow, waiting):
        while True:
            pod = _build_pod(client, namespace, name)
            state = _container_state(pod, container)
            if state.get("running") or state.get("terminated"):
                break
            build = get_build(client, namespace, name)
            if _phase(build) in TERMINAL:
                if not printed:
                    raise click.ClickException(
                        ended_line(build)
                        + ("" if pod is not None else "; its pod and log are gone")
                    )
                return
            if not follow:
                if pod is None:
                    raise click.ClickException(f"build {name} has no pod yet ({_phase(build)})")
                return
            waiting.say(waiting_line(build, pod, container))
            time.sleep(0.3)
        assert pod is not None
        pod_name = str(pod["metadata"]["name"])
        for line in client.log(pod_name, namespace=namespace, container=container, follow=follow):
            printed = True
            out.write(line if line.endswith("\n") else line + "\n")
            out.flush()
        printed = True


def _report(client: Any, namespace: str, name: str, timeout: float) -> int:
    """Wait for the build to end; 0 when Complete, else print why and return 1."""
    deadline = time.monotonic() + timeout
    for _ in _spinner(f"waiting for build {name}"):
        build = get_build(client, namespace, name)
        phase = _phase(build)
        if phase in TERMINAL:
            _clear_spinner()
            status = build.get("status") or {}
            if phase == COMPLETE:
                digest = ((status.get("output") or {}).get("to") or {}).get("imageDigest")
                pushed = status.get("outputDockerImageReference")
                if pushed and digest:
                    click.echo(f"build {name} complete: pushed {pushed} ({digest})", err=True)
                return 0
            reason, message = status.get("reason") or phase, status.get("message") or ""
            click.echo(f"error: build {name} {phase.lower()}: {reason}: {message}", err=True)
            snippet = status.get("logSnippet")
            if snippet:
                click.echo(snippet, err=True)
            return EXIT_FAILED
        if time.monotonic() > deadline:
            _clear_spinner()
            raise click.ClickException(f"build {name} still {phase} after {timeout:g}s")
        time.sleep(0.5)
    raise AssertionError("unreachable")


@click.command("start-build")
@click.argument("buildconfig", required=False)
@click.option("--from-build", metavar="BUILD", help="Re-run this build's spec.")
@click.option("-e", "--env", "env", multiple=True, metavar="NAME=VALUE", help=_ENV_HELP)
@click.option("--build-arg", "build_args", multiple=True, metavar="NAME=VALUE", help=_ENV_HELP)
@click.option("--commit", metavar="SHA", help="Build this commit of the Git source.")
@click.option("--no-cache", "no_cache", is_flag=True, default=None, help="No layer cache.")
@click.option("--incremental", is_flag=True, default=None, help="S2I: reuse artifacts.")
@click.option("--from-dir", metavar="DIR", help="Upload this folder (honours .gitignore).")
@click.option("--from-file", metavar="FILE", help="Upload this one file.")
@click.option("--from-archive", metavar="TAR", help="Upload and unpack this .tar[.gz].")
@click.option("--from-repo", metavar="DIR", help="Upload the committed tree of this Git repo.")
@click.option("-F", "--follow", is_flag=True, help="Stream the build's log until it ends.")
@click.option("-w", "--wait", is_flag=True, help="Wait for the build; exit 1 if it fails.")
@click.option("--timeout", type=float, default=1800, show_default=True, help="Seconds to wait.")
@cluster_options
def start_build(
    buildconfig: str | None, from_build: str | None, env: tuple[str, ...],
    build_args: tuple[str, ...], commit: str | None, no_cache: bool | None,
    incremental: bool | None, from_dir: str | None, from_file: str | None,
    from_archive: str | None, from_repo: str | None, follow: bool, wait: bool, timeout: float,
    namespace: str | None, context: str | None, kubeconfig: str | None,
) -> None:  # fmt: skip
    """Start a build of a BuildConfig.

    \b
    Examples (from the seed):
      headwater start-build web --follow
      headwater start-build app --from-dir=. --follow     # a Binary BuildConfig
      headwater start-build web --commit=3f2c1ab --wait
      headwater start-build --from-build=web-3

    Exit status 0 when the build was started (or, with --wait/--follow, when it
    completed), 1 when it failed (the reason and the last log lines are printed).
    """
    from lightkube.core.exceptions import ApiError

    client, default_ns = connect(kubeconfig, context, namespace)
    if from_build:
        previous = get_build(client, default_ns, from_build)
        bc_name = buildconfig or buildconfig_of(previous)
        if not bc_name:
            raise click.UsageError(f"build {from_build} has no BuildConfig; name one")
    elif buildconfig:
        bc_name = buildconfig.removeprefix("bc/").removeprefix("buildconfig/")
    else:
        raise click.UsageError("name a BuildConfig, or use --from-build")
    binary = _binary_input(from_dir, from_file, from_archive, from_repo, commit)
    request = StartRequest(
        id=new_request_id(),
        env=_pairs(env, "--env"),
        build_args=_pairs(build_args, "--build-arg"),
        commit=commit if not from_repo else None,
        no_cache=no_cache,
        incremental=incremental,
        binary=binary[4] if binary else None,
        from_build=from_build,
        causes=({"message": "Manually triggered"},),
    )
    try:
        name = request_build(client, default_ns, bc_name, request)
    except ApiError as exc:
        raise click.ClickException(str(exc.status.message)) from None
    click.echo(f"build.build.headwater.dev/{name} started")
    if binary:
        command, stream, size, what, _ = binary
        with stream:
            pod = _wait_for_upload_slot(client, default_ns, name, timeout)
            _upload(kubeconfig, context, default_ns, pod, command, stream, size, what)
    if follow:
        stream_logs(client, default_ns, name, True, sys.stdout)
    if follow or wait:
        sys.exit(_report(client, default_ns, name, timeout))


def builds_to_cancel(
    client: Any, namespace: str, targets: tuple[str, ...], states: set[str]
) -> list[str]:
    build_resource, _ = _resources()
    names: list[str] = []
    for target in targets:
        kind, sep, rest = target.partition("/")
        if sep and kind in ("bc", "buildconfig", "buildconfigs"):
            found = [
                plain_dict(b)
                for b in client.list(
                    build_resource,
                    namespace=namespace,
                    labels={LABEL_BUILDCONFIG: label_value(rest)},
                )
            ]
            found = [b for b in found if buildconfig_of(b) == rest]
            found.sort(key=build_number)
            names += [str(b["metadata"]["name"]) for b in found if _phase(b) in states]
        else:
            name = rest if sep else target
            build = get_build(client, namespace, name)
            if _phase(build) in TERMINAL:
                click.echo(f"build {name} already ended ({_phase(build)})", err=True)
                continue
            names.append(name)
    return names


@click.command("cancel-build")
@click.argument("targets", nargs=-1, required=True)
@click.option(
    "--state",
    default="new,pending,running",
    show_default=True,
    help="With bc/NAME: cancel builds in these phases.",
)
@click.option("--dump-logs", is_flag=True, help="Print each build's log before cancelling it.")
@click.option("--restart", is_flag=True, help="Start a new build of each cancelled one.")
@click.option("--timeout", type=float, default=120, show_default=True)
@cluster_options
def cancel_build(
    targets: tuple[str, ...], state: str, dump_logs: bool, restart: bool, timeout: float,
    namespace: str | None, context: str | None, kubeconfig: str | None,
) -> None:  # fmt: skip
    """Cancel builds: by name, or all of a BuildConfig's with bc/NAME.

    \b
    Examples:
      headwater cancel-build web-3
      headwater cancel-build bc/web --state=new      # drop the queued ones

    Sets the annotation build.headwater.dev/cancel-requested=true (OpenShift's
    status.cancelled works too); the operator deletes the build pod and the
    build ends Cancelled.
    """
    client, default_ns = connect(kubeconfig, context, namespace)
    phases = {p.strip().capitalize() for p in state.split(",") if p.strip()}
    unknown = phases - {NEW, PENDING, RUNNING}
    if unknown:
        raise click.UsageError(f"--state: unknown phase(s) {', '.join(sorted(unknown))}")
    names = builds_to_cancel(client, default_ns, targets, phases)
    for name in names:
        if dump_logs:
            try:
                stream_logs(client, default_ns, name, False, sys.stdout)
            except click.ClickException as exc:
                click.echo(f"{name}: {exc.message}", err=True)
        request_cancel(client, default_ns, name)
    deadline = time.monotonic() + timeout
    for name in names:
        while _phase(get_build(client, default_ns, name)) not in TERMINAL:
            if time.monotonic() > deadline:
                raise click.ClickException(f"build {name} not cancelled after {timeout:g}s")
            time.sleep(0.3)
        phase = _phase(get_build(client, default_ns, name))
        verb = "cancelled" if phase == CANCELLED else f"ended {phase} before it was cancelled"
        click.echo(f"build.build.headwater.dev/{name} {verb}")
    if restart:
        from lightkube.core.exceptions import ApiError

        for name in names:
            bc_name = buildconfig_of(get_build(client, default_ns, name))
            if not bc_name:
                continue
            try:
                new = request_build(
                    client, default_ns, bc_name, StartRequest(id=new_request_id(), from_build=name)
                )
            except ApiError as exc:
                raise click.ClickException(str(exc.status.message)) from None
            click.echo(f"build.build.headwater.dev/{new} started (restart of {name})")


@click.command("logs")
@click.argument("target")
@click.option("-f", "--follow", is_flag=True, help="Keep streaming until the build ends.")
@click.option("--version", "version", type=int, help="With bc/NAME: this build number.")
@cluster_options
def logs(
    target: str, follow: bool, version: int | None,
    namespace: str | None, context: str | None, kubeconfig: str | None,
) -> None:  # fmt: skip
    """Print a build's log: build/NAME, or bc/NAME for its latest (or --version N) build.

    \b
    Examples:
      headwater logs -f bc/web
      headwater logs build/web-3
    """
    from lightkube.core.exceptions import ApiError

    client, default_ns = connect(kubeconfig, context, namespace)
    _, bc_resource = _resources()
    kind, sep, rest = target.partition("/")
    if not sep:
        kind, rest = "build", target
    if kind in ("bc", "buildconfig", "buildconfigs"):
        try:
            bc = plain_dict(client.get(bc_resource, rest, namespace=default_ns))
        except ApiError as exc:
            raise click.ClickException(f'buildconfig "{rest}": {exc.status.message}') from None
        number = version or int((bc.get("status") or {}).get("lastVersion") or 0)
        if not number:
            raise click.ClickException(f"buildconfig {rest} has no builds yet")
        name = build_name(rest, number)
    elif kind in ("build", "builds"):
        name = rest
    else:
        raise click.UsageError(f"{target}: expected build/NAME or bc/NAME")
    get_build(client, default_ns, name)
    stream_logs(client, default_ns, name, follow, sys.stdout)
