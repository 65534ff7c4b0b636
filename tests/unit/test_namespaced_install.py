"""deploy/namespaced: the operator bound per namespace; cluster-wide only what must be."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from tests import hack_scripts

REPO = Path(__file__).resolve().parents[2]
OVERLAY = REPO / "deploy" / "namespaced"
SA = {"kind": "ServiceAccount", "name": "headwater-operator", "namespace": "headwater-system"}


def gen() -> ModuleType:
    return hack_scripts.load("gen_namespaced")


def test_committed_overlay_is_generated() -> None:
    assert gen().main(["--check"]) == 0, "deploy/namespaced is out of date: run `make manifests`"


def test_overlay_files(tmp_path: Path) -> None:
    g = gen()
    files = g.overlay(("a", "b", "c"))
    rbac = files["operator-rbac.yaml"]
    [cluster_role] = [d for d in rbac if d["kind"] == "ClusterRole"]
    [cluster_binding] = [d for d in rbac if d["kind"] == "ClusterRoleBinding"]
    bindings = [d for d in rbac if d["kind"] == "RoleBinding"]
    assert [b["metadata"]["namespace"] for b in bindings] == ["a", "b", "c"]
    for binding in bindings:
        ref = binding["roleRef"]
        assert (ref["kind"], ref["name"]) == ("ClusterRole", "headwater-operator")
        assert binding["subjects"] == [SA]
    assert cluster_binding["roleRef"]["name"] == cluster_role["metadata"]["name"]
    assert cluster_binding["subjects"] == [SA]
    # Cluster-wide: only cluster-scoped resources, and no CRD or Namespace reads.
    resources = {r for rule in cluster_role["rules"] for r in rule["resources"]}
    assert resources == {
        "mutatingwebhookconfigurations",
        "validatingwebhookconfigurations",
        "subjectaccessreviews",
    }
    [patch] = files["operator-namespaces.yaml"]
    [container] = patch["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["operator", "run", "--namespace", "a,b,c", "--log-format", "json"]
    [delete] = files["no-cluster-binding.yaml"]
    assert delete["$patch"] == "delete"
    assert delete["metadata"]["name"] == "headwater-operator"
    # A directory elsewhere points back at deploy/base.
    written = g.render_files(("a",), tmp_path / "overlay")
    kustomization = yaml.safe_load(written["kustomization.yaml"])
    assert (tmp_path / "overlay" / kustomization["resources"][0]).resolve() == g.BASE


def test_namespace_list_is_checked() -> None:
    g = gen()
    assert g.parse_namespaces(" a,b,,a ") == ("a", "b")
    for bad in ("", ",", "Team_A"):
        with pytest.raises(g.RenderError):
            g.parse_namespaces(bad)


def test_a_rule_mixing_scopes_is_refused() -> None:
    g = gen()
    rule = {"apiGroups": [""], "resources": ["secrets", "namespaces"], "verbs": ["get"]}
    role = {"rules": [rule]}
    with pytest.raises(g.RenderError, match="mixes cluster-scoped and namespaced"):
        g.cluster_rules(role)


def kustomize(directory: Path) -> list[dict[str, Any]]:
    out = subprocess.run(
        ["kubectl", "kustomize", str(directory)], capture_output=True, text=True, check=True,
        timeout=60,
    ).stdout  # fmt: skip
    return [d for d in yaml.safe_load_all(out) if d]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_kustomize_builds_a_bundle_without_cluster_wide_namespaced_rights() -> None:
    objects = kustomize(OVERLAY)
    roles = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ClusterRole"}
    cluster_bindings = [
        o for o in objects if o["kind"] == "ClusterRoleBinding" and SA in o["subjects"]
    ]
    assert [b["metadata"]["name"] for b in cluster_bindings] == ["headwater-operator-cluster"]
    for binding in cluster_bindings:
        for rule in roles[binding["roleRef"]["name"]]["rules"]:
            assert not {"secrets", "configmaps", "pods", "jobs"} & set(rule["resources"])
    role_bindings = {
        o["metadata"]["namespace"]: o
        for o in objects
        if o["kind"] == "RoleBinding" and o["roleRef"]["name"] == "headwater-operator"
    }
    assert set(role_bindings) == {"team-a", "team-b"}
    [deployment] = [o for o in objects if o["kind"] == "Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert "--all-namespaces" not in container["args"]
    assert container["args"][2:4] == ["--namespace", "team-a,team-b"]
    # Everything else is the base's: the image, the probes, the config, the policy.
    assert container["image"].startswith("registry.example.com/headwater/operator")
    assert {o["kind"] for o in objects} >= {"NetworkPolicy", "ConfigMap", "Role", "Namespace"}
