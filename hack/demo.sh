#!/usr/bin/env bash
# The seed's flow on the local cluster, as far as Headwater implements it today:
# start the cluster, build the operator image from the Dockerfile, install
# Headwater from deploy/install.yaml (image and registry pointed at the local
# ones), create the seed's ImageStream and BuildConfig (apiVersion changed,
# nothing else) in `shop-staging`, and show them as `oc get` would, with the
# status the operator wrote. Imports, builds and triggers join as they land.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "Starting the local cluster (first run builds binaries and images; later runs take seconds)"
env_file=$(python3 hack/cluster/localcluster.py up | tail -n 1)
set -a; source "$env_file"; set +a
k() { "$KUBECTL" "$@"; }

step "Building the operator image from the Dockerfile with buildah"
image=$(bash hack/operator-image.sh "$env_file")
echo "$image"

step "Installing Headwater: kubectl apply -f deploy/install.yaml (image and registry set)"
.venv/bin/python hack/render_install.py --image "$image" --registry "$REGISTRY" --insecure \
  --builder-image "$HEADWATER_BUILDER_IMAGE" | k apply --server-side --force-conflicts -f -
k -n headwater-system scale deploy/headwater-operator --replicas=1
k -n headwater-system rollout status deploy/headwater-operator --timeout=180s

step "The seed's ImageStream and BuildConfig"
k create namespace shop-staging --dry-run=client -o yaml | k apply -f -
k apply -f examples/seed/
step "oc get imagestream  ->  kubectl get is"
k -n shop-staging get is
step "oc get buildconfig  ->  kubectl get bc"
k -n shop-staging get bc
step "The operator saw them: status.observedGeneration and the Ready condition"
k -n shop-staging wait --for=jsonpath='{.status.observedGeneration}'=1 --timeout=60s is/web bc/web
k -n shop-staging get is/web -o jsonpath='{range .status.conditions[*]}{.type}={.status} ({.reason}): {.message}{"\n"}{end}'
step "Admission rejects a bad manifest, naming the field"
k -n shop-staging apply --dry-run=server -f tests/crds/invalid/01-*.yaml || true
cat <<MSG

The cluster keeps running (KUBECONFIG and REGISTRY are in $env_file);
\`make cluster-down\` stops it.
MSG
