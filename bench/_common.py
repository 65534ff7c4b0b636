"""What the benchmarks share: the local cluster's settings, the operator they start, figures.

Each bench puts the repository and ``operator/`` on ``sys.path`` (it runs as a
script) and imports this as ``bench._common``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
from collections.abc import Awaitable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from tests import hack_scripts
from tests.registry_servers import free_port

REPO = Path(__file__).resolve().parents[1]


def parser(doc: str | None) -> argparse.ArgumentParser:
    """A bench's argument parser, described by its docstring's first paragraph."""
    return argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])


def cluster_env() -> dict[str, str]:
    """The local cluster's settings (KUBECONFIG, KUBECTL, REGISTRY, ...); exits when it is down.

    The install's cluster-scoped objects are applied first (:func:`install_cluster_scoped`),
    so a bench runs on a cluster fresh from ``make cluster-up``.
    """
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
    install_cluster_scoped(env)
    return env


def install_cluster_scoped(env: Mapping[str, str]) -> None:
    """Apply deploy/install.yaml's cluster-scoped objects (the CRDs, the operator's
    namespace, the cluster roles), as ``make run`` does, and wait for the CRDs.

    Server-side apply, so running it again changes nothing.
    """
    render = hack_scripts.load("render_install")
    docs = render.cluster_scoped(render.load())
    kubectl = [env["KUBECTL"], "--kubeconfig", env["KUBECONFIG"]]
    crds = [f"crd/{d['metadata']['name']}" for d in docs if d["kind"] == "CustomResourceDefinition"]
    for args, stdin in (
        (["apply", "--server-side", "--force-conflicts", "-f", "-"], yaml.safe_dump_all(docs)),
        (["wait", "--for=condition=Established", "--timeout=60s", *crds], None),
    ):
        done = subprocess.run(
            [*kubectl, *args], input=stdin, capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0:
            sys.exit(
                f"bench: kubectl {args[0]} of the install's cluster-scoped part: {done.stderr}"
            )


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
    namespace: str | None,
    log: Path,
    extra_env: Mapping[str, str] | None = None,
    extra_args: Sequence[str] = (),
) -> subprocess.Popen[bytes]:
    """``headwater operator run --standalone`` watching ``namespace`` (None: all namespaces),
    its output in ``log``."""
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
            [
                *command,
                *(["--namespace", namespace] if namespace else ["--all-namespaces"]),
                *extra_args,
            ],
            env=operator_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def stop_operator(operator: subprocess.Popen[bytes]) -> None:
    operator.send_signal(signal.SIGTERM)
    operator.wait(timeout=30)


CLK_TCK = os.sysconf("SC_CLK_TCK")


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


def rss_kib(pid: int) -> int:
    """The process's resident set now (VmRSS)."""
    return _status_kib(pid, "VmRSS")


def peak_rss_kib(pid: int) -> int:
    """The process's peak resident set (VmHWM)."""
    return _status_kib(pid, "VmHWM")


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (fields 14 and 15 of /proc/<pid>/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


async def bounded(coros: Sequence[Awaitable[object]], limit: int) -> None:
    """Await ``coros`` with at most ``limit`` of them running at once."""
    slots = asyncio.Semaphore(limit)

    async def run(coro: Awaitable[object]) -> None:
        async with slots:
            await coro

    await asyncio.gather(*(run(c) for c in coros))


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
