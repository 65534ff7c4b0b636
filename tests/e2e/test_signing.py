"""Signing, checked by the real cosign: the operator signs what it builds, and keys
made by `headwater keys create` work with cosign.

cosign v2.6.5 is built from the Go module proxy by hack/cluster/cosign_bin.py
(cached by version). No Rekor or Fulcio is reachable, so every check runs
``cosign verify --key ... --insecure-ignore-tlog=true``, and
``--allow-http-registry`` for the local plain-HTTP registry.

The key Secret of these tests has its own name (``signingKeySecret`` points the
in-process operator at it), so the operators other tests run on the shared
cluster keep building unsigned.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import kopf.testing
import pytest

from headwater.registry import cosign
from tests.e2e.helpers import (
    Cluster,
    build_of_request,
    build_why,
    docker_bc,
    headwater,
    imagestream,
    push_image,
    start_build,
    wait_for_phase,
)

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
OPERATOR_NAMESPACE = "headwater-system"


@pytest.fixture(scope="session")
def cosign_binary() -> str:
    result = subprocess.run(
        [sys.executable, str(REPO / "hack" / "cluster" / "cosign_bin.py"), "build"],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return str(json.loads(result.stdout)["cosign"])


@dataclass
class Checker:
    """The real cosign against the cluster's registry."""

    binary: str
    cluster: Cluster
    workdir: Path

    def run(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.binary, *args],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=self.workdir,
            env={
                **os.environ,
                "KUBECONFIG": str(self.cluster.kubeconfig),
                "COSIGN_YES": "true",
                **(env or {}),
            },
        )

    def verify(self, public_pem: bytes, image: str) -> subprocess.CompletedProcess[str]:
        key = self.workdir / f"key-{uuid.uuid4().hex[:8]}.pub"
        key.write_bytes(public_pem)
        return self.run(
            "verify", "--key", str(key), "--insecure-ignore-tlog=true",
            "--allow-http-registry", image,
        )  # fmt: skip


@pytest.fixture
def checker(cosign_binary: str, cluster: Cluster, tmp_path: Path) -> Checker:
    return Checker(cosign_binary, cluster, tmp_path)


@dataclass
class SigningKey:
    name: str
    public_pem: bytes


@pytest.fixture
def signing_key(
    cluster: Cluster, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[SigningKey]:
    """A key pair made by `headwater keys create`, which the in-process operator
    (requested after this fixture) signs with."""
    cluster.kubectl("create", "namespace", OPERATOR_NAMESPACE, check=False)
    name = f"hw-signing-{namespace}"[:63]
    monkeypatch.setenv("HEADWATER_SIGNING_KEY_SECRET", name)
    made = headwater(cluster, OPERATOR_NAMESPACE, "keys", "create", "--name", name)
    assert made.returncode == 0, made.stderr
    try:
        yield SigningKey(name, made.stdout.encode())
    finally:
        cluster.kubectl(
            "delete", "secret", name, "-n", OPERATOR_NAMESPACE, "--ignore-not-found", check=False
        )


def test_built_image_is_signed_and_cosign_verifies_it(
    cluster: Cluster,
    namespace: str,
    signing_key: SigningKey,
    operator_in_process: kopf.testing.KopfRunner,
    checker: Checker,
) -> None:
    registry = cluster.need_registry()
    busybox = cluster.image("busybox")
    cluster.apply(imagestream("signed"), namespace)
    dockerfile = f"FROM {busybox}\nRUN echo signed > /x\n"
    cluster.apply(
        docker_bc("signed", {"type": "Dockerfile", "dockerfile": dockerfile}, "signed:v1"),
        namespace,
    )
    name = build_of_request(cluster, namespace, start_build(cluster, namespace, "signed"))
    build = wait_for_phase(cluster, namespace, name)
    status = build["status"]
    assert status["phase"] == "Complete", build_why(build)
    digest = status["output"]["to"]["imageDigest"]
    image = f"{registry}/{namespace}/signed@{digest}"
    expected_key = cosign.load_public_key(signing_key.public_pem).fingerprint
    assert status["signature"] == {
        "signed": True,
        "reference": f"{registry}/{namespace}/signed:{cosign.signature_tag(digest)}",
        "digest": status["signature"]["digest"],
        "keyId": expected_key,
    }
    # The tag moved to the signed digest.
    stream = cluster.get_json("imagestream/signed", "-n", namespace)
    tags = {t["tag"]: t["items"][0]["image"] for t in stream["status"]["tags"]}
    assert tags["v1"] == digest

    accepted = checker.verify(signing_key.public_pem, image)
    assert accepted.returncode == 0, accepted.stderr
    assert digest in accepted.stdout  # cosign prints the verified payloads
    other = cosign.generate_key().public.pem()
    refused = checker.verify(other, image)
    assert refused.returncode != 0
    assert "no matching signatures" in refused.stderr


def test_keys_create_refuses_to_overwrite_and_cosign_signs_with_its_key(
    cluster: Cluster, namespace: str, checker: Checker
) -> None:
    registry = cluster.need_registry()
    cluster.kubectl("create", "namespace", OPERATOR_NAMESPACE, check=False)
    name = f"hw-keys-{namespace}"[:63]
    try:
        first = headwater(cluster, OPERATOR_NAMESPACE, "keys", "create", "--name", name)
        assert first.returncode == 0, first.stderr
        assert first.stdout.startswith("-----BEGIN PUBLIC KEY-----")
        again = headwater(cluster, OPERATOR_NAMESPACE, "keys", "create", "--name", name)
        assert again.returncode == 1
        assert "--force" in again.stderr
        forced = headwater(cluster, OPERATOR_NAMESPACE, "keys", "create", "--name", name, "--force")
        assert forced.returncode == 0, forced.stderr
        assert forced.stdout != first.stdout
        secret = cluster.get_json("secret", name, "-n", OPERATOR_NAMESPACE)
        assert set(secret["data"]) == {"cosign.key", "cosign.password", "cosign.pub"}
        assert secret.get("immutable") is True

        digest, _ = push_image(registry, f"{namespace}/keys", "v1", marker=uuid.uuid4().hex)
        image = f"{registry}/{namespace}/keys@{digest}"
        signed = checker.run(
            "sign", "--key", f"k8s://{OPERATOR_NAMESPACE}/{name}", "--tlog-upload=false",
            "--allow-http-registry", image,
        )  # fmt: skip
        assert signed.returncode == 0, signed.stderr
        assert checker.verify(forced.stdout.encode(), image).returncode == 0
        assert checker.verify(first.stdout.encode(), image).returncode != 0
    finally:
        cluster.kubectl(
            "delete", "secret", name, "-n", OPERATOR_NAMESPACE, "--ignore-not-found", check=False
        )
