#!/usr/bin/env bash
# `make run`: the operator in the foreground, as one more replica.
#
# On the local cluster when it runs (its kubeconfig and registry), else on the
# cluster $KUBECONFIG names. The CRDs and the operator's namespace (where its
# leader Lease lives) are applied first, so `make cluster-up && make run` is
# all it takes; an in-cluster operator, if installed, keeps the Lease and this
# process stands by until it goes away.
set -euo pipefail
cd "$(dirname "$0")/.."
kubectl=kubectl
if env_file=$(python3 hack/cluster/localcluster.py env 2>/dev/null); then
  value() { sed -n "s/^$1=//p" "$env_file"; }
  export KUBECONFIG=$(value KUBECONFIG)
  export HEADWATER_REGISTRY=${HEADWATER_REGISTRY:-$(value REGISTRY)}
  export HEADWATER_REGISTRY_INSECURE=${HEADWATER_REGISTRY_INSECURE:-true}
  kubectl=$(value KUBECTL)
  echo "run: the local cluster ($env_file)" >&2
elif [[ -z ${KUBECONFIG:-} && ! -f $HOME/.kube/config ]]; then
  echo "run: no cluster: start the local one (make cluster-up) or set KUBECONFIG" >&2
  exit 1
fi
"$kubectl" apply --server-side --force-conflicts -f crds -f deploy/base/namespace.yaml >/dev/null
exec .venv/bin/headwater operator run --all-namespaces "$@"
