"""A real GitOps controller beside Headwater: Flux syncs a team's repository.

Flux's source-controller and kustomize-controller (built from the Go module
proxy by hack/cluster/flux.py, cached by version) run as local processes
against the cluster, as `make run` runs the operator. They sync a Git
repository, served over HTTP on the loopback (`git http-backend`: Flux's
GitRepository takes http(s) and ssh URLs, not the git daemon's `git://`), that
holds what a team commits: an ImageStream, a BuildConfig and a Deployment with
the trigger annotation, written as docs/triggers.md says (`image: web:latest`,
`lookupPolicy.local: true`), plus a kustomization.yaml.

Checked: a build and a tag move roll the Deployment out; Flux's next sync and a
forced one neither put Git's image back nor roll it out again; Flux's health
checks (kstatus) count the ImageStream and BuildConfig as Ready once
reconciled, and not while they fail (an import of a tag that does not exist,
a BuildConfig whose builder image does not exist).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests import kstatus
from tests.registry_servers import free_port

from .conftest import BASELINE, REPO, _create_namespace, wait_for_build_admission
from .helpers import (
    Cluster,
    GitHttpServer,
    build_of_request,
    eventually,
    local_operator_env,
    pause_installed_operator,
    remove_admission_configuration,
    start_build,
    start_operator,
    stop_operator,
    wait_for_phase,
)

pytestmark = pytest.mark.e2e

FLUX_BUILD_TIMEOUT = 1800
"""A cold build of both controllers: a few minutes each on 2 cores (then cached)."""
SYNC_INTERVAL = "10s"
KUSTOMIZATION_TIMEOUT = "20s"
"""How long Flux's health checks wait for the objects to be Ready (kstatus Current)."""
TRIGGER = json.dumps(
    [
        {
            "from": {"kind": "ImageStreamTag", "name": "web:latest"},
            "fieldPath": 'spec.template.spec.containers[?(@.name=="web")].image',
        }
    ]
)


def team_repository(busybox: str) -> dict[str, str]:
    """The files a team commits: plain YAML and a kustomization.yaml per directory."""
    web = {
        "web/kustomization.yaml": (
            "apiVersion: kustomize.config.k8s.io/v1beta1\n"
            "kind: Kustomization\n"
            "resources:\n- imagestream.yaml\n- buildconfig.yaml\n"
        ),
        "web-app/kustomization.yaml": (
            "apiVersion: kustomize.config.k8s.io/v1beta1\n"
            "kind: Kustomization\n"
            "resources:\n- deployment.yaml\n"
        ),
        "web/imagestream.yaml": (
            "apiVersion: image.headwater.dev/v1\n"
            "kind: ImageStream\n"
            "metadata:\n  name: web\n"
            "spec:\n  lookupPolicy:\n    local: true\n"
        ),
        "web/buildconfig.yaml": (
            "apiVersion: build.headwater.dev/v1\n"
            "kind: BuildConfig\n"
            "metadata:\n  name: web\n"
            "spec:\n"
            "  triggers:\n  - type: ConfigChange\n"
            "  source:\n"
            "    type: Dockerfile\n"
            "    dockerfile: |\n"
            f"      FROM {busybox}\n"
            "      RUN date > /built-at\n"
            "  strategy:\n    type: Docker\n    dockerStrategy: {}\n"
            "  output:\n    to:\n      kind: ImageStreamTag\n      name: web:latest\n"
        ),
        "web-app/deployment.yaml": (
            "apiVersion: apps/v1\n"
            "kind: Deployment\n"
            "metadata:\n"
            "  name: web\n"
            "  annotations:\n"
            f"    image.openshift.io/triggers: '{TRIGGER}'\n"
            "spec:\n"
            "  replicas: 1\n"
            "  selector:\n    matchLabels:\n      app: web\n"
            "  template:\n"
            "    metadata:\n      labels:\n        app: web\n"
            "    spec:\n"
            "      containers:\n"
            "      - name: web\n"
            "        image: web:latest\n"
            '        command: ["sleep", "3600"]\n'
        ),
    }
    broken = {
        "broken/kustomization.yaml": (
            "apiVersion: kustomize.config.k8s.io/v1beta1\n"
            "kind: Kustomization\n"
            "resources:\n- imagestream.yaml\n- buildconfig.yaml\n"
        ),
        # An import of a tag the registry does not have.
        "broken/imagestream.yaml": (
            "apiVersion: image.headwater.dev/v1\n"
            "kind: ImageStream\n"
            "metadata:\n  name: base\n"
            "spec:\n"
            "  tags:\n"
            "  - name: latest\n"
            "    from:\n"
            "      kind: DockerImage\n"
            f"      name: {busybox.rsplit(':', 1)[0]}:no-such-tag\n"
            "    importPolicy:\n      insecure: true\n"
        ),
        # A builder image that does not exist: no build can start.
        "broken/buildconfig.yaml": (
            "apiVersion: build.headwater.dev/v1\n"
            "kind: BuildConfig\n"
            "metadata:\n  name: app\n"
            "spec:\n"
            "  triggers:\n  - type: ImageChange\n    imageChange: {}\n"
            "  source:\n"
            "    type: Dockerfile\n"
            "    dockerfile: |\n"
            "      FROM scratch\n"
            "  strategy:\n"
            "    type: Docker\n"
            "    dockerStrategy:\n"
            "      from:\n        kind: ImageStreamTag\n        name: missing-builder:latest\n"
            "  output:\n    to:\n      kind: ImageStreamTag\n      name: app:latest\n"
        ),
    }
    return {**web, **broken}


def publish(root: Path, workdir: Path, files: dict[str, str]) -> str:
    """A bare repository under ``root`` holding ``files`` in one commit; its name."""
    name = f"team-{uuid.uuid4().hex[:8]}"
    src = workdir / name
    for rel, content in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(content)
    git = ["git", "-c", "user.name=A Team", "-c", "user.email=team@example.invalid"]
    subprocess.run([*git, "init", "-q", "-b", "main"], cwd=src, check=True)
    subprocess.run([*git, "add", "."], cwd=src, check=True)
    subprocess.run(
        [*git, "commit", "-q", "-m", "web: stream, build, deployment"], cwd=src, check=True
    )
    subprocess.run(
        ["git", "clone", "-q", "--bare", str(src), str(root / f"{name}.git")], check=True
    )
    return name


@dataclass
class Flux:
    source_controller: str
    kustomize_controller: str
    versions: dict[str, str]
    crds: list[str]


def build_flux() -> Flux:
    """Both controllers, built when absent (a failed build fails the tests: nothing skips)."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(REPO / "hack" / "cluster" / "flux.py"), "build"],
        capture_output=True,
        text=True,
        timeout=FLUX_BUILD_TIMEOUT,
    )
    assert result.returncode == 0, f"building Flux failed:\n{result.stderr[-6000:]}"
    built = json.loads(result.stdout)
    print(f"Flux binaries ready in {time.monotonic() - started:.0f}s", file=sys.stderr)
    return Flux(
        source_controller=built["source-controller"],
        kustomize_controller=built["kustomize-controller"],
        versions={k: v for k, v in built.items() if k.endswith("-version")},
        crds=built["crds"],
    )


def _end(process: subprocess.Popen[bytes]) -> None:
    stop_operator(process)  # SIGTERM, then SIGKILL after 30 s


@dataclass
class GitOps:
    """Everything the module's tests share."""

    cluster: Cluster
    namespace: str
    broken_namespace: str
    flux_log: Path
    operator_log: Path

    def kustomization(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.cluster.get_json(
            f"kustomization.kustomize.toolkit.fluxcd.io/{name}", "-n", self.namespace
        )
        return result

    def ready(self, name: str) -> dict[str, Any]:
        conditions = (self.kustomization(name).get("status") or {}).get("conditions") or []
        return next((c for c in conditions if c["type"] == "Ready"), {})

    def deployment(self) -> dict[str, Any]:
        result: dict[str, Any] = self.cluster.get_json("deploy/web", "-n", self.namespace)
        return result

    def image(self) -> str:
        return str(self.deployment()["spec"]["template"]["spec"]["containers"][0]["image"])

    def replicaset_images(self) -> list[str]:
        items = self.cluster.get_json("rs", "-n", self.namespace, "-l", "app=web")["items"]
        return sorted(i["spec"]["template"]["spec"]["containers"][0]["image"] for i in items)

    def tag_reference(self) -> str:
        stream = self.cluster.get_json("imagestream/web", "-n", self.namespace)
        for entry in (stream.get("status") or {}).get("tags") or []:
            if entry.get("tag") == "latest" and entry.get("items"):
                return str(entry["items"][0]["dockerImageReference"])
        return ""

    def reports(self, name: str) -> list[str]:
        """kustomize-controller's log entries about Kustomization ``name``, as JSON text."""
        found = []
        for line in self.flux_log.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if (entry.get("namespace"), entry.get("name")) == (self.namespace, name):
                found.append(line)
        return found

    def syncs(self) -> int:
        """kustomize-controller's finished reconciles of the `web-app` Kustomization so far."""
        count = 0
        for line in self.flux_log.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            count += (
                str(entry.get("msg", "")).startswith("Reconciliation finished")
                and entry.get("controllerKind") == "Kustomization"
                and (entry.get("namespace"), entry.get("name")) == (self.namespace, "web-app")
            )
        return count


def git_repository(namespace: str, url: str) -> dict[str, Any]:
    return {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "GitRepository",
        "metadata": {"name": "team", "namespace": namespace},
        "spec": {"url": url, "interval": SYNC_INTERVAL, "ref": {"branch": "main"}},
    }


def kustomization(
    namespace: str, name: str, target: str, health: tuple[str, str] | None = None
) -> dict[str, Any]:
    """Flux syncing ``./<name>`` into ``target``; ``health`` names the ImageStream and
    BuildConfig whose kstatus its health check waits for."""
    spec: dict[str, Any] = {
        "interval": SYNC_INTERVAL,
        "timeout": KUSTOMIZATION_TIMEOUT,
        "retryInterval": SYNC_INTERVAL,
        "prune": True,
        "path": f"./{name}",
        "targetNamespace": target,
        "sourceRef": {"kind": "GitRepository", "name": "team"},
    }
    if health:
        stream, bc = health
        spec["healthChecks"] = [
            {"apiVersion": "image.headwater.dev/v1", "kind": "ImageStream", "name": stream,
             "namespace": target},
            {"apiVersion": "build.headwater.dev/v1", "kind": "BuildConfig", "name": bc,
             "namespace": target},
        ]  # fmt: skip
    return {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


@pytest.fixture(scope="module")
def gitops(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitOps]:
    if not cluster.is_local:
        pytest.skip("runs the operator and Flux on this machine: needs the local cluster")
    flux = build_flux()
    work = tmp_path_factory.mktemp("gitops")
    crds = [f"-f={crd}" for crd in flux.crds]
    cluster.kubectl("apply", "--server-side", "--force-conflicts", *crds)
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", *crds)
    suffix = uuid.uuid4().hex[:8]
    namespace, broken = f"hw-e2e-gitops-{suffix}", f"hw-e2e-gitops-{suffix}-broken"
    for name in (namespace, broken):
        _create_namespace(cluster, name, BASELINE)

    processes: list[subprocess.Popen[bytes]] = []
    git_root = work / "git"
    git_root.mkdir()
    git = GitHttpServer(git_root, "127.0.0.1")
    try:
        # Headwater, as `make run` starts it (admission included: `lookupPolicy.local`).
        pause_installed_operator(cluster)
        operator_log = work / "operator.log"
        settings = {
            **local_operator_env(),
            "KUBECONFIG": str(cluster.kubeconfig),
            "HEADWATER_ADMISSION_PORT": str(free_port()),
            "HEADWATER_WEBHOOK_PORT": str(free_port()),
            "HEADWATER_IMPORT_INTERVAL_SECONDS": "5",
        }
        processes.append(start_operator([namespace, broken], operator_log, settings))
        wait_for_build_admission(cluster, namespace)

        # Flux's controllers, on loopback ports of their own.
        flux_log = work / "flux.log"
        storage = work / "artifacts"
        storage.mkdir()
        storage_port = free_port()
        env = {"KUBECONFIG": str(cluster.kubeconfig), "PATH": "/usr/bin:/bin"}
        common = ["--log-level=info", "--log-encoding=json", "--enable-leader-election=false"]
        with flux_log.open("ab") as out:
            for binary, extra in (
                (
                    flux.source_controller,
                    [
                        f"--storage-path={storage}",
                        f"--storage-addr=127.0.0.1:{storage_port}",
                        f"--storage-adv-addr=127.0.0.1:{storage_port}",
                    ],
                ),
                (flux.kustomize_controller, []),
            ):
                processes.append(
                    subprocess.Popen(
                        [
                            binary,
                            *common,
                            *extra,
                            f"--metrics-addr=127.0.0.1:{free_port()}",
                            f"--health-addr=127.0.0.1:{free_port()}",
                        ],
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )

        repo = publish(git_root, work, team_repository(cluster.image("busybox")))
        url = f"{git.url}/{repo}.git"
        cluster.apply(
            [
                git_repository(namespace, url),
                kustomization(namespace, "web", namespace, ("web", "web")),
                kustomization(namespace, "broken", broken, ("base", "app")),
            ],
            namespace,
        )
        yield GitOps(cluster, namespace, broken, flux_log, operator_log)
    finally:
        # Flux's objects carry its finalizer: delete them while its controllers still
        # run, and drop what is left once they are stopped, or the namespaces would
        # stay Terminating for ever.
        flux_kinds = (
            "kustomizations.kustomize.toolkit.fluxcd.io,gitrepositories.source.toolkit.fluxcd.io"
        )
        cluster.kubectl(
            "delete", flux_kinds, "--all", "-n", namespace, "--timeout=30s", check=False
        )
        for process in reversed(processes):
            _end(process)
        git.stop()
        remove_admission_configuration(cluster)
        for name in (namespace, broken):
            left = cluster.kubectl("get", flux_kinds, "-n", name, "-o", "name", check=False)
            for obj in left.stdout.split() if left.returncode == 0 else []:
                cluster.kubectl(
                    "patch",
                    obj,
                    "-n",
                    name,
                    "--type=merge",
                    "-p",
                    '{"metadata":{"finalizers":null}}',
                    check=False,
                )
            cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def _logs(gitops: GitOps) -> str:
    return (
        f"\n--- flux (tail) ---\n{gitops.flux_log.read_text(errors='replace')[-4000:]}"
        f"\n--- operator (tail) ---\n{gitops.operator_log.read_text(errors='replace')[-3000:]}"
    )


def test_a_build_and_a_tag_move_roll_the_deployment_out(gitops: GitOps) -> None:
    cluster, namespace = gitops.cluster, gitops.namespace
    try:
        eventually(
            "Flux to apply the repository and find the stream and BuildConfig Ready",
            lambda: gitops.ready("web").get("status") == "True",
            timeout=120,
        )
        # The ConfigChange trigger's build, as on OpenShift: web-1.
        eventually(
            "the ConfigChange build",
            lambda: (
                cluster.kubectl("get", "build/web-1", "-n", namespace, check=False).returncode == 0
            ),
        )
        first = wait_for_phase(cluster, namespace, "web-1")["status"]
        assert first["phase"] == "Complete", first
        eventually("the tag to point at web-1's image", lambda: bool(gitops.tag_reference()))
        built = gitops.tag_reference()
        # Now the workload. (Synced before the stream has an image, its pods would pull
        # `web:latest` from Docker Hub until then: no traffic off this machine in tests.)
        cluster.apply(kustomization(namespace, "web-app", namespace), namespace)
        eventually("Flux to apply the Deployment", lambda: gitops.ready("web-app").get("status")
                   == "True", timeout=60)  # fmt: skip
        # Git says `web:latest`; admission (`lookupPolicy.local`) resolved it on create.
        assert gitops.image() == built

        # The tag moves (a second build): a second rollout, to the new digest.
        second = build_of_request(cluster, namespace, start_build(cluster, namespace, "web"))
        assert wait_for_phase(cluster, namespace, second)["status"]["phase"] == "Complete"
        eventually("the tag to move", lambda: gitops.tag_reference() not in ("", built))
        moved = gitops.tag_reference()
        eventually("the trigger to roll out the moved tag", lambda: gitops.image() == moved)
        assert "@sha256:" in moved
        # One ReplicaSet per image: nothing else rolled out.
        eventually(
            "the ReplicaSets of both images",
            lambda: gitops.replicaset_images() == sorted([built, moved]),
        )
        assert gitops.deployment()["metadata"]["generation"] == 2
    except AssertionError as exc:
        raise AssertionError(f"{exc}{_logs(gitops)}") from None


def test_flux_syncs_neither_revert_the_image_nor_roll_out_again(gitops: GitOps) -> None:
    cluster, namespace = gitops.cluster, gitops.namespace
    image = gitops.image()
    assert "@sha256:" in image, "the first test rolls the Deployment out to a digest"
    before = gitops.deployment()
    replicasets = gitops.replicaset_images()
    try:
        # The next periodic sync (every 10 s) ...
        synced = gitops.syncs()
        eventually("Flux's next periodic sync", lambda: gitops.syncs() > synced, timeout=40)
        # ... and a forced one, as `flux reconcile kustomization web` asks for it.
        requested = str(time.time_ns())
        cluster.kubectl(
            "annotate", "--overwrite", "-n", namespace,
            "kustomization.kustomize.toolkit.fluxcd.io/web-app",
            f"reconcile.fluxcd.io/requestedAt={requested}",
        )  # fmt: skip
        eventually(
            "Flux to handle the forced sync",
            lambda: (
                (gitops.kustomization("web-app").get("status") or {}).get("lastHandledReconcileAt")
                == requested
            ),
            timeout=40,
        )
        # A bounded look afterwards: a fight would show within Headwater's next write.
        time.sleep(3)
        after = gitops.deployment()
        assert gitops.image() == image, "a sync put Git's image back"
        assert after["metadata"]["generation"] == before["metadata"]["generation"], (
            "a sync changed the Deployment's spec (a rollout)"
        )
        assert gitops.replicaset_images() == replicasets, "a sync rolled the Deployment out"
        assert gitops.ready("web-app").get("status") == "True", gitops.ready("web-app")
        # Headwater still owns the image field; Flux owns the rest of what Git has.
        fields = cluster.get_json("deploy/web", "-n", namespace, "--show-managed-fields")
        owners = {
            m["manager"]: json.dumps(m.get("fieldsV1")) for m in fields["metadata"]["managedFields"]
        }
        assert '"f:image"' in owners.get("headwater-triggers", ""), owners
        assert "kustomize-controller" in owners, owners
    except AssertionError as exc:
        raise AssertionError(f"{exc}{_logs(gitops)}") from None


def test_kstatus_reports_headwater_objects_ready_only_once_reconciled(gitops: GitOps) -> None:
    cluster, namespace, broken = gitops.cluster, gitops.namespace, gitops.broken_namespace
    try:
        # Reconciled: the health check of the `web` Kustomization passed on both.
        for kind in ("imagestream/web", "buildconfig/web"):
            obj = cluster.get_json(kind, "-n", namespace)
            assert kstatus.compute(obj) == ("Current", "Resource is Ready"), obj.get("status")
        assert gitops.ready("web").get("status") == "True"

        # Failing: Flux's health check times out on both, as kstatus InProgress. (Its
        # Ready condition alternates between False and Unknown while it retries: the
        # controller's own report of the failed check is what is waited for.)
        wanted = (
            f"ImageStream/{broken}/base status: 'InProgress'",
            f"BuildConfig/{broken}/app status: 'InProgress'",
        )

        def failed() -> bool:
            return any(all(w in line for w in wanted) for line in gitops.reports("broken"))

        eventually("Flux's health check of the broken objects to fail", failed, timeout=90)
        assert gitops.ready("broken").get("status") != "True", gitops.ready("broken")
        for kind, reason in (
            ("imagestream/base", "ImportFailed"),
            ("buildconfig/app", "WaitingForImage"),
        ):
            obj = cluster.get_json(kind, "-n", broken)
            status, _ = kstatus.compute(obj)
            assert status == "InProgress", (kind, obj.get("status"))
            ready = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
            assert (ready["status"], ready["reason"]) == ("False", reason), ready
            assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
    except AssertionError as exc:
        raise AssertionError(f"{exc}{_logs(gitops)}") from None
