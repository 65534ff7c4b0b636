"""operator/headwater/builds/scripts.py: the build pod's shell programs, run for real.

The programs run under the local /bin/sh (dash here, as in Debian images) with
their absolute paths (/workspace, /var/run/secrets/headwater, /tmp/...,
/dev/termination-log) moved into a temporary directory. ``buildah`` is a fake
on PATH that records its arguments; git runs for real against local
repositories.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from headwater.builds.job import JobSettings, Resolved, render_job
from headwater.builds.model import API_VERSION, BUILD_CONTAINER, FETCH_CONTAINER
from headwater.builds.observe import observe
from headwater.builds.provenance import MAX_IMAGES, MAX_REFERENCE, reported_images
from headwater.builds.scripts import (
    _COMMON,
    BUILDAH_SCRIPT,
    EXIT_BUILD,
    EXIT_CONTEXT_DIR,
    EXIT_FETCH_SOURCE,
    EXIT_MANAGE_DOCKERFILE,
    EXIT_POST_COMMIT,
    EXIT_PUSH,
    EXIT_REASONS,
    FETCH_SCRIPT,
    LABELS_FILE,
    SOURCE_DIR,
    UPLOAD_ARCHIVE_COMMAND,
    UPLOAD_DONE,
    UPLOAD_TAR_COMMAND,
    WORKSPACE,
    upload_file_command,
)

SH = "/bin/sh"
OUTPUT = "registry.local:5000/shop/web:latest"
BASE = "registry.local:5000/base/python@sha256:" + "b" * 64
DIGEST = "sha256:" + "d" * 64
KANIKO = "ghcr.io/example/kaniko:v1"
SETTINGS = JobSettings(executor="buildah", builder_image="builder:1", kaniko_image=KANIKO)
KANIKO_SETTINGS = JobSettings(builder_image="builder:1", executor="kaniko", kaniko_image=KANIKO)
AUTHOR = ("Ada Lovelace", "ada@example.com")
COMMITTER = ("CI Bot", "ci@example.com")

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


# --- the sandbox ----------------------------------------------------------------------


class Sandbox:
    """The pod's absolute paths, moved under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.workspace = root / "workspace"
        self.secrets = root / "secrets"
        self.inputs = root / "inputs"
        self.scratch = root / "scratch"
        self.termination_log = root / "termination-log"
        self.bin = root / "bin"
        for directory in (self.workspace, self.secrets, self.inputs, self.scratch, self.bin):
            directory.mkdir(parents=True, exist_ok=True)
        self._map = {
            "/var/run/secrets/headwater": str(self.secrets),
            "/var/run/headwater/inputs": str(self.inputs),
            "/dev/termination-log": str(self.termination_log),
            WORKSPACE: str(self.workspace),
            "/tmp/": f"{self.scratch}/",
        }
        self._re = re.compile("|".join(re.escape(k) for k in sorted(self._map, key=len)[::-1]))

    def localize(self, text: str) -> str:
        """``text`` (a script or an argument) with every pod path moved."""
        return self._re.sub(lambda m: self._map[m.group(0)], text)

    def localize_value(self, value: str) -> str:
        """An environment value that starts with a pod path, moved; others as they are
        (a Git URI under the test's own /tmp must stay put)."""
        match = self._re.match(value)
        return self._map[match.group(0)] + value[match.end() :] if match else value

    @property
    def source(self) -> Path:
        return self.workspace / "source"

    def run(
        self,
        script: str,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        stdin: bytes | None = None,
        timeout: float = 60,
        test_env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``script``; ``env`` is the container's (pod paths moved), ``test_env`` the test's."""
        environment = {
            "PATH": f"{self.bin}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "LC_ALL": "C.UTF-8",
            "GIT_CONFIG_NOSYSTEM": "1",
            "HOME": str(self.scratch / "home"),
        }
        environment.update({k: self.localize_value(v) for k, v in (env or {}).items()})
        environment.update(test_env or {})
        result = subprocess.run(
            [SH, "-c", self.localize(script), *[self.localize(a) for a in args]],
            env=environment,
            input=stdin.decode() if stdin is not None else None,
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=timeout,
            cwd=self.root,
            check=False,
        )
        return result

    def report(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.termination_log.read_text(encoding="utf-8"))
        return doc


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    return Sandbox(tmp_path)


def container_env(job: Mapping[str, Any], name: str) -> dict[str, str]:
    spec = job["spec"]["template"]["spec"]
    for c in [*spec["initContainers"], *spec["containers"]]:
        if c["name"] == name:
            return {e["name"]: e["value"] for e in c.get("env") or []}
    raise AssertionError(name)


def container_of(job: Mapping[str, Any], name: str) -> dict[str, Any]:
    spec = job["spec"]["template"]["spec"]
    for c in [*spec["initContainers"], *spec["containers"]]:
        if c["name"] == name:
            return dict(c)
    raise AssertionError(name)


def build_body(
    spec: Mapping[str, Any], annotations: Mapping[str, str] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "Build",
        "metadata": {
            "name": "web-1",
            "namespace": "shop",
            "uid": "u-1",
            "annotations": dict(annotations or {}),
        },
        "spec": dict(spec),
    }


def terminated_pod(
    fetch_message: str | None, build_message: str | None, build_code: int = 0
) -> dict[str, Any]:
    def state(code: int, message: str | None, start: str, end: str) -> dict[str, Any]:
        body: dict[str, Any] = {"exitCode": code, "startedAt": start, "finishedAt": end}
        if message is not None:
            body["message"] = message
        return {"terminated": body}

    status: dict[str, Any] = {
        "phase": "Succeeded",
        "initContainerStatuses": [
            {
                "name": FETCH_CONTAINER,
                "state": state(0, fetch_message, "2025-01-01T00:00:00Z", "2025-01-01T00:00:02Z"),
            }
        ],
    }
    if build_message is not None or build_code:
        status["containerStatuses"] = [
            {
                "name": BUILD_CONTAINER,
                "state": state(
                    build_code, build_message, "2025-01-01T00:00:03Z", "2025-01-01T00:01:00Z"
                ),
            }
        ]
    return {"metadata": {"name": "web-1-build-abcde"}, "status": status}


JOB_RUNNING = {"status": {"active": 1}}


# --- a Dockerfile reader (BuildKit's double-quote rules) ------------------------------------


def dockerfile_string(text: str, start: int) -> tuple[str, int]:
    """Decode the double-quoted Dockerfile word at ``text[start]``.

    Inside double quotes only ``\\"``, ``\\$`` and ``\\\\`` are escapes; an
    unescaped ``$NAME`` / ``${...}`` is a variable expansion (an error here).
    """
    assert text[start] == '"', text[start:]
    i = start + 1
    out: list[str] = []
    while True:
        ch = text[i]
        if ch == '"':
            return "".join(out), i + 1
        if ch == "$":
            following = text[i + 1 : i + 2]
            if following and (following == "{" or following.isalnum() or following in "_@*#?-$!"):
                raise AssertionError(f"unescaped ${following} expands in {text!r}")
        if ch == "\\" and text[i + 1] in '"$\\':
            out.append(text[i + 1])
            i += 2
            continue
        out.append(ch)
        i += 1


def dockerfile_pair(line: str, instruction: str) -> tuple[str, str]:
    prefix = f"{instruction} "
    assert line.startswith(prefix), line
    name, end = dockerfile_string(line, len(prefix))
    assert line[end] == "=", line
    value, end = dockerfile_string(line, end + 1)
    assert end == len(line), line
    return name, value


def kaniko_label_pair(line: str, resolutions: int) -> tuple[str, str]:
    """A LABEL line as kaniko reads it: with the layer cache it unescapes the value twice."""
    name, value = dockerfile_pair(line, "LABEL")
    for _ in range(resolutions - 1):
        quoted = value
        value, end = dockerfile_string(quoted, 0)
        assert end == len(quoted), quoted
    return name, value


# --- _COMMON: json() and fail() ----------------------------------------------------------


def json_escape(text: str) -> str:
    result = subprocess.run(
        [SH, "-c", _COMMON + '\njson "$1"', "sh", text],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8"},
        check=True,
    )
    return result.stdout


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ('a"b\\c', 'a\\"b\\\\c'),
        ("plain text", "plain text"),
        ("", ""),
        ('\\"', '\\\\\\"'),
        ("tab\there\nnewline\rcr\x01\x1f", "tabherenewlinecr"),
        ("café ✓ 😀", "café ✓ 😀"),
        ("-n", "-n"),
        ("%s %d \\n", "%s %d \\\\n"),
        ("\x7f", "\x7f"),
    ],
)
def test_json_helper_escapes(text: str, escaped: str) -> None:
    assert json_escape(text) == escaped
    assert json.loads(f'"{json_escape(text)}"') == "".join(c for c in text if ord(c) >= 0x20)


_argv_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\x00"),
    max_size=40,
)


@settings(max_examples=60)
@given(_argv_text)
def test_json_helper_always_makes_a_valid_json_string(text: str) -> None:
    out = json_escape(text)
    assert json.loads(f'"{out}"') == "".join(c for c in text if ord(c) >= 0x20)


@pytest.mark.parametrize("code", sorted(EXIT_REASONS))
def test_fail_exits_with_its_code_and_an_error_line(code: int) -> None:
    result = subprocess.run(
        [SH, "-c", _COMMON + f'\nfail {code} "could not do" "$1"', "sh", "the thing"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == code
    assert result.stderr == "error: could not do the thing\n"


def test_common_is_strict() -> None:
    unset = subprocess.run(
        [SH, "-c", _COMMON + '\necho "$UNSET_VARIABLE_X"; echo reached'],
        capture_output=True,
        text=True,
        check=False,
    )
    assert unset.returncode != 0
    assert "reached" not in unset.stdout
    failing = subprocess.run(
        [SH, "-c", _COMMON + "\nfalse\necho reached"], capture_output=True, text=True, check=False
    )
    assert failing.returncode == 1
    assert failing.stdout == ""


def test_ms_is_milliseconds() -> None:
    result = subprocess.run(
        [SH, "-c", _COMMON + "\nms"], capture_output=True, text=True, check=True
    )
    assert abs(int(result.stdout) - time.time() * 1000) < 60_000


# --- exit codes -----------------------------------------------------------------------------

_FAIL_CALL = re.compile(r"\bfail (\d+)\b")


def test_every_fail_code_has_a_reason() -> None:
    used = {int(code) for code in _FAIL_CALL.findall(FETCH_SCRIPT + BUILDAH_SCRIPT)}
    assert used, "no fail calls found: the pattern is out of date"
    assert used <= set(EXIT_REASONS), used - set(EXIT_REASONS)
    assert used == set(EXIT_REASONS), "a reason no script can produce"


def test_fetch_and_build_codes_are_separate_and_not_shell_codes() -> None:
    fetch = {int(c) for c in _FAIL_CALL.findall(FETCH_SCRIPT)}
    build = {int(c) for c in _FAIL_CALL.findall(BUILDAH_SCRIPT)}
    assert fetch == {EXIT_FETCH_SOURCE, EXIT_CONTEXT_DIR, EXIT_MANAGE_DOCKERFILE}
    assert build == {EXIT_BUILD, EXIT_POST_COMMIT, EXIT_PUSH}
    # 1-2: a command failing under set -e; 126-127: not executable / not found;
    # 128+n: killed by signal n (OOM kill, pod deletion).
    for code in fetch | build:
        assert 2 < code < 126


@pytest.mark.parametrize(
    ("container", "code", "reason"),
    [
        ("fetch", EXIT_FETCH_SOURCE, "FetchSourceFailed"),
        ("fetch", EXIT_CONTEXT_DIR, "InvalidContextDirectory"),
        ("fetch", EXIT_MANAGE_DOCKERFILE, "ManageDockerfileFailed"),
        ("build", EXIT_BUILD, "DockerBuildFailed"),
        ("build", EXIT_POST_COMMIT, "PostCommitHookFailed"),
        ("build", EXIT_PUSH, "PushImageToRegistryFailed"),
    ],
)
def test_fail_output_reads_back_as_the_build_reason(container: str, code: int, reason: str) -> None:
    result = subprocess.run(
        [SH, "-c", _COMMON + f'\necho "some progress"\nfail {code} "it broke: $1"', "sh", "x y"],
        capture_output=True,
        text=True,
        check=False,
    )
    # FallbackToLogsOnError: the message is the log's tail (stdout and stderr).
    tail = result.stdout + result.stderr
    state = {
        "terminated": {
            "exitCode": result.returncode,
            "message": tail,
            "startedAt": "2025-01-01T00:00:00Z",
            "finishedAt": "2025-01-01T00:00:05Z",
        }
    }
    name = FETCH_CONTAINER if container == "fetch" else BUILD_CONTAINER
    key = "initContainerStatuses" if container == "fetch" else "containerStatuses"
    seen = observe(JOB_RUNNING, {"status": {key: [{"name": name, "state": state}]}})
    assert (seen.phase, seen.reason, seen.message) == ("Failed", reason, "it broke: x y")


# --- the FROM rewrite (awk) ------------------------------------------------------------------


def _awk_program() -> str:
    match = re.search(r"""awk -v img="\$HW_FROM" '(.*?)' "\$DF\"""", FETCH_SCRIPT, re.DOTALL)
    assert match, "the FROM rewrite is no longer an awk program on $DF"
    return match.group(1)


def _awks() -> Iterator[Any]:
    for argv in (["awk"], ["mawk"], ["gawk"], ["busybox", "awk"]):
        found = shutil.which(argv[0])
        if found is None:
            continue
        if argv[0] == "busybox":
            probe = subprocess.run([*argv, "BEGIN{}"], capture_output=True, check=False)
            if probe.returncode != 0:
                continue
        yield pytest.param(argv, id=" ".join(argv))


AWKS = list(_awks())


def rewrite_from(awk: list[str], dockerfile: str, image: str, tmp_path: Path) -> str:
    program = tmp_path / "from.awk"
    program.write_text(_awk_program())
    path = tmp_path / "Dockerfile"
    path.write_text(dockerfile)
    result = subprocess.run(
        [*awk, "-v", f"img={image}", "-f", str(program), str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


MULTI_STAGE = """\
# syntax=docker/dockerfile:1
FROM --platform=$BUILDPLATFORM golang:1.22 AS build
WORKDIR /src
COPY --from=tools /bin/tool /bin/tool
RUN go build -o /out/app ./cmd/app

FROM build AS test
RUN go test ./...

FROM --platform=$TARGETPLATFORM gcr.io/distroless/static:nonroot AS final
COPY --from=build /out/app /app
# FROM in a comment does not count
ENTRYPOINT ["/app"]
"""


@pytest.mark.parametrize("awk", AWKS)
def test_from_rewrite_replaces_only_the_last_from(awk: list[str], tmp_path: Path) -> None:
    out = rewrite_from(awk, MULTI_STAGE, BASE, tmp_path)
    expected = MULTI_STAGE.replace(
        "FROM --platform=$TARGETPLATFORM gcr.io/distroless/static:nonroot AS final",
        f"FROM --platform=$TARGETPLATFORM {BASE} AS final",
    )
    assert out == expected


@pytest.mark.parametrize("awk", AWKS)
@pytest.mark.parametrize(
    ("line", "rewritten"),
    [
        ("FROM alpine:3.19", "FROM IMG"),
        ("from alpine:3.19 as base", "from IMG as base"),
        ("From alpine", "From IMG"),
        ("FROM --platform=linux/amd64 alpine AS x", "FROM --platform=linux/amd64 IMG AS x"),
        (
            "FROM --platform=linux/arm64 --foo=bar alpine",
            "FROM --platform=linux/arm64 --foo=bar IMG",
        ),
        ("  FROM   alpine   AS   x", "FROM IMG AS x"),
        ("FROM\talpine", "FROM IMG"),
    ],
)
def test_from_rewrite_forms(awk: list[str], line: str, rewritten: str, tmp_path: Path) -> None:
    dockerfile = f"{line}\nRUN  echo  'keep\tthis  line'  \\\n    && true\n"
    out = rewrite_from(awk, dockerfile, "IMG", tmp_path)
    assert out == f"{rewritten}\nRUN  echo  'keep\tthis  line'  \\\n    && true\n"


@pytest.mark.parametrize("awk", AWKS)
def test_from_rewrite_without_from_changes_nothing(awk: list[str], tmp_path: Path) -> None:
    dockerfile = "# no stages here\nRUN true\n"
    assert rewrite_from(awk, dockerfile, "IMG", tmp_path) == dockerfile


@pytest.mark.parametrize("awk", AWKS)
def test_from_rewrite_image_with_awk_metacharacters(awk: list[str], tmp_path: Path) -> None:
    image = "registry.local:5000/a/b@sha256:" + "0" * 64
    out = rewrite_from(awk, "FROM x AS y\n", image, tmp_path)
    assert out == f"FROM {image} AS y\n"


@pytest.mark.parametrize(
    "tail",
    [
        'RUN python3 -c "\\\nfrom sys import version; print(version)"\n',
        "RUN python3 - <<'EOF'\nfrom pathlib import Path\nPath('/app').mkdir()\nEOF\n",
    ],
    ids=["continuation", "heredoc"],
)
def test_from_rewrite_ignores_lines_that_are_not_instructions(tail: str, tmp_path: Path) -> None:
    dockerfile = "FROM python:3.12-slim\n" + tail
    out = rewrite_from(["awk"], dockerfile, "IMG", tmp_path)
    assert out == "FROM IMG\n" + tail


# --- uploads ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "app.jar",
        "a b;rm -rf x",
        "$(touch pwned)",
        "`touch pwned`",
        "-n",
        'it\'s "quoted"',
        "..hidden",
    ],
)
def test_upload_file_name_is_data_not_shell(name: str, sandbox: Sandbox) -> None:
    command = upload_file_command(name)
    assert command[:2] == ("sh", "-c")
    assert command[3:] == (name,)
    assert name not in command[2]
    sandbox.source.mkdir(parents=True)
    (sandbox.source / "x").write_text("keep me")
    (sandbox.root / "x").write_text("keep me")
    result = sandbox.run(command[2], command[3:], stdin=b"payload \x01 bytes\n")
    assert result.returncode == 0, result.stderr
    assert (sandbox.source / name).read_text() == "payload \x01 bytes\n"
    assert (sandbox.workspace / "upload.done").exists()
    assert (sandbox.source / "x").read_text() == "keep me"
    assert (sandbox.root / "x").read_text() == "keep me"
    assert sorted(p.name for p in sandbox.source.iterdir()) == sorted({name, "x"})
    assert not list(sandbox.root.rglob("pwned"))


def test_upload_paths_are_the_fetch_scripts_paths() -> None:
    assert f"{SOURCE_DIR}/$0" in upload_file_command("a")[2]
    assert f"{WORKSPACE}/upload.done" == UPLOAD_DONE
    assert '"$W/upload.done"' in FETCH_SCRIPT
    assert "W=/workspace; SRC=$W/source" in FETCH_SCRIPT
    assert f"{WORKSPACE}/labels" == LABELS_FILE


def _tar(compress: bool) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz" if compress else "w") as archive:
        for name, data in (("Dockerfile", b"FROM scratch\n"), ("src/main.py", b"print(1)\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.uid = 4242
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("command", "compress"), [(UPLOAD_ARCHIVE_COMMAND, True), (UPLOAD_TAR_COMMAND, False)]
)
def test_upload_archives(command: tuple[str, ...], compress: bool, sandbox: Sandbox) -> None:
    sandbox.source.mkdir(parents=True)
    data = _tar(compress)
    result = subprocess.run(
        [command[0], command[1], sandbox.localize(command[2])],
        input=data,
        capture_output=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (sandbox.source / "Dockerfile").read_bytes() == b"FROM scratch\n"
    assert (sandbox.source / "src" / "main.py").read_bytes() == b"print(1)\n"
    assert (sandbox.workspace / "upload.done").exists()
    if compress:
        assert re.fullmatch(rb"\d+ bytes unpacked\n", result.stdout), result.stdout


def test_broken_archive_is_not_marked_done(sandbox: Sandbox) -> None:
    sandbox.source.mkdir(parents=True)
    result = subprocess.run(
        [*UPLOAD_ARCHIVE_COMMAND[:2], sandbox.localize(UPLOAD_ARCHIVE_COMMAND[2])],
        input=b"not a gzip stream",
        capture_output=True,
        check=False,
    )
    assert result.returncode != 0
    assert not (sandbox.workspace / "upload.done").exists()


# --- fetch-source, run for real ----------------------------------------------------------------


def git(repo: Path, *args: str) -> str:
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(repo.parent),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": AUTHOR[0],
        "GIT_AUTHOR_EMAIL": AUTHOR[1],
        "GIT_COMMITTER_NAME": COMMITTER[0],
        "GIT_COMMITTER_EMAIL": COMMITTER[1],
    }
    result = subprocess.run(
        ["git", "-C", str(repo), *args], env=environment, capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


class Repo:
    def __init__(self, path: Path, first: str, head: str, subject: str) -> None:
        self.path, self.first, self.head, self.subject = path, first, head, subject

    @property
    def uri(self) -> str:
        return f"file://{self.path}"


HEAD_SUBJECT = 'Fix "checkout" \\ flow (v2)'


def make_repo(root: Path, subject: str = HEAD_SUBJECT) -> Repo:
    path = root / "repo"
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    (path / "web").mkdir()
    (path / "web" / "Dockerfile").write_text(
        "FROM golang:1.22 AS build\nRUN true\nFROM alpine:3.19\n"
    )
    (path / "web" / "app.py").write_text("print('v1')\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "Initial import")
    first = git(path, "rev-parse", "HEAD")
    (path / "web" / "app.py").write_text("print('v2')\n")
    git(path, "commit", "-q", "-am", subject)
    git(path, "branch", "release")
    return Repo(path, first, git(path, "rev-parse", "HEAD"), subject)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Repo:
    return make_repo(tmp_path_factory.mktemp("git"))


def git_spec(uri: str, **source: Any) -> dict[str, Any]:
    return {
        "source": {
            "type": "Git",
            "git": {"uri": uri, "ref": "main"},
            "contextDir": "web",
            **source,
        },
        "strategy": {"type": "Docker", "dockerStrategy": {}},
        "output": {"to": {"kind": "DockerImage", "name": OUTPUT}},
    }


def run_fetch(
    sandbox: Sandbox,
    spec: Mapping[str, Any],
    resolved: Resolved | None = None,
    settings_: JobSettings = SETTINGS,
    extra_env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    job = render_job(
        build_body(spec),
        resolved or Resolved(privileged_builds=True, output_image=OUTPUT),
        settings_,
    )
    fetch = container_of(job, FETCH_CONTAINER)
    assert fetch["command"][:2] == ["/bin/sh", "-c"]
    environment = container_env(job, FETCH_CONTAINER)
    return sandbox.run(fetch["command"][2], env=environment, test_env=extra_env)


@needs_git
def test_fetch_git_source_end_to_end(repo: Repo, sandbox: Sandbox) -> None:
    spec = git_spec(repo.uri)
    spec["source"]["secrets"] = [{"secret": {"name": "tls"}, "destinationDir": "certs"}]
    spec["source"]["configMaps"] = [{"configMap": {"name": "settings"}}]
    # A Secret volume as the kubelet lays it out: keys are links into ..data.
    secret = sandbox.inputs / "0"
    (secret / "..2025_01_01_00_00_00.000000001").mkdir(parents=True)
    (secret / "..2025_01_01_00_00_00.000000001" / "tls.crt").write_text("CERT\n")
    (secret / "..data").symlink_to("..2025_01_01_00_00_00.000000001")
    (secret / "tls.crt").symlink_to("..data/tls.crt")
    (sandbox.inputs / "1").mkdir()
    (sandbox.inputs / "1" / "app.ini").write_text("[app]\n")

    result = run_fetch(
        sandbox, spec, Resolved(privileged_builds=True, output_image=OUTPUT, base_image=BASE)
    )
    assert result.returncode == 0, result.stderr
    context = sandbox.source / "web"
    assert (context / "app.py").read_text() == "print('v2')\n"
    # dockerStrategy.from replaced the last FROM only.
    assert (context / "Dockerfile").read_text() == (
        f"FROM golang:1.22 AS build\nRUN true\nFROM {BASE}\n"
    )
    # Inputs: the keys, dereferenced; none of the kubelet's bookkeeping.
    assert (context / "certs" / "tls.crt").read_text() == "CERT\n"
    assert not (context / "certs" / "tls.crt").is_symlink()
    assert sorted(p.name for p in (context / "certs").iterdir()) == ["tls.crt"]
    assert (context / "app.ini").read_text() == "[app]\n"
    labels = (sandbox.workspace / "labels").read_text().splitlines()
    assert labels == [
        f"io.openshift.build.commit.id={repo.head}",
        f"io.openshift.build.commit.author={AUTHOR[0]} <{AUTHOR[1]}>",
        f"io.openshift.build.commit.message={repo.subject}",
        "io.openshift.build.commit.ref=main",
        f"io.openshift.build.source-location={repo.uri}",
        "io.openshift.build.source-context-dir=web",
    ]
    report = sandbox.report()
    assert report["commit"] == repo.head
    assert report["author"] == {"name": AUTHOR[0], "email": AUTHOR[1]}
    assert report["committer"] == {"name": COMMITTER[0], "email": COMMITTER[1]}
    assert report["message"] == repo.subject
    assert isinstance(report["ms"], int)
    assert report["ms"] >= 0
    # What observe makes of it.
    seen = observe(JOB_RUNNING, terminated_pod(sandbox.termination_log.read_text(), None))
    assert seen.revision == {
        "type": "Git",
        "git": {
            "commit": repo.head,
            "author": {"name": AUTHOR[0], "email": AUTHOR[1]},
            "committer": {"name": COMMITTER[0], "email": COMMITTER[1]},
            "message": repo.subject,
        },
    }
    # A shallow clone by default.
    assert git(sandbox.source, "rev-list", "--count", "HEAD") == "1"


@needs_git
def test_fetch_revision_commit(repo: Repo, sandbox: Sandbox) -> None:
    spec = git_spec(repo.uri)
    spec["revision"] = {"type": "Git", "git": {"commit": repo.first}}
    result = run_fetch(sandbox, spec)
    assert result.returncode == 0, result.stderr
    assert sandbox.report()["commit"] == repo.first
    assert (sandbox.source / "web" / "app.py").read_text() == "print('v1')\n"


@needs_git
def test_fetch_ref_that_is_a_commit(repo: Repo, sandbox: Sandbox) -> None:
    spec = git_spec(repo.uri)
    spec["source"]["git"]["ref"] = repo.first
    result = run_fetch(sandbox, spec)
    assert result.returncode == 0, result.stderr
    assert sandbox.report()["commit"] == repo.first


@needs_git
def test_fetch_ref_that_is_a_branch(repo: Repo, sandbox: Sandbox) -> None:
    spec = git_spec(repo.uri)
    spec["source"]["git"]["ref"] = "release"
    result = run_fetch(sandbox, spec)
    assert result.returncode == 0, result.stderr
    assert sandbox.report()["commit"] == repo.head
    assert "io.openshift.build.commit.ref=release" in (sandbox.workspace / "labels").read_text()


@needs_git
@pytest.mark.parametrize(
    ("change", "code", "error"),
    [
        ({"uri": "file:///nonexistent/repo.git"}, 10, "could not check out main from"),
        ({"ref": "no-such-branch"}, 10, "could not check out no-such-branch from"),
        ({"contextDir": "missing"}, 11, "context directory missing does not exist in the source"),
        ({"dockerfilePath": "Containerfile"}, 12, "no Dockerfile at web/Containerfile"),
    ],
)
def test_fetch_failures(
    repo: Repo, sandbox: Sandbox, change: dict[str, str], code: int, error: str
) -> None:
    spec = git_spec(repo.uri)
    if "uri" in change:
        spec["source"]["git"]["uri"] = change["uri"]
    if "ref" in change:
        spec["source"]["git"]["ref"] = change["ref"]
    if "contextDir" in change:
        spec["source"]["contextDir"] = change["contextDir"]
    if "dockerfilePath" in change:
        spec["strategy"]["dockerStrategy"]["dockerfilePath"] = change["dockerfilePath"]
    result = run_fetch(sandbox, spec)
    assert result.returncode == code, result.stderr
    last = result.stderr.rstrip("\n").splitlines()[-1]
    assert last.startswith(f"error: {error}"), result.stderr
    assert not sandbox.termination_log.exists()


@needs_git
def test_fetch_clone_without_ref_fails_with_code_10(sandbox: Sandbox) -> None:
    spec = git_spec("file:///nonexistent/repo.git")
    del spec["source"]["git"]["ref"]
    result = run_fetch(sandbox, spec)
    assert result.returncode == 10
    assert result.stderr.rstrip().endswith("error: could not clone file:///nonexistent/repo.git")


@needs_git
def test_fetch_credentials_come_from_files_and_stay_out_of_logs(
    repo: Repo, sandbox: Sandbox
) -> None:
    source_secret = sandbox.secrets / "source"
    source_secret.mkdir()
    (source_secret / "username").write_text("robot")
    (source_secret / "password").write_text("s3cr3t-Pa$$word")
    spec = git_spec(repo.uri, sourceSecret={"name": "git-basic"})
    result = run_fetch(sandbox, spec)
    assert result.returncode == 0, result.stderr
    assert "s3cr3t" not in result.stdout + result.stderr
    home = sandbox.scratch / "home"
    assert "s3cr3t" not in (home / ".gitconfig").read_text()
    fill = subprocess.run(
        ["git", "credential", "fill"],
        input="protocol=https\nhost=git.example.com\n\n",
        env={
            "PATH": os.environ["PATH"],
            "HOME": str(home),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_TERMINAL_PROMPT": "0",
        },
        capture_output=True,
        text=True,
        check=True,
    )
    assert "username=robot" in fill.stdout.splitlines()
    assert "password=s3cr3t-Pa$$word" in fill.stdout.splitlines()


@needs_git
def test_fetch_password_without_username(repo: Repo, sandbox: Sandbox) -> None:
    (sandbox.secrets / "source").mkdir()
    (sandbox.secrets / "source" / "password").write_text("token")
    assert run_fetch(sandbox, git_spec(repo.uri, sourceSecret={"name": "s"})).returncode == 0
    fill = subprocess.run(
        ["git", "credential", "fill"],
        input="protocol=https\nhost=git.example.com\n\n",
        env={
            "PATH": os.environ["PATH"],
            "HOME": str(sandbox.scratch / "home"),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_TERMINAL_PROMPT": "0",
        },
        capture_output=True,
        text=True,
        check=True,
    )
    assert fill.stdout.splitlines()[-2:] == ["username=headwater", "password=token"]


def test_fetch_inline_dockerfile(sandbox: Sandbox) -> None:
    dockerfile = "FROM alpine\nRUN echo \"$HOME\" '$(id)' `id`\nFROM alpine AS final\n"
    spec = {
        "source": {"type": "Dockerfile", "dockerfile": dockerfile},
        "strategy": {"type": "Docker", "dockerStrategy": {"dockerfilePath": "build/Containerfile"}},
    }
    result = run_fetch(
        sandbox, spec, Resolved(privileged_builds=True, output_image=None, base_image="IMG")
    )
    assert result.returncode == 0, result.stderr
    written = (sandbox.source / "build" / "Containerfile").read_text()
    # printf '%s\n' adds a newline: a trailing blank line at most.
    assert written.rstrip("\n") + "\n" == dockerfile.replace(
        "FROM alpine AS final", "FROM IMG AS final"
    )
    assert (sandbox.workspace / "labels").read_text() == ""
    assert sandbox.report()["commit"] == ""
    seen = observe(JOB_RUNNING, terminated_pod(sandbox.termination_log.read_text(), None))
    assert seen.revision is None


def test_fetch_binary_waits_for_the_upload(sandbox: Sandbox) -> None:
    spec = {
        "source": {"type": "Binary"},
        "strategy": {"type": "Docker", "dockerStrategy": {}},
    }
    sandbox.source.mkdir(parents=True)
    (sandbox.source / "Dockerfile").write_text("FROM scratch\n")
    (sandbox.workspace / "upload.done").touch()
    result = run_fetch(sandbox, spec)
    assert result.returncode == 0, result.stderr
    assert "Received binary input" in result.stdout


def test_fetch_binary_times_out(sandbox: Sandbox) -> None:
    spec = {"source": {"type": "Binary"}, "strategy": {"type": "Docker", "dockerStrategy": {}}}
    settings_ = JobSettings(executor="buildah", builder_image="b", upload_timeout_seconds=1)
    result = run_fetch(sandbox, spec, settings_=settings_)
    assert result.returncode == 10
    assert result.stderr.rstrip().endswith("error: no binary input within 1s")


def test_fetch_source_strategy_prepares_the_s2i_context(sandbox: Sandbox) -> None:
    spec = {
        "source": {"type": "Binary", "contextDir": "app"},
        "strategy": {"type": "Source", "sourceStrategy": {"from": {"name": BASE}}},
    }
    (sandbox.source / "app").mkdir(parents=True)
    (sandbox.source / "app" / "main.py").write_text("print(1)\n")
    (sandbox.workspace / "upload.done").touch()
    resolved = Resolved(
        privileged_builds=True,
        output_image=OUTPUT,
        base_image=BASE,
        s2i_dockerfile="FROM builder\nCOPY upload/src /tmp/src\n",
        s2i_environment_script="pwd > where && test -f Dockerfile",
    )
    result = run_fetch(sandbox, spec, resolved)
    assert result.returncode == 0, result.stderr
    s2i = sandbox.workspace / "s2i"
    assert (s2i / "Dockerfile").read_text().rstrip("\n") == "FROM builder\nCOPY upload/src /tmp/src"
    assert (s2i / "upload" / "src" / "main.py").read_text() == "print(1)\n"
    assert (s2i / "where").read_text().strip() == str(s2i)


def test_fetch_bad_s2i_environment_fails_with_code_12(sandbox: Sandbox) -> None:
    spec = {
        "source": {"type": "Binary"},
        "strategy": {"type": "Source", "sourceStrategy": {"from": {"name": BASE}}},
    }
    (sandbox.workspace / "upload.done").touch()
    resolved = Resolved(
        privileged_builds=True,
        output_image=OUTPUT,
        base_image=BASE,
        s2i_dockerfile="FROM b\n",
        s2i_environment_script="false",
    )
    result = run_fetch(sandbox, spec, resolved)
    assert result.returncode == 12
    assert result.stderr.rstrip().endswith("error: invalid .s2i/environment")


@needs_git
@pytest.mark.parametrize(("no_cache", "resolutions"), [(False, 2), (True, 1)])
def test_fetch_for_kaniko_appends_env_and_labels(
    repo: Repo, sandbox: Sandbox, no_cache: bool, resolutions: int
) -> None:
    spec = git_spec(repo.uri)
    spec["strategy"]["dockerStrategy"]["noCache"] = no_cache
    spec["strategy"]["dockerStrategy"]["env"] = [
        {"name": "GREETING", "value": 'say "hi" \\ there'},
        {"name": "EMPTY", "value": ""},
    ]
    result = run_fetch(sandbox, spec, settings_=KANIKO_SETTINGS)
    assert result.returncode == 0, result.stderr
    lines = (sandbox.source / "web" / "Dockerfile").read_text().splitlines()
    env_lines = [line for line in lines if line.startswith("ENV ")]
    label_lines = [line for line in lines if line.startswith("LABEL ")]
    # The env after every FROM (OpenShift's place: RUN steps of each stage see it),
    # the labels at the end (on the final image).
    assert lines == [
        "FROM golang:1.22 AS build", *env_lines[:2], "RUN true",
        "FROM alpine:3.19", *env_lines[2:], *label_lines,
    ]  # fmt: skip
    assert [dockerfile_pair(line, "ENV") for line in env_lines] == 2 * [
        ("GREETING", 'say "hi" \\ there'),
        ("EMPTY", ""),
    ]
    labels = dict(
        line.split("=", 1) for line in (sandbox.workspace / "labels").read_text().splitlines()
    )
    assert dict(kaniko_label_pair(line, resolutions) for line in label_lines) == labels
    assert labels["io.openshift.build.commit.message"] == HEAD_SUBJECT


@needs_git
@pytest.mark.parametrize(("no_cache", "resolutions"), [(False, 2), (True, 1)])
def test_fetch_for_kaniko_labels_keep_dollar_signs(
    tmp_path: Path, sandbox: Sandbox, no_cache: bool, resolutions: int
) -> None:
    subject = 'Use $HOME, ${PATH} in $0, "quotes" and a \\ backslash'
    dollar = make_repo(tmp_path / "dollar", subject=subject)
    spec = git_spec(dollar.uri)
    spec["strategy"]["dockerStrategy"]["noCache"] = no_cache
    result = run_fetch(sandbox, spec, settings_=KANIKO_SETTINGS)
    assert result.returncode == 0, result.stderr
    lines = (sandbox.source / "web" / "Dockerfile").read_text().splitlines()
    labels = dict(
        kaniko_label_pair(line, resolutions) for line in lines if line.startswith("LABEL ")
    )
    assert labels["io.openshift.build.commit.message"] == subject


@needs_git
def test_kaniko_source_build_gets_commit_labels(repo: Repo, sandbox: Sandbox) -> None:
    spec = git_spec(repo.uri)
    spec["strategy"] = {"type": "Source", "sourceStrategy": {"from": {"name": BASE}}}
    resolved = Resolved(
        privileged_builds=True,
        output_image=OUTPUT,
        base_image=BASE,
        s2i_dockerfile="FROM b\n",
        s2i_environment_script=":",
    )
    result = run_fetch(sandbox, spec, resolved, KANIKO_SETTINGS)
    assert result.returncode == 0, result.stderr
    dockerfile = (sandbox.workspace / "s2i" / "Dockerfile").read_text()
    # Quoted twice: the layer cache is on (see kaniko_label_pair).
    assert f'LABEL "io.openshift.build.commit.id"="\\"{repo.head}\\""' in dockerfile


# --- the buildah program, with a fake buildah ------------------------------------------------

FAKE_BUILDAH = """\
import json, os, sys
args = sys.argv[1:]
record = {"argv": args}
if "--authfile" in args:
    with open(args[args.index("--authfile") + 1]) as fh:
        record["authfile"] = fh.read()
conf = os.environ.get("CONTAINERS_REGISTRIES_CONF")
if conf:
    with open(conf) as fh:
        record["registries_conf"] = fh.read()
with open(os.environ["FAKE_BUILDAH_LOG"], "a") as fh:
    fh.write(json.dumps(record) + "\\n")
rc = int(os.environ.get("FAKE_" + args[0].upper() + "_RC", "0"))
if args[0] == "bud" and "--cache-to" in args and os.environ.get("FAKE_CACHE_PUSH_FAILS"):
    print("Error: failed pushing cache to {{{reg x-cache}}}: unauthorized", file=sys.stderr)
    sys.exit(125)
if rc == 0 and args[0] == "from":
    print("ctr-1")
if rc == 0 and args[0] == "images":
    sys.stdout.write(os.environ.get("FAKE_IMAGES", ""))
if rc == 0 and args[0] == "push":
    with open(args[args.index("--digestfile") + 1], "w") as fh:
        fh.write(os.environ["FAKE_DIGEST"])
if rc != 0:
    print("Error: fake " + args[0] + " failed", file=sys.stderr)
sys.exit(rc)
"""


def install_fake_buildah(sandbox: Sandbox) -> Path:
    fake = sandbox.bin / "buildah"
    fake.write_text(f"#!{sys.executable}\n{FAKE_BUILDAH}")
    fake.chmod(0o755)
    return sandbox.root / "buildah.log"


def run_buildah(
    sandbox: Sandbox,
    spec: Mapping[str, Any],
    resolved: Resolved,
    settings_: JobSettings = SETTINGS,
    labels: str = "",
    fake: Mapping[str, str] | None = None,
) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    log = install_fake_buildah(sandbox)
    (sandbox.workspace / "labels").write_text(labels)
    job = render_job(build_body(spec), resolved, settings_)
    main = container_of(job, BUILD_CONTAINER)
    assert main["command"][:2] == ["/bin/sh", "-c"]
    result = sandbox.run(
        main["command"][2],
        [*main["command"][3:], *main["args"]],
        container_env(job, BUILD_CONTAINER),
        test_env={"FAKE_BUILDAH_LOG": str(log), "FAKE_DIGEST": DIGEST, **(fake or {})},
    )
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    # The listing of pulled images (provenance) is checked on its own.
    return result, [c for c in calls if c["argv"][0] != "images"]


def docker_spec(**extra: Any) -> dict[str, Any]:
    return {
        "source": {"type": "Git", "git": {"uri": "https://example.com/r.git"}},
        "strategy": {"type": "Docker", "dockerStrategy": {}},
        "output": {"to": {"kind": "DockerImage", "name": OUTPUT}},
        **extra,
    }


def test_buildah_build_and_push(sandbox: Sandbox) -> None:
    labels = "io.openshift.build.commit.id=abc\nio.openshift.build.commit.message=a = b\n"
    result, calls = run_buildah(
        sandbox, docker_spec(), Resolved(privileged_builds=True, output_image=OUTPUT), labels=labels
    )
    assert result.returncode == 0, result.stderr
    job = render_job(
        build_body(docker_spec()), Resolved(privileged_builds=True, output_image=OUTPUT), SETTINGS
    )
    options = container_of(job, BUILD_CONTAINER)["args"]
    context = sandbox.localize(SOURCE_DIR)
    assert [c["argv"][0] for c in calls] == ["bud", "push"]
    assert calls[0]["argv"] == [
        "bud",
        *[sandbox.localize(o) for o in options],
        "--label",
        "io.openshift.build.commit.id=abc",
        "--label",
        "io.openshift.build.commit.message=a = b",
        "-t",
        OUTPUT,
        context,
    ]
    push = calls[1]["argv"]
    assert push[0] == "push"
    assert push[-2:] == [OUTPUT, f"docker://{OUTPUT}"]
    assert "--authfile" not in push
    assert "registries_conf" not in calls[0]
    report = sandbox.report()
    assert report["digest"] == DIGEST
    assert [s["name"] for s in report["stages"]] == ["Build", "PostCommit", "PushImage"]
    seen = observe(JOB_RUNNING, terminated_pod(None, sandbox.termination_log.read_text()))
    assert seen.phase == "Complete"
    assert seen.digest == DIGEST
    # No hook ran: no PostCommit stage; a fast fake build may take 0 ms.
    assert {s["name"] for s in seen.stages} <= {"FetchInputs", "Build", "PushImage"}


def test_buildah_without_output_does_not_push(sandbox: Sandbox) -> None:
    spec = docker_spec()
    del spec["output"]
    result, calls = run_buildah(sandbox, spec, Resolved(privileged_builds=True, output_image=None))
    assert result.returncode == 0, result.stderr
    assert [c["argv"][0] for c in calls] == ["bud"]
    assert calls[0]["argv"][-3:-1] == ["-t", "localhost/headwater-build:latest"]
    assert sandbox.report()["digest"] == ""
    seen = observe(JOB_RUNNING, terminated_pod(None, sandbox.termination_log.read_text()))
    assert (seen.phase, seen.digest) == ("Complete", None)


def test_buildah_post_commit_arguments_survive_the_shell(sandbox: Sandbox) -> None:
    args = ["a b", '"quoted"', "$HOME", "$(touch pwned)", "*", "", "back\\slash", "new\nline"]
    spec = docker_spec(postCommit={"command": ["/usr/bin/env"], "args": args})
    result, calls = run_buildah(
        sandbox, spec, Resolved(privileged_builds=True, output_image=OUTPUT)
    )
    assert result.returncode == 0, result.stderr
    assert [c["argv"][0] for c in calls] == ["bud", "from", "run", "rm", "push"]
    assert calls[1]["argv"] == ["from", "--pull=never", OUTPUT]
    assert calls[2]["argv"] == ["run", "--network", "host", "ctr-1", "--", "/usr/bin/env", *args]
    assert calls[3]["argv"] == ["rm", "ctr-1"]
    assert not list(sandbox.root.rglob("pwned"))


def test_buildah_post_commit_script(sandbox: Sandbox) -> None:
    spec = docker_spec(postCommit={"script": "bundle exec rake test", "args": ["--fast"]})
    result, calls = run_buildah(
        sandbox, spec, Resolved(privileged_builds=True, output_image=OUTPUT)
    )
    assert result.returncode == 0, result.stderr
    run = next(c["argv"] for c in calls if c["argv"][0] == "run")
    assert run == [
        "run", "--network", "host", "ctr-1", "--",
        "/bin/sh", "-ic", "bundle exec rake test", "sh", "--fast",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("fake", "code", "error", "commands"),
    [
        ({"FAKE_BUD_RC": "1"}, 20, "the image build failed", ["bud"]),
        ({"FAKE_FROM_RC": "125"}, 30, "could not start the built image", ["bud", "from"]),
        (
            {"FAKE_RUN_RC": "3"},
            30,
            "the post-commit hook failed (exit code 3)",
            ["bud", "from", "run", "rm"],
        ),
        (
            {"FAKE_PUSH_RC": "1"},
            40,
            f"could not push {OUTPUT}",
            ["bud", "from", "run", "rm", "push"],
        ),
    ],
)
def test_buildah_failures(
    sandbox: Sandbox, fake: dict[str, str], code: int, error: str, commands: list[str]
) -> None:
    spec = docker_spec(postCommit={"command": ["make", "test"]})
    result, calls = run_buildah(
        sandbox, spec, Resolved(privileged_builds=True, output_image=OUTPUT), fake=fake
    )
    assert result.returncode == code
    assert [c["argv"][0] for c in calls] == commands
    assert result.stderr.rstrip("\n").splitlines()[-1] == f"error: {error}"
    assert not sandbox.termination_log.exists()
    seen = observe(
        JOB_RUNNING, terminated_pod(None, result.stdout + result.stderr, build_code=code)
    )
    assert (seen.phase, seen.reason, seen.message) == ("Failed", EXIT_REASONS[code], error)


def test_buildah_registry_credentials(sandbox: Sandbox) -> None:
    pull = sandbox.secrets / "pull"
    pull.mkdir()
    legacy = {"registry.local:5000": {"auth": "dXNlcjpwYXNz", "email": "x@example.com"}}
    (pull / ".dockercfg").write_text(json.dumps(legacy))
    push = sandbox.secrets / "push"
    push.mkdir()
    config = {"auths": {"registry.local:5000": {"auth": "cHVzaDpwdXNo"}}}
    (push / ".dockerconfigjson").write_text(json.dumps(config))
    resolved = Resolved(
        privileged_builds=True, output_image=OUTPUT, push_secret="push", pull_secret="pull"
    )
    no_cache = docker_spec(strategy={"type": "Docker", "dockerStrategy": {"noCache": True}})
    result, calls = run_buildah(sandbox, no_cache, resolved)
    assert result.returncode == 0, result.stderr
    bud, push_call = calls
    assert bud["argv"][1] == "--authfile"
    assert json.loads(bud["authfile"]) == {"auths": legacy}
    assert push_call["argv"][1:3] == ["--authfile", str(push / ".dockerconfigjson")]
    assert json.loads(push_call["authfile"]) == config


def test_buildah_cache_writes_with_the_push_secret_and_pulls_with_both(sandbox: Sandbox) -> None:
    """bud writes the layer cache (the output's registry) with the push secret: one
    auth file, the push secret's entries first, then the pull secret's for other hosts."""
    pull = sandbox.secrets / "pull"
    pull.mkdir()
    pulls = {
        "registry.local:5000": {"auth": "cHVsbDpwdWxs"},
        "docker.io": {"auth": "aHViOmh1Yg=="},
    }
    (pull / ".dockerconfigjson").write_text(json.dumps({"auths": pulls}))
    push = sandbox.secrets / "push"
    push.mkdir()
    pushes = {"registry.local:5000": {"auth": "cHVzaDpwdXNo"}}
    (push / ".dockerconfigjson").write_text(json.dumps({"auths": pushes}))
    resolved = Resolved(
        privileged_builds=True, output_image=OUTPUT, push_secret="push", pull_secret="pull"
    )
    result, calls = run_buildah(sandbox, docker_spec(), resolved)
    assert result.returncode == 0, result.stderr
    bud, push_call = calls
    assert "--cache-to" in bud["argv"]
    assert json.loads(bud["authfile"]) == {
        "auths": {
            "registry.local:5000": pushes["registry.local:5000"],
            "docker.io": pulls["docker.io"],
        }
    }
    assert json.loads(push_call["authfile"]) == {"auths": pushes}
    # Only the push secret: it serves the cache too.
    (pull / ".dockerconfigjson").unlink()
    result, calls = run_buildah(
        sandbox,
        docker_spec(),
        Resolved(privileged_builds=True, output_image=OUTPUT, push_secret="push"),
    )
    assert result.returncode == 0, result.stderr
    bud = calls[-2]  # the log goes on from the first run
    assert bud["argv"][1:3] == ["--authfile", str(push / ".dockerconfigjson")]


def test_buildah_unwritable_cache_does_not_fail_the_build(sandbox: Sandbox) -> None:
    resolved = Resolved(privileged_builds=True, output_image=OUTPUT)
    result, calls = run_buildah(
        sandbox, docker_spec(), resolved, fake={"FAKE_CACHE_PUSH_FAILS": "1"}
    )
    assert result.returncode == 0, result.stderr
    first, second, push_call = calls
    assert "--cache-to" in first["argv"]
    # Again without writing the cache, still reading it, every other option kept.
    assert "--cache-to" not in second["argv"]
    cache_at = first["argv"].index("--cache-to")
    assert second["argv"] == first["argv"][:cache_at] + first["argv"][cache_at + 2 :]
    assert "--cache-from" in second["argv"]
    assert push_call["argv"][0] == "push"
    assert "could not write the layer cache" in result.stdout
    assert json.loads(sandbox.termination_log.read_text())["digest"] == DIGEST


def test_buildah_failing_build_with_cache_is_not_retried(sandbox: Sandbox) -> None:
    resolved = Resolved(privileged_builds=True, output_image=OUTPUT)
    result, calls = run_buildah(sandbox, docker_spec(), resolved, fake={"FAKE_BUD_RC": "1"})
    assert result.returncode == EXIT_BUILD
    assert [c["argv"][0] for c in calls] == ["bud"]


def test_buildah_insecure_registries(sandbox: Sandbox) -> None:
    settings_ = JobSettings(
        executor="buildah",
        builder_image="b",
        insecure_registries=("registry.local:5000", "10.0.0.1"),
    )
    result, calls = run_buildah(
        sandbox, docker_spec(), Resolved(privileged_builds=True, output_image=OUTPUT), settings_
    )
    assert result.returncode == 0, result.stderr
    conf = calls[0]["registries_conf"]
    assert conf.count("[[registry]]") == 2
    assert 'location = "registry.local:5000"\ninsecure = true' in conf
    assert 'location = "10.0.0.1"\ninsecure = true' in conf


@needs_git
def test_fetch_then_build_then_observe(repo: Repo, sandbox: Sandbox) -> None:
    spec = git_spec(repo.uri)
    spec["postCommit"] = {"script": "true"}
    fetch = run_fetch(
        sandbox, spec, Resolved(privileged_builds=True, output_image=OUTPUT, base_image=BASE)
    )
    assert fetch.returncode == 0, fetch.stderr
    fetch_message = sandbox.termination_log.read_text()
    log = install_fake_buildah(sandbox)
    job = render_job(
        build_body(spec),
        Resolved(privileged_builds=True, output_image=OUTPUT, base_image=BASE),
        SETTINGS,
    )
    main = container_of(job, BUILD_CONTAINER)
    build = sandbox.run(
        main["command"][2],
        [*main["command"][3:], *main["args"]],
        container_env(job, BUILD_CONTAINER),
        test_env={"FAKE_BUILDAH_LOG": str(log), "FAKE_DIGEST": DIGEST},
    )
    assert build.returncode == 0, build.stderr
    bud = json.loads(log.read_text().splitlines()[0])["argv"]
    assert bud[-1] == str(sandbox.source / "web")
    assert f"io.openshift.build.commit.id={repo.head}" in bud
    seen = observe(JOB_RUNNING, terminated_pod(fetch_message, sandbox.termination_log.read_text()))
    assert seen.phase == "Complete"
    assert seen.digest == DIGEST
    assert seen.revision is not None
    assert seen.revision["git"]["commit"] == repo.head
    assert seen.stages[0]["name"] == "FetchInputs"


# --- kaniko: the post-commit hook as a stage of its own -----------------------------------


@pytest.mark.parametrize(
    ("last_from", "named", "stage"),
    [
        ("FROM alpine:3.19", "FROM alpine:3.19 AS headwater-built", "headwater-built"),
        ("FROM --platform=linux/amd64 alpine AS final", None, "final"),
        ("from alpine as Final", None, "Final"),
    ],
)
def test_kaniko_post_commit_hook_runs_in_a_stage_on_the_built_image(
    last_from: str, named: str | None, stage: str, sandbox: Sandbox
) -> None:
    script = 'test "$(cat /answer)" = 42 && echo "it\'s $HOME"'
    dockerfile = f"FROM golang AS build\nRUN true\n{last_from}\nRUN echo 42 > /answer\n"
    spec = {
        "source": {"type": "Dockerfile", "dockerfile": dockerfile},
        "strategy": {"type": "Docker", "dockerStrategy": {}},
        "postCommit": {"script": script, "args": ["a b"]},
    }
    result = run_fetch(sandbox, spec, Resolved(output_image=OUTPUT), KANIKO_SETTINGS)
    assert result.returncode == 0, result.stderr
    lines = (sandbox.source / "Dockerfile").read_text().splitlines()
    assert lines[:4] == [
        "FROM golang AS build",
        "RUN true",
        named or last_from,
        "RUN echo 42 > /answer",
    ]
    assert lines[-5:] == [
        f"FROM {stage} AS headwater-post-commit",
        "LABEL io.headwater.post-commit=running",
        lines[-3],
        "RUN " + json.dumps(["/bin/sh", "-ic", script, "sh", "a b"]),
        f"FROM {stage}",  # the image pushed: the last stage as it was
    ]
    run = lines[-2].removeprefix("RUN ")
    assert json.loads(run)[2] == script  # exec form: no shell made from the hook
    # A value new to each build in the hook's stage: kaniko's layer cache key of the
    # hook step changes with it, so the hook runs on every build.
    assert re.fullmatch(r"ARG HEADWATER_POST_COMMIT_ID=[0-9a-f-]{36}", lines[-3]), lines[-3]
    again = run_fetch(sandbox, spec, Resolved(output_image=OUTPUT), KANIKO_SETTINGS)
    assert again.returncode == 0, again.stderr
    assert lines[-3] not in (sandbox.source / "Dockerfile").read_text()


def test_kaniko_post_commit_hook_on_a_source_build(sandbox: Sandbox) -> None:
    spec = {
        "source": {"type": "Binary"},
        "strategy": {"type": "Source", "sourceStrategy": {"from": {"name": BASE}}},
        "postCommit": {"command": ["bundle", "exec", "rake"]},
    }
    (sandbox.source).mkdir(parents=True, exist_ok=True)
    (sandbox.workspace / "upload.done").touch()
    resolved = Resolved(
        output_image=OUTPUT,
        base_image=BASE,
        s2i_dockerfile="FROM builder\nCOPY upload/src /tmp/src\nCMD run",
        s2i_environment_script="true",
    )
    result = run_fetch(sandbox, spec, resolved, KANIKO_SETTINGS)
    assert result.returncode == 0, result.stderr
    lines = (sandbox.workspace / "s2i" / "Dockerfile").read_text().splitlines()
    assert lines[0] == "FROM builder AS headwater-built"
    assert lines[-4] == "LABEL io.headwater.post-commit=running"
    assert lines[-3].startswith("ARG HEADWATER_POST_COMMIT_ID=")
    assert lines[-2:] == ['RUN ["bundle", "exec", "rake"]', "FROM headwater-built"]


def test_no_post_commit_hook_leaves_the_dockerfile_alone_for_kaniko(sandbox: Sandbox) -> None:
    dockerfile = "FROM alpine\nRUN true\n"
    spec = {
        "source": {"type": "Dockerfile", "dockerfile": dockerfile},
        "strategy": {"type": "Docker", "dockerStrategy": {}},
    }
    result = run_fetch(sandbox, spec, Resolved(output_image=OUTPUT), KANIKO_SETTINGS)
    assert result.returncode == 0, result.stderr
    assert (sandbox.source / "Dockerfile").read_text().rstrip("\n") + "\n" == dockerfile


# --- provenance: the images a build starts from ------------------------------------------------


def test_fetch_reports_every_stage_from_image(sandbox: Sandbox) -> None:
    dockerfile = (
        "FROM --platform=linux/amd64 golang:1.22 AS build\n"
        "RUN go build\n"
        "FROM build AS test\n"
        "FROM alpine:3 AS runtime\n"
        "RUN <<EOF\nFROM not-an-image\nEOF\n"
        "FROM scratch\n"
        "FROM runtime\n"
    )
    spec = {
        "source": {"type": "Dockerfile", "dockerfile": dockerfile},
        "strategy": {"type": "Docker"},
    }
    result = run_fetch(sandbox, spec, Resolved(privileged_builds=True, output_image=None))
    assert result.returncode == 0, result.stderr
    report = sandbox.report()
    assert report["from"] == ["golang:1.22", "alpine:3", "scratch"]
    assert report["fromCapped"] is False
    # The pushed stage is "runtime", whose base is alpine:3.
    assert report["lastFrom"] == "alpine:3"


def test_fetch_from_report_is_capped(sandbox: Sandbox) -> None:
    dockerfile = "".join(f"FROM r.example/img{i}:1\n" for i in range(MAX_IMAGES + 3))
    dockerfile += "FROM " + "x" * (MAX_REFERENCE + 1) + "\n"
    spec = {
        "source": {"type": "Dockerfile", "dockerfile": dockerfile},
        "strategy": {"type": "Docker"},
    }
    result = run_fetch(sandbox, spec, Resolved(privileged_builds=True, output_image=None))
    assert result.returncode == 0, result.stderr
    report = sandbox.report()
    assert len(report["from"]) == MAX_IMAGES
    assert report["fromCapped"] is True
    assert len(sandbox.termination_log.read_bytes()) < 4096


def test_fetch_replaced_from_is_the_reported_base(sandbox: Sandbox) -> None:
    spec = {
        "source": {"type": "Dockerfile", "dockerfile": "FROM alpine\n"},
        "strategy": {"type": "Docker"},
    }
    pinned = "10.244.0.1:5000/ns/base@sha256:" + "1" * 64
    result = run_fetch(
        sandbox, spec, Resolved(privileged_builds=True, output_image=None, base_image=pinned)
    )
    assert result.returncode == 0, result.stderr
    assert sandbox.report()["from"] == [pinned]
    assert sandbox.report()["lastFrom"] == pinned


def test_buildah_reports_the_images_it_pulled(sandbox: Sandbox) -> None:
    images = (
        f"docker.io/library/alpine:3@sha256:{'1' * 64}\n"
        f"<none>:<none>@sha256:{'2' * 64}\n"
        f"{OUTPUT}@sha256:{'3' * 64}\n"
        f"docker.io/library/golang:<none>@sha256:{'4' * 64}\n"
    )
    result, _ = run_buildah(
        sandbox, docker_spec(), Resolved(privileged_builds=True, output_image=OUTPUT),
        fake={"FAKE_IMAGES": images},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = sandbox.report()
    assert report["pulled"] == [
        f"docker.io/library/alpine:3@sha256:{'1' * 64}",
        f"docker.io/library/golang@sha256:{'4' * 64}",
    ]
    assert report["pulledCapped"] is False
    seen = reported_images(None, report)
    assert seen.pulled[1] == ("docker.io/library/golang", f"sha256:{'4' * 64}")
