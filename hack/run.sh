#!/usr/bin/env bash
# `make run`: the operator in the foreground, as one more replica.
#
# On the local cluster when it runs (its kubeconfig, registry, build images and
# admission address), else on the cluster $KUBECONFIG names. The cluster-scoped
# part of deploy/install.yaml is applied first (the CRDs, the operator's
# namespace where its leader Lease lives, the aggregated user roles such as
# headwater-view), so `make cluster-up && make run` is the whole operator: it
# serves the admission webhooks, the build webhooks and registry notifications
# as the installed one does. An in-cluster operator, if installed, keeps the
# Lease and this process stands by until it goes away.
#
# Any HEADWATER_* variable already set wins over what the local cluster gives.
set -euo pipefail
cd "$(dirname "$0")/.."
kubectl=kubectl
if env_file=$(python3 hack/cluster/localcluster.py env 2>/dev/null); then
  export KUBECONFIG=$(sed -n 's/^KUBECONFIG=//p' "$env_file")
  kubectl=$(sed -n 's/^KUBECTL=//p' "$env_file")
  while IFS='=' read -r key value; do
    [[ -n ${!key:-} ]] || export "$key=$value"
  done < <(python3 hack/cluster/localcluster.py operator-env)
  echo "run: the local cluster ($env_file)" >&2
elif [[ -z ${KUBECONFIG:-} && ! -f $HOME/.kube/config ]]; then
  echo "run: no cluster: start the local one (make cluster-up) or set KUBECONFIG" >&2
  exit 1
fi
# The CRDs, namespaces and cluster roles of the install bundle; not its
# namespaced objects (an installed operator's ConfigMap stays as its admin set it).
.venv/bin/python hack/render_install.py --cluster-scoped |
  "$kubectl" apply --server-side --force-conflicts -f - >/dev/null
if [[ -z ${HEADWATER_ADMISSION_HOST:-} ]]; then
  echo "run: admission webhooks off (set HEADWATER_ADMISSION_HOST to an address of this" \
    "machine the API server reaches): lookupPolicy.local is not applied" >&2
fi
exec .venv/bin/headwater operator run --all-namespaces "$@"
