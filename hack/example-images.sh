#!/usr/bin/env bash
# Push the small images the docs' runnable examples use to the local registry:
#   $REGISTRY/examples/hello:1.0 and :2.0 (busybox, made on this machine; two
#   digests, so that a tag can move). Idempotent. Needs the local cluster
#   (`make cluster-up`) or REGISTRY set to a plain-HTTP registry.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z ${REGISTRY:-} ]]; then
  env_file=$(python3 hack/cluster/localcluster.py env) || {
    echo "example-images: no local cluster: make cluster-up, or set REGISTRY" >&2
    exit 1
  }
  REGISTRY=$(sed -n 's/^REGISTRY=//p' "$env_file")
fi
cache=${HEADWATER_CACHE:-$HOME/.cache/headwater}/images
busybox=$(ls "$cache"/busybox-*.tar 2>/dev/null | head -n 1)
[[ -n $busybox ]] || { echo "example-images: no busybox image in $cache (make cluster-up)" >&2; exit 1; }
work=$(mktemp -d)
trap 'buildah --root "$work/storage" --runroot "$work/run" --storage-driver vfs rm -a >/dev/null 2>&1; rm -rf "$work"' EXIT
store=(--root "$work/storage" --runroot "$work/run" --storage-driver vfs)
for version in 1.0 2.0; do
  container=$(buildah "${store[@]}" from --quiet "oci-archive:$busybox")
  buildah "${store[@]}" config --label "org.opencontainers.image.version=$version" \
    --cmd '["sleep", "3600"]' "$container"
  buildah "${store[@]}" commit --quiet "$container" "$REGISTRY/examples/hello:$version" >/dev/null
  buildah "${store[@]}" push --quiet --tls-verify=false "$REGISTRY/examples/hello:$version"
  echo "$REGISTRY/examples/hello:$version"
done
