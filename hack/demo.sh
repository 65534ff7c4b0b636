#!/usr/bin/env bash
# The seed's story on the local cluster, with the `headwater` CLI:
#
#   cluster and registry up -> Headwater installed from deploy/install.yaml
#   (its image built here) -> a builder image like the seed's nodejs-20 ->
#   the seed's ImageStream and BuildConfig (apiVersion changed; the Git URL
#   pointed at a repository on this machine) -> the ConfigChange build ->
#   a Deployment that follows web:latest through image.openshift.io/triggers
#   -> a new commit, `start-build --follow`, a new rollout -> a CI-built image
#   imported -> promotion to shop-prod without a rebuild -> describe istag.
#
# Idempotent: a second run reuses what is there and moves on.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
show() { printf '\033[2m$ %s\033[0m\n' "$*"; }

step "Starting the local cluster (first run builds binaries and images; later runs take seconds)"
env_file=$(python3 hack/cluster/localcluster.py up | tail -n 1)
set -a; source "$env_file"; set +a
k() { "$KUBECTL" "$@"; }
hw() { .venv/bin/headwater "$@" --kubeconfig "$KUBECONFIG"; }
work=$(mktemp -d /tmp/headwater-demo-XXXXXX)
trap 'rm -rf "$work"' EXIT

step "Building the operator image from the Dockerfile with buildah"
image=$(bash hack/operator-image.sh "$env_file")
echo "$image"

step "Installing Headwater: kubectl apply -f deploy/install.yaml (image and registry set)"
.venv/bin/python hack/render_install.py --image "$image" --registry "$REGISTRY" --insecure \
  --builder-image "$HEADWATER_BUILDER_IMAGE" ${HEADWATER_KANIKO_IMAGE:+--kaniko-image "$HEADWATER_KANIKO_IMAGE"} | k apply --server-side --force-conflicts -f -
k -n headwater-system scale deploy/headwater-operator --replicas=1
k -n headwater-system rollout status deploy/headwater-operator --timeout=180s
for ns in openshift shop-staging shop-prod; do
  k create namespace "$ns" --dry-run=client -o yaml | k apply -f - >/dev/null
done

step "A builder image like the seed's nodejs-20 (S2I scripts, made here: no registry is reachable)"
mkdir -p "$work/builder/s2i"
cat > "$work/builder/s2i/assemble" <<'SH'
#!/bin/sh
set -e
echo "---> Installing the application from /tmp/src"
cp -R /tmp/src/. /opt/app/
echo "---> Done: $(ls /opt/app | wc -l) files"
SH
cat > "$work/builder/s2i/run" <<'SH'
#!/bin/sh
echo "serving /opt/app on :8080"
exec httpd -f -p 8080 -h /opt/app
SH
cat > "$work/builder/Dockerfile" <<EOF
FROM $HEADWATER_BUSYBOX_IMAGE
COPY s2i/ /usr/libexec/s2i/
RUN chmod 755 /usr/libexec/s2i/* && mkdir -p /opt/app && chown 1001:0 /opt/app
LABEL io.openshift.s2i.scripts-url="image:///usr/libexec/s2i"
USER 1001
EOF
store=(--root "$work/storage" --runroot "$work/run" --storage-driver vfs)
buildah "${store[@]}" bud --quiet --isolation chroot --layers=false --tls-verify=false \
  -t "$REGISTRY/openshift/nodejs-20:latest" "$work/builder" >/dev/null
buildah "${store[@]}" push --quiet --tls-verify=false "$REGISTRY/openshift/nodejs-20:latest"
show "headwater import-image nodejs-20:latest --from=$REGISTRY/openshift/nodejs-20:latest --confirm --insecure -n openshift"
hw import-image nodejs-20:latest --from="$REGISTRY/openshift/nodejs-20:latest" --confirm --insecure -n openshift
# OpenShift lets every service account pull the builder images of the shared
# namespace "openshift"; on Headwater that is an explicit grant there.
show "kubectl -n openshift create rolebinding shared-builders --clusterrole=headwater-image-puller --group=system:serviceaccounts"
k -n openshift create rolebinding shared-builders --clusterrole=headwater-image-puller \
  --group=system:serviceaccounts --dry-run=client -o yaml | k apply -f - >/dev/null

step "The shop's web app in a Git repository served on this machine"
repo="$HEADWATER_GIT_ROOT/shop-web.git"
if [ ! -d "$repo" ]; then
  git init -q -b main "$work/src"
  echo '<h1>shop web v1</h1>' > "$work/src/index.html"
  git -C "$work/src" add . && git -C "$work/src" -c user.name=Dev -c user.email=dev@shop.example commit -qm "First page"
  git clone -q --bare "$work/src" "$repo"
fi
echo "$HEADWATER_GIT_DAEMON/shop-web.git"

step "The seed's ImageStream and BuildConfig (apiVersion changed; Git URL pointed at that repository)"
sed -e "s|registry.example.com/shop/web:1.2.0|$REGISTRY/shop/web:1.2.0|" \
    -e 's|      scheduled: true|      scheduled: true\n      insecure: true|' \
    examples/seed/imagestream-web.yaml | k apply -f -
sed -e "s|https://github.com/example/shop-web.git|$HEADWATER_GIT_DAEMON/shop-web.git|" \
    examples/seed/buildconfig-web.yaml | k apply -f -
k -n shop-staging get bc web

step "The ConfigChange trigger started build web-1: its log, from clone to push"
show "headwater logs -f bc/web -n shop-staging"
until k -n shop-staging get build web-1 >/dev/null 2>&1; do sleep 0.5; done
hw logs -f bc/web --version 1 -n shop-staging
k -n shop-staging wait --for=jsonpath='{.status.phase}'=Complete build/web-1 --timeout=300s
k -n shop-staging get builds

step "A Deployment that follows web:latest (image.openshift.io/triggers, OpenShift's format)"
deployment() {  # namespace, image stream tag
  cat <<EOF
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: $1
  annotations:
    image.openshift.io/triggers: '[{"from":{"kind":"ImageStreamTag","name":"$2"},"fieldPath":"spec.template.spec.containers[?(@.name==\"web\")].image"}]'
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      automountServiceAccountToken: false
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: " "
        ports: [{containerPort: 8080}]
EOF
}
deployment shop-staging web:latest | k apply -f -
page() {  # namespace: wait for the rollout, then fetch the page from the pod
  k -n "$1" rollout status deploy/web --timeout=180s >/dev/null
  k -n "$1" get deploy/web -o jsonpath='image: {.spec.template.spec.containers[0].image}{"\n"}'
  k -n "$1" exec deploy/web -- wget -qO- localhost:8080
}
until [ "$(k -n shop-staging get deploy/web -o jsonpath='{.spec.template.spec.containers[0].image}')" != " " ]; do sleep 0.3; done
page shop-staging

step "A new commit; headwater start-build web --follow; the Deployment rolls out by itself"
git clone -q "$repo" "$work/clone"
echo "<h1>shop web v2 ($(date +%H:%M:%S))</h1>" > "$work/clone/index.html"
git -C "$work/clone" -c user.name=Dev -c user.email=dev@shop.example commit -qam "New front page"
git -C "$work/clone" push -q origin main
show "headwater start-build web --follow -n shop-staging"
hw start-build web --follow -n shop-staging
sleep 1
page shop-staging

step "\"When to skip in-cluster builds\": CI pushed shop/web:1.2.0; oc import-image -> headwater import-image"
cache=${HEADWATER_CACHE:-$HOME/.cache/headwater}/images
skopeo copy --quiet --dest-tls-verify=false "oci-archive:$(ls "$cache"/busybox-*.tar | head -n 1)" \
  "docker://$REGISTRY/shop/web:1.2.0"
show "headwater import-image web:1.2.0 --insecure -n shop-staging"
hw import-image web:1.2.0 --insecure -n shop-staging

step "Promotion to shop-prod without a rebuild: headwater tag (pinned by digest)"
# shop-prod's service accounts may read shop-staging's images (oc policy add-role-to-group
# system:image-puller in OpenShift).
k -n shop-staging create rolebinding shop-prod-pulls --clusterrole=headwater-view \
  --group=system:serviceaccounts:shop-prod --dry-run=client -o yaml | k apply -f - >/dev/null
k -n shop-prod apply -f - >/dev/null <<EOF
apiVersion: image.headwater.dev/v1
kind: ImageStream
metadata: {name: web}
EOF
show "headwater tag shop-staging/web:latest shop-prod/web:prod"
hw tag shop-staging/web:latest shop-prod/web:prod
deployment shop-prod web:prod | k apply -f -
until [ "$(k -n shop-prod get deploy/web -o jsonpath='{.spec.template.spec.containers[0].image}')" != " " ]; do sleep 0.3; done
page shop-prod

step "headwater describe istag web:latest (read from the registry)"
hw describe istag web:latest -n shop-staging

cat <<MSG

Done. The cluster keeps running (KUBECONFIG and REGISTRY are in $env_file).
Try next:
  export KUBECONFIG=$KUBECONFIG
  .venv/bin/headwater start-build web --follow -n shop-staging
  .venv/bin/headwater logs -f bc/web -n shop-staging
  .venv/bin/headwater tag web:1.2.0 web:latest -n shop-staging     # the Deployment follows
  $KUBECTL get is,bc,builds -n shop-staging
\`make cluster-down\` stops everything.

The web console (builds and their logs live, tag histories, the trace from commit to rollout):
  .venv/bin/headwater console -n shop-staging
MSG
