"""What the benchmarks share: the local cluster's settings, the operator they start, figures.

Each bench puts the repository and ``operator/`` on ``sys.path`` (it runs as a
script) and imports this as ``bench._common``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.registry_servers import free_port

REPO = Path(__file__).resolve().parents[1]


def parser(doc: str | None) -> argparse.ArgumentParser:
    """A bench's argument parser, described by its docstring's first paragraph."""
    return argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])


def cluster_env() -> dict[str, str]:
    """The local cluster's settings (KUBECONFIG, KUBECTL, REGISTRY, ...); exits when it is down.

    The cluster is prepared as ``make run`` prepares it (:func:`prepare_cluster`), so that
    every bench works from a fresh ``make cluster-up``."""
    result = subprocess.run(
        [sys.executable, str(REPO / "hack" / "cluster" / "localcluster.py"), "env"],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        sys.exit("bench: the local cluster is not running (make cluster-up)")
    env = {}
    for line in Path(result.stdout.strip()).read_text().splitlines():
        key, _, value = line.partition("=")
        env[key] = value
    prepare_cluster(env)
    return env


CRDS = (
    "crd/imagestreams.image.headwater.dev",
    "crd/buildconfigs.build.headwater.dev",
    "crd/builds.build.headwater.dev",
)


def prepare_cluster(env: Mapping[str, str]) -> None:
    """What an operator run on this machine needs from a fresh ``make cluster-up``, as
    ``make run`` applies it: the install's cluster-scoped objects (the CRDs, the operator's
    namespace, the cluster roles), then the CRDs Established."""
    documents = subprocess.run(
        [sys.executable, str(REPO / "hack" / "render_install.py"), "--cluster-scoped"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    kubectl = Kubectl(env, "default")
    kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=documents)
    kubectl("wait", "--for=condition=Established", "--timeout=60s", *CRDS)


class Kubectl:
    """kubectl against the local cluster; a failure raises with its stderr."""

    def __init__(self, env: Mapping[str, str], namespace: str) -> None:
        self.base = [env["KUBECTL"], "--kubeconfig", env["KUBECONFIG"]]
        self.namespace = namespace

    def __call__(self, *args: str, stdin: str | None = None) -> str:
        result = subprocess.run(
            [*self.base, *args], input=stdin, capture_output=True, text=True, timeout=120
        )
        if result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {result.stderr}")
        return result.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "-o", "json"))

    def apply(self, obj: dict[str, Any]) -> None:
        self("apply", "-n", self.namespace, "-f", "-", stdin=json.dumps(obj))

    def delete_namespace_later(self) -> None:
        """Delete the bench's namespace without waiting (fire and forget, at exit)."""
        subprocess.Popen(
            [*self.base, "delete", "namespace", self.namespace, "--wait=false"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


def start_operator(
    env: Mapping[str, str],
    namespace: str,
    log: Path,
    extra_env: Mapping[str, str] | None = None,
    extra_args: Sequence[str] = (),
) -> subprocess.Popen[bytes]:
    """``headwater operator run --standalone`` watching ``namespace``, its output in ``log``."""
    operator_env = {
        **os.environ,
        "KUBECONFIG": env["KUBECONFIG"],
        "HEADWATER_REGISTRY": env["REGISTRY"],
        "HEADWATER_REGISTRY_INSECURE": "true",
        "HEADWATER_BUILDER_IMAGE": env["HEADWATER_BUILDER_IMAGE"],
        "HEADWATER_HEALTH_PORT": str(free_port()),
        "HEADWATER_METRICS_PORT": str(free_port()),
        # The default executor: the local cluster's kaniko image, as the e2e tests use.
        **(
            {"HEADWATER_KANIKO_IMAGE": env["HEADWATER_KANIKO_IMAGE"]}
            if "HEADWATER_KANIKO_IMAGE" in env
            else {}
        ),
        **(extra_env or {}),
    }
    command = [str(Path(sys.executable).parent / "headwater"), "operator", "run", "--standalone"]
    with log.open("wb") as out:
        return subprocess.Popen(
            [*command, "--namespace", namespace, *extra_args],
            env=operator_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def stop_operator(operator: subprocess.Popen[bytes]) -> None:
    operator.send_signal(signal.SIGTERM)
    operator.wait(timeout=30)


def percentiles_ms(seconds: Sequence[float]) -> dict[str, float]:
    """p50, p90, p99 and max of ``seconds``, in milliseconds."""
    ms = sorted(v * 1000 for v in seconds)
    return {
        "p50": statistics.median(ms),
        "p90": ms[int(0.9 * (len(ms) - 1))],
        "p99": ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))],
        "max": ms[-1],
    }


def ratio_row(name: str, ours: float, base: float, fmt: str = "{:.2f}") -> str:
    """One line of a side-by-side table: Headwater's figure, the baseline's, base/ours."""
    ratio = f"{base / ours:.2f}x" if ours else "-"
    return f"  {name:<38} {fmt.format(ours):>12} {fmt.format(base):>12} {ratio:>9}"


def verdict(within: bool) -> str:
    return "within" if within else "OVER"
