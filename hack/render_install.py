#!/usr/bin/env python3
"""Print deploy/install.yaml pointed at a given operator image and registry.

deploy/install.yaml names a placeholder image and leaves the output registry
empty, as a real install would before an admin fills them in. The demo and the
e2e tests install the same file on the local cluster with three things
changed, and nothing else:

- the operator container's image (the one hack/operator-image.sh pushed);
- ``registry``/``registryInsecure`` in the operator's ConfigMap (the local,
  plain-HTTP registry);
- ``builderImage`` and ``kanikoImage`` in that ConfigMap (the locally made
  builder and kaniko images).

    python hack/render_install.py --image REF [--registry HOST:PORT [--insecure]]
        [--builder-image REF] [--kaniko-image REF] | kubectl apply -f -
    python hack/render_install.py --cluster-scoped | kubectl apply -f -

``--cluster-scoped`` prints only the cluster-scoped objects (the CRDs, the
namespace, cluster roles and their bindings): what ``make run`` applies so
that an operator running outside the cluster finds what the install gives.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

INSTALL = Path(__file__).resolve().parents[1] / "deploy" / "install.yaml"
OPERATOR_DEPLOYMENT = "headwater-operator"
OPERATOR_CONTAINER = "operator"
CONFIG_MAP = "headwater-config"
CONFIG_KEY = "config.yaml"


class RenderError(ValueError):
    """install.yaml does not have the shape this script edits."""


def render(
    docs: Sequence[dict[str, Any]],
    *,
    image: str,
    registry: str | None = None,
    insecure: bool = False,
    builder_image: str | None = None,
    kaniko_image: str | None = None,
) -> list[dict[str, Any]]:
    """The install documents with the operator image and configuration replaced."""
    out = [yaml.safe_load(yaml.safe_dump(doc)) for doc in docs]  # deep copy
    deployment = _one(out, "Deployment", OPERATOR_DEPLOYMENT)
    containers = deployment["spec"]["template"]["spec"]["containers"]
    operator = next((c for c in containers if c.get("name") == OPERATOR_CONTAINER), None)
    if operator is None:
        raise RenderError(f"Deployment {OPERATOR_DEPLOYMENT} has no container {OPERATOR_CONTAINER}")
    operator["image"] = image

    config_map = _one(out, "ConfigMap", CONFIG_MAP)
    config = yaml.safe_load(config_map["data"][CONFIG_KEY]) or {}
    if registry is not None:
        config["registry"] = registry
        config["registryInsecure"] = insecure
    if builder_image is not None:
        config["builderImage"] = builder_image
    if kaniko_image is not None:
        config["kanikoImage"] = kaniko_image
    config_map["data"][CONFIG_KEY] = yaml.safe_dump(config, sort_keys=False)
    return out


CLUSTER_SCOPED_KINDS = frozenset(
    {
        "CustomResourceDefinition",
        "Namespace",
        "ClusterRole",
        "ClusterRoleBinding",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    }
)


def cluster_scoped(docs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The install's cluster-scoped objects, which an operator run elsewhere still needs."""
    return [doc for doc in docs if doc.get("kind") in CLUSTER_SCOPED_KINDS]


def _one(docs: Sequence[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d.get("kind") == kind and d["metadata"]["name"] == name]
    if len(found) != 1:
        raise RenderError(f"expected one {kind} {name} in install.yaml, found {len(found)}")
    return found[0]


def load(path: Path = INSTALL) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", help="operator image reference")
    parser.add_argument(
        "--cluster-scoped",
        action="store_true",
        help="print only the cluster-scoped objects (CRDs, namespace, cluster roles)",
    )
    parser.add_argument("--registry", help="host[:port][/prefix] for ImageStreamTag outputs")
    parser.add_argument("--insecure", action="store_true", help="that registry is plain HTTP")
    parser.add_argument("--builder-image", help="the buildah builder image for build pods")
    parser.add_argument("--kaniko-image", help="the kaniko executor image for build pods")
    parser.add_argument("--file", type=Path, default=INSTALL, help="install file to render")
    args = parser.parse_args(argv)
    if args.cluster_scoped:
        yaml.safe_dump_all(cluster_scoped(load(args.file)), sys.stdout, sort_keys=False)
        return 0
    if not args.image:
        parser.error("--image is required (unless --cluster-scoped)")
    try:
        docs = render(
            load(args.file),
            image=args.image,
            registry=args.registry,
            insecure=args.insecure,
            builder_image=args.builder_image,
            kaniko_image=args.kaniko_image,
        )
    except (RenderError, KeyError, OSError) as exc:
        print(f"render_install: {exc}", file=sys.stderr)
        return 1
    yaml.safe_dump_all(docs, sys.stdout, sort_keys=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
