"""Workload image triggers: the annotation's grammar, the plan, the apply body, the controller."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, cast

import httpx2
import kopf
import pytest
from lightkube.core.exceptions import ApiError
from lightkube.models.authorization_v1 import SubjectAccessReviewStatus
from lightkube.resources.authorization_v1 import SubjectAccessReview
from lightkube.resources.core_v1 import Event
from lightkube.types import PatchType

import headwater.handlers  # noqa: F401  (registers the handlers)
from headwater.imports.tagfeed import TagFeed, TagImage
from headwater.workloads.controller import (
    REASON_FORBIDDEN,
    REASON_INVALID,
    REASON_NOT_APPLIED,
    REASON_UPDATED,
    WorkloadRef,
    WorkloadTriggers,
)
from headwater.workloads.triggers import (
    ANNOTATION_HEADWATER,
    ANNOTATION_OPENSHIFT,
    FIELD_MANAGER,
    MAX_ANNOTATION_BYTES,
    MAX_TRIGGERS,
    ImageTrigger,
    TriggerError,
    apply_body,
    owned_images,
    parse_field_path,
    parse_triggers,
    plan_workload,
    trigger_annotation,
)

NAME_PATH = 'spec.template.spec.containers[?(@.name=="web")].image'
CRON_PATH = 'spec.jobTemplate.spec.template.spec.containers[?(@.name=="web")].image'
OLD = "registry.local/shop/web@sha256:" + "a" * 64
NEW = "registry.local/shop/web@sha256:" + "b" * 64


def trigger_json(name: str = "web:latest", path: str = NAME_PATH, **extra: Any) -> dict[str, Any]:
    source: dict[str, Any] = {"kind": "ImageStreamTag", "name": name}
    if "namespace" in extra:
        source["namespace"] = extra.pop("namespace")
    return {"from": source, "fieldPath": path, **extra}


def annotation(*entries: dict[str, Any]) -> str:
    return json.dumps(list(entries))


def pod_template(containers: list[dict[str, Any]], init: list[dict[str, Any]] | None = None) -> Any:
    spec: dict[str, Any] = {"containers": containers}
    if init is not None:
        spec["initContainers"] = init
    return {"metadata": {"labels": {"app": "web"}}, "spec": spec}


def workload(
    kind: str = "Deployment",
    value: str | None = None,
    containers: list[dict[str, Any]] | None = None,
    init: list[dict[str, Any]] | None = None,
    key: str = ANNOTATION_OPENSHIFT,
    managed: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    template = pod_template(containers or [{"name": "web", "image": OLD}], init)
    api = "batch/v1" if kind in ("CronJob", "Job") else "apps/v1"
    metadata: dict[str, Any] = {"name": "web", "namespace": "shop", "uid": "u-1", "generation": 1}
    if value is not None:
        metadata["annotations"] = {key: value}
    if managed is not None:
        metadata["managedFields"] = managed
    if kind == "CronJob":
        spec: dict[str, Any] = {
            "schedule": "* * * * *",
            "jobTemplate": {"spec": {"template": template}},
        }
    else:
        spec = {"selector": {"matchLabels": {"app": "web"}}, "template": template}
    return {"apiVersion": api, "kind": kind, "metadata": metadata, "spec": spec}


def tag_image(image: str = "sha256:" + "b" * 64, **kw: Any) -> TagImage:
    fields: dict[str, Any] = {
        "namespace": "shop",
        "stream": "web",
        "tag": "latest",
        "image": image,
        "reference": f"registry.local/shop/web@{image}",
    }
    fields.update(kw)
    return TagImage(**fields)


def lookup_of(*images: TagImage) -> Any:
    table = {(i.namespace, i.stream, i.tag): i for i in images}
    return lambda ns, stream, tag: table.get((ns, stream, tag))


# --- parsing ------------------------------------------------------------------------


def test_parses_openshifts_example() -> None:
    # The form `oc set triggers deploy/web --from-image=web:latest -c web` writes.
    value = (
        '[{"from":{"kind":"ImageStreamTag","name":"web:latest"},'
        '"fieldPath":"spec.template.spec.containers[?(@.name==\\"web\\")].image"}]'
    )
    [trigger] = parse_triggers(value, "Deployment", "shop")
    assert trigger == ImageTrigger(
        namespace="shop",
        stream="web",
        tag="latest",
        field_path=NAME_PATH,
        init=False,
        name="web",
        index=None,
        paused=False,
    )
    assert trigger.key == ("shop", "web", "latest")


def test_from_namespace_and_unknown_keys() -> None:
    # OpenShift's docs once wrote "pause" (sic); Go's decoder ignores unknown keys, so do we.
    value = annotation(
        trigger_json(namespace="builds", pause="true", apiVersion="image.openshift.io/v1")
    )
    [trigger] = parse_triggers(value, "StatefulSet", "shop")
    assert trigger.namespace == "builds"
    assert not trigger.paused


def test_index_and_init_containers() -> None:
    value = annotation(
        trigger_json(path="spec.template.spec.containers[1].image"),
        trigger_json(
            name="tools:v1", path='spec.template.spec.initContainers[?(@.name=="setup")].image'
        ),
        trigger_json(name="tools:v2", path="spec.template.spec.initContainers[0].image"),
    )
    by_index, init_name, init_index = parse_triggers(value, "DaemonSet", "shop")
    assert (by_index.init, by_index.name, by_index.index) == (False, None, 1)
    assert (init_name.init, init_name.name, init_name.index) == (True, "setup", None)
    assert (init_index.init, init_index.index, init_index.tag) == (True, 0, "v2")


def test_cronjob_path() -> None:
    [trigger] = parse_triggers(annotation(trigger_json(path=CRON_PATH)), "CronJob", "shop")
    assert trigger.name == "web"
    assert parse_field_path("spec.template.spec.containers[0].image", "Job") == (False, None, 0)
    with pytest.raises(TriggerError, match=r"a CronJob's containers are under spec\.jobTemplate"):
        parse_triggers(annotation(trigger_json()), "CronJob", "shop")


@pytest.mark.parametrize(
    ("paused", "expected"),
    [(True, True), (False, False), ("true", True), ("false", False), ("True", True)],
)
def test_paused_as_bool_or_string(paused: Any, expected: bool) -> None:
    [trigger] = parse_triggers(annotation(trigger_json(paused=paused)), "Deployment", "shop")
    assert trigger.paused is expected


def test_empty_and_null_mean_no_triggers() -> None:
    assert parse_triggers("", "Deployment", "shop") == ()
    assert parse_triggers("  ", "Deployment", "shop") == ()
    assert parse_triggers("null", "Deployment", "shop") == ()
    assert parse_triggers("[]", "Deployment", "shop") == ()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("[{", r"not valid JSON: .* \(line 1, column 3\)"),
        ('{"from": {}}', "must be a JSON array"),
        ("[1]", r"\[0\]: must be an object"),
        ('[{"fieldPath": "x"}]', r"\[0\]\.from: required"),
        (
            annotation(
                trigger_json(),
                {"from": {"kind": "DockerImage", "name": "busybox"}, "fieldPath": NAME_PATH},
            ),
            r"\[1\]\.from\.kind: 'DockerImage'; only ImageStreamTag",
        ),
        (
            annotation({"from": {"name": "web:latest"}, "fieldPath": NAME_PATH}),
            r"\[0\]\.from\.kind: missing",
        ),
        (annotation(trigger_json(name="web")), r"\[0\]\.from\.name: 'web' is not <stream>:<tag>"),
        (annotation(trigger_json(name="Web:latest")), r"from\.name"),
        (annotation(trigger_json(namespace="Not_A_Namespace")), r"from\.namespace"),
        (
            annotation({"from": {"kind": "ImageStreamTag", "name": "web:latest"}}),
            r"fieldPath: required",
        ),
        (annotation(trigger_json(paused="yes")), r"\[0\]\.paused: 'yes'"),
        (annotation(trigger_json(paused=1)), r"\[0\]\.paused: 1"),
        (
            annotation(trigger_json(), trigger_json(name="other:latest")),
            r"\[1\]\.fieldPath: duplicate of \[0\]",
        ),
    ],
)
def test_invalid_annotations(value: str, message: str) -> None:
    with pytest.raises(TriggerError, match=message):
        parse_triggers(value, "Deployment", "shop")


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("spec.containers[0].image", "a Deployment's containers are under spec.template.spec."),
        ('spec.template.spec.containers[?(@.name=="web")]', r"must end in \.image"),
        ('spec.template.spec.containers[?(@.name=="web")].env', r"must end in \.image"),
        ('spec.template.spec.containers[?(@.name=="web").image', r"containers\[\.\.\.\]\.image or"),
        ("spec.template.spec.containers[@.name=web].image", "container selector"),
        ("spec.template.spec.containers[?(@.name=='web')].image", "container selector"),
        ("spec.template.spec.containers[-1].image", "container selector"),
        ("spec.template.spec.volumes[0].image", r"containers\[\.\.\.\]\.image or"),
        ("spec.template.spec.containers.image", r"containers\[\.\.\.\]\.image or"),
    ],
)
def test_bad_field_paths(path: str, message: str) -> None:
    with pytest.raises(TriggerError, match=message):
        parse_triggers(annotation(trigger_json(path=path)), "Deployment", "shop")


def test_unsupported_workload_kind() -> None:
    with pytest.raises(TriggerError, match="not supported on a Pod; only on Deployment"):
        parse_triggers(annotation(trigger_json(path="spec.containers[0].image")), "Pod", "shop")


def test_size_and_count_limits() -> None:
    padding = " " * (MAX_ANNOTATION_BYTES + 1)
    with pytest.raises(TriggerError, match=f"bytes; at most {MAX_ANNOTATION_BYTES}"):
        parse_triggers(f"[{padding}]", "Deployment", "shop")
    many = [
        trigger_json(path=f"spec.template.spec.containers[{i}].image")
        for i in range(MAX_TRIGGERS + 1)
    ]
    with pytest.raises(TriggerError, match=f"{MAX_TRIGGERS + 1} triggers; at most {MAX_TRIGGERS}"):
        parse_triggers(json.dumps(many), "Deployment", "shop")
    assert (
        len(parse_triggers(json.dumps(many[:MAX_TRIGGERS]), "Deployment", "shop")) == MAX_TRIGGERS
    )


def test_headwater_key_wins_over_openshifts() -> None:
    body = workload(value="[]")
    assert trigger_annotation(body) == (ANNOTATION_OPENSHIFT, "[]")
    body["metadata"]["annotations"][ANNOTATION_HEADWATER] = "null"
    assert trigger_annotation(body) == (ANNOTATION_HEADWATER, "null")
    assert trigger_annotation(workload()) is None


# --- planning -------------------------------------------------------------------------


def plan_for(body: dict[str, Any], *images: TagImage) -> Any:
    triggers = parse_triggers(trigger_annotation(body)[1], body["kind"], "shop")  # type: ignore[index]
    return plan_workload(body, triggers, lookup_of(*images))


def test_desired_image_is_the_tags_pull_spec() -> None:
    body = workload(value=annotation(trigger_json()))
    plan = plan_for(body, tag_image())
    [change] = plan.changes
    assert (change.container, change.init, change.old, change.new) == ("web", False, OLD, NEW)
    assert change.trigger.source == "shop/web:latest"
    assert plan.apply is not None
    assert plan.waiting == ()


def test_nothing_to_do_when_the_image_already_matches() -> None:
    body = workload(value=annotation(trigger_json()), containers=[{"name": "web", "image": NEW}])
    plan = plan_for(body, tag_image())
    assert plan.changes == ()
    assert plan.apply is None


def test_paused_triggers_are_skipped() -> None:
    body = workload(value=annotation(trigger_json(paused="true")))
    plan = plan_for(body, tag_image())
    assert plan.changes == ()
    assert plan.apply is None


def test_a_tag_without_image_waits() -> None:
    body = workload(value=annotation(trigger_json()))
    plan = plan_for(body)
    assert plan.apply is None
    assert [t.source for t in plan.waiting] == ["shop/web:latest"]


def test_reference_policy_local_uses_the_configured_registry() -> None:
    image = tag_image(
        local_reference="10.0.0.1:5000/shop/web@sha256:" + "b" * 64, reference_policy="Local"
    )
    body = workload(value=annotation(trigger_json()))
    [change] = plan_for(body, image).changes
    assert change.new == "10.0.0.1:5000/shop/web@sha256:" + "b" * 64
    source = tag_image(local_reference="10.0.0.1:5000/shop/web@x", reference_policy="Source")
    assert plan_for(body, source).changes[0].new == NEW


def test_cross_namespace_source() -> None:
    body = workload(value=annotation(trigger_json(namespace="builds")))
    assert plan_for(body, tag_image()).changes == ()  # shop/web:latest is not what it follows
    [change] = plan_for(body, tag_image(namespace="builds")).changes
    assert change.trigger.source == "builds/web:latest"


def test_index_resolves_to_the_container_name() -> None:
    containers = [{"name": "sidecar", "image": "busybox"}, {"name": "web", "image": OLD}]
    init = [{"name": "setup", "image": "busybox"}]
    value = annotation(
        trigger_json(path="spec.template.spec.containers[1].image"),
        trigger_json(name="tools:v1", path="spec.template.spec.initContainers[0].image"),
    )
    tools = tag_image(stream="tools", tag="v1", reference="registry.local/shop/tools@sha256:1")
    plan = plan_for(workload(value=value, containers=containers, init=init), tag_image(), tools)
    assert {(c.container, c.init, c.new) for c in plan.changes} == {
        ("web", False, NEW),
        ("setup", True, "registry.local/shop/tools@sha256:1"),
    }
    assert plan.apply["spec"]["template"]["spec"] == {
        "initContainers": [{"name": "setup", "image": "registry.local/shop/tools@sha256:1"}],
        "containers": [{"name": "web", "image": NEW}],
    }


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (
            'spec.template.spec.containers[?(@.name=="api")].image',
            "no containers entry named 'api'",
        ),
        ("spec.template.spec.containers[3].image", r"no container at index 3 \(1 containers\)"),
        ('spec.template.spec.initContainers[?(@.name=="web")].image', "no initContainers entry"),
    ],
)
def test_missing_container(path: str, message: str) -> None:
    with pytest.raises(TriggerError, match=message):
        plan_for(workload(value=annotation(trigger_json(path=path))), tag_image())


def test_two_triggers_for_one_container() -> None:
    value = annotation(
        trigger_json(),
        trigger_json(name="other:latest", path="spec.template.spec.containers[0].image"),
    )
    with pytest.raises(TriggerError, match="both set the image of container 'web'"):
        plan_for(workload(value=value), tag_image())
    # Paused ones do not count: they set nothing.
    value = annotation(
        trigger_json(),
        trigger_json(
            name="other:latest", path="spec.template.spec.containers[0].image", paused=True
        ),
    )
    assert plan_for(workload(value=value), tag_image()).apply is not None


# --- the server-side apply body -----------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "api_version", "path"),
    [
        ("Deployment", "apps/v1", ("spec", "template", "spec")),
        ("StatefulSet", "apps/v1", ("spec", "template", "spec")),
        ("DaemonSet", "apps/v1", ("spec", "template", "spec")),
        ("CronJob", "batch/v1", ("spec", "jobTemplate", "spec", "template", "spec")),
    ],
)
def test_apply_body_sets_only_the_image_fields(
    kind: str, api_version: str, path: tuple[str, ...]
) -> None:
    field_path = ".".join(path) + '.containers[?(@.name=="web")].image'
    containers: list[dict[str, Any]] = [
        {"name": "sidecar", "image": "busybox", "command": ["sleep", "1"]},
        {"name": "web", "image": OLD, "env": [{"name": "A", "value": "1"}]},
    ]
    body = workload(kind, annotation(trigger_json(path=field_path)), containers=containers)
    plan = plan_for(body, tag_image())
    expected: dict[str, Any] = {"containers": [{"name": "web", "image": NEW}]}
    for key in reversed(path):
        expected = {key: expected}
    assert plan.apply == {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": "web", "namespace": "shop"},
        **expected,
    }


def test_a_job_cannot_be_changed() -> None:
    body = workload("Job", annotation(trigger_json()))
    plan = plan_for(body, tag_image())
    assert plan.apply is None
    assert plan.changes
    assert plan.blocked is not None
    assert "cannot change once the Job exists" in plan.blocked
    matching = workload(
        "Job", annotation(trigger_json()), containers=[{"name": "web", "image": NEW}]
    )
    assert plan_for(matching, tag_image()).blocked is None


def managed_entry(*names: str, manager: str = FIELD_MANAGER, init: bool = False) -> dict[str, Any]:
    field = "f:initContainers" if init else "f:containers"
    items: dict[str, Any] = {
        f'k:{{"name":"{n}"}}': {".": {}, "f:image": {}, "f:name": {}} for n in names
    }
    return {
        "manager": manager,
        "operation": "Apply",
        "apiVersion": "apps/v1",
        "fieldsType": "FieldsV1",
        "fieldsV1": {"f:spec": {"f:template": {"f:spec": {field: items}}}},
    }


def test_owned_images_from_managed_fields() -> None:
    managed = [
        managed_entry("web", "sidecar"),
        managed_entry("setup", init=True),
        managed_entry("other", manager="kubectl-client-side-apply"),
        {**managed_entry("status-only"), "subresource": "status"},
        {**managed_entry("updated"), "operation": "Update"},
    ]
    body = workload(managed=managed)
    assert owned_images(body) == {(False, "web"), (False, "sidecar"), (True, "setup")}
    assert owned_images({"kind": "Pod"}) == set()


def test_owned_images_are_kept_at_their_current_value() -> None:
    # The sidecar's trigger was paused after Headwater set it: leaving it out of
    # the apply would make the API server drop the image it alone owns.
    containers = [{"name": "sidecar", "image": "pinned-by-hand"}, {"name": "web", "image": OLD}]
    value = annotation(
        trigger_json(),
        trigger_json(
            name="side:latest", path="spec.template.spec.containers[0].image", paused=True
        ),
    )
    body = workload(
        value=value, containers=containers, managed=[managed_entry("web", "sidecar", "gone")]
    )
    plan = plan_for(body, tag_image())
    assert plan.apply["spec"]["template"]["spec"]["containers"] == [
        {"name": "sidecar", "image": "pinned-by-hand"},
        {"name": "web", "image": NEW},
    ]


def test_apply_body_is_in_workload_order() -> None:
    containers = [{"name": "b", "image": "1"}, {"name": "a", "image": "2"}]
    body = workload(containers=containers)
    result = apply_body(body, {(False, "a"): "x", (False, "b"): "y"}, {})
    assert [c["name"] for c in result["spec"]["template"]["spec"]["containers"]] == ["b", "a"]


# --- the controller ------------------------------------------------------------------------


class FakeKube:
    """Records patches and Events; answers access reviews and GETs."""

    def __init__(self, allowed: bool = True) -> None:
        self.allowed = allowed
        self.patches: list[tuple[Any, str, dict[str, Any], dict[str, Any]]] = []
        self.events: list[Event] = []
        self.reviews = 0
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.fail_patch: ApiError | None = None

    async def patch(self, res: Any, name: str, obj: dict[str, Any], **kw: Any) -> Any:
        if self.fail_patch is not None:
            raise self.fail_patch
        self.patches.append((res, name, obj, kw))
        # What the API server answers: the object at its next generation.
        return SimpleNamespace(metadata=SimpleNamespace(uid="u-1", generation=2))

    async def create(self, obj: Any) -> Any:
        if isinstance(obj, Event):
            self.events.append(obj)
            return obj
        assert isinstance(obj, SubjectAccessReview)
        self.reviews += 1
        obj.status = SubjectAccessReviewStatus(allowed=self.allowed)
        return obj

    async def get(self, res: Any, name: str, namespace: str) -> Any:
        body = self.objects.get((namespace, name))
        if body is None:
            raise api_error(404)
        return _Obj(body)


class _Obj:
    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(self.body))  # type: ignore[no-any-return]


def api_error(code: int) -> ApiError:
    request = httpx2.Request("PATCH", "https://k8s/apis/apps/v1/x")
    response = httpx2.Response(
        code,
        request=request,
        json={"kind": "Status", "apiVersion": "v1", "code": code, "message": f"error {code}"},
    )
    return ApiError(request=request, response=response)


def controller(kube: FakeKube, *images: TagImage) -> tuple[WorkloadTriggers, TagFeed]:
    feed = TagFeed()
    for image in images:
        feed._current[(image.namespace, image.stream, image.tag)] = image
    triggers = WorkloadTriggers(
        kube,  # type: ignore[arg-type]
        feed,
        clock=lambda: datetime(2026, 1, 1, tzinfo=UTC),
    )
    return triggers, feed


def reasons(kube: FakeKube) -> list[str]:
    return [str(e.reason) for e in kube.events]


async def test_converge_patches_with_the_trigger_field_manager() -> None:
    kube = FakeKube()
    triggers, _ = controller(kube, tag_image())
    body = workload(value=annotation(trigger_json()))
    await triggers.on_event("ADDED", body)
    await triggers.settle()
    [(res, name, obj, kw)] = kube.patches
    assert (res.__name__, name) == ("Deployment", "web")
    assert kw == {
        "namespace": "shop",
        "patch_type": PatchType.APPLY,
        "field_manager": FIELD_MANAGER,
        "force": True,
    }
    assert obj["spec"]["template"]["spec"]["containers"] == [{"name": "web", "image": NEW}]
    assert reasons(kube) == [REASON_UPDATED]
    assert "image " + NEW in str(kube.events[0].message)
    assert triggers.watchers[("shop", "web", "latest")] == {
        WorkloadRef("Deployment", "shop", "web")
    }
    # The watch event of our own write: nothing more to do.
    body["spec"]["template"]["spec"]["containers"][0]["image"] = NEW
    await triggers.on_event("MODIFIED", body)
    await triggers.settle()
    assert len(kube.patches) == 1


async def test_events_from_before_our_write_are_skipped() -> None:
    kube = FakeKube()
    triggers, _ = controller(kube, tag_image())
    body = workload(value=annotation(trigger_json()))
    await triggers.on_event("ADDED", body)
    await triggers.settle()
    # The Deployment controller's status write, queued before ours landed.
    await triggers.on_event("MODIFIED", body)
    await triggers.settle()
    assert len(kube.patches) == 1
    assert reasons(kube) == [REASON_UPDATED]
    # Later, someone sets the image by hand: put back.
    body["metadata"]["generation"] = 3
    body["spec"]["template"]["spec"]["containers"][0]["image"] = "busybox"
    await triggers.on_event("MODIFIED", body)
    await triggers.settle()
    assert len(kube.patches) == 2
    # A new object with the same name is not mistaken for the old one.
    again = workload(value=annotation(trigger_json()))
    again["metadata"]["uid"] = "u-2"
    await triggers.on_event("ADDED", again)
    await triggers.settle()
    assert len(kube.patches) == 3


async def test_invalid_annotation_warns_once_per_value() -> None:
    kube = FakeKube()
    triggers, _ = controller(kube, tag_image())
    bad = workload(value="[{")
    for _ in range(3):
        await triggers.on_event("MODIFIED", bad)
        await triggers.settle()
    assert reasons(kube) == [REASON_INVALID]
    assert str(kube.events[0].type) == "Warning"
    assert "image.openshift.io/triggers: not valid JSON" in str(kube.events[0].message)
    await triggers.on_event("MODIFIED", workload(value="[1]"))
    await triggers.settle()
    assert reasons(kube) == [REASON_INVALID, REASON_INVALID]
    assert kube.patches == []
    assert triggers.watchers == {}
    # A missing container is the annotation's fault too.
    path = 'spec.template.spec.containers[?(@.name=="api")].image'
    await triggers.on_event("MODIFIED", workload(value=annotation(trigger_json(path=path))))
    await triggers.settle()
    assert reasons(kube)[-1] == REASON_INVALID
    assert "no containers entry named 'api'" in str(kube.events[-1].message)


async def test_tag_move_converges_the_followers() -> None:
    kube = FakeKube()
    triggers, feed = controller(kube)
    body = workload(value=annotation(trigger_json()))
    await triggers.on_event(None, body)
    await triggers.settle()
    assert kube.patches == []  # no image yet: waits, quietly
    assert kube.events == []
    kube.objects[("shop", "web")] = body
    await triggers.on_tag_moved(tag_image())  # not in the feed yet: lookup finds nothing
    await triggers.settle()
    assert kube.patches == []
    feed._current[("shop", "web", "latest")] = tag_image()
    await triggers.on_tag_moved(tag_image())
    await triggers.settle()
    assert len(kube.patches) == 1
    # Gone meanwhile: forgotten.
    del kube.objects[("shop", "web")]
    await triggers.on_tag_moved(tag_image())
    await triggers.settle()
    assert triggers.watchers == {}


async def test_paused_workloads_do_not_follow_the_tag() -> None:
    kube = FakeKube()
    triggers, _ = controller(kube, tag_image())
    await triggers.on_event(None, workload(value=annotation(trigger_json(paused="true"))))
    await triggers.settle()
    assert kube.patches == []
    assert triggers.watchers == {}


async def test_deleted_workloads_are_forgotten() -> None:
    kube = FakeKube()
    triggers, _ = controller(kube)
    body = workload(value=annotation(trigger_json()))
    await triggers.on_event("ADDED", body)
    await triggers.settle()
    assert triggers.watchers
    await triggers.on_event("DELETED", body)
    await triggers.settle()
    assert triggers.watchers == {}
    assert triggers.following == {}


async def test_cross_namespace_needs_the_namespaces_service_accounts_to_read_there() -> None:
    kube = FakeKube(allowed=False)
    triggers, _ = controller(kube, tag_image(namespace="builds"))
    body = workload(value=annotation(trigger_json(namespace="builds")))
    await triggers.on_event(None, body)
    await triggers.settle()
    await triggers.on_event(None, body)
    await triggers.settle()
    assert kube.patches == []
    assert reasons(kube) == [REASON_FORBIDDEN]
    assert "may not get ImageStreams in builds" in str(kube.events[0].message)
    assert kube.reviews == 1  # cached
    allowed = FakeKube(allowed=True)
    triggers, _ = controller(allowed, tag_image(namespace="builds"))
    await triggers.on_event(None, body)
    await triggers.settle()
    assert len(allowed.patches) == 1


async def test_jobs_are_reported_not_patched() -> None:
    kube = FakeKube()
    triggers, _ = controller(kube, tag_image())
    body = workload("Job", annotation(trigger_json()))
    await triggers.on_event(None, body)
    await triggers.settle()
    await triggers.on_event(None, body)
    await triggers.settle()
    assert kube.patches == []
    assert reasons(kube) == [REASON_NOT_APPLIED]


async def test_a_refused_patch_is_reported_once_and_not_as_done() -> None:
    kube = FakeKube()
    kube.fail_patch = api_error(422)
    triggers, _ = controller(kube, tag_image())
    body = workload(value=annotation(trigger_json()))
    await triggers.on_event(None, body)
    await triggers.settle()
    await triggers.on_event(None, body)
    await triggers.settle()
    assert reasons(kube) == [REASON_NOT_APPLIED]
    assert "refused the image update" in str(kube.events[0].message)


def test_workload_ref_of_a_body() -> None:
    ref = WorkloadRef.of(workload("CronJob"))
    assert (ref.kind, ref.namespace, ref.name) == ("CronJob", "shop", "web")
    assert str(ref) == "CronJob shop/web"


def test_handlers_registered_for_the_five_kinds_and_both_keys() -> None:
    registry = kopf.get_default_registry()
    found = {
        (h.selector.group, h.selector.plural, tuple(h.annotations or {}))
        for h in registry._watching.get_all_handlers()
        if h.id.startswith("image-triggers-") and h.selector is not None
    }
    assert found == {
        (group, plural, (key,))
        for group, plural in [
            ("apps", "deployments"),
            ("apps", "statefulsets"),
            ("apps", "daemonsets"),
            ("batch", "cronjobs"),
            ("batch", "jobs"),
        ]
        for key in (ANNOTATION_HEADWATER, ANNOTATION_OPENSHIFT)
    }


async def test_with_both_keys_only_headwaters_handler_acts() -> None:
    from headwater.handlers.lifecycle import MEMO_WORKLOADS
    from headwater.handlers.workloads import _handler

    kube = FakeKube()
    triggers, _ = controller(kube, tag_image())
    memo = kopf.Memo()
    memo[MEMO_WORKLOADS] = triggers
    body = workload(value=annotation(trigger_json(name="other:latest")))
    body["metadata"]["annotations"][ANNOTATION_HEADWATER] = annotation(trigger_json())
    await _handler(ANNOTATION_OPENSHIFT)(
        type="ADDED", body=kopf.Body(cast(kopf.RawBody, body)), memo=memo
    )
    await triggers.settle()
    assert kube.patches == []
    await _handler(ANNOTATION_HEADWATER)(
        type="ADDED", body=kopf.Body(cast(kopf.RawBody, body)), memo=memo
    )
    await triggers.settle()
    assert len(kube.patches) == 1
