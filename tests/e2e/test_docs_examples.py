"""The docs' runnable examples, run as written: under `make run`, then by the installed operator.

Each ```` ```console ```` block marked ``<!-- runnable -->`` in ``docs/*.md``
(``tests/docs_examples.py`` says how they are read) runs in order, one doc per
test, in a fresh namespace that is the kubeconfig's current one, with
``$REGISTRY`` naming the local registry, where ``hack/example-images.sh`` put
the images the examples use. A command that fails, or prints other than what
the doc says, fails the test with the doc's file and line.

`make run` is started for real (``make -s run``: hack/run.sh, the local
cluster's settings, the cluster-scoped part of the install), so the docs'
claim that `make cluster-up && make run` is the whole operator is tested.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.docs_examples import Step, mismatch, parse, runnable_docs

from .helpers import (
    Cluster,
    end_process,
    eventually,
    pause_installed_operator,
    remove_admission_configuration,
)

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
DOCS = runnable_docs(REPO / "docs")
STEP_TIMEOUT = 420
MODES = ["make-run", "installed"]


@pytest.fixture(scope="module")
def example_images(cluster: Cluster) -> str:
    registry = cluster.need_registry()
    result = subprocess.run(
        ["bash", str(REPO / "hack" / "example-images.sh")],
        env={**os.environ, "REGISTRY": registry},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    return registry


def _start_make_run(cluster: Cluster, log: Path) -> subprocess.Popen[bytes]:
    pause_installed_operator(cluster)
    remove_admission_configuration(cluster)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEADWATER_")}
    env.pop("KUBECONFIG", None)  # make run finds the local cluster by itself
    with log.open("wb") as out:
        return subprocess.Popen(
            ["make", "-s", "run"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@pytest.fixture(scope="module", params=MODES)
def docs_operator(
    request: pytest.FixtureRequest, cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The operator the examples run against: `make run` first, then the installed one."""
    if request.param == "installed":
        request.getfixturevalue("operator_in_cluster")
        yield "installed"
        return
    if not cluster.is_local:
        pytest.skip("`make run` runs against the local cluster")
    log = tmp_path_factory.mktemp("make-run") / "operator.log"
    proc = _start_make_run(cluster, log)
    try:

        def started() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"make run exited {proc.returncode}:\n{log.read_text()}")
            return "operator started" in log.read_text(errors="replace")

        eventually("make run to start the operator", started, timeout=300)
        yield "make-run"
    finally:
        end_process(proc, timeout=60, group=True)
        remove_admission_configuration(cluster)
        output = log.read_text(errors="replace")
        assert "Traceback" not in output, output[-6000:]


def _namespaced_kubeconfig(cluster: Cluster, path: Path, namespace: str) -> Path:
    path.write_text(cluster.kubeconfig.read_text())
    cluster.kubectl(
        "config", "set-context", "--current", f"--namespace={namespace}", f"--kubeconfig={path}"
    )
    return path


def _run_step(step: Step, env: dict[str, str], workdir: Path, state: Path) -> tuple[int, str]:
    script = (
        # set -a: a variable a step sets (image=$(...)) is there in the next.
        f"set -a; cd {workdir} && if [ -f {state} ]; then . {state}; fi\n"
        f"{step.command}\n"
        "rc=$?\n"
        f"export -p > {state}\n"
        f'printf "cd %q\\n" "$PWD" >> {state}\n'
        "exit $rc\n"
    )
    result = subprocess.run(
        ["bash", "-c", script],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=STEP_TIMEOUT,
    )
    return result.returncode, result.stdout


def _cleanup_namespaces(cluster: Cluster, prefix: str) -> None:
    names = cluster.kubectl("get", "namespaces", "-o", "name").stdout.split()
    for name in names:
        short = name.split("/", 1)[1]
        if short == prefix or short.startswith(f"{prefix}-"):
            cluster.kubectl("delete", "namespace", short, "--wait=false", check=False)


@pytest.mark.parametrize("doc", DOCS, ids=[d.name for d in DOCS])
def test_doc_examples_run_as_written(
    doc: Path,
    docs_operator: str,
    cluster: Cluster,
    example_images: str,
    tmp_path: Path,
) -> None:
    steps = parse(doc.read_text(), f"docs/{doc.name}")
    namespace = f"docs-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", namespace)
    kubectl_dir = str(Path(cluster.kubectl_path).parent)
    env = {
        "PATH": f"{REPO / '.venv' / 'bin'}:{kubectl_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": os.environ.get("HOME", "/root"),
        "KUBECONFIG": str(_namespaced_kubeconfig(cluster, tmp_path / "kubeconfig", namespace)),
        "REGISTRY": example_images,
        "NS": namespace,
        "NO_COLOR": "1",
        "LANG": "C.UTF-8",
    }
    for key in ("HEADWATER_GIT_DAEMON", "HEADWATER_GIT_ROOT"):
        if key in cluster.env:
            env[key] = cluster.env[key]
    workdir = tmp_path / "work"
    workdir.mkdir()
    state = tmp_path / "state.sh"
    try:
        for step in steps:
            started = time.monotonic()
            rc, output = _run_step(step, env, workdir, state)
            took = time.monotonic() - started
            where = f"{step.where()} ({docs_operator}, {took:.1f} s)"
            assert rc == 0, f"{where}: `{step.command}` exited {rc}:\n{output[-4000:]}"
            why = mismatch(step.expected, output)
            assert why is None, f"{where}: `{step.command}`: {why}; it printed:\n{output[-4000:]}"
    finally:
        _cleanup_namespaces(cluster, namespace)
