"""The Source-to-Image strategy as a generated Dockerfile (pure).

OpenShift runs Source builds by having s2i write a Dockerfile
(``s2i build --as-dockerfile``) and building that; Headwater does the same,
writing the Dockerfile itself from what the operator knows: the builder
image's config (labels, user), the strategy's env and scripts URL, and the
previous output image for incremental builds. References below are to
openshift/source-to-image (``pkg/build/strategies/dockerfile/dockerfile.go``,
``pkg/scripts``, ``pkg/util/labels.go``) and to openshift/builder
(``pkg/build/builder/sti.go``, which fills s2i's config for a Build).

The build context, prepared by the build pod, holds:

- ``Dockerfile``: this text, after ``s2i_environment_script()`` replaced
  the line ``S2I_ENVIRONMENT_MARKER`` with ENV lines;
- ``upload/src/``: the application source (contextDir already applied),
  as s2i's own ``upload/src``.

s2i decides from the source which scripts to use (a script in the source's
``.s2i/bin`` overrides the builder's); the operator never sees the source,
so that choice is made while the image builds, by shell tests in RUN steps.
Because a Dockerfile's CMD cannot depend on a RUN, the chosen assemble and
run scripts are put at a fixed place, ``ENTRY_SCRIPTS_DIR``: the source's
override moved there, or a two-line wrapper that execs the builder's script
(see ``_stage_scripts``).

Executors: buildah and kaniko. Only instructions both support are used
(multi-stage ``COPY --from``, ``COPY/ADD --chown``, ``ADD <url>``); in
particular no ``RUN --mount`` (kaniko lacks it) and no ``COPY`` of a path
that may be missing (executors disagree on globs that match nothing).
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

if TYPE_CHECKING:
    # Only the type: importing the registry client would pull in aiohttp at runtime.
    from headwater.registry.client import ImageConfig

__all__ = [
    "ASSEMBLE_USER_LABEL",
    "BUILD_IMAGE_LABEL",
    "DEFAULT_ASSEMBLE_USER",
    "DEFAULT_DESTINATION",
    "DEPRECATED_SCRIPTS_URL_LABEL",
    "DESTINATION_LABEL",
    "ENTRY_SCRIPTS_DIR",
    "S2I_ENVIRONMENT_MARKER",
    "SCRIPTS_URL_LABEL",
    "SOURCE_DIR",
    "S2IError",
    "dockerfile_quote",
    "s2i_dockerfile",
    "s2i_environment_script",
]

SCRIPTS_URL_LABEL: Final = "io.openshift.s2i.scripts-url"
# s2i's docker.GetScriptsURL still falls back to the pre-OpenShift label.
DEPRECATED_SCRIPTS_URL_LABEL: Final = "io.s2i.scripts-url"
DESTINATION_LABEL: Final = "io.openshift.s2i.destination"
ASSEMBLE_USER_LABEL: Final = "io.openshift.s2i.assemble-user"
# s2i's util.GenerateLabelsFromConfig writes "<namespace>build.image"; openshift/builder
# passes the namespace "io.openshift." (DefaultDockerLabelNamespace), so OpenShift
# images carry io.openshift.build.image, not s2i's CLI default io.openshift.s2i.build.image.
BUILD_IMAGE_LABEL: Final = "io.openshift.build.image"

DEFAULT_DESTINATION: Final = "/tmp"  # noqa: S108 - a path in the image
# dockerfile.go Build(): "if len(config.AssembleUser) == 0 { config.AssembleUser = "1001" }".
DEFAULT_ASSEMBLE_USER: Final = "1001"

SOURCE_DIR: Final = "upload/src"
"""The application source, relative to the build context (s2i's constants.Source)."""

ENTRY_SCRIPTS_DIR: Final = "/usr/libexec/headwater-s2i"
"""Where the assemble and run scripts chosen at build time are put.

Outside the destination on purpose: s2i puts overrides in ``/tmp/scripts``, but
here every image would then start from ``/tmp``, and a pod that mounts an
emptyDir on ``/tmp`` (usual with a read-only root filesystem) could not start.
"""

S2I_ENVIRONMENT_MARKER: Final = "# headwater:s2i-environment"
"""The comment line ``s2i_environment_script()`` replaces with ``.s2i/environment``'s ENV lines."""

# Paths in the images being built, not on this machine (hence the noqa: S108).
# dockerfile.go: artifactsTar is always under defaultDestination, whatever the destination.
_ARTIFACTS_TAR: Final = "/tmp/artifacts.tar"  # noqa: S108
# The cached stage's private copies; that stage is thrown away after the build.
_CACHED_SOURCE: Final = "/tmp/headwater-s2i-source"  # noqa: S108
_CACHED_SAVE_ARTIFACTS: Final = "/tmp/headwater-s2i-save-artifacts"  # noqa: S108

# Kubernetes' rule for environment variable names (IsEnvVarName), which
# OpenShift applies to BuildConfig env; it also keeps "NAME=" unambiguous in ENV.
_ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")
_ENV_NAME_AWK = "^[-._a-zA-Z][-._a-zA-Z0-9]*$"
# Paths and users appear unquoted in COPY/ADD/USER and in shell words: only
# characters that need no quoting anywhere (shlex's safe set, which has no "$",
# so executors expand nothing either).
_SAFE_PATH = re.compile(r"/[\w@%+=:,./-]*", re.ASCII)
_USER = re.compile(r"[\w.-]+(?::[\w.-]+)?", re.ASCII)
_IMAGE_REFERENCE = re.compile(r"[A-Za-z0-9\[][\w.:/@+\[\]-]*", re.ASCII)
# A URL's characters (RFC 3986) without "$" (ADD expands variables), "*" and "?"
# (globs), "#" (a fragment would swallow the appended script name) or quotes.
_URL = re.compile(r"[A-Za-z0-9._~:/@!&()+,;=%-]+")

_NO_LABELS: Mapping[str, str] = MappingProxyType({})


class S2IError(ValueError):
    """The Source strategy cannot be turned into a Dockerfile.

    ``reason`` is a CamelCase word for the Build's status: BuilderImageMissingScripts,
    InvalidScriptsURL, InvalidBuilderImage (an unusable destination or assemble
    user in its labels or config), InvalidImageReference, InvalidEnvironment,
    InvalidLabel. ``message`` is one line for the status condition.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    def __repr__(self) -> str:
        return f"S2IError({self.reason!r}, {self.message!r})"


@dataclass(frozen=True)
class _Scripts:
    """Where assemble, run and save-artifacts come from (s2i's pkg/scripts install order)."""

    image_dir: str | None
    """A directory inside the builder image (an image:// URL)."""
    url: str | None
    """An http(s) URL the scripts are fetched from, without a trailing slash."""
    overridable: bool
    """Whether the source's .s2i/bin may override them: only when the BuildConfig
    gave no scripts URL, since s2i's installer tries the user's URL first, then
    the source, then the builder's label (locationsOrder), and an image:// user
    URL stops the search at once (ScriptsInsideImageError)."""


def dockerfile_quote(value: str) -> str:
    """``value`` as a double-quoted word that ENV and LABEL read back unchanged.

    Inside double quotes a Dockerfile's lexer (moby's shell lexer, also used by
    buildah's imagebuilder) treats only ``\\"``, ``\\$`` and ``\\\\`` as escapes
    and expands ``$NAME``; escaping exactly those three, as s2i's
    ``scripts.escape`` does, leaves every other character as it is. A newline
    cannot be written at all (a line ends an instruction and a backslash before
    it joins the lines), so callers must refuse or replace it first.
    """
    if "\n" in value:
        raise ValueError("a Dockerfile word cannot hold a newline")
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'"{escaped}"'


def s2i_dockerfile(
    builder: str,
    config: ImageConfig,
    *,
    env: Sequence[tuple[str, str]] = (),
    scripts_url: str | None = None,
    incremental_from: str | None = None,
    labels: Mapping[str, str] = _NO_LABELS,
) -> str:
    """The Dockerfile that builds ``builder`` + ``upload/src`` into the application image.

    ``config`` is the builder image's config; ``env`` the strategy's variables in
    order (they follow, so override, ``.s2i/environment``'s); ``scripts_url`` the
    strategy's ``scripts``; ``incremental_from`` the previous output image to run
    save-artifacts in, or None for a clean build; ``labels`` extra image labels,
    which override the generated ``io.openshift.build.image``.

    Raises S2IError when the builder names no scripts or something given cannot
    be written into a Dockerfile.
    """
    _check_reference(builder, "builder image")
    if incremental_from is not None:
        _check_reference(incremental_from, "incremental image")
    scripts = _scripts(builder, config, scripts_url or None)
    user = _assemble_user(builder, config)
    chown = user if ":" in user else f"{user}:0"
    destination_label = config.labels.get(DESTINATION_LABEL, "")
    destination = (
        _path(destination_label, f"builder image {builder}: label {DESTINATION_LABEL}")
        if destination_label
        else DEFAULT_DESTINATION
    )
    source_dest = posixpath.join(destination, "src")

    lines = [
        "# Generated by Headwater from the Source strategy, as s2i build --as-dockerfile does.",
        f"# Build context: this file and {SOURCE_DIR}/ (the application source).",
    ]
    if incremental_from is not None:
        lines += _cached_stage(incremental_from, scripts, user, chown)
        lines.append("")

    lines.append(f"FROM {builder}")
    lines += _label_lines(builder, labels, scripts_url or None, destination_label)
    # dockerfile.go createBuildEnvironment: .s2i/environment first, then the
    # build's variables, so the BuildConfig's win.
    lines.append(S2I_ENVIRONMENT_MARKER)
    lines += _env_lines(env)

    if scripts.url is not None:
        lines.append("# The scripts URL's assemble and run; ADD makes them mode 0600, see below.")
        for name in ("assemble", "run"):
            lines.append(f"ADD --chown={chown} {scripts.url}/{name} {ENTRY_SCRIPTS_DIR}/{name}")
    if incremental_from is not None:
        lines.append(f"COPY --from=cached --chown={chown} {_ARTIFACTS_TAR} {_ARTIFACTS_TAR}")
    lines.append(f"COPY --chown={chown} {SOURCE_DIR} {source_dest}")
    staged = scripts.url is not None or scripts.overridable
    if staged:
        lines.append("USER 0")
        lines += _stage_scripts(scripts, source_dest)
    lines.append(f"USER {user}")
    if incremental_from is not None:
        artifacts = posixpath.join(destination, "artifacts")
        # dockerfile.go's extraction step, as it is.
        lines.append(
            f"RUN if [ -s {_ARTIFACTS_TAR} ]; then mkdir -p {artifacts}; "
            f"tar -xf {_ARTIFACTS_TAR} -C {artifacts}; fi && \\\n"
            f"    rm {_ARTIFACTS_TAR}"
        )
    scripts_dir = ENTRY_SCRIPTS_DIR if staged else scripts.image_dir
    lines.append(f"RUN {scripts_dir}/assemble")
    lines.append(f"CMD {json.dumps([f'{scripts_dir}/run'])}")
    return "\n".join(lines) + "\n"


def _scripts(builder: str, config: ImageConfig, scripts_url: str | None) -> _Scripts:
    if scripts_url is not None:
        subject = "the Source strategy's scripts URL"
        url = scripts_url
    else:
        # openshift/builder reads io.openshift.s2i.scripts-url; s2i itself also the old label.
        label = (
            SCRIPTS_URL_LABEL
            if config.labels.get(SCRIPTS_URL_LABEL)
            else DEPRECATED_SCRIPTS_URL_LABEL
        )
        url = config.labels.get(label, "")
        subject = f"builder image {builder}: label {label}"
        if not url:
            raise S2IError(
                "BuilderImageMissingScripts",
                f"builder image {builder} has no {SCRIPTS_URL_LABEL} label and the "
                "Source strategy sets no scripts URL",
            )
    overridable = scripts_url is None
    if url.startswith("image://"):
        directory = _path(url.removeprefix("image://"), subject, url_form=True)
        if directory == ENTRY_SCRIPTS_DIR:
            # The wrapper written there would exec itself.
            raise S2IError(
                "InvalidScriptsURL", f"{subject} is {url}, a directory Headwater writes itself"
            )
        return _Scripts(image_dir=directory, url=None, overridable=overridable)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or _URL.fullmatch(url) is None:
        raise S2IError(
            "InvalidScriptsURL",
            f"{subject} is {url!r}: expected image:///<path> or an http(s) URL "
            "without spaces, quotes, '$', '?' or '#'",
        )
    return _Scripts(image_dir=None, url=url.rstrip("/"), overridable=overridable)


def _assemble_user(builder: str, config: ImageConfig) -> str:
    # openshift/builder getAssembleUser: the label, when present (even empty),
    # replaces the image's USER; s2i then defaults an empty user to 1001.
    if ASSEMBLE_USER_LABEL in config.labels:
        user = config.labels[ASSEMBLE_USER_LABEL]
        subject = f"label {ASSEMBLE_USER_LABEL}"
    else:
        user = config.user
        subject = "USER"
    if not user:
        return DEFAULT_ASSEMBLE_USER
    if _USER.fullmatch(user) is None:
        raise S2IError(
            "InvalidBuilderImage",
            f"builder image {builder}: {subject} {user!r} is not a user name or id "
            "(optionally with :group)",
        )
    return user


def _path(value: str, subject: str, *, url_form: bool = False) -> str:
    if _SAFE_PATH.fullmatch(value) is None:
        shown = f"image://{value}" if url_form else value
        raise S2IError(
            "InvalidScriptsURL" if url_form else "InvalidBuilderImage",
            f"{subject} is {shown!r}: expected an absolute path of letters, digits and @%+=:,./_-",
        )
    # "/" + lstrip: POSIX normpath keeps a leading "//".
    return posixpath.normpath("/" + value.lstrip("/"))


def _check_reference(reference: str, what: str) -> None:
    if _IMAGE_REFERENCE.fullmatch(reference) is None:
        raise S2IError("InvalidImageReference", f"{what} {reference!r} is not an image reference")


def _label_lines(
    builder: str,
    extra: Mapping[str, str],
    scripts_url: str | None,
    destination: str,
) -> list[str]:
    # dockerfile.go: the generated labels, then config.Labels over them, then the
    # scripts URL and destination (only when they were given) over those.
    merged = {BUILD_IMAGE_LABEL: builder}
    merged.update(extra)
    if scripts_url is not None:
        merged[SCRIPTS_URL_LABEL] = scripts_url
    if destination:
        merged[DESTINATION_LABEL] = destination
    lines = []
    for key in sorted(merged):
        if not key.strip() or "=" in key:
            # Docker splits LABEL words at their first "=", quotes or not.
            raise S2IError("InvalidLabel", f"image label name {key!r} is empty or has a '='")
        # A newline cannot be written in a Dockerfile; s2i writes labels with Go's
        # %q, so OpenShift images carry a backslash and "n" instead: the same here
        # (a multi-line commit message must not fail the build).
        key_text = dockerfile_quote(key.replace("\n", "\\n"))
        value_text = dockerfile_quote(merged[key].replace("\n", "\\n"))
        lines.append(f"LABEL {key_text}={value_text}")
    return lines


def _env_lines(env: Sequence[tuple[str, str]]) -> list[str]:
    lines = []
    for name, value in env:
        if _ENV_NAME.fullmatch(name) is None:
            raise S2IError(
                "InvalidEnvironment",
                f"environment variable name {name!r} is not valid "
                "(letters, digits, '_', '-' and '.', not starting with a digit)",
            )
        if "\n" in value:
            # Unlike a label, a changed value would change what the program does.
            raise S2IError(
                "InvalidEnvironment",
                f"the value of environment variable {name} has a newline, which a "
                "Dockerfile ENV cannot hold",
            )
        lines.append(f"ENV {name}={dockerfile_quote(value)}")
    return lines


def _run(commands: Sequence[str]) -> str:
    """One RUN of shell commands joined by ``;`` under ``set -e``, a command per line."""
    return "RUN " + "; \\\n    ".join(["set -e", *commands])


def _stage_scripts(scripts: _Scripts, source_dest: str) -> list[str]:
    """The root step that puts the chosen assemble and run in ENTRY_SCRIPTS_DIR.

    s2i moves a source's ``.s2i/bin/{assemble,run,save-artifacts}`` out of the
    source (installer.install renames them into upload/scripts), so assemble
    never finds them in its source: the same ``mv`` here. A script the source
    does not override is the builder's: already fetched there by ADD, or, for
    an image:// directory, a wrapper that execs it, so that the script's ``$0``
    (and any sibling it finds from it) stays the builder's own path. The
    wrappers are rewritten on every build, so a builder that is itself a
    Headwater image cannot leave a stale choice behind.
    """
    entry = ENTRY_SCRIPTS_DIR
    source_bin = shlex.quote(posixpath.join(source_dest, ".s2i/bin"))
    commands = [f"mkdir -p {entry}"]
    if scripts.image_dir is not None:
        image_dir = shlex.quote(scripts.image_dir)
        commands += [
            "for script in assemble run; do "
            f'if [ -f {source_bin}/"$script" ]; then '
            f'mv {source_bin}/"$script" {entry}/"$script"; '
            f'else printf \'#!/bin/sh\\nexec %s "$@"\\n\' {image_dir}/"$script" '
            f'> {entry}/"$script"; fi; done',
            f"if [ -f {source_bin}/save-artifacts ]; then "
            f"mv {source_bin}/save-artifacts {entry}/save-artifacts; fi",
        ]
    elif scripts.overridable:
        commands.append(
            "for script in assemble run save-artifacts; do "
            f'if [ -f {source_bin}/"$script" ]; then '
            f'mv {source_bin}/"$script" {entry}/"$script"; fi; done'
        )
    commands.append(f"chmod 755 {entry}/assemble {entry}/run")
    return [_run(commands)]


def _cached_stage(previous: str, scripts: _Scripts, user: str, chown: str) -> list[str]:
    """s2i's incremental first stage: save-artifacts run in the previous image.

    The script is chosen as for the build (dockerfile.go: the source's or the
    URL's save-artifacts when there is one, else ``<image scripts dir>/save-artifacts``),
    and a missing or empty one yields an empty tar, so a previous image without
    save-artifacts still builds. Without ``RUN --mount`` the only way to see
    whether the source overrides it is to copy the source into this stage.
    """
    lines = [f"FROM {previous} AS cached"]
    commands: list[str] = []
    if scripts.url is not None:
        lines.append(f"ADD --chown={chown} {scripts.url}/save-artifacts {_CACHED_SAVE_ARTIFACTS}")
        commands += [
            f"script={_CACHED_SAVE_ARTIFACTS}",
            f"chmod 755 {_CACHED_SAVE_ARTIFACTS}",
        ]
    else:
        commands.append(f"script={shlex.quote(f'{scripts.image_dir}/save-artifacts')}")
    if scripts.overridable:
        lines.append(f"COPY --chown={chown} {SOURCE_DIR} {_CACHED_SOURCE}")
        override = f"{_CACHED_SOURCE}/.s2i/bin/save-artifacts"
        commands.append(f'if [ -f {override} ]; then script={override}; chmod 755 "$script"; fi')
    commands.append(
        f'if [ -s "$script" ]; then "$script" > {_ARTIFACTS_TAR}; else touch {_ARTIFACTS_TAR}; fi'
    )
    lines.append(f"USER {user}")
    lines.append(_run(commands))
    return lines


def s2i_environment_script() -> str:
    """A POSIX sh snippet that applies the source's ``.s2i/environment`` to ./Dockerfile.

    Run with the build context as the current directory (sh, awk and the usual
    utilities; no bash, no python), it replaces the line ``S2I_ENVIRONMENT_MARKER``
    with an ``ENV NAME="value"`` line per variable of
    ``upload/src/.s2i/environment``, quoted as ``dockerfile_quote`` does, or
    removes the line when there is no such file. The file is read as s2i's
    ``scripts.GetEnvironment`` does: ``NAME=VALUE`` lines split at the first
    ``=``, name and value trimmed of white space, a trailing CR dropped, ``#``
    lines skipped (here also when indented), blank lines skipped. Where s2i
    silently drops any other line without ``=`` (it ignores EnvironmentList.Set's
    error) and would write an invalid name into the Dockerfile, both are errors
    here: each is reported on stderr by line number (never its text) and the
    snippet fails, leaving the Dockerfile unchanged. A symbolic link for the
    file, or a ``.s2i`` that resolves outside the source, is refused, so that a
    repository cannot make the build pod copy the pod's own files (its token,
    its environment) into the image.

    The snippet is one subshell: it may be ``eval``'d, and changes neither the
    caller's options nor its directory.
    """
    return _ENVIRONMENT_SCRIPT


_ENVIRONMENT_AWK = r"""
function trim(s) { sub(/^[ \t\r\f\v]+/, "", s); sub(/[ \t\r\f\v]+$/, "", s); return s }
{
    sub(/\r$/, "")
    if ($0 ~ /^[ \t\r\f\v]*#/ || $0 ~ /^[ \t\r\f\v]*$/) next
    eq = index($0, "=")
    if (eq == 0) {
        printf ".s2i/environment line %d: expected NAME=VALUE\n", NR > "/dev/stderr"
        bad = 1
        next
    }
    name = trim(substr($0, 1, eq - 1))
    value = trim(substr($0, eq + 1))
    if (name !~ /NAME_RE/) {
        printf ".s2i/environment line %d: invalid variable name before \"=\"\n", NR > "/dev/stderr"
        bad = 1
        next
    }
    out = ""
    n = length(value)
    for (i = 1; i <= n; i++) {
        c = substr(value, i, 1)
        if (c == "\\" || c == "\"" || c == "$") out = out "\\"
        out = out c
    }
    printf "ENV %s=\"%s\"\n", name, out
}
END { if (bad) exit 1 }
""".replace("NAME_RE", _ENV_NAME_AWK)

_REPLACE_AWK = r"""
BEGIN { while ((getline line < lines) > 0) text = text line "\n"; close(lines) }
$0 == marker { printf "%s", text; found = 1; next }
{ print }
END {
    if (!found) {
        print "the generated Dockerfile has no .s2i/environment marker line" > "/dev/stderr"
        exit 1
    }
}
"""

_ENVIRONMENT_SCRIPT = f"""(
set -eu
hw_env=upload/src/.s2i/environment
hw_lines=.headwater-s2i-environment
hw_dockerfile=.headwater-s2i-dockerfile
trap 'rm -f "$hw_lines" "$hw_dockerfile"' EXIT
if [ -L upload/src ]; then
  echo "the source directory is a symbolic link" >&2
  exit 1
fi
if [ -d upload/src/.s2i ]; then
  hw_top=$(cd upload/src && pwd -P)
  hw_dir=$(cd upload/src/.s2i && pwd -P)
  case "$hw_dir/" in
    "$hw_top"/*) ;;
    *) echo ".s2i is a symbolic link out of the source" >&2; exit 1 ;;
  esac
fi
if [ -L "$hw_env" ]; then
  echo ".s2i/environment is a symbolic link; it must be a regular file" >&2
  exit 1
elif [ -f "$hw_env" ]; then
  LC_ALL=C awk {shlex.quote(_ENVIRONMENT_AWK)} "$hw_env" > "$hw_lines"
elif [ -e "$hw_env" ]; then
  echo ".s2i/environment is not a regular file" >&2
  exit 1
else
  : > "$hw_lines"
fi
LC_ALL=C awk -v marker={shlex.quote(S2I_ENVIRONMENT_MARKER)} -v lines="$hw_lines" \\
  {shlex.quote(_REPLACE_AWK)} Dockerfile > "$hw_dockerfile"
cat "$hw_dockerfile" > Dockerfile
)"""
