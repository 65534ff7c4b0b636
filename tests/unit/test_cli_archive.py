"""``start-build --from-dir``'s archive, and the pure parts of the pod exec that uploads it.

podexec's unit tests live here too: the upload is one feature, and its
end-to-end test (tests/e2e/test_cli_podexec.py) covers both halves.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import tarfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import web
from lightkube.config.kubeconfig import KubeConfig, SingleConfig
from lightkube.config.models import Cluster, User, UserExec

from headwater.cli import podexec
from headwater.cli.archive import ArchiveError, ArchiveStats, make_archive
from headwater.cli.podexec import (
    CLOSE_STDIN,
    V4,
    V5,
    Credentials,
    Endpoint,
    ExecError,
    NotRunError,
    container_problem,
    decode_frame,
    encode_frame,
    exec_url,
    exec_with_stdin,
    exit_code_from_status,
    remote_command,
    shown_server,
)

TOKEN = "s3cr3t-t0ken-value"

# --- archive.py ------------------------------------------------------------------------


def write(root: Path, files: dict[str, str]) -> None:
    for rel, content in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)


def archive(source: Path, **kw: str) -> tuple[dict[str, tarfile.TarInfo], bytes, ArchiveStats]:
    out = io.BytesIO()
    stats = make_archive(source, out, **kw)
    data = out.getvalue()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        members = {m.name: m for m in tar.getmembers()}
    return members, data, stats


def regular(members: dict[str, tarfile.TarInfo]) -> set[str]:
    return {name for name, m in members.items() if not m.isdir()}


TREE = {
    ".gitignore": "\n".join(
        [
            "# comment",
            "*.log",
            "!keep.log",
            "build/",  # directories only
            "/top.txt",  # anchored: the root's only
            "logs/",
            "!logs/rescued.txt",  # cannot re-include inside an excluded directory
            "docs/*.html",
            "",
        ]
    ),
    "app.py": "print('hi')\n",
    "debug.log": "noise",
    "keep.log": "kept",
    "top.txt": "root's",
    "sub/top.txt": "sub's",
    "build/out.bin": "artifact",
    "docs/build": "a file named build is not a directory",
    "docs/index.html": "generated",
    "docs/deep/page.html": "docs/*.html is anchored below docs/: deeper pages stay",
    "logs/rescued.txt": "still ignored",
    "sub/.gitignore": "*.tmp\n!important.log\n/local-only.txt\n",
    "sub/a.tmp": "tmp",
    "sub/important.log": "the nested file re-includes what the root's ignores",
    "sub/other.log": "ignored by the root's *.log",
    "sub/local-only.txt": "anchored to sub/",
    "sub/deeper/local-only.txt": "not anchored here",
    "sub/deeper/b.tmp": "nested rules apply to subdirectories too",
    "other/a.tmp": "sub's rules stay in sub",
}

EXPECTED = {
    ".gitignore",
    "app.py",
    "keep.log",
    "sub/top.txt",
    "docs/build",
    "docs/deep/page.html",
    "sub/.gitignore",
    "sub/important.log",
    "sub/deeper/local-only.txt",
    "other/a.tmp",
}


def test_archive_follows_gitignore_rules(tmp_path: Path) -> None:
    write(tmp_path, TREE)
    members, data, stats = archive(tmp_path)
    assert regular(members) == EXPECTED
    dirs = {name for name, m in members.items() if m.isdir()}
    assert dirs == {"docs", "docs/deep", "other", "sub", "sub/deeper"}
    assert all(not name.startswith(("/", ".")) or name == ".gitignore" for name in members)
    assert stats.files == len(EXPECTED)
    assert stats.bytes_uncompressed == sum(len(TREE[name].encode()) for name in EXPECTED)
    assert stats.bytes_compressed == len(data)
    # Sorted, directories before what they hold.
    names = list(members)
    assert names.index("sub") < names.index("sub/.gitignore") < names.index("sub/deeper")


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git to compare with")
def test_archive_agrees_with_git(tmp_path: Path) -> None:
    write(tmp_path, TREE)
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    listed = subprocess.run(
        ["git", "ls-files", "--others", "--exclude-standard", "-z"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    members, _, _ = archive(tmp_path)
    assert regular(members) == set(filter(None, listed.split("\0"))) == EXPECTED


def test_headwaterignore_has_the_last_word(tmp_path: Path) -> None:
    write(tmp_path, TREE)
    write(tmp_path, {".headwaterignore": "secrets.env\n!debug.log\nsub/important.log\n"})
    write(tmp_path, {"secrets.env": "x", "sub/secrets.env": "y"})
    members, _, _ = archive(tmp_path)
    assert regular(members) == (EXPECTED | {".headwaterignore", "debug.log"}) - {
        "sub/important.log"
    }
    # Another name for the ignore file; the default one is then just a file.
    write(tmp_path, {".uploadignore": "*.py\n"})
    members, _, _ = archive(tmp_path, ignore_file=".uploadignore")
    also = {".headwaterignore", ".uploadignore", "secrets.env", "sub/secrets.env"}
    assert regular(members) == (EXPECTED | also) - {"app.py"}


def test_git_is_never_archived(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            ".git/HEAD": "ref: refs/heads/main\n",
            ".git/config": "[core]\n",
            "vendor/lib/.git": "gitdir: ../../.git/modules/lib\n",  # a submodule's
            "vendor/lib/lib.py": "",
            ".headwaterignore": "!.git\n!.git/\n",
        },
    )
    members, _, _ = archive(tmp_path)
    assert set(members) == {".headwaterignore", "vendor", "vendor/lib", "vendor/lib/lib.py"}


def test_symlinks_stay_symlinks(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    write(outside, {"secret.txt": "must not travel"})
    src = tmp_path / "src"
    write(src, {"real/file.txt": "content", ".gitignore": "ignored-link\n"})
    (src / "link.txt").symlink_to("real/file.txt")
    (src / "dirlink").symlink_to("real", target_is_directory=True)
    (src / "escape").symlink_to(outside, target_is_directory=True)
    (src / "escape-file").symlink_to(outside / "secret.txt")
    (src / "dangling").symlink_to("nowhere")
    (src / "ignored-link").symlink_to("real")
    members, data, stats = archive(src)
    assert {n for n, m in members.items() if m.issym()} == {
        "link.txt",
        "dirlink",
        "escape",
        "escape-file",
        "dangling",
    }
    assert members["link.txt"].linkname == "real/file.txt"
    assert members["escape"].linkname == str(outside)
    # Nothing below a symlinked directory, and nothing from outside.
    assert not any(name.startswith(("dirlink/", "escape/")) for name in members)
    assert b"must not travel" not in gzip.decompress(data)
    assert stats.files == 2  # real/file.txt and .gitignore


def test_modes_owners_and_special_files(tmp_path: Path) -> None:
    write(tmp_path, {"run.sh": "#!/bin/sh\n", "plain": ""})
    (tmp_path / "run.sh").chmod(0o755)
    os.mkfifo(tmp_path / "fifo")
    members, _, _ = archive(tmp_path)
    assert set(members) == {"plain", "run.sh"}
    assert members["run.sh"].mode & stat.S_IXUSR
    assert not members["plain"].mode & stat.S_IXUSR
    assert {(m.uid, m.gid, m.uname, m.gname) for m in members.values()} == {(0, 0, "", "")}


def test_hard_links_are_archived_once(tmp_path: Path) -> None:
    write(tmp_path, {"a.txt": "shared"})
    os.link(tmp_path / "a.txt", tmp_path / "b.txt")
    members, _, stats = archive(tmp_path)
    assert members["a.txt"].isreg()
    assert members["b.txt"].islnk()
    assert members["b.txt"].linkname == "a.txt"
    assert (stats.files, stats.bytes_uncompressed) == (2, 6)


def test_same_tree_same_bytes(tmp_path: Path) -> None:
    write(tmp_path, TREE)
    assert archive(tmp_path)[1] == archive(tmp_path)[1]


def test_empty_folder(tmp_path: Path) -> None:
    members, data, stats = archive(tmp_path)
    assert members == {}
    assert stats == ArchiveStats(0, 0, len(data))


def test_missing_or_not_a_folder(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="no such directory"):
        make_archive(tmp_path / "nope", io.BytesIO())
    (tmp_path / "file").write_text("x")
    with pytest.raises(ArchiveError, match="is not a directory"):
        make_archive(tmp_path / "file", io.BytesIO())
    assert issubclass(ArchiveError, ValueError)


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, {"ok.txt": "fine", "sub/locked.txt": "no"})
    real_open = Path.open

    def guarded(self: Path, *args: Any, **kwargs: Any) -> Any:
        # Root reads any file, so the permission error is simulated.
        if self.name == "locked.txt":
            raise PermissionError(13, "Permission denied")
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", guarded)
    with pytest.raises(ArchiveError, match=r"cannot read sub/locked\.txt: Permission denied"):
        make_archive(tmp_path, io.BytesIO())


def test_file_that_shrinks_while_archived(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, {"growing.txt": "0123456789"})
    real_open = Path.open

    def truncating(self: Path, *args: Any, **kwargs: Any) -> Any:
        fh = real_open(self, *args, **kwargs)
        os.truncate(self, 2)
        return fh

    monkeypatch.setattr(Path, "open", truncating)
    with pytest.raises(ArchiveError, match=r"growing\.txt shrank"):
        make_archive(tmp_path, io.BytesIO())


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads unreadable files")
def test_unreadable_file_for_real(tmp_path: Path) -> None:
    write(tmp_path, {"locked.txt": "no"})
    (tmp_path / "locked.txt").chmod(0)
    with pytest.raises(ArchiveError, match=r"cannot read locked\.txt"):
        make_archive(tmp_path, io.BytesIO())


# --- podexec.py: the pure parts --------------------------------------------------------


def test_exec_url_repeats_command() -> None:
    url = exec_url(
        "https://k8s.example:6443/prefix/",
        "team-a",
        "build-1",
        "upload",
        ["sh", "-c", "tar -xzf - -C /w && echo 'done & dusted'"],
    )
    parts = urlsplit(url)
    assert parts.path == "/prefix/api/v1/namespaces/team-a/pods/build-1/exec"
    assert "+" not in parts.query
    query = parse_qs(parts.query)
    assert query["command"] == ["sh", "-c", "tar -xzf - -C /w && echo 'done & dusted'"]
    assert query["container"] == ["upload"]
    assert query["stdin"] == query["stdout"] == query["stderr"] == ["true"]
    with pytest.raises(ValueError, match="command"):
        exec_url("https://x", "ns", "p", "c", [])


def run_locally(argv: list[str], stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, input=stdin, capture_output=True, timeout=30)


@pytest.mark.skipif(shutil.which("sh") is None, reason="runs the wrapped commands with sh")
def test_remote_commands_behave() -> None:
    cmd = ["sh", "-c", "wc -c; exit 3"]
    assert remote_command(cmd, V5, 5, drain=False) == cmd
    for protocol in (V5, V4):
        done = run_locally(remote_command(cmd, protocol, 5), b"12345")
        assert (done.returncode, done.stdout.split()) == (3, [b"5"])
    # v4: the command sees EOF after `size` bytes even though stdin goes on.
    done = run_locally(remote_command(["wc", "-c"], V4, 5, drain=False), b"1234567890")
    assert done.stdout.split() == [b"5"]
    assert remote_command(["cat"], V4, 7, drain=False) == ["sh", "-c", "head -c 7 | cat"]
    # The drain: a command that reads nothing still lives until stdin is used up.
    early = remote_command(["sh", "-c", "exit 4"], V4, 100_000)
    done = run_locally(early, os.urandom(100_000))
    assert done.returncode == 4
    assert "cat >/dev/null" in early[2]
    odd = ["printf", "%s|", "it's", "a b", "$HOME"]
    done = run_locally(remote_command(odd, V5, 0), b"")
    assert done.stdout == b"it's|a b|$HOME|"


def test_frames() -> None:
    assert encode_frame(0, b"data") == b"\x00data"
    assert decode_frame(b"\x02oops") == (2, b"oops")
    assert decode_frame(b"\x01") == (1, b"")
    assert bytes([255, 0]) == CLOSE_STDIN
    with pytest.raises(ExecError):
        decode_frame(b"")
    with pytest.raises(ValueError, match="byte"):
        encode_frame(256, b"")


def status(**fields: Any) -> bytes:
    return json.dumps({"metadata": {}, **fields}).encode()


def test_exit_codes_from_status() -> None:
    assert exit_code_from_status(status(status="Success")) == 0
    failed = status(
        status="Failure",
        message="command terminated with non-zero exit code: error executing command [sh], "
        "exit code 3",
        reason="NonZeroExitCode",
        details={"causes": [{"reason": "ExitCode", "message": "3"}]},
    )
    assert exit_code_from_status(failed) == 3
    internal = status(
        status="Failure",
        message='Internal error occurred: exec: "nope": executable\nfile not found',
        reason="InternalError",
    )
    with pytest.raises(NotRunError, match=r'could not run: .*"nope": executable file not found$'):
        exit_code_from_status(internal)
    with pytest.raises(ExecError, match="unreadable"):
        exit_code_from_status(b"<html>")
    with pytest.raises(ExecError, match="no reason given"):
        exit_code_from_status(status(status="Failure"))


def pod(
    state: dict[str, Any] | None, phase: str = "Running", containers: tuple[str, ...] = ("main",)
) -> dict[str, Any]:
    statuses = [{"name": "main", "state": state}] if state is not None else []
    return {
        "metadata": {"namespace": "ns", "name": "p"},
        "spec": {"containers": [{"name": c} for c in containers]},
        "status": {"phase": phase, "containerStatuses": statuses},
    }


def test_container_problems() -> None:
    assert container_problem(pod({"running": {}}), "main") is None
    assert container_problem(pod({"running": {}}), "other") == (
        "pod ns/p has no container 'other' (it has: main)"
    )
    waiting = pod({"waiting": {"reason": "ImagePullBackOff"}}, phase="Pending")
    assert container_problem(waiting, "main") == (
        "container 'main' of pod ns/p is not running yet (ImagePullBackOff)"
    )
    stopped = pod({"terminated": {"reason": "Error", "exitCode": 2}})
    assert container_problem(stopped, "main") == (
        "container 'main' of pod ns/p has stopped (Error, exit code 2)"
    )
    assert "has finished (Succeeded)" in str(container_problem(pod(None, "Succeeded"), "main"))
    assert "has not started yet" in str(container_problem(pod(None, "Pending"), "main"))


def test_shown_server_hides_userinfo() -> None:
    assert shown_server("https://admin:hunter2@k8s:6443") == "https://k8s:6443"


def single(user: User | None, server: str = "https://k8s.example:6443") -> SingleConfig:
    config = KubeConfig.from_one(cluster=Cluster(server=server, insecure=True), user=user).get()
    assert config is not None
    return config


async def test_token_header_never_in_repr() -> None:
    endpoint = Endpoint.from_config(single(User(token=TOKEN)))
    headers = await endpoint.credentials.headers()
    assert headers == {"Authorization": f"Bearer {TOKEN}"}
    for shown in (repr(headers), str(headers), repr(endpoint), repr(endpoint.credentials)):
        assert TOKEN not in shown, shown
    assert "Authorization" in repr(headers)


async def test_basic_and_no_auth() -> None:
    basic = Credentials(User(username="dev", password=TOKEN), "https://k8s")
    assert (await basic.headers())["Authorization"].startswith("Basic ")
    assert TOKEN not in repr(await basic.headers())
    assert await Credentials(None, "https://k8s").headers() == {}


async def test_token_file_is_read_again_after_401(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("old\n")
    credentials = Credentials(User(token_file=str(token_file)), "https://k8s")
    assert await credentials.headers() == {"Authorization": "Bearer old"}
    token_file.write_text("new\n")
    assert await credentials.refresh() == {"Authorization": "Bearer new"}


async def test_exec_plugin_runs_again_after_401(tmp_path: Path) -> None:
    counter = tmp_path / "count"
    plugin = tmp_path / "plugin.py"
    plugin.write_text(
        "import json, pathlib\n"
        f"p = pathlib.Path({str(counter)!r})\n"
        "n = int(p.read_text()) + 1 if p.exists() else 1\n"
        "p.write_text(str(n))\n"
        "print(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1beta1',"
        " 'kind': 'ExecCredential', 'status': {'token': f'token-{n}'}}))\n"
    )
    user = User(
        exec=UserExec(
            apiVersion="client.authentication.k8s.io/v1beta1",
            command=sys.executable,
            args=[str(plugin)],
        )
    )
    credentials = Credentials(user, "https://k8s")
    assert await credentials.headers() == {"Authorization": "Bearer token-1"}
    assert await credentials.refresh() == {"Authorization": "Bearer token-2"}
    await credentials.aclose()


async def test_static_token_has_no_refresh() -> None:
    credentials = Credentials(User(token=TOKEN), "https://k8s")
    await credentials.headers()
    assert await credentials.refresh() is None


def test_auth_provider_is_refused_clearly() -> None:
    user = User(auth_provider={"name": "oidc", "config": {"id-token": TOKEN}})
    with pytest.raises(ExecError, match="exec plugins") as caught:
        Credentials(user, "https://k8s")
    assert TOKEN not in str(caught.value)


# --- podexec.py against a fake API server ------------------------------------------------


@dataclass
class FakeApiServer:
    """Speaks just enough of pods/exec: echoes stdin's size, exits with its first byte."""

    protocols: tuple[str, ...] = (V5, V4)
    token: str = TOKEN
    seen: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    async def exec(self, request: web.Request) -> web.StreamResponse:
        offered = request.headers.get("Sec-WebSocket-Protocol", "")
        self.seen.append({"protocol": offered, "command": request.query.getall("command")})
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response({"kind": "Status", "code": 401}, status=401)
        if request.match_info["pod"] == "missing":
            return web.json_response({"kind": "Status", "code": 404}, status=404)
        if offered not in self.protocols:
            return web.Response(status=403)  # what the kubelet's WebSocket server does
        # v4 cannot close stdin: the wrapped command's `head -c N` is what ends it.
        head = re.search(r"head -c (\d+)", " ".join(request.query.getall("command")))
        v4_size = int(head[1]) if head else 0
        ws = web.WebSocketResponse(protocols=[offered])
        await ws.prepare(request)
        received = bytearray()
        async for msg in ws:
            channel, data = msg.data[0], msg.data[1:]
            if channel == 255:
                break
            received += data
            if offered == V4 and len(received) >= v4_size:
                break
        await ws.send_bytes(b"\x01" + str(len(received)).encode())
        await ws.send_bytes(b"\x02" + b"e" * 3_000_000)
        code = received[0] if received else 0
        causes = [{"reason": "ExitCode", "message": str(code)}]
        await ws.send_bytes(
            b"\x03" + status(status="Failure", details={"causes": causes})
            if code
            else b"\x03" + status(status="Success")
        )
        await ws.close()
        return ws

    async def get_pod(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["pod"] == "missing":
            return web.json_response({"kind": "Status", "code": 404}, status=404)
        return web.json_response(pod({"running": {}}))


@pytest.fixture
async def fake_api() -> AsyncIterator[FakeApiServer]:
    fake = FakeApiServer()
    app = web.Application()
    app.router.add_get("/api/v1/namespaces/{ns}/pods/{pod}/exec", fake.exec)
    app.router.add_get("/api/v1/namespaces/{ns}/pods/{pod}", fake.get_pod)
    runner, fake.url = await serve(app)
    yield fake
    await runner.cleanup()


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    return runner, "http://{}:{}".format(*sock.getsockname())


def fake_config(fake: FakeApiServer, token: str = TOKEN) -> SingleConfig:
    return single(User(token=token), server=fake.url)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # The fake API server is on loopback: a proxy from the environment must not get it.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)


async def test_exec_over_v5(fake_api: FakeApiServer) -> None:
    sent: list[int] = []
    data = bytes([7]) + os.urandom(300_000)
    result = await exec_with_stdin(
        fake_config(fake_api), "ns", "p", "main", ["tar", "-x"], io.BytesIO(data + b"more"),
        size=len(data), progress=sent.append, chunk=50_000, drain_stdin=False,
    )  # fmt: skip
    assert (result.exit_code, result.stdout) == (7, str(len(data)).encode())
    assert len(result.stderr) == podexec.OUTPUT_LIMIT
    assert sent == sorted(sent)
    assert (sent[-1], len(sent)) == (len(data), 7)
    assert fake_api.seen == [{"protocol": V5, "command": ["tar", "-x"]}]


async def test_falls_back_to_v4(fake_api: FakeApiServer) -> None:
    fake_api.protocols = (V4,)
    result = await exec_with_stdin(
        fake_config(fake_api), "ns", "p", "main", ["cat"], io.BytesIO(b"\x00abc"), size=4
    )
    assert (result.exit_code, result.stdout) == (0, b"4")
    assert [s["protocol"] for s in fake_api.seen] == [V5, V4]
    assert fake_api.seen[1]["command"][:2] == ["sh", "-c"]
    assert fake_api.seen[1]["command"][2].startswith("head -c 4 | { cat; rc=$?;")


async def test_only_unsupported_protocols(fake_api: FakeApiServer) -> None:
    fake_api.protocols = (V4,)
    with pytest.raises(ExecError, match=f"refused the {V5} exec protocol"):
        await exec_with_stdin(
            fake_config(fake_api), "ns", "p", "main", ["cat"], io.BytesIO(b""), size=0,
            protocols=[V5],
        )  # fmt: skip


async def test_missing_pod_and_bad_token(fake_api: FakeApiServer) -> None:
    with pytest.raises(ExecError, match=r"^pod ns/missing not found$"):
        await exec_with_stdin(
            fake_config(fake_api), "ns", "missing", "main", ["true"], io.BytesIO(), size=0
        )
    with pytest.raises(ExecError, match="rejected the kubeconfig's credentials") as caught:
        await exec_with_stdin(
            fake_config(fake_api, token="wrong-token"), "ns", "p", "main", ["true"],
            io.BytesIO(), size=0,
        )  # fmt: skip
    assert "wrong-token" not in str(caught.value)


async def test_short_stdin_is_an_error(fake_api: FakeApiServer) -> None:
    with pytest.raises(ExecError, match="ended after 3 of the 10 bytes"):
        await exec_with_stdin(
            fake_config(fake_api), "ns", "p", "main", ["cat"], io.BytesIO(b"abc"), size=10,
            timeout=10,
        )  # fmt: skip


async def test_connection_refused() -> None:
    config = single(User(token=TOKEN), server="http://127.0.0.1:9")
    with pytest.raises(ExecError, match=r"cannot connect to the API server .*: Connection refused"):
        await exec_with_stdin(config, "ns", "p", "main", ["true"], io.BytesIO(), size=0)


async def test_timeout(fake_api: FakeApiServer) -> None:
    # stdin never ends: the fake waits for a close that does not come in time.
    with pytest.raises(ExecError, match=r"did not finish within 0\.5s"):
        await exec_with_stdin(
            fake_config(fake_api), "ns", "p", "main", ["cat"], SlowReader(), size=10**9,
            timeout=0.5,
        )  # fmt: skip


class SlowReader(io.BytesIO):
    def read(self, size: int | None = -1) -> bytes:
        time.sleep(0.05)
        return b"x"


def test_upload_is_synchronous(fake_api_sync: str) -> None:
    config = single(User(token=TOKEN), server=fake_api_sync)
    result = podexec.upload(config, "ns", "p", "main", ["cat"], io.BytesIO(b"\x05"), size=1)
    assert result.exit_code == 5


@pytest.fixture
def fake_api_sync() -> Iterator[str]:
    """The fake API server in a thread, for the synchronous wrapper's own event loop."""
    import asyncio
    import threading

    ready: list[str] = []
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def main() -> None:
        fake = FakeApiServer()
        app = web.Application()
        app.router.add_get("/api/v1/namespaces/{ns}/pods/{pod}/exec", fake.exec)
        runner, url = await serve(app)
        ready.append(url)
        await stop.wait()
        await runner.cleanup()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),))
    thread.start()
    while not ready:
        thread.join(0.01)
    yield ready[0]
    loop.call_soon_threadsafe(stop.set)
    thread.join(10)
    loop.close()
