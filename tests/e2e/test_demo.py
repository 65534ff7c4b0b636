"""`make demo` — one of the README's two commands — run end to end, twice (it is idempotent)."""

from __future__ import annotations

import os
import subprocess

import pytest

from .conftest import REPO
from .helpers import Cluster, stop_installed_operator

pytestmark = pytest.mark.e2e


def test_the_demo_walks_the_seed_story_and_can_run_again(cluster: Cluster) -> None:
    if not cluster.is_local:
        pytest.skip("the demo runs on the local cluster")
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    try:
        for run in (1, 2):
            result = subprocess.run(
                ["bash", "hack/demo.sh"],
                cwd=REPO,
                env=env,
                capture_output=True,
                text=True,
                timeout=1500,
            )
            out = result.stdout
            assert result.returncode == 0, f"run {run}:\n{out[-6000:]}\n{result.stderr[-4000:]}"
            # The ConfigChange build, the rollout it caused, the rebuild after a commit,
            # the CI import, the promotion and describe istag all happened.
            assert "Commit:" in out
            assert "shop web v2" in out
            assert "imagestream.image.headwater.dev/web imported" in out
            assert "Image Reference:" in out
            assert "Done." in out
            # It ends one command away from the console, and says nothing after it.
            assert out.rstrip().splitlines()[-1].strip() == (
                ".venv/bin/headwater console -n shop-staging"
            )
    finally:
        # Other tests run their own operator: the demo's in-cluster one must stop.
        stop_installed_operator(cluster, timeout=120)
        for namespace in ("shop-staging", "shop-prod", "openshift"):
            cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
