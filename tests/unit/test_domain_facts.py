"""Each domain fact is written in one module; everything else imports it.

Copies drift: ``doctor`` once read a Build's BuildConfig from its (shortened)
labels while the operator read the full-name annotation, and lost the builds
of long BuildConfig names. These tests fail when a fact is written again
outside its module, and check that the copies that were removed still agree.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from headwater.builds.model import label_value
from headwater.cli import newapp
from headwater.cli import triggers as cli_triggers
from headwater.imports.lookup import short_name
from headwater.registry.credentials import PULL_SECRET_TYPES
from headwater.registry.reference import TAG_PATTERN, is_tag
from headwater.timefmt import format_time, parse_time
from headwater.workloads.triggers import (
    ANNOTATION_HEADWATER,
    ANNOTATION_OPENSHIFT,
    TRIGGER_ANNOTATIONS,
)

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "operator" / "headwater"
SOURCES = sorted(
    path
    for folder in (PACKAGE, REPO / "hack", REPO / "bench")
    for path in folder.rglob("*.py")
    if ".venv" not in path.parts
)

# Each needle is a piece of the fact's spelling that nothing else would write.
# (Built from parts, so this file does not match itself.)
FACTS = {
    "the Docker tag grammar": ("{0," + "127}", "registry/reference.py"),
    "the ImageStream name grammar": (
        r"(?:\." + r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*",
        "imports/model.py",
    ),
    "the pull secret types": ('"kubernetes.io/' + 'dockercfg"', "registry/credentials.py"),
    "OpenShift's trigger annotation": (
        '"image.openshift.io/' + 'triggers"',
        "workloads/triggers.py",
    ),
    "Headwater's trigger annotation": (
        '"image.headwater.dev/' + 'triggers"',
        "workloads/triggers.py",
    ),
    "OpenShift's BuildConfig label": ('"openshift.io/' + 'build-config.name"', "builds/model.py"),
    "reading an RFC 3339 time": ("fromiso" + "format(", "timefmt.py"),
    "writing an RFC 3339 time": ('"%Y-%m-%dT%H:%M:' + '%SZ"', "timefmt.py"),
}


@pytest.mark.parametrize("fact", sorted(FACTS))
def test_a_fact_is_written_in_one_module(fact: str) -> None:
    needle, owner = FACTS[fact]
    found = [
        str(path.relative_to(REPO))
        for path in SOURCES
        if needle in path.read_text(encoding="utf-8")
    ]
    assert found == [str((PACKAGE / owner).relative_to(REPO))], (
        f"{fact} is written outside {owner}: import it from there"
    )


def test_the_cli_uses_the_operators_trigger_annotations() -> None:
    assert TRIGGER_ANNOTATIONS == (ANNOTATION_HEADWATER, ANNOTATION_OPENSHIFT)
    assert newapp.TRIGGER_ANNOTATION == ANNOTATION_OPENSHIFT
    # Both keys set: Headwater's wins, in the CLI as in the operator.
    both = {"metadata": {"annotations": {ANNOTATION_OPENSHIFT: "[]", ANNOTATION_HEADWATER: "[]"}}}
    assert cli_triggers.read_annotation(both)[0] == ANNOTATION_HEADWATER


def test_the_pull_secret_types() -> None:
    assert {"kubernetes.io/dockerconfigjson", "kubernetes.io/dockercfg"} == PULL_SECRET_TYPES


@pytest.mark.parametrize(
    ("tag", "valid"),
    [
        ("latest", True),
        ("v1.2.3-rc_1", True),
        ("_x", True),
        ("x" * 128, True),
        ("x" * 129, False),
        (".hidden", False),
        ("-dash", False),
        ("é", False),  # Go's \w is ASCII
        ("a/b", False),
        ("", False),
    ],
)
def test_one_tag_grammar(tag: str, valid: bool) -> None:
    assert is_tag(tag) is valid
    assert (re.fullmatch(TAG_PATTERN, tag) is not None) is valid
    assert (short_name(f"web:{tag}") is not None) is valid


def test_times_read_back_what_they_write() -> None:
    moment = parse_time("2026-01-02T03:04:05Z")
    assert moment is not None
    assert format_time(moment) == "2026-01-02T03:04:05Z"
    assert parse_time("2026-01-02T03:04:05.123456789Z") == parse_time("2026-01-02T03:04:05.123456Z")
    assert parse_time("2026-01-02T04:04:05+01:00") == moment
    # No offset: UTC, so it still compares with the API server's times.
    assert parse_time("2026-01-02T03:04:05") == moment
    for bad in (None, "", "yesterday", 5, "2026-13-01T00:00:00Z"):
        assert parse_time(bad) is None


def test_a_buildconfig_label_never_holds_a_long_name() -> None:
    """Why the label lookup of a BuildConfig reads the full-name annotation first."""
    name = "web-" + "x" * 66
    assert len(name) == 70
    assert label_value(name) != name
    assert len(label_value(name)) <= 63
