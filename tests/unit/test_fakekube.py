"""The in-memory API server of the unit tests (tests/fakekube.py) behaves as the tests assume."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest
from lightkube import codecs
from lightkube.core.exceptions import ApiError
from lightkube.models.authorization_v1 import ResourceAttributes, SubjectAccessReviewSpec
from lightkube.models.core_v1 import LocalObjectReference, ObjectReference
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.authorization_v1 import SubjectAccessReview
from lightkube.resources.core_v1 import Event, Namespace, ServiceAccount
from lightkube.types import PatchType

from headwater.kube import plain_dict
from headwater.resources import Build, ImageStream
from tests.fakekube import FakeKube, WatchEvent, merge_patch


def stream(name: str = "web", namespace: str = "shop", **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "image.headwater.dev/v1",
        "kind": "ImageStream",
        "metadata": {"name": name, "namespace": namespace, **extra},
        "spec": {"tags": []},
    }


def code(exc: pytest.ExceptionInfo[ApiError]) -> int:
    return int(exc.value.status.code or 0)


async def test_get_answers_a_lightkube_object_or_404() -> None:
    kube = FakeKube()
    kube.add(stream(labels={"app": "web"}))
    obj = await kube.get(ImageStream, "web", namespace="shop")
    assert obj.metadata.name == "web"
    assert obj.metadata.labels == {"app": "web"}
    assert plain_dict(obj)["spec"] == {"tags": []}
    # A copy: changing it changes nothing stored.
    plain_dict(obj)["spec"]["tags"].append("x")
    assert kube.body(ImageStream, "web", "shop")["spec"] == {"tags": []}
    with pytest.raises(ApiError) as exc:
        await kube.get(ImageStream, "web", namespace="other")
    assert code(exc) == 404
    account = {"apiVersion": "v1", "kind": "ServiceAccount"}
    kube.add({**account, "metadata": {"name": "default", "namespace": "shop"},
              "imagePullSecrets": [{"name": "pull"}]})  # fmt: skip
    sa = await kube.get(ServiceAccount, "default", namespace="shop")
    assert sa.imagePullSecrets == [LocalObjectReference(name="pull")]
    kube.add({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})
    ns = await kube.get(Namespace, "shop")
    assert ns.metadata is not None
    assert ns.metadata.name == "shop"


async def test_list_by_namespace_labels_and_fields() -> None:
    kube = FakeKube()
    kube.add(stream("a", labels={"app": "web", "tier": "front"}))
    kube.add(stream("b", labels={"app": "api"}))
    kube.add(stream("c", namespace="other", labels={"app": "web"}))

    async def names(**kw: Any) -> list[str]:
        return sorted([o.metadata.name async for o in kube.list(ImageStream, **kw)])

    assert await names(namespace="shop") == ["a", "b"]
    assert await names(namespace="*") == ["a", "b", "c"]
    assert await names(namespace="*", labels={"app": "web"}) == ["a", "c"]
    assert await names(namespace="shop", labels={"tier": None}) == ["a"]
    assert await names(namespace="shop", labels={"app": ["api", "db"]}) == ["b"]
    assert await names(namespace="shop", fields={"metadata.name": "b"}) == ["b"]
    assert kube.count("list", "imagestreams") == 6


async def test_versions_conflicts_and_generations() -> None:
    kube = FakeKube()
    first = kube.add(stream())
    version = first["metadata"]["resourceVersion"]
    # A metadata-only change: a new resourceVersion, the same generation.
    labelled = await kube.patch(
        ImageStream, "web", {"metadata": {"labels": {"a": "b"}}}, namespace="shop",
        patch_type=PatchType.MERGE,
    )  # fmt: skip
    assert labelled.metadata.resourceVersion != version
    assert labelled.metadata.generation == 1
    # A stale precondition is a 409 and writes nothing.
    with pytest.raises(ApiError) as exc:
        await kube.patch(
            ImageStream, "web", {"metadata": {"resourceVersion": version}, "spec": {"x": 1}},
            namespace="shop", patch_type=PatchType.MERGE,
        )  # fmt: skip
    assert code(exc) == 409
    # The current version passes; a spec change bumps the generation; None removes a key.
    current = labelled.metadata.resourceVersion
    changed = await kube.patch(
        ImageStream, "web",
        {"metadata": {"resourceVersion": current, "labels": {"a": None}}, "spec": {"x": 1}},
        namespace="shop", patch_type=PatchType.MERGE,
    )  # fmt: skip
    assert changed.metadata.generation == 2
    assert not changed.metadata.labels
    assert plain_dict(changed)["spec"] == {"tags": [], "x": 1}
    # replace carries the version it read, as lightkube's does.
    body = plain_dict(changed)
    body["spec"] = {"tags": ["t"]}
    replaced = await kube.replace(ImageStream.from_dict(body))
    assert replaced.metadata.generation == 3
    with pytest.raises(ApiError) as exc:
        await kube.replace(ImageStream.from_dict(body))  # the same, now stale, version
    assert code(exc) == 409


async def test_the_status_subresource_writes_only_status() -> None:
    kube = FakeKube()
    kube.add(stream())
    out = await kube.patch(
        ImageStream.Status, "web",
        {"status": {"tags": [{"tag": "latest"}]}, "spec": {"ignored": True},
         "metadata": {"labels": {"ignored": "yes"}}},
        namespace="shop", patch_type=PatchType.MERGE,
    )  # fmt: skip
    body = plain_dict(out)
    assert body["status"] == {"tags": [{"tag": "latest"}]}
    assert body["spec"] == {"tags": []}
    assert body["metadata"].get("labels") is None
    assert body["metadata"]["generation"] == 1
    # And the main resource leaves status alone.
    main = await kube.patch(
        ImageStream, "web", {"status": {"tags": []}}, namespace="shop", patch_type=PatchType.MERGE
    )
    assert plain_dict(main)["status"] == {"tags": [{"tag": "latest"}]}
    assert kube.count("patch", "imagestreams", subresource="status") == 1
    assert kube.count("patch", "imagestreams", subresource="") == 1


async def test_create_names_and_already_exists() -> None:
    kube = FakeKube()
    build = {"apiVersion": "build.headwater.dev/v1", "kind": "Build",
             "metadata": {"name": "web-1", "namespace": "shop"}, "spec": {},
             "status": {"phase": "Complete"}}  # fmt: skip
    created = await kube.create(codecs.from_dict(build))
    assert created.metadata.uid
    assert created.metadata.resourceVersion
    assert "status" not in plain_dict(created)  # a CRD with a status subresource drops it
    with pytest.raises(ApiError) as exc:
        await kube.create(codecs.from_dict(build))
    assert code(exc) == 409
    assert exc.value.status.reason == "AlreadyExists"
    event = Event(
        metadata=ObjectMeta(generateName="web.", namespace="shop"),
        involvedObject=ObjectReference(kind="Build", name="web-1", namespace="shop"),
        reason="Hi",
    )
    posted = await kube.create(event)
    assert posted.metadata.name.startswith("web.")
    assert [e["reason"] for e in kube.all("events", "shop")] == ["Hi"]
    await kube.delete(Build, "web-1", namespace="shop")
    assert kube.stored(Build, "web-1", "shop") is None
    with pytest.raises(ApiError) as exc:
        await kube.delete(Build, "web-1", namespace="shop")
    assert code(exc) == 404
    assert [(e.type, e.resource) for e in kube.drain_events()] == [
        ("ADDED", "builds"), ("ADDED", "events"), ("DELETED", "builds"),
    ]  # fmt: skip
    assert kube.drain_events() == []


async def test_apply_is_a_merge_of_the_existing_object() -> None:
    kube = FakeKube()
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment",
                  "metadata": {"name": "web", "namespace": "shop"},
                  "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                           "template": {"spec": {"containers": [{"name": "a"}]}}}}  # fmt: skip
    kube.add(deployment)
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x"}]}}}}
    out = await kube.patch(Deployment, "web", patch, namespace="shop",
                           patch_type=PatchType.APPLY, field_manager="me", force=True)  # fmt: skip
    assert out.spec.replicas == 2
    assert out.spec.template.spec.containers[0].image == "x"
    assert out.metadata.generation == 2
    [call] = kube.writes
    assert call.options == {"patch_type": PatchType.APPLY, "field_manager": "me", "force": True}
    with pytest.raises(ApiError) as exc:
        await kube.patch(Deployment, "gone", patch, namespace="shop", patch_type=PatchType.APPLY)
    assert code(exc) == 404


async def test_access_reviews_are_answered_as_configured() -> None:
    def review(namespace: str) -> SubjectAccessReview:
        return SubjectAccessReview(
            spec=SubjectAccessReviewSpec(
                user="u", resourceAttributes=ResourceAttributes(namespace=namespace, verb="get")
            )
        )

    kube = FakeKube()
    answer = await kube.create(review("a"))
    assert answer.status is not None
    assert answer.status.allowed is True
    kube.allow_reviews = lambda spec: spec["resourceAttributes"]["namespace"] == "a"
    assert (await kube.create(review("a"))).status.allowed is True
    assert (await kube.create(review("b"))).status.allowed is False
    assert kube.count("create", "subjectaccessreviews") == 3
    assert kube.objects == {}


async def test_faults_by_verb_resource_and_subresource_for_a_number_of_calls() -> None:
    kube = FakeKube()
    kube.add(stream())
    fault = kube.fail("patch", "imagestreams", subresource="status", times=2, code=500)
    patch = {"status": {"a": 1}}
    # The main resource is not matched; the status subresource fails twice, then works.
    await kube.patch(ImageStream, "web", {"metadata": {"labels": {"x": "y"}}}, namespace="shop")
    for _ in range(2):
        with pytest.raises(ApiError) as exc:
            await kube.patch(ImageStream.Status, "web", patch, namespace="shop")
        assert code(exc) == 500
    assert fault.hits == 2
    assert kube.faults == []
    await kube.patch(ImageStream.Status, "web", patch, namespace="shop")
    assert [c.error is not None for c in kube.calls] == [False, True, True, False]
    # Any exception; a fault that applies the write and loses the answer; heal() ends all.
    kube.fail("get", error=httpx2.ReadTimeout("slow"), times=None)
    for _ in range(3):
        with pytest.raises(httpx2.ReadTimeout):
            await kube.get(ImageStream, "web", namespace="shop")
    kube.heal()
    await kube.get(ImageStream, "web", namespace="shop")
    kube.fail("patch", "imagestreams", code=504, applied=True)
    with pytest.raises(ApiError):
        await kube.patch(ImageStream.Status, "web", {"status": {"a": 2}}, namespace="shop")
    assert kube.body(ImageStream, "web", "shop")["status"] == {"a": 2}
    assert kube.count("get") == 4
    assert len(kube.writes) == 5


def test_merge_patch_is_rfc_7386() -> None:
    target = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    assert merge_patch(target, {"a": {"b": None, "c": [3]}, "e": {"f": None}}) == {
        "a": {"c": [3]}, "d": 1, "e": {},
    }  # fmt: skip
    assert target == {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    assert WatchEvent("ADDED", "x", {}) == WatchEvent("ADDED", "x", {})
