"""``set triggers`` (pure): flag rules, BuildConfig edits, the workload annotation."""

from __future__ import annotations

import json
from typing import Any

import pytest

from headwater.cli.triggers import (
    SECRET_MADE_FOR,
    WEBHOOK_SECRET_KEY,
    ImageRef,
    TriggerError,
    annotation_json,
    buildconfig_rows,
    edit_buildconfig,
    edit_workload,
    field_path,
    make_options,
    missing_image,
    parse_image,
    read_annotation,
    webhook_secret,
    workload_rows,
)
from headwater.workloads.triggers import ANNOTATION_HEADWATER, ANNOTATION_OPENSHIFT

NS = "shop"


def seed_bc(triggers: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The seed's BuildConfig: S2I from openshift/nodejs-20:latest."""
    return {
        "apiVersion": "build.headwater.dev/v1",
        "kind": "BuildConfig",
        "metadata": {"name": "web", "namespace": NS, "uid": "u-1"},
        "spec": {
            "strategy": {
                "type": "Source",
                "sourceStrategy": {
                    "from": {
                        "kind": "ImageStreamTag",
                        "name": "nodejs-20:latest",
                        "namespace": "openshift",
                    }
                },
            },
            "triggers": triggers
            if triggers is not None
            else [
                {"type": "ConfigChange"},
                {"type": "GitHub", "github": {"secretReference": {"name": "web-github-secret"}}},
            ],
        },
    }


def deployment(
    containers: tuple[str, ...] = ("web",),
    init: tuple[str, ...] = (),
    annotations: dict[str, str] | None = None,
    kind: str = "Deployment",
) -> dict[str, Any]:
    pod = {
        "containers": [{"name": c, "image": "x"} for c in containers],
        "initContainers": [{"name": c, "image": "x"} for c in init],
    }
    spec: dict[str, Any] = {"template": {"spec": pod}}
    if kind == "CronJob":
        spec = {"jobTemplate": {"spec": {"template": {"spec": pod}}}}
    return {
        "metadata": {"name": "web", "namespace": NS, "annotations": annotations or {}},
        "spec": spec,
    }


# --- flags ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"auto": True, "manual": True}, "at most one of --auto and --manual"),
        ({"remove": True, "remove_all": True}, "either --remove or --remove-all"),
        ({"remove_all": True, "from_config": True}, "--remove-all may not be used"),
        ({"remove_all": True, "manual": True}, "--remove-all may not be used"),
        ({"remove": True}, "--remove needs the trigger to remove"),
        ({"from_config": True, "github": True}, "one trigger type at a time"),
        ({"github": True, "webhook": True}, "one trigger type at a time"),
        ({"containers": "web"}, "-c/--containers goes with --from-image"),
        ({"from_image": "registry.example.com/shop/web:1"}, "expected an ImageStreamTag"),
        ({"from_image": "web"}, "expected an ImageStreamTag"),
        ({"from_image": "web@sha256:" + "a" * 64}, "expected an ImageStreamTag"),
    ],
)
def test_flag_rules(flags: dict[str, Any], message: str) -> None:
    with pytest.raises(TriggerError, match=message):
        make_options(**flags)


def test_no_flags_prints_the_table_and_auto_alone_resets() -> None:
    assert make_options().print_table
    assert not make_options(from_config=True).print_table
    assert make_options(manual=True).reset
    assert not make_options(manual=True, from_image="web:1").reset
    options = make_options(webhook_allow_env=True)
    assert (options.webhook, options.allow_env) == ("Generic", True)
    assert make_options(from_image="web:1", containers="a, b").containers == ("a", "b")


def test_parse_image() -> None:
    assert parse_image("web:latest") == ImageRef("", "web:latest")
    assert parse_image("openshift/nodejs-20:latest") == ImageRef("openshift", "nodejs-20:latest")
    ref = ImageRef("openshift", "nodejs-20:latest")
    assert ref.reference(NS) == {
        "kind": "ImageStreamTag",
        "name": "nodejs-20:latest",
        "namespace": "openshift",
    }
    assert ImageRef(NS, "web:1").reference(NS) == {"kind": "ImageStreamTag", "name": "web:1"}
    assert ImageRef("", "web:1").matches({"kind": "ImageStreamTag", "name": "web:1"}, NS)
    assert ImageRef(NS, "web:1").matches({"name": "web:1", "namespace": NS}, NS)
    assert not ImageRef("other", "web:1").matches({"name": "web:1"}, NS)
    assert not ImageRef("", "web:1").matches({"kind": "DockerImage", "name": "web:1"}, NS)


# --- BuildConfig ---------------------------------------------------------------------


def test_buildconfig_table_like_oc() -> None:
    assert buildconfig_rows(seed_bc()) == [
        ("config", "", "true"),
        # The builder image could trigger builds, and does not: oc shows it too.
        ("image", "openshift/nodejs-20:latest (strategy)", "false"),
        ("github", "secret/web-github-secret", ""),
    ]
    bc = seed_bc(
        [
            {"type": "ImageChange", "imageChange": {}},
            {
                "type": "ImageChange",
                "imageChange": {
                    "from": {"kind": "ImageStreamTag", "name": "base:1"},
                    "paused": True,
                },
            },
            {"type": "Generic", "generic": {"secret": "inline", "allowEnv": True}},
        ]
    )
    assert buildconfig_rows(bc) == [
        ("config", "", "false"),
        ("image", "openshift/nodejs-20:latest (strategy)", "true"),
        ("image", "base:1", "false"),
        ("webhook", "<inline secret>, allowenv", ""),
    ]


def test_from_image_of_the_builder_is_the_canonical_fromless_trigger() -> None:
    edit = edit_buildconfig(seed_bc([]), make_options(from_image="openshift/nodejs-20:latest"))
    assert edit.triggers == [{"type": "ImageChange", "imageChange": {}}]
    # Asked again: the same trigger, not a second one.
    again = edit_buildconfig(
        seed_bc(edit.triggers), make_options(from_image="openshift/nodejs-20:latest")
    )
    assert again.triggers == edit.triggers


def test_from_image_of_another_tag_names_it_and_manual_pauses_it() -> None:
    edit = edit_buildconfig(seed_bc([]), make_options(from_image="base:1", manual=True))
    assert edit.triggers == [
        {
            "type": "ImageChange",
            "imageChange": {"from": {"kind": "ImageStreamTag", "name": "base:1"}, "paused": True},
        }
    ]
    # Without --auto a re-run keeps it paused (issue 19); --auto resumes it.
    kept = edit_buildconfig(seed_bc(edit.triggers), make_options(from_image=f"{NS}/base:1"))
    assert kept.triggers == edit.triggers
    resumed = edit_buildconfig(
        seed_bc(edit.triggers), make_options(from_image=f"{NS}/base:1", auto=True)
    )
    assert resumed.triggers == [
        {
            "type": "ImageChange",
            "imageChange": {"from": {"kind": "ImageStreamTag", "name": "base:1"}},
        }
    ]


def test_reset_pauses_and_resumes_image_triggers_only() -> None:
    bc = seed_bc([
        {"type": "ConfigChange"},
        {"type": "ImageChange", "imageChange": {}},
        {"type": "ImageChange", "imageChange": {"from": {"kind": "ImageStreamTag", "name": "b:1"}}},
    ])  # fmt: skip
    paused = edit_buildconfig(bc, make_options(manual=True)).triggers
    assert paused[0] == {"type": "ConfigChange"}
    assert [t["imageChange"].get("paused") for t in paused[1:]] == [True, True]
    resumed = edit_buildconfig(seed_bc(paused), make_options(auto=True)).triggers
    assert resumed == bc["spec"]["triggers"]


def test_from_config_is_added_once_and_removed() -> None:
    assert (
        edit_buildconfig(seed_bc(), make_options(from_config=True)).triggers
        == seed_bc()["spec"]["triggers"]
    )
    edit = edit_buildconfig(seed_bc(), make_options(from_config=True, remove=True))
    assert [t["type"] for t in edit.triggers] == ["GitHub"]
    assert edit.removed_secrets == ()


def test_webhooks_reference_the_new_secret_and_removal_reports_secrets() -> None:
    edit = edit_buildconfig(seed_bc(), make_options(gitlab=True), "web-gitlab-webhook-abc")
    assert edit.triggers[-1] == {
        "type": "GitLab",
        "gitlab": {"secretReference": {"name": "web-gitlab-webhook-abc"}},
    }
    generic = edit_buildconfig(seed_bc([]), make_options(webhook_allow_env=True), "s")
    assert generic.triggers == [
        {"type": "Generic", "generic": {"secretReference": {"name": "s"}, "allowEnv": True}}
    ]
    with pytest.raises(TriggerError, match="needs a Secret"):
        edit_buildconfig(seed_bc(), make_options(github=True))
    removed = edit_buildconfig(seed_bc(), make_options(github=True, remove=True))
    assert [t["type"] for t in removed.triggers] == ["ConfigChange"]
    assert removed.removed_secrets == ("web-github-secret",)
    everything = edit_buildconfig(seed_bc(), make_options(remove_all=True))
    assert everything.triggers == []
    assert everything.removed_secrets == ("web-github-secret",)


def test_remove_from_image_matches_fromless_triggers_by_the_strategy() -> None:
    bc = seed_bc([{"type": "ImageChange", "imageChange": {}}, {"type": "ConfigChange"}])
    edit = edit_buildconfig(bc, make_options(from_image="openshift/nodejs-20:latest", remove=True))
    assert edit.triggers == [{"type": "ConfigChange"}]
    untouched = edit_buildconfig(bc, make_options(from_image="nodejs-20:latest", remove=True))
    assert untouched.triggers == bc["spec"]["triggers"]


def test_edits_never_change_the_object_read() -> None:
    bc = seed_bc()
    before = json.dumps(bc)
    edit_buildconfig(bc, make_options(manual=True))
    edit_buildconfig(bc, make_options(from_image="x:1"))
    assert json.dumps(bc) == before


def test_webhook_secret_is_owned_and_marked() -> None:
    secret = webhook_secret(seed_bc(), "GitHub", "v" * 40, "abc123")
    assert secret["metadata"]["name"] == "web-github-webhook-abc123"
    assert secret["metadata"]["annotations"] == {SECRET_MADE_FOR: "web"}
    assert secret["metadata"]["ownerReferences"] == [
        {"apiVersion": "build.headwater.dev/v1", "kind": "BuildConfig", "name": "web", "uid": "u-1"}
    ]
    assert secret["stringData"] == {WEBHOOK_SECRET_KEY: "v" * 40}
    long = seed_bc()
    long["metadata"]["name"] = "a" * 253
    assert len(webhook_secret(long, "Bitbucket", "v", "abc123")["metadata"]["name"]) <= 253


# --- workloads -------------------------------------------------------------------------


def test_annotation_is_written_exactly_as_oc_writes_it() -> None:
    edit = edit_workload(deployment(), "Deployment", make_options(from_image="web:latest"))
    assert edit.key == ANNOTATION_OPENSHIFT
    assert edit.value == (
        '[{"from":{"kind":"ImageStreamTag","name":"web:latest"},'
        '"fieldPath":"spec.template.spec.containers[?(@.name==\\"web\\")].image"}]'
    )
    assert edit.paused is None
    paused = edit_workload(
        deployment(), "Deployment", make_options(from_image="other/web:1", manual=True)
    )
    assert json.loads(paused.value or "") == [
        {
            "from": {"kind": "ImageStreamTag", "name": "web:1", "namespace": "other"},
            "fieldPath": 'spec.template.spec.containers[?(@.name=="web")].image',
            "paused": True,
        }
    ]


def test_field_paths_per_kind_and_init_containers() -> None:
    assert field_path("CronJob", "job") == (
        'spec.jobTemplate.spec.template.spec.containers[?(@.name=="job")].image'
    )
    assert field_path("StatefulSet", "db", init=True) == (
        'spec.template.spec.initContainers[?(@.name=="db")].image'
    )
    edit = edit_workload(
        deployment(("web", "sidecar"), init=("migrate",)), "Deployment",
        make_options(from_image="web:1", containers="migrate"),
    )  # fmt: skip
    assert json.loads(edit.value or "")[0]["fieldPath"] == (
        'spec.template.spec.initContainers[?(@.name=="migrate")].image'
    )


def test_containers_are_required_when_several_and_must_exist() -> None:
    two = deployment(("web", "sidecar"))
    with pytest.raises(TriggerError, match=r"has 2 containers \(web, sidecar\)"):
        edit_workload(two, "Deployment", make_options(from_image="web:1"))
    with pytest.raises(TriggerError, match=r"no container nope \(it has: web, sidecar\)"):
        edit_workload(two, "Deployment", make_options(from_image="web:1", containers="nope"))
    both = edit_workload(
        two, "Deployment", make_options(from_image="web:1", containers="web,sidecar")
    )
    assert len(json.loads(both.value or "")) == 2


def test_a_new_trigger_replaces_the_one_feeding_the_same_container() -> None:
    first = edit_workload(deployment(), "Deployment", make_options(from_image="web:1"))
    annotated = deployment(annotations={ANNOTATION_OPENSHIFT: first.value or ""})
    second = edit_workload(annotated, "Deployment", make_options(from_image="web:2"))
    assert [e["from"]["name"] for e in json.loads(second.value or "")] == ["web:2"]


def test_reset_remove_and_remove_all_on_workloads() -> None:
    entries = [
        {"from": {"kind": "ImageStreamTag", "name": "web:1"},
         "fieldPath": 'spec.template.spec.containers[?(@.name=="web")].image', "paused": "false"},
        {"from": {"kind": "ImageStreamTag", "name": "side:1"},
         "fieldPath": "spec.template.spec.containers[1].image"},
    ]  # fmt: skip
    obj = deployment(("web", "side"), annotations={ANNOTATION_OPENSHIFT: json.dumps(entries)})
    manual = edit_workload(obj, "Deployment", make_options(manual=True))
    assert [e.get("paused") for e in json.loads(manual.value or "")] == [True, True]
    auto = edit_workload(obj, "Deployment", make_options(auto=True))
    assert all("paused" not in e for e in json.loads(auto.value or ""))
    removed = edit_workload(obj, "Deployment", make_options(from_image="side:1", remove=True))
    assert [e["from"]["name"] for e in json.loads(removed.value or "")] == ["web:1"]
    gone = edit_workload(obj, "Deployment", make_options(remove_all=True))
    assert (gone.key, gone.value) == (ANNOTATION_OPENSHIFT, None)


def test_from_config_pauses_or_resumes_a_deployment_only() -> None:
    assert edit_workload(deployment(), "Deployment", make_options(from_config=True)).paused is False
    removed = edit_workload(deployment(), "Deployment", make_options(from_config=True, remove=True))
    assert removed.paused is True
    with pytest.raises(TriggerError, match="--from-config applies to BuildConfigs and Deployments"):
        edit_workload(deployment(kind="CronJob"), "CronJob", make_options(from_config=True))
    with pytest.raises(TriggerError, match="webhooks trigger BuildConfigs only"):
        edit_workload(deployment(), "Deployment", make_options(github=True))


def test_headwater_key_wins_and_is_kept() -> None:
    mine = annotation_json(
        [{"from": {"kind": "ImageStreamTag", "name": "web:1"},
          "fieldPath": 'spec.template.spec.containers[?(@.name=="web")].image'}]
    )  # fmt: skip
    obj = deployment(annotations={ANNOTATION_HEADWATER: mine, ANNOTATION_OPENSHIFT: "[]"})
    key, entries = read_annotation(obj)
    assert key == ANNOTATION_HEADWATER
    assert len(entries) == 1
    assert edit_workload(obj, "Deployment", make_options(manual=True)).key == ANNOTATION_HEADWATER


def test_bad_annotations_are_one_line_errors() -> None:
    with pytest.raises(TriggerError, match="is not JSON"):
        read_annotation(deployment(annotations={ANNOTATION_OPENSHIFT: "[{"}))
    with pytest.raises(TriggerError, match="not a JSON list"):
        read_annotation(deployment(annotations={ANNOTATION_OPENSHIFT: '{"a": 1}'}))
    # oc's --remove-all writes null.
    assert read_annotation(deployment(annotations={ANNOTATION_OPENSHIFT: "null"}))[1] == []


def test_workload_table() -> None:
    entries = [
        {"from": {"kind": "ImageStreamTag", "name": "web:1", "namespace": "ci"},
         "fieldPath": 'spec.template.spec.containers[?(@.name=="web")].image', "paused": True},
        {"from": {"kind": "ImageStreamTag", "name": "side:1", "namespace": NS},
         "fieldPath": "spec.template.spec.containers[1].image"},
        {"from": {"kind": "ImageStreamTag", "name": "odd:1"}, "fieldPath": "spec.odd"},
    ]  # fmt: skip
    obj = deployment(("web", "side"), annotations={ANNOTATION_OPENSHIFT: json.dumps(entries)})
    obj["spec"]["paused"] = True
    assert workload_rows(obj, "Deployment") == [
        ("config", "", "false"),
        ("image", "ci/web:1 (web)", "false"),
        ("image", "side:1 (side)", "true"),
        ("image", "odd:1 (<spec.odd>)", "true"),
    ]
    assert workload_rows(deployment(kind="CronJob"), "CronJob") == []


# --- issue 19: a re-run changes nothing it was not told to; a typo is said -------------


def test_a_typo_in_from_image_is_said_and_the_replaced_trigger_named() -> None:
    working = edit_workload(deployment(), "Deployment", make_options(from_image="site:latest"))
    obj = deployment(annotations={ANNOTATION_OPENSHIFT: working.value or ""})
    typo = edit_workload(obj, "Deployment", make_options(from_image="sitee:latest"))
    assert typo.replaced == (("web", "site:latest"),)
    again = edit_workload(obj, "Deployment", make_options(from_image="site:latest"))
    assert again.replaced == ()
    stream = {
        "metadata": {"name": "site"},
        "spec": {"tags": [{"name": "latest"}]},
        "status": {"tags": [{"tag": "v1"}]},
    }
    assert missing_image(parse_image("sitee:latest"), None, NS) == (
        "imagestream shop/sitee does not exist: the trigger is written, and fires only once it"
        " exists and has an image"
    )
    assert missing_image(parse_image("site:lates"), stream, NS) == (
        "shop/site:lates does not exist (its tags: latest, v1): the trigger is written, and"
        " fires only once it exists and has an image"
    )
    assert missing_image(parse_image("site:latest"), stream, NS) is None
    assert missing_image(parse_image("other/site:v1"), stream, NS) is None


def test_re_running_from_image_keeps_a_paused_trigger_paused() -> None:
    paused = edit_workload(
        deployment(), "Deployment", make_options(from_image="site:latest", manual=True)
    )
    obj = deployment(annotations={ANNOTATION_OPENSHIFT: paused.value or ""})
    again = edit_workload(obj, "Deployment", make_options(from_image="site:latest"))
    assert json.loads(again.value or "")[0]["paused"] is True
    resumed = edit_workload(obj, "Deployment", make_options(from_image="site:latest", auto=True))
    assert "paused" not in json.loads(resumed.value or "")[0]
    bc = seed_bc(
        [{"type": "ImageChange", "imageChange": {"from": {"kind": "ImageStreamTag",
                                                          "name": "base:1"}, "paused": True}}]
    )  # fmt: skip
    kept = edit_buildconfig(bc, make_options(from_image="base:1")).triggers
    assert kept[0]["imageChange"]["paused"] is True
    auto = edit_buildconfig(bc, make_options(from_image="base:1", auto=True)).triggers
    assert "paused" not in auto[0]["imageChange"]
