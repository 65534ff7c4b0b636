"""The fault suite of issue 14, cluster-level cases, scaled to CI: the operator keeps its promises
while the cluster's own parts go away and come back.

Each case stops (and starts again) one component of the local cluster with
``hack/cluster/localcluster.py component``, while the operator runs as a local
process (straight to the API server, no proxy) watching only the test's namespace:

a. kube-apiserver stopped for 20 s, then started;
b. etcd restarted (stopped, started again at once);
c. the registry stopped for 15 s in the middle of a push round while scheduled
   imports are due; the pushes that failed are pushed again after it is back,
   as a client would;
d. the kubelet stopped for 10 s while a build pod runs.

The workload, one per module (the cases run one after another on it, each
starting from a converged state): 3 ImageStreams whose ``latest`` tags are
scheduled imports (every 5 s), one alias (``s0:stable``), a Docker BuildConfig
with an ImageChange trigger on ``base:latest`` (each build runs ``sleep``, so
that it is running when a fault strikes), and 3 Deployments following tags.
Each case pushes a round of new digests during its fault (cases a, b and d one
more just before, so that an import and a build are in flight).

After each fault, within the case's ``CONVERGE_WITHIN`` seconds (the time taken
is printed as ``converged in``):

- every pushed digest is in its tag's history exactly once, in push order;
- no tag (nor Deployment) went backwards, sampled all through the case. A read
  the API server answers with an older resourceVersion of the object than an
  earlier read showed (its watch cache right after etcd restarts: seen here,
  and known upstream, kubernetes/kubernetes#59848) is printed as a stale read,
  not counted: nothing was written back;
- every due build ran exactly once: one Build per digest of ``base:latest``,
  numbered 1..N without gaps, each Complete, each with exactly one Job it owns;
- every Deployment runs the newest digest of its tag;
- no Job or pod labelled as a build is left without its Build;
- the operator's RSS stays below :data:`RSS_LIMIT_MIB`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import subprocess
import sys
import tarfile
import threading
import time
import urllib.error
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .helpers import (
    LOCALCLUSTER,
    MANIFEST_TYPES,
    OCI_MANIFEST,
    Cluster,
    docker_bc,
    eventually,
    operator_behind,
    pause_installed_operator,
    push_blob,
    push_image,
    put_manifest,
    registry_request,
)
from .test_api_faults import deployment
from .test_imagestream_imports import docker_tag, stream

pytestmark = pytest.mark.e2e

BASE = "base"
"""The stream of runnable images (busybox plus a marker layer) the BuildConfig builds from."""
STREAMS = ("s0", "s1", BASE)
ALIASES = {"s0": "stable"}
"""Stream -> the tag that is an alias (kind ImageStreamTag) of its ``latest``."""
FOLLOWED = {"web-s0": "s0:stable", "web-s1": "s1:latest", "web-base": f"{BASE}:latest"}
"""Deployment -> the tag its ``web`` container follows."""
BC = "app"
BUILD_SLEEP = 12
"""Seconds each build's ``RUN sleep`` takes: long enough for a fault to strike a running build."""
INTERVAL_SECONDS = 5
RSS_LIMIT_MIB = 400
CONVERGE_WITHIN = {"kube-apiserver": 120, "etcd": 90, "registry": 90, "kubelet": 120}
"""Per case: seconds from the component healthy again until every check passes. Each bound
leaves room for two builds after the imports (measured on 2 cores: 71 s, 20 s, 23 s, 17 s;
after the API server's restart the Job controller takes ~30 s to create the next build's pod)."""
LABEL_BUILD = "build.headwater.dev/build"
LABEL_BUILDCONFIG = "build.headwater.dev/buildconfig"
KINDS = (
    "imagestreams.image.headwater.dev,deployments.apps,builds.build.headwater.dev,jobs.batch,pods"
)


# --- the cluster's components ------------------------------------------------------------


def component(action: str, name: str) -> None:
    """``localcluster.py component <action> <name>``: returns once it is healthy (start)."""
    result = subprocess.run(
        [sys.executable, str(LOCALCLUSTER), "component", action, name],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        raise AssertionError(f"component {action} {name} failed:\n{result.stdout}{result.stderr}")


@contextlib.contextmanager
def stopped(name: str) -> Iterator[None]:
    """``name`` stopped for the block; started again (and healthy) whatever happens in it."""
    component("stop", name)
    try:
        yield
    finally:
        component("start", name)


# --- runnable images, pushed through the distribution API ---------------------------------


@dataclass
class Busybox:
    """The local busybox image's parts, reused (mounted) under each new runnable image."""

    repository: str
    config: dict[str, Any]
    layers: list[dict[str, Any]]

    @classmethod
    def read(cls, registry: str, ref: str) -> Busybox:
        repository, _, tag = ref.removeprefix(f"{registry}/").rpartition(":")
        with registry_request(
            f"http://{registry}/v2/{repository}/manifests/{tag}",
            headers={"Accept": MANIFEST_TYPES},
        ) as resp:
            manifest = json.loads(resp.read())
        assert manifest.get("layers"), f"{ref} is not a single-platform image"
        with registry_request(
            f"http://{registry}/v2/{repository}/blobs/{manifest['config']['digest']}"
        ) as resp:
            config = json.loads(resp.read())
        return cls(repository, config, manifest["layers"])

    def push(self, registry: str, repository: str, tag: str, marker: str) -> str:
        """busybox plus a layer holding ``marker``, under ``repository:tag``; its digest."""
        for layer in self.layers:
            with registry_request(
                f"http://{registry}/v2/{repository}/blobs/uploads/"
                f"?mount={layer['digest']}&from={self.repository}",
                "POST",
            ) as resp:
                assert resp.status == 201, f"mounting {layer['digest']}: {resp.status}"
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            data = marker.encode()
            info = tarfile.TarInfo("marker")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        extra = buffer.getvalue()
        config = json.loads(json.dumps(self.config))
        config.setdefault("config", {})["Labels"] = {"marker": marker}
        config["rootfs"]["diff_ids"].append("sha256:" + hashlib.sha256(extra).hexdigest())
        if "history" in config:
            config["history"].append({"created_by": f"marker {marker}"})
        config_body = json.dumps(config).encode()
        config_digest = push_blob(registry, repository, config_body)
        extra_digest = push_blob(registry, repository, extra)
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": len(config_body),
            },
            "layers": [
                *self.layers,
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": extra_digest,
                    "size": len(extra),
                },
            ],
        }
        return put_manifest(registry, repository, tag, OCI_MANIFEST, json.dumps(manifest).encode())


# --- what the cluster holds, and what is wrong with it -----------------------------------


@dataclass
class State:
    tags: dict[tuple[str, str], list[str]]
    """(stream, tag) -> the images of its status history, newest first."""
    images: dict[str, str]
    """Deployment -> its ``web`` container's image."""
    builds: list[dict[str, Any]]
    jobs: list[dict[str, Any]]
    pods: list[dict[str, Any]]
    versions: dict[str, int] = field(default_factory=dict)
    """Stream or Deployment -> the resourceVersion read."""


def _number(build: dict[str, Any]) -> int:
    return int(build["metadata"]["name"].rsplit("-", 1)[1])


def _triggered_by(build: dict[str, Any]) -> str:
    causes = build["spec"].get("triggeredBy") or [{}]
    return str((causes[0].get("imageChangeBuild") or {}).get("imageID") or "?")


@dataclass
class Workload:
    cluster: Cluster
    namespace: str
    registry: str
    busybox: Busybox
    log: Path
    process: subprocess.Popen[bytes] | None = None
    pushed: dict[str, list[str]] = field(default_factory=lambda: {s: [] for s in STREAMS})
    newest_seen: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Tag or Deployment -> (the latest push seen, the resourceVersion it was read at)."""
    backwards: list[str] = field(default_factory=list)
    """Tags or Deployments written back to an earlier push."""
    stale_reads: list[str] = field(default_factory=list)
    """Reads that the API server answered with an older version than an earlier read."""

    # pushing

    def push(self, name: str) -> None:
        """A new digest for ``name:latest``; raises if the registry does not take it."""
        marker = f"{self.namespace}-{name}-{len(self.pushed[name])}-{uuid.uuid4().hex[:6]}"
        repository = f"{self.namespace}/{name}"
        if name == BASE:
            digest = self.busybox.push(self.registry, repository, "latest", marker)
        else:
            digest, _ = push_image(self.registry, repository, "latest", marker=marker)
        self.pushed[name].append(digest)

    def push_round(self, names: tuple[str, ...] = STREAMS) -> list[str]:
        """Push each of ``names``; those the registry refused (it is down), for a retry."""
        failed = []
        for name in names:
            try:
                self.push(name)
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                failed.append(name)
        return failed

    # reading

    def state(self) -> State | None:
        """Everything at once (one List); None while the API does not answer."""
        result = self.cluster.kubectl(
            "get", KINDS, "-n", self.namespace, "-o", "json", "--request-timeout=10s",
            check=False, timeout=30,
        )  # fmt: skip
        if result.returncode != 0:
            return None
        items = json.loads(result.stdout)["items"]
        tags: dict[tuple[str, str], list[str]] = {}
        images: dict[str, str] = {}
        versions: dict[str, int] = {}
        builds, jobs, pods = [], [], []
        for item in items:
            kind = item["kind"]
            if kind in ("ImageStream", "Deployment"):
                versions[item["metadata"]["name"]] = int(item["metadata"]["resourceVersion"])
            if kind == "ImageStream":
                for tag in (item.get("status") or {}).get("tags") or []:
                    found = [entry["image"] for entry in tag.get("items") or []]
                    tags[(item["metadata"]["name"], tag["tag"])] = found
            elif kind == "Deployment":
                containers = item["spec"]["template"]["spec"]["containers"]
                images[item["metadata"]["name"]] = containers[0]["image"]
            elif kind == "Build":
                builds.append(item)
            elif kind == "Job":
                jobs.append(item)
            elif kind == "Pod":
                pods.append(item)
        return State(tags, images, sorted(builds, key=_number), jobs, pods, versions)

    def problems(self, state: State) -> list[str]:
        """What is not (yet) as it must end."""
        return self._tag_problems(state) + self._build_problems(state)

    def _tag_problems(self, state: State) -> list[str]:
        """Imports, aliases and Deployments not (yet) at the newest pushes."""
        found = []
        for name, digests in self.pushed.items():
            history = state.tags.get((name, "latest"), [])
            if history != digests[::-1]:
                found.append(f"{name}:latest history {history} != pushed, newest first")
        for name, alias in ALIASES.items():
            if state.tags.get((name, alias), [])[:1] != state.tags.get((name, "latest"), [])[:1]:
                found.append(f"{name}:{alias} does not follow {name}:latest")
        for workload, tag in FOLLOWED.items():
            newest = self.pushed[tag.partition(":")[0]][-1]
            if not state.images.get(workload, "").endswith(newest):
                found.append(f"{workload} runs {state.images.get(workload)}, not {tag}'s newest")
        return found

    def _build_problems(self, state: State) -> list[str]:
        found = []
        builds = [b for b in state.builds if b["metadata"]["labels"].get(LABEL_BUILDCONFIG) == BC]
        numbers = [_number(b) for b in builds]
        if numbers != list(range(1, len(numbers) + 1)):
            found.append(f"build numbers {numbers} are not 1..{len(numbers)}")
        causes = [_triggered_by(b) for b in builds]
        due = self.pushed[BASE]
        if len(causes) != len(due) or not all(
            c.endswith(d) for c, d in zip(causes, due, strict=True)
        ):
            found.append(f"builds triggered by {causes}, not once per digest of {due}")
        for build in builds:
            phase = (build.get("status") or {}).get("phase")
            if phase != "Complete":
                status = build.get("status") or {}
                found.append(
                    f"{build['metadata']['name']} is {phase} ({status.get('reason')}: "
                    f"{status.get('message')})"
                )
        uids = {b["metadata"]["uid"]: b["metadata"]["name"] for b in state.builds}
        owned: dict[str, list[str]] = {uid: [] for uid in uids}
        for job in state.jobs:
            name = job["metadata"]["name"]
            owners = [o["uid"] for o in job["metadata"].get("ownerReferences") or []]
            labelled = LABEL_BUILD in (job["metadata"].get("labels") or {})
            mine = [o for o in owners if o in uids]
            if labelled and not mine:
                found.append(f"Job {name} is orphaned (owners {owners})")
            for uid in mine:
                owned[uid].append(name)
        for uid, jobs in owned.items():
            if len(jobs) != 1:
                found.append(f"Build {uids[uid]} has Jobs {jobs}, not exactly one")
        job_names = {j["metadata"]["name"] for j in state.jobs}
        for pod in state.pods:
            labels = pod["metadata"].get("labels") or {}
            if (
                LABEL_BUILD in labels
                and labels.get("batch.kubernetes.io/job-name") not in job_names
            ):
                found.append(f"pod {pod['metadata']['name']} is orphaned")
        return found

    def went_backwards(self, state: State) -> None:
        """Record tags and Deployments whose newest image is an earlier push than seen before.

        One read at an older resourceVersion of the object than the read that showed the
        later push is a stale read by the API server (kept apart: nothing was written back).
        """
        observed: dict[str, tuple[str, str, str | None]] = {}
        for name in STREAMS:
            newest = next(iter(state.tags.get((name, "latest")) or []), None)
            observed[f"{name}:latest"] = (name, name, newest)
        for name, alias in ALIASES.items():
            newest = next(iter(state.tags.get((name, alias)) or []), None)
            observed[f"{name}:{alias}"] = (name, name, newest)
        for workload, tag in FOLLOWED.items():
            image = state.images.get(workload, "").rpartition("@")[2] or None
            observed[workload] = (tag.partition(":")[0], workload, image)
        for what, (name, obj, newest) in observed.items():
            if newest not in self.pushed[name]:
                continue
            index = self.pushed[name].index(newest)
            version = state.versions.get(obj, 0)
            seen, seen_at = self.newest_seen.get(what, (-1, 0))
            if index < seen:
                note = (
                    f"{what} read at push {index} (resourceVersion {version}) after push {seen}"
                    f" (resourceVersion {seen_at})"
                )
                (self.stale_reads if version < seen_at else self.backwards).append(note)
            elif index > seen or version > seen_at:
                self.newest_seen[what] = (index, version)

    # waiting

    @contextlib.contextmanager
    def sampling(self, every: float = 2) -> Iterator[None]:
        """Check for tags going backwards every ``every`` seconds in the background."""
        done = threading.Event()

        def sample() -> None:
            while not done.wait(every):
                state = self.state()
                if state is not None:
                    self.went_backwards(state)

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join(timeout=60)

    def imported(self, timeout: float = 60) -> None:
        """Until every stream's newest item is its newest push (builds may still run)."""

        def check() -> bool:
            state = self.state()
            return state is not None and all(
                state.tags.get((name, "latest"), [None])[0] == digests[-1]
                for name, digests in self.pushed.items()
            )

        eventually("the round to be imported", check, timeout)

    def build_running(self, timeout: float = 90) -> str:
        """Until the build of the newest ``base`` digest has a running pod; that build's name."""
        running: list[str] = []

        def check() -> bool:
            state = self.state()
            if state is None:
                return False
            builds = {
                b["metadata"]["name"]
                for b in state.builds
                if _triggered_by(b).endswith(self.pushed[BASE][-1])
            }
            running[:] = [
                p["metadata"]["labels"]["batch.kubernetes.io/job-name"].removesuffix("-build")
                for p in state.pods
                if (p.get("status") or {}).get("phase") == "Running"
                and p["metadata"]["labels"]
                .get("batch.kubernetes.io/job-name", "")
                .removesuffix("-build")
                in builds
            ]
            return bool(running)

        eventually("a build pod of the newest base digest to run", check, timeout)
        return running[0]

    def converge(self, case: str, fault_ended: float, within: float) -> float:
        """Wait up to ``within`` seconds for every check to pass; assert they all do."""
        problems = ["not checked yet"]
        tags_at: float | None = None
        """When the imports, aliases and Deployments were all at the newest pushes."""
        while time.monotonic() < fault_ended + within:
            state = self.state()
            if state is not None:
                self.went_backwards(state)
                problems = self.problems(state)
                if tags_at is None and not self._tag_problems(state):
                    tags_at = time.monotonic() - fault_ended
                if not problems:
                    break
            time.sleep(1)
        took = time.monotonic() - fault_ended
        rss = self.rss_mib()
        tags_took = "not" if tags_at is None else f"{tags_at:.1f}s"
        print(
            f"{case}: converged in {took:.1f}s (bound {within}s; imports, aliases and "
            f"Deployments in {tags_took}); operator RSS {rss:.0f} MiB; "
            f"{len(self.pushed[BASE])} builds, "
            f"{sum(len(d) for d in self.pushed.values())} digests pushed so far"
        )
        assert self.process is not None
        assert self.process.poll() is None, "the operator exited:\n" + self.log.read_text()[-4000:]
        if self.stale_reads:
            print("stale reads by the API server:\n" + "\n".join(self.stale_reads))
            self.stale_reads.clear()
        assert not self.backwards, "\n".join(self.backwards)
        assert not problems, (
            f"{case}: not converged within {within}s:\n"
            + "\n".join(problems)
            + "\noperator log (last lines):\n"
            + self.log.read_text()[-6000:]
        )
        assert rss < RSS_LIMIT_MIB, f"operator RSS {rss:.0f} MiB >= {RSS_LIMIT_MIB} MiB"
        return took

    def rss_mib(self) -> float:
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def workload(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workload]:
    """The mixed workload in a namespace of its own, converged, with its operator running."""
    if not cluster.is_local:
        pytest.skip("the cluster faults stop and start the local cluster's components")
    registry = cluster.need_registry()
    pause_installed_operator(cluster)
    namespace = f"hw-e2e-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", namespace)
    cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=baseline")
    eventually(
        "the default service account",
        lambda: (
            cluster.kubectl("get", "sa", "default", "-n", namespace, check=False).returncode == 0
        ),
        30,
    )
    tmp = tmp_path_factory.mktemp("cluster-faults")
    wl = Workload(
        cluster,
        namespace,
        registry,
        Busybox.read(registry, cluster.image("busybox")),
        tmp / "operator.log",
    )
    try:
        assert not wl.push_round()
        objects: list[dict[str, Any]] = []
        for name in STREAMS:
            spec_tags = [
                docker_tag("latest", f"{registry}/{namespace}/{name}:latest", scheduled=True)
            ]
            if name in ALIASES:
                spec_tags.append(
                    {
                        "name": ALIASES[name],
                        "from": {"kind": "ImageStreamTag", "name": f"{name}:latest"},
                    }
                )
            objects.append(stream(name, *spec_tags))
        objects += [deployment(w, tag, cluster.image("busybox")) for w, tag in FOLLOWED.items()]
        objects.append(
            docker_bc(
                BC,
                {"type": "Dockerfile", "dockerfile": f"FROM base\nRUN sleep {BUILD_SLEEP}\n"},
                None,
                strategy={
                    "type": "Docker",
                    "dockerStrategy": {
                        "from": {"kind": "ImageStreamTag", "name": f"{BASE}:latest"}
                    },
                },
                triggers=[{"type": "ImageChange", "imageChange": {}}],
                successfulBuildsHistoryLimit=100,
                failedBuildsHistoryLimit=100,
            )
        )
        cluster.apply(objects, namespace)
        with operator_behind(
            cluster, None, [namespace], wl.log, interval_seconds=INTERVAL_SECONDS
        ) as process:
            wl.process = process
            started = time.monotonic()
            wl.converge("the workload, before any fault", started, 240)
            yield wl
    finally:
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


# --- the cases ---------------------------------------------------------------------------


def test_kube_apiserver_stopped_for_20s(workload: Workload) -> None:
    """The API back, watches re-established, the round imported, the pending builds run."""
    with workload.sampling():
        workload.push_round()
        workload.imported()
        with stopped("kube-apiserver"):
            down = time.monotonic()
            assert not workload.push_round()
            time.sleep(max(0.0, 20 - (time.monotonic() - down)))
        print(f"kube-apiserver was down {time.monotonic() - down:.1f}s (until /readyz)")
        workload.converge(
            "kube-apiserver stopped 20 s", time.monotonic(), CONVERGE_WITHIN["kube-apiserver"]
        )


def test_etcd_restarted(workload: Workload) -> None:
    """etcd back at once; the API server reconnects; nothing is lost or doubled."""
    with workload.sampling():
        workload.push_round()
        workload.imported()
        component("stop", "etcd")
        try:
            down = time.monotonic()
            assert not workload.push_round()
        finally:
            component("start", "etcd")
        print(f"etcd was down {time.monotonic() - down:.1f}s (until the API server's /readyz)")
        workload.converge("etcd restarted", time.monotonic(), CONVERGE_WITHIN["etcd"])


def test_registry_stopped_mid_push_and_mid_import(workload: Workload) -> None:
    """Imports due while the registry is gone fail and are retried; refused pushes are redone."""
    with workload.sampling():
        workload.push_round(("s0",))
        failed: list[str] = []
        with stopped("registry"):
            down = time.monotonic()
            # The rest of the round, pushed while the registry is gone.
            failed = workload.push_round(("s1", BASE))
            assert failed == ["s1", BASE], failed
            time.sleep(max(0.0, 15 - (time.monotonic() - down)))
        print(f"the registry was down {time.monotonic() - down:.1f}s")
        ended = time.monotonic()
        assert not workload.push_round(tuple(failed))
        workload.converge(
            "registry stopped mid-push and mid-import", ended, CONVERGE_WITHIN["registry"]
        )


def test_kubelet_restarted_during_builds(workload: Workload) -> None:
    """The running build pod survives the kubelet's absence; the next build runs after it."""
    with workload.sampling():
        workload.push_round()
        # Each digest imported before the next push (a poll sees only the newest).
        workload.imported()
        build = workload.build_running()
        with stopped("kubelet"):
            down = time.monotonic()
            # A new base digest: the next build is due while the node has no kubelet.
            assert not workload.push_round()
            time.sleep(max(0.0, 10 - (time.monotonic() - down)))
        print(f"the kubelet was down {time.monotonic() - down:.1f}s while {build} ran")
        workload.converge(
            "kubelet restarted during builds", time.monotonic(), CONVERGE_WITHIN["kubelet"]
        )
