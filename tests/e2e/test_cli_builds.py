"""`headwater start-build`, `cancel-build` and `logs` against the real cluster and operator."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import kopf.testing
import pytest

from .helpers import (
    HEADWATER,
    Cluster,
    GitServer,
    build_json,
    docker_bc,
    eventually,
    headwater,
    imagestream,
    push_secret_bc,
    wait_for_phase,
)

pytestmark = pytest.mark.e2e


def test_start_build_follow_streams_the_log_and_waits(
    cluster: Cluster, namespace: str, git_server: GitServer,
    operator_in_process: kopf.testing.KopfRunner,
) -> None:  # fmt: skip
    cluster.need_registry()
    busybox = cluster.image("busybox")
    url, sha = git_server.repo(
        {"Dockerfile": f"FROM {busybox}\nRUN echo step-output-marker\n"}, message="follow me"
    )
    cluster.apply(imagestream("web"), namespace)
    cluster.apply(docker_bc("web", {"type": "Git", "git": {"uri": url}}, "web:latest"), namespace)
    result = headwater(cluster, namespace, "start-build", "web", "--follow")
    assert result.returncode == 0, result.stderr
    assert "build.build.headwater.dev/web-1 started" in result.stdout
    out = result.stdout
    # From the first line of the fetch step through the push.
    assert "Cloning" in out
    assert f"Commit: {sha}" in out
    assert "step-output-marker" in out
    assert out.index("Cloning") < out.index("step-output-marker") < out.index("Pushed")
    assert "complete: pushed" in result.stderr
    again = headwater(cluster, namespace, "logs", "bc/web")
    assert again.returncode == 0, again.stderr
    assert "step-output-marker" in again.stdout


def test_binary_build_from_a_local_folder_honours_gitignore(
    cluster: Cluster, namespace: str, tmp_path: Path,
    operator_in_process: kopf.testing.KopfRunner,
) -> None:  # fmt: skip
    cluster.need_registry()
    busybox = cluster.image("busybox")
    folder = tmp_path / "app"
    (folder / "sub").mkdir(parents=True)
    (folder / "Dockerfile").write_text(
        f"FROM {busybox}\nCOPY . /app\n"
        "RUN test -f /app/kept.txt && test -f /app/sub/inner.txt && test ! -e /app/debug.log"
        " && test ! -e /app/build && cat /app/kept.txt\n"
    )
    (folder / "kept.txt").write_text("uploaded-content\n")
    (folder / "sub" / "inner.txt").write_text("inner\n")
    (folder / "debug.log").write_text("ignored\n")
    (folder / "build").mkdir()
    (folder / "build" / "out.bin").write_bytes(b"\0" * 1000)
    (folder / ".gitignore").write_text("*.log\nbuild/\n")
    cluster.apply(imagestream("bin"), namespace)
    cluster.apply(docker_bc("bin", {"type": "Binary", "binary": {}}, "bin:latest"), namespace)
    result = headwater(
        cluster, namespace, "start-build", "bin", "--from-dir", str(folder), "--follow"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Uploaded directory" in result.stderr
    assert "uploaded-content" in result.stdout
    assert build_json(cluster, namespace, "bin-1")["status"]["phase"] == "Complete"


def test_start_build_failures_exit_non_zero_with_the_reason(
    cluster: Cluster, namespace: str, operator_in_process: kopf.testing.KopfRunner
) -> None:
    busybox = cluster.image("busybox")
    missing = headwater(cluster, namespace, "start-build", "nope")
    assert missing.returncode == 1
    assert 'buildconfig "nope" not found' in missing.stderr
    cluster.apply(
        docker_bc(
            "fails",
            {"type": "Dockerfile", "dockerfile": f"FROM {busybox}\nRUN echo broken-step; exit 7\n"},
            None,
        ),
        namespace,
    )
    no_folder = headwater(cluster, namespace, "start-build", "fails", "--from-dir", "/nonexistent")
    assert no_folder.returncode == 2
    assert "/nonexistent" in no_folder.stderr
    # An upload into a BuildConfig whose source is not Binary: the operator says why.
    refused = headwater(cluster, namespace, "start-build", "fails", "--from-dir", ".")
    assert refused.returncode == 1
    assert "refused the build" in refused.stderr
    assert "source type Binary" in refused.stderr
    failed = headwater(cluster, namespace, "start-build", "fails", "--wait")
    assert failed.returncode == 1, failed.stderr
    assert "DockerBuildFailed" in failed.stderr
    assert "broken-step" in failed.stderr


def test_cancel_build_mid_build(
    cluster: Cluster, namespace: str, operator_in_process: kopf.testing.KopfRunner
) -> None:
    busybox = cluster.image("busybox")
    cluster.apply(
        docker_bc(
            "slow",
            {"type": "Dockerfile", "dockerfile": f"FROM {busybox}\nRUN sleep 300\n"},
            None,
        ),
        namespace,
    )
    started = headwater(cluster, namespace, "start-build", "slow")
    assert started.returncode == 0, started.stderr
    wait_for_phase(cluster, namespace, "slow-1", ("Running",), timeout=120)
    cancelled = headwater(cluster, namespace, "cancel-build", "slow-1")
    assert cancelled.returncode == 0, cancelled.stderr
    assert "build.build.headwater.dev/slow-1 cancelled" in cancelled.stdout
    status = build_json(cluster, namespace, "slow-1")["status"]
    assert status["phase"] == "Cancelled"
    assert status["reason"] == "CancelledBuild"
    eventually(
        "the build's pod to go",
        lambda: (
            not cluster.get_json("pods", "-n", namespace, "-l", "build.headwater.dev/build=slow-1")[
                "items"
            ]
        ),
        timeout=60,
    )
    # The operator posts the Event after it has written the phase.
    eventually(
        "the BuildCancelled Event",
        lambda: "BuildCancelled" in {
            e["reason"] for e in cluster.get_json(
                "events", "-n", namespace, "--field-selector", "involvedObject.name=slow-1"
            )["items"]
        },
    )  # fmt: skip


def test_logs_follow_of_a_build_that_cannot_start_says_why_and_ends_when_cancelled(
    cluster: Cluster, namespace: str, operator_in_process: kopf.testing.KopfRunner
) -> None:
    """Issue 19: `logs -f` sat silent for as long as the build could not start."""
    cluster.apply(push_secret_bc(cluster, "held", "not-there"), namespace)
    started = headwater(cluster, namespace, "start-build", "held", timeout=120)
    assert started.returncode == 0, started.stderr
    follow = subprocess.Popen(
        [HEADWATER, "logs", "-f", "bc/held", "-n", namespace,
         "--kubeconfig", str(cluster.kubeconfig)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(follow.stderr or []), daemon=True)
    reader.start()
    try:
        eventually(
            "logs -f to say what the build waits for",
            lambda: any("(MissingPushSecret)" in line for line in list(lines)),
            timeout=60,
        )
        time.sleep(2)  # several polls: what it waits for is said once, not at each
        waiting = [line for line in list(lines) if "MissingPushSecret" in line]
        assert waiting[0].startswith("waiting for the build pod: New (MissingPushSecret)")
        since = time.monotonic()
        cancelled = headwater(cluster, namespace, "cancel-build", "held-1", timeout=120)
        assert cancelled.returncode == 0, cancelled.stderr
        code = follow.wait(timeout=30)
        ended = time.monotonic() - since
    finally:
        follow.kill()
        follow.wait()
    reader.join(timeout=5)
    assert code == 1
    assert "ended (Cancelled) before its log began" in lines[-1], lines
    assert len(waiting) == 1  # said once, not at every poll
    print(f"logs -f ended {ended:.2f}s after cancel-build was run")  # the figure, with -rP
    assert ended < 10, f"logs -f took {ended:.1f}s to end after the cancel"
