"""The admission corpus (``tests/crds/``) against a real API server.

Valid files are created; each invalid file is rejected at admission with an
error naming the field in its ``# expect:`` header. Unknown fields are caught
by strict field validation (``--validate=strict``), everything else by the
CRDs' schemas and CEL rules.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .helpers import Cluster

pytestmark = pytest.mark.e2e

CORPUS = Path(__file__).resolve().parents[1] / "crds"
VALID = sorted((CORPUS / "valid").glob("*.yaml"))
INVALID = sorted((CORPUS / "invalid").glob("*.yaml"))


def expected(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), path.name
    return first.removeprefix("# expect: ").strip()


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_valid_manifest_is_accepted(cluster: Cluster, namespace: str, path: Path) -> None:
    result = cluster.kubectl(
        "apply", "--validate=strict", "-n", namespace, "-f", str(path), check=False
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_manifest_is_rejected(cluster: Cluster, namespace: str, path: Path) -> None:
    result = cluster.kubectl(
        "apply",
        "--dry-run=server",
        "--validate=strict",
        "-n",
        namespace,
        "-f",
        str(path),
        check=False,
    )
    assert result.returncode != 0, f"{path.name} was accepted:\n{result.stdout}"
    assert expected(path) in result.stderr, result.stderr


def test_build_spec_is_immutable(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", str(CORPUS / "valid" / "build-web-1.yaml"))
    patch = json.dumps({"spec": {"serviceAccount": "someone-else"}})
    result = cluster.kubectl(
        "patch",
        "build.build.headwater.dev",
        "web-1",
        "-n",
        namespace,
        "--type",
        "merge",
        "-p",
        patch,
        check=False,
    )
    assert result.returncode != 0, result.stdout
    assert "spec" in result.stderr
    assert "spec is immutable once a Build is created" in result.stderr
    # Metadata and status stay writable.
    cluster.kubectl("label", "build.build.headwater.dev", "web-1", "-n", namespace, "checked=yes")
    status = json.dumps({"status": {"phase": "Cancelled", "cancelled": True}})
    cluster.kubectl(
        "patch",
        "build.build.headwater.dev",
        "web-1",
        "-n",
        namespace,
        "--subresource",
        "status",
        "--type",
        "merge",
        "-p",
        status,
    )


def test_defaults_are_applied(cluster: Cluster, namespace: str) -> None:
    for name in ("imagestream-web.yaml", "buildconfig-docker.yaml"):
        cluster.kubectl("apply", "-n", namespace, "-f", str(CORPUS / "valid" / name))
    stream = cluster.get_json("imagestream.image.headwater.dev", "web", "-n", namespace)
    tag = stream["spec"]["tags"][0]
    assert tag["importPolicy"]["importMode"] == "Legacy"
    assert tag["referencePolicy"]["type"] == "Source"
    bc = cluster.get_json("buildconfig.build.headwater.dev", "web-docker", "-n", namespace)
    spec = bc["spec"]
    assert spec["runPolicy"] == "Serial"
    assert spec["successfulBuildsHistoryLimit"] == 5
    assert spec["failedBuildsHistoryLimit"] == 5


def _header(cluster: Cluster, resource: str, namespace: str) -> str:
    out = cluster.kubectl("get", resource, "-n", namespace).stdout
    return out.splitlines()[0] if out else ""


def test_printer_columns_and_category(cluster: Cluster, namespace: str) -> None:
    for name in ("imagestream-web.yaml", "buildconfig-web.yaml", "build-web-1.yaml"):
        cluster.kubectl("apply", "-n", namespace, "-f", str(CORPUS / "valid" / name))
    for resource, columns in {
        "is": ["NAME", "IMAGE REPOSITORY", "TAGS", "UPDATED"],
        "bc": ["NAME", "TYPE", "FROM", "LATEST"],
        "builds.build.headwater.dev": ["NAME", "TYPE", "FROM", "STATUS", "STARTED", "DURATION"],
    }.items():
        header = _header(cluster, resource, namespace)
        for column in columns:
            assert column in header, (resource, header)
    listed = cluster.kubectl("get", "headwater", "-n", namespace, "-o", "name").stdout
    assert "imagestream.image.headwater.dev/web" in listed
    assert "buildconfig.build.headwater.dev/web" in listed
    assert "build.build.headwater.dev/web-1" in listed
