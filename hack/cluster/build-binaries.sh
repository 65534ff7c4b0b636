#!/usr/bin/env bash
# Build etcd and the Kubernetes binaries from the Go module proxy into a cache
# outside the checkout, keyed by version. A second run with the same versions
# is a no-op, so CI and later sessions pay the cold build (20-45 min) once.
#
# k8s.io/kubernetes cannot be `go install`ed: its go.mod replaces every staging
# module with ./staging/... paths. We build it from a wrapper module that
# requires k8s.io/kubernetes and replaces each staging module with its
# published v0.<minor>.<patch> twin, deriving the list from the release's own
# go.mod so a version bump needs no hand edits.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

out="$HEADWATER_CACHE/k8s/$K8S_VERSION/bin"
k8s_cmds=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)

have_all() {
  local b
  for b in "${k8s_cmds[@]}" etcd; do
    [[ -x "$out/$b" ]] || return 1
  done
  [[ -f "$out/.etcd-$ETCD_VERSION" ]]
}

if have_all; then
  echo "binaries for $K8S_VERSION / etcd $ETCD_VERSION already cached in $out"
  exit 0
fi

mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false

fail() {
  echo "build-binaries: $*" >&2
  echo "build-binaries: FAILED; nothing was written to $out for the failing step" >&2
  exit 1
}

# --- Kubernetes -------------------------------------------------------------
minor_patch=${K8S_VERSION#v1.}             # 35.4
staging_version="v0.$minor_patch"           # v0.35.4
major_minor=${K8S_VERSION#v}; major=${major_minor%%.*}
minor=$(echo "$K8S_VERSION" | cut -d. -f2)

mkdir -p "$work/k8s"
cd "$work/k8s"
gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])') \
  || fail "could not download k8s.io/kubernetes@$K8S_VERSION from the Go module proxy"
go_line=$(awk '/^go /{print $2; exit}' "$gomod")
mapfile -t staging < <(grep -oE '^\s*k8s\.io/[a-z0-9-]+ => \./staging/src/k8s\.io/[a-z0-9-]+' "$gomod" | awk '{print $1}')
[[ ${#staging[@]} -gt 20 ]] || fail "found only ${#staging[@]} staging modules in $gomod"
echo "k8s $K8S_VERSION: go $go_line, ${#staging[@]} staging modules pinned to $staging_version"

{
  echo "module headwater.local/k8s-binaries"
  echo
  echo "go $go_line"
  echo
  echo "require k8s.io/kubernetes $K8S_VERSION"
  echo
  echo "replace ("
  for m in "${staging[@]}"; do echo "	$m => $m $staging_version"; done
  echo ")"
} > go.mod
{
  echo "//go:build tools"
  echo
  echo "package tools"
  echo
  echo "import ("
  for c in "${k8s_cmds[@]}"; do echo "	_ \"k8s.io/kubernetes/cmd/$c\""; done
  echo ")"
} > tools.go
go mod tidy >/dev/null || fail "go mod tidy failed for the Kubernetes wrapper module"

build_date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
done
pkgs=()
for c in "${k8s_cmds[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
echo "building ${k8s_cmds[*]} (cold: 20-45 min on 2 cores)"
start=$SECONDS
go build -trimpath -ldflags "$ldflags" -o "$work/bin/" "${pkgs[@]}" || fail "go build of Kubernetes $K8S_VERSION failed"
echo "kubernetes built in $((SECONDS - start)) s"

# --- etcd -------------------------------------------------------------------
mkdir -p "$work/etcd"
cd "$work/etcd"
cat > go.mod <<MOD
module headwater.local/etcd-binary

go 1.24

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
MOD
printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' > tools.go
go mod tidy >/dev/null || fail "go mod tidy failed for etcd $ETCD_VERSION"
start=$SECONDS
go build -trimpath -ldflags "-s -w" -o "$work/bin/etcd" go.etcd.io/etcd/server/v3 || fail "go build of etcd $ETCD_VERSION failed"
echo "etcd built in $((SECONDS - start)) s"

# Move into the cache only after everything built, so a half build is never
# mistaken for a cached one.
for b in "${k8s_cmds[@]}" etcd; do mv -f "$work/bin/$b" "$out/$b"; done
touch "$out/.etcd-$ETCD_VERSION"
"$out/kube-apiserver" --version
"$out/etcd" --version | head -1
echo "binaries cached in $out"
