"""Static Go binaries built from the Go module proxy, cached by module@version.

``go install module/pkg@version`` cannot be used: it asks the proxy for the
module's version list (for deprecations), which the proxy refuses for some
modules and forks. So the exact version is downloaded (checked against the
checksum database and a pinned ``zip_sum``) and built as the main module, with
its own go.mod and go.sum (and its replace directives), under
``<cache>/go-bin/<module>@<version>/<name>``.

Modules that keep an API submodule in the same repository (Flux's
controllers) replace it with ``./api``, a directory the published module zip
does not contain. ``published_submodules`` names them: the build then runs on a
writable copy of the source whose go.mod takes the published submodule at the
version it requires (its hash checked against the checksum database too).

Only the Python standard library is used: this runs before any venv exists.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path


def build_command(
    argv: list[str], usage: str | None, build: Callable[[], Mapping[str, object]]
) -> int:
    """A script's ``main``: ``<script> build`` prints what ``build`` returns as JSON;
    anything else prints ``usage`` (the script's docstring) and exits 2."""
    if argv[1:] != ["build"]:
        print(usage, file=sys.stderr)
        return 2
    print(json.dumps(build()))
    return 0


def log(message: str) -> None:
    print(f"[go-bin] {message}", file=sys.stderr, flush=True)


def _env(cgo: bool = False) -> dict[str, str]:
    return {
        **os.environ,
        "CGO_ENABLED": "1" if cgo else "0",
        "GOFLAGS": "-mod=readonly",
        "GOWORK": "off",
    }


def module_dir(module: str, version: str, zip_sum: str) -> Path:
    """The module's source in the module cache (downloaded if needed), checked against
    ``zip_sum`` (the go.sum ``h1:`` hash of its zip)."""
    result = subprocess.run(
        ["go", "mod", "download", "-json", f"{module}@{version}"],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tempfile.gettempdir(),
    )
    try:
        info = json.loads(result.stdout)
    except json.JSONDecodeError:
        raise RuntimeError(f"go mod download {module}@{version}: {result.stderr}") from None
    if info.get("Error"):
        raise RuntimeError(f"go mod download {module}@{version}: {info['Error']}")
    if info.get("Sum") != zip_sum:
        raise RuntimeError(f"{module}@{version} has sum {info.get('Sum')}, expected {zip_sum}")
    return Path(info["Dir"])


def go_binary(
    cache: Path,
    module: str,
    version: str,
    zip_sum: str | None,
    package: str = ".",
    *,
    name: str | None = None,
    version_var: str | None = None,
    published_submodules: tuple[str, ...] = (),
    source: Path | None = None,
    cgo: bool = False,
) -> Path:
    """A static build of ``module/package`` at ``version``, cached by module@version.

    ``name`` is the binary's file name (default: the package's, or the module's
    last element for its root package); ``version_var`` a ``-X`` variable (under
    the module path) set to ``version``. ``source`` builds from a source tree
    instead of the proxy's module (a module whose tags the proxy does not serve,
    such as Keel's); ``version`` is then only the cache key and ``zip_sum`` None.
    ``cgo`` links with the C library instead of statically.
    """
    binary = name or Path(package).name or Path(module).name
    target = cache / "go-bin" / f"{module.replace('/', '_')}@{version}" / binary
    if target.exists():
        return target
    what = module if package == "." else f"{module}/{package}"
    log(f"compiling {what}@{version} (a few minutes on a cold Go cache)")
    started = time.monotonic()
    if source is None:
        if zip_sum is None:
            raise ValueError(f"{module}@{version}: a module from the proxy needs its zip_sum")
        source = module_dir(module, version, zip_sum)
    ldflags = "-s -w" + (f" -X {module}/{version_var}={version}" if version_var else "")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    with tempfile.TemporaryDirectory(prefix="hw-go-bin-") as tmp:
        env = _env(cgo)
        mod_flag = "-mod=readonly"
        if published_submodules:
            copy = Path(tmp) / "src"
            shutil.copytree(source, copy)
            for path in copy.rglob("*"):
                path.chmod(path.stat().st_mode | 0o200)
            copy.chmod(copy.stat().st_mode | 0o200)
            for sub in published_submodules:
                submodule = f"{module}/{sub}"
                subprocess.run(
                    ["go", "mod", "edit", f"-dropreplace={submodule}"],
                    cwd=copy,
                    env=env,
                    check=True,
                )
                # Records the submodule's go.sum lines (checked against the checksum database).
                subprocess.run(["go", "mod", "download", submodule], cwd=copy, env=env, check=True)
            source = copy
            mod_flag = "-mod=mod"
        subprocess.run(
            [
                "go",
                "build",
                mod_flag,
                "-trimpath",
                "-ldflags",
                ldflags,
                "-o",
                str(partial),
                "." if package == "." else f"./{package}",
            ],
            cwd=source,
            env=env,
            check=True,
        )
    partial.rename(target)
    log(f"built {target} in {time.monotonic() - started:.0f}s")
    return target
