"""operator/headwater/builds/s2i.py: the generated S2I Dockerfile and the .s2i/environment snippet.

The Dockerfile is read back with a small model of Docker's parser (continuation
lines, comments, moby's shell lexer for ENV/LABEL words) so that escaping is
checked by value, not by text; the snippet runs for real under sh. When buildah
and a static busybox are on the machine, a last group builds real images.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from headwater.builds.s2i import (
    ENTRY_SCRIPTS_DIR,
    S2I_ENVIRONMENT_MARKER,
    S2IError,
    dockerfile_quote,
    s2i_dockerfile,
    s2i_environment_script,
)
from headwater.registry.client import ImageConfig

BUILDER = "registry.example.com/ubi9/python-311@sha256:" + "a" * 64
PREVIOUS = "registry.example.com/team/app:latest"
IMAGE_SCRIPTS = {"io.openshift.s2i.scripts-url": "image:///usr/libexec/s2i"}
TRICKY = [
    "plain",
    "",
    "two  spaces and\ttab",
    'double "quotes"',
    "single 'quotes'",
    "dollar $HOME ${HOME} $(id) $",
    "back\\slash \\n \\$HOME \\",
    "trailing backslash\\",
    "\\\\double",
    "carriage\rreturn",
    "unicode é ☃ 𝄞",
    "=starts with equals=",
    "# not a comment",
    "`backtick`",
]


def image_config(labels: Mapping[str, str] | None = None, user: str = "") -> ImageConfig:
    return ImageConfig(
        created=None,
        labels=dict(IMAGE_SCRIPTS if labels is None else labels),
        entrypoint=(),
        cmd=(),
        user=user,
        exposed_ports=(),
        env=(),
        working_dir="/opt/app-root/src",
        os="linux",
        architecture="amd64",
    )


# --- a model of Docker's Dockerfile parser ---------------------------------------


def instructions(dockerfile: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) pairs, as moby's parser splits them.

    Comment lines are dropped (also inside a continuation) and a line ending in
    a backslash is joined to the next without the newline. Split on "\\n" only:
    a value may hold a carriage return, which Docker keeps.
    """
    out: list[tuple[str, str]] = []
    pending = ""
    for line in dockerfile.split("\n"):
        if line.lstrip().startswith("#") or (not pending and not line.strip()):
            continue
        if line.rstrip(" \t").endswith("\\"):
            pending += line.rstrip(" \t")[:-1]
            continue
        keyword, _, rest = (pending + line).strip().partition(" ")
        pending = ""
        out.append((keyword.upper(), rest))
    assert not pending, "the Dockerfile ends inside a continuation"
    return out


def _words(text: str) -> list[str]:
    """moby's parseWords: whitespace splits words outside quotes; quotes are kept."""
    words: list[str] = []
    word, quote, i = "", "", 0
    started = False
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == quote:
                quote = ""
            elif ch == "\\" and quote == '"' and i + 1 < len(text):
                word += ch
                i += 1
                ch = text[i]
            word += ch
        elif ch.isspace():
            if started:
                words.append(word)
            word, started = "", False
        else:
            started = True
            if ch in "\"'":
                quote = ch
            elif ch == "\\" and i + 1 < len(text):
                word += ch
                i += 1
                ch = text[i]
            word += ch
        i += 1
    assert not quote, f"unterminated quote in {text!r}"
    if started:
        words.append(word)
    return words


def _unquote(raw: str) -> str:
    """moby's shell lexer (ProcessWord) on one word, refusing what would expand."""
    out, i = "", 0
    while i < len(raw):
        ch = raw[i]
        if ch == "'":
            end = raw.index("'", i + 1)
            out += raw[i + 1 : end]
            i = end + 1
            continue
        if ch == '"':
            i += 1
            while raw[i] != '"':
                if raw[i] == "\\" and i + 1 < len(raw) and raw[i + 1] in '"$\\':
                    i += 1
                else:
                    assert raw[i] != "$", f"{raw!r} would expand a variable"
                out += raw[i]
                i += 1
            i += 1
            continue
        assert ch != "$", f"{raw!r} would expand a variable"
        if ch == "\\" and i + 1 < len(raw):
            i += 1
        out += raw[i]
        i += 1
    return out


def read_pairs(arguments: str) -> list[tuple[str, str]]:
    """The NAME=VALUE pairs of an ENV or LABEL, as Docker reads them."""
    pairs = []
    for word in _words(arguments):
        key, sep, value = word.partition("=")
        assert sep, f"{word!r} is not KEY=VALUE"
        pairs.append((_unquote(key), _unquote(value)))
    return pairs


def env_of(dockerfile: str) -> list[tuple[str, str]]:
    return [
        pair for kw, rest in instructions(dockerfile) if kw == "ENV" for pair in read_pairs(rest)
    ]


def labels_of(dockerfile: str) -> dict[str, str]:
    return dict(
        pair for kw, rest in instructions(dockerfile) if kw == "LABEL" for pair in read_pairs(rest)
    )


def stages(dockerfile: str) -> list[list[tuple[str, str]]]:
    out: list[list[tuple[str, str]]] = []
    for keyword, rest in instructions(dockerfile):
        if keyword == "FROM":
            out.append([])
        out[-1].append((keyword, rest))
    return out


def test_model_reads_docker_quoting() -> None:
    assert read_pairs(r'A="x \"y\" \$z \n" B=plain\ word "k/x"="1"') == [
        ("A", 'x "y" $z \\n'),
        ("B", "plain word"),
        ("k/x", "1"),
    ]
    assert instructions('RUN a \\\n# comment\n    b\nCMD ["x"]\n') == [
        ("RUN", "a     b"),
        ("CMD", '["x"]'),
    ]


# --- the typical builder -----------------------------------------------------------


def test_image_scripts_typical_dockerfile() -> None:
    dockerfile = s2i_dockerfile(BUILDER, image_config(user="1001"), env=[("APP_ENV", "prod")])
    entry = ENTRY_SCRIPTS_DIR
    assert dockerfile == (
        "# Generated by Headwater from the Source strategy, as s2i build --as-dockerfile does.\n"
        "# Build context: this file and upload/src/ (the application source).\n"
        f"FROM {BUILDER}\n"
        f'LABEL "io.openshift.build.image"="{BUILDER}"\n'
        "# headwater:s2i-environment\n"
        'ENV APP_ENV="prod"\n'
        "COPY --chown=1001:0 upload/src /tmp/src\n"
        "USER 0\n"
        "RUN set -e; \\\n"
        f"    mkdir -p {entry}; \\\n"
        "    for script in assemble run; do "
        'if [ -f /tmp/src/.s2i/bin/"$script" ]; then '
        f'mv /tmp/src/.s2i/bin/"$script" {entry}/"$script"; '
        'else printf \'#!/bin/sh\\nexec %s "$@"\\n\' /usr/libexec/s2i/"$script" '
        f'> {entry}/"$script"; fi; done; \\\n'
        "    if [ -f /tmp/src/.s2i/bin/save-artifacts ]; then "
        f"mv /tmp/src/.s2i/bin/save-artifacts {entry}/save-artifacts; fi; \\\n"
        f"    chmod 755 {entry}/assemble {entry}/run\n"
        "USER 1001\n"
        f"RUN {entry}/assemble\n"
        f'CMD ["{entry}/run"]\n'
    )


def test_marker_once_between_labels_and_strategy_env() -> None:
    dockerfile = s2i_dockerfile(
        BUILDER, image_config(), env=[("A", "1")], incremental_from=PREVIOUS
    )
    lines = dockerfile.split("\n")
    assert lines.count(S2I_ENVIRONMENT_MARKER) == 1
    marker = lines.index(S2I_ENVIRONMENT_MARKER)
    assert lines[marker - 1].startswith("LABEL ")
    assert lines[marker + 1] == 'ENV A="1"'
    assert marker > lines.index(f"FROM {BUILDER}")


def test_http_scripts_from_label_are_added_and_overridable() -> None:
    config = image_config({"io.openshift.s2i.scripts-url": "https://scripts.example.com/py/"})
    dockerfile = s2i_dockerfile(BUILDER, config)
    kws = instructions(dockerfile)
    assert (
        "ADD",
        f"--chown=1001:0 https://scripts.example.com/py/assemble {ENTRY_SCRIPTS_DIR}/assemble",
    ) in kws
    assert (
        "ADD",
        f"--chown=1001:0 https://scripts.example.com/py/run {ENTRY_SCRIPTS_DIR}/run",
    ) in kws
    [staging] = [rest for kw, rest in kws if kw == "RUN" and "for script" in rest]
    assert "for script in assemble run save-artifacts" in staging
    assert "printf" not in staging
    assert f"chmod 755 {ENTRY_SCRIPTS_DIR}/assemble {ENTRY_SCRIPTS_DIR}/run" in staging
    assert kws[-2:] == [
        ("RUN", f"{ENTRY_SCRIPTS_DIR}/assemble"),
        ("CMD", f'["{ENTRY_SCRIPTS_DIR}/run"]'),
    ]
    # The label came from the builder: it is inherited, not restated.
    assert "io.openshift.s2i.scripts-url" not in labels_of(dockerfile)


def test_deprecated_scripts_label_is_a_fallback() -> None:
    config = image_config({"io.s2i.scripts-url": "image:///opt/old/s2i"})
    assert '/opt/old/s2i/"$script"' in s2i_dockerfile(BUILDER, config)
    both = image_config({"io.s2i.scripts-url": "image:///opt/old/s2i", **IMAGE_SCRIPTS})
    assert "/opt/old" not in s2i_dockerfile(BUILDER, both)


def test_scripts_url_image_overrides_label_and_source() -> None:
    dockerfile = s2i_dockerfile(BUILDER, image_config(user="1001"), scripts_url="image:///opt/s2i/")
    kws = instructions(dockerfile)
    # s2i: an image:// user URL ends the search (ScriptsInsideImageError), so no
    # source override, no staging step and no root.
    assert not any(kw == "USER" and rest == "0" for kw, rest in kws)
    assert ENTRY_SCRIPTS_DIR not in dockerfile
    assert kws[-3:] == [("USER", "1001"), ("RUN", "/opt/s2i/assemble"), ("CMD", '["/opt/s2i/run"]')]
    assert labels_of(dockerfile)["io.openshift.s2i.scripts-url"] == "image:///opt/s2i/"


def test_scripts_url_http_wins_over_source() -> None:
    dockerfile = s2i_dockerfile(
        BUILDER,
        image_config(),
        scripts_url="http://scripts.example.com:8080/s2i",
    )
    kws = instructions(dockerfile)
    assert (
        "ADD",
        f"--chown=1001:0 http://scripts.example.com:8080/s2i/run {ENTRY_SCRIPTS_DIR}/run",
    ) in kws
    assert ".s2i/bin" not in dockerfile
    assert kws[-1] == ("CMD", f'["{ENTRY_SCRIPTS_DIR}/run"]')
    assert (
        labels_of(dockerfile)["io.openshift.s2i.scripts-url"]
        == "http://scripts.example.com:8080/s2i"
    )


def test_no_scripts_is_an_error_naming_the_builder() -> None:
    with pytest.raises(S2IError) as info:
        s2i_dockerfile(BUILDER, image_config({"io.openshift.s2i.destination": "/opt"}))
    assert info.value.reason == "BuilderImageMissingScripts"
    assert BUILDER in info.value.message
    assert "io.openshift.s2i.scripts-url" in str(info.value)
    # An empty strategy URL means "not set", as in OpenShift.
    with pytest.raises(S2IError):
        s2i_dockerfile(BUILDER, image_config({}), scripts_url="")


@pytest.mark.parametrize(
    "url",
    [
        "file:///usr/libexec/s2i",
        "image://usr/libexec/s2i",
        "image://",
        "image:///usr/lib exec",
        "image:///usr/$LIB",
        "ftp://example.com/s2i",
        "https://",
        "https://example.com/s2i?token=x",
        "https://example.com/s 2i",
        'https://example.com/"s2i"',
        "https://example.com/$HOME",
        "https://example.com/s2i\n",
        f"image://{ENTRY_SCRIPTS_DIR}",
    ],
)
def test_invalid_scripts_urls(url: str) -> None:
    with pytest.raises(S2IError) as info:
        s2i_dockerfile(BUILDER, image_config({}), scripts_url=url)
    assert info.value.reason == "InvalidScriptsURL"
    with pytest.raises(S2IError) as info:
        s2i_dockerfile(BUILDER, image_config({"io.openshift.s2i.scripts-url": url}))
    assert info.value.reason == "InvalidScriptsURL"
    assert BUILDER in info.value.message


# --- environment and labels ------------------------------------------------------


@pytest.mark.parametrize("value", TRICKY)
def test_env_values_read_back_exactly(value: str) -> None:
    dockerfile = s2i_dockerfile(BUILDER, image_config(), env=[("V", value), ("W", "after")])
    assert env_of(dockerfile) == [("V", value), ("W", "after")]


@given(st.text(st.characters(codec="utf-8", exclude_characters="\n")))
def test_quote_round_trips(value: str) -> None:
    assert read_pairs(f"K={dockerfile_quote(value)}") == [("K", value)]
    if "=" not in value:
        assert read_pairs(f"{dockerfile_quote(value)}=x") == [(value, "x")]


def test_env_order_and_names() -> None:
    env = [("B", "1"), ("a.b-c_d", "2"), ("_X", "3"), ("B", "4")]
    assert env_of(s2i_dockerfile(BUILDER, image_config(), env=env)) == env


@pytest.mark.parametrize(
    ("name", "value"),
    [("1A", "x"), ("A B", "x"), ("A=B", "x"), ("", "x"), ("A$", "x"), ('A"', "x"), ("A", "l1\nl2")],
)
def test_invalid_env(name: str, value: str) -> None:
    with pytest.raises(S2IError) as info:
        s2i_dockerfile(BUILDER, image_config(), env=[(name, value)])
    assert info.value.reason == "InvalidEnvironment"


def test_labels_generated_extra_and_escaped() -> None:
    extra = {value: value for value in TRICKY if value and "=" not in value}
    extra["io.openshift.build.commit.message"] = "subject\n\nbody"
    extra["io.openshift.s2i.scripts-url"] = "image:///ignored"
    dockerfile = s2i_dockerfile(
        BUILDER, image_config(), labels=extra, scripts_url="image:///opt/s2i"
    )
    labels = labels_of(dockerfile)
    for value in TRICKY:
        if value and "=" not in value:
            assert labels[value] == value
    assert labels["io.openshift.build.image"] == BUILDER
    # As s2i's %q: a newline becomes backslash-n rather than failing the build.
    assert labels["io.openshift.build.commit.message"] == "subject\\n\\nbody"
    # dockerfile.go sets the scripts URL after config.Labels.
    assert labels["io.openshift.s2i.scripts-url"] == "image:///opt/s2i"
    overridden = s2i_dockerfile(BUILDER, image_config(), labels={"io.openshift.build.image": "x"})
    assert labels_of(overridden)["io.openshift.build.image"] == "x"


@pytest.mark.parametrize("key", ["", "  ", "a=b"])
def test_invalid_label_names(key: str) -> None:
    with pytest.raises(S2IError) as info:
        s2i_dockerfile(BUILDER, image_config(), labels={key: "v"})
    assert info.value.reason == "InvalidLabel"


# --- incremental builds ------------------------------------------------------------


def test_not_incremental_has_one_stage() -> None:
    dockerfile = s2i_dockerfile(BUILDER, image_config())
    assert len(stages(dockerfile)) == 1
    assert "cached" not in dockerfile
    assert "artifacts.tar" not in dockerfile
    assert "/tmp/artifacts" not in dockerfile


def test_incremental_with_overridable_image_scripts() -> None:
    dockerfile = s2i_dockerfile(BUILDER, image_config(user="1001"), incremental_from=PREVIOUS)
    cached, main = stages(dockerfile)
    assert cached[0] == ("FROM", f"{PREVIOUS} AS cached")
    # The source is needed to see its .s2i/bin/save-artifacts (no RUN --mount in kaniko).
    assert ("COPY", "--chown=1001:0 upload/src /tmp/headwater-s2i-source") in cached
    assert ("USER", "1001") in cached
    save = cached[-1][1]
    assert "script=/usr/libexec/s2i/save-artifacts" in save
    assert "if [ -f /tmp/headwater-s2i-source/.s2i/bin/save-artifacts ]" in save
    # A previous image without the script still builds: an empty tar.
    assert (
        'if [ -s "$script" ]; then "$script" > /tmp/artifacts.tar; '
        "else touch /tmp/artifacts.tar; fi" in save
    )
    copy = ("COPY", "--from=cached --chown=1001:0 /tmp/artifacts.tar /tmp/artifacts.tar")
    extract = (
        "RUN",
        "if [ -s /tmp/artifacts.tar ]; then mkdir -p /tmp/artifacts; "
        "tar -xf /tmp/artifacts.tar -C /tmp/artifacts; fi &&     rm /tmp/artifacts.tar",
    )
    assert (
        main.index(copy)
        < main.index(extract)
        < main.index(("RUN", f"{ENTRY_SCRIPTS_DIR}/assemble"))
    )
    # Extraction runs as the assemble user, after the root staging step.
    assert main[main.index(extract) - 1] == ("USER", "1001")


def test_incremental_with_image_scripts_url_is_s2i_verbatim() -> None:
    dockerfile = s2i_dockerfile(
        BUILDER, image_config(), scripts_url="image:///opt/s2i", incremental_from=PREVIOUS
    )
    cached, _ = stages(dockerfile)
    assert cached == [
        ("FROM", f"{PREVIOUS} AS cached"),
        ("USER", "1001"),
        (
            "RUN",
            "set -e;     script=/opt/s2i/save-artifacts;     "
            'if [ -s "$script" ]; then "$script" > /tmp/artifacts.tar; '
            "else touch /tmp/artifacts.tar; fi",
        ),
    ]


def test_incremental_with_http_scripts() -> None:
    dockerfile = s2i_dockerfile(
        BUILDER,
        image_config(),
        scripts_url="https://example.com/s2i",
        incremental_from=PREVIOUS,
    )
    cached, _ = stages(dockerfile)
    assert (
        "ADD",
        "--chown=1001:0 https://example.com/s2i/save-artifacts /tmp/headwater-s2i-save-artifacts",
    ) in cached
    assert "upload/src" not in str(cached)
    assert "chmod 755 /tmp/headwater-s2i-save-artifacts" in cached[-1][1]


# --- assemble user and destination -------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "user", "expected"),
    [
        (IMAGE_SCRIPTS, "", "1001"),
        (IMAGE_SCRIPTS, "default", "default"),
        (IMAGE_SCRIPTS, "0", "0"),
        ({**IMAGE_SCRIPTS, "io.openshift.s2i.assemble-user": "185"}, "1001", "185"),
        # openshift/builder: a present label wins even when empty; s2i then says 1001.
        ({**IMAGE_SCRIPTS, "io.openshift.s2i.assemble-user": ""}, "root", "1001"),
    ],
)
def test_assemble_user(labels: Mapping[str, str], user: str, expected: str) -> None:
    dockerfile = s2i_dockerfile(BUILDER, image_config(labels, user), incremental_from=PREVIOUS)
    kws = instructions(dockerfile)
    # The cached stage's, the staging step's root, the assemble user again.
    assert [rest for kw, rest in kws if kw == "USER"] == [expected, "0", expected]
    chowns = {
        word
        for kw, rest in kws
        if kw in ("COPY", "ADD")
        for word in rest.split()
        if word.startswith("--chown=")
    }
    assert chowns == {f"--chown={expected}:0"}


def test_assemble_user_with_group_keeps_it() -> None:
    dockerfile = s2i_dockerfile(BUILDER, image_config(user="1001:1001"))
    assert "COPY --chown=1001:1001 upload/src /tmp/src" in dockerfile
    assert "\nUSER 1001:1001\n" in dockerfile


@pytest.mark.parametrize("user", ["a b", "1001:0:0", "$USER", "x\n"])
def test_invalid_assemble_user(user: str) -> None:
    with pytest.raises(S2IError) as info:
        s2i_dockerfile(BUILDER, image_config(user=user))
    assert info.value.reason == "InvalidBuilderImage"


def test_destination_label() -> None:
    labels = {**IMAGE_SCRIPTS, "io.openshift.s2i.destination": "/opt/app-root/"}
    dockerfile = s2i_dockerfile(BUILDER, image_config(labels), incremental_from=PREVIOUS)
    assert "COPY --chown=1001:0 upload/src /opt/app-root/src\n" in dockerfile
    assert "/opt/app-root/src/.s2i/bin" in dockerfile
    assert (
        "mkdir -p /opt/app-root/artifacts; tar -xf /tmp/artifacts.tar -C /opt/app-root/artifacts"
        in dockerfile
    )
    # dockerfile.go sets the label when the destination was given.
    assert labels_of(dockerfile)["io.openshift.s2i.destination"] == "/opt/app-root/"
    default = s2i_dockerfile(BUILDER, image_config())
    assert "upload/src /tmp/src\n" in default
    assert "io.openshift.s2i.destination" not in labels_of(default)


@pytest.mark.parametrize("destination", ["relative", "/with space", "/$HOME", "/a\nb"])
def test_invalid_destination(destination: str) -> None:
    labels = {**IMAGE_SCRIPTS, "io.openshift.s2i.destination": destination}
    with pytest.raises(S2IError) as info:
        s2i_dockerfile(BUILDER, image_config(labels))
    assert info.value.reason == "InvalidBuilderImage"
    assert "io.openshift.s2i.destination" in info.value.message


@pytest.mark.parametrize("reference", ["", "a b", "-x", "img:$TAG", "img\nRUN x"])
def test_invalid_image_references(reference: str) -> None:
    with pytest.raises(S2IError) as info:
        s2i_dockerfile(reference, image_config())
    assert info.value.reason == "InvalidImageReference"
    with pytest.raises(S2IError):
        s2i_dockerfile(BUILDER, image_config(), incremental_from=reference)


def test_error_is_a_value_error() -> None:
    error = S2IError("InvalidLabel", "bad")
    assert isinstance(error, ValueError)
    assert (error.reason, error.message, str(error)) == ("InvalidLabel", "bad", "bad")


# --- the .s2i/environment snippet, run under sh ------------------------------------


@functools.cache
def _busybox_bin(tmp: str) -> str | None:
    busybox = shutil.which("busybox")
    if busybox is None:
        return None
    directory = Path(tmp)
    directory.mkdir(parents=True, exist_ok=True)
    for applet in ("sh", "awk", "cat", "rm", "pwd"):
        link = directory / applet
        if not link.exists():
            link.symlink_to(busybox)
    return str(directory)


SHELLS = ["sh", "busybox"]


def run_snippet(
    context: Path, shell: str, tmp_path_factory: pytest.TempPathFactory
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    argv = ["sh", "-c", s2i_environment_script()]
    if shell == "busybox":
        bindir = _busybox_bin(str(tmp_path_factory.getbasetemp() / "busybox-bin"))
        if bindir is None:
            pytest.skip("busybox is not installed")
        # busybox's sh and awk first, so the snippet uses no GNU or Debian tool.
        env["PATH"] = f"{bindir}:{env['PATH']}"
        argv = [f"{bindir}/sh", "-c", s2i_environment_script()]
    return subprocess.run(
        argv, cwd=context, env=env, capture_output=True, text=True, check=False, timeout=60
    )


@pytest.fixture
def context(tmp_path: Path) -> Path:
    (tmp_path / "upload" / "src").mkdir(parents=True)
    (tmp_path / "Dockerfile").write_text(
        s2i_dockerfile(BUILDER, image_config(), env=[("FROM_BUILDCONFIG", "1")])
    )
    return tmp_path


def read_dockerfile(context: Path) -> str:
    # Not read_text(): universal newlines would turn a value's "\r" into a line break.
    return (context / "Dockerfile").read_bytes().decode()


def write_environment(context: Path, text: str | bytes) -> None:
    directory = context / "upload" / "src" / ".s2i"
    directory.mkdir(exist_ok=True)
    data = text.encode() if isinstance(text, str) else text
    (directory / "environment").write_bytes(data)


@pytest.mark.parametrize("shell", SHELLS)
def test_snippet_without_environment_removes_marker(
    context: Path, shell: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    before = read_dockerfile(context)
    result = run_snippet(context, shell, tmp_path_factory)
    assert result.returncode == 0, result.stderr
    after = read_dockerfile(context)
    assert after == before.replace(S2I_ENVIRONMENT_MARKER + "\n", "")
    assert sorted(p.name for p in context.iterdir()) == ["Dockerfile", "upload"]


@pytest.mark.parametrize("shell", SHELLS)
def test_snippet_writes_env_lines_read_back_exactly(
    context: Path, shell: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    values = [v.strip(" \t\r") for v in TRICKY]
    text = "# a comment\n\n   \n  # indented comment\n"
    text += "".join(f"V{i} = {value}  \n" for i, value in enumerate(TRICKY))
    text += "CRLF=windows\r\nX.y-z=dots\nEMPTY=\nLAST=no newline at end"
    write_environment(context, text)
    result = run_snippet(context, shell, tmp_path_factory)
    assert result.returncode == 0, result.stderr
    dockerfile = read_dockerfile(context)
    assert S2I_ENVIRONMENT_MARKER not in dockerfile
    expected = [(f"V{i}", value) for i, value in enumerate(values)]
    expected += [
        ("CRLF", "windows"),
        ("X.y-z", "dots"),
        ("EMPTY", ""),
        ("LAST", "no newline at end"),
    ]
    # .s2i/environment first, then the BuildConfig's variables (which thus win).
    assert env_of(dockerfile) == [*expected, ("FROM_BUILDCONFIG", "1")]
    # The same text the operator writes for the same variables.
    generated = s2i_dockerfile(BUILDER, image_config(), env=expected)
    generated_env = [line for line in generated.split("\n") if line.startswith("ENV ")]
    assert [line for line in dockerfile.split("\n") if line.startswith("ENV ")][
        :-1
    ] == generated_env


@pytest.mark.parametrize("shell", SHELLS)
def test_snippet_rejects_invalid_lines(
    context: Path, shell: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    write_environment(context, "GOOD=1\nno equals sign\n1BAD=2\nexport X=3\n=empty\nsecret-ish\n")
    before = read_dockerfile(context)
    result = run_snippet(context, shell, tmp_path_factory)
    assert result.returncode != 0
    for line in (2, 3, 4, 5, 6):
        assert f"line {line}:" in result.stderr
    assert "line 1:" not in result.stderr
    assert read_dockerfile(context) == before
    assert sorted(p.name for p in context.iterdir()) == ["Dockerfile", "upload"]


@pytest.mark.parametrize("shell", SHELLS)
def test_snippet_refuses_symlinks_out_of_the_source(
    context: Path, shell: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    outside = context.parent / f"{context.name}-outside"
    outside.mkdir()
    (outside / "environment").write_text("LEAK=1\n")
    s2i = context / "upload" / "src" / ".s2i"
    s2i.symlink_to(outside)
    result = run_snippet(context, shell, tmp_path_factory)
    assert result.returncode != 0
    assert ".s2i" in result.stderr
    s2i.unlink()
    s2i.mkdir()
    (s2i / "environment").symlink_to(outside / "environment")
    result = run_snippet(context, shell, tmp_path_factory)
    assert result.returncode != 0
    assert "LEAK" not in read_dockerfile(context)


@pytest.mark.parametrize("shell", SHELLS)
def test_snippet_follows_s2i_symlink_inside_the_source(
    context: Path, shell: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    real = context / "upload" / "src" / "openshift" / "s2i"
    real.mkdir(parents=True)
    (real / "environment").write_text("INSIDE=yes\n")
    (context / "upload" / "src" / ".s2i").symlink_to("openshift/s2i")
    result = run_snippet(context, shell, tmp_path_factory)
    assert result.returncode == 0, result.stderr
    assert ("INSIDE", "yes") in env_of(read_dockerfile(context))


@pytest.mark.parametrize("shell", SHELLS)
def test_snippet_fails_without_marker(
    context: Path, shell: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    (context / "Dockerfile").write_text("FROM x\n")
    result = run_snippet(context, shell, tmp_path_factory)
    assert result.returncode != 0
    assert "marker" in result.stderr


def test_snippet_eval_leaves_the_caller_alone(context: Path) -> None:
    # The build pod evals it: options and directory must not leak out, and
    # the status must.
    write_environment(context, "bad\n")
    script = (
        'cd "$1"; eval "$2"; status=$?; '
        "case $- in *e*) echo errexit;; *) echo no-errexit;; esac; "
        'echo "$status"; pwd'
    )
    result = subprocess.run(
        ["sh", "-c", script, "sh", str(context), s2i_environment_script()],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.stdout.split("\n")[:3] == ["no-errexit", "1", str(context)]


# --- real builds (buildah) -----------------------------------------------------------


def _static_busybox() -> str | None:
    busybox = shutil.which("busybox")
    if busybox is None:
        return None
    ldd = subprocess.run(["ldd", busybox], capture_output=True, text=True, check=False)
    return busybox if "not a dynamic executable" in ldd.stdout + ldd.stderr else None


BUILDER_ASSEMBLE = """#!/bin/sh
set -e
echo "assemble from $0 as $(id -u)"
cp -R /tmp/src/. /opt/app/
generation=0
previous=/tmp/artifacts/cache/generation
if [ -f $previous ]; then generation=$(cat $previous); fi
mkdir -p /opt/app/cache
echo $((generation + 1)) > /opt/app/cache/generation
printf '%s\\n' "$0" "$(id -u)" "$TRICKY" "$FROM_BUILDCONFIG" "$SHADOWED" > /opt/app/assembled
"""
BUILDER_RUN = '#!/bin/sh\necho "builder run $0"\n'
BUILDER_SAVE_ARTIFACTS = "#!/bin/sh\ncd /opt/app && tar -cf - cache\n"
BUILDER_DOCKERFILE = """FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN mkdir -p /tmp /opt/app && chmod 1777 /tmp && chown 1001:0 /opt/app
COPY s2i/ /usr/libexec/s2i/
COPY s2i-alt/ /usr/libexec/s2i-alt/
LABEL io.openshift.s2i.scripts-url=image:///usr/libexec/s2i
USER 1001
"""
TRICKY_ENV = "q\"uo'te $HOME ${X} back\\slash\\ \ttab"


class Buildah:
    def __init__(self, root: Path) -> None:
        self.storage = [
            "--root",
            str(root / "root"),
            "--runroot",
            str(root / "run"),
            "--storage-driver",
            "vfs",
        ]

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["buildah", *self.storage, *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"buildah {' '.join(args)}:\n{result.stdout}\n{result.stderr}")
        return result

    def build(self, context: Path, tag: str, dockerfile: str | None = None) -> None:
        args = ["bud", "--isolation", "chroot", "--layers=false", "--format", "docker", "-t", tag]
        if dockerfile is not None:
            args += ["-f", dockerfile]
        self(*args, str(context))

    def config(self, tag: str) -> dict[str, Any]:
        doc = json.loads(self("inspect", "--type", "image", tag).stdout)
        config: dict[str, Any] = doc["OCIv1"]["config"]
        return config

    def run(self, tag: str, *command: str) -> str:
        container = self("from", "--pull-never", tag).stdout.strip().splitlines()[-1]
        try:
            return self("run", "--isolation", "chroot", container, "--", *command).stdout
        finally:
            self("rm", container)


@pytest.fixture(scope="module")
def buildah(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Buildah]:
    if shutil.which("buildah") is None:
        pytest.skip("buildah is not installed")
    busybox = _static_busybox()
    if busybox is None:
        pytest.skip("a statically linked busybox is needed for the builder image")
    root = tmp_path_factory.mktemp("buildah")
    tool = Buildah(root / "storage")
    context = root / "builder"
    for directory in ("s2i", "s2i-alt"):
        (context / directory).mkdir(parents=True)
        for name, text in (("assemble", BUILDER_ASSEMBLE), ("run", BUILDER_RUN)):
            (context / directory / name).write_text(text)
            (context / directory / name).chmod(0o755)
    (context / "s2i" / "save-artifacts").write_text(BUILDER_SAVE_ARTIFACTS)
    (context / "s2i" / "save-artifacts").chmod(0o755)
    shutil.copy(busybox, context / "busybox")
    (context / "Dockerfile").write_text(BUILDER_DOCKERFILE)
    try:
        tool.build(context, "localhost/hw-s2i-builder:1")
    except AssertionError as exc:
        pytest.skip(f"buildah cannot build here: {exc}")
    yield tool
    tool("rm", "--all", check=False)
    tool("rmi", "--all", "--force", check=False)
    shutil.rmtree(root / "storage", ignore_errors=True)


BUILDER_CONFIG = image_config(user="1001")


def s2i_build(
    buildah: Buildah,
    tmp: Path,
    tag: str,
    source: Mapping[str, str],
    **options: Any,
) -> None:
    context = tmp / tag.replace("/", "_").replace(":", "_")
    src = context / "upload" / "src"
    for name, text in source.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text(text)
    (context / "Dockerfile").write_text(
        s2i_dockerfile("localhost/hw-s2i-builder:1", BUILDER_CONFIG, **options)
    )
    subprocess.run(["sh", "-c", s2i_environment_script()], cwd=context, check=True, timeout=60)
    buildah.build(context, tag, str(context / "Dockerfile"))


@pytest.fixture(scope="module")
def first_image(buildah: Buildah, tmp_path_factory: pytest.TempPathFactory) -> str:
    tag = "localhost/hw-s2i-app:1"
    s2i_build(
        buildah,
        tmp_path_factory.mktemp("first"),
        tag,
        {
            "app.txt": "hello\n",
            ".s2i/environment": f"TRICKY={TRICKY_ENV}\nSHADOWED=from-source\n",
            # Mode 0644 on purpose: s2i makes override scripts executable.
            ".s2i/bin/run": '#!/bin/sh\necho "source run $0"\n',
        },
        env=[("FROM_BUILDCONFIG", "a b"), ("SHADOWED", "from-buildconfig")],
    )
    return tag


@pytest.mark.skipif(shutil.which("buildah") is None, reason="buildah is not installed")
def test_buildah_image_scripts_with_run_override(buildah: Buildah, first_image: str) -> None:
    config = buildah.config(first_image)
    assert config["Cmd"] == [f"{ENTRY_SCRIPTS_DIR}/run"]
    assert config["User"] == "1001"
    assert f"TRICKY={TRICKY_ENV.strip()}" in config["Env"]
    assert "FROM_BUILDCONFIG=a b" in config["Env"]
    assert config["Labels"]["io.openshift.build.image"] == "localhost/hw-s2i-builder:1"
    assert buildah.run(first_image, *config["Cmd"]) == f"source run {ENTRY_SCRIPTS_DIR}/run\n"
    assembled = buildah.run(first_image, "cat", "/opt/app/assembled").split("\n")
    assert assembled[:5] == [
        "/usr/libexec/s2i/assemble",  # the wrapper execs the builder's script
        "1001",
        TRICKY_ENV.strip(),
        "a b",
        "from-buildconfig",
    ]
    # Moved out of the source, as s2i does.
    listing = buildah.run(first_image, "ls", "-a", "/opt/app/.s2i/bin", "/opt/app")
    assert "run" not in listing.split("/opt/app:")[0]
    assert buildah.run(first_image, "cat", "/opt/app/cache/generation") == "1\n"


@pytest.mark.skipif(shutil.which("buildah") is None, reason="buildah is not installed")
def test_buildah_incremental_restores_artifacts(
    buildah: Buildah, first_image: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    tag = "localhost/hw-s2i-app:2"
    s2i_build(
        buildah,
        tmp_path_factory.mktemp("second"),
        tag,
        {"app.txt": "v2\n"},
        incremental_from=first_image,
    )
    assert buildah.run(tag, "cat", "/opt/app/cache/generation") == "2\n"
    config = buildah.config(tag)
    # No override this time: the wrapper runs the builder's script under its own name.
    assert buildah.run(tag, *config["Cmd"]) == "builder run /usr/libexec/s2i/run\n"
    # Previous image without a save-artifacts script in the scripts directory: empty artifacts.
    fresh = "localhost/hw-s2i-app:3"
    s2i_build(
        buildah,
        tmp_path_factory.mktemp("third"),
        fresh,
        {"app.txt": "v3\n"},
        incremental_from=tag,
        scripts_url="image:///usr/libexec/s2i-alt",
    )
    assert buildah.run(fresh, "cat", "/opt/app/cache/generation") == "1\n"
    assert buildah.config(fresh)["Cmd"] == ["/usr/libexec/s2i-alt/run"]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve(directory: Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.skipif(shutil.which("buildah") is None, reason="buildah is not installed")
def test_buildah_http_scripts(
    buildah: Buildah, first_image: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    scripts = tmp_path_factory.mktemp("http-scripts") / "s2i"
    scripts.mkdir()
    (scripts / "assemble").write_text(
        BUILDER_ASSEMBLE.replace("assemble from", "http assemble from")
    )
    (scripts / "run").write_text('#!/bin/sh\necho "http run"\n')
    (scripts / "save-artifacts").write_text(BUILDER_SAVE_ARTIFACTS)
    tag = "localhost/hw-s2i-app:http"
    with serve(scripts.parent) as base:
        s2i_build(
            buildah,
            tmp_path_factory.mktemp("http"),
            tag,
            {"app.txt": "v\n", ".s2i/bin/run": "#!/bin/sh\necho source run\n"},
            scripts_url=f"{base}/s2i/",
            incremental_from=first_image,
        )
    config = buildah.config(tag)
    # The strategy's URL wins over the source's .s2i/bin (s2i's install order).
    assert buildah.run(tag, *config["Cmd"]) == "http run\n"
    assert buildah.run(tag, "cat", "/opt/app/cache/generation") == "2\n"
    assert config["Labels"]["io.openshift.s2i.scripts-url"].endswith("/s2i/")
