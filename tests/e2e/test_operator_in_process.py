"""The operator's handlers run in-process by kopf's KopfRunner against the real cluster."""

from __future__ import annotations

import kopf.testing
import pytest

from .helpers import Cluster, eventually
from .test_operator import manifest, placeholder_status_current

pytestmark = pytest.mark.e2e


def test_in_process_operator_reconciles_its_namespace_only(
    cluster: Cluster, namespace: str, operator_in_process: kopf.testing.KopfRunner
) -> None:
    cluster.apply(manifest("imagestream-web.yaml"), namespace)
    eventually(
        "the ImageStream's status",
        lambda: placeholder_status_current(cluster, namespace, "imagestream/web", "Ready"),
    )
    other = f"{namespace}-other"
    cluster.kubectl("create", "namespace", other)
    try:
        cluster.apply(manifest("imagestream-web.yaml"), other)
        # The watch is scoped to `namespace`: a change there made after the
        # other stream exists is reconciled, and the other stream is not.
        cluster.kubectl(
            "patch",
            "imagestream/web",
            "-n",
            namespace,
            "--type=merge",
            "-p",
            '{"spec": {"lookupPolicy": {"local": true}}}',
        )
        eventually(
            "a second reconcile in the watched namespace",
            lambda: placeholder_status_current(cluster, namespace, "imagestream/web", "Ready"),
        )
        assert "status" not in cluster.get_json("imagestream/web", "-n", other)
    finally:
        cluster.kubectl("delete", "namespace", other, "--wait=false", check=False)
