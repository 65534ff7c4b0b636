"""Images the local cluster needs, made on this machine (nothing can be pulled).

Each image is built from a recipe into an OCI archive in the cache
(``~/.cache/headwater/images/<name>-<recipe hash>.tar``), so it is rebuilt only
when its recipe changes, and pushed to the local registry on every
``cluster-up`` that does not find it there already.

- ``pause``: the sandbox image, compiled from the ``pause.c`` that ships in the
  Kubernetes module, statically linked into a ``FROM scratch`` image.
- ``busybox``: Debian's static busybox with its applet links; small test pods.
- ``builder``: a minimal Debian rootfs (debootstrap) with buildah, runc and
  git, the image build Jobs run (their fetch step; and the opt-in buildah
  executor, which runs RUN steps under OCI isolation with runc). Configured
  for vfs storage, which needs no overlay mounts.
- ``python``: a minimal Debian rootfs with python3, venv and pip; the base of
  the operator's own Dockerfile.
- ``kaniko``: the kaniko executor (a maintained fork; upstream is archived),
  compiled statically from its Go module at a pinned version (the binary is
  cached under ``go-bin/`` by module@version) into a ``FROM scratch`` image laid
  out like upstream's: ``/kaniko/executor``, the host's CA bundle, and no shell.

Only the Python standard library is used: this runs before any venv exists.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from gobin import go_binary

DEBIAN_MIRROR = os.environ.get("HEADWATER_DEBIAN_MIRROR", "http://deb.debian.org/debian")
DEBIAN_SUITE = "bookworm"
PAUSE_VERSION = "3.10.1"  # what kubeadm pins for Kubernetes 1.35
# kaniko: GoogleContainerTools/kaniko is archived; Chainguard's fork is served by
# the Go module proxy by exact version (its version list is not). The go.sum line
# (h1: hash of the module zip) pins the source beyond the checksum database.
KANIKO_MODULE = "github.com/chainguard-dev/kaniko"
KANIKO_VERSION = "v1.25.6"
KANIKO_SUM = "h1:0FrfEhCxWi9yQtsy+hLr+zkusTqcWjenZiCb1jrhoe8="
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


@dataclass(frozen=True)
class ImageRecipe:
    """How one image is made; its JSON form is hashed into the cache key."""

    name: str
    tag: str
    kind: str  # "pause" | "busybox" | "debootstrap" | "kaniko"
    packages: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    files: tuple[tuple[str, str], ...] = ()  # (path in image, content)
    cmd: tuple[str, ...] = ()
    extra: dict[str, str] = field(default_factory=dict)
    entrypoint: tuple[str, ...] = ()

    @property
    def repository(self) -> str:
        return f"headwater/{self.name}"

    def cache_key(self) -> str:
        fields: dict[str, object] = {
            "name": self.name,
            "tag": self.tag,
            "kind": self.kind,
            "packages": self.packages,
            "env": self.env,
            "files": self.files,
            "cmd": self.cmd,
            "extra": self.extra,
            "suite": DEBIAN_SUITE,
            # Bump to force a rebuild when the build code below changes.
            "builder-code": 2,
        }
        if self.entrypoint:
            # Only when set, so the keys (and archives) of the other images stay as they were.
            fields["entrypoint"] = self.entrypoint
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


# buildah inside a pod: vfs needs no overlay mounts, chroot isolation needs no
# user namespaces; the storage lives in an emptyDir mounted at /var/lib/containers.
_BUILDER_STORAGE_CONF = """[storage]
driver = "vfs"
runroot = "/run/containers/storage"
graphroot = "/var/lib/containers/storage"
"""

RECIPES: dict[str, ImageRecipe] = {
    r.name: r
    for r in (
        ImageRecipe(name="pause", tag=PAUSE_VERSION, kind="pause", cmd=("/pause",)),
        ImageRecipe(name="busybox", tag="latest", kind="busybox", cmd=("sh",)),
        ImageRecipe(
            name="builder",
            # A new tag when the packages change: a cluster's registry that has the
            # tag already is not pushed to again (registry_has).
            tag="2",
            kind="debootstrap",
            # runc: the opt-in buildah executor runs RUN steps under OCI isolation.
            packages=("buildah", "runc", "git", "ca-certificates", "openssh-client", "netavark"),
            env=(("BUILDAH_ISOLATION", "chroot"), ("STORAGE_DRIVER", "vfs")),
            files=(("/etc/containers/storage.conf", _BUILDER_STORAGE_CONF),),
            cmd=("buildah", "--version"),
        ),
        ImageRecipe(
            name="python",
            tag="3.11",
            kind="debootstrap",
            packages=("python3", "python3-venv", "python3-pip", "ca-certificates"),
            cmd=("python3",),
        ),
        ImageRecipe(
            name="kaniko",
            tag=KANIKO_VERSION,
            kind="kaniko",
            env=(
                ("HOME", "/root"),
                ("USER", "root"),
                ("PATH", "/usr/local/bin:/kaniko"),
                ("SSL_CERT_DIR", "/kaniko/ssl/certs"),
                ("DOCKER_CONFIG", "/kaniko/.docker/"),
            ),
            # Go's resolver reads /etc/hosts first only when nsswitch says so.
            files=(("/etc/nsswitch.conf", "hosts: files dns\n"),),
            entrypoint=("/kaniko/executor",),
            extra={
                "module": KANIKO_MODULE,
                "version": KANIKO_VERSION,
                "sum": KANIKO_SUM,
                "package": "cmd/executor",
            },
        ),
    )
}


def log(msg: str) -> None:
    print(f"[images] {msg}", flush=True)


def run(cmd: list[str], **kw: object) -> None:
    subprocess.run(cmd, check=True, **kw)  # type: ignore[call-overload]


def buildah_base(cache: Path) -> list[str]:
    """buildah with storage of its own under the cache, not the machine's."""
    root = cache / "buildah"
    return [
        "buildah",
        "--root",
        str(root / "storage"),
        "--runroot",
        str(root / "run"),
        "--storage-driver",
        "vfs",
    ]


def archive_path(cache: Path, recipe: ImageRecipe) -> Path:
    return cache / "images" / f"{recipe.name}-{recipe.cache_key()}.tar"


def _pause_source() -> Path:
    """pause.c from the Kubernetes module already downloaded by build-binaries.sh."""
    version = os.environ.get("K8S_VERSION", "v1.35.4")
    modcache = subprocess.run(
        ["go", "env", "GOMODCACHE"], check=True, capture_output=True, text=True
    ).stdout.strip()
    src = Path(modcache) / f"k8s.io/kubernetes@{version}/build/pause/linux/pause.c"
    if not src.exists():
        run(["go", "mod", "download", f"k8s.io/kubernetes@{version}"], cwd=tempfile.gettempdir())
    return src


def _make_rootfs(recipe: ImageRecipe, rootfs: Path, cache: Path) -> None:
    if recipe.kind == "pause":
        run(
            [
                "gcc",
                "-Os",
                "-static",
                "-Wall",
                "-Werror",
                f"-DVERSION=v{PAUSE_VERSION}-headwater",
                "-o",
                str(rootfs / "pause"),
                str(_pause_source()),
            ]
        )
    elif recipe.kind == "busybox":
        busybox = shutil.which("busybox") or "/bin/busybox"
        (rootfs / "bin").mkdir(parents=True)
        shutil.copy2(busybox, rootfs / "bin" / "busybox")
        applets = subprocess.run(
            [busybox, "--list"], check=True, capture_output=True, text=True
        ).stdout.split()
        for applet in applets:
            if applet != "busybox":
                (rootfs / "bin" / applet).symlink_to("busybox")
        for d in ("tmp", "etc", "root"):
            (rootfs / d).mkdir(exist_ok=True)
        (rootfs / "tmp").chmod(0o1777)
        (rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
        (rootfs / "etc" / "group").write_text("root:x:0:\n")
    elif recipe.kind == "debootstrap":
        run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(recipe.packages)}",
                DEBIAN_SUITE,
                str(rootfs),
                DEBIAN_MIRROR,
            ],
            stdout=subprocess.DEVNULL,
        )
        # apt caches and lists only make the image bigger.
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            target = rootfs / junk
            if target.exists():
                for child in target.iterdir():
                    if child.is_file():
                        child.unlink()
    elif recipe.kind == "kaniko":
        extra = recipe.extra
        binary = go_binary(
            cache,
            extra["module"],
            extra["version"],
            extra["sum"],
            extra["package"],
            version_var="pkg/version.version",
        )
        kaniko = rootfs / "kaniko"
        (kaniko / "ssl" / "certs").mkdir(parents=True)
        (kaniko / ".docker").mkdir()
        shutil.copy2(binary, kaniko / "executor")
        shutil.copyfile(HOST_CA_BUNDLE, kaniko / "ssl" / "certs" / "ca-certificates.crt")
        # As upstream: any user may write its stages and config there.
        kaniko.chmod(0o777)
    else:
        raise ValueError(f"unknown image kind {recipe.kind!r}")
    for path, content in recipe.files:
        target = rootfs / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)


def build_archive(cache: Path, recipe: ImageRecipe) -> Path:
    """Build the image into its cached OCI archive unless the archive exists."""
    target = archive_path(cache, recipe)
    if target.exists():
        return target
    log(f"building {recipe.name}:{recipe.tag} (recipe {recipe.cache_key()})")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"hw-image-{recipe.name}-") as tmp:
        ctx = Path(tmp)
        rootfs = ctx / "rootfs"
        rootfs.mkdir()
        _make_rootfs(recipe, rootfs, cache)
        lines = ["FROM scratch", "COPY rootfs/ /"]
        lines += [f"ENV {k}={v}" for k, v in recipe.env]
        if recipe.entrypoint:
            lines.append(f"ENTRYPOINT {json.dumps(list(recipe.entrypoint))}")
        if recipe.cmd:
            lines.append(f"CMD {json.dumps(list(recipe.cmd))}")
        (ctx / "Containerfile").write_text("\n".join(lines) + "\n")
        local = f"localhost/headwater-{recipe.name}:{recipe.cache_key()}"
        buildah = buildah_base(cache)
        run(
            [
                *buildah,
                "bud",
                "--isolation",
                "chroot",
                "--layers=false",
                "-t",
                local,
                "-f",
                str(ctx / "Containerfile"),
                str(ctx),
            ],
            stdout=subprocess.DEVNULL,
        )
        partial = target.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        run([*buildah, "push", "--quiet", local, f"oci-archive:{partial}:{recipe.tag}"])
        run([*buildah, "rmi", local], stdout=subprocess.DEVNULL)
        partial.rename(target)
    # Old archives of the same image are dead weight once a new recipe built.
    for old in target.parent.glob(f"{recipe.name}-*.tar"):
        if old != target:
            old.unlink()
    return target


def registry_has(registry: str, recipe: ImageRecipe) -> bool:
    result = subprocess.run(
        [
            "skopeo",
            "inspect",
            "--raw",
            "--tls-verify=false",
            f"docker://{registry}/{recipe.repository}:{recipe.tag}",
        ],
        capture_output=True,
    )
    return result.returncode == 0


def ensure_images(cache: Path, registry: str, names: list[str] | None = None) -> dict[str, str]:
    """Build (if needed) and push (if missing) images; return name -> pull reference."""
    refs: dict[str, str] = {}
    for name in names or list(RECIPES):
        recipe = RECIPES[name]
        ref = f"{registry}/{recipe.repository}:{recipe.tag}"
        archive = build_archive(cache, recipe)
        if not registry_has(registry, recipe):
            log(f"pushing {ref}")
            run(
                [
                    "skopeo",
                    "copy",
                    "--quiet",
                    "--dest-tls-verify=false",
                    f"oci-archive:{archive}",
                    f"docker://{ref}",
                ]
            )
        refs[name] = ref
    return refs


def main(argv: list[str]) -> int:
    cache = Path(os.environ.get("HEADWATER_CACHE", Path.home() / ".cache/headwater"))
    names = argv or list(RECIPES)
    for name in names:
        if name not in RECIPES:
            print(f"unknown image {name!r}; known: {', '.join(RECIPES)}", file=sys.stderr)
            return 2
        print(build_archive(cache, RECIPES[name]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
