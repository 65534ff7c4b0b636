"""bench/console.py's pure parts: the objects it makes are valid and look like real ones."""

from __future__ import annotations

from collections import Counter

from bench.console import (
    build_body,
    build_status,
    buildconfig_body,
    stream_body,
    stream_status,
)
from headwater.builds.model import TERMINAL, build_number, buildconfig_of
from headwater.cli.validation import packaged_schemas, validate


def test_every_object_and_status_fits_its_crd() -> None:
    schemas = packaged_schemas()
    objects = [
        ("image.headwater.dev", {**stream_body(7), "status": stream_status(7, "ns", "r:5000")}),
        ("build.headwater.dev", buildconfig_body(3)),
        *(
            ("build.headwater.dev", {**build_body(3, n), "status": build_status(3, n)})
            for n in (1, 7, 13)
        ),
    ]
    for group, obj in objects:
        problems = validate(obj, schemas[(group, obj["kind"])])
        assert [p for p in problems if p.severity != "info"] == [], obj["metadata"]["name"]


def test_builds_belong_to_their_buildconfig_and_all_have_ended() -> None:
    body = build_body(12, 42)
    assert (buildconfig_of(body), build_number(body)) == ("app-012", 42)
    phases = Counter(build_status(1, n)["phase"] for n in range(1, 101))
    assert set(phases) <= TERMINAL
    assert phases["Complete"] > 70
    assert phases["Failed"]
    assert phases["Cancelled"]


def test_streams_have_three_tags_with_history_and_no_spec_to_import() -> None:
    assert "spec" not in stream_body(1)
    tags = stream_status(1, "ns", "r:5000")["tags"]
    assert [t["tag"] for t in tags] == ["latest", "stable", "v1"]
    assert all(len(t["items"]) == 3 for t in tags)
    assert tags[0]["items"][0]["dockerImageReference"].startswith("r:5000/ns/app-001@sha256:")
