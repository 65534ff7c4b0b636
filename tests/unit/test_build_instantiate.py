"""operator/headwater/builds/instantiate.py: start requests and the Build they become."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from headwater.builds.instantiate import (
    COMMON_SPEC_FIELDS,
    REQUEST_MAX_BYTES,
    REQUEST_PREFIX,
    RequestError,
    StartRequest,
    build_spec,
    parse_request,
    pending_requests,
    render_build,
    request_value,
)
from headwater.builds.model import (
    ANNOTATION_BUILDCONFIG,
    ANNOTATION_NUMBER,
    ANNOTATION_RUN_POLICY,
    API_VERSION,
    LABEL_BUILDCONFIG,
    LABEL_REQUEST,
    LABEL_VALUE_MAX,
    OPENSHIFT_BUILDCONFIG_LABEL,
    OPENSHIFT_LEGACY_BUILDCONFIG_LABEL,
    OPENSHIFT_NUMBER_ANNOTATION,
    OPENSHIFT_START_POLICY_LABEL,
    buildconfig_of,
)

GIT_SOURCE: dict[str, Any] = {
    "type": "Git",
    "git": {"uri": "https://github.com/example/shop-web.git", "ref": "main"},
    "contextDir": "app",
}
DOCKER_STRATEGY: dict[str, Any] = {
    "type": "Docker",
    "dockerStrategy": {
        "dockerfilePath": "Dockerfile",
        "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
        "buildArgs": [{"name": "HTTP_PROXY", "value": "http://proxy:8080"}],
        "noCache": False,
    },
}
SOURCE_STRATEGY: dict[str, Any] = {
    "type": "Source",
    "sourceStrategy": {
        "from": {"kind": "ImageStreamTag", "name": "python:3.12", "namespace": "openshift"},
        "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
        "incremental": False,
    },
}
CUSTOM_STRATEGY: dict[str, Any] = {
    "type": "Custom",
    "customStrategy": {
        "from": {"kind": "DockerImage", "name": "quay.io/example/builder:1"},
        "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
    },
}
STRATEGIES = {"Docker": DOCKER_STRATEGY, "Source": SOURCE_STRATEGY, "Custom": CUSTOM_STRATEGY}
BLOCKS = {"Docker": "dockerStrategy", "Source": "sourceStrategy", "Custom": "customStrategy"}


def bc_spec(strategy: Mapping[str, Any] = DOCKER_STRATEGY, **extra: Any) -> dict[str, Any]:
    """A full BuildConfig spec: the common part plus the BuildConfig-only fields."""
    spec: dict[str, Any] = {
        "serviceAccount": "builder",
        "source": copy.deepcopy(GIT_SOURCE),
        "strategy": copy.deepcopy(dict(strategy)),
        "output": {"to": {"kind": "ImageStreamTag", "name": "web:latest"}},
        "resources": {"limits": {"memory": "2Gi"}},
        "postCommit": {"script": "make test"},
        "completionDeadlineSeconds": 1800,
        "nodeSelector": {"kubernetes.io/arch": "amd64"},
        "mountTrustedCA": True,
        "revision": {"type": "Git", "git": {"commit": "0" * 40}},
        # Not copied to Builds:
        "triggers": [{"type": "ConfigChange"}],
        "runPolicy": "Parallel",
        "successfulBuildsHistoryLimit": 3,
        "failedBuildsHistoryLimit": 2,
    }
    spec.update(extra)
    return spec


def buildconfig(spec: Mapping[str, Any] | None = None, **metadata: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": "web",
        "namespace": "shop",
        "uid": "6f1c8e0a-0000-4000-8000-000000000001",
        "labels": {"app": "shop", "team": "payments"},
    }
    meta.update(metadata)
    return {
        "apiVersion": API_VERSION,
        "kind": "BuildConfig",
        "metadata": meta,
        "spec": dict(spec) if spec is not None else bc_spec(),
    }


def env_of(spec: Mapping[str, Any], kind: str) -> list[dict[str, Any]]:
    return list(spec["strategy"][BLOCKS[kind]]["env"])


# --- parse_request -----------------------------------------------------------------


@pytest.mark.parametrize("value", ["", "   ", "\n\t"])
def test_empty_value_is_a_plain_manual_start(value: str) -> None:
    assert parse_request("r-1", value) == StartRequest(id="r-1")


def test_json_overrides_are_parsed() -> None:
    value = json.dumps(
        {
            "env": [{"name": "DEBUG", "value": "1"}, {"name": "EMPTY"}],
            "buildArgs": [{"name": "VERSION", "value": "2.0"}],
            "commit": "abc123",
            "noCache": True,
            "incremental": False,
            "binary": {"asFile": "app.jar"},
            "fromBuild": "web-3",
            "triggeredBy": [{"message": "GitHub WebHook"}],
        }
    )
    request = parse_request("req.1_x-Y", value)
    assert request == StartRequest(
        id="req.1_x-Y",
        env=(("DEBUG", "1"), ("EMPTY", "")),
        build_args=(("VERSION", "2.0"),),
        commit="abc123",
        no_cache=True,
        incremental=False,
        binary={"asFile": "app.jar"},
        from_build="web-3",
        causes=({"message": "GitHub WebHook"},),
    )


def test_binary_without_as_file_is_an_empty_mapping() -> None:
    assert parse_request("r", '{"binary": {}}').binary == {}


def test_null_fields_mean_absent() -> None:
    value = json.dumps(
        dict.fromkeys(("env", "buildArgs", "commit", "noCache", "incremental", "binary"))
    )
    assert parse_request("r", value) == StartRequest(id="r")


@pytest.mark.parametrize(
    "request_id",
    [
        "",
        "-start",
        "end-",
        ".dot",
        "a b",
        "a/b",
        "a:b",
        "x" * 64,
        "ünïcode",
    ],
)
def test_bad_request_ids(request_id: str) -> None:
    with pytest.raises(RequestError, match="request id"):
        parse_request(request_id, "")


@pytest.mark.parametrize("request_id", ["a", "A9", "x" * 63, "a.b_c-d", "0"])
def test_good_request_ids(request_id: str) -> None:
    assert parse_request(request_id, "").id == request_id


def test_too_large_is_rejected_before_parsing() -> None:
    # Not even JSON: the size check must come first.
    with pytest.raises(RequestError, match="larger than"):
        parse_request("r", "x" * (REQUEST_MAX_BYTES + 1))


def test_size_limit_counts_bytes_not_characters() -> None:
    # 3-byte characters: under the limit in characters, over it in bytes.
    value = json.dumps({"env": [{"name": "A", "value": "€" * 22000}]}, ensure_ascii=False)
    assert len(value) < REQUEST_MAX_BYTES < len(value.encode())
    with pytest.raises(RequestError, match="larger than"):
        parse_request("r", value)


def test_exactly_the_limit_is_accepted() -> None:
    empty = json.dumps({"env": [{"name": "A", "value": ""}]})
    value = empty.replace('""', '"' + "v" * (REQUEST_MAX_BYTES - len(empty)) + '"')
    assert len(value.encode()) == REQUEST_MAX_BYTES
    assert parse_request("r", value).env[0][1] == "v" * (REQUEST_MAX_BYTES - len(empty))
    with pytest.raises(RequestError, match="larger than"):
        parse_request("r", value + " ")


@pytest.mark.parametrize("value", ["{", "not json", "{'env': []}", '{"a": 1,}'])
def test_non_json(value: str) -> None:
    with pytest.raises(RequestError, match="not JSON"):
        parse_request("r", value)


@pytest.mark.parametrize("value", ["[]", '"text"', "1", "null", "true"])
def test_non_object(value: str) -> None:
    with pytest.raises(RequestError, match="must be a JSON object"):
        parse_request("r", value)


def test_unknown_fields_are_named_sorted() -> None:
    with pytest.raises(RequestError, match=r"unknown request field\(s\): from, zzz$"):
        parse_request("r", '{"zzz": 1, "env": [], "from": "x"}')


@pytest.mark.parametrize("field", ["env", "buildArgs"])
@pytest.mark.parametrize(
    ("entries", "match"),
    [
        ({"name": "A"}, "must be a list"),
        ("A=1", "must be a list"),
        ([{"name": "A"}] * 129, "must be a list of at most 128"),
        (["A=1"], "need a string name"),
        ([{"value": "1"}], "need a string name"),
        ([{"name": 5, "value": "1"}], "need a string name"),
        ([{"name": "1ABC", "value": "1"}], "not a valid variable name"),
        ([{"name": "", "value": "1"}], "not a valid variable name"),
        ([{"name": "A B", "value": "1"}], "not a valid variable name"),
        ([{"name": "A=B", "value": "1"}], "not a valid variable name"),
        ([{"name": "A", "value": 1}], "must be a string"),
        ([{"name": "A", "value": None}], "must be a string"),
        ([{"name": "A", "value": True}], "must be a string"),
    ],
)
def test_bad_env_and_build_args(field: str, entries: object, match: str) -> None:
    with pytest.raises(RequestError, match=match) as caught:
        parse_request("r", json.dumps({field: entries}))
    assert str(caught.value).startswith(field)


@pytest.mark.parametrize("field", ["env", "buildArgs"])
def test_128_entries_are_allowed(field: str) -> None:
    entries = [{"name": f"V{i}", "value": str(i)} for i in range(128)]
    request = parse_request("r", json.dumps({field: entries}))
    pairs = request.env if field == "env" else request.build_args
    assert len(pairs) == 128
    assert pairs[-1] == ("V127", "127")


@pytest.mark.parametrize("name", ["_A", ".a", "-x", "a.b-c_D9", "lower"])
def test_env_names_kubernetes_accepts(name: str) -> None:
    assert parse_request("r", json.dumps({"env": [{"name": name, "value": ""}]})).env == (
        (name, ""),
    )


@pytest.mark.parametrize(
    ("request_id", "value"),
    [
        ("r", json.dumps({"env": [{"name": "FOO\n", "value": "x"}]})),
        ("r", json.dumps({"buildArgs": [{"name": "FOO\n", "value": "x"}]})),
        ("abc\n", ""),
    ],
    ids=["env-name", "build-arg-name", "request-id"],
)
def test_trailing_newline_is_not_a_valid_name(request_id: str, value: str) -> None:
    with pytest.raises(RequestError):
        parse_request(request_id, value)


@pytest.mark.parametrize(
    "binary",
    [
        {"asFile": "a/b"},
        {"asFile": "/abs"},
        {"asFile": ".."},
        {"asFile": "."},
        {"asFile": ""},
        {"asFile": 3},
    ],
)
def test_bad_binary_as_file(binary: object) -> None:
    with pytest.raises(RequestError, match="plain file name"):
        parse_request("r", json.dumps({"binary": binary}))


@pytest.mark.parametrize("binary", [[], "app.jar", True, {"asFile": "a", "other": 1}])
def test_bad_binary_shape(binary: object) -> None:
    with pytest.raises(RequestError, match="binary must be"):
        parse_request("r", json.dumps({"binary": binary}))


@pytest.mark.parametrize("name", ["app.jar", "..hidden", "a..b", "weird name;rm -rf x"])
def test_as_file_plain_names_pass(name: str) -> None:
    assert parse_request("r", json.dumps({"binary": {"asFile": name}})).binary == {"asFile": name}


@pytest.mark.parametrize("field", ["noCache", "incremental"])
@pytest.mark.parametrize("value", ["true", 1, 0, "false", [], {}])
def test_bad_booleans(field: str, value: object) -> None:
    with pytest.raises(RequestError, match=f"{field} must be true or false"):
        parse_request("r", json.dumps({field: value}))


@pytest.mark.parametrize(
    ("field", "value", "limit"),
    [
        ("commit", "", 256),
        ("commit", 123, 256),
        ("commit", "a" * 257, 256),
        ("fromBuild", "", 253),
        ("fromBuild", ["web-1"], 253),
        ("fromBuild", "b" * 254, 253),
    ],
)
def test_bad_strings(field: str, value: object, limit: int) -> None:
    with pytest.raises(
        RequestError, match=f"{field} must be a non-empty string of at most {limit}"
    ):
        parse_request("r", json.dumps({field: value}))


def test_string_limits_are_inclusive() -> None:
    request = parse_request("r", json.dumps({"commit": "a" * 256, "fromBuild": "b" * 253}))
    assert request.commit == "a" * 256
    assert request.from_build == "b" * 253


@pytest.mark.parametrize("causes", [{}, "manual", [{"message": "x"}, "y"], [["x"]]])
def test_bad_triggered_by(causes: object) -> None:
    with pytest.raises(RequestError, match="triggeredBy must be a list of objects"):
        parse_request("r", json.dumps({"triggeredBy": causes}))


# --- pending_requests --------------------------------------------------------------


def test_pending_requests_none_and_empty() -> None:
    assert pending_requests(None) == ([], [])
    assert pending_requests({}) == ([], [])


def test_pending_requests_ignore_other_annotations_sort_and_split() -> None:
    annotations = {
        f"{REQUEST_PREFIX}c-3": '{"noCache": true}',
        "kubectl.kubernetes.io/last-applied-configuration": "{}",
        f"{REQUEST_PREFIX}a-1": "",
        "start.build.headwater.dev.other/x": "",  # a different prefix
        f"{REQUEST_PREFIX}bad id": "",
        f"{REQUEST_PREFIX}b-2": "[1]",
        "start.build.headwater.dev": "",
        f"{REQUEST_PREFIX}d-4": '{"env": [{"name": "X", "value": "y"}]}',
    }
    good, bad = pending_requests(annotations)
    assert [key for key, _ in good] == [
        f"{REQUEST_PREFIX}a-1",
        f"{REQUEST_PREFIX}c-3",
        f"{REQUEST_PREFIX}d-4",
    ]
    assert [request.id for _, request in good] == ["a-1", "c-3", "d-4"]
    assert good[1][1].no_cache is True
    assert good[2][1].env == (("X", "y"),)
    assert [key for key, _ in bad] == [f"{REQUEST_PREFIX}b-2", f"{REQUEST_PREFIX}bad id"]
    assert "JSON object" in bad[0][1]
    assert "request id" in bad[1][1]


def test_pending_requests_order_is_key_order_not_insertion_order() -> None:
    keys = [f"{REQUEST_PREFIX}{name}" for name in ("z", "m", "a", "B")]
    good, _ = pending_requests(dict.fromkeys(keys, ""))
    assert [request.id for _, request in good] == ["B", "a", "m", "z"]


def test_pending_requests_empty_id_is_bad() -> None:
    good, bad = pending_requests({REQUEST_PREFIX: ""})
    assert good == []
    assert bad[0][0] == REQUEST_PREFIX


# --- request_value round trip -----------------------------------------------------

_names = st.from_regex(r"[-._a-zA-Z][-._a-zA-Z0-9]{0,20}", fullmatch=True)
_pairs = st.lists(st.tuples(_names, st.text(max_size=40)), max_size=6).map(tuple)
_json_scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=10)
_causes = st.lists(
    st.dictionaries(st.text(min_size=1, max_size=8), _json_scalars, max_size=3), max_size=3
).map(tuple)
_plain_file = st.text(min_size=1, max_size=30).filter(
    lambda s: "/" not in s and s not in (".", "..")
)


@st.composite
def start_requests(draw: st.DrawFn) -> StartRequest:
    return StartRequest(
        id=draw(st.from_regex(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?", fullmatch=True)),
        env=draw(_pairs),
        build_args=draw(_pairs),
        commit=draw(st.none() | st.text(min_size=1, max_size=256)),
        no_cache=draw(st.none() | st.booleans()),
        incremental=draw(st.none() | st.booleans()),
        binary=draw(st.none() | st.just({}) | _plain_file.map(lambda n: {"asFile": n})),
        from_build=draw(st.none() | st.text(min_size=1, max_size=253)),
        causes=draw(_causes),
    )


@given(start_requests())
def test_request_value_round_trips(request: StartRequest) -> None:
    value = request_value(request)
    assert parse_request(request.id, value) == request


@given(st.text(), st.text())
def test_env_values_of_any_text_round_trip(a: str, b: str) -> None:
    request = StartRequest(id="r", env=(("A", a), ("B", b)), build_args=(("ARG", a + b),))
    parsed = parse_request("r", request_value(request))
    assert parsed.env == (("A", a), ("B", b))
    assert parsed.build_args == (("ARG", a + b),)


def test_request_value_of_a_plain_request_is_empty() -> None:
    assert request_value(StartRequest(id="r")) == ""


def test_request_value_keeps_false_booleans_and_empty_binary() -> None:
    doc = json.loads(request_value(StartRequest(id="r", no_cache=False, binary={})))
    assert doc == {"noCache": False, "binary": {}}


# --- build_spec --------------------------------------------------------------------


def test_only_the_common_spec_is_copied() -> None:
    source = bc_spec()
    spec = build_spec(source, StartRequest(id="r"))
    assert set(spec) == {*COMMON_SPEC_FIELDS, "triggeredBy"}
    for key in COMMON_SPEC_FIELDS:
        assert spec[key] == source[key], key
    for key in (
        "triggers",
        "runPolicy",
        "successfulBuildsHistoryLimit",
        "failedBuildsHistoryLimit",
    ):
        assert key not in spec


def test_absent_common_fields_stay_absent() -> None:
    spec = build_spec({"strategy": copy.deepcopy(DOCKER_STRATEGY)}, StartRequest(id="r"))
    assert set(spec) == {"strategy", "triggeredBy"}


def test_default_cause_is_manual() -> None:
    spec = build_spec(bc_spec(), StartRequest(id="r"))
    assert spec["triggeredBy"] == [{"message": "Manually triggered"}]


def test_causes_from_the_request() -> None:
    cause = {
        "message": "Image change",
        "imageChangeBuild": {"imageID": "sha256:" + "a" * 64, "fromRef": {"name": "py:3"}},
    }
    spec = build_spec(bc_spec(), StartRequest(id="r", causes=(cause,)))
    assert spec["triggeredBy"] == [cause]


@pytest.mark.parametrize("kind", ["Docker", "Source", "Custom"])
def test_env_override_replaces_by_name_and_appends_new(kind: str) -> None:
    source = bc_spec(STRATEGIES[kind])
    request = StartRequest(id="r", env=(("B", "two"), ("C", "3")))
    spec = build_spec(source, request)
    assert env_of(spec, kind) == [
        {"name": "A", "value": "1"},
        {"name": "B", "value": "two"},
        {"name": "C", "value": "3"},
    ]


@pytest.mark.parametrize("kind", ["Docker", "Source", "Custom"])
def test_env_override_creates_env_and_block_when_missing(kind: str) -> None:
    source = bc_spec({"type": kind})
    spec = build_spec(source, StartRequest(id="r", env=(("X", "1"),)))
    assert env_of(spec, kind) == [{"name": "X", "value": "1"}]


def test_env_override_replaces_value_from() -> None:
    strategy = copy.deepcopy(DOCKER_STRATEGY)
    strategy["dockerStrategy"]["env"] = [
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}
    ]
    spec = build_spec(bc_spec(strategy), StartRequest(id="r", env=(("TOKEN", "plain"),)))
    # value and valueFrom are exclusive: the override must not keep valueFrom.
    assert env_of(spec, "Docker") == [{"name": "TOKEN", "value": "plain"}]


def test_no_env_override_keeps_env_untouched() -> None:
    spec = build_spec(bc_spec(), StartRequest(id="r"))
    assert env_of(spec, "Docker") == DOCKER_STRATEGY["dockerStrategy"]["env"]


def test_build_args_and_no_cache_apply_to_docker() -> None:
    request = StartRequest(
        id="r", build_args=(("HTTP_PROXY", "http://other:3128"), ("V", "2")), no_cache=True
    )
    block = build_spec(bc_spec(), request)["strategy"]["dockerStrategy"]
    assert block["buildArgs"] == [
        {"name": "HTTP_PROXY", "value": "http://other:3128"},
        {"name": "V", "value": "2"},
    ]
    assert block["noCache"] is True


def test_no_cache_false_overrides_true() -> None:
    strategy = copy.deepcopy(DOCKER_STRATEGY)
    strategy["dockerStrategy"]["noCache"] = True
    spec = build_spec(bc_spec(strategy), StartRequest(id="r", no_cache=False))
    assert spec["strategy"]["dockerStrategy"]["noCache"] is False


def test_build_args_and_no_cache_ignored_for_custom() -> None:
    source = bc_spec(STRATEGIES["Custom"])
    request = StartRequest(id="r", build_args=(("V", "2"),), no_cache=True)
    block = build_spec(source, request)["strategy"][BLOCKS["Custom"]]
    assert block == STRATEGIES["Custom"][BLOCKS["Custom"]]


def test_no_cache_applies_to_source_but_build_args_do_not() -> None:
    """S2I builds have a layer cache too (their Dockerfile is generated):
    ``start-build --no-cache`` turns it off for the one build."""
    source = bc_spec(STRATEGIES["Source"])
    request = StartRequest(id="r", build_args=(("V", "2"),), no_cache=True)
    block = build_spec(source, request)["strategy"]["sourceStrategy"]
    assert block == {**STRATEGIES["Source"]["sourceStrategy"], "noCache": True}


def test_incremental_applies_to_source_only() -> None:
    spec = build_spec(bc_spec(SOURCE_STRATEGY), StartRequest(id="r", incremental=True))
    assert spec["strategy"]["sourceStrategy"]["incremental"] is True
    for kind in ("Docker", "Custom"):
        block = build_spec(bc_spec(STRATEGIES[kind]), StartRequest(id="r", incremental=True))[
            "strategy"
        ][BLOCKS[kind]]
        assert "incremental" not in block


def test_commit_sets_revision() -> None:
    source = bc_spec()
    spec = build_spec(source, StartRequest(id="r", commit="deadbeef"))
    assert spec["revision"] == {"type": "Git", "git": {"commit": "deadbeef"}}
    assert spec["source"] == source["source"]  # the ref is kept; the commit wins in the fetch


@pytest.mark.parametrize(
    "source",
    [
        None,
        {"type": "Binary", "binary": {}},
        {"type": "Dockerfile", "dockerfile": "FROM scratch"},
        {"type": "Git", "git": {}},
    ],
)
def test_commit_needs_a_git_source(source: dict[str, Any] | None) -> None:
    spec = bc_spec()
    if source is None:
        del spec["source"]
    else:
        spec["source"] = source
    with pytest.raises(RequestError, match="--commit needs a Git source"):
        build_spec(spec, StartRequest(id="r", commit="deadbeef"))


def test_binary_needs_a_binary_source() -> None:
    with pytest.raises(RequestError, match=r"source type Binary.*source is Git"):
        build_spec(bc_spec(), StartRequest(id="r", binary={}))
    spec = bc_spec()
    del spec["source"]
    with pytest.raises(RequestError, match="source type Binary"):
        build_spec(spec, StartRequest(id="r", binary={"asFile": "a.jar"}))


def test_binary_as_file_from_request_or_buildconfig() -> None:
    source = bc_spec(source={"type": "Binary", "binary": {"asFile": "from-bc.war"}})
    kept = build_spec(source, StartRequest(id="r", binary={}))
    assert kept["source"] == {"type": "Binary", "binary": {"asFile": "from-bc.war"}}
    replaced = build_spec(source, StartRequest(id="r", binary={"asFile": "app.jar"}))
    assert replaced["source"]["binary"] == {"asFile": "app.jar"}
    bare = build_spec(bc_spec(source={"type": "Binary"}), StartRequest(id="r", binary={}))
    assert bare["source"]["binary"] == {}


def test_build_spec_never_mutates_its_input() -> None:
    source = bc_spec(source={"type": "Binary", "binary": {"asFile": "x"}})
    source["strategy"]["dockerStrategy"]["env"].append({"name": "C", "value": "3"})
    snapshot = copy.deepcopy(source)
    request = StartRequest(
        id="r",
        env=(("A", "changed"), ("NEW", "1")),
        build_args=(("HTTP_PROXY", "p"),),
        no_cache=True,
        binary={"asFile": "y"},
        causes=({"message": "m"},),
    )
    spec = build_spec(source, request)
    assert source == snapshot
    # And the result shares no mutable structure with the input.
    spec["nodeSelector"]["extra"] = "1"
    spec["resources"]["limits"]["cpu"] = "1"
    spec["postCommit"]["script"] = "changed"
    assert source == snapshot


def test_build_spec_result_independent_of_later_request_changes() -> None:
    binary = {"asFile": "a.jar"}
    cause = {"message": "m"}
    spec = build_spec(
        bc_spec(source={"type": "Binary"}), StartRequest(id="r", binary=binary, causes=(cause,))
    )
    spec["source"]["binary"]["asFile"] = "other"
    spec["triggeredBy"][0]["message"] = "other"
    assert binary == {"asFile": "a.jar"}
    assert cause == {"message": "m"}


# --- render_build ------------------------------------------------------------------


def test_render_build_metadata() -> None:
    bc = buildconfig()
    build = render_build(bc, 7, StartRequest(id="req-7"))
    assert build["apiVersion"] == API_VERSION
    assert build["kind"] == "Build"
    metadata = build["metadata"]
    assert metadata["name"] == "web-7"
    assert metadata["namespace"] == "shop"
    assert metadata["labels"] == {
        "app": "shop",
        "team": "payments",
        LABEL_BUILDCONFIG: "web",
        OPENSHIFT_BUILDCONFIG_LABEL: "web",
        OPENSHIFT_LEGACY_BUILDCONFIG_LABEL: "web",
        OPENSHIFT_START_POLICY_LABEL: "Parallel",
        LABEL_REQUEST: "req-7",
    }
    assert metadata["annotations"] == {
        ANNOTATION_BUILDCONFIG: "web",
        ANNOTATION_NUMBER: "7",
        ANNOTATION_RUN_POLICY: "Parallel",
        OPENSHIFT_BUILDCONFIG_LABEL: "web",
        OPENSHIFT_NUMBER_ANNOTATION: "7",
    }
    assert metadata["ownerReferences"] == [
        {
            "apiVersion": API_VERSION,
            "kind": "BuildConfig",
            "name": "web",
            "uid": "6f1c8e0a-0000-4000-8000-000000000001",
            "controller": True,
        }
    ]
    assert buildconfig_of(build) == "web"


def test_render_build_run_policy_defaults_to_serial() -> None:
    spec = bc_spec()
    del spec["runPolicy"]
    build = render_build(buildconfig(spec), 1, StartRequest(id="r"))
    assert build["metadata"]["annotations"][ANNOTATION_RUN_POLICY] == "Serial"
    assert build["metadata"]["labels"][OPENSHIFT_START_POLICY_LABEL] == "Serial"


def test_render_build_own_labels_cannot_spoof_identity() -> None:
    bc = buildconfig(
        labels={
            LABEL_BUILDCONFIG: "other",
            LABEL_REQUEST: "stolen",
            OPENSHIFT_BUILDCONFIG_LABEL: "x",
            OPENSHIFT_LEGACY_BUILDCONFIG_LABEL: "y",
        }
    )
    labels = render_build(bc, 2, StartRequest(id="mine"))["metadata"]["labels"]
    assert labels[LABEL_BUILDCONFIG] == "web"
    assert labels[OPENSHIFT_BUILDCONFIG_LABEL] == "web"
    assert labels[OPENSHIFT_LEGACY_BUILDCONFIG_LABEL] == "web"
    assert labels[LABEL_REQUEST] == "mine"


def test_render_build_without_labels() -> None:
    bc = buildconfig()
    del bc["metadata"]["labels"]
    labels = render_build(bc, 1, StartRequest(id="r"))["metadata"]["labels"]
    assert labels == {
        LABEL_BUILDCONFIG: "web",
        OPENSHIFT_BUILDCONFIG_LABEL: "web",
        OPENSHIFT_LEGACY_BUILDCONFIG_LABEL: "web",
        OPENSHIFT_START_POLICY_LABEL: "Parallel",
        LABEL_REQUEST: "r",
    }


def test_render_build_inherits_only_the_executor_annotation() -> None:
    bc = buildconfig(
        annotations={
            "build.headwater.dev/executor": "kaniko",
            "kubectl.kubernetes.io/last-applied-configuration": "{}",
            "start.build.headwater.dev/req-1": "",
            ANNOTATION_NUMBER: "999",
        }
    )
    annotations = render_build(bc, 4, StartRequest(id="r"))["metadata"]["annotations"]
    assert annotations["build.headwater.dev/executor"] == "kaniko"
    assert annotations[ANNOTATION_NUMBER] == "4"
    assert "kubectl.kubernetes.io/last-applied-configuration" not in annotations
    assert not any(key.startswith("start.build.headwater.dev/") for key in annotations)


def test_render_build_long_buildconfig_name() -> None:
    long_name = "a-very-long-buildconfig-name-" + "x" * 200
    build = render_build(buildconfig(name=long_name), 12, StartRequest(id="r"))
    metadata = build["metadata"]
    assert metadata["name"] == f"{long_name}-12"
    for key in (LABEL_BUILDCONFIG, OPENSHIFT_BUILDCONFIG_LABEL, OPENSHIFT_LEGACY_BUILDCONFIG_LABEL):
        value = metadata["labels"][key]
        assert len(value) <= LABEL_VALUE_MAX
        assert re.fullmatch(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?", value), value
    assert metadata["annotations"][ANNOTATION_BUILDCONFIG] == long_name
    assert buildconfig_of(build) == long_name
    other = render_build(buildconfig(name=long_name + "y"), 1, StartRequest(id="r"))
    assert other["metadata"]["labels"][LABEL_BUILDCONFIG] != metadata["labels"][LABEL_BUILDCONFIG]


def test_render_build_spec_from_the_buildconfig_with_overrides() -> None:
    bc = buildconfig()
    build = render_build(bc, 1, StartRequest(id="r", env=(("A", "x"),)))
    assert build["spec"] == build_spec(bc["spec"], StartRequest(id="r", env=(("A", "x"),)))
    assert "triggers" not in build["spec"]
    assert "runPolicy" not in build["spec"]


def test_render_build_from_build_copies_that_spec() -> None:
    bc = buildconfig()
    previous = build_spec(
        bc_spec(source={"type": "Git", "git": {"uri": "https://old/repo.git"}}),
        StartRequest(id="old", causes=({"message": "GitHub WebHook"},)),
    )
    request = StartRequest(id="r", from_build="web-3")
    build = render_build(bc, 4, request, previous)
    assert build["spec"]["source"] == {"type": "Git", "git": {"uri": "https://old/repo.git"}}
    # The re-run is its own cause, not the old build's.
    assert build["spec"]["triggeredBy"] == [{"message": "Manually triggered"}]
    # Identity still comes from the BuildConfig.
    assert build["metadata"]["name"] == "web-4"
    assert build["metadata"]["annotations"][ANNOTATION_RUN_POLICY] == "Parallel"


def test_render_build_empty_source_spec_is_not_the_buildconfig_spec() -> None:
    build = render_build(buildconfig(), 1, StartRequest(id="r"), {})
    assert "source" not in build["spec"]


def test_render_build_leaves_the_buildconfig_alone() -> None:
    bc = buildconfig()
    snapshot = copy.deepcopy(bc)
    build = render_build(bc, 1, StartRequest(id="r", env=(("A", "z"),), no_cache=True))
    build["metadata"]["labels"]["new"] = "x"
    build["spec"]["strategy"]["dockerStrategy"]["env"].append({"name": "Q"})
    assert bc == snapshot
