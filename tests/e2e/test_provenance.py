"""Provenance on the real cluster: a Docker build's SLSA v1 statement, read back from the
real registry with plain HTTP (not the operator's code), matches what git and the
registry say; the real cosign accepts its signature with the cluster key only.

The signing key is made by the real cosign (``cosign generate-key-pair``) into a
Secret of this test's own name (``HEADWATER_SIGNING_KEY_SECRET``), so no other
test's key is touched.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.error
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kopf.testing
import pytest

from .conftest import AUTH_REGISTRY_PORT, LOCAL_NODE_IP, PRIVILEGED_BUILDS
from .helpers import (
    OPERATOR_NAMESPACE,
    Cluster,
    GitServer,
    build_of_request,
    docker_bc,
    eventually,
    imagestream,
    registry_digest,
    registry_request,
    start_build,
    wait_for_phase,
)

pytestmark = pytest.mark.e2e

EXECUTOR_ANNOTATION = "build.headwater.dev/executor"

REPO = Path(__file__).resolve().parents[2]

PASSWORD = "provenance-e2e-" + uuid.uuid4().hex[:8]
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DSSE = "application/vnd.dsse.envelope.v1+json"


@pytest.fixture(scope="module")
def cosign_binary() -> str:
    """The real cosign, built from the Go module proxy (cached) by hack/cluster/cosign_bin.py."""
    result = subprocess.run(
        [sys.executable, str(REPO / "hack" / "cluster" / "cosign_bin.py"), "build"],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return str(json.loads(result.stdout)["cosign"])


def _generate_key_pair(cosign: str, where: Path) -> None:
    where.mkdir()
    subprocess.run(
        [cosign, "generate-key-pair"],
        cwd=where,
        env={**os.environ, "COSIGN_PASSWORD": PASSWORD},
        check=True,
        capture_output=True,
        timeout=60,
    )


@pytest.fixture
def signing_key(
    cosign_binary: str, cluster: Cluster, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[tuple[str, Path]]:
    """(cosign path, the directory with cosign.pub): the cluster key, made by cosign,
    in a Secret named for this test; requested before the operator starts."""
    cosign = cosign_binary
    keys = tmp_path / "keys"
    _generate_key_pair(cosign, keys)
    name = f"provenance-e2e-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", OPERATOR_NAMESPACE, check=False)
    cluster.kubectl(
        "create", "secret", "generic", name, "-n", OPERATOR_NAMESPACE,
        f"--from-file=cosign.key={keys / 'cosign.key'}",
        f"--from-file=cosign.pub={keys / 'cosign.pub'}",
        f"--from-literal=cosign.password={PASSWORD}",
    )  # fmt: skip
    monkeypatch.setenv("HEADWATER_SIGNING_KEY_SECRET", name)
    try:
        yield cosign, keys
    finally:
        cluster.kubectl("delete", "secret", name, "-n", OPERATOR_NAMESPACE, check=False)


def _get(url: str, accept: str = OCI_MANIFEST) -> bytes:
    with registry_request(url, headers={"Accept": accept}) as response:
        return bytes(response.read())


def _attestation(registry: str, repository: str, digest: str) -> dict[str, Any]:
    """The in-toto statement in the image's cosign ``.att`` tag, read with plain HTTP."""
    tag = digest.replace(":", "-") + ".att"
    manifest = json.loads(_get(f"http://{registry}/v2/{repository}/manifests/{tag}"))
    [layer] = manifest["layers"]
    assert layer["mediaType"] == "application/vnd.dsse.envelope.v1+json"
    assert layer["annotations"]["predicateType"] == "https://slsa.dev/provenance/v1"
    envelope = json.loads(
        _get(f"http://{registry}/v2/{repository}/blobs/{layer['digest']}", accept="*/*")
    )
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    assert len(envelope["signatures"]) == 1
    statement: dict[str, Any] = json.loads(base64.b64decode(envelope["payload"]))
    return statement


def _verify(cosign: str, key: Path, image: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            cosign, "verify-attestation", "--key", str(key), "--type", "slsaprovenance1",
            "--insecure-ignore-tlog=true", "--allow-http-registry", image,
        ],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "COSIGN_YES": "true"},
    )  # fmt: skip


def _build_and_check(
    cluster: Cluster,
    namespace: str,
    git_server: GitServer,
    signing_key: tuple[str, Path],
    tmp_path: Path,
    executor: str,
) -> None:
    """A two-stage Docker build from git with ``executor``; its provenance checked
    against git, the registry and the real cosign."""
    cosign, keys = signing_key
    registry = cluster.need_registry()
    busybox = cluster.image("busybox")
    url, sha = git_server.repo(
        {
            "Dockerfile": (
                f"FROM {busybox} AS tools\n"
                "RUN echo tool > /tool\n"
                f"FROM {busybox}\n"
                "COPY --from=tools /tool /tool\n"
                "COPY message.txt /message.txt\n"
            ),
            "message.txt": "provenance\n",
        },
        message="provenance e2e",
    )
    cluster.apply(imagestream("prov"), namespace)
    bc = docker_bc("prov", {"type": "Git", "git": {"uri": url}}, "prov:latest")
    bc["metadata"]["annotations"] = {EXECUTOR_ANNOTATION: executor}
    cluster.apply(bc, namespace)
    started = time.monotonic()
    name = build_of_request(cluster, namespace, start_build(cluster, namespace, "prov"))
    build = wait_for_phase(cluster, namespace, name)
    status = build["status"]
    assert status["phase"] == "Complete", status
    repository = f"{namespace}/prov"
    digest = registry_digest(registry, repository, "latest")
    assert status["output"]["to"]["imageDigest"] == digest

    # Read back from the registry by hand, not with the operator's code.
    statement = _attestation(registry, repository, digest)
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
    assert statement["subject"] == [
        {"name": f"{registry}/{repository}", "digest": {"sha256": digest.removeprefix("sha256:")}}
    ]
    predicate = statement["predicate"]
    assert predicate["buildDefinition"]["internalParameters"]["executor"] == executor
    dependencies = predicate["buildDefinition"]["resolvedDependencies"]
    commits = [d["digest"]["gitCommit"] for d in dependencies if "gitCommit" in d["digest"]]
    assert commits == [sha]  # what git itself says HEAD is
    images = [d for d in dependencies if "sha256" in d["digest"]]
    assert {d["name"] for d in images} == {busybox}, images  # both stages' FROM
    base_repository = busybox.split("/", 1)[1].rsplit(":", 1)[0]
    base_digest = registry_digest(registry, base_repository, busybox.rsplit(":", 1)[1])
    # kaniko reports no digest: the operator asks the registry; buildah reports its pulls.
    source = {"kaniko": "registry", "buildah": "executor"}[executor]
    for image in images:
        assert f"sha256:{image['digest']['sha256']}" == base_digest, image
        assert image["uri"] == f"oci://{busybox.rsplit(':', 1)[0]}@{base_digest}"
        assert image["annotations"]["headwater.dev/digestSource"] == source, image
        assert image["annotations"]["headwater.dev/inRegistry"] is True, image
        assert image["annotations"]["headwater.dev/baseLayers"] is True, image
    assert predicate["runDetails"]["metadata"]["invocationId"] == build["metadata"]["uid"]
    assert predicate["buildDefinition"]["externalParameters"]["build"]["name"] == name

    # The Build's status says where it lives.
    tag = digest.replace(":", "-") + ".att"
    record = status["provenance"]
    assert record["reference"] == f"{registry}/{repository}:{tag}", record
    assert record["scheme"] == "tag"
    assert record["signed"] is True
    assert record["keyId"] == status["signature"]["keyId"]  # the same cluster key
    assert "error" not in record
    assert PASSWORD not in json.dumps(build)
    assert PASSWORD not in json.dumps(statement)

    # The real cosign accepts it with the cluster key, and refuses it with another.
    image = f"{registry}/{repository}@{digest}"
    accepted = _verify(cosign, keys / "cosign.pub", image)
    assert accepted.returncode == 0, accepted.stderr
    [verified] = [json.loads(line) for line in accepted.stdout.splitlines() if line.strip()]
    assert json.loads(base64.b64decode(verified["payload"])) == statement
    other = tmp_path / "other"
    _generate_key_pair(cosign, other)
    refused = _verify(cosign, other / "cosign.pub", image)
    assert refused.returncode != 0, refused.stdout
    elapsed = time.monotonic() - started
    # 7 s on a quiet machine; a build alone takes 30 s and more when CI's 2 cores run the
    # whole suite: the bound is for a build that hangs, not for a slow machine.
    print(f"the {executor} build and checks took {elapsed:.0f}s", file=sys.__stderr__)
    assert elapsed < 240, f"the build and checks took {elapsed:.0f}s"


def test_kaniko_build_provenance_matches_git_and_the_registry_and_cosign_verifies_it(
    cluster: Cluster,
    namespace: str,
    git_server: GitServer,
    signing_key: tuple[str, Path],
    operator_in_process: kopf.testing.KopfRunner,
    tmp_path: Path,
) -> None:
    _build_and_check(cluster, namespace, git_server, signing_key, tmp_path, "kaniko")


class TestBuildah:
    """buildah (an admin opted the namespace in): the base digests are the ones it pulled."""

    @pytest.fixture
    def namespace_labels(self) -> dict[str, str]:
        return dict(PRIVILEGED_BUILDS)

    def test_buildah_build_provenance_matches_git_and_the_registry_and_cosign_verifies_it(
        self,
        cluster: Cluster,
        namespace: str,
        git_server: GitServer,
        signing_key: tuple[str, Path],
        operator_in_process: kopf.testing.KopfRunner,
        tmp_path: Path,
    ) -> None:
        _build_and_check(cluster, namespace, git_server, signing_key, tmp_path, "buildah")


def test_the_attestation_is_where_the_registry_has_it(cluster: Cluster) -> None:
    """The plain-HTTP reader above fails on a missing tag (it can fail)."""
    registry = cluster.need_registry()
    with pytest.raises(urllib.error.HTTPError):
        _attestation(registry, "headwater/busybox", "sha256:" + "0" * 64)


@pytest.fixture
def referrers_registry(cluster: Cluster, tmp_path: Path) -> Iterator[str]:
    """go-containerregistry's registry with the OCI referrers API (built from the Go
    module proxy by hack/cluster/referrers_registry.py), where build pods reach it
    (the node address; that port is a declared insecure registry). Its address."""
    if not cluster.is_local:
        pytest.skip("needs a registry on the local cluster's node address")
    built = subprocess.run(
        [sys.executable, str(REPO / "hack" / "cluster" / "referrers_registry.py"), "build"],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    address = f"{LOCAL_NODE_IP}:{AUTH_REGISTRY_PORT}"
    with open(tmp_path / "referrers-registry.log", "wb") as log:
        server = subprocess.Popen(
            [json.loads(built.stdout)["registry"], "-address", address],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:

            def serving() -> bool:
                assert server.poll() is None, (tmp_path / "referrers-registry.log").read_text()
                try:
                    with registry_request(f"http://{address}/v2/"):
                        return True
                except OSError:
                    return False

            eventually("the referrers registry answers", serving, timeout=30)
            yield address
        finally:
            server.terminate()
            server.wait(timeout=30)


def test_provenance_is_an_oci_referrer_where_the_registry_serves_the_api(
    cluster: Cluster,
    namespace: str,
    signing_key: tuple[str, Path],
    referrers_registry: str,
    operator_in_process: kopf.testing.KopfRunner,
    tmp_path: Path,
) -> None:
    """On a registry with the referrers API the statement is pushed as a referrer of the
    image (no ``.att`` tag); read back by hand, the real cosign accepts its envelope as
    signed by the cluster key over that image's digest, and refuses another key."""
    cosign, keys = signing_key
    busybox = cluster.image("busybox")
    repository = f"{namespace}/app"
    output = f"{referrers_registry}/{repository}"
    bc = docker_bc(
        "app",
        {"type": "Dockerfile", "dockerfile": f"FROM {busybox}\nRUN echo referrer > /r\n"},
        None,
    )
    bc["spec"]["output"] = {"to": {"kind": "DockerImage", "name": f"{output}:v1"}}
    cluster.apply(bc, namespace)
    name = build_of_request(cluster, namespace, start_build(cluster, namespace, "app"))
    build = wait_for_phase(cluster, namespace, name)
    status = build["status"]
    assert status["phase"] == "Complete", status
    digest = str(status["output"]["to"]["imageDigest"])
    record = status["provenance"]
    assert record["scheme"] == "referrers", record
    assert record["signed"] is True
    assert "error" not in record

    base = f"http://{referrers_registry}/v2/{repository}"
    referrer = str(record["reference"]).removeprefix(f"{output}@")
    # The registry lists it among the image's referrers (go-containerregistry's registry
    # reports a config media type as artifactType; the manifest itself is read below).
    index = json.loads(_get(f"{base}/referrers/{digest}", accept=OCI_INDEX))
    assert referrer in [m["digest"] for m in index["manifests"]], index
    manifest = json.loads(_get(f"{base}/manifests/{referrer}"))
    assert manifest["artifactType"] == DSSE
    assert manifest["subject"]["digest"] == digest
    [layer] = manifest["layers"]
    assert layer["mediaType"] == DSSE
    envelope = _get(f"{base}/blobs/{layer['digest']}", accept="*/*")
    statement = json.loads(base64.b64decode(json.loads(envelope)["payload"]))
    assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
    assert (
        statement["predicate"]["runDetails"]["metadata"]["invocationId"]
        == (build["metadata"]["uid"])
    )
    # The tag scheme is not used beside it.
    with pytest.raises(urllib.error.HTTPError):
        _get(f"{base}/manifests/{digest.replace(':', '-')}.att")

    # The real cosign: the envelope is signed by the cluster key, over this image's digest.
    (tmp_path / "envelope.json").write_bytes(envelope)

    def verify(public_key: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                cosign, "verify-blob-attestation", "--key", str(public_key),
                "--signature", str(tmp_path / "envelope.json"),
                "--type", "slsaprovenance1", "--insecure-ignore-tlog=true",
                "--digest", digest.removeprefix("sha256:"), "--digestAlg", "sha256",
            ],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    accepted = verify(keys / "cosign.pub")
    assert accepted.returncode == 0, accepted.stderr
    other = tmp_path / "other"
    _generate_key_pair(cosign, other)
    refused = verify(other / "cosign.pub")
    assert refused.returncode != 0, refused.stdout
