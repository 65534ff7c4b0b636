"""Uploading a local folder into a running pod through the API server's exec
WebSocket, as ``start-build --from-dir`` does, against the real cluster."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from lightkube.config.kubeconfig import KubeConfig, SingleConfig
from lightkube.config.models import User

from headwater.cli.archive import make_archive
from headwater.cli.podexec import V4, V5, ExecError, ExecResult, exec_with_stdin, upload

from .helpers import Cluster, wait_until_allowed

pytestmark = pytest.mark.e2e

POD = "upload-target"
CONTAINER = "main"
EXTRACT = ["sh", "-c", "mkdir -p /tmp/in && tar -xzf - -C /tmp/in && touch /tmp/in.done"]
BIG = 5 * 1024 * 1024
LONG_PATH = "/".join(["a-rather-long-directory-name"] * 5) + "/file.txt"
UNICODE_NAME = "ünïcode-名前.txt"


def busybox_pod(cluster: Cluster, namespace: str, name: str = POD, image: str = "") -> None:
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "automountServiceAccountToken": False,
                "terminationGracePeriodSeconds": 1,
                "containers": [
                    {
                        "name": CONTAINER,
                        "image": image or cluster.image("busybox"),
                        "command": ["sleep", "3600"],
                    }
                ],
            },
        },
        namespace,
    )
    if not image:
        cluster.kubectl(
            "wait", "-n", namespace, "--for=condition=Ready", f"pod/{name}", "--timeout=120s",
            timeout=150,
        )  # fmt: skip


@pytest.fixture
def target(cluster: Cluster, namespace: str) -> str:
    busybox_pod(cluster, namespace)
    return namespace


@pytest.fixture
def config(cluster: Cluster) -> SingleConfig:
    single = KubeConfig.from_file(cluster.kubeconfig).get()
    assert single is not None
    return single


def source_tree(root: Path) -> str:
    """A folder with ignore rules and a random 5 MiB file; returns that file's sha256."""
    files = {
        ".gitignore": "*.log\n!keep.log\nbuild/\n",
        "app.py": "print('hello from the upload')\n",
        "debug.log": "ignored",
        "keep.log": "kept",
        "build/artifact": "ignored directory",
        "sub/.gitignore": "*.tmp\n",
        "sub/data.txt": "nested content",
        "sub/scratch.tmp": "ignored by the nested rules",
        LONG_PATH: "deep",
        UNICODE_NAME: "utf-8 name",
    }
    for rel, content in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(content)
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (root / "run.sh").write_text("#!/bin/sh\necho ran\n")
    (root / "run.sh").chmod(0o755)
    (root / "link.py").symlink_to("app.py")
    big = os.urandom(BIG)
    (root / "big.bin").write_bytes(big)
    return hashlib.sha256(big).hexdigest()


def run(config: SingleConfig, namespace: str, script: str, **kw: Any) -> ExecResult:
    """A command with nothing on stdin."""
    return upload(
        config, namespace, POD, CONTAINER, ["sh", "-c", script], io.BytesIO(), size=0, **kw
    )


def upload_tree(
    config: SingleConfig, namespace: str, tmp_path: Path, protocols: tuple[str, ...]
) -> str:
    src = tmp_path / "src"
    src.mkdir()
    digest = source_tree(src)
    with tempfile.TemporaryFile() as archive:
        stats = make_archive(src, archive)
        size = archive.tell()
        assert size == stats.bytes_compressed
        archive.seek(0)
        sent: list[int] = []
        started = time.monotonic()
        result = upload(
            config, namespace, POD, CONTAINER, EXTRACT, archive, size=size,
            progress=sent.append, protocols=protocols,
        )  # fmt: skip
        elapsed = time.monotonic() - started
    assert result.exit_code == 0, result.stderr
    assert sent[-1] == size
    assert sent == sorted(sent)
    print(f"\nuploaded {size / 1e6:.1f} MB over {protocols[0]} in {elapsed:.2f}s: "
          f"{size / 1e6 / elapsed:.1f} MB/s")  # fmt: skip
    return digest


def check_tree(config: SingleConfig, namespace: str, digest: str) -> None:
    listed = run(config, namespace, "cd /tmp/in && find . ! -type d | sort && test -e /tmp/in.done")
    assert listed.exit_code == 0, listed.stderr
    assert listed.stdout.decode().split() == sorted(
        [
            "./.gitignore",
            "./app.py",
            "./big.bin",
            "./keep.log",
            "./link.py",
            "./run.sh",
            "./sub/.gitignore",
            "./sub/data.txt",
            f"./{LONG_PATH}",
            f"./{UNICODE_NAME}",
        ]
    )
    checked = run(
        config,
        namespace,
        "cd /tmp/in && sha256sum big.bin && cat sub/data.txt && echo && readlink link.py"
        f" && ./run.sh && cat {LONG_PATH} '{UNICODE_NAME}'",
    )
    assert checked.exit_code == 0, checked.stderr
    lines = checked.stdout.decode().splitlines()
    assert lines[0].split()[0] == digest
    assert lines[1:] == ["nested content", "app.py", "ran", "deeputf-8 name"]


def test_upload_a_folder(
    config: SingleConfig, target: str, cluster: Cluster, tmp_path: Path
) -> None:
    digest = upload_tree(config, target, tmp_path, (V5, V4))
    check_tree(config, target, digest)
    # kubectl's opinion of what landed, besides our own exec's.
    out = cluster.kubectl("exec", "-n", target, POD, "-c", CONTAINER, "--", "sha256sum",
                          "/tmp/in/big.bin")  # fmt: skip
    assert out.stdout.split()[0] == digest


def test_upload_over_v4(config: SingleConfig, target: str, tmp_path: Path) -> None:
    digest = upload_tree(config, target, tmp_path, (V4,))
    check_tree(config, target, digest)


@pytest.mark.parametrize("protocols", [(V5,), (V4,)], ids=["v5", "v4"])
async def test_exit_codes_and_output(
    config: SingleConfig, target: str, protocols: tuple[str, ...]
) -> None:
    data = os.urandom(BIG)
    sent: list[int] = []
    started = time.monotonic()
    result = await exec_with_stdin(
        config, target, POD, CONTAINER, ["sha256sum"], io.BytesIO(data), size=len(data),
        progress=sent.append, protocols=protocols,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    print(f"\n5 MiB to sha256sum over {protocols[0]}: {len(data) / 1e6 / elapsed:.1f} MB/s")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.split()[0].decode() == hashlib.sha256(data).hexdigest()
    assert sent[-1] == len(data)
    # A command that fails at once, with most of stdin still unread.
    failed = await exec_with_stdin(
        config, target, POD, CONTAINER, ["sh", "-c", "echo nope >&2; exit 3"],
        io.BytesIO(data), size=len(data), protocols=protocols,
    )  # fmt: skip
    assert (failed.exit_code, failed.stderr) == (3, b"nope\n")
    missing = await exec_with_stdin(
        config, target, POD, CONTAINER, ["no-such-command"], io.BytesIO(), size=0,
        protocols=protocols,
    )  # fmt: skip
    assert missing.exit_code == 127
    # More output than is kept.
    chatty = await exec_with_stdin(
        config, target, POD, CONTAINER, ["sh", "-c", "head -c 3000000 /dev/zero"],
        io.BytesIO(), size=0, protocols=protocols,
    )  # fmt: skip
    assert (chatty.exit_code, chatty.stdout) == (0, b"\0" * 1024 * 1024)


def test_where_the_exec_cannot_go(config: SingleConfig, target: str, cluster: Cluster) -> None:
    with pytest.raises(ExecError, match=f"^pod {target}/no-such-pod not found$"):
        upload(config, target, "no-such-pod", CONTAINER, ["true"], io.BytesIO(), size=0)
    with pytest.raises(ExecError, match=r"has no container 'sidecar' \(it has: main\)"):
        upload(config, target, POD, "sidecar", ["true"], io.BytesIO(), size=0)
    # An image that does not exist: the container never runs.
    busybox_pod(cluster, target, "never-runs", image=cluster.image("busybox") + "-missing")
    with pytest.raises(ExecError, match=r"never-runs (is not running yet|has not started yet)"):
        upload(config, target, "never-runs", CONTAINER, ["true"], io.BytesIO(), size=0)
    with pytest.raises(ExecError, match=r"did not finish within 2s"):
        run(config, target, "sleep 30", timeout=2)


def token_for(cluster: Cluster, namespace: str, account: str) -> str:
    cluster.kubectl("create", "serviceaccount", account, "-n", namespace)
    return cluster.kubectl("create", "token", account, "-n", namespace).stdout.strip()


def test_token_users_and_rbac(config: SingleConfig, target: str, cluster: Cluster) -> None:
    cluster.kubectl(
        "create", "role", "exec", "-n", target, "--verb=create,get", "--resource=pods/exec,pods"
    )
    cluster.kubectl(
        "create", "rolebinding", "exec", "-n", target, "--role=exec",
        f"--serviceaccount={target}:execer",
    )  # fmt: skip
    allowed = token_for(cluster, target, "execer")
    denied = token_for(cluster, target, "nobody")
    wait_until_allowed(
        cluster, "create", "pods/exec", "-n", target, f"--as=system:serviceaccount:{target}:execer",
    )  # fmt: skip

    def as_user(token: str) -> SingleConfig:
        single = KubeConfig.from_one(cluster=config.cluster, user=User(token=token)).get()
        assert single is not None
        return single

    done = run(as_user(allowed), target, "echo hello")
    assert (done.exit_code, done.stdout) == (0, b"hello\n")
    with pytest.raises(ExecError, match=r"forbidden: .* needs 'create' on pods/exec") as caught:
        run(as_user(denied), target, "echo hello")
    with pytest.raises(ExecError, match="rejected the kubeconfig's credentials") as rejected:
        run(as_user(allowed[:-4] + "AAAA"), target, "echo hello")
    for error in (caught.value, rejected.value):
        assert denied not in str(error)
        assert allowed[-40:] not in str(error)
