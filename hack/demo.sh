#!/usr/bin/env bash
# The seed's flow on the local cluster, as far as Headwater implements it today:
# start the cluster, build the operator image from the Dockerfile, install
# Headwater from deploy/install.yaml (image and registry pointed at the local
# ones), then the seed's story as far as it is implemented: the BuildConfig
# (apiVersion changed), a CI-style push imported into the seed's ImageStream,
# an alias that follows it, a second push imported with `headwater
# import-image`, and a promotion with `headwater tag`. Builds, triggers and the
# rest of the CLI join as their issues land.
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

step "The seed's BuildConfig (apiVersion changed, nothing else)"
k create namespace shop-staging --dry-run=client -o yaml | k apply -f -
k apply -f examples/seed/buildconfig-web.yaml
k -n shop-staging get bc

step "\"When to skip in-cluster builds\": CI pushes shop/web:1.2.0 to the registry"
cache=${HEADWATER_CACHE:-$HOME/.cache/headwater}/images
copy() { skopeo copy --quiet --dest-tls-verify=false "oci-archive:$1" "docker://$REGISTRY/shop/web:1.2.0"; }
copy "$(ls "$cache"/busybox-*.tar | head -n 1)"
echo "pushed $REGISTRY/shop/web:1.2.0"

step "The seed's ImageStream, pointed at that registry: 1.2.0 imported on schedule, latest an alias"
sed -e "s|registry.example.com/shop/web:1.2.0|$REGISTRY/shop/web:1.2.0|" \
    -e 's|      scheduled: true|      scheduled: true\n      insecure: true|' \
    examples/seed/imagestream-web.yaml | k apply -f -
k -n shop-staging patch is/web --type=json -p '[{"op": "add", "path": "/spec/tags/-", "value":
  {"name": "latest", "from": {"kind": "ImageStreamTag", "name": "web:1.2.0"}}}]'
k -n shop-staging wait --for=condition=Ready --timeout=60s is/web
k -n shop-staging get is
k -n shop-staging get is/web -o jsonpath='{range .status.tags[*]}{.tag}	{.items[0].dockerImageReference}{"\n"}{end}'

step "CI pushes again under the same tag; oc import-image -> headwater import-image"
copy "$(ls "$cache"/pause-*.tar | head -n 1)"
hw() { .venv/bin/headwater "$@" --kubeconfig "$KUBECONFIG" -n shop-staging; }
hw import-image web:1.2.0 --insecure

step "Promotion without a rebuild: oc tag web:1.2.0 web:prod -> headwater tag (pinned by digest)"
hw tag web:1.2.0 web:prod
k -n shop-staging wait --for=condition=Ready --timeout=60s is/web
echo "each tag, newest image first (latest follows 1.2.0; prod is pinned to its image):"
k -n shop-staging get is/web -o jsonpath='{range .status.tags[*]}{.tag}:{"\n"}{range .items[*]}  {.created}  {.image}{"\n"}{end}{end}'

step "Admission rejects a bad manifest, naming the field"
k -n shop-staging apply --dry-run=server -f tests/crds/invalid/01-*.yaml || true
cat <<MSG

The cluster keeps running (KUBECONFIG and REGISTRY are in $env_file);
\`make cluster-down\` stops it.
MSG
