#!/usr/bin/env bash
# Build the operator image from the repo's Dockerfile with buildah (no Docker
# engine here) on top of the locally made Python base image, push it to the
# local registry and print the pushed reference pinned by digest.
#
#   hack/operator-image.sh [ENV_FILE]     # default: the running local cluster's
set -euo pipefail
cd "$(dirname "$0")/.."
env_file=${1:-$(python3 hack/cluster/localcluster.py env)} || {
  echo "operator-image: the local cluster is not running (make cluster-up)" >&2; exit 1; }
set -a; source "$env_file"; set +a

storage=${HEADWATER_CACHE:-$HOME/.cache/headwater}/buildah-operator
buildah=(buildah --root "$storage/storage" --runroot "$storage/run" --storage-driver vfs)
ref="$REGISTRY/headwater/operator:dev"
# pip inside the build reaches PyPI; where a TLS-intercepting proxy sits in
# between, the system CA bundle (which trusts it) goes in as a build secret,
# kept out of every layer.
secret=()
ca=${PIP_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
[[ -f $ca ]] && secret=(--secret "id=pip-ca,src=$ca")
"${buildah[@]}" bud --quiet --isolation chroot --tls-verify=false --layers \
  --build-arg "BASE_IMAGE=$HEADWATER_PYTHON_IMAGE" "${secret[@]}" -t "$ref" . >&2
digestfile=$(mktemp)
trap 'rm -f "$digestfile"' EXIT
"${buildah[@]}" push --quiet --tls-verify=false --digestfile "$digestfile" "$ref" >&2
echo "$REGISTRY/headwater/operator@$(cat "$digestfile")"
