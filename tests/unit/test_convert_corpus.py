"""``headwater convert`` over real OpenShift manifests (sources: tests/data/openshift/README).

The property: convert's output, converted again, is the same, and the second
pass changes nothing (no info notes) and finds nothing to refuse (no error
notes); warnings about what is not honoured are facts of the content and stay.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from headwater.cli.convert import (
    REPO_CRD_DIR,
    Note,
    Options,
    convert_object,
    convert_text,
    dump_yaml,
    load_schemas,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "openshift"
CORPUS = sorted(
    p for p in DATA.rglob("*") if p.suffix in (".yaml", ".json") and "broken" not in p.parts
)
SCHEMAS = load_schemas(REPO_CRD_DIR)


def assert_idempotent(once_docs: list[Any], once_notes: list[Note], options: Options) -> None:
    again = convert_text(dump_yaml(once_docs), "again", SCHEMAS, options)
    assert again.documents == once_docs
    assert [n for n in again.notes if n.severity != "warning"] == []
    # A DeploymentConfig's warnings come back under the Deployment it became.
    first = {
        (n.obj.replace("DeploymentConfig/", "Deployment/"), n.path, n.message) for n in once_notes
    }
    assert {(n.obj, n.path, n.message) for n in again.notes} <= first


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: str(p.relative_to(DATA)))
def test_converting_the_output_again_changes_nothing(path: Path) -> None:
    once = convert_text(path.read_text(), path.name, SCHEMAS)
    assert once.documents
    assert_idempotent(once.documents, once.notes, Options())
    assert all(t.outcome in ("converted", "unchanged", "dropped") for t in once.tallies)


@pytest.mark.parametrize("path", sorted((DATA / "templates").iterdir()), ids=lambda p: p.name)
def test_processed_templates_convert_idempotently(path: Path) -> None:
    options = Options(params={"NAME": "web"}, rng=random.Random(1))  # noqa: S311 (a seed, for the test)
    once = convert_text(path.read_text(), path.name, SCHEMAS, options)
    assert {d["kind"] for d in once.documents} >= {"ImageStream", "BuildConfig", "Deployment"}
    assert "${" not in dump_yaml(once.documents)
    assert_idempotent(once.documents, once.notes, Options())


def notes_of(path: str) -> dict[str, tuple[str, str]]:
    result = convert_text((DATA / path).read_text(), path, SCHEMAS)
    return {f"{n.obj} {n.path}".strip(): (n.severity, n.message) for n in result.notes}


# --- the notes of issue 16 ---------------------------------------------------------------------


def test_internal_registry_in_a_strategy_from_and_in_a_dockerfile() -> None:
    found = notes_of("builds/constructed-cross-namespace.yaml")
    severity, message = found["BuildConfig/api spec.strategy.sourceStrategy.from"]
    assert severity == "warning"
    assert message.startswith(
        "image-registry.openshift-image-registry.svc:5000/openshift/python:3.11-ubi9 is"
        " OpenShift's internal registry"
    )
    severity, message = found["BuildConfig/api-tests spec.source.dockerfile"]
    assert "FROM docker-registry.default.svc:5000/shop-ci/api:latest" in message
    real = notes_of("builds/build-postcommit-docker.yaml")
    assert (
        "FROM image-registry.openshift-image-registry.svc:5000/openshift/tools:latest"
        in (real["BuildConfig/mydockertest spec.source.dockerfile"][1])
    )


def test_other_namespaces_need_the_grant_named() -> None:
    found = notes_of("builds/constructed-cross-namespace.yaml")
    stream = found["ImageStream/api spec.tags[0].from.namespace"][1]
    assert (
        "`kubectl -n shop-staging create rolebinding <name> --clusterrole=headwater-view"
        " --group=system:serviceaccounts:shop-prod`" in stream
    )
    push = found["BuildConfig/api spec.output.to"][1]
    assert "--clusterrole=headwater-image-pusher --serviceaccount=shop-ci:pipeline" in push
    pull = found["BuildConfig/api-tests spec.strategy.dockerStrategy.from"][1]
    assert "--clusterrole=headwater-image-puller --serviceaccount=shop-ci:default" in pull
    workload = found["Deployment/api metadata.annotations"][1]
    assert "follows shop-staging/api:staging" in workload
    assert "--group=system:serviceaccounts:shop-prod" in workload


def test_docker_image_repository_as_the_only_source() -> None:
    result = convert_text(
        (DATA / "templates" / "application-template-stibuild.json").read_text(), "t", SCHEMAS
    )
    found = {(n.obj, n.path): n.message for n in result.notes}
    message = found[("ImageStream/ruby-27-centos7", "spec.dockerImageRepository")]
    assert "the stream's only source" in message
    assert "nothing is imported" in message
    assert (
        "headwater import-image ruby-27-centos7:latest --from=centos/ruby-27-centos7:latest"
        in message
    )
    # With tags that have a `from`, the field is merely ignored.
    other = notes_of("unsupported-app.yaml")["ImageStream/shop spec.dockerImageRepository"]
    assert "accepted and ignored" in other[1]


def test_post_commit_with_only_args() -> None:
    found = notes_of("builds/statusfail-postcommithook.yaml")
    severity, message = found["BuildConfig/statusfail-postcommithook spec.postCommit.args"]
    assert severity == "warning"
    assert "not as arguments to the image's entrypoint" in message
    # command + args is fine.
    assert not any("postCommit" in k for k in notes_of("builds/build-postcommit-docker.yaml"))


def test_generic_trigger_with_both_secrets() -> None:
    found = notes_of("builds/constructed-cross-namespace.yaml")
    severity, message = found["BuildConfig/api spec.triggers[0].generic"]
    assert severity == "warning"
    assert message.startswith("both secret and secretReference")
    assert "BuildConfig/api spec.triggers[0].generic.secret" not in found


# --- a property over generated manifests --------------------------------------------------------

TAG_SOURCES = st.one_of(
    st.builds(lambda n: {"kind": "DockerImage", "name": f"quay.io/x/{n}:1"}, st.sampled_from("ab")),
    st.builds(
        lambda t: {"kind": "ImageStreamTag", "name": t}, st.sampled_from(["a", "s:b", "1.0"])
    ),
    st.builds(
        lambda ns: {"kind": "ImageStreamTag", "name": "s:1", "namespace": ns},
        st.sampled_from(["other", "openshift"]),
    ),
)
TAGS = st.lists(
    st.fixed_dictionaries(
        {"name": st.sampled_from(["latest", "1", "prod"]), "from": TAG_SOURCES},
        optional={"referencePolicy": st.just({"type": "Local"})},
    ),
    max_size=4,
)
TRIGGERS = st.lists(
    st.sampled_from(
        [
            {"type": "configchange"},
            {"type": "ImageChange"},
            {"type": "github", "github": {"secret": "s"}},
            {"type": "Generic", "generic": {"secret": "s", "secretReference": {"name": "x"}}},
        ]
    ),
    max_size=3,
)
STRATEGIES = st.sampled_from(
    [
        {"dockerStrategy": {}},
        {"type": "Source", "sourceStrategy": {"from": {"kind": "ImageStreamTag", "name": "py:3"}}},
        {
            "type": "Docker",
            "dockerStrategy": {
                "from": {
                    "kind": "DockerImage",
                    "name": "image-registry.openshift-image-registry.svc:5000/o/b:1",
                }
            },
        },
    ]
)


@settings(max_examples=60, deadline=None)
@given(
    tags=TAGS,
    triggers=TRIGGERS,
    strategy=STRATEGIES,
    legacy=st.booleans(),
    dockerfile=st.sampled_from([None, "FROM docker-registry.default.svc:5000/p/b:1\n"]),
    post_commit=st.sampled_from([None, {"args": ["test"]}, {"script": "make test"}]),
)
def test_generated_manifests_convert_idempotently(
    tags: list[Any],
    triggers: list[Any],
    strategy: dict[str, Any],
    legacy: bool,
    dockerfile: str | None,
    post_commit: dict[str, Any] | None,
) -> None:
    stream = {
        "apiVersion": "v1" if legacy else "image.openshift.io/v1",
        "kind": "ImageStream",
        "metadata": {"name": "s", "namespace": "ns", "uid": "u"},
        "spec": {"tags": tags},
    }
    spec: dict[str, Any] = {"strategy": strategy, "triggers": triggers}
    if dockerfile:
        spec["source"] = {"dockerfile": dockerfile}
    if post_commit:
        spec["postCommit"] = post_commit
    bc = {
        "apiVersion": "v1" if legacy else "build.openshift.io/v1",
        "kind": "BuildConfig",
        "metadata": {"name": "b", "namespace": "ns"},
        "spec": spec,
        "status": {"lastVersion": 1},
    }
    docs: list[Any] = []
    notes: list[Note] = []
    for obj in (stream, bc):
        result, obj_notes = convert_object(yaml.safe_load(yaml.safe_dump(obj)), SCHEMAS, "f")
        docs.extend(result)
        notes.extend(obj_notes)
    assert_idempotent(docs, notes, Options())
