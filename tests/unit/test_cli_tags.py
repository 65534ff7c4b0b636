"""The pure parts of ``headwater tag`` and ``headwater import-image``."""

from __future__ import annotations

from typing import Any

import pytest

from headwater.cli.tags import (
    StreamTag,
    TagError,
    all_tag_sources,
    delete_patch,
    docker_image_tag,
    dry_run_lines,
    import_result,
    parse_stream_tag,
    stream_tag_tag,
)

DIGEST = "sha256:" + "d" * 64


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("web:1.0", StreamTag("ns", "web", "1.0")),
        ("prod/web:1.0", StreamTag("prod", "web", "1.0")),
        ("my.web:v_1", StreamTag("ns", "my.web", "v_1")),
    ],
)
def test_parse_stream_tag(text: str, expected: StreamTag) -> None:
    assert parse_stream_tag(text, "ns") == expected


@pytest.mark.parametrize("text", ["web", "Web:1", "a/b/c:1", "web:", ":1", "web:-x"])
def test_parse_stream_tag_rejects(text: str) -> None:
    with pytest.raises(TagError, match="is not"):
        parse_stream_tag(text, "ns")
    assert parse_stream_tag("web", "ns", default_tag="latest") == StreamTag("ns", "web", "latest")


def stream(condition: dict[str, Any] | None, annotated: bool = False) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "tag": "1.0",
        "items": [{"image": DIGEST, "dockerImageReference": f"reg/web@{DIGEST}"}],
    }
    if condition:
        entry["conditions"] = [{"type": "ImportSuccess", **condition}]
    annotations = {"image.headwater.dev/import-requested": "1.0"} if annotated else {}
    return {"metadata": {"annotations": annotations}, "status": {"tags": [entry]}}


def test_import_result_waits_for_the_generation_and_the_annotation() -> None:
    ok = {"status": "True", "generation": 3}
    assert import_result(stream(None), "1.0", 3) == (False, False, "")
    assert import_result(stream({**ok, "generation": 2}), "1.0", 3) == (False, False, "")
    assert import_result(stream(ok, annotated=True), "1.0", 3) == (False, False, "")
    assert import_result(stream(ok), "1.0", 3) == (True, True, f"reg/web@{DIGEST}")
    failed = {"status": "False", "generation": 3, "reason": "NotFound", "message": "no tag"}
    assert import_result(stream(failed), "1.0", 3) == (True, False, "NotFound: no tag")


def test_pin_needs_an_image_and_alias_does_not() -> None:
    source = StreamTag("staging", "web", "1.0")
    pinned = stream_tag_tag("prod", source, stream(None), alias=False)
    assert pinned["from"] == {
        "kind": "ImageStreamImage",
        "name": f"web@{DIGEST}",
        "namespace": "staging",
    }
    alias = stream_tag_tag("prod", source, None, alias=True)
    assert alias["from"] == {"kind": "ImageStreamTag", "name": "web:1.0", "namespace": "staging"}
    # A tag that does not exist is said to not exist, with the stream's tags (issue 19).
    with pytest.raises(TagError, match=r"^staging/web:lates does not exist \(its tags: 1\.0\)$"):
        stream_tag_tag("prod", StreamTag("staging", "web", "lates"), stream(None), alias=False)
    waiting = stream(None)
    waiting["spec"] = {"tags": [{"name": "2.0", "from": {"kind": "DockerImage", "name": "x"}}]}
    with pytest.raises(TagError, match=r"staging/web:2\.0 has no image yet"):
        stream_tag_tag("prod", StreamTag("staging", "web", "2.0"), waiting, alias=False)


EXISTING = {
    "name": "v1",
    "annotations": {"owner": "shop"},
    "from": {"kind": "DockerImage", "name": "10.244.0.1:5000/app:v1"},
    "generation": 4,
    "reference": False,
    "importPolicy": {"insecure": True, "scheduled": True, "importMode": "PreserveOriginal"},
    "referencePolicy": {"type": "Local"},
}


def test_rewriting_a_tag_keeps_every_setting_not_given() -> None:
    # Issue 19: `import-image app:v1` again rewrote insecure and scheduled to false.
    again = docker_image_tag("v1", "10.244.0.1:5000/app:v1", existing=EXISTING, reference=False)
    assert again == {key: value for key, value in EXISTING.items() if key != "generation"}
    changed = docker_image_tag(
        "v1", "10.244.0.1:5000/app:v2", existing=EXISTING, insecure=False,
        reference_policy="Source",
    )  # fmt: skip
    assert changed["from"]["name"] == "10.244.0.1:5000/app:v2"
    assert changed["importPolicy"] == {
        "insecure": False, "scheduled": True, "importMode": "PreserveOriginal",
    }  # fmt: skip
    assert changed["referencePolicy"] == {"type": "Source"}
    assert changed["annotations"] == {"owner": "shop"}
    fresh = docker_image_tag("v1", "app:v1")
    assert fresh == {
        "name": "v1",
        "from": {"kind": "DockerImage", "name": "app:v1"},
        "reference": False,
        "importPolicy": {"scheduled": False, "insecure": False, "importMode": "Legacy"},
        "referencePolicy": {"type": "Source"},
    }
    assert EXISTING["importPolicy"] == {  # not changed in place
        "insecure": True, "scheduled": True, "importMode": "PreserveOriginal",
    }  # fmt: skip


def test_pointing_a_tag_at_another_keeps_its_settings() -> None:
    source = StreamTag("staging", "web", "1.0")
    alias = stream_tag_tag("v1", source, None, alias=True, existing=EXISTING)
    assert alias["from"] == {"kind": "ImageStreamTag", "name": "web:1.0", "namespace": "staging"}
    assert alias["importPolicy"] == EXISTING["importPolicy"]
    assert alias["referencePolicy"] == {"type": "Local"}
    assert "generation" not in alias


def test_istag_rows_and_table() -> None:
    from headwater.cli.describe import istag_rows, table

    streams = [stream({"status": "True", "generation": 1})]
    streams[0]["metadata"]["name"] = "web"
    streams[0]["status"]["tags"][0]["items"][0]["created"] = "2026-11-28T12:00:00Z"
    streams[0]["status"]["tags"].append({"tag": "empty", "items": []})
    rows = istag_rows(streams)
    assert rows == [("web:1.0", f"reg/web@{DIGEST}", "2026-11-28T12:00:00Z")]
    text = table(("NAME", "IMAGE REFERENCE", "UPDATED"), rows)
    assert text.splitlines()[1].startswith("web:1.0   reg/web@")


def test_all_tag_sources_sorts_caps_and_skips_invalid_names() -> None:
    assert all_tag_sources(["b", "a", "c", "a"], 50) == (["a", "b", "c"], 0)
    assert all_tag_sources(["b", "a", "c"], 2) == (["a", "b"], 1)
    assert all_tag_sources(["1.0", "-bad", "x" * 129], 50) == (["1.0"], 2)


def test_delete_patch_tests_the_name_at_the_index() -> None:
    tags = [{"name": "a"}, {"name": "old"}]
    assert delete_patch(tags, "name", "old", "/spec/tags") == [
        {"op": "test", "path": "/spec/tags/1/name", "value": "old"},
        {"op": "remove", "path": "/spec/tags/1"},
    ]
    assert delete_patch([{"tag": "old"}], "tag", "old", "/status/tags")[-1] == {  # type: ignore[index]
        "op": "remove",
        "path": "/status/tags/0",
    }
    assert delete_patch(tags, "name", "nope", "/spec/tags") is None
    assert delete_patch(None, "name", "old", "/spec/tags") is None


def test_dry_run_lines_list_an_index_platforms() -> None:
    lines = dry_run_lines("1.0", "reg/web", DIGEST, "application/vnd.oci.image.index.v1+json",
                          [("linux/amd64", "sha256:a"), ("linux/arm64", "sha256:b")])  # fmt: skip
    assert lines == [
        f"1.0\treg/web@{DIGEST}\tapplication/vnd.oci.image.index.v1+json",
        "  linux/amd64\tsha256:a",
        "  linux/arm64\tsha256:b",
    ]


class _Stream:
    """A client whose stream shows the tag's image from the ``after``-th read on."""

    def __init__(self, after: int, image: str) -> None:
        self.reads, self.after, self.image = 0, after, image

    def get(self, resource: Any, name: str, namespace: str) -> dict[str, Any]:
        self.reads += 1
        items = [{"image": self.image}] if self.reads >= self.after else []
        return {"status": {"tags": [{"tag": "prod", "items": items}]}}


def test_tag_from_another_tag_waits_until_the_operator_records_its_image(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from headwater.cli.main import _wait_for_tag

    client = _Stream(after=3, image=DIGEST)
    _wait_for_tag(client, None, StreamTag("ns", "web", "prod"), DIGEST, settle=5)
    assert client.reads == 3
    assert capsys.readouterr().err == ""
    # Not recorded in time: a warning, not a failure (the spec is written).
    late = _Stream(after=10**6, image=DIGEST)
    _wait_for_tag(late, None, StreamTag("ns", "web", "prod"), DIGEST, settle=0.3)
    assert "has not recorded" in capsys.readouterr().err
