"""How the client verbs print: ages, tables, -o formats, kinds and label selectors."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

import click
import pytest
import yaml
from lightkube import operators

from headwater.cli.kinds import (
    BUILD,
    BUILDCONFIG,
    DEPLOYMENT,
    IMAGESTREAM,
    IMAGESTREAMTAG,
    TRIGGERABLE,
    KindError,
    kind_and_names,
    resolve,
    split_target,
)
from headwater.cli.output import (
    age,
    ago,
    clean,
    colour_enabled,
    fields,
    human_duration,
    mapping_value,
    phase_styler,
    render,
    spinner,
    table,
    when,
)
from headwater.cli.selectors import SelectorError, parse_selector

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-5, "<invalid>"),
        (0, "0s"),
        (119, "119s"),
        (150, "2m30s"),
        (300, "5m"),
        (900, "15m"),
        (3 * 3600, "3h"),
        (5 * 3600 + 600, "5h10m"),
        (30 * 3600, "30h"),
        (3 * 86400 + 4 * 3600, "3d4h"),
        (40 * 86400, "40d"),
        (800 * 86400, "2y70d"),
        (9 * 365 * 86400, "9y"),
    ],
)
def test_human_duration_is_kubectls(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def test_ages_and_times() -> None:
    assert age("2026-11-28T11:55:00Z", NOW) == "5m"
    assert age(None, NOW) == "<unknown>"
    assert ago("2026-11-28T10:00:00Z", NOW) == "120m ago"  # kubectl: minutes up to 3h
    assert ago("2026-11-28T08:00:00Z", NOW) == "4h ago"
    assert ago("", NOW) == ""
    assert when("2026-11-28T11:59:00Z", NOW) == "Sat, 28 Nov 2026 11:59:00 UTC (60s ago)"
    assert when("not a time", NOW) == "<none>"


def test_table_pads_and_paints_after_padding() -> None:
    paint = phase_styler(True)
    cells = [("web-1", "Failed (Boom)", "a"), ("w-2", "Complete", "")]
    text = table(("NAME", "STATUS", "X"), cells, styles={1: paint})
    lines = text.splitlines()
    assert lines[0] == "NAME    STATUS          X"
    assert click.unstyle(lines[1]) == "web-1   Failed (Boom)   a"
    assert "\x1b[31mFailed (Boom)\x1b[0m" in lines[1]
    assert click.unstyle(lines[2]) == "w-2     Complete"
    plain = table(("A",), [("x",)], no_headers=True, styles={0: phase_styler(False)})
    assert plain == "x"


def test_colour_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert colour_enabled(Tty())
    assert not colour_enabled(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not colour_enabled(Tty())


def test_spinner_is_silent_off_a_terminal() -> None:
    out = io.StringIO()
    with spinner("reading", out):
        pass
    assert out.getvalue() == ""


def test_render_formats() -> None:
    objs = [
        {"kind": "BuildConfig", "metadata": {"name": "web", "managedFields": [{"manager": "x"}]}},
        {"kind": "BuildConfig", "metadata": {"name": "api"}},
    ]

    def name_of(o: object) -> str:
        return BUILDCONFIG.object_name(o["metadata"]["name"])  # type: ignore[index]

    assert render(objs, "name", name_of, single=False) == (
        "buildconfig.build.headwater.dev/web\nbuildconfig.build.headwater.dev/api"
    )
    listed = json.loads(render(objs, "json", name_of, single=False))
    assert listed["kind"] == "List"
    assert "managedFields" not in listed["items"][0]["metadata"]
    one = yaml.safe_load(render(objs[:1], "yaml", name_of, single=True))
    assert one == {"kind": "BuildConfig", "metadata": {"name": "web"}}
    assert json.loads(render([], "json", name_of, single=False))["items"] == []
    assert clean({"metadata": {"name": "a"}}) == {"metadata": {"name": "a"}}
    with pytest.raises(ValueError, match="unknown output format"):
        render(objs, "toml", name_of, single=False)


def test_fields_align_and_continue_lines() -> None:
    assert fields([("Name", "web"), ("Labels", "a=1\nb=2")]) == [
        "Name:   web",
        "Labels: a=1",
        "        b=2",
    ]
    assert mapping_value({}) == "<none>"
    assert mapping_value({"b": "2", "a": "1"}) == "a=1\nb=2"


# --- kinds --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("is", IMAGESTREAM),
        ("ImageStreams", IMAGESTREAM),
        ("imagestreams.image.headwater.dev", IMAGESTREAM),
        ("istag", IMAGESTREAMTAG),
        ("imagestreamtag", IMAGESTREAMTAG),
        ("bc", BUILDCONFIG),
        ("buildconfig.build.headwater.dev", BUILDCONFIG),
        ("build", BUILD),
        ("builds", BUILD),
        ("hwbuild", BUILD),
    ],
)
def test_resolve_kinds(text: str, kind: object) -> None:
    assert resolve(text) is kind


def test_kind_errors_and_targets() -> None:
    with pytest.raises(KindError, match="use one of is, istag, bc, build"):
        resolve("pods")
    assert split_target("deploy/web", TRIGGERABLE) == (DEPLOYMENT, "web")
    with pytest.raises(KindError, match="expected TYPE/NAME"):
        split_target("web", TRIGGERABLE)
    assert kind_and_names("bc/web", ("bc/api",)) == (BUILDCONFIG, ("web", "api"))
    assert kind_and_names("builds", ("web-1", "web-2")) == (BUILD, ("web-1", "web-2"))
    with pytest.raises(KindError, match="one type per call"):
        kind_and_names("bc/web", ("is/web",))
    with pytest.raises(KindError, match="as TYPE/NAME too"):
        kind_and_names("bc/web", ("api",))
    assert BUILD.qualified == "builds.build.headwater.dev"
    assert DEPLOYMENT.object_name("web") == "deployment.apps/web"


# --- selectors ----------------------------------------------------------------------


def test_parse_selector() -> None:
    selector = parse_selector("app=web, tier!=db,env in (a, b),!legacy,has,x==y,k notin (c)")
    assert {k: v.encode(k) for k, v in selector.items()} == {  # type: ignore[union-attr]
        "app": "app=web",
        "tier": "tier!=db",
        "env": "env in (a,b)",
        "legacy": "!legacy",
        "has": "has",
        "x": "x=y",
        "k": "k notin (c)",
    }
    assert isinstance(selector["app"], operators.BinaryOperator)
    qualified = parse_selector("build.headwater.dev/buildconfig=web")
    value = qualified["build.headwater.dev/buildconfig"]
    assert isinstance(value, operators.Operator)
    assert value.encode("k") == "k=web"


@pytest.mark.parametrize("text", ["", "a=b,", "bad selector", "a in b", "a=b,a=c", "a=(b)"])
def test_parse_selector_rejects(text: str) -> None:
    with pytest.raises(SelectorError):
        parse_selector(text)
