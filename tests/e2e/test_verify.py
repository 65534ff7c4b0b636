"""Verified images on the real cluster and registry: the tag's Verified condition for imported
images (signed, unsigned, signed by another key), and verified rollouts (an unsigned image
pushed under the tag does not roll out; once signed, it does, with nobody editing anything).

The late signature of the rollout test is made by the real cosign (v2.6.5, built from the
Go module proxy: ``cosign sign --key cosign.key --tlog-upload=false``), so the operator's
verifier is checked against an independent signer; the other signatures are made with
Headwater's own signing code (``headwater.registry.cosign``), the build's by the operator
itself. The operator is configured with two keys (``e2e-a``, ``e2e-b``) and a signing key
Secret of the test's own through its config file.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kopf.testing
import pytest
import yaml

from headwater.registry import cosign
from headwater.registry.client import RegistryClient, Repository

from .helpers import (
    Cluster,
    build_digest,
    docker_bc,
    eventually,
    start_build,
    wait_for_phase,
)
from .test_workload_triggers import (
    DEPLOYMENT_SPEC,
    OPENSHIFT_KEY,
    WEB_PATH,
    deployment,
    events,
    image_of,
    push_runnable,
    stream_image,
)

pytestmark = pytest.mark.e2e

KEY_A = cosign.generate_key()
KEY_B = cosign.generate_key()


SIGNING_PASSWORD = b"e2e-verify"
OPERATOR_NAMESPACE = "headwater-system"
"""The in-process operator's namespace (its Lease's): where its keys are read."""


@pytest.fixture
def verification_keys(
    cluster: Cluster, namespace: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[str]:
    """The operator's config file names two keys and a signing key Secret of this test's
    own (so no other test's key is touched); set before the operator starts."""
    secret = f"e2e-signing-{namespace}"[:63]
    signing = cosign.generate_key()
    data = cosign.key_secret_data(signing, SIGNING_PASSWORD)
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": secret},
            "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
        },
        OPERATOR_NAMESPACE,
    )
    config = tmp_path / "headwater.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "signingKeySecret": secret,
                "verificationKeys": {
                    "e2e-a": {"publicKey": KEY_A.public.pem().decode()},
                    "e2e-b": {"publicKey": KEY_B.public.pem().decode()},
                },
            }
        )
    )
    monkeypatch.setenv("HEADWATER_CONFIG_FILE", str(config))
    try:
        yield secret
    finally:
        cluster.kubectl("delete", "secret", secret, "-n", OPERATOR_NAMESPACE, "--ignore-not-found")


def sign(cluster: Cluster, repository: str, digest: str, key: cosign.SigningKey) -> None:
    async def attach() -> None:
        async with RegistryClient() as client:
            repo = Repository(cluster.need_registry(), repository, insecure=True)
            await cosign.attach_signature(client, repo, digest, key)

    asyncio.run(attach())


@pytest.fixture(scope="session")
def cosign_cli() -> str:
    """The real cosign, built from the Go module proxy (cached; hack/cluster/cosign_bin.py)."""
    script = Path(__file__).resolve().parents[2] / "hack" / "cluster" / "cosign_bin.py"
    result = subprocess.run(
        [sys.executable, str(script), "build"], capture_output=True, text=True, timeout=1800
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return str(json.loads(result.stdout)["cosign"])


def cosign_sign(binary: str, workdir: Path, image: str, key: cosign.SigningKey) -> None:
    """``cosign sign --key cosign.key`` (the real cosign, built for the tests) of ``image``."""
    password = b"e2e-cosign"
    key_file = workdir / "cosign.key"
    key_file.write_bytes(cosign.encrypt_private_key(key, password))
    result = subprocess.run(
        [
            binary, "sign", "--key", str(key_file), "--tlog-upload=false",
            "--allow-http-registry", image,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=workdir,
        env={**os.environ, "COSIGN_PASSWORD": password.decode(), "COSIGN_YES": "true"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]


def tag_condition(cluster: Cluster, namespace: str, stream: str, tag: str) -> dict[str, Any]:
    status = cluster.get_json(f"is/{stream}", "-n", namespace).get("status") or {}
    for entry in status.get("tags") or []:
        if entry.get("tag") == tag:
            for condition in entry.get("conditions") or []:
                if condition.get("type") == "Verified":
                    return dict(condition)
    return {}


def imported_tag(registry: str, repository: str, tag: str, keys: list[str], **policy: Any) -> Any:
    return {
        "name": tag,
        "from": {"kind": "DockerImage", "name": f"{registry}/{repository}:{tag}"},
        "importPolicy": {"insecure": True},
        "verification": {"keys": keys, **policy},
    }


def test_imported_tags_are_verified_against_configured_keys(
    cluster: Cluster,
    namespace: str,
    verification_keys: str,
    operator_in_process: kopf.testing.KopfRunner,
) -> None:
    registry = cluster.need_registry()
    repository = f"{namespace}/signed"
    digests = {
        tag: push_runnable(cluster, repository, tag, f"{namespace}-{tag}")
        for tag in ("signed", "unsigned", "wrongkey")
    }
    sign(cluster, repository, digests["signed"], KEY_A)
    sign(cluster, repository, digests["wrongkey"], KEY_B)
    cluster.apply(
        {
            "apiVersion": "image.headwater.dev/v1",
            "kind": "ImageStream",
            "metadata": {"name": "signed"},
            "spec": {
                "tags": [
                    imported_tag(registry, repository, "signed", ["e2e-a"]),
                    imported_tag(registry, repository, "unsigned", ["e2e-a"]),
                    imported_tag(registry, repository, "wrongkey", ["e2e-a"]),
                ]
            },
        },
        namespace,
    )
    expected = {
        "signed": ("True", "Verified"),
        "unsigned": ("False", "NoSignature"),
        "wrongkey": ("False", "SignatureMismatch"),
    }

    def seen() -> dict[str, tuple[str, str]]:
        return {
            tag: (c.get("status", ""), c.get("reason", ""))
            for tag in expected
            if (c := tag_condition(cluster, namespace, "signed", tag))
        }

    eventually("the three Verified conditions", lambda: seen() == expected, 60)
    assert "e2e-a" in tag_condition(cluster, namespace, "signed", "signed")["message"]
    assert "e2e-a" in tag_condition(cluster, namespace, "signed", "wrongkey")["message"]


def test_only_verified_images_roll_out(
    cluster: Cluster,
    namespace: str,
    cosign_cli: str,
    tmp_path: Path,
    verification_keys: str,
    operator_in_process: kopf.testing.KopfRunner,
) -> None:
    registry = cluster.need_registry()
    repository = f"{namespace}/web"
    first = push_runnable(cluster, repository, "v", f"{namespace}-one")
    sign(cluster, repository, first, KEY_A)
    cluster.apply(
        {
            "apiVersion": "image.headwater.dev/v1",
            "kind": "ImageStream",
            "metadata": {"name": "web"},
            "spec": {
                "tags": [
                    {
                        "name": "latest",
                        "from": {"kind": "DockerImage", "name": f"{registry}/{repository}:v"},
                        "importPolicy": {"insecure": True},
                        "verification": {"keys": ["e2e-a"], "required": True},
                    }
                ]
            },
        },
        namespace,
    )
    eventually("the first import", lambda: stream_image(cluster, namespace) == first, 60)
    trigger = [
        {
            "from": {"kind": "ImageStreamTag", "name": "web:latest"},
            "fieldPath": WEB_PATH,
            "verify": {"keys": ["e2e-a"]},
        }
    ]
    cluster.apply(deployment(cluster, "web", {OPENSHIFT_KEY: json.dumps(trigger)}), namespace)

    def deployed() -> str:
        return image_of(cluster, namespace, "deploy/web", DEPLOYMENT_SPEC)

    eventually(
        "the signed image rolled out", lambda: deployed() == f"{registry}/{repository}@{first}", 60
    )

    # An image pushed by hand under the same tag, unsigned: imported, not rolled out.
    second = push_runnable(cluster, repository, "v", f"{namespace}-two")
    cluster.kubectl(
        "annotate", "is/web", "-n", namespace,
        "image.headwater.dev/import-requested=*", "--overwrite",
    )  # fmt: skip
    eventually("the unsigned import", lambda: stream_image(cluster, namespace) == second, 60)
    eventually(
        "a Warning Event on the Deployment",
        lambda: bool(events(cluster, namespace, "web", "ImageNotVerified")),
        30,
    )
    [warning] = events(cluster, namespace, "web", "ImageNotVerified")
    assert warning["type"] == "Warning"
    assert second in warning["message"]
    assert "NoSignature" in warning["message"]
    eventually(
        "the tag's Verified=False",
        lambda: tag_condition(cluster, namespace, "web", "latest").get("reason") == "NoSignature",
        30,
    )
    assert deployed() == f"{registry}/{repository}@{first}"

    # Signed later, by the real cosign: found on the re-verification schedule, rolled out
    # without any edit.
    cosign_sign(cosign_cli, tmp_path, f"{registry}/{repository}@{second}", KEY_A)
    signed_at = time.monotonic()
    eventually(
        "the signed image rolled out",
        lambda: deployed() == f"{registry}/{repository}@{second}",
        60,
    )
    latency = time.monotonic() - signed_at
    # kopf's runner redirects stdout: the figure goes to the real stderr.
    print(f"re-verification latency: {latency:.1f} s", file=sys.__stderr__)
    eventually(
        "the tag's Verified=True",
        lambda: tag_condition(cluster, namespace, "web", "latest").get("status") == "True",
        30,
    )
    assert len(events(cluster, namespace, "web", "ImageNotVerified")) == 1


BUILT_KEYS = ["headwater"]
"""The keys the built tag requires (the built-in one: the cluster signing key)."""


def test_a_signed_build_rolls_out(
    cluster: Cluster,
    namespace: str,
    verification_keys: str,
    operator_in_process: kopf.testing.KopfRunner,
) -> None:
    """The operator signs the build with the cluster key before the tag moves, so a tag
    requiring the built-in key ``headwater`` rolls the build out at once."""
    busybox = cluster.image("busybox")
    cluster.apply(
        [
            {
                "apiVersion": "image.headwater.dev/v1",
                "kind": "ImageStream",
                "metadata": {"name": "app"},
                "spec": {
                    "tags": [
                        {"name": "latest", "verification": {"keys": BUILT_KEYS, "required": True}}
                    ]
                },
            },
            docker_bc(
                "app",
                {
                    "type": "Dockerfile",
                    "dockerfile": f"FROM {busybox}\nRUN echo {namespace} > /m\n",
                },
                "app:latest",
            ),
        ],
        namespace,
    )
    trigger = [{"from": {"kind": "ImageStreamTag", "name": "app:latest"}, "fieldPath": WEB_PATH}]
    cluster.apply(deployment(cluster, "app", {OPENSHIFT_KEY: json.dumps(trigger)}), namespace)
    start_build(cluster, namespace, "app")
    eventually(
        "the build to start",
        lambda: bool(cluster.get_json("builds", "-n", namespace)["items"]),
        30,
    )
    name = cluster.get_json("builds", "-n", namespace)["items"][0]["metadata"]["name"]
    build = wait_for_phase(cluster, namespace, name)
    assert build["status"]["phase"] == "Complete", build["status"]
    digest = build_digest(cluster, namespace, name)
    eventually(
        "the signed build rolled out",
        lambda: image_of(cluster, namespace, "deploy/app", DEPLOYMENT_SPEC).endswith(f"@{digest}"),
        30,
    )
    eventually(
        "the tag's Verified=True by the key headwater",
        lambda: tag_condition(cluster, namespace, "app", "latest").get("status") == "True",
        30,
    )
    assert "headwater" in tag_condition(cluster, namespace, "app", "latest")["message"]
    assert not events(cluster, namespace, "app", "ImageNotVerified")
