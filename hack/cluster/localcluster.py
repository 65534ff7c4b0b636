"""A real single-node Kubernetes cluster on this machine, started and stopped by pid.

    python3 hack/cluster/localcluster.py up       # start (idempotent); last line: env file
    python3 hack/cluster/localcluster.py down     # stop what `up` started, clean up
    python3 hack/cluster/localcluster.py status   # what runs, by pid
    python3 hack/cluster/localcluster.py down --purge   # also forget pki, images, registry data
    python3 hack/cluster/localcluster.py component restart etcd   # one component (fault tests)

Pieces: a registry (Debian's docker-registry) and a git daemon that pods can
reach, etcd and the control plane built by build-binaries.sh, containerd and
runc from Debian, a kubelet and kube-proxy, a CNI bridge network. Everything
lives in one state directory outside the checkout (``$HEADWATER_STATE``,
default ``~/.local/state/headwater/cluster``); every process is started by us,
recorded by pid in ``pids/`` and stopped by that pid.

Addresses. The node's address is the gateway of the pod bridge, ``10.244.0.1``
on bridge ``hw0``, made before anything starts: it is an address of this
machine (so the host reaches it) and the gateway of every pod (so pods reach
it), and it is not on any outside network. The API server, the kubelet, the
registry and the git daemon listen there; etcd and the components' own
health ports stay on 127.0.0.1.

Only the Python standard library is used: this runs before any venv exists.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import images

HERE = Path(__file__).resolve().parent


def _versions() -> dict[str, str]:
    """Read versions.env the way bash would see its defaults."""
    out: dict[str, str] = {}
    for line in (HERE / "versions.env").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        # K8S_VERSION=${K8S_VERSION:-v1.35.4}
        default = value.split(":-", 1)[1].rstrip("}") if ":-" in value else value
        out[key] = os.environ.get(key, default)
    return out


VERSIONS = _versions()
K8S_VERSION = VERSIONS["K8S_VERSION"]
CACHE = Path(os.environ.get("HEADWATER_CACHE", Path.home() / ".cache/headwater"))
BIN = CACHE / "k8s" / K8S_VERSION / "bin"
STATE = Path(os.environ.get("HEADWATER_STATE", Path.home() / ".local/state/headwater/cluster"))

NODE_NAME = "headwater-node"
BRIDGE = "hw0"
POD_CIDR = "10.244.0.0/24"
NODE_IP = "10.244.0.1"
# The bridge's own MAC, set by hand: a bridge whose MAC the kernel chose takes the lowest MAC
# of its ports, so it changes whenever the pod holding that port goes, and every pod that had
# the gateway's old MAC in its ARP cache loses this machine (registry, API server, git) until
# the entry expires: 30 s and more, long enough to fail a build's push. Locally administered.
BRIDGE_MAC = "02:68:77:00:00:01"
SERVICE_CIDR = "10.96.0.0/24"
KUBERNETES_SERVICE_IP = "10.96.0.1"
ETCD_CLIENT = "127.0.0.1:12379"  # not 2379: stays clear of any other etcd on the machine
ETCD_PEER = "127.0.0.1:12380"
APISERVER_PORT = 6443
REGISTRY = f"{NODE_IP}:5000"
GIT_PORT = 9418

PKI = STATE / "pki"
LOGS = STATE / "logs"
PIDS = STATE / "pids"
ENV_FILE = STATE / "cluster.env"
CONTAINERD_SOCK = STATE / "containerd" / "containerd.sock"

# Start order; `down` stops in reverse.
COMPONENTS = [
    "registry",
    "git-daemon",
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "containerd",
    "kubelet",
    "kube-proxy",
]

DEBIAN_TOOLS = {
    "containerd": "containerd",
    "ctr": "containerd",
    "runc": "runc",
    "docker-registry": "docker-registry",
    "buildah": "buildah",
    "skopeo": "skopeo",
    "git": "git",
    "debootstrap": "debootstrap",
    "openssl": "openssl",
    "iptables": "iptables",
    "conntrack": "conntrack",
    "ip": "iproute2",
    "gcc": "gcc",
}


class ClusterError(RuntimeError):
    pass


def log(msg: str) -> None:
    print(f"[cluster] {msg}", flush=True)


def sh(*cmd: str, check: bool = True, quiet: bool = False) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(cmd), capture_output=True, text=True)
    if check and result.returncode != 0:
        raise ClusterError(f"{' '.join(cmd)} failed ({result.returncode}): {result.stderr.strip()}")
    if not quiet and result.returncode != 0:
        log(f"(ignored) {' '.join(cmd)}: {result.stderr.strip()}")
    return result


# --- processes ---------------------------------------------------------------


def pid_of(name: str) -> int | None:
    path = PIDS / f"{name}.pid"
    if not path.exists():
        return None
    try:
        pid = int(path.read_text().strip())
    except ValueError:
        return None
    return pid if _alive(pid) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def start(name: str, cmd: list[str], env: dict[str, str] | None = None) -> int:
    LOGS.mkdir(parents=True, exist_ok=True)
    PIDS.mkdir(parents=True, exist_ok=True)
    logfile = open(LOGS / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
    logfile.write(f"\n===== {time.ctime()} {' '.join(cmd)}\n".encode())
    logfile.flush()
    # A session of its own: the component outlives this script and a Ctrl-C
    # in the terminal that ran `make cluster-up` does not reach it.
    proc = subprocess.Popen(
        cmd,
        stdout=logfile,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )
    (PIDS / f"{name}.pid").write_text(f"{proc.pid}\n")
    return proc.pid


def stop(name: str, timeout: float = 15) -> None:
    path = PIDS / f"{name}.pid"
    pid = pid_of(name)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            log(f"{name} (pid {pid}) ignored SIGTERM; killing")
            os.kill(pid, signal.SIGKILL)
        # Reap it if it is our child (it is not, across invocations).
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
    path.unlink(missing_ok=True)


def tail(name: str, lines: int = 40) -> str:
    path = LOGS / f"{name}.log"
    if not path.exists():
        return f"(no log for {name})"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def wait_for(what: str, check: Callable[[], bool], timeout: float, logs: list[str]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # noqa: S110 - any failure of a probe means "not yet"
            pass
        for name in logs:
            if (PIDS / f"{name}.pid").exists() and pid_of(name) is None:
                raise ClusterError(f"{name} exited while waiting for {what}:\n{tail(name)}")
        time.sleep(0.5)
    detail = "\n".join(f"--- {n} log (last lines) ---\n{tail(n)}" for n in logs)
    raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}\n{detail}")


def _https_ok(url: str) -> bool:
    ctx = ssl.create_default_context(cafile=str(PKI / "ca.crt"))
    ctx.load_cert_chain(str(PKI / "admin.crt"), str(PKI / "admin.key"))
    with urllib.request.urlopen(url, context=ctx, timeout=3) as resp:  # noqa: S310
        return bool(resp.status == 200)


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=3) as resp:  # noqa: S310
        return bool(resp.status == 200)


def _port_open(host: str, port: int) -> bool:
    with socket.create_connection((host, port), timeout=2):
        return True


def kubectl(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return sh(
        str(BIN / "kubectl"),
        "--kubeconfig",
        str(STATE / "admin.kubeconfig"),
        *args,
        check=check,
        quiet=True,
    )


# --- certificates ------------------------------------------------------------


def _ec_key(path: Path) -> None:
    # P-256: every Kubernetes component accepts it, and it is quick to make.
    sh(
        "openssl",
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        str(path),
    )


def _openssl_cert(name: str, cn: str, org: str | None, sans: list[str], usage: str) -> None:
    """A key and a certificate signed by the cluster CA, made once."""
    key, crt = PKI / f"{name}.key", PKI / f"{name}.crt"
    if crt.exists() and key.exists():
        return
    subject = f"/CN={cn}" + (f"/O={org}" if org else "")
    ext = PKI / f"{name}.ext"
    lines = [
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        f"extendedKeyUsage={usage}",
    ]
    if sans:
        lines.append("subjectAltName=" + ",".join(sans))
    ext.write_text("\n".join(lines) + "\n")
    _ec_key(key)
    csr = PKI / f"{name}.csr"
    sh("openssl", "req", "-new", "-key", str(key), "-subj", subject, "-out", str(csr))
    sh(
        "openssl",
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(PKI / "ca.crt"),
        "-CAkey",
        str(PKI / "ca.key"),
        "-CAcreateserial",
        "-days",
        "3650",
        "-extfile",
        str(ext),
        "-out",
        str(crt),
    )
    csr.unlink()
    key.chmod(0o600)


def make_pki() -> None:
    PKI.mkdir(parents=True, exist_ok=True)
    if not (PKI / "ca.crt").exists():
        _ec_key(PKI / "ca.key")
        sh(
            "openssl",
            "req",
            "-x509",
            "-new",
            "-key",
            str(PKI / "ca.key"),
            "-days",
            "3650",
            "-subj",
            "/CN=headwater-local-ca",
            "-out",
            str(PKI / "ca.crt"),
        )
    apiserver_sans = [
        f"IP:{NODE_IP}",
        f"IP:{KUBERNETES_SERVICE_IP}",
        "IP:127.0.0.1",
        "DNS:localhost",
        "DNS:kubernetes",
        "DNS:kubernetes.default",
        "DNS:kubernetes.default.svc",
        "DNS:kubernetes.default.svc.cluster.local",
    ]
    _openssl_cert("apiserver", "kube-apiserver", None, apiserver_sans, "serverAuth")
    # The API server calls kubelets (logs, exec) as a superuser of its own.
    _openssl_cert(
        "apiserver-kubelet-client",
        "kube-apiserver-kubelet-client",
        "system:masters",
        [],
        "clientAuth",
    )
    _openssl_cert("admin", "headwater-admin", "system:masters", [], "clientAuth")
    _openssl_cert("controller-manager", "system:kube-controller-manager", None, [], "clientAuth")
    _openssl_cert("scheduler", "system:kube-scheduler", None, [], "clientAuth")
    _openssl_cert("kube-proxy", "system:kube-proxy", None, [], "clientAuth")
    # The Node authorizer recognises kubelets by this exact name and group.
    _openssl_cert("kubelet-client", f"system:node:{NODE_NAME}", "system:nodes", [], "clientAuth")
    _openssl_cert(
        "kubelet-serving", NODE_NAME, None, [f"IP:{NODE_IP}", f"DNS:{NODE_NAME}"], "serverAuth"
    )
    if not (PKI / "sa.key").exists():
        # RSA: every consumer of service-account tokens understands RS256.
        sh(
            "openssl",
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            str(PKI / "sa.key"),
        )
        sh("openssl", "pkey", "-in", str(PKI / "sa.key"), "-pubout", "-out", str(PKI / "sa.pub"))
    for name, cert in (
        ("admin", "admin"),
        ("controller-manager", "controller-manager"),
        ("scheduler", "scheduler"),
        ("kube-proxy", "kube-proxy"),
        ("kubelet", "kubelet-client"),
    ):
        _write_kubeconfig(STATE / f"{name}.kubeconfig", cert)


def _write_kubeconfig(path: Path, cert: str) -> None:
    # JSON is YAML; no PyYAML needed here.
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "headwater",
                "cluster": {
                    "server": f"https://{NODE_IP}:{APISERVER_PORT}",
                    "certificate-authority": str(PKI / "ca.crt"),
                },
            }
        ],
        "users": [
            {
                "name": cert,
                "user": {
                    "client-certificate": str(PKI / f"{cert}.crt"),
                    "client-key": str(PKI / f"{cert}.key"),
                },
            }
        ],
        "contexts": [{"name": "headwater", "context": {"cluster": "headwater", "user": cert}}],
        "current-context": "headwater",
    }
    path.write_text(json.dumps(config, indent=2) + "\n")
    path.chmod(0o600)


# --- network -----------------------------------------------------------------


def make_bridge() -> None:
    if sh("ip", "link", "show", BRIDGE, check=False, quiet=True).returncode != 0:
        sh("ip", "link", "add", BRIDGE, "type", "bridge")
    addrs = sh("ip", "-4", "-o", "addr", "show", "dev", BRIDGE).stdout
    if f"{NODE_IP}/" not in addrs:
        sh("ip", "addr", "add", f"{NODE_IP}/24", "dev", BRIDGE)
    sh("ip", "link", "set", BRIDGE, "address", BRIDGE_MAC)
    sh("ip", "link", "set", BRIDGE, "up")
    # kube-proxy's Service rules must see traffic crossing the bridge.
    Path("/proc/sys/net/bridge/bridge-nf-call-iptables").write_text("1\n")


def write_cni_config() -> None:
    netd = STATE / "cni" / "net.d"
    netd.mkdir(parents=True, exist_ok=True)
    conflist = {
        "cniVersion": "1.0.0",
        "name": "headwater",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                # No masquerading: pods talk to this machine and to each other only.
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_CIDR, "gateway": NODE_IP}]],
                    # Only a route to Services (kube-proxy NATs them to the node);
                    # no default route, so nothing in a pod can aim past this machine.
                    "routes": [{"dst": SERVICE_CIDR, "gw": NODE_IP}],
                    "dataDir": str(STATE / "cni" / "ipam"),
                },
            }
        ],
    }
    (netd / "10-headwater.conflist").write_text(json.dumps(conflist, indent=2) + "\n")


# --- components --------------------------------------------------------------


def start_registry() -> None:
    data = STATE / "registry-data"
    data.mkdir(parents=True, exist_ok=True)
    config = STATE / "registry.yml"
    config.write_text(
        json.dumps(
            {
                "version": 0.1,
                "log": {"level": "info"},
                "storage": {
                    "filesystem": {"rootdirectory": str(data)},
                    "delete": {"enabled": True},
                },
                "http": {"addr": REGISTRY, "headers": {"X-Content-Type-Options": ["nosniff"]}},
            },
            indent=2,
        )
    )
    start("registry", ["docker-registry", "serve", str(config)])
    wait_for("the registry", lambda: _http_ok(f"http://{REGISTRY}/v2/"), 30, ["registry"])


def start_git_daemon() -> None:
    root = STATE / "git"
    root.mkdir(parents=True, exist_ok=True)
    # git-daemon itself, not `git daemon`: the wrapper would fork it as a
    # child and our pid would be the wrapper's.
    exec_path = sh("git", "--exec-path").stdout.strip()
    start(
        "git-daemon",
        [
            f"{exec_path}/git-daemon",
            "--reuseaddr",
            "--export-all",
            f"--base-path={root}",
            f"--listen={NODE_IP}",
            f"--port={GIT_PORT}",
            str(root),
        ],
    )
    wait_for("the git daemon", lambda: _port_open(NODE_IP, GIT_PORT), 15, ["git-daemon"])


def start_etcd() -> None:
    data = STATE / "etcd-data"
    data.mkdir(parents=True, exist_ok=True)
    data.chmod(0o700)
    # Plain HTTP on loopback only: nothing but the API server on this machine talks to it.
    start(
        "etcd",
        [
            str(BIN / "etcd"),
            "--name",
            "headwater",
            "--data-dir",
            str(data),
            "--listen-client-urls",
            f"http://{ETCD_CLIENT}",
            "--advertise-client-urls",
            f"http://{ETCD_CLIENT}",
            "--listen-peer-urls",
            f"http://{ETCD_PEER}",
            "--initial-advertise-peer-urls",
            f"http://{ETCD_PEER}",
            "--initial-cluster",
            f"headwater=http://{ETCD_PEER}",
            "--listen-metrics-urls",
            "http://127.0.0.1:12381",
            # Tests churn namespaces; keep the database small.
            "--auto-compaction-retention",
            "5m",
            "--quota-backend-bytes",
            str(2 * 1024**3),
            "--unsafe-no-fsync",  # throwaway test data; fsync dominates etcd latency on VMs
        ],
    )
    wait_for("etcd", lambda: _http_ok("http://127.0.0.1:12381/health"), 30, ["etcd"])


def start_apiserver() -> None:
    start(
        "kube-apiserver",
        [
            str(BIN / "kube-apiserver"),
            f"--advertise-address={NODE_IP}",
            f"--bind-address={NODE_IP}",
            f"--secure-port={APISERVER_PORT}",
            f"--etcd-servers=http://{ETCD_CLIENT}",
            f"--client-ca-file={PKI / 'ca.crt'}",
            f"--tls-cert-file={PKI / 'apiserver.crt'}",
            f"--tls-private-key-file={PKI / 'apiserver.key'}",
            f"--kubelet-client-certificate={PKI / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={PKI / 'apiserver-kubelet-client.key'}",
            f"--kubelet-certificate-authority={PKI / 'ca.crt'}",
            "--kubelet-preferred-address-types=InternalIP",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={PKI / 'sa.pub'}",
            f"--service-account-signing-key-file={PKI / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            # Build pods run buildah, which needs a privileged container.
            "--allow-privileged=true",
            "--profiling=false",
        ],
    )
    wait_for(
        "kube-apiserver /readyz",
        lambda: _https_ok(f"https://{NODE_IP}:{APISERVER_PORT}/readyz"),
        90,
        ["kube-apiserver", "etcd"],
    )


def start_controller_manager() -> None:
    start(
        "kube-controller-manager",
        [
            str(BIN / "kube-controller-manager"),
            f"--kubeconfig={STATE / 'controller-manager.kubeconfig'}",
            f"--authentication-kubeconfig={STATE / 'controller-manager.kubeconfig'}",
            f"--authorization-kubeconfig={STATE / 'controller-manager.kubeconfig'}",
            "--bind-address=127.0.0.1",
            # One identity per controller, so RBAC denials name the controller.
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={PKI / 'sa.key'}",
            # Without it pods wait forever for the kube-root-ca.crt ConfigMap.
            f"--root-ca-file={PKI / 'ca.crt'}",
            f"--cluster-signing-cert-file={PKI / 'ca.crt'}",
            f"--cluster-signing-key-file={PKI / 'ca.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--leader-elect=false",
        ],
    )


def start_scheduler() -> None:
    config = STATE / "scheduler.yaml"
    config.write_text(
        json.dumps(
            {
                "apiVersion": "kubescheduler.config.k8s.io/v1",
                "kind": "KubeSchedulerConfiguration",
                "clientConnection": {"kubeconfig": str(STATE / "scheduler.kubeconfig")},
                "leaderElection": {"leaderElect": False},
            },
            indent=2,
        )
    )
    start(
        "kube-scheduler",
        [
            str(BIN / "kube-scheduler"),
            f"--config={config}",
            "--bind-address=127.0.0.1",
            f"--authentication-kubeconfig={STATE / 'scheduler.kubeconfig'}",
            f"--authorization-kubeconfig={STATE / 'scheduler.kubeconfig'}",
        ],
    )


def start_containerd() -> None:
    base = STATE / "containerd"
    certs = base / "certs.d" / REGISTRY
    certs.mkdir(parents=True, exist_ok=True)
    # The local registry speaks plain HTTP.
    (certs / "hosts.toml").write_text(
        f'server = "http://{REGISTRY}"\n\n[host."http://{REGISTRY}"]\n'
        '  capabilities = ["pull", "resolve", "push"]\n  skip_verify = true\n'
    )
    pause = f"{REGISTRY}/{images.RECIPES['pause'].repository}:{images.RECIPES['pause'].tag}"
    config = base / "config.toml"
    config.write_text(f"""version = 2
root = "{base / "root"}"
state = "{base / "state"}"

[grpc]
  address = "{CONTAINERD_SOCK}"

[ttrpc]
  address = "{base / "containerd.sock.ttrpc"}"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  # Network namespaces under our state dir, so `down` finds and removes them.
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  # This machine forbids lowering oom_score_adj below 0 (no CAP_SYS_RESOURCE
  # over it); clamp what the kubelet asks for (-998 for sandboxes) to ours.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{STATE / "cni" / "net.d"}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        # containerd 1.6 cannot tell the kubelet its driver; both use cgroupfs.
        SystemdCgroup = false
        # runc's own state beside ours, not in /run/containerd.
        Root = "{base / "runc"}"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{base / "certs.d"}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{base / "opt"}"
""")
    start("containerd", ["containerd", "--config", str(config)])
    wait_for(
        "containerd",
        lambda: CONTAINERD_SOCK.is_socket() and _ctr("version").returncode == 0,
        30,
        ["containerd"],
    )


def _ctr(*args: str) -> subprocess.CompletedProcess[str]:
    return sh("ctr", "--address", str(CONTAINERD_SOCK), *args, check=False, quiet=True)


def start_kubelet() -> None:
    root = STATE / "kubelet"
    root.mkdir(parents=True, exist_ok=True)
    config = STATE / "kubelet-config.yaml"
    config.write_text(
        json.dumps(
            {
                "apiVersion": "kubelet.config.k8s.io/v1beta1",
                "kind": "KubeletConfiguration",
                "address": NODE_IP,
                "readOnlyPort": 0,
                "healthzBindAddress": "127.0.0.1",
                "healthzPort": 10248,
                "authentication": {
                    "anonymous": {"enabled": False},
                    "webhook": {"enabled": True},
                    "x509": {"clientCAFile": str(PKI / "ca.crt")},
                },
                "authorization": {"mode": "Webhook"},
                "tlsCertFile": str(PKI / "kubelet-serving.crt"),
                "tlsPrivateKeyFile": str(PKI / "kubelet-serving.key"),
                "containerRuntimeEndpoint": f"unix://{CONTAINERD_SOCK}",
                # containerd 1.6 does not report its cgroup driver; it runs cgroupfs.
                "cgroupDriver": "cgroupfs",
                # This machine mounts cgroup v1; 1.35 refuses it unless told.
                "failCgroupV1": False,
                "failSwapOn": False,
                "clusterDomain": "cluster.local",
                # No DNS server in this cluster; pods use the host's resolv.conf.
                "resolvConf": "/etc/resolv.conf",
                # Small disks: do not evict test pods or collect images early.
                "evictionHard": {
                    "memory.available": "100Mi",
                    "nodefs.available": "1%",
                    "nodefs.inodesFree": "1%",
                    "imagefs.available": "1%",
                },
                "imageGCHighThresholdPercent": 99,
                "imageGCLowThresholdPercent": 98,
                "serializeImagePulls": False,
                "maxPods": 110,
                # hugetlb is in the kernel but not mounted here.
                "cgroupsPerQOS": True,
                "enforceNodeAllocatable": ["pods"],
                "localStorageCapacityIsolation": True,
            },
            indent=2,
        )
    )
    command = [
        str(BIN / "kubelet"),
        f"--config={config}",
        f"--kubeconfig={STATE / 'kubelet.kubeconfig'}",
        f"--root-dir={root}",
        f"--node-ip={NODE_IP}",
        f"--hostname-override={NODE_NAME}",
        "--v=1",
    ]
    # containerd answers `ctr version` before its CRI service is initialized; a
    # kubelet started in that window exits at once ("server is not initialized
    # yet"). Start it again until it stays up.
    for _ in range(10):
        pid = start("kubelet", command)
        time.sleep(3)
        if _alive(pid):
            return
        log("kubelet exited at start (containerd's CRI not ready yet?); starting it again")


def start_kube_proxy() -> None:
    config = STATE / "kube-proxy.yaml"
    config.write_text(
        json.dumps(
            {
                "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
                "kind": "KubeProxyConfiguration",
                "clientConnection": {"kubeconfig": str(STATE / "kube-proxy.kubeconfig")},
                "mode": "iptables",
                "clusterCIDR": POD_CIDR,
                "hostnameOverride": NODE_NAME,
                "bindAddress": "127.0.0.1",
                "healthzBindAddress": "127.0.0.1:10256",
                "metricsBindAddress": "127.0.0.1:10249",
                # Leave the machine's conntrack sysctls alone.
                "conntrack": {"maxPerCore": 0},
            },
            indent=2,
        )
    )
    start("kube-proxy", [str(BIN / "kube-proxy"), f"--config={config}"])


# --- readiness ---------------------------------------------------------------


def _node_ready() -> bool:
    out = kubectl(
        "get",
        "node",
        NODE_NAME,
        "-o",
        "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
        check=False,
    )
    return out.stdout.strip() == "True"


def _default_sa() -> bool:
    return kubectl("get", "serviceaccount", "default", "-n", "default", check=False).returncode == 0


def smoke_pod(refs: dict[str, str]) -> None:
    """A pod that runs to completion proves scheduling, CNI, pulls and the runtime."""
    name = "headwater-smoke"
    kubectl("delete", "pod", name, "-n", "default", "--ignore-not-found", "--wait=true")
    manifest = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "containers": [
                {
                    "name": "smoke",
                    "image": refs["busybox"],
                    # Reaching the registry on the node address proves pod networking.
                    "command": [
                        "sh",
                        "-c",
                        f"wget -q -O /dev/null http://{REGISTRY}/v2/ && echo ok",
                    ],
                }
            ],
        },
    }
    subprocess.run(
        [str(BIN / "kubectl"), "--kubeconfig", str(STATE / "admin.kubeconfig"), "apply", "-f", "-"],
        input=json.dumps(manifest),
        text=True,
        check=True,
        capture_output=True,
    )

    def done() -> bool:
        phase = kubectl(
            "get", "pod", name, "-n", "default", "-o", "jsonpath={.status.phase}", check=False
        ).stdout.strip()
        if phase == "Failed":
            logs = kubectl("logs", name, "-n", "default", check=False)
            raise ClusterError(f"smoke pod failed: {logs.stdout}{logs.stderr}")
        return phase == "Succeeded"

    try:
        wait_for("a smoke pod to run", done, 120, ["kubelet", "containerd"])
    except ClusterError:
        desc = kubectl("describe", "pod", name, "-n", "default", check=False).stdout
        raise ClusterError(f"smoke pod did not complete:\n{desc}") from None
    kubectl("delete", "pod", name, "-n", "default", "--wait=false")


def write_env_file(refs: dict[str, str]) -> None:
    lines = [
        "# Written by hack/cluster/localcluster.py up; source it or pass it to `make run`.",
        f"KUBECONFIG={STATE / 'admin.kubeconfig'}",
        f"REGISTRY={REGISTRY}",
        f"KUBECTL={BIN / 'kubectl'}",
        f"HEADWATER_GIT_DAEMON=git://{NODE_IP}:{GIT_PORT}",
        f"HEADWATER_GIT_ROOT={STATE / 'git'}",
        f"HEADWATER_BUILDER_IMAGE={refs['builder']}",
        f"HEADWATER_BUSYBOX_IMAGE={refs['busybox']}",
        f"HEADWATER_PYTHON_IMAGE={refs['python']}",
        *([f"HEADWATER_KANIKO_IMAGE={refs['kaniko']}"] if "kaniko" in refs else []),
        f"HEADWATER_CLUSTER_STATE={STATE}",
    ]
    ENV_FILE.write_text("\n".join(lines) + "\n")


# Settings of the operator (HEADWATER_* variables its config reads) that an
# operator running on this machine needs for this cluster: `make run` and the
# tests' in-process operator take them from `localcluster.py operator-env`.
OPERATOR_IMAGE_SETTINGS = ("HEADWATER_BUILDER_IMAGE", "HEADWATER_KANIKO_IMAGE")


def operator_env() -> dict[str, str]:
    """The operator's settings for this cluster, from the env file ``up`` wrote."""
    written: dict[str, str] = {}
    for line in ENV_FILE.read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            written[key] = value
    env = {
        # Where ImageStreamTag outputs are pushed: the local, plain-HTTP registry.
        "HEADWATER_REGISTRY": REGISTRY,
        "HEADWATER_REGISTRY_INSECURE": "true",
        # The API server runs on this machine and calls the admission webhook
        # (lookupPolicy.local, admission checks) at the node address.
        "HEADWATER_ADMISSION_HOST": NODE_IP,
    }
    # Build pods run the images made here: nothing can be pulled from outside.
    env.update({key: written[key] for key in OPERATOR_IMAGE_SETTINGS if key in written})
    return env


# --- one component at a time (the fault tests of issue 14) ----------------------


def _kubelet_healthy() -> bool:
    return _http_ok("http://127.0.0.1:10248/healthz") and _node_ready()


def _apiserver_ready() -> bool:
    return _https_ok(f"https://{NODE_IP}:{APISERVER_PORT}/readyz")


RESTARTABLE: dict[str, tuple[Callable[[], None], Callable[[], bool]]] = {
    "etcd": (start_etcd, lambda: _http_ok("http://127.0.0.1:12381/health")),
    "kube-apiserver": (start_apiserver, _apiserver_ready),
    "kubelet": (start_kubelet, _kubelet_healthy),
    "registry": (start_registry, lambda: _http_ok(f"http://{REGISTRY}/v2/")),
}
"""The components a test may stop and start again: (start it, is it healthy)."""


def stop_component(name: str) -> None:
    """Stop one component of a running cluster (SIGTERM, SIGKILL after 15 s)."""
    if name not in RESTARTABLE:
        raise ClusterError(f"not a restartable component: {name}")
    stop(name)
    log(f"{name} stopped")


def start_component(name: str, timeout: float = 120) -> None:
    """Start one stopped component again, then wait until it and the API server are healthy.

    A component that runs already is left alone (only the health is waited for).
    """
    if name not in RESTARTABLE:
        raise ClusterError(f"not a restartable component: {name}")
    begin, healthy = RESTARTABLE[name]
    if pid_of(name) is None:
        begin()
    wait_for(f"{name} to be healthy", healthy, timeout, [name])
    # Everything else reconnects on its own; the cluster is usable once the API answers.
    wait_for("kube-apiserver /readyz", _apiserver_ready, timeout, ["kube-apiserver", "etcd"])
    log(f"{name} started and healthy")


def restart_component(name: str, timeout: float = 120) -> None:
    """Stop one component and start it again at once; wait until it is healthy."""
    stop_component(name)
    start_component(name, timeout)


# --- lifecycle ---------------------------------------------------------------


def check_prerequisites() -> None:
    missing = sorted({pkg for tool, pkg in DEBIAN_TOOLS.items() if shutil.which(tool) is None})
    if missing:
        raise ClusterError(
            f"missing Debian packages: {', '.join(missing)}; run `make install-deps` first"
        )
    if os.geteuid() != 0:
        raise ClusterError("the local cluster needs root (bridges, mounts, containerd)")
    if not Path("/proc/sys/net/bridge/bridge-nf-call-iptables").exists():
        raise ClusterError(
            "the kernel has no br_netfilter (no /proc/sys/net/bridge): Service traffic from "
            "pods cannot be routed by kube-proxy on this machine"
        )
    required = [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kubelet",
        "kube-proxy",
        "kubectl",
    ]
    if any(not (BIN / b).exists() for b in required):
        log(f"Kubernetes {K8S_VERSION} binaries not cached in {BIN}; building them")
        result = subprocess.run(["bash", str(HERE / "build-binaries.sh")])
        if result.returncode != 0:
            raise ClusterError("building the Kubernetes binaries failed (see above)")


def running() -> dict[str, int | None]:
    return {name: pid_of(name) for name in COMPONENTS}


def up() -> None:
    check_prerequisites()
    state = running()
    if all(state.values()):
        try:
            if _https_ok(f"https://{NODE_IP}:{APISERVER_PORT}/readyz") and _node_ready():
                log("cluster already running")
                make_bridge()  # a cluster started before the bridge's MAC was pinned gets it
                print(ENV_FILE)
                return
        except Exception as exc:
            log(f"cluster processes run but the API does not answer ({exc}); restarting")
    if any(state.values()) or any(PIDS.glob("*.pid")):
        dead = [n for n, p in state.items() if p is None and (PIDS / f"{n}.pid").exists()]
        log(f"cleaning up a previous run (dead: {', '.join(dead) or 'none'})")
        down(purge=False)
    else:
        _clean_runtime_leftovers()

    started = time.monotonic()
    for d in (STATE, LOGS, PIDS):
        d.mkdir(parents=True, exist_ok=True)
    make_pki()
    make_bridge()
    write_cni_config()
    start_registry()
    start_git_daemon()
    refs = images.ensure_images(CACHE, REGISTRY)
    start_etcd()
    start_apiserver()
    start_controller_manager()
    start_scheduler()
    start_containerd()
    start_kubelet()
    start_kube_proxy()
    wait_for("node Ready", _node_ready, 120, ["kubelet", "containerd", "kube-apiserver"])
    wait_for("the default service account", _default_sa, 60, ["kube-controller-manager"])
    smoke_pod(refs)
    write_env_file(refs)
    log(f"cluster up in {time.monotonic() - started:.1f}s; logs in {LOGS}")
    print(ENV_FILE)


def _our_shims() -> list[int]:
    """containerd shims outlive containerd; ours name our socket on their command line."""
    pids = []
    needle = str(CONTAINERD_SOCK).encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if b"containerd-shim" in cmdline and needle in cmdline:
            pids.append(int(proc.name))
    return pids


def _children_of(parents: list[int]) -> list[int]:
    wanted = set(parents)
    children = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid in wanted:
            children.append(int(proc.name))
    return children


def _mounts_under(root: Path) -> list[str]:
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mountpoint = line.split()[4].replace("\\040", " ")
        if mountpoint == str(root) or mountpoint.startswith(f"{root}/"):
            found.append(mountpoint)
    return found


def _unmount_all(root: Path) -> None:
    for _ in range(5):
        mounts = _mounts_under(root)
        if not mounts:
            return
        for mp in sorted(mounts, key=len, reverse=True):
            if sh("umount", mp, check=False, quiet=True).returncode != 0:
                sh("umount", "-l", mp, check=False)
    left = _mounts_under(root)
    if left:
        raise ClusterError(f"could not unmount: {', '.join(left)}")


def _remove_kube_iptables() -> None:
    """Drop the KUBE-* chains the kubelet and kube-proxy made, and the jumps to them.

    kube-proxy --cleanup removes its own; the kubelet's (KUBE-FIREWALL,
    KUBE-KUBELET-CANARY, KUBE-IPTABLES-HINT) have no cleanup command.
    Only chains named KUBE-* are touched.
    """
    for save, tool in (("iptables-save", "iptables"), ("ip6tables-save", "ip6tables")):
        if shutil.which(save) is None:
            continue
        for table in ("filter", "nat", "mangle"):
            dump = sh(save, "-t", table, check=False, quiet=True).stdout.splitlines()
            chains = [ln[1:].split()[0] for ln in dump if ln.startswith(":KUBE-")]
            for rule in dump:
                parts = shlex.split(rule)
                if (
                    rule.startswith("-A ")
                    and "-j" in parts
                    and (parts[parts.index("-j") + 1].startswith("KUBE-"))
                    and not parts[1].startswith("KUBE-")
                ):
                    sh(tool, "-t", table, "-D", *parts[1:], check=False, quiet=True)
            for chain in chains:
                sh(tool, "-t", table, "-F", chain, check=False, quiet=True)
            for chain in chains:
                sh(tool, "-t", table, "-X", chain, check=False, quiet=True)


def _remove_cgroups() -> None:
    # The kubelet's cgroup tree; only empty directories can go, so leftovers
    # with live processes stay (and show up as an error in the next `up`).
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        top = hierarchy / "kubepods"
        if not top.is_dir():
            continue
        for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                d.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


def _clean_runtime_leftovers() -> None:
    """What a crashed run leaves that the next one must not inherit."""
    shims = _our_shims()
    # Containers are children of their shim (it is their subreaper); killing a
    # pid namespace's first process ends the whole namespace.
    for pid in [*_children_of(shims), *shims]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if STATE.exists():
        _unmount_all(STATE)
    if shutil.which(str(BIN / "kube-proxy")) or (BIN / "kube-proxy").exists():
        # Removes the KUBE-* chains kube-proxy made.
        sh(str(BIN / "kube-proxy"), "--cleanup", check=False, quiet=True)
    _remove_kube_iptables()
    if sh("ip", "link", "show", BRIDGE, check=False, quiet=True).returncode == 0:
        sh("ip", "link", "delete", BRIDGE, check=False)
    _remove_cgroups()
    # Runtime state is per run; certificates, images and registry data are kept.
    for d in ("etcd-data", "kubelet", "cni/ipam", "containerd/state"):
        shutil.rmtree(STATE / d, ignore_errors=True)


def down(purge: bool = False) -> None:
    if (PIDS / "kubelet.pid").exists():
        stop("kubelet")
    if pid_of("containerd") is not None:
        # Stop every container while containerd still answers, so shims exit.
        for ns in ("k8s.io",):
            tasks = _ctr("-n", ns, "tasks", "ls", "-q").stdout.split()
            for task in tasks:
                _ctr("-n", ns, "tasks", "kill", "-s", "SIGKILL", task)
            deadline = time.monotonic() + 10
            while _ctr("-n", ns, "tasks", "ls", "-q").stdout.split() and (
                time.monotonic() < deadline
            ):
                time.sleep(0.2)
            for task in _ctr("-n", ns, "tasks", "ls", "-q").stdout.split():
                _ctr("-n", ns, "tasks", "delete", "-f", task)
    for name in reversed(COMPONENTS):
        stop(name)
    _clean_runtime_leftovers()
    if purge:
        shutil.rmtree(STATE, ignore_errors=True)
        log(f"purged {STATE}")
    log("cluster down")


def status() -> int:
    state = running()
    for name, pid in state.items():
        print(f"{name:26} {'pid ' + str(pid) if pid else 'not running'}")
    if all(state.values()):
        print(f"env file: {ENV_FILE}")
        return 0
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start the cluster (idempotent); prints the env file path last")
    down_p = sub.add_parser("down", help="stop everything `up` started")
    down_p.add_argument(
        "--purge",
        action="store_true",
        help="also delete certificates, registry data and the state dir",
    )
    sub.add_parser("status", help="show which components run, by pid")
    sub.add_parser("env", help="print the env file path if the cluster runs")
    sub.add_parser(
        "operator-env",
        help="print the HEADWATER_* settings an operator on this machine needs (make run)",
    )
    component_p = sub.add_parser(
        "component", help="stop, start or restart one component of the running cluster"
    )
    component_p.add_argument("action", choices=["stop", "start", "restart"])
    component_p.add_argument("name", choices=sorted(RESTARTABLE))
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            up()
        elif args.command == "down":
            down(purge=args.purge)
        elif args.command == "status":
            return status()
        elif args.command == "component":
            {"stop": stop_component, "start": start_component, "restart": restart_component}[
                args.action
            ](args.name)
        elif args.command == "env":
            if all(running().values()) and ENV_FILE.exists():
                print(ENV_FILE)
                return 0
            return 1
        elif args.command == "operator-env":
            if not (all(running().values()) and ENV_FILE.exists()):
                print("[cluster] the local cluster is not running", file=sys.stderr)
                return 1
            for key, value in operator_env().items():
                print(f"{key}={value}")
    except ClusterError as exc:
        print(f"[cluster] ERROR: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
