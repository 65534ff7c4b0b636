"""Small helpers e2e tests share: registry look-ups and image builds on this machine."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)


def registry_digest(registry: str, repository: str, reference: str) -> str:
    """The digest the registry itself reports for a tag (plain-HTTP local registry)."""
    req = urllib.request.Request(
        f"http://{registry}/v2/{repository}/manifests/{reference}",
        method="HEAD",
        headers={"Accept": MANIFEST_TYPES},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - test registry
        digest = resp.headers["Docker-Content-Digest"]
    assert digest, f"no Docker-Content-Digest header for {repository}"
    assert digest.startswith("sha256:"), digest
    return str(digest)


def buildah_build_and_push(
    workdir: Path,
    context: Path,
    ref: str,
    build_args: dict[str, str] | None = None,
    dockerfile: str = "Dockerfile",
    timeout: float = 900,
) -> str:
    """Build ``context`` with buildah on this machine and push it; return the pushed digest.

    Storage lives under ``workdir`` so tests never touch the machine's own.
    """
    base = [
        "buildah",
        "--root",
        str(workdir / "storage"),
        "--runroot",
        str(workdir / "run"),
        "--storage-driver",
        "vfs",
    ]
    args: list[str] = []
    for key, value in (build_args or {}).items():
        args += ["--build-arg", f"{key}={value}"]
    _run(
        [
            *base,
            "bud",
            "--isolation",
            "chroot",
            "--tls-verify=false",
            "--layers=false",
            "-f",
            str(context / dockerfile),
            *args,
            "-t",
            ref,
            str(context),
        ],
        timeout,
    )
    digestfile = workdir / "digest"
    _run([*base, "push", "--tls-verify=false", "--digestfile", str(digestfile), ref], 300)
    return digestfile.read_text().strip()


def _run(cmd: list[str], timeout: float) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd[:8])}... failed ({result.returncode}):\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )


def eventually(what: str, check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@dataclass
class Cluster:
    """A real cluster, its kubectl, and what the local one offers besides."""

    kubeconfig: Path
    registry: str | None
    kubectl_path: str
    env: dict[str, str] = field(default_factory=dict)

    @property
    def is_local(self) -> bool:
        return "HEADWATER_GIT_ROOT" in self.env

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.kubectl_path, "--kubeconfig", str(self.kubeconfig), *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stderr}{result.stdout}"
            )
        return result

    def apply(self, obj: dict[str, object] | list[dict[str, object]], namespace: str) -> None:
        items = obj if isinstance(obj, list) else [obj]
        doc = json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
        self.kubectl("apply", "-n", namespace, "-f", "-", input=doc)

    def get_json(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def need_registry(self) -> str:
        if not self.registry:
            pytest.skip("REGISTRY is not set for this cluster; the test pushes images")
        return self.registry

    def image(self, name: str) -> str:
        """A locally made image (busybox, builder, python) on the local cluster."""
        key = f"HEADWATER_{name.upper()}_IMAGE"
        value = self.env.get(key) or os.environ.get(key)
        if not value:
            pytest.skip(f"{key} is not set: the test needs the locally made {name} image")
        return value


@dataclass
class GitServer:
    """Bare repositories served by the local cluster's git daemon to pods."""

    root: Path
    url: str
    workdir: Path

    def repo(self, files: dict[str, str], message: str = "initial") -> tuple[str, str]:
        """Publish a repository with these files; return (clone URL, commit SHA)."""
        name = f"repo-{uuid.uuid4().hex[:8]}"
        src = self.workdir / name
        src.mkdir()
        for rel, content in files.items():
            target = src / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
        git = ["git", "-c", "user.name=Headwater Tests", "-c", "user.email=tests@headwater.dev"]
        subprocess.run([*git, "init", "-q", "-b", "main"], cwd=src, check=True)
        subprocess.run([*git, "add", "."], cwd=src, check=True)
        subprocess.run([*git, "commit", "-q", "-m", message], cwd=src, check=True)
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=src, check=True, capture_output=True, text=True
        ).stdout.strip()
        subprocess.run(
            ["git", "clone", "-q", "--bare", str(src), str(self.root / f"{name}.git")], check=True
        )
        return f"{self.url}/{name}.git", sha
