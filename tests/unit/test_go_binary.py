"""hack/cluster/gobin.py's go_binary: cached by module@version, built from a source tree
or from a writable copy without the replace directives the module zip cannot satisfy.

A fake ``go`` on PATH records its calls, so no compiler or network is needed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import stat
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]

FAKE_GO = """#!/usr/bin/env python3
import json, os, sys
from pathlib import Path
args = sys.argv[1:]
with open(os.environ["FAKE_GO_LOG"], "a") as log:
    log.write(json.dumps({"args": args, "cwd": os.getcwd(),
                          "cgo": os.environ.get("CGO_ENABLED"),
                          "goflags": os.environ.get("GOFLAGS")}) + "\\n")
if args[:2] == ["mod", "download"]:
    print(json.dumps({"Dir": os.environ["FAKE_GO_MODDIR"], "Sum": "h1:good"}))
elif args[:2] == ["mod", "edit"]:
    gomod = Path("go.mod")
    for arg in args[2:]:
        name = arg.split("=", 1)[1]
        gomod.write_text("".join(
            line for line in gomod.read_text().splitlines(keepends=True)
            if not line.startswith(f"replace {name} ")))
elif args[0] == "build":
    out = args[args.index("-o") + 1]
    Path(out).write_text(Path("go.mod").read_text())
"""


def _images() -> ModuleType:
    name = "headwater_cluster_gobin_test"
    spec = importlib.util.spec_from_file_location(name, REPO / "hack" / "cluster" / "gobin.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def fake_go(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    go = bin_dir / "go"
    go.write_text(FAKE_GO)
    go.chmod(go.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "go.log"
    moddir = tmp_path / "modcache" / "m@v1"
    moddir.mkdir(parents=True)
    (moddir / "go.mod").write_text("module example.com/m\nreplace example.com/m/api => ./api\n")
    (moddir / "go.mod").chmod(0o444)
    moddir.chmod(0o555)  # read-only, like the module cache
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_GO_LOG", str(log))
    monkeypatch.setenv("FAKE_GO_MODDIR", str(moddir))
    return log


def _calls(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_a_replace_into_a_sibling_module_is_dropped_in_a_copy(
    tmp_path: Path, fake_go: Path
) -> None:
    images = _images()
    cache = tmp_path / "cache"
    binary = images.go_binary(
        cache, "example.com/m", "v1", "h1:good", name="m", published_submodules=("api",)
    )
    assert binary == cache / "go-bin" / "example.com_m@v1" / "m"
    assert "replace" not in binary.read_text()  # built from the edited copy
    build = _calls(fake_go)[-1]
    assert "-mod=mod" in build["args"]
    assert build["cgo"] == "0"
    assert "modcache" not in str(build["cwd"])
    # Cached: a second call runs no go at all.
    calls = len(_calls(fake_go))
    assert images.go_binary(cache, "example.com/m", "v1", "h1:good", name="m") == binary
    assert len(_calls(fake_go)) == calls


def test_a_source_tree_is_built_in_place_with_cgo(tmp_path: Path, fake_go: Path) -> None:
    images = _images()
    source = tmp_path / "keel"
    source.mkdir()
    (source / "go.mod").write_text("module example.com/keel\n")
    binary = images.go_binary(
        tmp_path / "cache", "example.com/keel", "0.1", None, "cmd/keel", source=source, cgo=True
    )
    assert binary.name == "keel"
    [build] = _calls(fake_go)  # no `go mod download`
    assert build["args"][0] == "build"
    assert build["cwd"] == str(source)
    assert build["cgo"] == "1"
    assert "-mod=readonly" in build["args"]


def test_a_wrong_module_sum_is_refused(tmp_path: Path, fake_go: Path) -> None:
    images = _images()
    with pytest.raises(RuntimeError, match="expected h1:other"):
        images.go_binary(tmp_path / "cache", "example.com/m", "v1", "h1:other", name="m")
