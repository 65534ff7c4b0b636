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
  # the console's browser tests (Playwright drives Debian's Chromium; no browser download)
  chromium
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

# axe-core, the accessibility checker the console's browser tests run in the page:
# from the npm registry into a cache outside the checkout (never vendored, never
# served by the console). Node.js and npm come with the machine.
axe_version=4.10.3
axe_dir=${XDG_CACHE_HOME:-$HOME/.cache}/headwater/axe-core/$axe_version
if [[ ! -f $axe_dir/axe.min.js ]]; then
  # Not fatal here: without it only the console's browser tests fail, saying why.
  tmp=$(mktemp -d)
  if command -v npm >/dev/null &&
    (cd "$tmp" && npm pack --silent "axe-core@$axe_version" >/dev/null) &&
    tar -xzf "$tmp/axe-core-$axe_version.tgz" -C "$tmp"; then
    mkdir -p "$axe_dir"
    cp "$tmp/package/axe.min.js" "$tmp/package/LICENSE" "$axe_dir/"
  else
    echo "axe-core $axe_version not fetched (npm pack failed or no npm):" \
      "the console's accessibility checks will fail" >&2
  fi
  rm -rf "$tmp"
fi

bash hack/cluster/build-binaries.sh
