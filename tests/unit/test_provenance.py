"""The SLSA v1 provenance Statement and the bounded image reports it is built from."""

from __future__ import annotations

import json
from typing import Any

from headwater.builds import provenance
from headwater.builds.observe import observe
from headwater.builds.provenance import (
    MAX_IMAGES,
    MAX_REFERENCE,
    ImageDependency,
    Provenance,
    reported_images,
    statement,
)

COMMIT = "a" * 40
D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
OUT = "sha256:" + "f" * 64

BUILD: dict[str, Any] = {
    "metadata": {"namespace": "team", "name": "app-3", "uid": "uid-123"},
    "spec": {
        "source": {
            "type": "Git",
            "git": {"uri": "https://bob:s3cret@git.example/app.git", "ref": "main"},
            "sourceSecret": {"name": "git-creds"},
        },
        "strategy": {
            "type": "Docker",
            "dockerStrategy": {"buildArgs": [{"name": "A", "value": "1"}]},
        },
        "output": {"to": {"kind": "ImageStreamTag", "name": "app:latest"}},
    },
    "status": {
        "config": {"name": "app"},
        "revision": {"type": "Git", "git": {"commit": COMMIT}},
    },
}

FACTS = Provenance(
    image="10.244.0.1:5000/team/app",
    digest=OUT,
    executor="kaniko",
    headwater_version="1.2.3",
    cluster_id="cluster-uid",
    started="2026-12-05T10:00:00Z",
    finished="2026-12-05T10:01:00Z",
    images=(
        ImageDependency("golang:1.22", "docker.io/library/golang", D1, provenance.REGISTRY,
                        {provenance.CHECK_IN_REGISTRY: True}),
        ImageDependency("alpine@" + D2, "docker.io/library/alpine", D2, provenance.PINNED,
                        {provenance.CHECK_IN_REGISTRY: True, provenance.CHECK_BASE_LAYERS: True}),
    ),
    unresolved=("${BASE}",),
    capped=True,
    internal={"executorImage": "kaniko:1"},
)  # fmt: skip


def test_statement_shape_and_every_field() -> None:
    doc = statement(BUILD, FACTS)
    assert doc["_type"] == "https://in-toto.io/Statement/v1"
    assert doc["predicateType"] == "https://slsa.dev/provenance/v1"
    assert doc["subject"] == [{"name": "10.244.0.1:5000/team/app", "digest": {"sha256": "f" * 64}}]
    definition = doc["predicate"]["buildDefinition"]
    assert definition["buildType"] == provenance.BUILD_TYPE
    assert definition["buildType"].endswith("/v1")
    external = definition["externalParameters"]
    assert external["build"] == {"namespace": "team", "name": "app-3", "buildConfig": "app"}
    assert external["spec"]["strategy"] == BUILD["spec"]["strategy"]
    assert external["spec"]["source"]["sourceSecret"] == {"name": "git-creds"}
    internal = definition["internalParameters"]
    assert internal["executor"] == "kaniko"
    assert internal["executorImage"] == "kaniko:1"
    assert internal["dependencies"] == {
        "limit": MAX_IMAGES,
        "capped": True,
        "unresolved": ["${BASE}"],
    }
    git, golang, alpine = definition["resolvedDependencies"]
    assert git == {"uri": "git+https://git.example/app.git@main", "digest": {"gitCommit": COMMIT}}
    assert golang["digest"] == {"sha256": "1" * 64}
    assert golang["uri"] == f"oci://docker.io/library/golang@{D1}"
    assert golang["annotations"]["headwater.dev/digestSource"] == "registry"
    assert golang["annotations"]["headwater.dev/inRegistry"] is True
    assert alpine["annotations"]["headwater.dev/baseLayers"] is True
    run = doc["predicate"]["runDetails"]
    assert run["builder"] == {
        "id": "https://headwater.dev/builder/1.2.3/clusters/cluster-uid",
        "version": {"headwater": "1.2.3"},
    }
    assert run["metadata"] == {
        "invocationId": "uid-123",
        "startedOn": "2026-12-05T10:00:00Z",
        "finishedOn": "2026-12-05T10:01:00Z",
    }


def test_statement_holds_no_credentials() -> None:
    text = json.dumps(statement(BUILD, FACTS))
    assert "s3cret" not in text
    assert "bob" not in text
    # and the Build given is not changed
    assert BUILD["spec"]["source"]["git"]["uri"].startswith("https://bob:s3cret@")


def test_no_git_dependency_without_a_commit() -> None:
    build = {**BUILD, "status": {}}
    deps = statement(build, FACTS)["predicate"]["buildDefinition"]["resolvedDependencies"]
    assert [d.get("digest", {}).get("gitCommit") for d in deps] == [None, None]


def test_git_without_ref_and_scp_urls() -> None:
    spec = {"source": {"git": {"uri": "git@host:org/repo.git"}}}
    revision = {"git": {"commit": COMMIT}}
    assert provenance.git_dependency(spec, revision)["uri"] == "git+git@host:org/repo.git"
    assert provenance.git_dependency(spec, {"git": {"commit": "not-a-sha"}}) == {}


def test_reports_are_bounded() -> None:
    many = [f"r{i}.example/img:{i}" for i in range(MAX_IMAGES + 5)]
    got = reported_images({"from": many, "lastFrom": many[-1]}, None)
    assert got.references == tuple(many[:MAX_IMAGES])
    assert got.capped
    fine = reported_images({"from": many[:2]}, None)
    assert fine.references == tuple(many[:2])
    assert not fine.capped


def test_oversized_forged_or_malformed_entries_are_dropped_and_capped() -> None:
    long_ref = "x" * (MAX_REFERENCE + 1)
    got = reported_images(
        {"from": [long_ref, 7, "", "alpine"], "lastFrom": long_ref},
        {"pulled": ["alpine@sha256:short", "alpine@" + D1, {"a": 1}], "pulledCapped": False},
    )
    assert got.references == ("alpine",)
    assert got.pulled == (("alpine", D1),)
    assert got.capped
    assert got.last == ""


def test_report_not_a_list_reads_as_nothing() -> None:
    got = reported_images({"from": "alpine"}, {"pulled": {"alpine": D1}})
    assert got == provenance.Reported()


def test_the_executor_saying_it_capped_is_kept() -> None:
    assert reported_images({"from": [], "fromCapped": True}, None).capped
    assert reported_images(None, {"pulled": [], "pulledCapped": True}).capped


def test_image_reference_skips_scratch_and_build_args() -> None:
    assert provenance.image_reference("scratch") is None
    assert provenance.image_reference("$BASE") is None
    ref = provenance.image_reference("alpine:3")
    assert ref is not None
    assert ref.name == "docker.io/library/alpine"


JOB: dict[str, Any] = {"status": {}, "spec": {}}


def _pod(fetch_message: str, build_message: str) -> dict[str, Any]:
    done = {
        "exitCode": 0,
        "startedAt": "2026-12-05T10:00:00Z",
        "finishedAt": "2026-12-05T10:00:09Z",
    }
    return {
        "status": {
            "initContainerStatuses": [
                {
                    "name": "fetch-source",
                    "state": {"terminated": {**done, "message": fetch_message}},
                }
            ],
            "containerStatuses": [
                {"name": "build", "state": {"terminated": {**done, "message": build_message}}}
            ],
        }
    }


def test_observe_carries_the_reports_to_a_complete_build() -> None:
    fetch = json.dumps({"commit": COMMIT, "from": ["golang:1.22", "alpine"], "lastFrom": "alpine"})
    build = json.dumps({"digest": OUT, "pulled": ["docker.io/library/alpine:latest@" + D2]})
    seen = observe(JOB, _pod(fetch, build))
    assert seen.phase == "Complete"
    assert seen.reported.references == ("golang:1.22", "alpine")
    assert seen.reported.last == "alpine"
    assert seen.reported.pulled == (("docker.io/library/alpine:latest", D2),)


def test_observe_a_truncated_report_gives_no_images() -> None:
    fetch = json.dumps({"commit": COMMIT, "from": ["a" * 100] * 60})[:4096]
    seen = observe(JOB, _pod(fetch, OUT))
    assert seen.phase == "Complete"
    assert seen.reported == provenance.Reported()
