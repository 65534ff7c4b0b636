"""Issue 16: what ``convert`` emits without an error, the real API server accepts.

The corpus of ``tests/data/openshift/`` (its Templates, processed, are
checked by ``test_cli_newapp_doctor.py``) and the repair cases of
``tests/data/convert-fixes/`` are converted; every object without an error
note is applied with ``kubectl apply --dry-run=server --validate=strict``
(nothing is stored). ``convert --server-dry-run`` asks the same API server
itself and reports per object. No operator is needed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .helpers import Cluster

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"
FIXES = DATA / "convert-fixes"
CORPUS = [
    DATA / "openshift",
    DATA / "openshift" / "builds",
    DATA / "openshift" / "deploymentconfigs",
    FIXES,
]
HEADWATER = [sys.executable, "-m", "headwater"]


def headwater(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*HEADWATER, *args], capture_output=True, text=True, timeout=180, input=stdin
    )


def flat(documents: Any) -> list[dict[str, Any]]:
    if isinstance(documents, dict) and documents.get("kind") == "List":
        return [i for d in documents["items"] for i in flat(d)]
    return [documents] if isinstance(documents, dict) else [i for d in documents for i in flat(d)]


def refused_objects(stderr: str) -> set[str]:
    """``Kind/name`` of every object with an error note (the report groups notes per object
    under a ``<file>: <Kind>/<name>`` heading)."""
    found = set()
    heading = ""
    for line in stderr.splitlines():
        if not line.startswith(" "):
            heading = line.rsplit(": ", 1)[-1]
        elif line.strip().startswith("error: ") and "/" in heading:
            found.add(heading)
    return found


def test_error_free_output_passes_strict_server_dry_run(cluster: Cluster, namespace: str) -> None:
    args = [a for d in CORPUS for a in ("-f", str(d))]
    converted = headwater("convert", *args, "-o", "json")
    assert converted.stdout, converted.stderr
    assert "Traceback" not in converted.stderr
    objects = flat(json.loads(converted.stdout))
    refused = refused_objects(converted.stderr)
    # The corpus's errors are only the objects convert leaves out (DeploymentConfig,
    # JenkinsPipeline): nothing emitted carries an error.
    emitted = {f"{o['kind']}/{o['metadata']['name']}" for o in objects}
    assert refused & emitted == set(), converted.stderr
    assert refused == {"BuildConfig/shop-pipeline"}, converted.stderr  # JenkinsPipeline: dropped
    for obj in objects:
        # The seed's objects live in shop-staging; here they go to the test's namespace.
        obj["metadata"]["namespace"] = namespace
    listed = {"apiVersion": "v1", "kind": "List", "items": objects}
    applied = cluster.kubectl(
        "apply",
        "--dry-run=server",
        "--validate=strict",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps(listed),
        check=False,
    )
    assert applied.returncode == 0, applied.stderr
    assert "Warning" not in applied.stderr, applied.stderr
    names = {line.split(" ")[0] for line in applied.stdout.splitlines()}
    for fixed in (
        "buildconfig.build.headwater.dev/shop-hooks",
        "imagestream.image.headwater.dev/shop-assets",
    ):
        assert fixed in names

    # Without convert's repairs the API server refuses them: the fixes are what made them pass.
    for raw_name in (
        "bitbucket-gitlab-body.yaml",
        "istag-without-tag.yaml",
        "misspelt-metadata.yaml",
    ):
        raw = (FIXES / raw_name).read_text()
        raw = raw.replace("build.openshift.io/v1", "build.headwater.dev/v1")
        raw = raw.replace("image.openshift.io/v1", "image.headwater.dev/v1")
        raw = raw.replace("  dockerStrategy: {}", "  type: Docker\n    dockerStrategy: {}")
        raw = raw.replace("  source:\n    git:", "  source:\n    type: Git\n    git:")
        refused_raw = cluster.kubectl(
            "apply",
            "--dry-run=server",
            "--validate=strict",
            "-n",
            namespace,
            "-f",
            "-",
            input=raw,
            check=False,
        )
        assert refused_raw.returncode != 0, (raw_name, refused_raw.stdout)


def test_server_dry_run_reports_per_object(cluster: Cluster, namespace: str) -> None:
    bad = {
        "apiVersion": "build.openshift.io/v1",
        "kind": "BuildConfig",
        "metadata": {"name": "no-git"},
        "spec": {"source": {"type": "Git"}, "strategy": {"type": "Docker", "dockerStrategy": {}}},
    }
    # A pass-through object with a misspelt field: strict field validation refuses it.
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "typo"},
        "spec": {
            "selectr": {},
            "selector": {"matchLabels": {"app": "typo"}},
            "template": {
                "metadata": {"labels": {"app": "typo"}},
                "spec": {"containers": [{"name": "a", "image": "busybox"}]},
            },
        },
    }
    stdin = {"apiVersion": "v1", "kind": "List", "items": [bad, deployment]}
    result = headwater(
        "convert",
        "-f",
        str(FIXES),
        "-f",
        "-",
        "--server-dry-run",
        "--kubeconfig",
        str(cluster.kubeconfig),
        "-n",
        namespace,
        stdin=json.dumps(stdin),
    )
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if "server dry run" in line]
    assert len(lines) == 5, result.stderr
    for name in ("BuildConfig/shop-hooks", "BuildConfig/shop-s2i", "ImageStream/shop-assets"):
        assert f"info: server dry run: {name}: accepted" in result.stderr
    [refusal] = [line for line in lines if "BuildConfig/no-git" in line]
    assert refusal.startswith("error: ")
    # The API server names the same rule convert found offline.
    assert "git is required when type is Git" in refusal
    assert "BuildConfig/no-git\n  error: spec.source.git: git is required" in result.stderr
    [typo] = [line for line in lines if "Deployment/typo" in line]
    assert typo.startswith("error: ")
    assert "selectr" in typo
    assert result.returncode == 1
    # Nothing was stored.
    for kind in ("buildconfigs.build.headwater.dev", "imagestreams.image.headwater.dev", "deploy"):
        assert cluster.get_json(kind, "-n", namespace)["items"] == []
