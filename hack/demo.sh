#!/usr/bin/env bash
# The seed's flow on the local cluster, as far as Headwater implements it today:
# start the cluster, install the CRDs, create the seed's ImageStream and
# BuildConfig (apiVersion changed, nothing else) in `shop-staging`, and show
# them as `oc get` would. The operator joins this demo when its issue lands.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "Starting the local cluster (first run builds binaries and images; later runs take seconds)"
env_file=$(python3 hack/cluster/localcluster.py up | tail -n 1)
set -a; source "$env_file"; set +a
k() { "$KUBECTL" "$@"; }

step "Installing Headwater's CRDs: kubectl apply -f crds/"
k apply --server-side -f crds/
k wait --for=condition=Established --timeout=60s crd/imagestreams.image.headwater.dev \
  crd/buildconfigs.build.headwater.dev crd/builds.build.headwater.dev

step "The seed's ImageStream and BuildConfig"
k create namespace shop-staging --dry-run=client -o yaml | k apply -f -
k apply -f examples/seed/
step "oc get imagestream  ->  kubectl get is"
k -n shop-staging get is
step "oc get buildconfig  ->  kubectl get bc"
k -n shop-staging get bc
step "Admission rejects a bad manifest, naming the field"
k -n shop-staging apply --dry-run=server -f tests/crds/invalid/01-*.yaml || true
cat <<MSG

The cluster keeps running (KUBECONFIG and REGISTRY are in $env_file);
\`make cluster-down\` stops it.
MSG
