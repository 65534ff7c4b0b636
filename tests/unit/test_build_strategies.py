"""Build strategy gating and cross-namespace image access (pure parts)."""

from __future__ import annotations

import json
from typing import Any

from headwater import access
from headwater.builds.model import LABEL_BUILD, controlled_by, job_pod
from headwater.builds.strategies import (
    REQUESTER_ANNOTATION,
    ImageAccess,
    access_refusal,
    cross_namespace_access,
    needs_strategy_check,
    new_start_requests,
    parse_requester,
    recorded_requester,
    requested_builds,
    requester_value,
    strategy_grant_hint,
    strategy_subresource,
)


def bc(spec: dict[str, Any], annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "build.headwater.dev/v1",
        "kind": "BuildConfig",
        "metadata": {"name": "app", "namespace": "a", "annotations": annotations or {}},
        "spec": spec,
    }


DOCKER = {"strategy": {"type": "Docker", "dockerStrategy": {}}}
CUSTOM = {"strategy": {"type": "Custom", "customStrategy": {"from": {"name": "x"}}}}


def test_each_strategy_is_its_own_subresource() -> None:
    assert strategy_subresource(DOCKER) == "docker"
    assert strategy_subresource({"strategy": {"type": "Source"}}) == "source"
    assert strategy_subresource(CUSTOM) == "custom"
    assert strategy_subresource({}) == "docker"  # the CRD's default strategy
    assert "headwater-build-strategy-custom" in strategy_grant_hint("custom")


def test_creates_spec_changes_and_new_start_requests_are_checked() -> None:
    old = bc(DOCKER)
    assert needs_strategy_check("CREATE", None, old)
    assert needs_strategy_check("UPDATE", old, bc(CUSTOM))
    started = bc(DOCKER, {"start.build.headwater.dev/r1": ""})
    assert needs_strategy_check("UPDATE", old, started)
    # The same request again (any other metadata change) is not a new request.
    relabelled = bc(DOCKER, {"start.build.headwater.dev/r1": "", "x": "y"})
    assert not needs_strategy_check("UPDATE", started, relabelled)
    # A changed request value is a new request.
    changed = bc(DOCKER, {"start.build.headwater.dev/r1": '{"noCache":true}'})
    assert needs_strategy_check("UPDATE", started, changed)
    # The operator removing handled requests, the garbage collector dropping owner
    # references: no strategy is used.
    assert not needs_strategy_check("UPDATE", started, old)
    assert new_start_requests({}, {"a": "1", "start.build.headwater.dev/r2": ""}) == [
        "start.build.headwater.dev/r2"
    ]


def test_a_request_re_running_a_build_names_that_build() -> None:
    annotations = {
        "start.build.headwater.dev/r1": '{"fromBuild":"app-3"}',
        "start.build.headwater.dev/r2": "",
        "start.build.headwater.dev/bad": "{",
    }
    assert requested_builds(annotations, sorted(annotations)) == ["app-3"]


def test_the_requester_is_the_spec_writer_and_cannot_be_forged() -> None:
    alice = requester_value("alice", ["system:authenticated", "team-a"])
    assert parse_requester(alice) == ("alice", ("system:authenticated", "team-a"))
    created = bc(DOCKER, {REQUESTER_ANNOTATION: requester_value("mallory", [])})
    # On create, whatever the client sent: the writer.
    assert recorded_requester("CREATE", None, created, "alice", ["team-a"]) == requester_value(
        "alice", ["team-a"]
    )
    stored = bc(DOCKER, {REQUESTER_ANNOTATION: alice})
    forged = bc(DOCKER, {REQUESTER_ANNOTATION: requester_value("admin", ["system:masters"])})
    # Spec unchanged: what was recorded stays, whoever writes and whatever they send.
    assert recorded_requester("UPDATE", stored, forged, "bob", []) == alice
    # A BuildConfig recorded by nobody stays recorded by nobody.
    assert recorded_requester("UPDATE", bc(DOCKER), forged, "bob", []) is None
    # A spec change records the one who made it.
    changed = bc(CUSTOM, {REQUESTER_ANNOTATION: alice})
    assert recorded_requester("UPDATE", stored, changed, "bob", ["g"]) == requester_value(
        "bob", ["g"]
    )
    for bad in (None, "", "{", "[]", '{"user":""}', '{"user":"a","groups":[1]}'):
        assert parse_requester(bad) is None


def test_cross_namespace_reads_and_writes_of_a_build() -> None:
    spec = {
        "output": {"to": {"kind": "ImageStreamTag", "name": "web:latest", "namespace": "b"}},
        "strategy": {
            "type": "Custom",
            "customStrategy": {
                "from": {"kind": "ImageStreamTag", "name": "builder:1", "namespace": "c"}
            },
        },
        "source": {
            "images": [
                {"from": {"kind": "ImageStreamTag", "name": "own:1"}},
                {"from": {"kind": "ImageStreamImage", "name": "lib@sha256:0", "namespace": "d"}},
                {"from": {"kind": "DockerImage", "name": "registry/e/x:1", "namespace": "e"}},
            ]
        },
        "triggeredBy": [
            {
                "imageChangeBuild": {
                    "fromRef": {"kind": "ImageStreamTag", "name": "t:1", "namespace": "f"}
                }
            }
        ],
    }
    assert cross_namespace_access("a", spec) == [
        ImageAccess("b", "update", "output.to"),
        ImageAccess("c", "get", "strategy from"),
        ImageAccess("d", "get", "source.images[1].from"),
        ImageAccess("f", "get", "ImageChange trigger"),
    ]
    # Within the namespace, or DockerImage references: nothing to grant.
    own = {
        "output": {"to": {"kind": "ImageStreamTag", "name": "web:latest", "namespace": "a"}},
        "strategy": {"type": "Docker", "dockerStrategy": {"from": {"name": "x", "namespace": "b"}}},
    }
    assert cross_namespace_access("a", own) == []


def test_a_refusal_names_the_namespace_verb_resource_and_grant() -> None:
    message = access_refusal("a", "builder", ImageAccess("b", "update", "output.to"))
    assert "service account a/builder may not update imagestreams/layers in namespace b" in message
    assert "headwater-image-pusher" in message
    assert "system:serviceaccount:a:builder" in message
    assert "headwater-image-puller" in access_refusal("a", "x", ImageAccess("b", "get", "from"))


def test_a_service_account_is_reviewed_with_its_groups() -> None:
    review = access.review(
        access.Requester.service_account("a", "builder"), access.image_layers("b", "update")
    )
    spec = review.spec
    assert spec.user == "system:serviceaccount:a:builder"
    assert set(spec.groups or []) >= {"system:serviceaccounts", "system:serviceaccounts:a"}
    attrs = spec.resourceAttributes
    assert attrs is not None
    assert (attrs.namespace, attrs.verb, attrs.group, attrs.resource, attrs.subresource) == (
        "b",
        "update",
        "image.headwater.dev",
        "imagestreams",
        "layers",
    )
    user = access.Requester.of_userinfo(
        {"username": "alice", "uid": "1", "groups": ["g"], "extra": {"scopes": ["x"]}}
    )
    strategy = access.review(user, access.build_strategy("a", "custom")).spec
    assert (strategy.user, strategy.groups, strategy.extra) == ("alice", ["g"], {"scopes": ["x"]})
    assert strategy.resourceAttributes is not None
    assert strategy.resourceAttributes.subresource == "custom"


def _pod(name: str, owner_uid: str | None, created: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": name,
        "labels": {LABEL_BUILD: "app-1"},
        "creationTimestamp": created,
    }
    if owner_uid:
        metadata["ownerReferences"] = [
            {"kind": "Job", "name": "app-1-build", "uid": owner_uid, "controller": True}
        ]
    return {"metadata": metadata, "status": {"phase": "Succeeded"}}


def test_only_the_pod_its_job_controls_reports_for_a_build() -> None:
    job = {"metadata": {"name": "app-1-build", "uid": "job-uid"}}
    real = _pod("app-1-build-abcde", "job-uid", "2026-01-01T00:00:00Z")
    # Made later by someone who may create pods: the labels, but no owner, or another.
    impostor = _pod("fake", None, "2026-01-01T00:01:00Z")
    other = _pod("other", "another-job", "2026-01-01T00:02:00Z")
    assert job_pod([real, impostor, other], job) == real
    assert job_pod([impostor, other], job) is None
    not_controller = json.loads(json.dumps(real))
    not_controller["metadata"]["ownerReferences"][0]["controller"] = False
    assert job_pod([not_controller], job) is None
    assert controlled_by(real, "Job", "job-uid")
    assert not controlled_by(real, "Job", None)
