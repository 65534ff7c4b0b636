#!/usr/bin/env bash
# Everything Headwater's tests and demo need on a fresh Debian bookworm machine:
# Debian packages, the project's virtualenv, and the Kubernetes binaries
# (built once into ~/.cache/headwater, keyed by version). Idempotent and quick
# when nothing is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  # the local cluster's runtime and network
  containerd runc containernetworking-plugins iptables iproute2 conntrack
  # images and registries
  buildah skopeo docker-registry debootstrap busybox-static
  # source, certificates, compiling the pause image
  git openssl gcc libc6-dev ca-certificates curl
  # python
  python3-venv
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing Debian packages: ${missing[*]}"
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The Debian package starts no daemon here (no systemd), and we run our own
# containerd with its own config; nothing else to disable.

python=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  "$python" -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [[ ! -f $stamp ]]; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[dev]'
  rm -f .venv/.installed-*
  touch "$stamp"
fi

bash hack/cluster/build-binaries.sh
